//! KServe V2 / Open Inference Protocol REST, with the binary tensor data extension.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mofang_backend::{DataType, Tensor, TensorData, TensorSpec, element_count};
use mofang_repository::{Servable, VersionSelector, VersionState};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult, json_response};
use crate::json_tensor::{push_flat, write_flat, write_str};

/// The header giving the length of the JSON part of a request or response body.
pub const HEADER_LENGTH: &str = "inference-header-content-length";

pub async fn server_metadata() -> Response {
    json_response(
        StatusCode::OK,
        json!({
            "name": "mofang",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": ["binary_tensor_data"],
        })
        .to_string(),
    )
}

pub async fn live() -> StatusCode {
    StatusCode::OK
}

pub async fn ready(State(state): State<AppState>) -> StatusCode {
    if state.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

fn selector(version: Option<&str>) -> ApiResult<VersionSelector> {
    match version {
        None => Ok(VersionSelector::Latest),
        Some(v) => v.parse().map(VersionSelector::Specific).map_err(|_| {
            ApiError::bad_request(format!(
                "failed to get model version from specified version string '{v}', version should be an integral value > 0"
            ))
        }),
    }
}

fn get_servable(
    state: &AppState,
    name: &str,
    version: Option<&str>,
) -> ApiResult<std::sync::Arc<Servable>> {
    let sel = selector(version)?;
    state.manager.get(name, &sel).map_err(|e| {
        let mut err = ApiError::from(e);
        if err.status == StatusCode::NOT_FOUND {
            err.message = match version {
                None => format!("Request for unknown model: '{name}' is not found"),
                Some(v) => format!("Request for unknown model: '{name}' version {v} is not found"),
            };
        }
        err
    })
}

fn spec_json(spec: &TensorSpec) -> Value {
    json!({"name": spec.name, "datatype": spec.dtype.v2_name(), "shape": spec.signed_shape()})
}

pub async fn model_metadata(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    metadata(&state, &name, None)
}

pub async fn model_version_metadata(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Response> {
    metadata(&state, &name, Some(&version))
}

fn metadata(state: &AppState, name: &str, version: Option<&str>) -> ApiResult<Response> {
    let servable = get_servable(state, name, version)?;
    let versions: Vec<String> = match version {
        Some(_) => vec![servable.version.to_string()],
        None => state
            .manager
            .status(name, None)
            .unwrap_or_default()
            .iter()
            .filter(|v| v.state == VersionState::Available)
            .map(|v| v.version.to_string())
            .collect(),
    };
    let body = json!({
        "name": servable.name,
        "versions": versions,
        "platform": servable.backend.platform(),
        "inputs": servable.inputs().iter().map(spec_json).collect::<Vec<_>>(),
        "outputs": servable.outputs().iter().map(spec_json).collect::<Vec<_>>(),
    });
    Ok(json_response(StatusCode::OK, body.to_string()))
}

pub async fn model_ready(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    get_servable(&state, &name, None).map(|_| StatusCode::OK)
}

pub async fn model_version_ready(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    get_servable(&state, &name, Some(&version)).map(|_| StatusCode::OK)
}

#[derive(Debug, Deserialize)]
struct InferRequest {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    parameters: Map<String, Value>,
    inputs: Vec<RequestInput>,
    #[serde(default)]
    outputs: Option<Vec<RequestOutput>>,
}

#[derive(Debug, Deserialize)]
struct RequestInput {
    name: String,
    shape: Vec<i64>,
    datatype: String,
    #[serde(default)]
    parameters: Map<String, Value>,
    #[serde(default)]
    data: Option<Value>,
}

#[derive(Debug, Deserialize)]
struct RequestOutput {
    name: String,
    #[serde(default)]
    parameters: Map<String, Value>,
}

pub async fn infer(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    observed(&state, &name, None, &headers, body).await
}

pub async fn infer_version(
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    observed(&state, &name, Some(&version), &headers, body).await
}

async fn observed(
    state: &AppState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let started = std::time::Instant::now();
    let mut resolved = None;
    let result = async {
        let servable = get_servable(state, name, version)?;
        resolved = Some(servable.version);
        run_infer(&servable, headers, body).await
    }
    .await;
    let status = match &result {
        Ok(r) => r.status(),
        Err(e) => e.status,
    };
    crate::observe(state, "v2_rest", name, resolved, status, started);
    result
}

fn header_length(headers: &HeaderMap, body_len: usize) -> ApiResult<Option<usize>> {
    let Some(v) = headers.get(HEADER_LENGTH) else {
        return Ok(None);
    };
    let n: usize = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "Unable to parse Inference-Header-Content-Length, got: {v:?}"
            ))
        })?;
    if n == 0 || n > body_len {
        return Err(ApiError::bad_request(format!(
            "inference header size should be in range (0, {body_len}], got: {n}"
        )));
    }
    Ok(Some(n))
}

