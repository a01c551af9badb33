//! tract: pure-Rust ONNX inference, no set-up needed.

use std::path::Path;
use std::sync::Arc;

use half::f16;
use tract_onnx::prelude::{
    DatumType, Framework, InferenceModelExt, IntoRunnable, TValue, TVec, Tensor as TractTensor,
    TypedFact, TypedModel, TypedRunnableModel, tract_ndarray,
};
use tract_onnx::tract_hir::internal::DimLike;

use crate::{
    Backend, BackendKind, DataType, Error, LoadOptions, Model, Result, Tensor, TensorData,
    TensorSpec,
};

/// The tract backend. Stateless: every loaded model carries its own optimised plan.
#[derive(Debug, Clone, Copy, Default)]
pub struct TractBackend;

impl Backend for TractBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Tract
    }

    fn load(&self, path: &Path, _options: &LoadOptions) -> Result<Arc<dyn Model>> {
        let load_err = |message: String| Error::Load {
            path: path.to_path_buf(),
            message,
        };
        let inference = tract_onnx::onnx()
            .model_for_path(path)
            .map_err(|e| load_err(format!("{e:#}")))?;
        // Names come from the ONNX graph before optimisation may rename nodes.
        let input_names = outlet_names(&inference, inference.input_outlets())
            .map_err(|e| load_err(format!("{e:#}")))?;
        let output_names = outlet_names(&inference, inference.output_outlets())
            .map_err(|e| load_err(format!("{e:#}")))?;
        let typed: TypedModel = inference
            .into_optimized()
            .map_err(|e| load_err(format!("{e:#}")))?;
        let inputs = specs(&typed, typed.input_outlets(), input_names).map_err(load_err)?;
        let outputs = specs(&typed, typed.output_outlets(), output_names).map_err(load_err)?;
        let plan = typed
            .into_runnable()
            .map_err(|e| load_err(format!("{e:#}")))?;
        Ok(Arc::new(TractModel {
            inputs,
            outputs,
            plan,
        }))
    }
}

fn outlet_names<F, O>(
    model: &tract_onnx::prelude::Graph<F, O>,
    outlets: tract_onnx::prelude::TractResult<&[tract_onnx::prelude::OutletId]>,
) -> tract_onnx::prelude::TractResult<Vec<String>>
where
    F: tract_onnx::prelude::Fact + Clone + 'static,
    O: std::fmt::Debug
        + std::fmt::Display
        + AsRef<dyn tract_onnx::prelude::Op>
        + AsMut<dyn tract_onnx::prelude::Op>
        + Clone
        + 'static,
{
    Ok(outlets?
        .iter()
        .map(|o| {
            model
                .outlet_label(*o)
                .map(str::to_string)
                .unwrap_or_else(|| model.node(o.node).name.clone())
        })
        .collect())
}

fn specs(
    model: &TypedModel,
    outlets: tract_onnx::prelude::TractResult<&[tract_onnx::prelude::OutletId]>,
    names: Vec<String>,
) -> std::result::Result<Vec<TensorSpec>, String> {
    let outlets = outlets.map_err(|e| format!("{e:#}"))?;
    outlets
        .iter()
        .zip(names)
        .map(|(o, name)| {
            let fact: &TypedFact = model.outlet_fact(*o).map_err(|e| format!("{e:#}"))?;
            let dtype = from_tract(fact.datum_type)
                .ok_or_else(|| format!("`{name}` has unsupported type {:?}", fact.datum_type))?;
            let shape = fact.shape.iter().map(|d| d.to_usize().ok()).collect();
            Ok(TensorSpec { name, dtype, shape })
        })
        .collect()
}

fn from_tract(dt: DatumType) -> Option<DataType> {
    Some(match dt {
        DatumType::Bool => DataType::Bool,
        DatumType::U8 => DataType::U8,
        DatumType::U16 => DataType::U16,
        DatumType::U32 => DataType::U32,
        DatumType::U64 => DataType::U64,
        DatumType::I8 => DataType::I8,
        DatumType::I16 => DataType::I16,
        DatumType::I32 => DataType::I32,
        DatumType::I64 => DataType::I64,
        DatumType::F16 => DataType::F16,
        DatumType::F32 => DataType::F32,
        DatumType::F64 => DataType::F64,
        DatumType::String => DataType::Bytes,
        _ => return None,
    })
}

struct TractModel {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    plan: Arc<TypedRunnableModel>,
}

fn to_tract(tensor: Tensor) -> std::result::Result<TractTensor, String> {
    let (shape, data) = tensor.into_parts();
    let t = match data {
        TensorData::Bool(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U8(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U16(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U32(v) => TractTensor::from_shape(&shape, &v),
        TensorData::U64(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I8(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I16(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I32(v) => TractTensor::from_shape(&shape, &v),
        TensorData::I64(v) => TractTensor::from_shape(&shape, &v),
        TensorData::F16(v) => TractTensor::from_shape(&shape, &v),
        TensorData::F32(v) => TractTensor::from_shape(&shape, &v),
        TensorData::F64(v) => TractTensor::from_shape(&shape, &v),
        TensorData::Bytes(v) => {
            let strings = v
                .into_iter()
                .map(String::from_utf8)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|_| "string tensors must be UTF-8 for tract".to_string())?;
            return tract_ndarray::ArrayD::from_shape_vec(shape, strings)
                .map(TractTensor::from)
                .map_err(|e| e.to_string());
        }
    };
    t.map_err(|e| format!("{e:#}"))
}

fn from_tract_tensor(t: &TractTensor) -> std::result::Result<Tensor, String> {
    let view = t.view();
    macro_rules! prim {
        ($ty:ty, $var:ident) => {
            TensorData::$var(
                view.as_slice::<$ty>()
                    .map_err(|e| format!("{e:#}"))?
                    .to_vec(),
            )
        };
    }
    let data = match t.datum_type() {
        DatumType::Bool => prim!(bool, Bool),
        DatumType::U8 => prim!(u8, U8),
        DatumType::U16 => prim!(u16, U16),
        DatumType::U32 => prim!(u32, U32),
        DatumType::U64 => prim!(u64, U64),
        DatumType::I8 => prim!(i8, I8),
        DatumType::I16 => prim!(i16, I16),
        DatumType::I32 => prim!(i32, I32),
        DatumType::I64 => prim!(i64, I64),
        DatumType::F16 => prim!(f16, F16),
        DatumType::F32 => prim!(f32, F32),
        DatumType::F64 => prim!(f64, F64),
        DatumType::String => TensorData::Bytes(
            view.as_slice::<String>()
                .map_err(|e| format!("{e:#}"))?
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
        ),
        other => return Err(format!("unsupported output type {other:?}")),
    };
    Tensor::new(t.shape().to_vec(), data).map_err(|e| e.to_string())
}

impl Model for TractModel {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: Vec<(String, Tensor)>) -> Result<Vec<(String, Tensor)>> {
        let values: TVec<TValue> = inputs
            .into_iter()
            .map(|(_, t)| to_tract(t).map(TValue::from))
            .collect::<std::result::Result<_, _>>()
            .map_err(Error::InvalidInput)?;
        let results = self
            .plan
            .run(values)
            .map_err(|e| Error::Inference(format!("{e:#}")))?;
        self.outputs
            .iter()
            .zip(results.iter())
            .map(|(spec, value)| {
                from_tract_tensor(value)
                    .map(|t| (spec.name.clone(), t))
                    .map_err(Error::Inference)
            })
            .collect()
    }
}
