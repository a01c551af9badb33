//! The NER model: `POST /v2/models/{name}/entities` end to end on the article's sentence, long
//! texts in windows, batching across requests, bad input, load errors, and the TF Serving
//! `ner_def` signature clients of the replaced deployment call.
//!
//! `ner.onnx` (scripts/make_test_models.py) is a BERT-BiLSTM-CRF stand-in: logits are an
//! embedding lookup token id → tag scores, `trans` a constant CRF matrix with a padded start
//! state. Expected entities come from ONNX Runtime's outputs (scripts/ort_reference.py) for
//! ids tokenized here, decoded by a Viterbi written here — never from the server's own code.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::common::{
    Repo, Server, StatusCode, TestTensor, assert_close, reference_outputs, test_model,
};

/// The article's sentence.
const SENTENCE: &str = "重庆市南川中学副校长张竞说,寒假放假前高三年级还有10%左右的内容没复习完,";
const SEQ: usize = 150;
/// The export's padded start state filler.
const SMALL: f32 = -1000.0;

/// The pipeline the replaced deployment implies, plus its TF Serving signature.
const CONFIG: &str = "\
pipeline:
  kind: token_classification
  max_seq_length: 150
  tags_file: tags.txt
  tag_offset: 1
  transitions: {output: trans}
  padded_start_state: true
  max_texts: 4
  max_text_chars: 2000
signatures:
  ner_def:
    inputs:
      input_ids: input_ids
      input_mask: input_mask
      segment_ids: segment_ids
      Dropout: {ignore: true, dtype: float32, shape: []}
    outputs: {lengths: lengths, logits: logits, trans: trans}
";

fn ner_file(name: &str) -> PathBuf {
    test_model(&format!("ner/{name}"))
}

/// A repository with `ner` (the model, its vocabulary and tags) and `config`.
fn ner_repo(config: &str) -> Repo {
    let repo = Repo::new()
        .with_model("ner", 1, "ner.onnx")
        .with_config("ner", config);
    for file in ["vocab.txt", "tags.txt", "trans.json"] {
        std::fs::copy(ner_file(file), repo.path().join("ner").join(file))
            .unwrap_or_else(|e| panic!("cannot copy {file}: {e}"));
    }
    repo
}

fn read_lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(ner_file(name))
        .unwrap_or_else(|e| panic!("cannot read ner/{name}: {e}"))
        .lines()
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The reference: tokenize, run ONNX Runtime, Viterbi, read BIO
// ---------------------------------------------------------------------------------------------

/// BERT's tokenization for the texts these tests send (CJK characters, ASCII digits,
/// punctuation): every CJK character and punctuation mark is a word, runs of other
/// characters are words split greedily into the longest vocabulary pieces (`##` after the
/// first). Returns (id, start, end) with character offsets.
fn reference_tokens(text: &str, vocab: &[String]) -> Vec<(usize, usize, usize)> {
    let id = |piece: &str| vocab.iter().position(|v| v == piece);
    let chars: Vec<char> = text.chars().collect();
    let mut words: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if ('\u{4e00}'..='\u{9fff}').contains(&c) || c.is_ascii_punctuation() {
            words.push((i, i + 1));
            i += 1;
        } else {
            let start = i;
            while i < chars.len()
                && !chars[i].is_whitespace()
                && !chars[i].is_ascii_punctuation()
                && !('\u{4e00}'..='\u{9fff}').contains(&chars[i])
            {
                i += 1;
            }
            words.push((start, i));
        }
    }
    let unk = id("[UNK]").expect("the vocabulary has [UNK]");
    let mut tokens = Vec::new();
    for (start, end) in words {
        let mut pieces = Vec::new();
        let mut from = start;
        while from < end {
            let found = (from + 1..=end).rev().find_map(|to| {
                let body: String = chars[from..to].iter().collect();
                let piece = if from == start {
                    body
                } else {
                    format!("##{body}")
                };
                id(&piece).map(|k| (k, from, to))
            });
            match found {
                Some(p) => {
                    from = p.2;
                    pieces.push(p);
                }
                None => {
                    pieces = vec![(unk, start, end)];
                    break;
                }
            }
        }
        tokens.extend(pieces);
    }
    tokens
}