fn flag(params: &Map<String, Value>, key: &str) -> bool {
    params.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn decode_input(input: &RequestInput, binary: &mut &[u8]) -> ApiResult<(String, Tensor)> {
    let name = &input.name;
    let dtype = DataType::from_v2_name(&input.datatype).ok_or_else(|| {
        ApiError::bad_request(format!(
            "input '{name}': unknown datatype '{}'",
            input.datatype
        ))
    })?;
    let shape: Vec<usize> = input
        .shape
        .iter()
        .map(|d| usize::try_from(*d))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            ApiError::bad_request(format!(
                "invalid shape for input '{name}': shape {:?} contains one or more invalid dimensions",
                input.shape
            ))
        })?;
    let count = element_count(&shape);
    let binary_size = input.parameters.get("binary_data_size");
    let data = match (binary_size, &input.data) {
        (Some(size), None) => {
            let size = size
                .as_u64()
                .and_then(|s| usize::try_from(s).ok())
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "input '{name}': binary_data_size must be a non-negative integer"
                    ))
                })?;
            if binary.len() < size {
                return Err(ApiError::bad_request(format!(
                    "unexpected size for input '{name}', expecting {} additional bytes",
                    size - binary.len()
                )));
            }
            let (raw, rest) = binary.split_at(size);
            *binary = rest;
            TensorData::from_le_bytes(dtype, raw, count)
                .map_err(|e| ApiError::bad_request(format!("input '{name}': {e}")))?
        }
        (None, Some(data)) => {
            // The declared shape is not trusted for the allocation; Tensor::new checks the count.
            let mut out = TensorData::with_capacity(dtype, count.min(1 << 16));
            push_flat(data, &mut out, &format!("input '{name}'")).map_err(ApiError::bad_request)?;
            out
        }
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "input '{name}': set only one of 'data' and 'binary_data_size'"
            )));
        }
        (None, None) => {
            return Err(ApiError::bad_request(format!(
                "input '{name}': Input must set one of the following fields: 'data', 'binary_data_size' in 'parameters'"
            )));
        }
    };
    let tensor = Tensor::new(shape, data).map_err(|e| {
        ApiError::bad_request(format!(
            "input '{name}': shape does not match the data: {e}"
        ))
    })?;
    Ok((name.clone(), tensor))
}

async fn run_infer(servable: &Servable, headers: &HeaderMap, body: Bytes) -> ApiResult<Response> {
    let json_len = header_length(headers, body.len())?.unwrap_or(body.len());
    let (json_part, mut binary) = body.split_at(json_len);
    let request: InferRequest = serde_json::from_slice(json_part)
        .map_err(|e| ApiError::bad_request(format!("failed to parse the request JSON: {e}")))?;
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for input in &request.inputs {
        inputs.push(decode_input(input, &mut binary)?);
    }
    if !binary.is_empty() {
        return Err(ApiError::bad_request(format!(
            "{} bytes of binary data follow the inputs that no input claims",
            binary.len()
        )));
    }
    let binary_default = flag(&request.parameters, "binary_data_output");
    // (name, binary?) for every output to return, in order.
    let wanted: Vec<(String, bool)> = match &request.outputs {
        Some(list) if !list.is_empty() => {
            for o in list {
                if !servable.outputs().iter().any(|s| s.name == o.name) {
                    return Err(ApiError::bad_request(format!(
                        "unexpected inference output '{}' for model '{}'",
                        o.name, servable.name
                    )));
                }
            }
            list.iter()
                .map(|o| (o.name.clone(), flag(&o.parameters, "binary_data")))
                .collect()
        }
        _ => servable
            .outputs()
            .iter()
            .map(|s| (s.name.clone(), binary_default))
            .collect(),
    };
    let outputs = servable.infer(inputs).await?;
    let mut json = String::with_capacity(256);
    json.push('{');
    if let Some(id) = &request.id {
        json.push_str("\"id\":");
        write_str(&mut json, id);
        json.push(',');
    }
    json.push_str("\"model_name\":");
    write_str(&mut json, &servable.name);
    json.push_str(",\"model_version\":");
    write_str(&mut json, &servable.version.to_string());
    json.push_str(",\"outputs\":[");
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    for (k, (name, binary)) in wanted.iter().enumerate() {
        let Some((_, t)) = outputs.iter().find(|(n, _)| n == name) else {
            continue;
        };
        if k > 0 {
            json.push(',');
        }
        json.push_str("{\"name\":");
        write_str(&mut json, name);
        json.push_str(",\"datatype\":\"");
        json.push_str(t.dtype().v2_name());
        json.push_str("\",\"shape\":[");
        for (i, d) in t.shape().iter().enumerate() {
            if i > 0 {
                json.push(',');
            }
            json.push_str(itoa::Buffer::new().format(*d));
        }
        json.push(']');
        if *binary {
            let raw = t.data().to_le_bytes();
            json.push_str(",\"parameters\":{\"binary_data_size\":");
            json.push_str(itoa::Buffer::new().format(raw.len()));
            json.push('}');
            blobs.push(raw);
        } else {
            json.push_str(",\"data\":");
            write_flat(&mut json, t.data(), false);
        }
        json.push('}');
    }
    json.push_str("]}");
    if blobs.iter().all(Vec::is_empty) {
        return Ok(json_response(StatusCode::OK, json));
    }
    let json_len = json.len();
    let mut body = json.into_bytes();
    for b in blobs {
        body.extend_from_slice(&b);
    }
    let mut response = (StatusCode::OK, Body::from(body)).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(HEADER_LENGTH, HeaderValue::from(json_len));
    Ok(response)
}
