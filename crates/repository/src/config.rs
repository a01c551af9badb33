//! The per-model config file, `<repository>/<model>/config.yaml`. Every field is optional.
//!
//! ```yaml
//! backend: onnxruntime          # onnxruntime | tract; default: ONNX Runtime when found, else tract
//! model_file: model.onnx        # file inside each version directory
//! version_policy: {latest: 1}   # {latest: N} | all | {specific: [1, 3]}
//! version_labels: {stable: 1, canary: 2}
//! threads: {intra_op: 1, inter_op: 1}
//! instances: 1                  # concurrent executions (ONNX Runtime sessions) per version
//! signatures:                   # TF-Serving signature names → the ONNX graph's names
//!   serving_default:
//!     inputs: {x: input_0}
//!     outputs: {y: output_0}
//! pipeline: {kind: image_classification, size: [224, 224], normalize: tf, labels: labels.txt}
//! # or: pipeline: {kind: token_classification, tags_file: tags.txt, transitions: {output: trans}}
//! ```

use std::collections::BTreeMap;

use mofang_backend::{BackendKind, DataType};
use serde::Deserialize;

use crate::{Error, Result};

/// The name of the optional per-model config file.
pub const CONFIG_FILE: &str = "config.yaml";

/// The signature used when a request names none (TF Serving's `kDefaultServingSignatureDefKey`).
pub const DEFAULT_SIGNATURE: &str = "serving_default";

#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// `onnxruntime` or `tract`. Absent: ONNX Runtime when its library is available, else tract.
    #[serde(default)]
    pub backend: Option<String>,
    /// The model file inside each version directory.
    #[serde(default = "default_model_file")]
    pub model_file: String,
    #[serde(default)]
    pub version_policy: VersionPolicy,
    /// Version labels (`/labels/{label}` in TF Serving URLs) → version numbers.
    #[serde(default)]
    pub version_labels: BTreeMap<String, u64>,
    #[serde(default)]
    pub threads: Threads,
    /// Concurrent executions per version (ONNX Runtime keeps one session each).
    #[serde(default = "one")]
    pub instances: usize,
    /// Named signatures. Absent: one `serving_default` signature exposing the graph as it is.
    #[serde(default)]
    pub signatures: BTreeMap<String, SignatureConfig>,
    #[serde(default)]
    pub pipeline: Option<PipelineConfig>,
    /// Dynamic batching; absent: every request runs alone (the queue is still bounded).
    #[serde(default)]
    pub batching: Option<BatchingConfig>,
}

/// Dynamic batching (TF Serving's `batching_parameters`, Triton's `dynamic_batching`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchingConfig {
    /// Most rows (batch dimension) in one execution; larger requests are refused with 400.
    /// 1 disables batching but keeps the queue settings.
    pub max_batch_size: usize,
    /// Longest a request waits for its batch to fill, in microseconds.
    #[serde(default)]
    pub max_queue_delay_micros: u64,
    /// Pad each batch up to the next of these sizes (ascending, the last = max_batch_size).
    #[serde(default)]
    pub allowed_batch_sizes: Vec<usize>,
    /// Requests allowed to wait; more get HTTP 429 at once.
    #[serde(default = "default_queue_size")]
    pub max_queue_size: usize,
}

/// The queue bound of a model without a `batching` section.
pub const DEFAULT_MAX_QUEUE_SIZE: usize = 1024;

fn default_queue_size() -> usize {
    DEFAULT_MAX_QUEUE_SIZE
}

fn default_model_file() -> String {
    "model.onnx".into()
}

fn one() -> usize {
    1
}

/// Which versions on disk are served (TF Serving's `model_version_policy`).
/// YAML: `{latest: N}`, `all` (or `{all: true}`), `{specific: [1, 3]}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "PolicyRepr")]
pub enum VersionPolicy {
    /// The N highest version numbers.
    Latest(usize),
    /// Every version directory.
    All,
    /// Exactly these versions (those present on disk).
    Specific(Vec<u64>),
}

