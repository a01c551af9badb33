//! TF Serving's REST API: `/v1/models/{name}[/versions/{v}|/labels/{l}][:predict|/metadata]`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use mofang_backend::{DataType, Tensor};
use mofang_repository::{DEFAULT_SIGNATURE, Servable, Signature, VersionSelector, VersionState};
use serde_json::{Map, Value, json};

use crate::AppState;
use crate::error::{ApiError, ApiResult, json_response};
use crate::json_tensor::{tensor_from_nested, write_nested};

/// A parsed `/v1/models/...` path.
#[derive(Debug, PartialEq, Eq)]
struct ModelPath {
    name: String,
    selector: VersionSelector,
    /// `predict`, `classify`, `regress` (POST) or `metadata` / `` (GET).
    action: String,
}

fn malformed(method: &Method, rest: &str) -> ApiError {
    ApiError::bad_request(format!("Malformed request: {method} /v1/models/{rest}"))
}

fn parse_path(method: &Method, rest: &str) -> ApiResult<ModelPath> {
    let (path, verb) = match rest.rsplit_once(':') {
        Some((p, v)) if *method == Method::POST => (p, v.to_string()),
        None if *method == Method::GET => match rest.strip_suffix("/metadata") {
            Some(p) => (p, "metadata".to_string()),
            None => (rest, String::new()),
        },
        _ => return Err(malformed(method, rest)),
    };
    let mut parts = path.split('/');
    let name = parts
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| malformed(method, rest))?;
    let selector = match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => VersionSelector::Latest,
        (Some("versions"), Some(v), None)
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) =>
        {
            VersionSelector::Specific(v.parse().map_err(|_| {
                ApiError::bad_request(format!("Failed to convert version: {v} to numeric."))
            })?)
        }
        (Some("labels"), Some(l), None) if !l.is_empty() => VersionSelector::Label(l.to_string()),
        _ => return Err(malformed(method, rest)),
    };
    let valid_verb = match *method {
        Method::POST => matches!(verb.as_str(), "predict" | "classify" | "regress"),
        _ => matches!(verb.as_str(), "" | "metadata"),
    };
    if !valid_verb {
        return Err(malformed(method, rest));
    }
    Ok(ModelPath {
        name: name.to_string(),
        selector,
        action: verb,
    })
}

pub async fn get_root() -> ApiError {
    ApiError::bad_request("Missing model name in request.")
}

pub async fn get(State(state): State<AppState>, Path(rest): Path<String>) -> ApiResult<Response> {
    let path = parse_path(&Method::GET, &rest)?;
    match path.action.as_str() {
        "metadata" => metadata(&state, &path),
        _ => status(&state, &path),
    }
}

pub async fn post(
    State(state): State<AppState>,
    Path(rest): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let path = parse_path(&Method::POST, &rest)?;
    let started = std::time::Instant::now();
    let mut version = None;
    let result = async {
        let servable = state.manager.get(&path.name, &path.selector)?;
        version = Some(servable.version);
        post_to(&servable, &path, &body).await
    }
    .await;
    let status = match &result {
        Ok(r) => r.status(),
        Err(e) => e.status,
    };
    crate::observe(&state, "tfs_rest", &path.name, version, status, started);
    result
}

async fn post_to(servable: &Arc<Servable>, path: &ModelPath, body: &[u8]) -> ApiResult<Response> {
    if path.action != "predict" {
        return Err(ApiError {
            status: StatusCode::NOT_IMPLEMENTED,
            message: format!(
                "{} is not supported: ONNX models serve predict only (model {})",
                path.action, path.name
            ),
        });
    }
    predict(servable, body).await
}

