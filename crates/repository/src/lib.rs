//! The versioned model repository.
//!
//! A repository is a directory `<root>/<model>/<version>/model.onnx` with an optional
//! `<root>/<model>/config.yaml` ([`ModelConfig`]). The [`Manager`] scans it, loads the versions
//! each model's version policy selects on the chosen backend, and on every poll loads new
//! versions, reloads changed ones and unloads removed ones. A loaded version is a [`Servable`]
//! shared by `Arc`: a request that holds one finishes even if the version is unloaded meanwhile.
//! A version that fails to load is kept as a status with its error; other models are untouched.
//!
//! This crate knows nothing about HTTP or gRPC: the edge crates turn its [`Error`]s into
//! protocol errors.

mod config;
mod manager;
mod servable;
mod text;

pub use config::{
    BatchingConfig, CONFIG_FILE, DEFAULT_MAX_QUEUE_SIZE, DEFAULT_SIGNATURE, ModelConfig,
    PipelineConfig, SignatureConfig, SignatureInput, Threads, VersionPolicy,
};
pub use manager::{Manager, ManagerOptions, ModelStatus, Source, VersionState, VersionStatus};
pub use servable::{Prediction, Servable, Signature, SignatureTensor};
pub use text::{TextInput, TokenClassification};

use std::fmt;

/// How a request names the version it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    /// The highest available version.
    Latest,
    Specific(u64),
    /// A label from the model's `version_labels`.
    Label(String),
}

/// Errors of this crate. The `Display` texts of the lookup errors are TF Serving's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Unknown model, or no such (available) version: HTTP 404 / NOT_FOUND.
    #[error("Servable not found for request: {0}")]
    NotFound(ServableRequest),
    /// A label the model config does not define: HTTP 400 / INVALID_ARGUMENT.
    #[error("Unrecognized servable version label: {0}")]
    UnknownLabel(String),
    /// No version of the model is known at all (status requests).
    #[error("Could not find any versions of model {0}")]
    NoVersions(String),
    #[error("Could not find version {version} of model {model}")]
    NoSuchVersion { model: String, version: u64 },
    /// The version's queue is full (HTTP 429 / RESOURCE_EXHAUSTED).
    #[error("{0}")]
    QueueFull(String),
    /// The version is shutting down (HTTP 503 / UNAVAILABLE).
    #[error("{0}")]
    Unavailable(String),
    /// The request's tensors do not fit the model (HTTP 400 / INVALID_ARGUMENT).
    #[error("{0}")]
    InvalidInput(String),
    /// A config file is invalid; the message names the field.
    #[error("invalid model config: {0}")]
    Config(String),
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Backend(mofang_backend::Error),
}

impl From<mofang_backend::Error> for Error {
    fn from(e: mofang_backend::Error) -> Self {
        match e {
            mofang_backend::Error::InvalidInput(m) => Error::InvalidInput(m),
            other => Error::Backend(other),
        }
    }
}

impl From<mofang_batch::Error> for Error {
    fn from(e: mofang_batch::Error) -> Self {
        match e {
            mofang_batch::Error::QueueFull(_) => Error::QueueFull(e.to_string()),
            mofang_batch::Error::InvalidInput(m) => Error::InvalidInput(m),
            mofang_batch::Error::Inference(m) => {
                Error::Backend(mofang_backend::Error::Inference(m))
            }
            mofang_batch::Error::Stopped => Error::Unavailable(e.to_string()),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A model name and selector, printed the way TF Serving prints servable requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServableRequest {
    pub name: String,
    pub version: Option<u64>,
}

impl fmt::Display for ServableRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            None => write!(f, "Latest({})", self.name),
            Some(v) => write!(f, "Specific({}, {v})", self.name),
        }
    }
}
