//! Model scores to labelled, ranked predictions.

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::{ImageClassificationConfig, Softmax};

/// How far from 1 the sum of scores may be for `softmax: auto` to take them
/// as probabilities already.
const PROBABILITY_SUM_TOLERANCE: f64 = 1e-3;

/// One ranked class.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// Position of the class in the model's output.
    pub index: usize,
    /// The class's line in the labels file, or `index` as text when there is
    /// no such line.
    pub label: String,
    /// The class's probability (its raw score under `softmax: false`).
    pub probability: f32,
}

/// Ranks the model's scores for one image and returns the best `cfg.top_k`.
///
/// Scores go through [`softmax`] as `cfg.softmax` says. Predictions are
/// ordered by probability, highest first; equal probabilities keep the lower
/// index first and NaN comes last. The label of index `i` is
/// `labels[i - cfg.label_offset]` when that exists.
pub fn top_k(
    scores: &[f32],
    cfg: &ImageClassificationConfig,
    labels: Option<&[String]>,
) -> Vec<Prediction> {
    if cfg.top_k == 0 {
        return Vec::new();
    }
    let probabilities = match cfg.softmax {
        Softmax::Always => Cow::Owned(softmax(scores)),
        Softmax::Never => Cow::Borrowed(scores),
        Softmax::Auto if looks_like_probabilities(scores) => Cow::Borrowed(scores),
        Softmax::Auto => Cow::Owned(softmax(scores)),
    };
    let probabilities = probabilities.as_ref();

    let rank = |&a: &usize, &b: &usize| {
        by_descending_probability(probabilities[a], probabilities[b]).then(a.cmp(&b))
    };
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    // `rank` is a total order, so partitioning first and sorting only the
    // kept part gives the same result as a full sort.
    if cfg.top_k < order.len() {
        order.select_nth_unstable_by(cfg.top_k - 1, rank);
        order.truncate(cfg.top_k);
    }
    order.sort_unstable_by(rank);

    order
        .into_iter()
        .map(|index| Prediction {
            index,
            label: label(index, cfg.label_offset, labels),
            probability: probabilities[index],
        })
        .collect()
}

/// Higher probabilities first, NaN after every number.
fn by_descending_probability(a: f32, b: f32) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        // Neither is NaN, so `partial_cmp` always answers.
        (false, false) => b.partial_cmp(&a).unwrap_or(Ordering::Equal),
    }
}

fn label(index: usize, offset: usize, labels: Option<&[String]>) -> String {
    index
        .checked_sub(offset)
        .and_then(|line| labels?.get(line))
        .cloned()
        .unwrap_or_else(|| index.to_string())
}

/// Whether `scores` are already a probability distribution: every score
/// between 0 and 1, summing to 1 within [`PROBABILITY_SUM_TOLERANCE`].
fn looks_like_probabilities(scores: &[f32]) -> bool {
    scores.iter().all(|p| (0.0..=1.0).contains(p))
        && (scores.iter().map(|&p| f64::from(p)).sum::<f64>() - 1.0).abs()
            <= PROBABILITY_SUM_TOLERANCE
}

/// The softmax of `scores`: `exp(s_i) / sum_j exp(s_j)`.
///
/// Computed after subtracting the largest score, so large logits do not
/// overflow. NaN scores stay NaN and take no share of the probability. When
/// the largest score is infinite, the scores equal to it share the
/// probability equally (the limit of the finite case).
pub fn softmax(scores: &[f32]) -> Vec<f32> {
    let max = scores
        .iter()
        .copied()
        .filter(|s| !s.is_nan())
        .fold(f32::NEG_INFINITY, f32::max);

    if max.is_infinite() {
        let ties = scores.iter().filter(|&&s| s == max).count() as f32;
        return scores
            .iter()
            .map(|&s| match s {
                s if s.is_nan() => f32::NAN,
                s if s == max => 1.0 / ties,
                _ => 0.0,
            })
            .collect();
    }

    let exps: Vec<f32> = scores.iter().map(|&s| (s - max).exp()).collect();
    // At least the maximum contributes exp(0) = 1, so the sum is >= 1.
    let sum: f32 = exps.iter().filter(|e| !e.is_nan()).sum();
    exps.into_iter().map(|e| e / sum).collect()
}