fn status(state: &AppState, path: &ModelPath) -> ApiResult<Response> {
    let version = match &path.selector {
        VersionSelector::Latest => None,
        VersionSelector::Specific(v) => Some(*v),
        VersionSelector::Label(l) => {
            Some(*state.manager.labels(&path.name).get(l).ok_or_else(|| {
                ApiError::bad_request(format!("Unrecognized servable version label: {l}"))
            })?)
        }
    };
    let versions = state.manager.status(&path.name, version)?;
    let list: Vec<Value> = versions
        .iter()
        .rev()
        .map(|v| {
            let (state, code) = match v.state {
                VersionState::Loading => ("LOADING", "OK"),
                VersionState::Available => ("AVAILABLE", "OK"),
                VersionState::End if v.error.is_some() => ("END", "UNKNOWN"),
                VersionState::End => ("END", "OK"),
            };
            json!({
                "version": v.version.to_string(),
                "state": state,
                "status": {
                    "error_code": code,
                    "error_message": v.error.clone().unwrap_or_default(),
                }
            })
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        json!({ "model_version_status": list }).to_string(),
    ))
}

fn tensor_info(t: &mofang_repository::SignatureTensor) -> Value {
    let dims: Vec<Value> = t
        .signed_shape()
        .iter()
        .map(|d| json!({"size": d.to_string(), "name": ""}))
        .collect();
    json!({
        "dtype": t.dtype.tf_name(),
        "tensor_shape": {"dim": dims, "unknown_rank": false},
        "name": t.graph_name.clone().unwrap_or_else(|| t.alias.clone()),
    })
}

fn signature_def(sig: &Signature) -> Value {
    let inputs: Map<String, Value> = sig
        .inputs
        .iter()
        .map(|t| (t.alias.clone(), tensor_info(t)))
        .collect();
    let outputs: Map<String, Value> = sig
        .outputs
        .iter()
        .map(|t| (t.alias.clone(), tensor_info(t)))
        .collect();
    json!({"inputs": inputs, "outputs": outputs, "method_name": sig.method_name, "defaults": {}})
}

fn metadata(state: &AppState, path: &ModelPath) -> ApiResult<Response> {
    let servable = state.manager.get(&path.name, &path.selector)?;
    let defs: Map<String, Value> = servable
        .signatures
        .iter()
        .map(|s| (s.name.clone(), signature_def(s)))
        .collect();
    let body = json!({
        "model_spec": {
            "name": servable.name,
            "signature_name": "",
            "version": servable.version.to_string(),
        },
        "metadata": {"signature_def": {"signature_def": defs}},
    });
    Ok(json_response(StatusCode::OK, body.to_string()))
}

/// Row (`instances`) or columnar (`inputs`) request format; the response uses the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Row,
    Columnar,
}

async fn predict(servable: &Arc<Servable>, body: &[u8]) -> ApiResult<Response> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(if body.is_empty() {
            "JSON Parse error: The document is empty".to_string()
        } else {
            format!("JSON Parse error: {e}")
        })
    })?;
    let Value::Object(mut doc) = doc else {
        return Err(ApiError::bad_request("request body must be a JSON object"));
    };
    let sig_name = match doc.remove("signature_name") {
        None => DEFAULT_SIGNATURE.to_string(),
        Some(Value::String(s)) if s.is_empty() => DEFAULT_SIGNATURE.to_string(),
        Some(Value::String(s)) => s,
        Some(_) => {
            return Err(ApiError::bad_request(
                "'signature_name' key must be a string value.",
            ));
        }
    };
    let signature = servable.resolve_signature(&sig_name)?;
    let (format, tensors) = match (doc.remove("instances"), doc.remove("inputs")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "expecting only one of 'inputs' or 'instances' keys to exist",
            ));
        }
        (None, None) => return Err(ApiError::bad_request("Missing 'inputs' or 'instances' key")),
        (Some(instances), None) => (Format::Row, decode_instances(signature, instances)?),
        (None, Some(inputs)) => (Format::Columnar, decode_inputs(signature, inputs)?),
    };
    // Alias → graph mapping, ignored inputs and output aliasing are the repository's, shared
    // with the gRPC edge.
    let prediction = servable.predict(&signature.name, tensors, &[]).await?;
    let named: Vec<(&str, &Tensor)> = prediction
        .outputs
        .iter()
        .map(|(alias, t)| (alias.as_str(), t))
        .collect();
    let body = match format {
        Format::Row => write_row(&named)?,
        Format::Columnar => write_columnar(&named),
    };
    Ok(json_response(StatusCode::OK, body))
}

