//! A model's token-classification (NER) pipeline, loaded with the version: its files read once
//! and its tensor names checked against the graph.

use std::path::Path;

use mofang_backend::{DataType, Model, TensorSpec};
use mofang_text::{
    DEFAULT_LENGTHS_OUTPUT, DEFAULT_SEGMENT_INPUT, TokenClassificationConfig, TokenClassifier,
    TransitionsSource,
};

use crate::config::ModelConfig;
use crate::{Error, Result};

/// A graph input the pipeline feeds, with the integer type the graph declares for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextInput {
    pub name: String,
    /// `int32` or `int64`.
    pub dtype: DataType,
}

/// The token-classification pipeline of one loaded version.
#[derive(Debug)]
pub struct TokenClassification {
    pub classifier: TokenClassifier,
    pub ids: TextInput,
    pub mask: TextInput,
    pub segment: Option<TextInput>,
    /// The graph output with the tag scores `[rows, seq, num_tags]`.
    pub logits: String,
    /// The graph output with each row's decoded length, if any.
    pub lengths: Option<String>,
    /// The graph output with the transition matrix, when the config reads it from the model.
    pub transitions: Option<String>,
    /// Most rows one inference call may carry: the graph's fixed batch size, else
    /// `batching.max_batch_size`, else unlimited.
    pub max_rows: usize,
}

