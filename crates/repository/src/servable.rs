//! One loaded model version and its signatures.

use std::path::PathBuf;
use std::sync::Arc;

use mofang_backend::{BackendKind, DataType, Model, Tensor, TensorSpec};
use mofang_batch::{BatchConfig, BatchMetrics, Batcher, Batching};
use mofang_metrics::ServingMetrics;

use crate::config::{DEFAULT_MAX_QUEUE_SIZE, DEFAULT_SIGNATURE, ModelConfig, SignatureInput};
use crate::text::TokenClassification;
use crate::{Error, Result};

/// A tensor of a signature: the name clients use, the graph tensor behind it (`None` for an
/// input that is accepted and ignored) and what it declares.
#[derive(Debug, Clone, PartialEq)]
pub struct SignatureTensor {
    pub alias: String,
    pub graph_name: Option<String>,
    pub dtype: DataType,
    pub shape: Vec<Option<usize>>,
}

impl SignatureTensor {
    /// The signature tensor `alias` standing for the graph tensor `spec`.
    fn mapped(alias: &str, spec: &TensorSpec) -> SignatureTensor {
        SignatureTensor {
            alias: alias.to_string(),
            graph_name: Some(spec.name.clone()),
            dtype: spec.dtype,
            shape: spec.shape.clone(),
        }
    }

    pub fn signed_shape(&self) -> Vec<i64> {
        self.shape
            .iter()
            .map(|d| d.map_or(-1, |v| v as i64))
            .collect()
    }
}

/// A TF-Serving-style signature, resolved against the loaded graph.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub name: String,
    pub method_name: String,
    pub inputs: Vec<SignatureTensor>,
    pub outputs: Vec<SignatureTensor>,
}

impl Signature {
    fn identity(model: &dyn Model) -> Signature {
        let map = |s: &TensorSpec| SignatureTensor::mapped(&s.name, s);
        Signature {
            name: DEFAULT_SIGNATURE.into(),
            method_name: "tensorflow/serving/predict".into(),
            inputs: model.inputs().iter().map(map).collect(),
            outputs: model.outputs().iter().map(map).collect(),
        }
    }

    pub fn input(&self, alias: &str) -> Option<&SignatureTensor> {
        self.inputs.iter().find(|t| t.alias == alias)
    }

    pub fn output(&self, alias: &str) -> Option<&SignatureTensor> {
        self.outputs.iter().find(|t| t.alias == alias)
    }
}

/// What a loaded version is made of, before its batcher starts.
pub(crate) struct Parts {
    pub name: String,
    pub version: u64,
    pub backend: BackendKind,
    pub dir: PathBuf,
    pub config: Arc<ModelConfig>,
    pub labels: Option<Arc<Vec<String>>>,
    pub token_classification: Option<Arc<TokenClassification>>,
    pub model: Arc<dyn Model>,
}

/// A loaded, ready model version.
pub struct Servable {
    pub name: String,
    pub version: u64,
    pub backend: BackendKind,
    pub dir: PathBuf,
    pub config: Arc<ModelConfig>,
    pub labels: Option<Arc<Vec<String>>>,
    /// The loaded `token_classification` pipeline (vocabulary, tags, tensor names), if any.
    pub token_classification: Option<Arc<TokenClassification>>,
    pub signatures: Vec<Signature>,
    model: Arc<dyn Model>,
    batcher: Batcher,
}