fn input_dtype(signature: &Signature, alias: &str) -> ApiResult<DataType> {
    signature.input(alias).map(|s| s.dtype).ok_or_else(|| {
        let known: Vec<&str> = signature.inputs.iter().map(|t| t.alias.as_str()).collect();
        ApiError::bad_request(format!(
            "JSON object: does not have named input: {alias}; the signature takes {known:?}"
        ))
    })
}

/// Row format: one entry per batch item, stacked along a new first dimension.
fn decode_instances(signature: &Signature, instances: Value) -> ApiResult<Vec<(String, Tensor)>> {
    let Value::Array(rows) = instances else {
        return Err(ApiError::bad_request(
            "Expecting 'instances' to be an list/array",
        ));
    };
    if rows.is_empty() {
        return Err(ApiError::bad_request("No values in 'instances' array"));
    }
    let objects = matches!(&rows[0], Value::Object(m) if !(m.len() == 1 && m.contains_key("b64")));
    let names: Vec<String> = if let (true, Value::Object(first)) = (objects, &rows[0]) {
        first.keys().cloned().collect()
    } else {
        if signature.inputs.len() != 1 {
            return Err(ApiError::bad_request(format!(
                "instances is a plain list, but expecting list of objects as multiple input tensors required as per tensorinfo_map: {:?}",
                signature
                    .inputs
                    .iter()
                    .map(|t| t.alias.as_str())
                    .collect::<Vec<_>>()
            )));
        }
        vec![signature.inputs[0].alias.clone()]
    };
    let mut out = Vec::with_capacity(names.len());
    for name in &names {
        let dtype = input_dtype(signature, name)?;
        let mut parts = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let value = if objects {
                let Value::Object(m) = row else {
                    return Err(ApiError::bad_request(format!(
                        "Expecting object but got list at item {i} of input list"
                    )));
                };
                if m.len() != names.len() {
                    return Err(ApiError::bad_request(format!(
                        "Failed to process element: {i} of 'instances' list. JSON object keys must be equal to: {}",
                        names.join(",")
                    )));
                }
                m.get(name).ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "Failed to process element: {i} of 'instances' list. JSON object: does not have named input: {name}"
                    ))
                })?
            } else {
                row
            };
            let what = format!("element {i} of 'instances', input `{name}`");
            let t = tensor_from_nested(value, dtype, &what).map_err(ApiError::bad_request)?;
            parts.push(t);
        }
        let first_shape = parts[0].shape().to_vec();
        if let Some((i, p)) = parts
            .iter()
            .enumerate()
            .find(|(_, p)| p.shape() != first_shape)
        {
            return Err(ApiError::bad_request(format!(
                "Failed to process element: {i} of 'instances' list: input `{name}` expecting shape {first_shape:?} but got: {:?}",
                p.shape()
            )));
        }
        let mut shape = vec![parts.len()];
        shape.extend_from_slice(&first_shape);
        let refs: Vec<Tensor> = parts
            .into_iter()
            .map(|p| {
                let (s, d) = p.into_parts();
                let mut s1 = vec![1];
                s1.extend(s);
                Tensor::new(s1, d)
            })
            .collect::<Result<_, _>>()
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let refs: Vec<&Tensor> = refs.iter().collect();
        let joined = Tensor::concat(&refs).map_err(|e| ApiError::bad_request(e.to_string()))?;
        out.push((name.clone(), joined));
    }
    Ok(out)
}

