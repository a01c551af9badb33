//! The pure-logic core of the model server's named-entity-recognition (NER) text pipeline.
//!
//! A [`TokenClassifier`] (built from a [`TokenClassificationConfig`] and the contents of the
//! model's `vocab.txt`, tags and transitions files) turns texts into fixed-length model rows
//! ([`TokenClassifier::encode`]: BERT WordPiece with character offsets, `[CLS]`/`[SEP]`,
//! padding, long texts split into overlapping windows) and the model's scores back into
//! entities ([`TokenClassifier::decode`]). Underneath: a token-classification model with a CRF
//! head emits, per sequence, a `[seq_len, num_tags]` emission matrix and a learned
//! `[num_tags, num_tags]` transition matrix; [`viterbi_decode`] / [`viterbi_decode_padded`]
//! turn those into a tag path and [`entities`] turns a tag path into entities with character
//! offsets.
//!
//! Architecture invariants: this crate does no I/O (callers read the files and pass their
//! text), knows no transport (HTTP, gRPC) and no inference backend; it only computes. Every
//! function is deterministic, and malformed input or shapes are reported as [`Error`] values
//! rather than panics. Offsets are always Unicode character offsets into the original text.

mod config;
mod entity;
mod pipeline;
mod viterbi;
mod wordpiece;

pub use config::{
    DEFAULT_LENGTHS_OUTPUT, DEFAULT_SEGMENT_INPUT, InputNames, OutputNames, SchemeName,
    TokenClassificationConfig, TransitionsSource,
};
pub use entity::{Entity, TagScheme, entities};
pub use pipeline::{
    Encoded, Labelled, Scores, TaggedToken, TokenClassifier, parse_tags, parse_transitions,
};
pub use viterbi::{PADDED_SMALL, viterbi_decode, viterbi_decode_padded};
pub use wordpiece::{Token, WordPieceTokenizer};

/// Errors of the text pipeline: all describe input whose shape does not match what was declared.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The emission matrix does not hold `seq_len * num_tags` values.
    #[error(
        "scores has {actual} values but seq_len {seq_len} x num_tags {num_tags} needs {expected}"
    )]
    ScoresLen {
        seq_len: usize,
        num_tags: usize,
        expected: usize,
        actual: usize,
    },
    /// The transition matrix does not hold `dim * dim` values.
    #[error("transitions has {actual} values but a {dim}x{dim} matrix needs {expected}")]
    TransitionsLen {
        dim: usize,
        expected: usize,
        actual: usize,
    },
    /// A non-empty sequence was given zero tags, so no path exists.
    #[error("seq_len is {seq_len} but num_tags is 0: there is no tag to assign")]
    NoTags { seq_len: usize },
    /// `seq_len * num_tags` (or `num_tags * num_tags`) does not fit in `usize`.
    #[error("shape seq_len {seq_len} x num_tags {num_tags} overflows usize")]
    ShapeOverflow { seq_len: usize, num_tags: usize },
    /// The pipeline config is invalid; the message names the field.
    #[error("{0}")]
    Config(String),
    /// The vocabulary cannot be used.
    #[error("vocabulary: {0}")]
    Vocab(String),
    /// The tags cannot be used.
    #[error("tags: {0}")]
    Tags(String),
    /// The transition matrix cannot be used.
    #[error("transitions: {0}")]
    Transitions(String),
    /// The tokenizer failed on a text.
    #[error("cannot tokenize the text: {0}")]
    Tokenize(String),
    /// The model's outputs do not fit the pipeline config.
    #[error("{0}")]
    Output(String),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
