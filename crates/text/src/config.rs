//! `pipeline: {kind: token_classification, ...}` in a model's `config.yaml`.

use serde::Deserialize;

use crate::{Error, Result, TagScheme};

/// How a token-classification (NER) model is fed and read. Every field has a default except
/// the tags (`tags` or `tags_file`). Unknown fields are errors naming the field.
///
/// File names (`vocab`, `tags_file`, `transitions.file`) are relative to the model directory
/// (the directory holding `config.yaml`); reading them is the caller's job.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenClassificationConfig {
    /// The BERT vocabulary: one token per line, the line number (from 0) is the token id.
    #[serde(default = "default_vocab")]
    pub vocab: String,
    /// Lower-case the text before WordPiece (BERT's `do_lower_case`; `true` for bert-base-chinese).
    #[serde(default = "yes")]
    pub lowercase: bool,
    /// Strip accents (NFD, drop combining marks). Absent: follow `lowercase`, as BERT does.
    #[serde(default)]
    pub strip_accents: Option<bool>,
    /// Tokens per model row including `[CLS]` and `[SEP]`; rows are padded to it with id 0.
    #[serde(default = "default_max_seq_length")]
    pub max_seq_length: usize,
    #[serde(default)]
    pub inputs: InputNames,
    #[serde(default)]
    pub outputs: OutputNames,
    /// Where the CRF transition matrix comes from. Absent: no CRF, every token takes its
    /// highest-scoring tag (NumPy's first index on ties).
    #[serde(default)]
    pub transitions: Option<TransitionsSource>,
    /// The transition matrix has one more row and column than there are tag scores: an
    /// artificial start state, decoded with the `-1000` padding BiLSTM-CRF exports use (see
    /// [`crate::viterbi_decode_padded`]).
    #[serde(default)]
    pub padded_start_state: bool,
    /// The tag names, in the model's order (after `tag_offset`).
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// A file with one tag name per line (blank lines skipped), instead of `tags`.
    #[serde(default)]
    pub tags_file: Option<String>,
    /// The tag-score column of the first tag. BERT-BiLSTM-CRF-NER numbers its labels from 1
    /// (column 0 is the padding label), so it uses `tag_offset: 1`. Columns outside
    /// `tag_offset .. tag_offset + tags` read as `O`.
    #[serde(default)]
    pub tag_offset: usize,
    /// `bio`, `bioes` or `bmes`.
    #[serde(default)]
    pub scheme: SchemeName,
    /// Tokens shared by consecutive windows of a text longer than one row. Absent:
    /// `min(32, (max_seq_length - 2) / 2)`.
    #[serde(default)]
    pub window_overlap: Option<usize>,
    /// Most texts in one request.
    #[serde(default = "default_max_texts")]
    pub max_texts: usize,
    /// Most characters in one text.
    #[serde(default = "default_max_text_chars")]
    pub max_text_chars: usize,
}

/// The graph inputs the pipeline feeds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputNames {
    /// Token ids (`[CLS] tokens… [SEP] 0…`).
    #[serde(default = "default_ids")]
    pub ids: String,
    /// 1 for real tokens (with `[CLS]`/`[SEP]`), 0 for padding.
    #[serde(default = "default_mask")]
    pub mask: String,
    /// All zeros (one sentence). Absent: `segment_ids` when the graph has such an input.
    #[serde(default)]
    pub segment: Option<String>,
}

/// The graph outputs the pipeline reads.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputNames {
    /// Tag scores `[rows, seq, num_tags]`.
    #[serde(default = "default_logits")]
    pub logits: String,
    /// Decoded length of each row `[rows]`. Absent: `lengths` when the graph has such an
    /// output, else the mask's sum.
    #[serde(default)]
    pub lengths: Option<String>,
}

/// `{output: trans}` (a graph output) or `{file: trans.json}` (a JSON array of rows).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TransitionsSource {
    Output(String),
    File(String),
}

/// The YAML spelling of a [`TagScheme`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SchemeName {
    #[default]
    Bio,
    Bioes,
    Bmes,
}

impl From<SchemeName> for TagScheme {
    fn from(s: SchemeName) -> TagScheme {
        match s {
            SchemeName::Bio => TagScheme::Bio,
            SchemeName::Bioes => TagScheme::Bioes,
            SchemeName::Bmes => TagScheme::Bmes,
        }
    }
}

impl Default for InputNames {
    fn default() -> Self {
        InputNames {
            ids: default_ids(),
            mask: default_mask(),
            segment: None,
        }
    }
}

impl Default for OutputNames {
    fn default() -> Self {
        OutputNames {
            logits: default_logits(),
            lengths: None,
        }
    }
}

/// The segment input used when `inputs.segment` is absent and the graph has it.
pub const DEFAULT_SEGMENT_INPUT: &str = "segment_ids";
/// The lengths output used when `outputs.lengths` is absent and the graph has it.
pub const DEFAULT_LENGTHS_OUTPUT: &str = "lengths";

/// Longest `max_seq_length` accepted (BERT's position table has 512 entries).
const MAX_SEQ_LENGTH: usize = 4096;

fn default_vocab() -> String {
    "vocab.txt".into()
}
fn yes() -> bool {
    true
}
fn default_max_seq_length() -> usize {
    128
}
fn default_ids() -> String {
    "input_ids".into()
}
fn default_mask() -> String {
    "input_mask".into()
}
fn default_logits() -> String {
    "logits".into()
}
fn default_max_texts() -> usize {
    64
}
fn default_max_text_chars() -> usize {
    10_000
}

