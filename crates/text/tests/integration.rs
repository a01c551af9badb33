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

// ---------------------------------------------------------------------------------------------
// WordPiece tokenization against an independent transcription of BERT's FullTokenizer
// ---------------------------------------------------------------------------------------------

use mofang_text::{Scores, TokenClassificationConfig, TokenClassifier, WordPieceTokenizer};

/// The article's sentence, with its trailing comma.
const ARTICLE: &str = "重庆市南川中学副校长张竞说,寒假放假前高三年级还有10%左右的内容没复习完,";

/// A BERT-style vocabulary: the special tokens, every character of the article, a few words
/// and continuation pieces.
fn test_vocab() -> Vec<String> {
    let mut vocab: Vec<String> = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for c in ARTICLE.chars() {
        if !vocab.contains(&c.to_string()) {
            vocab.push(c.to_string());
        }
    }
    for w in [
        "10", "##0", "un", "##aff", "##able", "hello", "world", "##s", "北京", "a", "##b", ".",
    ] {
        vocab.push(w.to_string());
    }
    vocab
}

fn vocab_text(vocab: &[String]) -> String {
    vocab.iter().map(|t| format!("{t}\n")).collect()
}

/// BERT's `_is_chinese_char` ranges.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x4E00..=0x9FFF | 0x3400..=0x4DBF | 0x20000..=0x2A6DF | 0x2A700..=0x2B73F
        | 0x2B740..=0x2B81F | 0x2B820..=0x2CEAF | 0xF900..=0xFAFF | 0x2F800..=0x2FA1F)
}

/// Punctuation for the characters the tests use: ASCII punctuation and two CJK marks.
fn is_punct(c: char) -> bool {
    c.is_ascii_punctuation() || matches!(c, '，' | '。')
}

/// Whitespace for the characters the tests use.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{3000}')
}

/// Control characters the tests use (removed by BERT's cleaning).
fn is_control(c: char) -> bool {
    matches!(c, '\u{0}' | '\u{7}' | '\u{fffd}' | '\u{200b}')
}

