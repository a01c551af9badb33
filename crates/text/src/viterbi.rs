//! Viterbi decoding of a linear-chain CRF, bit-for-bit the NumPy algorithm of
//! `tf.contrib.crf.viterbi_decode`, plus the padded-start-state variant used by BiLSTM-CRF NER
//! code.

use crate::{Error, Result};

/// The score given to the artificial start state everywhere except at the artificial first
/// position (and to every real tag at that position) by [`viterbi_decode_padded`].
pub const PADDED_SMALL: f32 = -1000.0;

/// Finds the highest-scoring tag path of one sequence, exactly as
/// `tf.contrib.crf.viterbi_decode` does.
///
/// * `scores` is the `[seq_len, num_tags]` emission matrix, row-major (row `t` holds the
///   unary score of every tag at position `t`).
/// * `transitions` is the `[num_tags, num_tags]` matrix, row-major, where
///   `transitions[i * num_tags + j]` is the score of moving from tag `i` to tag `j`.
///
/// The algorithm: `trellis[0] = scores[0]`; for `t >= 1`,
/// `v[i][j] = trellis[t-1][i] + transitions[i][j]`, `trellis[t][j] = scores[t][j] + max_i v[i][j]`
/// and `backpointers[t][j] = argmax_i v[i][j]`. The last tag is `argmax(trellis[seq_len-1])` and
/// the earlier ones follow the backpointers. Returns the path and `max(trellis[seq_len-1])`.
///
/// Ties follow NumPy's `argmax`: the **first** maximal index wins. NaN follows NumPy too: the
/// first NaN counts as the maximum (and the maximum is then NaN). Arithmetic is in `f32`.
///
/// An empty sequence (`seq_len == 0`) yields an empty path and a score of `0.0` (TensorFlow
/// would fail on it). Shapes are validated: a wrong `scores` or `transitions` length, a
/// non-empty sequence with `num_tags == 0`, or an overflowing shape is an [`Error`].
pub fn viterbi_decode(
    scores: &[f32],
    seq_len: usize,
    num_tags: usize,
    transitions: &[f32],
) -> Result<(Vec<usize>, f32)> {
    validate(scores, seq_len, num_tags, transitions.len(), num_tags)?;
    if seq_len == 0 {
        return Ok((Vec::new(), 0.0));
    }
    Ok(decode_unchecked(scores, seq_len, num_tags, transitions))
}

/// Decodes with an artificial start state, as the NumPy decode step of BiLSTM-CRF NER models
/// (the `decode` method that wraps `viterbi_decode` with `small = -1000.0`) does.
///
/// * `logits` is the `[seq_len, num_tags]` emission matrix of the real tags, row-major.
/// * `trans` is the `[(num_tags + 1), (num_tags + 1)]` transition matrix, row-major, whose last
///   row and column belong to the start state (index `num_tags`).
///
/// The construction, with `small = ` [`PADDED_SMALL`] (`-1000.0`):
/// 1. every row of `logits` gets one extra column holding `small` (the start state is all but
///    impossible at a real position), giving `[seq_len, num_tags + 1]`;
/// 2. the row `[small; num_tags] ++ [0.0]` is prepended (at the artificial first position only
///    the start state is plausible), giving `[seq_len + 1, num_tags + 1]`;
/// 3. that matrix is decoded by [`viterbi_decode`] with `trans`, so the learned start-state row
///    of `trans` scores the first real tag;
/// 4. the first element of the path (the artificial position) is dropped.
///
/// The returned score is the score of the whole padded path, i.e. it includes the `0.0` of the
/// start row and the start-to-first-tag transition. The path holds `seq_len` tags; as in the
/// original, a tag equal to `num_tags` (the start state) can in principle appear if real
/// logits are far below `small`. For `seq_len == 0` the path is empty and the score `0.0`.
/// Ties and NaN behave as in [`viterbi_decode`].
pub fn viterbi_decode_padded(
    logits: &[f32],
    seq_len: usize,
    num_tags: usize,
    trans: &[f32],
) -> Result<(Vec<usize>, f32)> {
    let dim = num_tags
        .checked_add(1)
        .ok_or(Error::ShapeOverflow { seq_len, num_tags })?;
    validate(logits, seq_len, num_tags, trans.len(), dim)?;
    let padded_len = seq_len + 1;
    let mut padded = Vec::with_capacity(padded_len * dim);
    padded.extend(std::iter::repeat_n(PADDED_SMALL, num_tags));
    padded.push(0.0);
    if num_tags > 0 {
        for row in logits.chunks_exact(num_tags) {
            padded.extend_from_slice(row);
            padded.push(PADDED_SMALL);
        }
    }
    let (mut path, score) = decode_unchecked(&padded, padded_len, dim, trans);
    path.remove(0);
    Ok((path, score))
}

