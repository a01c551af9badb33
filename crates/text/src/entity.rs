//! From per-token tags ("B-LOC", "I-LOC", "O", …) to entities with character offsets.

/// A tagging scheme: which tag prefixes exist and what they mean.
///
/// Tags are written `PREFIX-TYPE` (split at the first `-`, so types may contain `-`), or `O`.
/// A tag whose prefix the scheme does not define (for example `E-LOC` under [`TagScheme::Bio`],
/// `M-LOC` under [`TagScheme::Bioes`], or an unknown string) is treated as `O`. A prefix with no
/// `-TYPE` part has the empty type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagScheme {
    /// `B` begins an entity, `I` continues it, `O` is outside.
    Bio,
    /// `B` begins, `I` continues, `E` ends a multi-token entity, `S` is a single-token entity.
    Bioes,
    /// `B` begins, `M` (middle) continues, `E` ends, `S` is a single-token entity.
    Bmes,
}

/// An entity found in the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Entity {
    /// The entity's text: the characters `start..end` of the original text.
    pub word: String,
    /// Offset, in characters (Unicode scalar values, not bytes), of the entity's first character.
    pub start: usize,
    /// Offset, in characters, one past the entity's last character (exclusive).
    pub end: usize,
    /// The entity type, the part of the tag after the prefix ("LOC" in "B-LOC").
    pub r#type: String,
}

/// A tag prefix, normalised across schemes (`M` of BMES is `Inside`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Prefix {
    Outside,
    Begin,
    Inside,
    End,
    Single,
}

impl TagScheme {
    /// Splits a tag into its normalised prefix and type; undefined prefixes become `Outside`.
    fn parse(self, tag: &str) -> (Prefix, &str) {
        let (prefix, ty) = tag.split_once('-').unwrap_or((tag, ""));
        let prefix = match (self, prefix) {
            (_, "B") => Prefix::Begin,
            (Self::Bio | Self::Bioes, "I") | (Self::Bmes, "M") => Prefix::Inside,
            (Self::Bioes | Self::Bmes, "E") => Prefix::End,
            (Self::Bioes | Self::Bmes, "S") => Prefix::Single,
            _ => Prefix::Outside,
        };
        if prefix == Prefix::Outside {
            (Prefix::Outside, "")
        } else {
            (prefix, ty)
        }
    }
}

/// Whether the chunk open at the previous token ends before the current token.
fn chunk_ends(prev: Prefix, prev_type: &str, cur: Prefix, cur_type: &str) -> bool {
    use Prefix::*;
    match prev {
        Outside => false,
        End | Single => true,
        Begin | Inside => matches!(cur, Begin | Single | Outside) || prev_type != cur_type,
    }
}

/// Whether a chunk starts at the current token.
fn chunk_starts(prev: Prefix, prev_type: &str, cur: Prefix, cur_type: &str) -> bool {
    use Prefix::*;
    match cur {
        Outside => false,
        Begin | Single => true,
        Inside | End => matches!(prev, Outside | End | Single) || prev_type != cur_type,
    }
}