/// BERT's FullTokenizer for ASCII-lower-casable text, written from its description:
/// clean, split CJK characters and punctuation into words of their own, split at whitespace,
/// lower-case, then greedy longest-match-first WordPiece. Returns (piece, start, end) with
/// character offsets.
fn reference_tokenize(text: &str, vocab: &[String]) -> Vec<(String, usize, usize)> {
    // Words as their characters, each with its offset (removed control characters join the
    // characters around them into one word, as BERT's _clean_text does).
    let mut words: Vec<Vec<(char, usize)>> = Vec::new();
    let mut current: Vec<(char, usize)> = Vec::new();
    for (i, c) in text.chars().enumerate() {
        if is_control(c) {
            continue;
        }
        if is_space(c) || is_cjk(c) || is_punct(c) {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            if !is_space(c) {
                words.push(vec![(c, i)]);
            }
        } else {
            current.push((c.to_ascii_lowercase(), i));
        }
    }
    if !current.is_empty() {
        words.push(current);
    }
    let mut out = Vec::new();
    for word in words {
        let chars: Vec<char> = word.iter().map(|(c, _)| *c).collect();
        let offset = |k: usize| word[k].1;
        let (start, end_of_word) = (offset(0), offset(chars.len() - 1) + 1);
        if chars.len() > 100 {
            out.push(("[UNK]".to_string(), start, end_of_word));
            continue;
        }
        let mut pieces = Vec::new();
        let mut from = 0;
        let mut failed = false;
        while from < chars.len() {
            let mut to = chars.len();
            let mut found = None;
            while to > from {
                let mut piece: String = chars[from..to].iter().collect();
                if from > 0 {
                    piece = format!("##{piece}");
                }
                if vocab.contains(&piece) {
                    found = Some(piece);
                    break;
                }
                to -= 1;
            }
            match found {
                Some(piece) => {
                    pieces.push((piece, offset(from), offset(to - 1) + 1));
                    from = to;
                }
                None => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            out.push(("[UNK]".to_string(), start, end_of_word));
        } else {
            out.extend(pieces);
        }
    }
    out
}

fn tokenize(tokenizer: &WordPieceTokenizer, text: &str) -> Vec<(String, usize, usize)> {
    tokenizer
        .tokenize(text)
        .expect("tokenize")
        .into_iter()
        .map(|t| (t.piece, t.start, t.end))
        .collect()
}

#[test]
fn wordpiece_tokenizes_the_article_one_token_per_character() {
    let vocab = test_vocab();
    let tokenizer = WordPieceTokenizer::from_vocab(&vocab_text(&vocab), true, None).expect("vocab");
    let got = tokenizer.tokenize(ARTICLE).expect("tokenize");
    let expected = reference_tokenize(ARTICLE, &vocab);
    assert_eq!(
        got.iter()
            .map(|t| (t.piece.clone(), t.start, t.end))
            .collect::<Vec<_>>(),
        expected
    );
    // Ids are vocabulary lines.
    for t in &got {
        assert_eq!(vocab[t.id as usize], t.piece);
    }
    // "10" is one token (in the vocabulary), every other character its own.
    assert_eq!(got.len(), ARTICLE.chars().count() - 1);
    assert!(got.iter().any(|t| t.piece == "10" && t.end - t.start == 2));
}

#[test]
fn wordpiece_matches_the_reference_on_mixed_text() {
    let vocab = test_vocab();
    let tokenizer = WordPieceTokenizer::from_vocab(&vocab_text(&vocab), true, None).expect("vocab");
    for text in [
        "Hello, 重庆 unaffable 100% x\tworlds",
        "HELLO北京！北京。ab abab",
        "  \u{7}张\u{3000}竞\u{fffd}说  ",
        "",
        "   ",
        "unaffablex 😀 a😀b",
    ] {
        assert_eq!(
            tokenize(&tokenizer, text),
            reference_tokenize(text, &vocab),
            "{text:?}"
        );
    }
}

#[test]
fn wordpiece_matches_the_reference_on_random_text() {
    let vocab = test_vocab();
    let tokenizer = WordPieceTokenizer::from_vocab(&vocab_text(&vocab), true, None).expect("vocab");
    let alphabet: Vec<char> =
        "重庆市北京张竞说龘齉,.，。 \t\n\u{3000}\u{7}10%aAbBuUnNfFlLeEsShHoOwWrRdDxX😀"
            .chars()
            .collect();
    for seed in 0..500u64 {
        let mut rng = Lcg(seed.wrapping_mul(2_654_435_761));
        let len = (rng.next_u32() % 40) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[rng.next_u32() as usize % alphabet.len()])
            .collect();
        assert_eq!(
            tokenize(&tokenizer, &text),
            reference_tokenize(&text, &vocab),
            "seed {seed}: {text:?}"
        );
    }
}