/// Reads the pipeline's files (relative to `model_dir`) and checks the config against the
/// graph. Errors name the file or field (`pipeline.<field>`).
pub(crate) fn load(
    config: &TokenClassificationConfig,
    model_config: &ModelConfig,
    model_dir: &Path,
    model: &dyn Model,
) -> Result<TokenClassification> {
    let bad = |m: String| Error::Config(format!("pipeline: {m}"));
    let read = |field: &str, file: &str| {
        let path = model_dir.join(file);
        std::fs::read_to_string(&path)
            .map_err(|e| bad(format!("{field}: cannot read {}: {e}", path.display())))
    };
    let vocab = read("vocab", &config.vocab)?;
    let tags = match (&config.tags, &config.tags_file) {
        (Some(tags), _) => tags.clone(),
        (None, Some(file)) => {
            let tags = mofang_text::parse_tags(&read("tags_file", file)?);
            if tags.is_empty() {
                return Err(bad(format!("tags_file: {file} has no tags")));
            }
            tags
        }
        (None, None) => return Err(bad("tags: give the tag names (or tags_file)".into())),
    };
    let file_transitions = match &config.transitions {
        Some(TransitionsSource::File(file)) => Some(
            mofang_text::parse_transitions(&read("transitions.file", file)?)
                .map_err(|e| bad(format!("transitions.file: {file}: {e}")))?,
        ),
        _ => None,
    };
    let classifier = TokenClassifier::new(config.clone(), &vocab, tags, file_transitions)
        .map_err(|e| bad(format!("{e} (vocab {}, tags, transitions)", config.vocab)))?;

    let seq = config.max_seq_length;
    let input = |field: &str, name: &str| -> Result<TextInput> {
        let spec = find(model.inputs(), name)
            .ok_or_else(|| bad(format!("inputs.{field}: the graph has no input `{name}`")))?;
        if !matches!(spec.dtype, DataType::I32 | DataType::I64) {
            return Err(bad(format!(
                "inputs.{field}: graph input `{name}` is {}, expected int32 or int64",
                spec.dtype
            )));
        }
        match spec.shape.as_slice() {
            [_, Some(n)] if *n != seq => Err(bad(format!(
                "max_seq_length: {seq}, but graph input `{name}` has {n} positions"
            ))),
            [_, _] => Ok(TextInput {
                name: name.to_string(),
                dtype: spec.dtype,
            }),
            _ => Err(bad(format!(
                "inputs.{field}: graph input `{name}` has shape {:?}, expected [batch, max_seq_length]",
                spec.signed_shape()
            ))),
        }
    };
    let ids = input("ids", &config.inputs.ids)?;
    let mask = input("mask", &config.inputs.mask)?;
    let segment = match &config.inputs.segment {
        Some(name) => Some(input("segment", name)?),
        None if find(model.inputs(), DEFAULT_SEGMENT_INPUT).is_some() => {
            Some(input("segment", DEFAULT_SEGMENT_INPUT)?)
        }
        None => None,
    };
    let fed: Vec<&str> = [Some(&ids), Some(&mask), segment.as_ref()]
        .into_iter()
        .flatten()
        .map(|t| t.name.as_str())
        .collect();
    if let Some(other) = model
        .inputs()
        .iter()
        .find(|s| !fed.contains(&s.name.as_str()))
    {
        return Err(bad(format!(
            "graph input `{}` is not fed by the pipeline (it feeds {fed:?}: set inputs.ids, inputs.mask, inputs.segment)",
            other.name
        )));
    }

    let logits = find(model.outputs(), &config.outputs.logits).ok_or_else(|| {
        bad(format!(
            "outputs.logits: the graph has no output `{}`",
            config.outputs.logits
        ))
    })?;
    if !is_float(logits.dtype) {
        return Err(bad(format!(
            "outputs.logits: graph output `{}` is {}, expected floating point",
            logits.name, logits.dtype
        )));
    }
    let num_tags = classifier.num_tags();
    match logits.shape.as_slice() {
        [_, _, Some(n)] if *n != num_tags => {
            return Err(bad(format!(
                "tags: graph output `{}` gives {n} tag scores, but tag_offset {} + {} tags = {num_tags}",
                logits.name,
                config.tag_offset,
                classifier.tags().len()
            )));
        }
        [_, _, _] => {}
        _ => {
            return Err(bad(format!(
                "outputs.logits: graph output `{}` has shape {:?}, expected [batch, seq, num_tags]",
                logits.name,
                logits.signed_shape()
            )));
        }
    }
    let lengths = match &config.outputs.lengths {
        Some(name) => Some(name.clone()),
        None => find(model.outputs(), DEFAULT_LENGTHS_OUTPUT).map(|s| s.name.clone()),
    };
    if let Some(name) = &lengths {
        let spec = find(model.outputs(), name)
            .ok_or_else(|| bad(format!("outputs.lengths: the graph has no output `{name}`")))?;
        if !matches!(
            spec.dtype,
            DataType::I8
                | DataType::I16
                | DataType::I32
                | DataType::I64
                | DataType::U8
                | DataType::U16
                | DataType::U32
                | DataType::U64
        ) {
            return Err(bad(format!(
                "outputs.lengths: graph output `{name}` is {}, expected an integer type",
                spec.dtype
            )));
        }
    }
    let transitions = match &config.transitions {
        Some(TransitionsSource::Output(name)) => {
            let spec = find(model.outputs(), name).ok_or_else(|| {
                bad(format!(
                    "transitions.output: the graph has no output `{name}`"
                ))
            })?;
            let dim = classifier.transitions_dim();
            let fits = matches!(spec.shape.as_slice(), [a, b]
                if a.is_none_or(|a| a == dim) && b.is_none_or(|b| b == dim));
            if !is_float(spec.dtype) || !fits {
                return Err(bad(format!(
                    "transitions.output: graph output `{name}` is {} {:?}, expected a float {dim}x{dim} matrix{}",
                    spec.dtype,
                    spec.signed_shape(),
                    if config.padded_start_state {
                        " (tags + the start state)"
                    } else {
                        ""
                    }
                )));
            }
            Some(name.clone())
        }
        _ => None,
    };

    let fixed_batch = model
        .inputs()
        .iter()
        .find_map(|s| s.shape.first().copied()?);
    let max_rows = [
        fixed_batch,
        model_config.batching.as_ref().map(|b| b.max_batch_size),
    ]
    .into_iter()
    .flatten()
    .min()
    .unwrap_or(usize::MAX)
    .max(1);
    Ok(TokenClassification {
        classifier,
        ids,
        mask,
        segment,
        logits: logits.name.clone(),
        lengths,
        transitions,
        max_rows,
    })
}

fn find<'a>(specs: &'a [TensorSpec], name: &str) -> Option<&'a TensorSpec> {
    specs.iter().find(|s| s.name == name)
}

fn is_float(dtype: DataType) -> bool {
    matches!(dtype, DataType::F16 | DataType::F32 | DataType::F64)
}