/// The YAML spellings of a [`VersionPolicy`].
#[derive(Deserialize)]
#[serde(untagged)]
enum PolicyRepr {
    Name(String),
    Map(BTreeMap<String, serde_yaml::Value>),
}

impl TryFrom<PolicyRepr> for VersionPolicy {
    type Error = String;

    fn try_from(repr: PolicyRepr) -> Result<Self, Self::Error> {
        let expected = "expected {latest: N}, all or {specific: [versions]}";
        match repr {
            PolicyRepr::Name(n) if n == "all" => Ok(VersionPolicy::All),
            PolicyRepr::Name(n) => Err(format!("unknown policy `{n}`: {expected}")),
            PolicyRepr::Map(m) if m.len() == 1 => {
                let (key, value) = m.into_iter().next().ok_or(expected)?;
                match key.as_str() {
                    "latest" => value
                        .as_u64()
                        .map(|n| VersionPolicy::Latest(n as usize))
                        .ok_or_else(|| "latest: expected a number of versions".to_string()),
                    "all" if value.as_bool() == Some(true) => Ok(VersionPolicy::All),
                    "specific" => serde_yaml::from_value::<Vec<u64>>(value)
                        .map(VersionPolicy::Specific)
                        .map_err(|e| format!("specific: {e}")),
                    other => Err(format!("unknown policy `{other}`: {expected}")),
                }
            }
            PolicyRepr::Map(_) => Err(expected.to_string()),
        }
    }
}

impl Default for VersionPolicy {
    fn default() -> Self {
        VersionPolicy::Latest(1)
    }
}

impl VersionPolicy {
    /// The versions to serve out of those found on disk (sorted ascending in the result).
    pub fn select(&self, on_disk: &[u64]) -> Vec<u64> {
        let mut all = on_disk.to_vec();
        all.sort_unstable();
        all.dedup();
        match self {
            VersionPolicy::Latest(n) => all.split_off(all.len().saturating_sub(*n)),
            VersionPolicy::All => all,
            VersionPolicy::Specific(wanted) => {
                all.retain(|v| wanted.contains(v));
                all
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Threads {
    /// Threads inside one operator. Default 1: on small machines several single-threaded
    /// instances beat one multi-threaded one (measure with `scripts/bench.sh`).
    #[serde(default = "one")]
    pub intra_op: usize,
    /// Threads running independent operators (1 = sequential).
    #[serde(default = "one")]
    pub inter_op: usize,
}

impl Default for Threads {
    fn default() -> Self {
        Threads {
            intra_op: 1,
            inter_op: 1,
        }
    }
}

/// A TF-Serving-style signature: the names clients use, mapped onto the graph's.
#[derive(Debug, Clone, PartialEq, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SignatureConfig {
    #[serde(default)]
    pub inputs: BTreeMap<String, SignatureInput>,
    #[serde(default)]
    pub outputs: BTreeMap<String, String>,
    /// `method_name` reported in TF Serving metadata.
    #[serde(default = "predict_method")]
    pub method_name: String,
}

fn predict_method() -> String {
    "tensorflow/serving/predict".into()
}

/// One signature input: the graph input it feeds, or an input clients send that the graph no
/// longer has (e.g. a `Dropout` rate dropped by the ONNX export), accepted and ignored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SignatureInput {
    /// The graph input name.
    Graph(String),
    /// Accepted and ignored; `dtype` and `shape` are what metadata reports.
    Ignored {
        ignore: bool,
        dtype: String,
        #[serde(default)]
        shape: Vec<i64>,
    },
}

/// Server-side pre- and post-processing.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PipelineConfig {
    /// Image upload → top-k labels (`POST /predict`).
    ImageClassification(mofang_pipeline::ImageClassificationConfig),
    /// Text → WordPiece windows → tag scores → CRF Viterbi → entities
    /// (`POST /v2/models/{name}/entities`; see docs/pipelines.md).
    TokenClassification(mofang_text::TokenClassificationConfig),
}

impl ModelConfig {
    /// Parses and checks a config file's text. Errors name the field.
    pub fn parse(text: &str) -> Result<ModelConfig> {
        let config: ModelConfig = if text.trim().is_empty() {
            ModelConfig::default_values()
        } else {
            serde_yaml::from_str(text).map_err(|e| Error::Config(e.to_string()))?
        };
        config.validate()?;
        Ok(config)
    }