/// Checks `scores` against `[seq_len, num_tags]` and the transition length against
/// `[trans_dim, trans_dim]`.
fn validate(
    scores: &[f32],
    seq_len: usize,
    num_tags: usize,
    transitions_len: usize,
    trans_dim: usize,
) -> Result<()> {
    let overflow = Error::ShapeOverflow { seq_len, num_tags };
    let expected = seq_len.checked_mul(num_tags).ok_or(overflow.clone())?;
    if scores.len() != expected {
        return Err(Error::ScoresLen {
            seq_len,
            num_tags,
            expected,
            actual: scores.len(),
        });
    }
    let expected = trans_dim.checked_mul(trans_dim).ok_or(overflow)?;
    if transitions_len != expected {
        return Err(Error::TransitionsLen {
            dim: trans_dim,
            expected,
            actual: transitions_len,
        });
    }
    if seq_len > 0 && num_tags == 0 {
        return Err(Error::NoTags { seq_len });
    }
    Ok(())
}

/// The TensorFlow algorithm; shapes must already be valid and `seq_len >= 1`, `num_tags >= 1`.
fn decode_unchecked(
    scores: &[f32],
    seq_len: usize,
    num_tags: usize,
    transitions: &[f32],
) -> (Vec<usize>, f32) {
    let mut backpointers = vec![0usize; seq_len * num_tags];
    let mut prev: Vec<f32> = scores[..num_tags].to_vec();
    let mut next = vec![0.0f32; num_tags];
    for t in 1..seq_len {
        for (j, slot) in next.iter_mut().enumerate() {
            // Column j of v = prev[:, None] + transitions, reduced over axis 0.
            let (best_i, best) =
                argmax((0..num_tags).map(|i| prev[i] + transitions[i * num_tags + j]));
            backpointers[t * num_tags + j] = best_i;
            *slot = scores[t * num_tags + j] + best;
        }
        std::mem::swap(&mut prev, &mut next);
    }
    let (last, score) = argmax(prev.iter().copied());
    let mut path = vec![0usize; seq_len];
    path[seq_len - 1] = last;
    for t in (1..seq_len).rev() {
        path[t - 1] = backpointers[t * num_tags + path[t]];
    }
    (path, score)
}

