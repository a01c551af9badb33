//! The token-classification pipeline: texts → fixed-length model rows (windows), and model
//! scores → tags → entities with character offsets.

use crate::config::{TokenClassificationConfig, TransitionsSource};
use crate::wordpiece::{Token, WordPieceTokenizer};
use crate::{Entity, Error, Result, TagScheme, entities, viterbi_decode, viterbi_decode_padded};

/// A loaded token-classification pipeline: the config with its vocabulary, tags and (when
/// they come from a file) transitions.
#[derive(Debug)]
pub struct TokenClassifier {
    config: TokenClassificationConfig,
    tokenizer: WordPieceTokenizer,
    tags: Vec<String>,
    /// `[dim, dim]` row-major, when the config reads them from a file.
    file_transitions: Option<Vec<f32>>,
}

/// The model rows of a request: every window of every text, `[rows, seq_len]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub rows: usize,
    pub seq_len: usize,
    /// `[CLS] tokens… [SEP]` then id 0 to `seq_len` (BERT pads input ids with 0).
    pub ids: Vec<i64>,
    /// 1 over `[CLS] tokens… [SEP]`, then 0.
    pub mask: Vec<i64>,
    /// All 0 (a single sentence).
    pub segment: Vec<i64>,
    texts: Vec<EncodedText>,
}

impl Encoded {
    /// How many texts were encoded (a text may have several rows, or none).
    pub fn texts(&self) -> usize {
        self.texts.len()
    }
}

#[derive(Debug, Clone, PartialEq)]
struct EncodedText {
    text: String,
    tokens: Vec<Token>,
    /// `(row, first token, one past the last token)` of each window.
    windows: Vec<(usize, usize, usize)>,
}

/// What the model computed for an [`Encoded`] batch.
#[derive(Debug, Clone, Copy)]
pub struct Scores<'a> {
    /// `[rows, seq, num_tags]` row-major.
    pub logits: &'a [f32],
    /// The logits' second dimension (positions per row).
    pub seq: usize,
    /// The logits' last dimension.
    pub num_tags: usize,
    /// The model's decoded length of each row (`[CLS]` and `[SEP]` included); `None`: the
    /// mask's sum.
    pub lengths: Option<&'a [i64]>,
    /// The transition matrix from a model output (`[dim, dim]` row-major), when the config
    /// names one.
    pub transitions: Option<&'a [f32]>,
}

/// One text's result.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub entities: Vec<Entity>,
    /// Every token with its tag (for debugging).
    pub tokens: Vec<TaggedToken>,
}

/// A token and the tag decoding gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedToken {
    pub piece: String,
    /// Character offsets into the text, end exclusive.
    pub start: usize,
    pub end: usize,
    pub tag: String,
}

/// The tag name of a decoded index outside the configured tags (the padding label below
/// `tag_offset`, or the artificial start state).
const OUTSIDE: &str = "O";