/// Extracts the entities of one tagged sequence.
///
/// * `chars[k]` is token `k`'s span `(start, end)` in the original `text`, in characters,
///   end exclusive (one character per token for Chinese; a word piece's span otherwise).
/// * `tags[k]` is token `k`'s tag under `scheme`.
///
/// An entity spans from its first token's `start` to its last token's `end`; its `word` is
/// that character range of `text`.
///
/// Ill-formed sequences are read leniently, as conlleval and seqeval's default mode do:
/// * an `I-`/`M-`/`E-` tag after `O`, after a completed entity (`E-`/`S-`), or at the start
///   starts a new entity (`O I-LOC I-LOC` is one LOC entity, `O E-LOC` a one-token one);
/// * a type change ends the open entity and starts a new one of the new type
///   (`B-LOC I-PER` is a LOC entity then a PER entity);
/// * `B-` always starts a new entity, so `B-LOC B-LOC` is two entities;
/// * an entity still open at the end of the sequence (a `B-`/`I-` without `E-` in BIOES) is
///   closed at the last token.
///
/// Only the first `min(chars.len(), tags.len())` tokens are read. Spans beyond the end of
/// `text` are clamped when taking `word` (the offsets are reported as given).
pub fn entities(
    chars: &[(usize, usize)],
    text: &str,
    tags: &[&str],
    scheme: TagScheme,
) -> Vec<Entity> {
    // Byte offset of every character, plus the end of the text.
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(byte, _)| byte)
        .chain(std::iter::once(text.len()))
        .collect();
    let byte_at = |char_offset: usize| boundaries.get(char_offset).copied().unwrap_or(text.len());
    let make = |first: usize, last: usize, ty: &str| {
        let start = chars[first].0;
        let end = chars[last].1;
        let word = text[byte_at(start)..byte_at(end.max(start))].to_owned();
        Entity {
            word,
            start,
            end,
            r#type: ty.to_owned(),
        }
    };

    let n = chars.len().min(tags.len());
    let mut found = Vec::new();
    // The open entity: its first token and type.
    let mut open: Option<(usize, &str)> = None;
    let (mut prev, mut prev_type) = (Prefix::Outside, "");
    for (k, tag) in tags.iter().enumerate().take(n) {
        let (cur, cur_type) = scheme.parse(tag);
        if chunk_ends(prev, prev_type, cur, cur_type)
            && let Some((first, ty)) = open.take()
        {
            found.push(make(first, k - 1, ty));
        }
        if chunk_starts(prev, prev_type, cur, cur_type) {
            open = Some((k, cur_type));
        }
        (prev, prev_type) = (cur, cur_type);
    }
    if let Some((first, ty)) = open {
        found.push(make(first, n - 1, ty));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per character of `text`.
    fn spans(text: &str) -> Vec<(usize, usize)> {
        (0..text.chars().count()).map(|i| (i, i + 1)).collect()
    }

    fn found(text: &str, tags: &str, scheme: TagScheme) -> Vec<(String, String)> {
        let tags: Vec<&str> = tags.split_whitespace().collect();
        entities(&spans(text), text, &tags, scheme)
            .into_iter()
            .map(|e| (e.word, e.r#type))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(w, t)| ((*w).to_owned(), (*t).to_owned()))
            .collect()
    }

    #[test]
    fn parse_normalises_prefixes_per_scheme() {
        assert_eq!(TagScheme::Bmes.parse("M-X"), (Prefix::Inside, "X"));
        assert_eq!(TagScheme::Bio.parse("M-X"), (Prefix::Outside, ""));
        assert_eq!(TagScheme::Bio.parse("E-X"), (Prefix::Outside, ""));
        assert_eq!(TagScheme::Bioes.parse("S-X"), (Prefix::Single, "X"));
        assert_eq!(TagScheme::Bioes.parse("B-A-B"), (Prefix::Begin, "A-B"));
        assert_eq!(TagScheme::Bio.parse("B"), (Prefix::Begin, ""));
        assert_eq!(TagScheme::Bio.parse("O"), (Prefix::Outside, ""));
    }

    #[test]
    fn bio_lenient_rules() {
        let bio = TagScheme::Bio;
        assert_eq!(found("abcd", "O I-X I-X O", bio), pairs(&[("bc", "X")]));
        assert_eq!(
            found("abcd", "B-X I-Y I-Y O", bio),
            pairs(&[("a", "X"), ("bc", "Y")])
        );
        assert_eq!(
            found("abc", "B-X B-X I-X", bio),
            pairs(&[("a", "X"), ("bc", "X")])
        );
        assert_eq!(found("abc", "O O B-X", bio), pairs(&[("c", "X")]));
        assert_eq!(found("abc", "O O O", bio), pairs(&[]));
    }

    #[test]
    fn bioes_lenient_rules() {
        let s = TagScheme::Bioes;
        assert_eq!(
            found("abcde", "S-X B-Y E-Y E-Y O", s),
            pairs(&[("a", "X"), ("bc", "Y"), ("d", "Y")])
        );
        // An unterminated B-I is closed at the end; I after E starts anew.
        assert_eq!(
            found("abcd", "B-X E-X I-X I-X", s),
            pairs(&[("ab", "X"), ("cd", "X")])
        );
        assert_eq!(found("ab", "B-X E-Y", s), pairs(&[("a", "X"), ("b", "Y")]));
    }

    #[test]
    fn length_mismatch_reads_the_common_prefix() {
        let text = "abc";
        let got = entities(&spans(text), text, &["B-X", "I-X"], TagScheme::Bio);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].start, got[0].end), (0, 2));
        assert!(entities(&[], text, &["B-X"], TagScheme::Bio).is_empty());
    }

    #[test]
    fn out_of_range_spans_are_clamped() {
        let got = entities(&[(1, 9)], "abc", &["S-X"], TagScheme::Bioes);
        assert_eq!(got[0].word, "bc");
        assert_eq!((got[0].start, got[0].end), (1, 9));
    }
}
