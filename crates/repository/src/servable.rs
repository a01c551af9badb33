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

    /// Runs a signature: `inputs` are named by the signature's aliases, the answer is named by
    /// them too. This is the protocol-neutral half of every TF-Serving-style predict (REST and
    /// gRPC), so both map aliases, drop ignored inputs and filter outputs identically:
    ///
    /// - `signature_name` empty means [`DEFAULT_SIGNATURE`];
    /// - every input must be an alias of the signature, every mapped alias must be present,
    ///   and each input must have the dtype the signature declares;
    /// - inputs the signature declares as ignored (no graph tensor) are accepted and dropped;
    /// - `output_filter` lists output aliases to return, in that order (TF Serving's
    ///   `PredictRequest.output_filter`); empty returns every output of the signature.
    ///
    /// Error texts follow TF Serving where it has one.
    pub async fn predict(
        &self,
        signature_name: &str,
        inputs: Vec<(String, Tensor)>,
        output_filter: &[String],
    ) -> Result<Prediction> {
        let signature = self.resolve_signature(signature_name)?;
        let wanted = select_outputs(signature, output_filter)?;
        let graph_inputs = map_inputs(signature, inputs)?;
        let mut results = self.infer(graph_inputs).await?;
        let mut outputs = Vec::with_capacity(wanted.len());
        for spec in wanted {
            let Some(graph) = &spec.graph_name else {
                continue;
            };
            let pos = results
                .iter()
                .position(|(n, _)| n == graph)
                .ok_or_else(|| {
                    Error::Backend(mofang_backend::Error::Inference(format!(
                        "the model did not produce output `{graph}`"
                    )))
                })?;
            let (_, tensor) = results.swap_remove(pos);
            outputs.push((spec.alias.clone(), tensor));
        }
        Ok(Prediction {
            signature: signature.name.clone(),
            outputs,
        })
    }

    /// The signature a request names (empty: [`DEFAULT_SIGNATURE`]), or TF Serving's error.
    pub fn resolve_signature(&self, name: &str) -> Result<&Signature> {
        let name = if name.is_empty() {
            DEFAULT_SIGNATURE
        } else {
            name
        };
        self.signature(name).ok_or_else(|| {
            Error::InvalidInput(format!(
                "Serving signature name: \"{name}\" not found in signature def"
            ))
        })
    }

    /// Runs the model on graph-named inputs through the version's batch queue, on its worker
    /// threads. Checks names, dtypes and shapes first; the errors say which input and what was
    /// expected. Cancel-safe: dropping the future withdraws a request that has not run yet.
    pub async fn infer(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        let inputs = self.model.check_inputs(inputs)?;
        Ok(self.batcher.infer(inputs).await?)
    }
}

/// What [`Servable::predict`] answers: the signature that ran and its outputs by alias.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub signature: String,
    pub outputs: Vec<(String, Tensor)>,
}

fn alias_set(tensors: &[SignatureTensor]) -> String {
    let names: Vec<&str> = tensors.iter().map(|t| t.alias.as_str()).collect();
    names.join(",")
}

/// The outputs a filter selects, in its order; all of the signature's when it is empty.
fn select_outputs<'s>(
    signature: &'s Signature,
    output_filter: &[String],
) -> Result<Vec<&'s SignatureTensor>> {
    if output_filter.is_empty() {
        return Ok(signature.outputs.iter().collect());
    }
    let mut wanted: Vec<&SignatureTensor> = Vec::with_capacity(output_filter.len());
    for alias in output_filter {
        let spec = signature.output(alias).ok_or_else(|| {
            Error::InvalidInput(format!(
                "output tensor alias not found in signature: {alias} Outputs expected to be in the set {{{}}}.",
                alias_set(&signature.outputs)
            ))
        })?;
        if wanted.iter().any(|w| w.alias == *alias) {
            return Err(Error::InvalidInput(format!(
                "duplicate output tensor alias: {alias}"
            )));
        }
        wanted.push(spec);
    }
    Ok(wanted)
}