    /// The config of a model without a config file.
    pub fn default_values() -> ModelConfig {
        ModelConfig {
            backend: None,
            model_file: default_model_file(),
            version_policy: VersionPolicy::default(),
            version_labels: BTreeMap::new(),
            threads: Threads::default(),
            instances: 1,
            signatures: BTreeMap::new(),
            pipeline: None,
            batching: None,
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if let Some(b) = &self.backend
            && BackendKind::parse(b).is_none()
        {
            return bad(format!(
                "backend: unknown backend `{b}` (expected onnxruntime or tract)"
            ));
        }
        if self.model_file.is_empty() || self.model_file.contains('/') || self.model_file == ".." {
            return bad("model_file: must be a plain file name".into());
        }
        if self.instances == 0 || self.instances > 64 {
            return bad("instances: must be between 1 and 64".into());
        }
        if self.threads.intra_op == 0 || self.threads.inter_op == 0 {
            return bad("threads: intra_op and inter_op must be at least 1".into());
        }
        if let VersionPolicy::Latest(0) = self.version_policy {
            return bad("version_policy.latest: must be at least 1".into());
        }
        for (sig, s) in &self.signatures {
            for (name, input) in &s.inputs {
                if let SignatureInput::Ignored { dtype, ignore, .. } = input {
                    if !ignore {
                        return bad(format!(
                            "signatures.{sig}.inputs.{name}: give the graph input name, or `ignore: true`"
                        ));
                    }
                    if DataType::from_short_name(dtype).is_none() {
                        return bad(format!(
                            "signatures.{sig}.inputs.{name}.dtype: unknown dtype `{dtype}`"
                        ));
                    }
                }
            }
        }
        if let Some(b) = &self.batching {
            if b.max_batch_size == 0 {
                return bad("batching.max_batch_size: must be at least 1".into());
            }
            if b.max_queue_size == 0 {
                return bad("batching.max_queue_size: must be at least 1".into());
            }
            if b.max_queue_delay_micros > 10_000_000 {
                return bad("batching.max_queue_delay_micros: at most 10 s (10000000)".into());
            }
            let sizes = &b.allowed_batch_sizes;
            if !sizes.is_empty()
                && (sizes.windows(2).any(|w| w[0] >= w[1])
                    || sizes.first() == Some(&0)
                    || sizes.last() != Some(&b.max_batch_size))
            {
                return bad(
                    "batching.allowed_batch_sizes: must ascend, start above 0 and end with max_batch_size".into(),
                );
            }
        }
        match &self.pipeline {
            Some(PipelineConfig::ImageClassification(p)) => p
                .validate()
                .map_err(|e| Error::Config(format!("pipeline: {e}")))?,
            Some(PipelineConfig::TokenClassification(p)) => p
                .validate()
                .map_err(|e| Error::Config(format!("pipeline: {e}")))?,
            None => {}
        }
        Ok(())
    }

    pub fn backend_kind(&self) -> Option<BackendKind> {
        self.backend.as_deref().and_then(BackendKind::parse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_means_defaults() {
        let c = ModelConfig::parse("").expect("empty is fine");
        assert_eq!(c, ModelConfig::default_values());
        assert_eq!(c.version_policy, VersionPolicy::Latest(1));
    }

    #[test]
    fn full_config_parses() {
        let c = ModelConfig::parse(
            "backend: tract\nversion_policy: {specific: [1, 3]}\nversion_labels: {stable: 1}\n\
             instances: 2\nthreads: {intra_op: 2}\nsignatures:\n  ner_def:\n    inputs:\n      \
             input_ids: ids\n      Dropout: {ignore: true, dtype: float32}\n    outputs: {logits: out}\n",
        )
        .expect("valid");
        assert_eq!(c.backend_kind(), Some(BackendKind::Tract));
        assert_eq!(c.version_policy.select(&[3, 2, 1]), vec![1, 3]);
        assert_eq!(c.threads.intra_op, 2);
        assert_eq!(c.threads.inter_op, 1);
        let sig = &c.signatures["ner_def"];
        assert_eq!(sig.inputs["input_ids"], SignatureInput::Graph("ids".into()));
        assert!(matches!(
            sig.inputs["Dropout"],
            SignatureInput::Ignored { .. }
        ));
    }

    #[test]
    fn unknown_fields_and_values_are_named() {
        let e = ModelConfig::parse("bakend: tract")
            .expect_err("typo")
            .to_string();
        assert!(e.contains("bakend"), "{e}");
        let e = ModelConfig::parse("backend: tensorflow")
            .expect_err("bad")
            .to_string();
        assert!(e.contains("backend") && e.contains("tensorflow"), "{e}");
        let e = ModelConfig::parse("instances: 0")
            .expect_err("bad")
            .to_string();
        assert!(e.contains("instances"), "{e}");
    }

    #[test]
    fn batching_is_checked() {
        let c = ModelConfig::parse("batching: {max_batch_size: 8, max_queue_delay_micros: 500}")
            .expect("valid");
        let b = c.batching.expect("set");
        assert_eq!(
            (b.max_batch_size, b.max_queue_size),
            (8, DEFAULT_MAX_QUEUE_SIZE)
        );
        let e = ModelConfig::parse("batching: {max_batch_size: 8, allowed_batch_sizes: [2, 4]}")
            .expect_err("must end with 8")
            .to_string();
        assert!(e.contains("allowed_batch_sizes"), "{e}");
        let e = ModelConfig::parse("batching: {max_batch_size: 0}")
            .expect_err("zero")
            .to_string();
        assert!(e.contains("max_batch_size"), "{e}");
    }

    #[test]
    fn token_classification_pipeline_parses_and_names_bad_fields() {
        let c = ModelConfig::parse(
            "pipeline:\n  kind: token_classification\n  max_seq_length: 150\n  tags_file: tags.txt\n  \
             tag_offset: 1\n  transitions: {output: trans}\n  padded_start_state: true\n",
        )
        .expect("valid");
        let Some(PipelineConfig::TokenClassification(p)) = c.pipeline else {
            panic!("a token_classification pipeline: {:?}", c.pipeline);
        };
        assert_eq!(p.max_seq_length, 150);
        assert_eq!(p.vocab, "vocab.txt");
        let e = ModelConfig::parse("pipeline: {kind: token_classification, tags: [O], windows: 3}")
            .expect_err("unknown field")
            .to_string();
        assert!(e.contains("windows"), "{e}");
        let e = ModelConfig::parse("pipeline: {kind: token_classification, max_seq_length: 150}")
            .expect_err("no tags")
            .to_string();
        assert!(e.contains("pipeline: tags"), "{e}");
    }

    #[test]
    fn version_policies_select_from_disk() {
        assert_eq!(VersionPolicy::Latest(2).select(&[1, 5, 3]), vec![3, 5]);
        assert_eq!(VersionPolicy::Latest(9).select(&[2, 1]), vec![1, 2]);
        assert_eq!(VersionPolicy::All.select(&[2, 1]), vec![1, 2]);
        assert_eq!(
            VersionPolicy::Specific(vec![4]).select(&[1, 2]),
            Vec::<u64>::new()
        );
        let all = ModelConfig::parse("version_policy: all").expect("valid");
        assert_eq!(all.version_policy, VersionPolicy::All);
    }
}
