//! Integration tests of mofang-text: Viterbi decoding against brute force and a literal
//! re-implementation of the TensorFlow algorithm, the padded start state against explicitly
//! built padded matrices, and entity extraction for every tag scheme.

use mofang_text::{
    Entity, PADDED_SMALL, TagScheme, entities, viterbi_decode, viterbi_decode_padded,
};

/// A small deterministic generator (Knuth's MMIX LCG).
struct Lcg(u64);

impl Lcg {
    fn next_u32(&mut self) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as u32
    }

    /// A float in [-4, 4) with a fractional part.
    fn float(&mut self) -> f32 {
        (self.next_u32() % 8000) as f32 / 1000.0 - 4.0
    }

    /// A small integer-valued float in [-2, 2]: sums stay exact, so ties are common and exact.
    fn small_int(&mut self) -> f32 {
        (self.next_u32() % 5) as f32 - 2.0
    }

    fn vec(&mut self, len: usize, ties: bool) -> Vec<f32> {
        (0..len)
            .map(|_| if ties { self.small_int() } else { self.float() })
            .collect()
    }
}

/// The score of one path, summed in f64.
fn path_score(scores: &[f32], num_tags: usize, transitions: &[f32], path: &[usize]) -> f64 {
    let mut total = 0.0f64;
    for (t, &tag) in path.iter().enumerate() {
        total += f64::from(scores[t * num_tags + tag]);
        if t > 0 {
            total += f64::from(transitions[path[t - 1] * num_tags + tag]);
        }
    }
    total
}

/// The best score over every one of the `num_tags ^ seq_len` paths.
fn brute_force_max(scores: &[f32], seq_len: usize, num_tags: usize, transitions: &[f32]) -> f64 {
    let mut best = f64::NEG_INFINITY;
    let mut path = vec![0usize; seq_len];
    loop {
        best = best.max(path_score(scores, num_tags, transitions, &path));
        // Odometer increment.
        let mut pos = 0;
        loop {
            if pos == seq_len {
                return best;
            }
            path[pos] += 1;
            if path[pos] < num_tags {
                break;
            }
            path[pos] = 0;
            pos += 1;
        }
    }
}

/// A literal transcription of `tf.contrib.crf.viterbi_decode`, with NumPy's `max(axis=0)` and
/// `argmax(axis=0)` written out as "the maximum" and "the first index holding it".
fn tf_literal(
    scores: &[f32],
    seq_len: usize,
    num_tags: usize,
    transitions: &[f32],
) -> (Vec<usize>, f32) {
    let score: Vec<&[f32]> = scores.chunks(num_tags).collect();
    let trans: Vec<&[f32]> = transitions.chunks(num_tags).collect();
    let mut trellis = vec![vec![0.0f32; num_tags]; seq_len];
    let mut backpointers = vec![vec![0usize; num_tags]; seq_len];
    trellis[0] = score[0].to_vec();
    for t in 1..seq_len {
        // v = np.expand_dims(trellis[t - 1], 1) + transition_params
        let v: Vec<Vec<f32>> = (0..num_tags)
            .map(|i| {
                (0..num_tags)
                    .map(|j| trellis[t - 1][i] + trans[i][j])
                    .collect()
            })
            .collect();
        for j in 0..num_tags {
            let column: Vec<f32> = v.iter().map(|row| row[j]).collect();
            let max = column.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            trellis[t][j] = score[t][j] + max;
            backpointers[t][j] = column
                .iter()
                .position(|&x| x == max)
                .expect("the maximum is in its column");
        }
    }
    let last = &trellis[seq_len - 1];
    let max = last.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut viterbi = vec![last.iter().position(|&x| x == max).expect("max is present")];
    for bp in backpointers[1..].iter().rev() {
        let prev = bp[*viterbi.last().expect("viterbi is never empty")];
        viterbi.push(prev);
    }
    viterbi.reverse();
    (viterbi, max)
}

#[test]
fn viterbi_matches_brute_force_and_tf_on_random_scores() {
    for seed in 0..300u64 {
        let mut rng = Lcg(seed);
        let seq_len = 1 + (rng.next_u32() % 5) as usize;
        let num_tags = 1 + (rng.next_u32() % 4) as usize;
        let scores = rng.vec(seq_len * num_tags, false);
        let transitions = rng.vec(num_tags * num_tags, false);

        let (path, score) =
            viterbi_decode(&scores, seq_len, num_tags, &transitions).expect("valid shape");
        assert_eq!(path.len(), seq_len, "seed {seed}");
        let best = brute_force_max(&scores, seq_len, num_tags, &transitions);
        assert!(
            (f64::from(score) - best).abs() < 1e-4,
            "seed {seed}: {score} vs {best}"
        );
        let achieved = path_score(&scores, num_tags, &transitions, &path);
        assert!((achieved - best).abs() < 1e-4, "seed {seed}: path {path:?}");
        assert_eq!(
            (path, score),
            tf_literal(&scores, seq_len, num_tags, &transitions),
            "seed {seed}"
        );
    }
}

