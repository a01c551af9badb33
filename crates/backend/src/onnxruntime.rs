//! ONNX Runtime, loaded at run time from `libonnxruntime.so` (the one in the `onnxruntime` wheel).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use half::f16;
use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, TensorElementType, ValueType};
use parking_lot::{Condvar, Mutex};

use crate::{
    Backend, BackendKind, DataType, Error, LoadOptions, Model, Result, Tensor, TensorData,
    TensorSpec,
};

/// The ONNX Runtime backend. Creating it loads the shared library once per process.
#[derive(Debug)]
pub struct OrtBackend {
    environment: Arc<Environment>,
    library: PathBuf,
}

static ENVIRONMENT: OnceLock<std::result::Result<(Arc<Environment>, PathBuf), String>> =
    OnceLock::new();

/// Finds `libonnxruntime`: `explicit`, else `ORT_DYLIB_PATH`, else a `.venv` (the project's
/// set-up script installs the `onnxruntime` wheel there) next to the working directory or to
/// any ancestor of the running executable.
pub fn find_onnxruntime_library(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots
        .iter()
        .find_map(|root| find_in_venv(&root.join(".venv")))
}

fn find_in_venv(venv: &Path) -> Option<PathBuf> {
    let lib = std::fs::read_dir(venv.join("lib")).ok()?;
    for entry in lib.flatten() {
        let capi = entry.path().join("site-packages/onnxruntime/capi");
        let Ok(files) = std::fs::read_dir(&capi) else {
            continue;
        };
        let mut found: Vec<PathBuf> = files
            .flatten()
            .map(|f| f.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so"))
            })
            .collect();
        found.sort();
        if let Some(p) = found.pop() {
            return Some(p);
        }
    }
    None
}

impl OrtBackend {
    /// Loads ONNX Runtime (see [`find_onnxruntime_library`]). Only the first call in a process
    /// loads a library; later calls share it.
    pub fn new(library: Option<&Path>) -> Result<OrtBackend> {
        let unavailable = |reason: String| Error::Unavailable {
            backend: BackendKind::OnnxRuntime,
            reason,
        };
        let result = ENVIRONMENT.get_or_init(|| {
            let path = find_onnxruntime_library(library).ok_or_else(|| {
                "libonnxruntime not found: set ORT_DYLIB_PATH or run scripts/setup.sh".to_string()
            })?;
            if !path.is_file() {
                return Err(format!("{} does not exist", path.display()));
            }
            let builder = ort::init_from(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let env = builder
                .with_name("mofang")
                .with_telemetry(false)
                .build()
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((Arc::new(env), path))
        });
        let (environment, library) = result.clone().map_err(unavailable)?;
        Ok(OrtBackend {
            environment,
            library,
        })
    }

    /// The shared library in use.
    pub fn library(&self) -> &Path {
        &self.library
    }

    fn session(&self, path: &Path, options: &LoadOptions) -> std::result::Result<Session, String> {
        let builder = Session::builder(&self.environment).map_err(|e| e.to_string())?;
        let mut builder = builder
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| e.to_string())?
            .with_intra_threads(options.intra_op_threads.max(1))
            .map_err(|e| e.to_string())?
            .with_inter_threads(options.inter_op_threads.max(1))
            .map_err(|e| e.to_string())?
            .with_parallel_execution(options.inter_op_threads > 1)
            .map_err(|e| e.to_string())?;
        builder.commit_from_file(path).map_err(|e| e.to_string())
    }
}

impl Backend for OrtBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::OnnxRuntime
    }

    fn load(&self, path: &Path, options: &LoadOptions) -> Result<Arc<dyn Model>> {
        let load_err = |message: String| Error::Load {
            path: path.to_path_buf(),
            message,
        };
        let instances = options.instances.max(1);
        let mut sessions = Vec::with_capacity(instances);
        for _ in 0..instances {
            sessions.push(self.session(path, options).map_err(load_err)?);
        }
        let first = &sessions[0];
        let inputs = first
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(load_err)?;
        let outputs = first
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(load_err)?;
        Ok(Arc::new(OrtModel {
            inputs,
            outputs,
            pool: Mutex::new(sessions),
            available: Condvar::new(),
        }))
    }
}