impl std::fmt::Debug for Servable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Servable")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Servable {
    pub(crate) fn new(parts: Parts, metrics: &ServingMetrics) -> Result<Servable> {
        let Parts {
            name,
            version,
            backend,
            dir,
            config,
            labels,
            token_classification,
            model,
        } = parts;
        let signatures = resolve_signatures(&config, model.as_ref())?;
        let v = version.to_string();
        let cells = [name.as_str(), v.as_str()];
        let batch_metrics = BatchMetrics {
            queue_duration: metrics.queue_duration.with(&cells),
            compute_duration: metrics.compute_duration.with(&cells),
            batch_size: metrics.batch_size.with(&cells),
            queue_depth: metrics.queue_depth.with(&cells),
        };
        let batch_config = BatchConfig {
            batching: config.batching.as_ref().map(|b| Batching {
                max_batch_size: b.max_batch_size,
                max_queue_delay: std::time::Duration::from_micros(b.max_queue_delay_micros),
                allowed_batch_sizes: b.allowed_batch_sizes.clone(),
            }),
            max_queue_size: config
                .batching
                .as_ref()
                .map_or(DEFAULT_MAX_QUEUE_SIZE, |b| b.max_queue_size),
            instances: config.instances,
        };
        let batcher = Batcher::start(
            &format!("{name}-{version}"),
            Arc::clone(&model),
            batch_config,
            Some(batch_metrics),
        )
        .map_err(|e| Error::Io(format!("cannot start inference threads: {e}")))?;
        Ok(Servable {
            name,
            version,
            backend,
            dir,
            config,
            labels,
            token_classification,
            signatures,
            model,
            batcher,
        })
    }

    /// The graph's own inputs and outputs.
    pub fn inputs(&self) -> &[TensorSpec] {
        self.model.inputs()
    }

    pub fn outputs(&self) -> &[TensorSpec] {
        self.model.outputs()
    }

    pub fn signature(&self, name: &str) -> Option<&Signature> {
        self.signatures.iter().find(|s| s.name == name)
    }

    /// Runs the model on graph-named inputs through the version's batch queue, on its worker
    /// threads. Checks names, dtypes and shapes first; the errors say which input and what was
    /// expected. Cancel-safe: dropping the future withdraws a request that has not run yet.
    pub async fn infer(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        let inputs = self.model.check_inputs(inputs)?;
        Ok(self.batcher.infer(inputs).await?)
    }
}

fn resolve_signatures(config: &ModelConfig, model: &dyn Model) -> Result<Vec<Signature>> {
    if config.signatures.is_empty() {
        return Ok(vec![Signature::identity(model)]);
    }
    let mut out = Vec::new();
    for (name, sig) in &config.signatures {
        let mut inputs = Vec::new();
        for (alias, input) in &sig.inputs {
            inputs.push(match input {
                SignatureInput::Graph(graph) => {
                    let spec = model
                        .inputs()
                        .iter()
                        .find(|s| &s.name == graph)
                        .ok_or_else(|| {
                            Error::Config(format!(
                                "signatures.{name}.inputs.{alias}: the graph has no input `{graph}`"
                            ))
                        })?;
                    SignatureTensor::mapped(alias, spec)
                }
                SignatureInput::Ignored { dtype, shape, .. } => SignatureTensor {
                    alias: alias.clone(),
                    graph_name: None,
                    dtype: DataType::from_short_name(dtype).ok_or_else(|| {
                        Error::Config(format!("signatures.{name}.inputs.{alias}.dtype: `{dtype}`"))
                    })?,
                    shape: shape.iter().map(|d| usize::try_from(*d).ok()).collect(),
                },
            });
        }
        for spec in model.inputs() {
            if !inputs
                .iter()
                .any(|t| t.graph_name.as_deref() == Some(spec.name.as_str()))
            {
                return Err(Error::Config(format!(
                    "signatures.{name}.inputs: graph input `{}` is not mapped",
                    spec.name
                )));
            }
        }
        let mut outputs = Vec::new();
        if sig.outputs.is_empty() {
            outputs = Signature::identity(model).outputs;
        }
        for (alias, graph) in &sig.outputs {
            let spec = model
                .outputs()
                .iter()
                .find(|s| &s.name == graph)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "signatures.{name}.outputs.{alias}: the graph has no output `{graph}`"
                    ))
                })?;
            outputs.push(SignatureTensor::mapped(alias, spec));
        }
        out.push(Signature {
            name: name.clone(),
            method_name: sig.method_name.clone(),
            inputs,
            outputs,
        });
    }
    Ok(out)
}
