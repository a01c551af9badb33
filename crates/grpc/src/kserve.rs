//! KServe V2 / Open Inference Protocol `inference.GRPCInferenceService`, with Triton's
//! behaviour where the protocol leaves a choice: inputs come either all from typed `contents`
//! or all from `raw_input_contents`, and outputs always go out in `raw_output_contents`
//! (Triton's server does the same, and `tritonclient.grpc` reads only that for non-BYTES
//! outputs).

use std::sync::Arc;
use std::time::Instant;

use mofang_backend::{DataType, Tensor, TensorData, TensorSpec, element_count};
use mofang_repository::{Servable, VersionSelector, VersionState};
use tonic::{Code, Request, Response, Status};

use crate::Shared;
use crate::pb::inference::grpc_inference_service_server::GrpcInferenceService;
use crate::pb::inference::model_infer_request::InferInputTensor;
use crate::pb::inference::model_infer_response::InferOutputTensor;
use crate::pb::inference::model_metadata_response::TensorMetadata;
use crate::pb::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelMetadataResponse, ModelReadyRequest, ModelReadyResponse, ServerLiveRequest,
    ServerLiveResponse, ServerMetadataRequest, ServerMetadataResponse, ServerReadyRequest,
    ServerReadyResponse,
};
use crate::status::{invalid, status_of};

/// `GRPCInferenceService`.
#[derive(Debug)]
pub(crate) struct Inference(pub(crate) Shared);

impl Inference {
    /// The servable a request names; unknown models and versions get Triton's texts.
    fn servable(&self, name: &str, version: &str) -> Result<Arc<Servable>, Status> {
        let selector = if version.is_empty() {
            VersionSelector::Latest
        } else {
            VersionSelector::Specific(version.parse().map_err(|e| {
                invalid(format!(
                    "failed to get model version from specified version string '{version}' \
                     (details: {e}), version should be an integral value > 0"
                ))
            })?)
        };
        self.0.manager.get(name, &selector).map_err(|e| {
            let status = status_of(&e);
            if status.code() != Code::NotFound {
                return status;
            }
            Status::not_found(if version.is_empty() {
                format!("Request for unknown model: '{name}' is not found")
            } else {
                format!("Request for unknown model: '{name}' version {version} is not found")
            })
        })
    }
}

fn tensor_metadata(spec: &TensorSpec) -> TensorMetadata {
    TensorMetadata {
        name: spec.name.clone(),
        datatype: spec.dtype.v2_name().to_string(),
        shape: spec.signed_shape(),
    }
}

#[tonic::async_trait]
impl GrpcInferenceService for Inference {
    async fn server_live(
        &self,
        _request: Request<ServerLiveRequest>,
    ) -> Result<Response<ServerLiveResponse>, Status> {
        Ok(Response::new(ServerLiveResponse { live: true }))
    }

    async fn server_ready(
        &self,
        _request: Request<ServerReadyRequest>,
    ) -> Result<Response<ServerReadyResponse>, Status> {
        Ok(Response::new(ServerReadyResponse {
            ready: self.0.is_ready(),
        }))
    }

    async fn model_ready(
        &self,
        request: Request<ModelReadyRequest>,
    ) -> Result<Response<ModelReadyResponse>, Status> {
        let r = request.into_inner();
        self.0
            .run(async {
                self.servable(&r.name, &r.version)?;
                Ok(Response::new(ModelReadyResponse { ready: true }))
            })
            .await
    }

    async fn server_metadata(
        &self,
        _request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        Ok(Response::new(ServerMetadataResponse {
            name: "mofang".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: Vec::new(),
        }))
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let r = request.into_inner();
        self.0
            .run(async {
                let servable = self.servable(&r.name, &r.version)?;
                let versions = if r.version.is_empty() {
                    self.0
                        .manager
                        .status(&r.name, None)
                        .unwrap_or_default()
                        .iter()
                        .filter(|v| v.state == VersionState::Available)
                        .map(|v| v.version.to_string())
                        .collect()
                } else {
                    vec![servable.version.to_string()]
                };
                Ok(Response::new(ModelMetadataResponse {
                    name: servable.name.clone(),
                    versions,
                    platform: servable.backend.platform().to_string(),
                    inputs: servable.inputs().iter().map(tensor_metadata).collect(),
                    outputs: servable.outputs().iter().map(tensor_metadata).collect(),
                }))
            })
            .await
    }

    async fn model_infer(
        &self,
        request: Request<ModelInferRequest>,
    ) -> Result<Response<ModelInferResponse>, Status> {
        let request = request.into_inner();
        let started = Instant::now();
        let mut version = None;
        let result = self
            .0
            .run(async {
                let servable = self.servable(&request.model_name, &request.model_version)?;
                version = Some(servable.version);
                infer(&servable, &request).await
            })
            .await;
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        self.0
            .observe("v2_grpc", &request.model_name, version, code, started);
        result.map(Response::new)
    }
}