#[test]
fn viterbi_ties_follow_numpy_first_index() {
    let mut tied_paths = 0;
    for seed in 0..300u64 {
        let mut rng = Lcg(seed ^ 0x5eed);
        let seq_len = 1 + (rng.next_u32() % 5) as usize;
        let num_tags = 1 + (rng.next_u32() % 4) as usize;
        let scores = rng.vec(seq_len * num_tags, true);
        let transitions = rng.vec(num_tags * num_tags, true);

        let (path, score) =
            viterbi_decode(&scores, seq_len, num_tags, &transitions).expect("valid shape");
        // Integer-valued: every sum is exact, so equalities are exact.
        let best = brute_force_max(&scores, seq_len, num_tags, &transitions);
        assert_eq!(f64::from(score), best, "seed {seed}");
        assert_eq!(
            path_score(&scores, num_tags, &transitions, &path),
            best,
            "seed {seed}"
        );
        let literal = tf_literal(&scores, seq_len, num_tags, &transitions);
        assert_eq!((path.clone(), score), literal, "seed {seed}");
        if path.iter().any(|&tag| tag != 0) {
            tied_paths += 1;
        }
    }
    assert!(
        tied_paths > 0,
        "the generator should exercise non-trivial paths"
    );
}

#[test]
fn viterbi_explicit_ties() {
    // All zeros: every path ties; NumPy picks index 0 everywhere.
    let (path, score) = viterbi_decode(&[0.0; 12], 4, 3, &[0.0; 9]).expect("valid shape");
    assert_eq!(path, vec![0, 0, 0, 0]);
    assert_eq!(score, 0.0);

    // Leaving tags 1 and 2 is worth 1 and they tie; every last tag ties.
    #[rustfmt::skip]
    let transitions = [
        0.0, 0.0, 0.0,
        1.0, 1.0, 1.0,
        1.0, 1.0, 1.0,
    ];
    let (path, score) = viterbi_decode(&[0.0; 9], 3, 3, &transitions).expect("valid shape");
    assert_eq!(path, vec![1, 1, 0]);
    assert_eq!(score, 2.0);
    assert_eq!((path, score), tf_literal(&[0.0; 9], 3, 3, &transitions));
}

/// The padded matrix built the long way: a row-of-rows, then flattened.
fn explicitly_padded(logits: &[f32], num_tags: usize) -> Vec<f32> {
    let mut rows: Vec<Vec<f32>> = Vec::new();
    let mut start = vec![-1000.0f32; num_tags];
    start.push(0.0);
    rows.push(start);
    for row in logits.chunks(num_tags) {
        let mut padded = row.to_vec();
        padded.push(-1000.0);
        rows.push(padded);
    }
    rows.concat()
}

#[test]
fn padded_matches_decoding_the_explicit_padded_matrix() {
    assert_eq!(PADDED_SMALL, -1000.0);
    for seed in 0..300u64 {
        let mut rng = Lcg(seed.wrapping_mul(7919));
        let ties = seed % 2 == 0;
        let seq_len = (rng.next_u32() % 5) as usize;
        let num_tags = 1 + (rng.next_u32() % 4) as usize;
        let dim = num_tags + 1;
        let logits = rng.vec(seq_len * num_tags, ties);
        let trans = rng.vec(dim * dim, ties);

        let (path, score) =
            viterbi_decode_padded(&logits, seq_len, num_tags, &trans).expect("valid shape");
        let padded = explicitly_padded(&logits, num_tags);
        let (full, full_score) =
            viterbi_decode(&padded, seq_len + 1, dim, &trans).expect("valid padded shape");
        assert_eq!(
            full[0], num_tags,
            "seed {seed}: the first position is the start state"
        );
        assert_eq!(path, full[1..].to_vec(), "seed {seed}");
        assert_eq!(score, full_score, "seed {seed}");
        assert!(path.iter().all(|&tag| tag < num_tags), "seed {seed}");

        if seq_len > 0 {
            // Brute force over real tags, with the start state's transition row in front.
            let inner: Vec<f32> = (0..num_tags)
                .flat_map(|i| trans[i * dim..i * dim + num_tags].to_vec())
                .collect();
            let mut with_start = logits.clone();
            for (tag, value) in with_start[..num_tags].iter_mut().enumerate() {
                *value += trans[num_tags * dim + tag];
            }
            let best = brute_force_max(&with_start, seq_len, num_tags, &inner);
            assert!(
                (f64::from(score) - best).abs() < 1e-3,
                "seed {seed}: {score} vs {best}"
            );
        } else {
            assert!(path.is_empty());
            assert_eq!(score, 0.0);
        }
    }
}

const SENTENCE: &str = "重庆市南川中学副校长张竞说,寒假放假前高三年级还有10%左右的内容没复习完";

