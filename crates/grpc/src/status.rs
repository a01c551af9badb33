//! Repository errors → gRPC status codes: the one table the gRPC edge uses, mirroring the
//! REST edge's HTTP statuses (404 ↔ NOT_FOUND, 400 ↔ INVALID_ARGUMENT, 429 ↔
//! RESOURCE_EXHAUSTED, 503 ↔ UNAVAILABLE, 500 ↔ INTERNAL).

use mofang_repository::Error as RepoError;
use tonic::{Code, Status};

/// The status a repository error is answered with; the message is the error's text (TF
/// Serving's texts for lookups). Server-side failures are logged.
pub fn status_of(e: &RepoError) -> Status {
    let code = match e {
        RepoError::NotFound(_) | RepoError::NoVersions(_) | RepoError::NoSuchVersion { .. } => {
            Code::NotFound
        }
        RepoError::UnknownLabel(_) | RepoError::InvalidInput(_) => Code::InvalidArgument,
        RepoError::QueueFull(_) => Code::ResourceExhausted,
        RepoError::Unavailable(_)
        | RepoError::Backend(mofang_backend::Error::Unavailable { .. }) => Code::Unavailable,
        RepoError::Config(_) | RepoError::Io(_) | RepoError::Backend(_) => Code::Internal,
    };
    if code == Code::Internal {
        tracing::error!("gRPC request failed: {e}");
    }
    Status::new(code, e.to_string())
}

/// INVALID_ARGUMENT with `message`.
pub(crate) fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(message)
}