async fn infer(
    servable: &Servable,
    request: &ModelInferRequest,
) -> Result<ModelInferResponse, Status> {
    let model = &servable.name;
    let raw = &request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(invalid(format!(
            "{} raw_input_contents given for {} inputs of model '{model}'",
            raw.len(),
            request.inputs.len()
        )));
    }
    let mut inputs = Vec::with_capacity(request.inputs.len());
    for (i, input) in request.inputs.iter().enumerate() {
        let tensor = decode_input(input, raw.get(i).map(|b| &b[..]), model)?;
        inputs.push((input.name.clone(), tensor));
    }
    let wanted: Vec<String> = if request.outputs.is_empty() {
        servable.outputs().iter().map(|s| s.name.clone()).collect()
    } else {
        for o in &request.outputs {
            if !servable.outputs().iter().any(|s| s.name == o.name) {
                return Err(invalid(format!(
                    "unexpected inference output '{}' for model '{model}'",
                    o.name
                )));
            }
        }
        request.outputs.iter().map(|o| o.name.clone()).collect()
    };
    let mut results = servable.infer(inputs).await.map_err(|e| status_of(&e))?;
    let mut outputs = Vec::with_capacity(wanted.len());
    let mut raw_outputs = Vec::with_capacity(wanted.len());
    for name in wanted {
        let Some(pos) = results.iter().position(|(n, _)| *n == name) else {
            continue;
        };
        let (_, tensor) = results.swap_remove(pos);
        outputs.push(InferOutputTensor {
            name,
            datatype: tensor.dtype().v2_name().to_string(),
            shape: tensor.shape().iter().map(|d| *d as i64).collect(),
            parameters: Default::default(),
            contents: None,
        });
        raw_outputs.push(tensor.data().to_le_bytes().into());
    }
    Ok(ModelInferResponse {
        model_name: servable.name.clone(),
        model_version: servable.version.to_string(),
        id: request.id.clone(),
        parameters: Default::default(),
        outputs,
        raw_output_contents: raw_outputs,
    })
}

/// One input from its raw bytes or its typed contents (never both).
fn decode_input(
    input: &InferInputTensor,
    raw: Option<&[u8]>,
    model: &str,
) -> Result<Tensor, Status> {
    let name = &input.name;
    let dtype = DataType::from_v2_name(&input.datatype).ok_or_else(|| {
        invalid(format!(
            "input '{name}' for model '{model}': unsupported datatype '{}'",
            input.datatype
        ))
    })?;
    let shape: Vec<usize> = input
        .shape
        .iter()
        .map(|d| usize::try_from(*d))
        .collect::<Result<_, _>>()
        .map_err(|_| {
            invalid(format!(
                "invalid shape for input '{name}': shape {:?} contains one or more invalid dimensions",
                input.shape
            ))
        })?;
    let count = element_count(&shape);
    let data = match (raw, &input.contents) {
        (Some(_), Some(_)) => {
            return Err(invalid(format!(
                "contents field must not be specified when using raw_input_contents for '{name}' for model '{model}'"
            )));
        }
        (Some(raw), None) => TensorData::from_le_bytes(dtype, raw, count)
            .map_err(|e| invalid(format!("input '{name}' for model '{model}': {e}")))?,
        (None, Some(contents)) => from_contents(dtype, contents)
            .map_err(|e| invalid(format!("input '{name}' for model '{model}': {e}")))?,
        (None, None) => {
            return Err(invalid(format!(
                "unable to find data for input tensor '{name}' for model '{model}' in request."
            )));
        }
    };
    Tensor::new(shape, data).map_err(|e| {
        invalid(format!(
            "input '{name}' for model '{model}': shape does not match the data: {e}"
        ))
    })
}

/// The typed contents field each datatype travels in.
fn contents_field(dtype: DataType) -> &'static str {
    match dtype {
        DataType::Bool => "bool_contents",
        DataType::I8 | DataType::I16 | DataType::I32 => "int_contents",
        DataType::I64 => "int64_contents",
        DataType::U8 | DataType::U16 | DataType::U32 => "uint_contents",
        DataType::U64 => "uint64_contents",
        DataType::F32 => "fp32_contents",
        DataType::F64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
        DataType::F16 => "raw_input_contents",
    }
}

/// The fields of `c` that hold values, by name.
fn filled_fields(c: &InferTensorContents) -> Vec<&'static str> {
    [
        ("bool_contents", c.bool_contents.len()),
        ("int_contents", c.int_contents.len()),
        ("int64_contents", c.int64_contents.len()),
        ("uint_contents", c.uint_contents.len()),
        ("uint64_contents", c.uint64_contents.len()),
        ("fp32_contents", c.fp32_contents.len()),
        ("fp64_contents", c.fp64_contents.len()),
        ("bytes_contents", c.bytes_contents.len()),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(f, _)| f)
    .collect()
}

