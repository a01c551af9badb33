//! mofang-notebook: a papermill-compatible notebook runner on real Jupyter kernels.
//!
//! `run_notebook` reads a notebook (nbformat 4), injects parameters as papermill does (an
//! `injected-parameters` cell rendered by a per-language [`translate::Translator`]), starts the
//! kernel named by its kernelspec ([`kernelspec`]), executes every code cell over the Jupyter
//! messaging protocol ([`wire`], [`kernel`]) and records outputs and papermill's metadata
//! ([`record`]), saving the output notebook atomically as it goes. Failures — an exception in a
//! cell, a timed-out cell, a kernel that dies — are recorded in the notebook (statuses, error
//! output, papermill's banner) and reported as an [`Outcome`]; bad input is an [`Error`] before
//! anything is written.
//!
//! Invariants: the output file is only ever replaced whole (temporary file + rename), so it is
//! always a readable notebook; a started kernel's process group is always stopped (shutdown
//! escalation, or SIGKILL on drop). This crate knows nothing of the command line: flags are
//! parsed by the `mofang` binary into [`RunOptions`].

pub mod document;
pub mod kernel;
pub mod kernelspec;
pub mod outputs;
pub mod params;
pub mod record;
pub mod run;
pub mod storage;
pub mod sweep;
pub mod translate;
pub mod wire;

pub use params::{Params, Value};
pub use run::{
    Input, Observer, Outcome, Output, Quiet, RunHooks, RunOptions, run_notebook, run_notebook_with,
};

/// Errors before or outside a notebook's execution.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: invalid notebook: {why}")]
    InvalidNotebook { what: String, why: String },
    #[error("{what}: {why}")]
    InvalidParameters { what: String, why: String },
    #[error("{what}: {why}")]
    InvalidGrid { what: String, why: String },
    /// An `s3://` location: a malformed URL, a missing bucket or object, refused credentials.
    #[error("{url}: {why}")]
    Storage { url: String, why: String },
    #[error("output path {path}: {why}")]
    PathFormat { path: String, why: String },
    #[error("no kernel name in the notebook's metadata.kernelspec.name; give one with -k/--kernel")]
    NoKernelName,
    #[error(
        "no language in the notebook's metadata (language_info.name, kernelspec.language); give one with --language"
    )]
    NoLanguage,
    #[error(
        "no parameter translator for kernel `{kernel}` or language `{language}` (known: python, R, scala, julia, matlab, bash, .net-csharp, .net-fsharp, .net-powershell)"
    )]
    NoTranslator { kernel: String, language: String },
    #[error("no such kernel: `{name}`; available: {}", if available.is_empty() { "none (install one, e.g. `python -m pip install ipykernel`)".to_owned() } else { available.join(", ") })]
    UnknownKernel {
        name: String,
        available: Vec<String>,
    },
    #[error("kernel `{name}` did not start: {why}")]
    KernelStart { name: String, why: String },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
