//! One error type for every REST endpoint: `{"error": "..."}` with TF Serving's status mapping.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use mofang_repository::Error as RepoError;

/// An error answered to a client. 4xx messages say what was wrong with the request; 5xx
/// details are logged, and the client gets the message too (it names no secrets).
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
}

impl From<RepoError> for ApiError {
    fn from(e: RepoError) -> Self {
        // TF Serving: NOT_FOUND → 404, INVALID_ARGUMENT → 400, UNAVAILABLE → 503, else 500.
        let status = match &e {
            RepoError::NotFound(_) | RepoError::NoVersions(_) | RepoError::NoSuchVersion { .. } => {
                StatusCode::NOT_FOUND
            }
            RepoError::UnknownLabel(_) | RepoError::InvalidInput(_) => StatusCode::BAD_REQUEST,
            RepoError::QueueFull(_) => StatusCode::TOO_MANY_REQUESTS,
            RepoError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RepoError::Backend(mofang_backend::Error::Unavailable { .. }) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            RepoError::Config(_) | RepoError::Io(_) | RepoError::Backend(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError {
            status,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.message);
        } else {
            tracing::debug!(status = %self.status, "{}", self.message);
        }
        json_response(self.status, error_body(&self.message))
    }
}

/// `{"error": message}` as JSON text.
pub fn error_body(message: &str) -> String {
    serde_json::json!({ "error": message }).to_string()
}

pub fn json_response(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

pub type ApiResult<T> = Result<T, ApiError>;