fn narrow<S: Copy + std::fmt::Display, T: TryFrom<S>>(
    values: &[S],
    dtype: DataType,
) -> Result<Vec<T>, String> {
    values
        .iter()
        .map(|v| {
            T::try_from(*v)
                .map_err(|_| format!("value {v} is out of range for {}", dtype.v2_name()))
        })
        .collect()
}

fn from_contents(dtype: DataType, c: &InferTensorContents) -> Result<TensorData, String> {
    let expected = contents_field(dtype);
    if let Some(other) = filled_fields(c).into_iter().find(|f| *f != expected) {
        return Err(format!(
            "datatype {} takes its data in {expected}, not {other}",
            dtype.v2_name()
        ));
    }
    Ok(match dtype {
        DataType::Bool => TensorData::Bool(c.bool_contents.clone()),
        DataType::I8 => TensorData::I8(narrow(&c.int_contents, dtype)?),
        DataType::I16 => TensorData::I16(narrow(&c.int_contents, dtype)?),
        DataType::I32 => TensorData::I32(c.int_contents.clone()),
        DataType::I64 => TensorData::I64(c.int64_contents.clone()),
        DataType::U8 => TensorData::U8(narrow(&c.uint_contents, dtype)?),
        DataType::U16 => TensorData::U16(narrow(&c.uint_contents, dtype)?),
        DataType::U32 => TensorData::U32(c.uint_contents.clone()),
        DataType::U64 => TensorData::U64(c.uint64_contents.clone()),
        DataType::F32 => TensorData::F32(c.fp32_contents.clone()),
        DataType::F64 => TensorData::F64(c.fp64_contents.clone()),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents.clone()),
        DataType::F16 => {
            return Err("FP16 has no typed contents field; send it in raw_input_contents".into());
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(
        datatype: &str,
        shape: &[i64],
        contents: Option<InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: "x".into(),
            datatype: datatype.into(),
            shape: shape.to_vec(),
            parameters: Default::default(),
            contents,
        }
    }

    #[test]
    fn typed_contents_decode_into_the_datatype_of_the_input() {
        let c = InferTensorContents {
            uint_contents: vec![0, 255],
            ..Default::default()
        };
        let t = decode_input(&input("UINT8", &[2], Some(c)), None, "m").expect("uint8");
        assert_eq!(t.data(), &TensorData::U8(vec![0, 255]));
        let c = InferTensorContents {
            bytes_contents: vec![b"a".to_vec(), b"bc".to_vec()],
            ..Default::default()
        };
        let t = decode_input(&input("BYTES", &[2, 1], Some(c)), None, "m").expect("bytes");
        assert_eq!(t.shape(), &[2, 1]);
    }

    #[test]
    fn raw_contents_decode_little_endian_and_bytes_with_length_prefixes() {
        let raw: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let t = decode_input(&input("FP32", &[1, 2], None), Some(&raw), "m").expect("fp32");
        assert_eq!(t.data(), &TensorData::F32(vec![1.5, -2.0]));
        let raw = [2u8, 0, 0, 0, b'h', b'i'];
        let t = decode_input(&input("BYTES", &[1], None), Some(&raw), "m").expect("bytes");
        assert_eq!(t.data(), &TensorData::Bytes(vec![b"hi".to_vec()]));
    }

    #[test]
    fn wrong_fields_ranges_counts_and_missing_data_are_errors_naming_the_input() {
        let c = InferTensorContents {
            int_contents: vec![1],
            ..Default::default()
        };
        let e = decode_input(&input("FP32", &[1], Some(c)), None, "m").expect_err("field");
        assert!(e.message().contains("fp32_contents"), "{e:?}");
        let c = InferTensorContents {
            int_contents: vec![300],
            ..Default::default()
        };
        let e = decode_input(&input("INT8", &[1], Some(c)), None, "m").expect_err("range");
        assert!(e.message().contains("out of range"), "{e:?}");
        let c = InferTensorContents {
            fp32_contents: vec![1.0, 2.0, 3.0],
            ..Default::default()
        };
        let e = decode_input(&input("FP32", &[2, 2], Some(c)), None, "m").expect_err("count");
        assert!(e.message().contains("'x'"), "{e:?}");
        let e = decode_input(&input("FP32", &[1], None), None, "m").expect_err("no data");
        assert!(e.message().contains("unable to find data"), "{e:?}");
        let e = decode_input(&input("FP32", &[-1], None), Some(&[]), "m").expect_err("shape");
        assert!(e.message().contains("invalid shape"), "{e:?}");
    }
}