fn spec(name: &str, ty: &ValueType) -> std::result::Result<TensorSpec, String> {
    let ValueType::Tensor { ty, shape, .. } = ty else {
        return Err(format!(
            "`{name}` is not a tensor ({ty:?}); only tensors are supported"
        ));
    };
    Ok(TensorSpec {
        name: name.to_string(),
        dtype: from_ort(*ty).ok_or_else(|| format!("`{name}` has unsupported type {ty:?}"))?,
        shape: shape.iter().map(|d| usize::try_from(*d).ok()).collect(),
    })
}

fn from_ort(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Uint16 => DataType::U16,
        TensorElementType::Uint32 => DataType::U32,
        TensorElementType::Uint64 => DataType::U64,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Float16 => DataType::F16,
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

/// A model with a pool of sessions: `Session::run` needs `&mut self`, so each concurrent
/// execution takes one session out of the pool and puts it back afterwards.
struct OrtModel {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    pool: Mutex<Vec<Session>>,
    available: Condvar,
}

impl OrtModel {
    fn take(&self) -> Session {
        let mut pool = self.pool.lock();
        loop {
            if let Some(s) = pool.pop() {
                return s;
            }
            self.available.wait(&mut pool);
        }
    }

    fn give_back(&self, session: Session) {
        self.pool.lock().push(session);
        self.available.notify_one();
    }
}

fn to_value(tensor: Tensor) -> std::result::Result<DynValue, String> {
    let (shape, data) = tensor.into_parts();
    let v = match data {
        TensorData::Bool(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::U8(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::U16(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::U32(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::U64(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::I8(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::I16(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::I32(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::I64(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::F16(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::F32(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::F64(v) => ort::value::Tensor::from_array((shape, v)).map(|t| t.into_dyn()),
        TensorData::Bytes(v) => {
            let strings = v
                .into_iter()
                .map(String::from_utf8)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| "string tensors must be UTF-8 for ONNX Runtime".to_string())?;
            ort::value::Tensor::from_string_array((shape, strings.as_slice())).map(|t| t.into_dyn())
        }
    };
    v.map_err(|e| e.to_string())
}

fn from_value(value: &DynValue) -> std::result::Result<Tensor, String> {
    fn dims(shape: &[i64]) -> Vec<usize> {
        shape
            .iter()
            .map(|d| usize::try_from(*d).unwrap_or(0))
            .collect()
    }
    macro_rules! prim {
        ($t:ty, $var:ident) => {{
            let (shape, data) = value
                .try_extract_tensor::<$t>()
                .map_err(|e| e.to_string())?;
            (dims(shape), TensorData::$var(data.to_vec()))
        }};
    }
    let ValueType::Tensor { ty, .. } = value.dtype() else {
        return Err("the model produced a non-tensor output".into());
    };
    let (shape, data) = match ty {
        TensorElementType::Bool => prim!(bool, Bool),
        TensorElementType::Uint8 => prim!(u8, U8),
        TensorElementType::Uint16 => prim!(u16, U16),
        TensorElementType::Uint32 => prim!(u32, U32),
        TensorElementType::Uint64 => prim!(u64, U64),
        TensorElementType::Int8 => prim!(i8, I8),
        TensorElementType::Int16 => prim!(i16, I16),
        TensorElementType::Int32 => prim!(i32, I32),
        TensorElementType::Int64 => prim!(i64, I64),
        TensorElementType::Float16 => prim!(f16, F16),
        TensorElementType::Float32 => prim!(f32, F32),
        TensorElementType::Float64 => prim!(f64, F64),
        TensorElementType::String => {
            let (shape, strings) = value.try_extract_strings().map_err(|e| e.to_string())?;
            (
                dims(shape),
                TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()),
            )
        }
        other => return Err(format!("unsupported output type {other:?}")),
    };
    Tensor::new(shape, data).map_err(|e| e.to_string())
}

impl Model for OrtModel {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        let mut values: Vec<(String, SessionInputValue<'static>)> =
            Vec::with_capacity(inputs.len());
        for (name, tensor) in inputs {
            let value = to_value(tensor).map_err(Error::InvalidInput)?;
            values.push((name, value.into()));
        }
        let mut session = self.take();
        let result = (|| {
            let outputs = session.run(values).map_err(|e| e.to_string())?;
            let mut out = Vec::with_capacity(self.outputs.len());
            for spec in &self.outputs {
                let value = outputs
                    .get(&spec.name)
                    .ok_or_else(|| format!("output `{}` missing from the result", spec.name))?;
                out.push((spec.name.clone(), from_value(value)?));
            }
            Ok::<_, String>(out)
        })();
        self.give_back(session);
        result.map_err(Error::Inference)
    }
}
