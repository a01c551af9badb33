//! `POST /v2/models/{name}[/versions/{version}]/entities`: texts in, entities out, through the
//! model's `token_classification` pipeline (docs/pipelines.md).
//!
//! Request `{"text": "..."}` or `{"texts": ["...", ...]}`, optionally `"tags": true`.
//! Response `{"entities": [{"word", "start", "end", "type"}]}` for `text`, or
//! `{"results": [{"entities": [...]}, ...]}` for `texts` (in order); with `"tags": true` each
//! result also lists its tokens: `"tags": [{"token", "start", "end", "tag"}]`. Offsets are
//! Unicode character offsets into the text, `end` exclusive.
//!
//! Every window of every text of one request goes to [`Servable::infer`] (in chunks of the
//! model's largest batch), where the batcher joins them with other requests' rows. Tokenizing
//! and Viterbi decoding run on the blocking pool.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mofang_backend::{DataType, Tensor, TensorData};
use mofang_repository::{Servable, TextInput, TokenClassification, VersionSelector};
use mofang_text::{Encoded, Labelled, Scores};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult, json_response};

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitiesRequest {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    texts: Option<Vec<String>>,
    /// Also return every token with its tag.
    #[serde(default)]
    tags: bool,
}

pub async fn entities(
    State(state): State<AppState>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    observed(&state, &name, None, body).await
}

pub async fn entities_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    observed(&state, &name, Some(&version), body).await
}

async fn observed(state: &AppState, name: &str, version: Option<&str>, body: Bytes) -> Response {
    let started = Instant::now();
    let mut resolved = None;
    let result = handle(state, name, version, &body, &mut resolved).await;
    let response = match result {
        Ok(r) => r,
        Err(e) => axum::response::IntoResponse::into_response(e),
    };
    crate::observe(
        state,
        "entities",
        name,
        resolved,
        response.status(),
        started,
    );
    response
}

async fn handle(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    body: &[u8],
    resolved: &mut Option<u64>,
) -> ApiResult<Response> {
    let selector = match version {
        None => VersionSelector::Latest,
        Some(v) => VersionSelector::Specific(
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("version `{v}` is not a number")))?,
        ),
    };
    let servable = state.manager.get(name, &selector)?;
    *resolved = Some(servable.version);
    let Some(pipeline) = servable.token_classification.clone() else {
        return Err(ApiError::bad_request(format!(
            "model `{name}` has no token_classification pipeline in its config"
        )));
    };
    let request: EntitiesRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(if body.is_empty() {
            "the body is empty; send {\"text\": \"...\"} or {\"texts\": [...]}".to_string()
        } else {
            format!("invalid request body: {e}")
        })
    })?;
    let (texts, single) = match (request.text, request.texts) {
        (Some(text), None) => (vec![text], true),
        (None, Some(texts)) => (texts, false),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `text` (a string) or `texts` (a list of strings)",
            ));
        }
    };
    check_limits(&texts, single, &pipeline)?;

    let encoder = Arc::clone(&pipeline);
    let encoded = blocking(move || encoder.classifier.encode(&texts)).await?;
    let encoded = encoded.map_err(|e| ApiError::bad_request(e.to_string()))?;
    let labelled = if encoded.rows == 0 {
        // Only whitespace: nothing to run.
        (0..encoded.texts())
            .map(|_| Labelled {
                entities: Vec::new(),
                tokens: Vec::new(),
            })
            .collect()
    } else {
        let outputs = run(&servable, &pipeline, &encoded).await?;
        let decoder = Arc::clone(&pipeline);
        blocking(move || {
            let scores = Scores {
                logits: &outputs.logits,
                seq: outputs.seq,
                num_tags: outputs.num_tags,
                lengths: outputs.lengths.as_deref(),
                transitions: outputs.transitions.as_deref(),
            };
            decoder.classifier.decode(&encoded, scores)
        })
        .await?
        .map_err(|e| ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: format!("model `{name}`: {e}"),
        })?
    };
    let results: Vec<Value> = labelled
        .iter()
        .map(|l| result_json(l, request.tags))
        .collect();
    let body = if single {
        results.into_iter().next().unwrap_or_else(|| json!({}))
    } else {
        json!({ "results": results })
    };
    Ok(json_response(StatusCode::OK, body.to_string()))
}

fn check_limits(texts: &[String], single: bool, pipeline: &TokenClassification) -> ApiResult<()> {
    let config = pipeline.classifier.config();
    if texts.is_empty() {
        return Err(ApiError::bad_request("`texts` is empty"));
    }
    if texts.len() > config.max_texts {
        return Err(ApiError::bad_request(format!(
            "{} texts in one request; the model's limit is {} (pipeline.max_texts)",
            texts.len(),
            config.max_texts
        )));
    }
    for (i, text) in texts.iter().enumerate() {
        let what = if single {
            "`text`".to_string()
        } else {
            format!("`texts[{i}]`")
        };
        if text.is_empty() {
            return Err(ApiError::bad_request(format!("{what} is empty")));
        }
        let chars = text.chars().count();
        if chars > config.max_text_chars {
            return Err(ApiError::bad_request(format!(
                "{what} has {chars} characters; the model's limit is {} (pipeline.max_text_chars)",
                config.max_text_chars
            )));
        }
    }
    Ok(())
}

