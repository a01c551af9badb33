//! BERT WordPiece tokenization (the `tokenizers` crate, built from a `vocab.txt`), with
//! character offsets into the original text.

use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;

use crate::{Error, Result};

/// BERT's unknown-token, sentence-start and separator tokens; the vocabulary must have them.
pub const UNK: &str = "[UNK]";
pub const CLS: &str = "[CLS]";
pub const SEP: &str = "[SEP]";

/// One WordPiece token of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Its id: the line of `vocab.txt` (from 0) that holds it.
    pub id: u32,
    /// The piece as in the vocabulary (`##` marks a continuation), or `[UNK]`.
    pub piece: String,
    /// Offset of its first character in the original text, in characters (Unicode scalar
    /// values, as Python's `str` indexes), not bytes.
    pub start: usize,
    /// Offset one past its last character, in characters.
    pub end: usize,
    /// The index of the word (pre-token) it belongs to: the pieces of one word share it.
    pub word: u32,
}

/// BERT's `FullTokenizer`: `BertNormalizer` (clean text, a space around every CJK character,
/// optional lower-casing and accent stripping), `BertPreTokenizer` (split at whitespace and
/// punctuation) and greedy longest-match-first `WordPiece` (`##` continuations, `[UNK]` for
/// a word with no split or of more than 100 characters).
///
/// So every CJK character is its own token (when the vocabulary has it, else `[UNK]`), as in
/// bert-base-chinese.
pub struct WordPieceTokenizer {
    inner: tokenizers::Tokenizer,
    cls: u32,
    sep: u32,
    vocab_size: usize,
}

impl std::fmt::Debug for WordPieceTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WordPieceTokenizer")
            .field("vocab_size", &self.vocab_size)
            .finish_non_exhaustive()
    }
}

impl WordPieceTokenizer {
    /// Builds the tokenizer from the text of a `vocab.txt`: one token per line, its id the
    /// line number from 0 (BERT's `load_vocab`: trailing whitespace is trimmed; a token listed
    /// twice keeps its last line). `[UNK]`, `[CLS]` and `[SEP]` must be present.
    ///
    /// `strip_accents: None` follows `lowercase`, as BERT's uncased models do.
    pub fn from_vocab(
        vocab_text: &str,
        lowercase: bool,
        strip_accents: Option<bool>,
    ) -> Result<WordPieceTokenizer> {
        let lines = vocab_text.lines().count();
        if lines == 0 {
            return Err(Error::Vocab("the vocabulary is empty".to_string()));
        }
        if u32::try_from(lines).is_err() {
            return Err(Error::Vocab(format!("{lines} lines is more than 2^32")));
        }
        // Line i (from 0) is token id i; trailing whitespace is trimmed (BERT's load_vocab).
        let vocab = WordPiece::read_bytes(vocab_text.as_bytes())
            .map_err(|e| Error::Vocab(e.to_string()))?;
        let id_of = |token: &str| {
            vocab
                .get(token)
                .copied()
                .ok_or_else(|| Error::Vocab(format!("the vocabulary has no {token} token")))
        };
        id_of(UNK)?;
        let cls = id_of(CLS)?;
        let sep = id_of(SEP)?;
        let model = WordPiece::builder()
            .vocab(vocab)
            .unk_token(UNK.to_string())
            .continuing_subword_prefix("##".to_string())
            .max_input_chars_per_word(100)
            .build()
            .map_err(|e| Error::Vocab(e.to_string()))?;
        let mut inner = tokenizers::Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::new(
                true,
                true,
                strip_accents,
                lowercase,
            )))
            .with_pre_tokenizer(Some(BertPreTokenizer));
        Ok(WordPieceTokenizer {
            inner,
            cls,
            sep,
            vocab_size: lines,
        })
    }

    /// The id of `[CLS]`.
    pub fn cls(&self) -> u32 {
        self.cls
    }

    /// The id of `[SEP]`.
    pub fn sep(&self) -> u32 {
        self.sep
    }

    /// Lines in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The tokens of `text`, without `[CLS]`/`[SEP]`, with character offsets into `text`.
    /// Whitespace and characters BERT's cleaning removes (controls, U+FFFD, NUL) produce no
    /// token.
    pub fn tokenize(&self, text: &str) -> Result<Vec<Token>> {
        // `encode_char_offsets` reports offsets in characters of the original (un-normalized)
        // input; plain `encode` would report bytes.
        let encoding = self
            .inner
            .encode_char_offsets(text, false)
            .map_err(|e| Error::Tokenize(e.to_string()))?;
        let mut tokens = Vec::with_capacity(encoding.len());
        for (k, (&id, piece)) in encoding
            .get_ids()
            .iter()
            .zip(encoding.get_tokens())
            .enumerate()
        {
            let (start, end) = encoding.get_offsets()[k];
            let word = encoding.get_word_ids()[k].unwrap_or(u32::MAX);
            tokens.push(Token {
                id,
                piece: piece.clone(),
                start,
                end,
                word,
            });
        }
        Ok(tokens)
    }
}