/// Splits a labels file into one label per line.
///
/// Trailing whitespace (including the `\r` of CRLF files) is trimmed and a
/// leading byte-order mark is dropped. Empty lines are kept as empty labels so
/// that line numbers stay aligned with class indices; only the empty "line"
/// after a final newline is dropped.
pub fn parse_labels(text: &str) -> Vec<String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines: Vec<&str> = text.split('\n').collect();
    if lines.last() == Some(&"") {
        lines.pop();
    }
    lines
        .into_iter()
        .map(|line| line.trim_end().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layout, Normalize, ResizeFilter};

    fn cfg(softmax: Softmax, top_k: usize, label_offset: usize) -> ImageClassificationConfig {
        ImageClassificationConfig {
            input: None,
            output: None,
            size: [1, 1],
            layout: Layout::Nchw,
            normalize: Normalize::None,
            softmax,
            top_k,
            resize: ResizeFilter::Bilinear,
            labels: None,
            label_offset,
        }
    }

    fn labels(names: &[&str]) -> Vec<String> {
        names.iter().map(|&n| n.to_owned()).collect()
    }

    fn indices(predictions: &[Prediction]) -> Vec<usize> {
        predictions.iter().map(|p| p.index).collect()
    }

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() <= 1e-6
    }

    #[test]
    fn softmax_matches_the_definition() {
        let scores = [1.0_f32, 2.0, 3.0, -1.0];
        let denominator: f64 = scores.iter().map(|&s| f64::from(s).exp()).sum();
        let probabilities = softmax(&scores);
        assert_eq!(probabilities.len(), scores.len());
        for (&s, &p) in scores.iter().zip(&probabilities) {
            let expected = (f64::from(s).exp() / denominator) as f32;
            assert!(
                close(p, expected),
                "softmax({s}) = {p}, expected {expected}"
            );
        }
        assert!(close(probabilities.iter().sum(), 1.0));
    }

    #[test]
    fn softmax_survives_large_logits() {
        // exp(1000) overflows f32 and f64; shifted by the maximum it does not.
        let probabilities = softmax(&[1000.0, 1000.0, 999.0, -1000.0]);
        assert!(
            probabilities.iter().all(|p| p.is_finite()),
            "{probabilities:?}"
        );
        let e = 1.0_f64.exp();
        // Relative weights 1, 1, 1/e and ~0.
        let expected = [
            e / (2.0 * e + 1.0),
            e / (2.0 * e + 1.0),
            1.0 / (2.0 * e + 1.0),
            0.0,
        ];
        for (p, q) in probabilities.iter().zip(expected) {
            assert!(close(*p, q as f32), "{probabilities:?}");
        }
        assert!(close(probabilities.iter().sum(), 1.0));
    }

    #[test]
    fn softmax_of_infinite_and_nan_scores_is_defined() {
        assert_eq!(
            softmax(&[f32::INFINITY, 0.0, f32::INFINITY]),
            [0.5, 0.0, 0.5]
        );
        assert_eq!(softmax(&[f32::NEG_INFINITY, f32::NEG_INFINITY]), [0.5, 0.5]);
        let probabilities = softmax(&[0.0, f32::NAN, 0.0]);
        assert!(probabilities[1].is_nan());
        assert_eq!((probabilities[0], probabilities[2]), (0.5, 0.5));
        assert!(softmax(&[]).is_empty());
    }

    #[test]
    fn top_k_orders_by_probability() {
        let predictions = top_k(
            &[0.1, 3.0, -2.0, 2.0, 0.5],
            &cfg(Softmax::Always, 3, 0),
            None,
        );
        assert_eq!(indices(&predictions), [1, 3, 4]);
        let all = softmax(&[0.1, 3.0, -2.0, 2.0, 0.5]);
        for p in &predictions {
            assert_eq!(p.probability, all[p.index]);
            assert_eq!(p.label, p.index.to_string());
        }
    }

    #[test]
    fn top_k_breaks_ties_by_lower_index_and_puts_nan_last() {
        let scores = [0.2, f32::NAN, 0.5, 0.2, 0.5, 0.2];
        let predictions = top_k(&scores, &cfg(Softmax::Never, 6, 0), None);
        assert_eq!(indices(&predictions), [2, 4, 0, 3, 5, 1]);
        // The same with a cut inside the group of ties.
        let predictions = top_k(&scores, &cfg(Softmax::Never, 4, 0), None);
        assert_eq!(indices(&predictions), [2, 4, 0, 3]);
    }

    #[test]
    fn top_k_returns_everything_when_there_are_fewer_classes() {
        let predictions = top_k(&[0.25, 0.75], &cfg(Softmax::Never, 5, 0), None);
        assert_eq!(indices(&predictions), [1, 0]);
        assert!(top_k(&[], &cfg(Softmax::Auto, 5, 0), None).is_empty());
    }

    #[test]
    fn labels_follow_the_offset_and_fall_back_to_the_index() {
        let names = labels(&["cat", "dog"]);
        // Index 0 is "background" in front of the labels, index 3 is past them.
        let scores = [0.4, 0.3, 0.2, 0.1];
        let predictions = top_k(&scores, &cfg(Softmax::Never, 4, 1), Some(&names));
        let got: Vec<(usize, &str)> = predictions
            .iter()
            .map(|p| (p.index, p.label.as_str()))
            .collect();
        assert_eq!(got, [(0, "0"), (1, "cat"), (2, "dog"), (3, "3")]);

        let predictions = top_k(&scores, &cfg(Softmax::Never, 4, 0), Some(&names));
        assert_eq!(predictions[0].label, "cat");
        assert_eq!(predictions[2].label, "2");
    }

    #[test]
    fn auto_softmax_keeps_probabilities_and_converts_logits() {
        let probabilities = [0.1, 0.6, 0.3];
        let predictions = top_k(&probabilities, &cfg(Softmax::Auto, 1, 0), None);
        assert_eq!(predictions[0].probability, 0.6);

        // In [0, 1] but summing to 1.2: not a distribution.
        let logits = [0.1, 0.8, 0.3];
        let predictions = top_k(&logits, &cfg(Softmax::Auto, 1, 0), None);
        let expected = 0.8_f64.exp() / [0.1_f64, 0.8, 0.3].iter().map(|x| x.exp()).sum::<f64>();
        assert!(close(predictions[0].probability, expected as f32));

        // Summing to 1 but with a negative score: logits.
        let logits = [-1.0, 1.0, 1.0];
        let predictions = top_k(&logits, &cfg(Softmax::Auto, 1, 0), None);
        assert!(predictions[0].probability < 1.0);

        // `softmax: true` converts even a distribution.
        let predictions = top_k(&probabilities, &cfg(Softmax::Always, 1, 0), None);
        assert!(predictions[0].probability < 0.6);
    }

    #[test]
    fn auto_softmax_tolerates_rounding_in_the_sum() {
        assert!(looks_like_probabilities(&[0.5, 0.4995]));
        assert!(!looks_like_probabilities(&[0.5, 0.4985]));
        assert!(!looks_like_probabilities(&[f32::NAN, 1.0]));
        assert!(!looks_like_probabilities(&[]));
    }

    #[test]
    fn labels_keep_empty_lines_and_drop_the_final_newline() {
        assert_eq!(parse_labels("cat\ndog\n"), labels(&["cat", "dog"]));
        assert_eq!(parse_labels("cat\ndog"), labels(&["cat", "dog"]));
        assert_eq!(
            parse_labels("cat\r\n\r\ndog \t\r\n"),
            labels(&["cat", "", "dog"])
        );
        assert_eq!(parse_labels("a\n\n"), labels(&["a", ""]));
        assert_eq!(parse_labels("\u{feff} tench\n"), labels(&[" tench"]));
        assert_eq!(parse_labels(""), labels(&[]));
        assert_eq!(parse_labels("\n"), labels(&[""]));
    }
}