#[test]
fn wordpiece_lowercase_and_accents_follow_the_config() {
    let vocab: Vec<String> = ["[UNK]", "[CLS]", "[SEP]", "cafe", "Cafe", "café"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let text = vocab_text(&vocab);
    let lower = WordPieceTokenizer::from_vocab(&text, true, None).expect("vocab");
    // Lower-casing strips accents too (BERT uncased); offsets stay in the original text.
    assert_eq!(
        tokenize(&lower, "Café!"),
        vec![("cafe".into(), 0, 4), ("[UNK]".into(), 4, 5)]
    );
    let cased = WordPieceTokenizer::from_vocab(&text, false, None).expect("vocab");
    assert_eq!(tokenize(&cased, "Cafe"), vec![("Cafe".into(), 0, 4)]);
    assert_eq!(tokenize(&cased, "café"), vec![("café".into(), 0, 4)]);
    let keep_accents = WordPieceTokenizer::from_vocab(&text, true, Some(false)).expect("vocab");
    assert_eq!(tokenize(&keep_accents, "CAFÉ"), vec![("café".into(), 0, 4)]);
}

#[test]
fn vocabulary_errors_name_the_missing_token() {
    let e = WordPieceTokenizer::from_vocab("[UNK]\n[SEP]\n", true, None).expect_err("no CLS");
    assert!(e.to_string().contains("[CLS]"), "{e}");
    let e = WordPieceTokenizer::from_vocab("", true, None).expect_err("empty");
    assert!(e.to_string().contains("empty"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// The pipeline: windows, decoding, stitching
// ---------------------------------------------------------------------------------------------

/// Tags in BERT-BiLSTM-CRF-NER's order; the model's column 0 is its padding label.
const TAGS: [&str; 10] = [
    "O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "X", "[CLS]", "[SEP]",
];

fn classifier(extra: &str, transitions: Option<Vec<Vec<f32>>>) -> TokenClassifier {
    let json = format!(
        r#"{{"tags": {}, "tag_offset": 1 {extra}}}"#,
        serde_json_list(&TAGS)
    );
    let config: TokenClassificationConfig = serde_json_value(&json);
    TokenClassifier::new(
        config,
        &vocab_text(&test_vocab()),
        TAGS.iter().map(|s| s.to_string()).collect(),
        transitions,
    )
    .expect("a valid classifier")
}

fn serde_json_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

fn serde_json_value<T: serde::de::DeserializeOwned>(json: &str) -> T {
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
}

#[test]
fn encode_lays_out_windows_with_cls_sep_and_padding() {
    // 6 tokens per window, 2 shared: windows start at 0, 4, 8, …
    let c = classifier(r#", "max_seq_length": 8, "window_overlap": 2"#, None);
    let text = "重庆市南川中学副校长张竞".to_string(); // 12 tokens
    let e = c.encode(std::slice::from_ref(&text)).expect("encode");
    assert_eq!((e.rows, e.seq_len), (3, 8));
    let vocab = test_vocab();
    let id = |s: &str| vocab.iter().position(|v| v == s).expect("in vocab") as i64;
    let chars: Vec<String> = text.chars().map(|c| c.to_string()).collect();
    let row = |from: usize, to: usize| {
        let mut r = vec![id("[CLS]")];
        r.extend(chars[from..to].iter().map(|c| id(c)));
        r.push(id("[SEP]"));
        r.resize(8, 0);
        r
    };
    assert_eq!(e.ids, [row(0, 6), row(4, 10), row(8, 12)].concat());
    let mask = |used: usize| {
        let mut m = vec![1i64; used];
        m.resize(8, 0);
        m
    };
    assert_eq!(e.mask, [mask(8), mask(8), mask(6)].concat());
    assert_eq!(e.segment, vec![0; 24]);

    // Several texts: rows follow each other; a blank text has no row.
    let e = c
        .encode(&["张竞".to_string(), "  ".to_string(), "重庆".to_string()])
        .expect("encode");
    assert_eq!(e.rows, 2);
    assert_eq!(&e.ids[..4], &[id("[CLS]"), id("张"), id("竞"), id("[SEP]")]);
    // CJK characters are always split, so 重庆 is two tokens.
    assert_eq!(
        &e.ids[8..12],
        &[id("[CLS]"), id("重"), id("庆"), id("[SEP]")]
    );
}

/// Logits where every token id has fixed random tag scores (as the test model's embedding
/// table), `[CLS]`/`[SEP]` prefer their own tags, padding prefers column 0.
fn table_logits(e: &mofang_text::Encoded, table: &[Vec<f32>]) -> Vec<f32> {
    e.ids
        .iter()
        .flat_map(|&id| table[id as usize].clone())
        .collect()
}

fn random_table(rng: &mut Lcg, vocab_len: usize, num_tags: usize) -> Vec<Vec<f32>> {
    (0..vocab_len).map(|_| rng.vec(num_tags, false)).collect()
}

#[test]
fn windows_never_duplicate_or_split_entities_without_transitions() {
    // Without a CRF every token's tag depends on its own scores only, so decoding in small
    // windows must give exactly what one big window gives.
    let vocab = test_vocab();
    let alphabet: Vec<char> = ARTICLE.chars().collect();
    for seed in 0..60u64 {
        let mut rng = Lcg(seed + 1000);
        let table = random_table(&mut rng, vocab.len(), 11);
        let len = 5 + (rng.next_u32() % 60) as usize;
        let text: String = (0..len)
            .map(|_| alphabet[rng.next_u32() as usize % alphabet.len()])
            .collect();
        let whole = classifier(r#", "max_seq_length": 128"#, None);
        let small = classifier(r#", "max_seq_length": 9, "window_overlap": 3"#, None);
        let decode = |c: &TokenClassifier| {
            let e = c.encode(std::slice::from_ref(&text)).expect("encode");
            let logits = table_logits(&e, &table);
            c.decode(
                &e,
                Scores {
                    logits: &logits,
                    seq: e.seq_len,
                    num_tags: 11,
                    lengths: None,
                    transitions: None,
                },
            )
            .expect("decode")
        };
        let (a, b) = (decode(&whole), decode(&small));
        assert_eq!(a, b, "seed {seed}: {text}");
    }
}

#[test]
fn each_token_takes_its_tag_from_the_window_where_it_is_farthest_from_a_cut() {
    // 10 tokens, windows of 6 sharing 4: [0,6) [2,8) [4,10).
    let c = classifier(r#", "max_seq_length": 8, "window_overlap": 4"#, None);
    let text = "重庆市南川中学副校长".to_string();
    let e = c.encode(std::slice::from_ref(&text)).expect("encode");
    assert_eq!(e.rows, 3);
    // Row r tags every token with column 1 + r (O, B-PER, I-PER) — so the tag says which
    // window it came from.
    let mut logits = vec![0.0f32; e.rows * e.seq_len * 11];
    for r in 0..e.rows {
        for p in 0..e.seq_len {
            logits[(r * e.seq_len + p) * 11 + 1 + r] = 1.0;
        }
    }
    let got = c
        .decode(
            &e,
            Scores {
                logits: &logits,
                seq: e.seq_len,
                num_tags: 11,
                lengths: None,
                transitions: None,
            },
        )
        .expect("decode");
    let window_of: Vec<usize> = got[0]
        .tokens
        .iter()
        .map(|t| TAGS.iter().position(|x| *x == t.tag).expect("a known tag"))
        .collect();
    // Distance to the nearest edge that cuts the text (the text's own ends do not count):
    // token 2: w0 3, w1 0 → w0; token 3: w0 2, w1 1 → w0; token 4: w0 1, w1 2, w2 0 → w1;
    // token 5: w0 0, w1 2, w2 1 → w1; token 6: w1 1, w2 2 → w2; token 7: w1 0, w2 3 → w2.
    assert_eq!(window_of, vec![0, 0, 0, 0, 1, 1, 2, 2, 2, 2]);
}

#[test]
fn an_entity_across_a_seam_stays_one_entity() {
    let c = classifier(r#", "max_seq_length": 6, "window_overlap": 2"#, None);
    let text = "说重庆市南川中学副校长说".to_string();
    let e = c.encode(std::slice::from_ref(&text)).expect("encode");
    assert!(e.rows >= 3);
    // Every window tags 重..学 as one LOC entity.
    let vocab = test_vocab();
    let mut table = vec![vec![0.0f32; 11]; vocab.len()];
    for row in table.iter_mut() {
        row[1] = 1.0; // O
    }
    for (k, ch) in "重庆市南川中学".chars().enumerate() {
        let id = vocab
            .iter()
            .position(|v| *v == ch.to_string())
            .expect("in vocab");
        table[id] = vec![0.0; 11];
        table[id][if k == 0 { 6 } else { 7 }] = 1.0; // B-LOC, I-LOC
    }
    let logits = table_logits(&e, &table);
    let got = c
        .decode(
            &e,
            Scores {
                logits: &logits,
                seq: e.seq_len,
                num_tags: 11,
                lengths: None,
                transitions: None,
            },
        )
        .expect("decode");
    assert_eq!(
        got[0].entities,
        vec![expected(&text, "重庆市南川中学", "LOC")]
    );
}

#[test]
fn word_pieces_are_one_unit_tagged_by_the_first_piece() {
    let c = classifier("", None);
    let text = "hello unaffable worlds".to_string();
    let e = c.encode(std::slice::from_ref(&text)).expect("encode");
    let vocab = test_vocab();
    let id = |s: &str| vocab.iter().position(|v| v == s).expect("in vocab");
    let mut table = vec![vec![0.0f32; 11]; vocab.len()];
    for row in table.iter_mut() {
        row[1] = 1.0;
    }
    table[id("un")] = one_hot(4); // B-ORG
    table[id("##aff")] = one_hot(8); // X
    table[id("##able")] = one_hot(1); // O: ignored, not the first piece
    let logits = table_logits(&e, &table);
    let got = c
        .decode(
            &e,
            Scores {
                logits: &logits,
                seq: e.seq_len,
                num_tags: 11,
                lengths: None,
                transitions: None,
            },
        )
        .expect("decode");
    assert_eq!(got[0].entities, vec![expected(&text, "unaffable", "ORG")]);
    let pieces: Vec<&str> = got[0].tokens.iter().map(|t| t.piece.as_str()).collect();
    assert_eq!(pieces, ["hello", "un", "##aff", "##able", "world", "##s"]);
}

fn one_hot(i: usize) -> Vec<f32> {
    let mut v = vec![0.0; 11];
    v[i] = 1.0;
    v
}

#[test]
fn decode_uses_lengths_padded_transitions_and_checks_shapes() {
    let dim = 12;
    // The start state strongly prefers [CLS] (column 9) and [CLS] → B-PER (2) is rewarded.
    let mut trans = vec![vec![0.0f32; dim]; dim];
    trans[11][9] = 5.0;
    trans[9][2] = 3.0;
    let c = classifier(
        r#", "transitions": {"file": "trans.json"}, "padded_start_state": true"#,
        Some(trans.clone()),
    );
    let text = "张竞".to_string();
    let e = c.encode(std::slice::from_ref(&text)).expect("encode");
    // Emissions: everything prefers O slightly; the rewarded transition makes 张 B-PER.
    let mut logits = vec![0.0f32; e.seq_len * 11];
    for p in 0..e.seq_len {
        logits[p * 11 + 1] = 1.0;
    }
    logits[2 * 11 + 3] = 1.5; // 竞 → I-PER
    logits[3 * 11 + 10] = 5.0; // [SEP]
    let scores = Scores {
        logits: &logits,
        seq: e.seq_len,
        num_tags: 11,
        lengths: Some(&[4]),
        transitions: None,
    };
    let got = c.decode(&e, scores).expect("decode");
    // Reference: the padded decode of the first 4 positions.
    let (path, _) =
        viterbi_decode_padded(&logits[..4 * 11], 4, 11, &trans.concat()).expect("valid");
    assert_eq!(path[1], 2, "the transition makes 张 B-PER");
    assert_eq!(
        got[0].entities,
        vec![expected(&text, "张竞", "PER")],
        "{:?}",
        got[0].tokens
    );

    let bad = Scores {
        num_tags: 10,
        logits: &logits[..e.seq_len * 10],
        ..scores
    };
    let err = c.decode(&e, bad).expect_err("wrong tags").to_string();
    assert!(err.contains("10 tag scores"), "{err}");
    let bad = Scores {
        lengths: Some(&[200]),
        ..scores
    };
    let err = c.decode(&e, bad).expect_err("too long").to_string();
    assert!(err.contains("lengths[0] = 200"), "{err}");
}

#[test]
fn transitions_from_a_file_must_fit_the_tags() {
    let config: TokenClassificationConfig = serde_json_value(&format!(
        r#"{{"tags": {}, "tag_offset": 1, "transitions": {{"file": "t.json"}}}}"#,
        serde_json_list(&TAGS)
    ));
    let err = TokenClassifier::new(
        config,
        &vocab_text(&test_vocab()),
        TAGS.iter().map(|s| s.to_string()).collect(),
        Some(vec![vec![0.0; 12]; 12]),
    )
    .expect_err("11x11 expected")
    .to_string();
    assert!(err.contains("11x11"), "{err}");
    let parsed = mofang_text::parse_transitions("[[1, 2.5], [-3, 0]]").expect("json");
    assert_eq!(parsed, vec![vec![1.0, 2.5], vec![-3.0, 0.0]]);
    let err = mofang_text::parse_transitions("{\"a\": 1}").expect_err("not rows");
    assert!(err.to_string().contains("JSON array"), "{err}");
    assert_eq!(
        mofang_text::parse_tags("O\n\n B-PER \r\nI-PER\n"),
        vec!["O", "B-PER", "I-PER"]
    );
}