/// One model row: `[CLS] ids [SEP]` padded with 0, its mask and its segment ids.
fn row(ids: &[usize], vocab: &[String]) -> (Vec<i64>, Vec<i64>, Vec<i64>) {
    let cls = vocab.iter().position(|v| v == "[CLS]").expect("[CLS]") as i64;
    let sep = vocab.iter().position(|v| v == "[SEP]").expect("[SEP]") as i64;
    let mut input_ids = vec![cls];
    input_ids.extend(ids.iter().map(|&i| i as i64));
    input_ids.push(sep);
    let used = input_ids.len();
    input_ids.resize(SEQ, 0);
    let mut mask = vec![1i64; used];
    mask.resize(SEQ, 0);
    (input_ids, mask, vec![0; SEQ])
}

fn int32_tensor(values: &[i64]) -> TestTensor {
    TestTensor::new(
        "int32",
        &[1, values.len()],
        values.iter().map(|v| json!(v)).collect(),
    )
}

/// The padded Viterbi decode, written the long way: prepend a start row, add a start column
/// of -1000, run the NumPy algorithm (first index on ties), drop the start position.
fn reference_viterbi(logits: &[f32], len: usize, num_tags: usize, trans: &[f32]) -> Vec<usize> {
    let dim = num_tags + 1;
    let mut scores: Vec<Vec<f32>> = vec![{
        let mut r = vec![SMALL; num_tags];
        r.push(0.0);
        r
    }];
    for t in 0..len {
        let mut r = logits[t * num_tags..(t + 1) * num_tags].to_vec();
        r.push(SMALL);
        scores.push(r);
    }
    let mut trellis = scores[0].clone();
    let mut back: Vec<Vec<usize>> = Vec::new();
    for s in &scores[1..] {
        let mut next = vec![0.0f32; dim];
        let mut bp = vec![0usize; dim];
        for j in 0..dim {
            let column: Vec<f32> = (0..dim).map(|i| trellis[i] + trans[i * dim + j]).collect();
            let max = column.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            bp[j] = column
                .iter()
                .position(|&v| v == max)
                .expect("max is in the column");
            next[j] = s[j] + max;
        }
        trellis = next;
        back.push(bp);
    }
    let max = trellis.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut path = vec![trellis.iter().position(|&v| v == max).expect("max present")];
    for bp in back.iter().rev() {
        path.push(bp[*path.last().expect("non-empty")]);
    }
    path.reverse();
    path.remove(0);
    path
}

/// The entities of BIO `tags` over tokens with character spans, as `{word, start, end, type}`
/// (B- starts, I- of the same type continues, anything else ends).
fn reference_entities(text: &str, spans: &[(usize, usize)], tags: &[String]) -> Vec<Value> {
    let chars: Vec<char> = text.chars().collect();
    let mut found: Vec<(usize, usize, String)> = Vec::new();
    let mut open: Option<(usize, usize, String)> = None;
    for (&(start, end), tag) in spans.iter().zip(tags) {
        let continues = matches!((&open, tag.strip_prefix("I-")), (Some(o), Some(ty)) if o.2 == ty);
        if continues {
            if let Some(o) = open.as_mut() {
                o.1 = end;
            }
            continue;
        }
        if let Some(o) = open.take() {
            found.push(o);
        }
        if let Some(ty) = tag.strip_prefix("B-").or_else(|| tag.strip_prefix("I-")) {
            open = Some((start, end, ty.to_string()));
        }
    }
    found.extend(open);
    found
        .into_iter()
        .map(|(s, e, ty)| {
            json!({"word": chars[s..e].iter().collect::<String>(), "start": s, "end": e, "type": ty})
        })
        .collect()
}

