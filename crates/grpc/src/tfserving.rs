//! TF Serving's `PredictionService` (Predict, GetModelMetadata) and `ModelService`
//! (GetModelStatus).

use std::time::Instant;

use mofang_backend::Tensor;
use mofang_repository::{Servable, Signature, SignatureTensor, VersionSelector, VersionState};
use prost::Message;
use tonic::{Code, Request, Response, Status};

use crate::Shared;
use crate::pb::tensorflow::error::Code as TfCode;
use crate::pb::tensorflow::serving::model_service_server::ModelService;
use crate::pb::tensorflow::serving::model_spec::VersionChoice;
use crate::pb::tensorflow::serving::prediction_service_server::PredictionService;
use crate::pb::tensorflow::serving::{
    GetModelMetadataRequest, GetModelMetadataResponse, GetModelStatusRequest,
    GetModelStatusResponse, ModelSpec, ModelVersionStatus, PredictRequest, PredictResponse,
    SignatureDefMap, StatusProto, model_version_status::State,
};
use crate::pb::tensorflow::{SignatureDef, TensorInfo, tensor_info::Encoding};
use crate::status::{invalid, status_of};
use crate::tensor_proto::{self, shape_proto, tf_type};

/// The only metadata field TF Serving supports.
const SIGNATURE_DEF: &str = "signature_def";

/// `PredictionService`.
#[derive(Debug)]
pub(crate) struct Prediction(pub(crate) Shared);

/// `ModelService`.
#[derive(Debug)]
pub(crate) struct Models(pub(crate) Shared);

/// The model spec a request must carry (TF Serving: "Missing ModelSpec").
fn model_spec(spec: Option<&ModelSpec>) -> Result<&ModelSpec, Status> {
    spec.ok_or_else(|| invalid("Missing ModelSpec"))
}

fn selector(spec: &ModelSpec) -> Result<VersionSelector, Status> {
    Ok(match &spec.version_choice {
        None => VersionSelector::Latest,
        Some(VersionChoice::Version(v)) => match u64::try_from(*v) {
            Ok(v) => VersionSelector::Specific(v),
            Err(_) => {
                return Err(Status::not_found(format!(
                    "Servable not found for request: Specific({}, {v})",
                    spec.name
                )));
            }
        },
        Some(VersionChoice::VersionLabel(l)) => VersionSelector::Label(l.clone()),
    })
}

#[tonic::async_trait]
impl PredictionService for Prediction {
    async fn predict(
        &self,
        request: Request<PredictRequest>,
    ) -> Result<Response<PredictResponse>, Status> {
        let mut request = request.into_inner();
        let started = Instant::now();
        let spec = request.model_spec.take();
        let name = spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
        let mut version = None;
        let result = self
            .0
            .run(async {
                let spec = model_spec(spec.as_ref())?;
                let servable = self
                    .0
                    .manager
                    .get(&spec.name, &selector(spec)?)
                    .map_err(|e| status_of(&e))?;
                version = Some(servable.version);
                predict(&self.0, &servable, spec, request).await
            })
            .await;
        let code = result.as_ref().map_or_else(Status::code, |_| Code::Ok);
        self.0.observe("tfs_grpc", &name, version, code, started);
        result.map(Response::new)
    }

    async fn get_model_metadata(
        &self,
        request: Request<GetModelMetadataRequest>,
    ) -> Result<Response<GetModelMetadataResponse>, Status> {
        let request = request.into_inner();
        self.0
            .run(async {
                let spec = model_spec(request.model_spec.as_ref())?;
                if request.metadata_field.is_empty() {
                    return Err(invalid(
                        "GetModelMetadataRequest must specify at least one metadata_field",
                    ));
                }
                if let Some(other) = request.metadata_field.iter().find(|f| *f != SIGNATURE_DEF) {
                    return Err(invalid(format!("Metadata field {other} is not supported")));
                }
                let servable = self
                    .0
                    .manager
                    .get(&spec.name, &selector(spec)?)
                    .map_err(|e| status_of(&e))?;
                let defs = SignatureDefMap {
                    signature_def: servable
                        .signatures
                        .iter()
                        .map(|s| (s.name.clone(), signature_def(s)))
                        .collect(),
                };
                let any = prost_types::Any {
                    type_url: "type.googleapis.com/tensorflow.serving.SignatureDefMap".into(),
                    value: defs.encode_to_vec(),
                };
                Ok(Response::new(GetModelMetadataResponse {
                    model_spec: Some(ModelSpec {
                        name: servable.name.clone(),
                        version_choice: Some(VersionChoice::Version(servable.version as i64)),
                        signature_name: String::new(),
                    }),
                    metadata: [(SIGNATURE_DEF.to_string(), any)].into_iter().collect(),
                }))
            })
            .await
    }
}

