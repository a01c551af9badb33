//! Errors of the control plane and their HTTP form: a status and `{"error": "..."}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// What went wrong in the control plane.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request is malformed or names something invalid (400).
    #[error("{0}")]
    BadRequest(String),
    /// No or an unknown API token (401).
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not see or change this (403).
    #[error("{0}")]
    Forbidden(String),
    /// The job, queue or log does not exist or is not visible to the caller (404).
    #[error("{0}")]
    NotFound(String),
    /// It exists already or is in a state that does not allow the change (409).
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but can never be satisfied, e.g. a gang larger than the cluster (422).
    #[error("{0}")]
    Unprocessable(String),
    /// The request body is larger than the configured limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Store(#[from] mofang_store::Error),
    /// The executor failed to start or stop a process.
    #[error("executor: {0}")]
    Executor(#[from] mofang_executor::Error),
    /// A file of the data directory could not be read or written.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) => StatusCode::CONFLICT,
            Error::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Error::Store(mofang_store::Error::Conflict(_)) => StatusCode::CONFLICT,
            Error::Store(mofang_store::Error::NotFound(_)) => StatusCode::NOT_FOUND,
            Error::Store(mofang_store::Error::Invalid { .. }) => StatusCode::BAD_REQUEST,
            Error::Store(_) | Error::Executor(_) | Error::Io { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let mut response = (
            status,
            Json(serde_json::json!({ "error": self.to_string() })),
        )
            .into_response();
        if status == StatusCode::UNAUTHORIZED
            && let Ok(value) = "Bearer".parse()
        {
            response
                .headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