/// What the model and a reference decode say about `text` (one window).
async fn reference_for(text: &str) -> Vec<Value> {
    let vocab = read_lines("vocab.txt");
    let tags = read_lines("tags.txt");
    let tokens = reference_tokens(text, &vocab);
    assert!(tokens.len() + 2 <= SEQ, "one window only");
    let ids: Vec<usize> = tokens.iter().map(|t| t.0).collect();
    let (input_ids, mask, segment) = row(&ids, &vocab);
    let (a, b, c) = (
        int32_tensor(&input_ids),
        int32_tensor(&mask),
        int32_tensor(&segment),
    );
    let out = reference_outputs(
        &test_model("ner.onnx"),
        &[("input_ids", &a), ("input_mask", &b), ("segment_ids", &c)],
    )
    .await;
    let logits = out["logits"].f32s();
    let num_tags = out["logits"].shape[2];
    let len = out["lengths"].data[0].as_u64().expect("a length") as usize;
    assert_eq!(len, ids.len() + 2, "lengths is the mask's sum");
    let path = reference_viterbi(&logits, len, num_tags, &out["trans"].f32s());
    // Position 0 is [CLS]; column 0 is the padding label, tags start at column 1.
    let names: Vec<String> = path[1..=ids.len()]
        .iter()
        .map(|&k| {
            k.checked_sub(1)
                .and_then(|i| tags.get(i))
                .cloned()
                .unwrap_or("O".into())
        })
        .collect();
    let spans: Vec<(usize, usize)> = tokens.iter().map(|t| (t.1, t.2)).collect();
    reference_entities(text, &spans, &names)
}