async fn predict(
    shared: &Shared,
    servable: &Servable,
    spec: &ModelSpec,
    request: PredictRequest,
) -> Result<PredictResponse, Status> {
    let limit = shared.config.max_message_bytes;
    let mut budget = limit;
    let mut inputs: Vec<(String, Tensor)> = Vec::with_capacity(request.inputs.len());
    for (alias, proto) in &request.inputs {
        let tensor = tensor_proto::decode(proto, budget)
            .map_err(|e| invalid(format!("tensor parsing error: {alias}: {e}")))?;
        budget = budget.saturating_sub(decoded_size(&tensor));
        inputs.push((alias.clone(), tensor));
    }
    // Sorted by alias so that errors about several inputs are deterministic.
    inputs.sort_by(|a, b| a.0.cmp(&b.0));
    let prediction = servable
        .predict(&spec.signature_name, inputs, &request.output_filter)
        .await
        .map_err(|e| status_of(&e))?;
    Ok(PredictResponse {
        model_spec: Some(ModelSpec {
            name: servable.name.clone(),
            version_choice: Some(VersionChoice::Version(servable.version as i64)),
            signature_name: prediction.signature,
        }),
        outputs: prediction
            .outputs
            .iter()
            .map(|(alias, t)| (alias.clone(), tensor_proto::encode(t)))
            .collect(),
    })
}

/// Bytes a decoded tensor holds, for the per-request decoding budget.
fn decoded_size(t: &Tensor) -> usize {
    match t.data() {
        mofang_backend::TensorData::Bytes(v) => v
            .iter()
            .map(|s| s.len() + std::mem::size_of::<Vec<u8>>())
            .sum(),
        data => data.len() * t.dtype().element_size().unwrap_or(1),
    }
}

fn tensor_info(t: &SignatureTensor) -> TensorInfo {
    TensorInfo {
        encoding: Some(Encoding::Name(
            t.graph_name.clone().unwrap_or_else(|| t.alias.clone()),
        )),
        dtype: tf_type(t.dtype) as i32,
        tensor_shape: Some(shape_proto(t.signed_shape())),
    }
}

fn signature_def(sig: &Signature) -> SignatureDef {
    SignatureDef {
        inputs: sig
            .inputs
            .iter()
            .map(|t| (t.alias.clone(), tensor_info(t)))
            .collect(),
        outputs: sig
            .outputs
            .iter()
            .map(|t| (t.alias.clone(), tensor_info(t)))
            .collect(),
        method_name: sig.method_name.clone(),
        defaults: Default::default(),
    }
}

#[tonic::async_trait]
impl ModelService for Models {
    async fn get_model_status(
        &self,
        request: Request<GetModelStatusRequest>,
    ) -> Result<Response<GetModelStatusResponse>, Status> {
        let request = request.into_inner();
        self.0
            .run(async {
                let spec = model_spec(request.model_spec.as_ref())?;
                // As the REST status endpoint: a label is resolved to its version.
                let version = match selector(spec)? {
                    VersionSelector::Latest => None,
                    VersionSelector::Specific(v) => Some(v),
                    VersionSelector::Label(l) => {
                        Some(*self.0.manager.labels(&spec.name).get(&l).ok_or_else(|| {
                            invalid(format!("Unrecognized servable version label: {l}"))
                        })?)
                    }
                };
                let versions = self
                    .0
                    .manager
                    .status(&spec.name, version)
                    .map_err(|e| status_of(&e))?;
                let list = versions
                    .iter()
                    .rev()
                    .map(|v| {
                        let (state, code) = match v.state {
                            VersionState::Loading => (State::Loading, TfCode::Ok),
                            VersionState::Available => (State::Available, TfCode::Ok),
                            VersionState::End if v.error.is_some() => (State::End, TfCode::Unknown),
                            VersionState::End => (State::End, TfCode::Ok),
                        };
                        ModelVersionStatus {
                            version: v.version as i64,
                            state: state as i32,
                            status: Some(StatusProto {
                                error_code: code as i32,
                                error_message: v.error.clone().unwrap_or_default(),
                            }),
                        }
                    })
                    .collect();
                Ok(Response::new(GetModelStatusResponse {
                    model_version_status: list,
                }))
            })
            .await
    }
}