impl TokenClassificationConfig {
    /// Checks the values that need no file; errors name the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !(3..=MAX_SEQ_LENGTH).contains(&self.max_seq_length) {
            return bad(format!(
                "max_seq_length: must be between 3 ([CLS], one token, [SEP]) and {MAX_SEQ_LENGTH}, got {}",
                self.max_seq_length
            ));
        }
        let content = self.max_seq_length - 2;
        if let Some(overlap) = self.window_overlap
            && overlap >= content
        {
            return bad(format!(
                "window_overlap: must be below max_seq_length - 2 = {content}, got {overlap}"
            ));
        }
        match (&self.tags, &self.tags_file) {
            (Some(_), Some(_)) => return bad("tags, tags_file: give one of them, not both".into()),
            (None, None) => return bad("tags: give the tag names (or tags_file)".into()),
            (Some(tags), None) if tags.is_empty() => return bad("tags: the list is empty".into()),
            _ => {}
        }
        if self.padded_start_state && self.transitions.is_none() {
            return bad(
                "padded_start_state: needs transitions ({output: name} or {file: name})".into(),
            );
        }
        if self.max_texts == 0 {
            return bad("max_texts: must be at least 1".into());
        }
        if self.max_text_chars == 0 {
            return bad("max_text_chars: must be at least 1".into());
        }
        for (field, name) in [
            ("vocab", Some(&self.vocab)),
            ("tags_file", self.tags_file.as_ref()),
            (
                "transitions.file",
                match &self.transitions {
                    Some(TransitionsSource::File(f)) => Some(f),
                    _ => None,
                },
            ),
        ] {
            if let Some(name) = name
                && !is_relative_file(name)
            {
                return bad(format!(
                    "{field}: `{name}` must be a file name relative to the model directory"
                ));
            }
        }
        Ok(())
    }

    /// Tokens per window without `[CLS]` and `[SEP]`.
    pub fn window_tokens(&self) -> usize {
        self.max_seq_length.saturating_sub(2).max(1)
    }

    /// Tokens shared by consecutive windows.
    pub fn overlap(&self) -> usize {
        let content = self.window_tokens();
        self.window_overlap
            .unwrap_or_else(|| 32.min(content / 2))
            .min(content - 1)
    }
}

/// A relative path that stays inside the model directory (no `..`, not absolute).
fn is_relative_file(name: &str) -> bool {
    let path = std::path::Path::new(name);
    !name.is_empty()
        && path
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> std::result::Result<TokenClassificationConfig, String> {
        let c: TokenClassificationConfig = serde_json::from_str(yaml).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults() {
        let c = parse(r#"{"tags": ["O", "B-X"]}"#).expect("valid");
        assert_eq!(c.vocab, "vocab.txt");
        assert!(c.lowercase);
        assert_eq!(c.max_seq_length, 128);
        assert_eq!(c.inputs.ids, "input_ids");
        assert_eq!(c.inputs.mask, "input_mask");
        assert_eq!(c.outputs.logits, "logits");
        assert_eq!(c.transitions, None);
        assert_eq!(c.scheme, SchemeName::Bio);
        assert_eq!(c.window_tokens(), 126);
        assert_eq!(c.overlap(), 32);
    }

    #[test]
    fn transitions_sources() {
        let c = parse(r#"{"tags": ["O"], "transitions": {"output": "trans"}}"#).expect("valid");
        assert_eq!(
            c.transitions,
            Some(TransitionsSource::Output("trans".into()))
        );
        let c = parse(r#"{"tags": ["O"], "transitions": {"file": "t.json"}}"#).expect("valid");
        assert_eq!(
            c.transitions,
            Some(TransitionsSource::File("t.json".into()))
        );
        let e = parse(r#"{"tags": ["O"], "transitions": {"tensor": "t"}}"#).expect_err("bad");
        assert!(e.contains("tensor"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(r#"{"tags": ["O"], "vocabulary": "v.txt"}"#).expect_err("unknown");
        assert!(e.contains("vocabulary"), "{e}");
        let e = parse(r#"{"tags": ["O"], "max_seq_length": 2}"#).expect_err("short");
        assert!(e.contains("max_seq_length"), "{e}");
        let e = parse(r#"{"tags": ["O"], "max_seq_length": 10, "window_overlap": 8}"#)
            .expect_err("overlap");
        assert!(e.contains("window_overlap"), "{e}");
        let e = parse(r#"{}"#).expect_err("no tags");
        assert!(e.contains("tags"), "{e}");
        let e = parse(r#"{"tags": ["O"], "tags_file": "t.txt"}"#).expect_err("both");
        assert!(e.contains("tags_file"), "{e}");
        let e = parse(r#"{"tags": ["O"], "padded_start_state": true}"#).expect_err("no trans");
        assert!(e.contains("padded_start_state"), "{e}");
        let e = parse(r#"{"tags": ["O"], "vocab": "../vocab.txt"}"#).expect_err("escape");
        assert!(e.contains("vocab"), "{e}");
        let e = parse(r#"{"tags": ["O"], "scheme": "iob2"}"#).expect_err("scheme");
        assert!(e.contains("iob2"), "{e}");
    }

    #[test]
    fn small_windows_get_a_small_default_overlap() {
        let c = parse(r#"{"tags": ["O"], "max_seq_length": 6}"#).expect("valid");
        assert_eq!(c.window_tokens(), 4);
        assert_eq!(c.overlap(), 2);
        let c = parse(r#"{"tags": ["O"], "max_seq_length": 3}"#).expect("valid");
        assert_eq!(c.overlap(), 0);
    }
}