/// Alias-named inputs → graph-named inputs: checks names and dtypes, drops ignored inputs.
fn map_inputs(
    signature: &Signature,
    inputs: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>> {
    for (alias, tensor) in &inputs {
        let spec = signature.input(alias).ok_or_else(|| {
            Error::InvalidInput(format!(
                "input tensor alias not found in signature: {alias}. Inputs expected to be in the set {{{}}}.",
                alias_set(&signature.inputs)
            ))
        })?;
        if tensor.dtype() != spec.dtype {
            return Err(Error::InvalidInput(format!(
                "input `{alias}` expects dtype {} but got {}",
                spec.dtype,
                tensor.dtype()
            )));
        }
    }
    for spec in &signature.inputs {
        if spec.graph_name.is_some() && !inputs.iter().any(|(a, _)| *a == spec.alias) {
            return Err(Error::InvalidInput(format!(
                "missing input `{}` of signature `{}` ({} with shape {:?})",
                spec.alias,
                signature.name,
                spec.dtype,
                spec.signed_shape()
            )));
        }
    }
    Ok(inputs
        .into_iter()
        .filter_map(|(alias, tensor)| {
            let graph = signature.input(&alias)?.graph_name.clone()?;
            Some((graph, tensor))
        })
        .collect())
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

#[cfg(test)]
mod tests {
    use super::*;
    use mofang_backend::TensorData;

    fn tensor(alias: &str, graph: Option<&str>) -> SignatureTensor {
        SignatureTensor {
            alias: alias.into(),
            graph_name: graph.map(str::to_string),
            dtype: DataType::F32,
            shape: vec![None, Some(2)],
        }
    }

    fn signature() -> Signature {
        Signature {
            name: "serving_default".into(),
            method_name: "tensorflow/serving/predict".into(),
            inputs: vec![tensor("x_alias", Some("x")), tensor("Dropout", None)],
            outputs: vec![tensor("y_alias", Some("y")), tensor("z_alias", Some("z"))],
        }
    }

    fn floats() -> Tensor {
        Tensor::new(vec![1, 2], TensorData::F32(vec![1.0, 2.0])).expect("valid")
    }

    #[test]
    fn inputs_map_onto_graph_names_and_ignored_ones_are_dropped() {
        let mapped = map_inputs(
            &signature(),
            vec![("Dropout".into(), floats()), ("x_alias".into(), floats())],
        )
        .expect("valid inputs");
        assert_eq!(mapped, vec![("x".to_string(), floats())]);
    }

    #[test]
    fn unknown_missing_and_mistyped_inputs_are_errors_naming_the_alias() {
        let sig = signature();
        let e = map_inputs(&sig, vec![("x".into(), floats())]).expect_err("graph name");
        assert!(e.to_string().contains("{x_alias,Dropout}"), "{e}");
        let e = map_inputs(&sig, vec![("Dropout".into(), floats())]).expect_err("missing");
        assert!(e.to_string().contains("`x_alias`"), "{e}");
        let ints = Tensor::new(vec![1], TensorData::I32(vec![1])).expect("valid");
        let e = map_inputs(&sig, vec![("x_alias".into(), ints)]).expect_err("dtype");
        assert!(e.to_string().contains("expects dtype float32"), "{e}");
    }

    #[test]
    fn output_filter_selects_in_its_order_and_refuses_unknown_or_repeated_aliases() {
        let sig = signature();
        let all: Vec<&str> = select_outputs(&sig, &[])
            .expect("no filter")
            .iter()
            .map(|t| t.alias.as_str())
            .collect();
        assert_eq!(all, ["y_alias", "z_alias"]);
        let some: Vec<&str> = select_outputs(&sig, &["z_alias".into()])
            .expect("known alias")
            .iter()
            .map(|t| t.alias.as_str())
            .collect();
        assert_eq!(some, ["z_alias"]);
        let e = select_outputs(&sig, &["y".into()]).expect_err("unknown");
        assert!(e.to_string().contains("not found in signature: y"), "{e}");
        let e = select_outputs(&sig, &["y_alias".into(), "y_alias".into()]).expect_err("twice");
        assert!(e.to_string().contains("duplicate"), "{e}");
    }
}
