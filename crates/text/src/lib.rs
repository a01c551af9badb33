//! The pure-logic core of the model server's named-entity-recognition (NER) text pipeline.
//!
//! A token-classification model with a CRF head emits, per sequence, a `[seq_len, num_tags]`
//! emission matrix and a learned `[num_tags, num_tags]` transition matrix. This crate turns
//! those numbers into a tag path ([`viterbi_decode`], [`viterbi_decode_padded`]) and a tag path
//! into entities with character offsets ([`entities`]).
//!
//! Architecture invariants: this crate does no I/O, knows no transport (HTTP, gRPC, JSON) and
//! no inference backend; it only computes. Every function is deterministic, and malformed
//! shapes are reported as [`Error`] values rather than panics.

mod entity;
mod viterbi;

pub use entity::{Entity, TagScheme, entities};
pub use viterbi::{PADDED_SMALL, viterbi_decode, viterbi_decode_padded};

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
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