/// Columnar format: one value per input (or the value itself when there is one input).
fn decode_inputs(signature: &Signature, inputs: Value) -> ApiResult<Vec<(String, Tensor)>> {
    let is_b64 = matches!(&inputs, Value::Object(m) if m.len() == 1 && m.contains_key("b64"));
    match inputs {
        Value::Object(map) if !is_b64 => map
            .iter()
            .map(|(name, value)| {
                let dtype = input_dtype(signature, name)?;
                let t = tensor_from_nested(value, dtype, &format!("input `{name}`"))
                    .map_err(ApiError::bad_request)?;
                Ok((name.clone(), t))
            })
            .collect(),
        value => {
            if signature.inputs.len() != 1 {
                return Err(ApiError::bad_request(
                    "inputs is a plain value/list, but expecting an object as multiple input tensors required as per tensorinfo_map",
                ));
            }
            let spec = &signature.inputs[0];
            let t = tensor_from_nested(&value, spec.dtype, &format!("input `{}`", spec.alias))
                .map_err(ApiError::bad_request)?;
            Ok(vec![(spec.alias.clone(), t)])
        }
    }
}

fn is_bytes_name(name: &str) -> bool {
    name.ends_with("_bytes")
}

fn write_row(outputs: &[(&str, &Tensor)]) -> ApiResult<String> {
    let mut batch = None;
    for (name, t) in outputs {
        let Some(&n) = t.shape().first() else {
            return Err(ApiError::bad_request(format!(
                "Tensor name: {name} has no shape information "
            )));
        };
        match batch {
            None => batch = Some(n),
            Some(b) if b != n => {
                return Err(ApiError::bad_request(format!(
                    "Tensor name: {name} has inconsistent batch size: {n} expecting: {b}"
                )));
            }
            _ => {}
        }
    }
    let batch = batch.unwrap_or(0);
    let mut s = String::from("{\"predictions\":[");
    for i in 0..batch {
        if i > 0 {
            s.push(',');
        }
        if outputs.len() == 1 {
            let t = outputs[0].1;
            let row = &t.shape()[1..];
            write_nested(
                &mut s,
                t.data(),
                row,
                i * row.iter().product::<usize>(),
                is_bytes_name(outputs[0].0),
            );
        } else {
            s.push('{');
            for (k, (name, t)) in outputs.iter().enumerate() {
                if k > 0 {
                    s.push(',');
                }
                crate::json_tensor::write_str(&mut s, name);
                s.push(':');
                let row = &t.shape()[1..];
                write_nested(
                    &mut s,
                    t.data(),
                    row,
                    i * row.iter().product::<usize>(),
                    is_bytes_name(name),
                );
            }
            s.push('}');
        }
    }
    s.push_str("]}");
    Ok(s)
}

fn write_columnar(outputs: &[(&str, &Tensor)]) -> String {
    let mut s = String::from("{\"outputs\":");
    if outputs.len() == 1 {
        let (name, t) = outputs[0];
        write_nested(&mut s, t.data(), t.shape(), 0, is_bytes_name(name));
    } else {
        s.push('{');
        for (k, (name, t)) in outputs.iter().enumerate() {
            if k > 0 {
                s.push(',');
            }
            crate::json_tensor::write_str(&mut s, name);
            s.push(':');
            write_nested(&mut s, t.data(), t.shape(), 0, is_bytes_name(name));
        }
        s.push('}');
    }
    s.push('}');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_as_tf_serving_does() {
        let p = parse_path(&Method::POST, "m/versions/3:predict").expect("valid");
        assert_eq!(p.selector, VersionSelector::Specific(3));
        assert_eq!(p.action, "predict");
        let p = parse_path(&Method::POST, "m/labels/stable:predict").expect("valid");
        assert_eq!(p.selector, VersionSelector::Label("stable".into()));
        let p = parse_path(&Method::GET, "m/metadata").expect("valid");
        assert_eq!((p.name.as_str(), p.action.as_str()), ("m", "metadata"));
        let p = parse_path(&Method::GET, "m/versions/2").expect("valid");
        assert_eq!(p.selector, VersionSelector::Specific(2));
        for bad in [
            "m:explode",
            "m/version/1:predict",
            "m/versions/x:predict",
            ":predict",
            "m",
        ] {
            let e = parse_path(&Method::POST, bad).expect_err(bad);
            assert!(
                e.message.starts_with("Malformed request: POST"),
                "{}",
                e.message
            );
        }
        assert!(parse_path(&Method::GET, "m:predict").is_err());
    }
}
