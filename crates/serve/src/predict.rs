//! `POST /predict`: the Keras REST API tutorial's image upload → top-k labels.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use mofang_backend::{Tensor, TensorData};
use mofang_pipeline::ImageClassificationConfig;
use mofang_repository::{PipelineConfig, Servable, VersionSelector};
use serde_json::json;

use crate::AppState;
use crate::error::json_response;

/// The tutorial's error shape: `{"success": false, "error": "..."}`.
fn failure(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::debug!(%status, "predict: {message}");
    json_response(
        status,
        json!({"success": false, "error": message}).to_string(),
    )
}

fn boxed(status: StatusCode, message: impl Into<String>) -> Box<Response> {
    Box::new(failure(status, message))
}

fn image_config(servable: &Servable) -> Option<&ImageClassificationConfig> {
    match servable.config.pipeline.as_ref()? {
        PipelineConfig::ImageClassification(c) => Some(c),
        PipelineConfig::TokenClassification(_) => None,
    }
}

/// Picks the model: `?model=` (with optional `&version=`), else the only model with an image
/// classification pipeline.
fn choose(
    state: &AppState,
    query: &HashMap<String, String>,
) -> Result<Arc<Servable>, Box<Response>> {
    let selector = match query.get("version") {
        None => VersionSelector::Latest,
        Some(v) => VersionSelector::Specific(v.parse().map_err(|_| {
            boxed(
                StatusCode::BAD_REQUEST,
                format!("version `{v}` is not a number"),
            )
        })?),
    };
    let name = match query.get("model") {
        Some(m) => m.clone(),
        None => {
            let candidates: Vec<String> = state
                .manager
                .models()
                .into_iter()
                .filter(|m| {
                    state
                        .manager
                        .get(&m.name, &VersionSelector::Latest)
                        .is_ok_and(|s| image_config(&s).is_some())
                })
                .map(|m| m.name)
                .collect();
            match candidates.as_slice() {
                [one] => one.clone(),
                [] => {
                    return Err(boxed(
                        StatusCode::NOT_FOUND,
                        "no model with an image_classification pipeline is loaded",
                    ));
                }
                many => {
                    return Err(boxed(
                        StatusCode::BAD_REQUEST,
                        format!(
                            "several image models are loaded; choose one with ?model= (one of {many:?})"
                        ),
                    ));
                }
            }
        }
    };
    let servable = state
        .manager
        .get(&name, &selector)
        .map_err(|e| boxed(StatusCode::NOT_FOUND, e.to_string()))?;
    if image_config(&servable).is_none() {
        return Err(boxed(
            StatusCode::BAD_REQUEST,
            format!("model `{name}` has no image_classification pipeline in its config"),
        ));
    }
    Ok(servable)
}

pub async fn predict(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let started = std::time::Instant::now();
    let mut chosen = None;
    let response = handle(&state, &query, multipart, &mut chosen).await;
    let (name, version) = chosen.unwrap_or_default();
    crate::observe(
        &state,
        "predict",
        &name,
        version,
        response.status(),
        started,
    );
    response
}

async fn handle(
    state: &AppState,
    query: &HashMap<String, String>,
    multipart: Result<Multipart, MultipartRejection>,
    chosen: &mut Option<(String, Option<u64>)>,
) -> Response {
    let servable = match choose(state, query) {
        Ok(s) => s,
        Err(response) => return *response,
    };
    *chosen = Some((servable.name.clone(), Some(servable.version)));
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(e) => {
            return failure(
                StatusCode::BAD_REQUEST,
                format!("expected a multipart/form-data body with an `image` field: {e}"),
            );
        }
    };
    let mut image = None;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("image") => match field.bytes().await {
                Ok(b) => {
                    image = Some(b);
                    break;
                }
                Err(e) => {
                    return failure(e.status(), format!("cannot read the `image` field: {e}"));
                }
            },
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => return failure(e.status(), format!("malformed multipart body: {e}")),
        }
    }
    let Some(image) = image else {
        return failure(
            StatusCode::BAD_REQUEST,
            "no `image` field in the form (send it with curl -F image=@file.jpg)",
        );
    };
    let Some(cfg) = image_config(&servable).cloned() else {
        return failure(StatusCode::BAD_REQUEST, "model has no image pipeline");
    };
    let top_k = match query.get("top_k").map(|k| k.parse::<usize>()) {
        None => cfg.top_k,
        Some(Ok(k)) if k >= 1 => k,
        Some(_) => return failure(StatusCode::BAD_REQUEST, "top_k must be a positive integer"),
    };
    let pre_cfg = cfg.clone();
    let tensor =
        match tokio::task::spawn_blocking(move || mofang_pipeline::preprocess(&image, &pre_cfg))
            .await
        {
            Ok(Ok(t)) => t,
            Ok(Err(e)) => return failure(StatusCode::BAD_REQUEST, e.to_string()),
            Err(e) => {
                return failure(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("preprocessing failed: {e}"),
                );
            }
        };
    let input_name = cfg
        .input
        .clone()
        .or_else(|| servable.inputs().first().map(|s| s.name.clone()))
        .unwrap_or_default();
    let output_name = cfg
        .output
        .clone()
        .or_else(|| servable.outputs().first().map(|s| s.name.clone()))
        .unwrap_or_default();
    let input = match Tensor::new(tensor.shape.to_vec(), TensorData::F32(tensor.data)) {
        Ok(t) => t,
        Err(e) => return failure(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let outputs = match servable.infer(vec![(input_name, input)]).await {
        Ok(o) => o,
        Err(e) => {
            let err = crate::error::ApiError::from(e);
            return failure(err.status, err.message);
        }
    };
    let Some((_, scores)) = outputs.iter().find(|(n, _)| *n == output_name) else {
        return failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the model has no output `{output_name}`"),
        );
    };
    let scores: Vec<f32> = match scores.data() {
        TensorData::F32(v) => v.clone(),
        TensorData::F64(v) => v.iter().map(|x| *x as f32).collect(),
        TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
        other => {
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "output `{output_name}` is {}, expected floating-point scores",
                    other.dtype()
                ),
            );
        }
    };
    let mut cfg = cfg;
    cfg.top_k = top_k;
    let labels = servable.labels.as_deref().map(Vec::as_slice);
    let predictions: Vec<_> = mofang_pipeline::top_k(&scores, &cfg, labels)
        .into_iter()
        .map(|p| json!({"label": p.label, "probability": p.probability}))
        .collect();
    json_response(
        StatusCode::OK,
        json!({"success": true, "predictions": predictions}).to_string(),
    )
}
