//! Inference backends behind one trait.
//!
//! A [`Backend`] turns a model file into a loaded [`Model`]; a [`Model`] declares its inputs and
//! outputs as [`TensorSpec`]s and runs a batch of named [`Tensor`]s. Two implementations:
//! ONNX Runtime (feature `ort`, loaded dynamically from a shared library at run time) and tract
//! (feature `tract`, pure Rust). This crate knows nothing about HTTP, gRPC or model repositories;
//! [`Model::run`] blocks, so callers run it off their async threads.

mod tensor;

#[cfg(feature = "ort")]
mod onnxruntime;
#[cfg(feature = "tract")]
mod tract;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use tensor::{DataType, Tensor, TensorData, TensorSpec, element_count};

#[cfg(feature = "ort")]
pub use onnxruntime::{OrtBackend, find_onnxruntime_library};
#[cfg(feature = "tract")]
pub use tract::TractBackend;

/// Errors of this crate. [`Error::InvalidInput`] is the caller's fault (bad dtype, shape, data);
/// every other kind is the model's or the machine's.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidInput(String),
    #[error("backend {backend} is not available: {reason}")]
    Unavailable {
        backend: BackendKind,
        reason: String,
    },
    #[error("cannot load {}: {message}", path.display())]
    Load { path: PathBuf, message: String },
    #[error("inference failed: {0}")]
    Inference(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The inference engines mofang can run a model on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendKind {
    OnnxRuntime,
    Tract,
}

impl BackendKind {
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::OnnxRuntime => "onnxruntime",
            BackendKind::Tract => "tract",
        }
    }

    /// The platform string KServe V2 model metadata reports (Triton's names).
    pub fn platform(self) -> &'static str {
        match self {
            BackendKind::OnnxRuntime => "onnxruntime_onnx",
            BackendKind::Tract => "tract_onnx",
        }
    }

    pub fn parse(name: &str) -> Option<BackendKind> {
        match name {
            "onnxruntime" | "ort" | "onnxruntime_onnx" => Some(BackendKind::OnnxRuntime),
            "tract" => Some(BackendKind::Tract),
            _ => None,
        }
    }
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How to load one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Threads used inside one operator (ONNX Runtime intra-op; tract ignores it).
    pub intra_op_threads: usize,
    /// Threads used to run independent operators in parallel (1 = sequential execution).
    pub inter_op_threads: usize,
    /// How many executions of this model may run at the same time (ONNX Runtime sessions in the pool).
    pub instances: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            intra_op_threads: 1,
            inter_op_threads: 1,
            instances: 1,
        }
    }
}

/// An inference engine able to load model files.
pub trait Backend: Send + Sync + fmt::Debug {
    fn kind(&self) -> BackendKind;

    /// Loads and prepares the model at `path`. Slow (reads and optimises the graph): call it off
    /// async threads. Fails with [`Error::Load`] when the file is missing, corrupt or unsupported.
    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Arc<dyn Model>>;
}

/// A loaded model, ready to run. Implementations are safe to call from several threads at once:
/// they queue internally up to their number of instances.
pub trait Model: Send + Sync {
    fn inputs(&self) -> &[TensorSpec];
    fn outputs(&self) -> &[TensorSpec];

    /// Runs the model on one batch. `inputs` holds every graph input by name, already checked
    /// with [`Model::check_inputs`]. Returns every graph output, in [`Model::outputs`] order.
    /// Blocks the calling thread for the whole computation.
    fn run(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>>;

    /// Checks names, dtypes and shapes of `inputs` against [`Model::inputs`] and puts them in
    /// graph order. Errors name the input and what was expected.
    fn check_inputs(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        check_inputs(self.inputs(), inputs)
    }
}

/// See [`Model::check_inputs`].
pub fn check_inputs(
    specs: &[TensorSpec],
    mut inputs: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>> {
    if let Some((name, _)) = inputs
        .iter()
        .find(|(name, _)| !specs.iter().any(|s| &s.name == name))
    {
        let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        return Err(Error::InvalidInput(format!(
            "unknown input `{name}`; the model takes {known:?}"
        )));
    }
    let mut ordered = Vec::with_capacity(specs.len());
    for spec in specs {
        let pos = inputs
            .iter()
            .position(|(name, _)| name == &spec.name)
            .ok_or_else(|| {
                Error::InvalidInput(format!(
                    "missing input `{}` ({} with shape {:?})",
                    spec.name,
                    spec.dtype,
                    spec.signed_shape()
                ))
            })?;
        let (name, tensor) = inputs.swap_remove(pos);
        spec.check(&tensor)?;
        ordered.push((name, tensor));
    }
    Ok(ordered)
}

/// The backends available in this process.
#[derive(Debug, Clone)]
pub struct Backends {
    onnxruntime: Option<Arc<dyn Backend>>,
    onnxruntime_error: Option<String>,
    tract: Option<Arc<dyn Backend>>,
}

impl Backends {
    /// Detects the backends: ONNX Runtime when its shared library is found (`library`, else
    /// `ORT_DYLIB_PATH`, else the project's `.venv`), tract when compiled in.
    pub fn detect(library: Option<&Path>) -> Backends {
        #[cfg(feature = "ort")]
        let (onnxruntime, onnxruntime_error) = match OrtBackend::new(library) {
            Ok(b) => (Some(Arc::new(b) as Arc<dyn Backend>), None),
            Err(e) => (None, Some(e.to_string())),
        };
        #[cfg(not(feature = "ort"))]
        let (onnxruntime, onnxruntime_error) = {
            let _ = library;
            (
                None,
                Some("mofang was built without the `ort` feature".to_string()),
            )
        };
        #[cfg(feature = "tract")]
        let tract = Some(Arc::new(TractBackend) as Arc<dyn Backend>);
        #[cfg(not(feature = "tract"))]
        let tract = None;
        Backends {
            onnxruntime,
            onnxruntime_error,
            tract,
        }
    }

    /// ONNX Runtime when available, else tract.
    pub fn default_kind(&self) -> BackendKind {
        if self.onnxruntime.is_some() {
            BackendKind::OnnxRuntime
        } else {
            BackendKind::Tract
        }
    }

    /// Why ONNX Runtime is not available, if it is not.
    pub fn onnxruntime_error(&self) -> Option<&str> {
        self.onnxruntime_error.as_deref()
    }

    pub fn get(&self, kind: BackendKind) -> Result<Arc<dyn Backend>> {
        let found = match kind {
            BackendKind::OnnxRuntime => self.onnxruntime.clone(),
            BackendKind::Tract => self.tract.clone(),
        };
        found.ok_or_else(|| Error::Unavailable {
            backend: kind,
            reason: match kind {
                BackendKind::OnnxRuntime => self
                    .onnxruntime_error
                    .clone()
                    .unwrap_or_else(|| "not compiled in".into()),
                BackendKind::Tract => "mofang was built without the `tract` feature".into(),
            },
        })
    }
}