fn shifted(entities: &[Value], by: usize) -> Vec<Value> {
    entities
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["start"] = json!(e["start"].as_u64().expect("start") as usize + by);
            e["end"] = json!(e["end"].as_u64().expect("end") as usize + by);
            e
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_article_sentence_gives_the_reference_entities() {
    let server = Server::start(ner_repo(CONFIG)).await;
    let expected = reference_for(SENTENCE).await;
    // The model was built to tag these; the reference must see them too.
    let words: Vec<&str> = expected.iter().filter_map(|e| e["word"].as_str()).collect();
    assert_eq!(words, ["重庆市", "南川中学", "张竞"], "{expected:?}");

    let body = server
        .post_json("/v2/models/ner/entities", &json!({"text": SENTENCE}))
        .await
        .ok();
    assert_eq!(body, json!({"entities": expected}));

    // The version route and the debug tags.
    let body = server
        .post_json(
            "/v2/models/ner/versions/1/entities",
            &json!({"text": SENTENCE, "tags": true}),
        )
        .await
        .ok();
    assert_eq!(body["entities"], json!(expected));
    let tags = body["tags"].as_array().expect("tags");
    assert_eq!(tags.len(), SENTENCE.chars().count() - 1, "10 is one token");
    assert_eq!(
        tags[0],
        json!({"token": "重", "start": 0, "end": 1, "tag": "B-LOC"})
    );
    let ten = tags
        .iter()
        .find(|t| t["token"] == "10")
        .expect("a 10 token");
    assert_eq!(
        ten["end"].as_u64().expect("end") - ten["start"].as_u64().expect("start"),
        2
    );
}

#[tokio::test]
async fn several_texts_answer_in_order_and_blank_texts_have_no_entities() {
    let server = Server::start(ner_repo(CONFIG)).await;
    let second = "张竞说,南川中学";
    let body = server
        .post_json(
            "/v2/models/ner/entities",
            &json!({"texts": [SENTENCE, "   ", second]}),
        )
        .await
        .ok();
    let expected = json!({"results": [
        {"entities": reference_for(SENTENCE).await},
        {"entities": []},
        {"entities": reference_for(second).await},
    ]});
    assert_eq!(body, expected);
}

#[tokio::test]
async fn a_long_text_is_split_into_windows_and_merged_without_seams() {
    let server = Server::start(ner_repo(CONFIG)).await;
    let once = reference_for(SENTENCE).await;
    let copies = 10;
    let text = SENTENCE.repeat(copies);
    let tokens_per_copy = SENTENCE.chars().count() - 1;
    assert!(
        tokens_per_copy * copies > 2 * (SEQ - 2),
        "the text needs three windows"
    );
    let body = server
        .post_json("/v2/models/ner/entities", &json!({"text": text}))
        .await
        .ok();
    // Each copy says what the sentence says, shifted: no entity lost, split or doubled at a
    // window seam.
    let len = SENTENCE.chars().count();
    let expected: Vec<Value> = (0..copies).flat_map(|k| shifted(&once, k * len)).collect();
    assert_eq!(body["entities"], json!(expected));
}

/// The `mofang_batch_size_rows` sum and count of model `ner`.
async fn batch_rows(server: &Server) -> (f64, f64) {
    let text = server.get("/metrics").await.text();
    let value = |name: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains("model=\"ner\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    (
        value("mofang_batch_size_rows_sum"),
        value("mofang_batch_size_rows_count"),
    )
}

#[tokio::test]
async fn concurrent_requests_share_executions() {
    let config =
        format!("{CONFIG}batching: {{max_batch_size: 8, max_queue_delay_micros: 200000}}\n");
    let server = Arc::new(Server::start(ner_repo(&config)).await);
    let once = reference_for(SENTENCE).await;
    const CLIENTS: usize = 8;
    let mut clients = JoinSet::new();
    for i in 0..CLIENTS {
        let server = Arc::clone(&server);
        // Different texts (a prefix of i characters of padding punctuation) in one batch.
        let text = format!("{}{SENTENCE}", ",".repeat(i));
        clients.spawn(async move {
            let reply = server
                .post_json("/v2/models/ner/entities", &json!({"text": text}))
                .await;
            (i, reply)
        });
    }
    while let Some(done) = clients.join_next().await {
        let (i, reply) = done.expect("a client task does not panic");
        assert_eq!(
            reply.ok()["entities"],
            json!(shifted(&once, i)),
            "client {i}"
        );
    }
    let (rows, executions) = batch_rows(&server).await;
    assert_eq!(rows, CLIENTS as f64, "one window per request");
    assert!(
        executions < rows,
        "{rows} rows in {executions} executions: requests were not batched"
    );
}

#[tokio::test]
async fn a_request_larger_than_the_batch_runs_in_chunks() {
    // 4 texts of 3 windows each = 12 rows, max_batch_size 5.
    let config = format!("{CONFIG}batching: {{max_batch_size: 5}}\n");
    let server = Server::start(ner_repo(&config)).await;
    let once = reference_for(SENTENCE).await;
    let text = SENTENCE.repeat(10);
    let body = server
        .post_json(
            "/v2/models/ner/entities",
            &json!({"texts": [text, text, text, text]}),
        )
        .await
        .ok();
    let len = SENTENCE.chars().count();
    let expected: Vec<Value> = (0..10).flat_map(|k| shifted(&once, k * len)).collect();
    for k in 0..4 {
        assert_eq!(body["results"][k]["entities"], json!(expected), "text {k}");
    }
}

#[tokio::test]
async fn bad_requests_get_400_naming_the_problem() {
    let server = Server::start(ner_repo(CONFIG).with_model("tiny", 1, "tiny.onnx")).await;
    let post = |path: &'static str, body: Value| {
        let server = &server;
        async move { server.post_json(path, &body).await }
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"text": ""}), "`text` is empty"),
        (json!({"texts": []}), "`texts` is empty"),
        (json!({"texts": ["a", ""]}), "`texts[1]` is empty"),
        (json!({"text": "a", "texts": ["b"]}), "exactly one of"),
        (json!({}), "exactly one of"),
        (json!({"text": "a", "lang": "zh"}), "lang"),
        (json!({"text": 5}), "invalid request body"),
        (
            json!({"texts": ["a", "b", "c", "d", "e"]}),
            "pipeline.max_texts",
        ),
        (
            json!({"text": "重".repeat(2001)}),
            "pipeline.max_text_chars",
        ),
    ];
    for (body, needle) in cases {
        let message = post("/v2/models/ner/entities", body.clone())
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(message.contains(needle), "{body}: {message}");
    }
    let raw = server
        .post_bytes("/v2/models/ner/entities", b"{not json".to_vec(), &[])
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(raw.contains("invalid request body"), "{raw}");

    let message = post("/v2/models/tiny/entities", json!({"text": "a"}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(
        message.contains("no token_classification pipeline"),
        "{message}"
    );
    post("/v2/models/nope/entities", json!({"text": "a"}))
        .await
        .error(StatusCode::NOT_FOUND);
    post("/v2/models/ner/versions/7/entities", json!({"text": "a"}))
        .await
        .error(StatusCode::NOT_FOUND);
    let message = post("/v2/models/ner/versions/x/entities", json!({"text": "a"}))
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(message.contains("not a number"), "{message}");
}

#[tokio::test]
async fn a_broken_pipeline_fails_the_version_load_with_the_reason() {
    let cases = [
        (
            CONFIG.replace("tags_file: tags.txt", "tags_file: labels.txt"),
            "labels.txt",
        ),
        (
            CONFIG.replace("tag_offset: 1", "tag_offset: 0"),
            "tag_offset 0 + 10 tags",
        ),
        (CONFIG.replace("{output: trans}", "{output: crf}"), "`crf`"),
        (
            CONFIG.replace("{output: trans}", "{file: trans.json}"),
            // The file is 12x12 (with the start state); without padding 11x11 is expected.
            "",
        ),
        (
            CONFIG.replace("max_seq_length: 150", "max_seq_length: 128"),
            "max_seq_length",
        ),
    ];
    for (config, needle) in cases {
        let server = Server::start(ner_repo(&config)).await;
        let body = server.get("/v1/models/ner").await.ok();
        let status = &body["model_version_status"][0];
        if needle.is_empty() {
            // transitions from the file with padded_start_state: a valid config.
            assert_eq!(status["state"], "AVAILABLE", "{body}");
            let reply = server
                .post_json("/v2/models/ner/entities", &json!({"text": SENTENCE}))
                .await
                .ok();
            assert_eq!(reply["entities"], json!(reference_for(SENTENCE).await));
            continue;
        }
        assert_eq!(status["state"], "END", "{config}: {body}");
        let message = status["status"]["error_message"]
            .as_str()
            .unwrap_or_default();
        assert!(message.contains(needle), "{needle}: {message}");
    }
}

#[tokio::test]
async fn the_ner_def_signature_answers_tf_serving_rest_clients() {
    let server = Server::start(ner_repo(CONFIG)).await;
    let vocab = read_lines("vocab.txt");
    let ids: Vec<usize> = reference_tokens(SENTENCE, &vocab)
        .iter()
        .map(|t| t.0)
        .collect();
    let (input_ids, mask, segment) = row(&ids, &vocab);
    let (a, b, c) = (
        int32_tensor(&input_ids),
        int32_tensor(&mask),
        int32_tensor(&segment),
    );
    let reference = reference_outputs(
        &test_model("ner.onnx"),
        &[("input_ids", &a), ("input_mask", &b), ("segment_ids", &c)],
    )
    .await;

    // Columnar, as the replaced deployment's client sends it: a batch of one and a scalar
    // Dropout the ONNX export no longer has.
    let request = json!({
        "signature_name": "ner_def",
        "inputs": {
            "input_ids": [input_ids],
            "input_mask": [mask],
            "segment_ids": [segment],
            "Dropout": 1.0,
        }
    });
    let body = server
        .post_json("/v1/models/ner:predict", &request)
        .await
        .ok();
    let outputs = &body["outputs"];
    assert_close(
        &outputs["lengths"],
        &reference["lengths"].nested(),
        0.0,
        "lengths",
    );
    assert_close(
        &outputs["logits"],
        &reference["logits"].nested(),
        1e-6,
        "logits",
    );
    assert_close(
        &outputs["trans"],
        &reference["trans"].nested(),
        1e-6,
        "trans",
    );

    // The metadata lists the signature with its ignored Dropout.
    let meta = server.get("/v1/models/ner/metadata").await.ok();
    let def = &meta["metadata"]["signature_def"]["signature_def"]["ner_def"];
    assert_eq!(def["inputs"]["Dropout"]["dtype"], "DT_FLOAT", "{meta}");
    assert_eq!(def["inputs"]["input_ids"]["dtype"], "DT_INT32", "{meta}");
}