impl TokenClassifier {
    /// Builds the pipeline from its config and the contents of the files it names:
    /// `vocab_text` (the `vocab.txt`), `tags` (from `tags` or [`parse_tags`] of the tags
    /// file) and `file_transitions` (from [`parse_transitions`] when the config reads
    /// transitions from a file; must be `None` otherwise).
    pub fn new(
        config: TokenClassificationConfig,
        vocab_text: &str,
        tags: Vec<String>,
        file_transitions: Option<Vec<Vec<f32>>>,
    ) -> Result<TokenClassifier> {
        config.validate()?;
        if tags.is_empty() {
            return Err(Error::Tags("no tags".into()));
        }
        let tokenizer =
            WordPieceTokenizer::from_vocab(vocab_text, config.lowercase, config.strip_accents)?;
        let mut classifier = TokenClassifier {
            config,
            tokenizer,
            tags,
            file_transitions: None,
        };
        let dim = classifier.transitions_dim();
        classifier.file_transitions = match (&classifier.config.transitions, file_transitions) {
            (Some(TransitionsSource::File(_)), Some(rows)) => {
                if rows.len() != dim || rows.iter().any(|r| r.len() != dim) {
                    let shape: Vec<usize> = rows.iter().map(Vec::len).collect();
                    return Err(Error::Transitions(format!(
                        "expected a {dim}x{dim} matrix ({} tags{}), got {} rows of lengths {shape:?}",
                        classifier.num_tags(),
                        if classifier.config.padded_start_state {
                            " + the start state"
                        } else {
                            ""
                        },
                        rows.len()
                    )));
                }
                Some(rows.concat())
            }
            (Some(TransitionsSource::File(_)), None) => {
                return Err(Error::Transitions(
                    "the config reads transitions from a file but none was given".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(Error::Transitions(
                    "transitions were given but the config does not read them from a file".into(),
                ));
            }
            (_, None) => None,
        };
        Ok(classifier)
    }

    pub fn config(&self) -> &TokenClassificationConfig {
        &self.config
    }

    pub fn tokenizer(&self) -> &WordPieceTokenizer {
        &self.tokenizer
    }

    /// The configured tag names (tag score column `tag_offset + i` is `tags[i]`).
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Tag-score columns the model must produce: `tag_offset + tags`.
    pub fn num_tags(&self) -> usize {
        self.config.tag_offset + self.tags.len()
    }

    /// Side of the transition matrix: `num_tags`, plus one with the padded start state.
    pub fn transitions_dim(&self) -> usize {
        self.num_tags() + usize::from(self.config.padded_start_state)
    }

    /// Lines in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.vocab_size()
    }

    /// Tokenizes each text and lays its tokens out in windows of `max_seq_length - 2` tokens
    /// (consecutive windows share `window_overlap` tokens), one model row per window.
    /// A text without tokens (only whitespace) has no window.
    pub fn encode(&self, texts: &[String]) -> Result<Encoded> {
        let seq_len = self.config.max_seq_length;
        let content = self.config.window_tokens();
        let stride = content - self.config.overlap();
        let mut out = Encoded {
            rows: 0,
            seq_len,
            ids: Vec::new(),
            mask: Vec::new(),
            segment: Vec::new(),
            texts: Vec::with_capacity(texts.len()),
        };
        for text in texts {
            let tokens = self.tokenizer.tokenize(text)?;
            let mut windows = Vec::new();
            let n = tokens.len();
            let mut start = 0;
            while start < n {
                let end = (start + content).min(n);
                windows.push((out.rows, start, end));
                out.rows += 1;
                out.ids.push(i64::from(self.tokenizer.cls()));
                out.ids
                    .extend(tokens[start..end].iter().map(|t| i64::from(t.id)));
                out.ids.push(i64::from(self.tokenizer.sep()));
                let used = end - start + 2;
                out.ids.extend(std::iter::repeat_n(0, seq_len - used));
                out.mask.extend(std::iter::repeat_n(1, used));
                out.mask.extend(std::iter::repeat_n(0, seq_len - used));
                out.segment.extend(std::iter::repeat_n(0, seq_len));
                if end == n {
                    break;
                }
                start += stride;
            }
            out.texts.push(EncodedText {
                text: text.clone(),
                tokens,
                windows,
            });
        }
        Ok(out)
    }

    /// Decodes every row with Viterbi (or per-token argmax without transitions), stitches the
    /// windows of each text back together and reads the entities.
    ///
    /// Seams: each token takes its tag from the window in which it lies farthest from a
    /// window edge that cuts the text (so the overlap is split in the middle and every token
    /// has exactly one tag); entities are read once from the stitched tags. A seam therefore
    /// never duplicates an entity, and an entity crossing a seam stays one entity when both
    /// windows tag it with the same type.
    ///
    /// Word pieces: a word split into several pieces (`un ##aff ##able`) is one unit tagged by
    /// its first piece (BERT NER labels only the first piece; the others are trained as `X`).
    pub fn decode(&self, encoded: &Encoded, scores: Scores<'_>) -> Result<Vec<Labelled>> {
        let num_tags = self.num_tags();
        if scores.num_tags != num_tags {
            return Err(Error::Output(format!(
                "the model gives {} tag scores per token but the config has {num_tags} (tag_offset {} + {} tags)",
                scores.num_tags,
                self.config.tag_offset,
                self.tags.len()
            )));
        }
        let expected = encoded.rows * scores.seq * num_tags;
        if scores.logits.len() != expected {
            return Err(Error::Output(format!(
                "logits hold {} values, expected rows {} x positions {} x tags {num_tags} = {expected}",
                scores.logits.len(),
                encoded.rows,
                scores.seq
            )));
        }
        if let Some(lengths) = scores.lengths
            && lengths.len() != encoded.rows
        {
            return Err(Error::Output(format!(
                "lengths has {} values for {} rows",
                lengths.len(),
                encoded.rows
            )));
        }
        let dim = self.transitions_dim();
        let zeros;
        let transitions: &[f32] = match (&self.config.transitions, &self.file_transitions) {
            (None, _) => {
                zeros = vec![0.0; num_tags * num_tags];
                &zeros
            }
            (Some(_), Some(file)) => file,
            (Some(TransitionsSource::Output(name)), None) => {
                let t = scores.transitions.ok_or_else(|| {
                    Error::Output(format!("the model gave no transitions output `{name}`"))
                })?;
                if t.len() != dim * dim {
                    return Err(Error::Output(format!(
                        "transitions output `{name}` has {} values, expected {dim}x{dim}",
                        t.len()
                    )));
                }
                t
            }
            (Some(TransitionsSource::File(_)), None) => {
                return Err(Error::Transitions(
                    "file transitions were not loaded".into(),
                ));
            }
        };
        let padded = self.config.padded_start_state;
        let row_values = scores.seq * num_tags;
        let mut results = Vec::with_capacity(encoded.texts.len());
        for t in &encoded.texts {
            let n = t.tokens.len();
            // (distance to the nearest cutting edge, tag) of each token, best window so far.
            let mut best: Vec<Option<(usize, usize)>> = vec![None; n];
            for &(row, start, end) in &t.windows {
                let used = end - start + 2;
                let len = match scores.lengths {
                    Some(lengths) => usize::try_from(lengths[row]).map_err(|_| {
                        Error::Output(format!("lengths[{row}] = {} is negative", lengths[row]))
                    })?,
                    None => used,
                };
                if len > scores.seq || len < used - 1 {
                    return Err(Error::Output(format!(
                        "lengths[{row}] = {len}, but the row holds {used} tokens with [CLS] and [SEP] and the logits {} positions",
                        scores.seq
                    )));
                }
                let logits = &scores.logits[row * row_values..row * row_values + len * num_tags];
                let (path, _) = if padded {
                    viterbi_decode_padded(logits, len, num_tags, transitions)?
                } else {
                    viterbi_decode(logits, len, num_tags, transitions)?
                };
                for i in start..end {
                    let left = if start == 0 { usize::MAX } else { i - start };
                    let right = if end == n { usize::MAX } else { end - 1 - i };
                    let distance = left.min(right);
                    if best[i].is_none_or(|(d, _)| distance > d) {
                        // Position 0 is [CLS].
                        best[i] = Some((distance, path[1 + i - start]));
                    }
                }
            }
            let tags: Vec<&str> = best
                .iter()
                .map(|b| b.map_or(OUTSIDE, |(_, tag)| self.tag_name(tag)))
                .collect();
            results.push(self.label(t, &tags));
        }
        Ok(results)
    }

    fn tag_name(&self, index: usize) -> &str {
        index
            .checked_sub(self.config.tag_offset)
            .and_then(|i| self.tags.get(i))
            .map_or(OUTSIDE, String::as_str)
    }

    /// Groups word pieces into words (tagged by their first piece) and reads the entities.
    fn label(&self, t: &EncodedText, tags: &[&str]) -> Labelled {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        let mut unit_tags: Vec<&str> = Vec::new();
        let mut previous_word = None;
        for (token, tag) in t.tokens.iter().zip(tags) {
            let continues = previous_word == Some(token.word) && token.piece.starts_with("##");
            match spans.last_mut() {
                Some(span) if continues => span.1 = token.end,
                _ => {
                    spans.push((token.start, token.end));
                    unit_tags.push(tag);
                }
            }
            previous_word = Some(token.word);
        }
        let scheme = TagScheme::from(self.config.scheme);
        Labelled {
            entities: entities(&spans, &t.text, &unit_tags, scheme),
            tokens: t
                .tokens
                .iter()
                .zip(tags)
                .map(|(token, tag)| TaggedToken {
                    piece: token.piece.clone(),
                    start: token.start,
                    end: token.end,
                    tag: (*tag).to_string(),
                })
                .collect(),
        }
    }
}

/// The tags of a tags file: one per line, surrounding whitespace trimmed, blank lines skipped.
pub fn parse_tags(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// A transitions file: a JSON array of rows, each an array of numbers
/// (`[[0.1, -2.0], [0.5, 0.0]]`); `transitions[i][j]` scores moving from tag `i` to tag `j`.
pub fn parse_transitions(json: &str) -> Result<Vec<Vec<f32>>> {
    let rows: Vec<Vec<f64>> = serde_json::from_str(json)
        .map_err(|e| Error::Transitions(format!("expected a JSON array of number arrays: {e}")))?;
    Ok(rows
        .into_iter()
        .map(|r| r.into_iter().map(|v| v as f32).collect())
        .collect())
}
