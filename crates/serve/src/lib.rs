//! The model server's HTTP edge.
//!
//! One axum [`Router`] answers TF Serving's REST API (`/v1/...`), the KServe V2 / Open
//! Inference Protocol REST API (`/v2/...`), the text-in/entities-out NER endpoint
//! (`/v2/models/{name}/entities`) and the tutorial-style `POST /predict` image upload,
//! over the models a [`Manager`] serves. This is the only crate that knows about HTTP and JSON;
//! it converts wire formats into [`mofang_backend::Tensor`]s and repository errors into
//! `{"error": "..."}` responses with TF Serving's status codes.

mod error;
mod json_tensor;
mod kserve;
mod predict;
mod text;
mod tfserving;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mofang_repository::Manager;

pub use error::ApiError;

/// Limits and behaviour of the HTTP edge.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// A request that takes longer (reading its body included) gets 504.
    pub request_timeout: Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_body_bytes: 64 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// What every handler sees.
#[derive(Debug, Clone)]
pub struct AppState {
    manager: Manager,
    config: Arc<ServeConfig>,
    draining: Arc<AtomicBool>,
}

impl AppState {
    pub fn new(manager: Manager, config: ServeConfig) -> AppState {
        AppState {
            manager,
            config: Arc::new(config),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Ready until shutdown starts (then `/v2/health/ready` answers 503 so balancers move away).
    pub fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    pub fn manager(&self) -> &Manager {
        &self.manager
    }
}

/// The REST API as a router (tests call it in-process).
pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    let timeout = state.config.request_timeout;
    Router::new()
        .route("/v1/models", get(tfserving::get_root))
        .route(
            "/v1/models/{*rest}",
            get(tfserving::get).post(tfserving::post),
        )
        .route("/v2", get(kserve::server_metadata))
        .route("/v2/health/live", get(kserve::live))
        .route("/v2/health/ready", get(kserve::ready))
        .route("/v2/models/{name}", get(kserve::model_metadata))
        .route("/v2/models/{name}/ready", get(kserve::model_ready))
        .route("/v2/models/{name}/infer", post(kserve::infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(kserve::model_version_metadata),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(kserve::model_version_ready),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(kserve::infer_version),
        )
        .route("/v2/models/{name}/entities", post(text::entities))
        .route(
            "/v2/models/{name}/versions/{version}/entities",
            post(text::entities_version),
        )
        .route("/predict", post(predict::predict))
        .route("/metrics", get(metrics))
        .route("/monitoring/prometheus/metrics", get(metrics))
        .fallback(not_found)
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            json_errors(req, next, limit, timeout)
        }))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Prometheus text exposition of every metric.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> Response {
    let body = state.manager.metrics().registry.render();
    ([(header::CONTENT_TYPE, mofang_metrics::CONTENT_TYPE)], body).into_response()
}

/// Counts one inference request and its latency. Unknown model names share one label value so
/// that clients cannot grow the metric set without bound.
pub(crate) fn observe(
    state: &AppState,
    protocol: &str,
    model: &str,
    version: Option<u64>,
    status: StatusCode,
    started: Instant,
) {
    let known = state
        .manager
        .get(model, &mofang_repository::VersionSelector::Latest)
        .is_ok();
    let model = if known { model } else { "_unknown" };
    let version = version.map(|v| v.to_string()).unwrap_or_default();
    let outcome = match status.as_u16() {
        200..=299 => "ok",
        404 => "not_found",
        429 => "queue_full",
        400..=499 => "invalid",
        _ => "error",
    };
    let m = state.manager.metrics();
    m.requests.with(&[model, &version, protocol, outcome]).inc();
    m.request_duration
        .with(&[model, protocol])
        .observe(started.elapsed().as_secs_f64());
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint: {} {}",
        req.method(),
        req.uri().path()
    ))
}

/// Applies the request timeout and turns axum's plain-text rejections (413 body too large,
/// 405 method not allowed, 415/422 extractor failures) into `{"error": ...}` JSON.
async fn json_errors(req: Request, next: Next, limit: usize, timeout: Duration) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let response = match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            return ApiError {
                status: StatusCode::GATEWAY_TIMEOUT,
                message: format!("request took longer than the {timeout:?} limit"),
            }
            .into_response();
        }
    };
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    let status = response.status();
    if is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let message = match status {
        StatusCode::PAYLOAD_TOO_LARGE => {
            format!("request body is larger than the limit of {limit} bytes (--max-body-bytes)")
        }
        StatusCode::METHOD_NOT_ALLOWED => format!("method {method} is not allowed on {path}"),
        StatusCode::NOT_FOUND | StatusCode::BAD_REQUEST | StatusCode::SERVICE_UNAVAILABLE
            if response
                .headers()
                .get(header::CONTENT_LENGTH)
                .is_some_and(|l| l == "0") =>
        {
            return response;
        }
        other => {
            let bytes = axum::body::to_bytes(response.into_body(), 64 * 1024)
                .await
                .unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).trim().to_string();
            return ApiError {
                status: other,
                message: if text.is_empty() {
                    other.canonical_reason().unwrap_or("error").to_string()
                } else {
                    text
                },
            }
            .into_response();
        }
    };
    ApiError { status, message }.into_response()
}

/// Serves until `shutdown` resolves, then stops accepting, marks itself not ready and lets
/// in-flight requests finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let draining = Arc::clone(&state.draining);
    let app = router(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            draining.store(true, Ordering::Relaxed);
            tracing::info!("shutting down: draining in-flight requests");
        })
        .await
}