/// Per-character tags of [`SENTENCE`]: the twelve entity characters, then `O` to the end.
fn sentence_tags(entity_tags: &[&'static str]) -> Vec<&'static str> {
    let mut tags = entity_tags.to_vec();
    tags.resize(SENTENCE.chars().count(), "O");
    tags
}

/// The expected entity, with offsets computed from where `word` occurs in `text`.
fn expected(text: &str, word: &str, ty: &str) -> Entity {
    let byte = text.find(word).expect("the word occurs in the text");
    let start = text[..byte].chars().count();
    Entity {
        word: word.to_owned(),
        start,
        end: start + word.chars().count(),
        r#type: ty.to_owned(),
    }
}

fn sentence_expected() -> Vec<Entity> {
    vec![
        expected(SENTENCE, "重庆市", "LOC"),
        expected(SENTENCE, "南川中学", "ORG"),
        expected(SENTENCE, "副校长", "POS"),
        expected(SENTENCE, "张竞", "PER"),
    ]
}

fn char_spans(text: &str) -> Vec<(usize, usize)> {
    (0..text.chars().count()).map(|i| (i, i + 1)).collect()
}

#[test]
fn sentence_bio() {
    #[rustfmt::skip]
    let tags = sentence_tags(&[
        "B-LOC", "I-LOC", "I-LOC",
        "B-ORG", "I-ORG", "I-ORG", "I-ORG",
        "B-POS", "I-POS", "I-POS",
        "B-PER", "I-PER",
    ]);
    let got = entities(&char_spans(SENTENCE), SENTENCE, &tags, TagScheme::Bio);
    assert_eq!(got, sentence_expected());
    // Sanity-check the offsets the helper computed: they are character, not byte, offsets.
    assert_eq!((got[3].start, got[3].end), (10, 12));
}

#[test]
fn sentence_bioes() {
    #[rustfmt::skip]
    let tags = sentence_tags(&[
        "B-LOC", "I-LOC", "E-LOC",
        "B-ORG", "I-ORG", "I-ORG", "E-ORG",
        "B-POS", "I-POS", "E-POS",
        "B-PER", "E-PER",
    ]);
    let got = entities(&char_spans(SENTENCE), SENTENCE, &tags, TagScheme::Bioes);
    assert_eq!(got, sentence_expected());
}

#[test]
fn sentence_bmes() {
    #[rustfmt::skip]
    let tags = sentence_tags(&[
        "B-LOC", "M-LOC", "E-LOC",
        "B-ORG", "M-ORG", "M-ORG", "E-ORG",
        "B-POS", "M-POS", "E-POS",
        "B-PER", "E-PER",
    ]);
    let got = entities(&char_spans(SENTENCE), SENTENCE, &tags, TagScheme::Bmes);
    assert_eq!(got, sentence_expected());
}

#[test]
fn bmes_single_and_lenient_middle() {
    let text = "张说北京";
    // S- is a one-character entity; an M- after O starts an entity.
    let tags = ["S-PER", "O", "M-LOC", "E-LOC"];
    let got = entities(&char_spans(text), text, &tags, TagScheme::Bmes);
    assert_eq!(
        got,
        vec![expected(text, "张", "PER"), expected(text, "北京", "LOC")]
    );
}

#[test]
fn word_level_spans() {
    let text = "Alice visited New York.";
    // One token per word (and the full stop), with character spans.
    let spans = [(0, 5), (6, 13), (14, 17), (18, 22), (22, 23)];
    let tags = ["B-PER", "O", "B-LOC", "I-LOC", "O"];
    let got = entities(&spans, text, &tags, TagScheme::Bio);
    assert_eq!(
        got,
        vec![
            expected(text, "Alice", "PER"),
            expected(text, "New York", "LOC")
        ]
    );
}

#[test]
fn decode_then_extract() {
    // Tags: 0 = O, 1 = B-LOC, 2 = I-LOC. Transitions forbid O -> I-LOC.
    let names = ["O", "B-LOC", "I-LOC"];
    let text = "去北京";
    #[rustfmt::skip]
    let transitions = [
        0.0, 0.0, -100.0,
        0.0, 0.0, 0.0,
        0.0, 0.0, 0.0,
    ];
    // The emissions alone would say O I-LOC I-LOC.
    #[rustfmt::skip]
    let scores = [
        5.0, 0.0, 0.0,
        0.0, 1.0, 2.0,
        0.0, 0.0, 3.0,
    ];
    let (path, _) = viterbi_decode(&scores, 3, 3, &transitions).expect("valid shape");
    assert_eq!(path, vec![0, 1, 2]);
    let tags: Vec<&str> = path.iter().map(|&id| names[id]).collect();
    let got = entities(&char_spans(text), text, &tags, TagScheme::Bio);
    assert_eq!(got, vec![expected(text, "北京", "LOC")]);
}