/// NumPy's `argmax` with the matching `max`: the first maximal index, except that the first
/// NaN wins outright. The iterator must not be empty.
fn argmax(values: impl Iterator<Item = f32>) -> (usize, f32) {
    let mut best: Option<(usize, f32)> = None;
    for (i, v) in values.enumerate() {
        match best {
            None => best = Some((i, v)),
            Some((_, b)) if b.is_nan() => return best.expect("checked Some above"),
            Some((_, b)) => {
                if v.is_nan() || v > b {
                    best = Some((i, v));
                }
            }
        }
    }
    best.expect("argmax is only called on non-empty rows")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax([1.0, 3.0, 3.0, 2.0].into_iter()), (1, 3.0));
    }

    #[test]
    fn argmax_takes_first_nan_like_numpy() {
        let (i, v) = argmax([1.0, f32::NAN, 5.0, f32::NAN].into_iter());
        assert_eq!(i, 1);
        assert!(v.is_nan());
        let (i, v) = argmax([f32::NAN, 5.0].into_iter());
        assert_eq!(i, 0);
        assert!(v.is_nan());
    }

    #[test]
    fn argmax_handles_infinities() {
        assert_eq!(
            argmax([f32::NEG_INFINITY, f32::NEG_INFINITY].into_iter()),
            (0, f32::NEG_INFINITY)
        );
        assert_eq!(argmax([0.0, f32::INFINITY].into_iter()), (1, f32::INFINITY));
    }

    #[test]
    fn single_position_is_argmax_of_scores() {
        let (path, score) = viterbi_decode(&[0.5, 2.0, 2.0], 1, 3, &[0.0; 9]).expect("valid shape");
        assert_eq!(path, vec![1]);
        assert_eq!(score, 2.0);
    }

    #[test]
    fn transitions_can_override_emissions() {
        // Tag 1 is best at both positions alone, but 1 -> 1 is heavily penalised.
        let scores = [0.0, 1.0, 0.0, 1.0];
        let transitions = [0.0, 0.0, 0.0, -10.0];
        let (path, score) = viterbi_decode(&scores, 2, 2, &transitions).expect("valid shape");
        // trellis[0] = [0, 1]. Tag 0 at t=1: max(0 + 0, 1 + 0) = 1 from tag 1, total 1.
        // Tag 1 at t=1: max(0 + 0, 1 - 10) = 0 from tag 0, total 1. The tie goes to tag 0.
        assert_eq!(path, vec![1, 0]);
        assert_eq!(score, 1.0);
    }

    #[test]
    fn empty_sequence() {
        assert_eq!(viterbi_decode(&[], 0, 4, &[0.0; 16]), Ok((Vec::new(), 0.0)));
        assert_eq!(viterbi_decode(&[], 0, 0, &[]), Ok((Vec::new(), 0.0)));
        assert_eq!(
            viterbi_decode_padded(&[], 0, 2, &[0.0; 9]),
            Ok((Vec::new(), 0.0))
        );
    }

    #[test]
    fn shape_errors() {
        assert_eq!(
            viterbi_decode(&[0.0; 5], 2, 3, &[0.0; 9]),
            Err(Error::ScoresLen {
                seq_len: 2,
                num_tags: 3,
                expected: 6,
                actual: 5
            })
        );
        assert_eq!(
            viterbi_decode(&[0.0; 6], 2, 3, &[0.0; 8]),
            Err(Error::TransitionsLen {
                dim: 3,
                expected: 9,
                actual: 8
            })
        );
        assert_eq!(
            viterbi_decode(&[], 2, 0, &[]),
            Err(Error::NoTags { seq_len: 2 })
        );
        assert_eq!(
            viterbi_decode(&[], usize::MAX, 2, &[0.0; 4]),
            Err(Error::ShapeOverflow {
                seq_len: usize::MAX,
                num_tags: 2
            })
        );
        // The padded variant wants (num_tags + 1)^2 transitions.
        assert_eq!(
            viterbi_decode_padded(&[0.0; 6], 2, 3, &[0.0; 9]),
            Err(Error::TransitionsLen {
                dim: 4,
                expected: 16,
                actual: 9
            })
        );
        assert_eq!(
            viterbi_decode_padded(&[], 1, 0, &[0.0]),
            Err(Error::NoTags { seq_len: 1 })
        );
    }

    #[test]
    fn error_messages_name_the_problem() {
        let err = viterbi_decode(&[0.0; 5], 2, 3, &[0.0; 9]).expect_err("wrong length");
        assert_eq!(
            err.to_string(),
            "scores has 5 values but seq_len 2 x num_tags 3 needs 6"
        );
    }

    #[test]
    fn padded_start_row_scores_first_tag() {
        // Emissions alone prefer tag 0, but the start -> tag 1 transition wins.
        let logits = [1.0, 0.0];
        #[rustfmt::skip]
        let trans = [
            0.0, 0.0, 0.0,
            0.0, 0.0, 0.0,
            0.0, 5.0, 0.0, // from the start state
        ];
        let (path, score) = viterbi_decode_padded(&logits, 1, 2, &trans).expect("valid shape");
        assert_eq!(path, vec![1]);
        assert_eq!(score, 5.0);
    }
}