fn result_json(l: &Labelled, with_tags: bool) -> Value {
    let entities: Vec<Value> = l
        .entities
        .iter()
        .map(|e| json!({"word": e.word, "start": e.start, "end": e.end, "type": e.r#type}))
        .collect();
    let mut out = json!({ "entities": entities });
    if with_tags {
        out["tags"] = l
            .tokens
            .iter()
            .map(|t| json!({"token": t.piece, "start": t.start, "end": t.end, "tag": t.tag}))
            .collect();
    }
    out
}

/// The model outputs of every row, flattened.
struct Outputs {
    logits: Vec<f32>,
    seq: usize,
    num_tags: usize,
    lengths: Option<Vec<i64>>,
    transitions: Option<Vec<f32>>,
}

/// Runs every row, in chunks of at most `max_rows`, concurrently (the batcher may join them
/// with other requests' rows), and joins the outputs in row order.
async fn run(
    servable: &Servable,
    pipeline: &TokenClassification,
    encoded: &Encoded,
) -> ApiResult<Outputs> {
    let seq = encoded.seq_len;
    let chunk_rows = pipeline.max_rows.min(encoded.rows);
    let mut calls = Vec::new();
    let mut first = 0;
    while first < encoded.rows {
        let rows = chunk_rows.min(encoded.rows - first);
        let range = first * seq..(first + rows) * seq;
        let mut inputs = vec![
            int_tensor(&pipeline.ids, rows, seq, &encoded.ids[range.clone()])?,
            int_tensor(&pipeline.mask, rows, seq, &encoded.mask[range.clone()])?,
        ];
        if let Some(segment) = &pipeline.segment {
            inputs.push(int_tensor(segment, rows, seq, &encoded.segment[range])?);
        }
        calls.push(servable.infer(inputs));
        first += rows;
    }
    let results = futures::future::join_all(calls).await;
    let mut out = Outputs {
        logits: Vec::with_capacity(encoded.rows * seq * pipeline.classifier.num_tags()),
        seq: 0,
        num_tags: 0,
        lengths: pipeline.lengths.as_ref().map(|_| Vec::new()),
        transitions: None,
    };
    for (k, result) in results.into_iter().enumerate() {
        let outputs = result?;
        let tensor = |name: &str| {
            outputs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, t)| t)
                .ok_or_else(|| model_error(format!("the model produced no output `{name}`")))
        };
        let logits = tensor(&pipeline.logits)?;
        let [_, s, t] = logits.shape() else {
            return Err(model_error(format!(
                "output `{}` has shape {:?}, expected [rows, seq, num_tags]",
                pipeline.logits,
                logits.shape()
            )));
        };
        if k == 0 {
            (out.seq, out.num_tags) = (*s, *t);
        } else if (out.seq, out.num_tags) != (*s, *t) {
            return Err(model_error(format!(
                "output `{}` changed shape between calls",
                pipeline.logits
            )));
        }
        out.logits.extend(floats(logits, &pipeline.logits)?);
        if let (Some(name), Some(lengths)) = (&pipeline.lengths, out.lengths.as_mut()) {
            lengths.extend(ints(tensor(name)?, name)?);
        }
        if let (Some(name), None) = (&pipeline.transitions, &out.transitions) {
            out.transitions = Some(floats(tensor(name)?, name)?);
        }
    }
    Ok(out)
}

fn model_error(message: String) -> ApiError {
    ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message,
    }
}

/// `[rows, seq]` of `values` in the integer type the graph input declares.
fn int_tensor(
    input: &TextInput,
    rows: usize,
    seq: usize,
    values: &[i64],
) -> ApiResult<(String, Tensor)> {
    let data = match input.dtype {
        DataType::I32 => TensorData::I32(
            values
                .iter()
                .map(|&v| i32::try_from(v).unwrap_or(i32::MAX))
                .collect(),
        ),
        _ => TensorData::I64(values.to_vec()),
    };
    let tensor = Tensor::new(vec![rows, seq], data).map_err(|e| model_error(e.to_string()))?;
    Ok((input.name.clone(), tensor))
}

fn floats(tensor: &Tensor, name: &str) -> ApiResult<Vec<f32>> {
    match tensor.data() {
        TensorData::F32(v) => Ok(v.clone()),
        TensorData::F16(v) => Ok(v.iter().map(|x| x.to_f32()).collect()),
        TensorData::F64(v) => Ok(v.iter().map(|&x| x as f32).collect()),
        other => Err(model_error(format!(
            "output `{name}` is {}, expected floating point",
            other.dtype()
        ))),
    }
}

fn ints(tensor: &Tensor, name: &str) -> ApiResult<Vec<i64>> {
    let out: Vec<i64> = match tensor.data() {
        TensorData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::I64(v) => v.clone(),
        TensorData::I16(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::U16(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::U32(v) => v.iter().map(|&x| i64::from(x)).collect(),
        TensorData::U64(v) => v
            .iter()
            .map(|&x| i64::try_from(x).unwrap_or(i64::MAX))
            .collect(),
        other => {
            return Err(model_error(format!(
                "output `{name}` is {}, expected integers",
                other.dtype()
            )));
        }
    };
    Ok(out)
}

/// Runs CPU work on the blocking pool.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| model_error(format!("text pipeline task failed: {e}")))
}
