//! The model server's gRPC edge.
//!
//! One tonic server answers TF Serving's `tensorflow.serving.PredictionService` (Predict,
//! GetModelMetadata) and `tensorflow.serving.ModelService` (GetModelStatus), the KServe V2 /
//! Open Inference Protocol `inference.GRPCInferenceService` (liveness, readiness, metadata,
//! ModelInfer) and `grpc.health.v1.Health`, over the models a [`Manager`] serves — the same
//! manager, batch queues and metrics as the REST edge (`mofang-serve`). The `.proto` files under
//! `proto/` keep the original packages, message names and field numbers, so TF Serving's and
//! Triton's own clients talk to it unchanged. This crate is the only one that knows gRPC and
//! protobuf; it converts wire tensors into [`mofang_backend::Tensor`]s and repository errors
//! into gRPC status codes (one table, [`status`]).

mod kserve;
mod status;
mod tensor_proto;
mod tfserving;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mofang_repository::{Manager, VersionSelector};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Code, Status};

pub use status::status_of;

/// The generated protobuf messages, servers and clients, by protobuf package.
pub mod pb {
    #![allow(clippy::all, missing_docs, unreachable_pub)]

    /// Package `tensorflow`: tensors, shapes, signatures.
    pub mod tensorflow {
        tonic::include_proto!("tensorflow");

        /// Package `tensorflow.error`: status codes.
        pub mod error {
            tonic::include_proto!("tensorflow.error");
        }

        /// Package `tensorflow.serving`: TF Serving's services.
        pub mod serving {
            tonic::include_proto!("tensorflow.serving");
        }
    }

    /// Package `inference`: the KServe V2 / Open Inference Protocol gRPC API.
    pub mod inference {
        tonic::include_proto!("inference");
    }
}

/// The gRPC service names, as the health service reports them.
pub const SERVICES: [&str; 3] = [
    "tensorflow.serving.PredictionService",
    "tensorflow.serving.ModelService",
    "inference.GRPCInferenceService",
];

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Limits of the gRPC edge.
#[derive(Debug, Clone)]
pub struct GrpcConfig {
    /// Largest request message accepted (larger ones get OUT_OF_RANGE), and the most
    /// bytes one request's tensors may decode to (a single typed value broadcast to a large
    /// shape counts at its decoded size).
    pub max_message_bytes: usize,
    /// A request that takes longer gets DEADLINE_EXCEEDED (a shorter client deadline wins).
    pub request_timeout: Duration,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        GrpcConfig {
            max_message_bytes: 64 * 1024 * 1024,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// What every service implementation shares.
#[derive(Debug, Clone)]
struct Shared {
    manager: Manager,
    config: Arc<GrpcConfig>,
    draining: Arc<AtomicBool>,
}

impl Shared {
    fn is_ready(&self) -> bool {
        !self.draining.load(Ordering::Relaxed)
    }

    /// Runs one request under the request timeout; refuses it once shutdown has begun.
    async fn run<T>(&self, work: impl Future<Output = Result<T, Status>>) -> Result<T, Status> {
        if !self.is_ready() {
            return Err(Status::unavailable("the server is shutting down"));
        }
        let limit = self.config.request_timeout;
        match tokio::time::timeout(limit, work).await {
            Ok(result) => result,
            Err(_) => Err(Status::deadline_exceeded(format!(
                "request took longer than the {limit:?} limit (--request-timeout)"
            ))),
        }
    }

    /// Counts one inference request in `mofang_serve_requests_total` and its latency, as the
    /// REST edge does. Unknown model names share one label value so that clients cannot grow
    /// the metric set without bound.
    fn observe(
        &self,
        protocol: &str,
        model: &str,
        version: Option<u64>,
        code: Code,
        started: Instant,
    ) {
        let known = self.manager.get(model, &VersionSelector::Latest).is_ok();
        let model = if known { model } else { "_unknown" };
        let version = version.map(|v| v.to_string()).unwrap_or_default();
        let outcome = match code {
            Code::Ok => "ok",
            Code::NotFound => "not_found",
            Code::ResourceExhausted => "queue_full",
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => "invalid",
            _ => "error",
        };
        let m = self.manager.metrics();
        m.requests.with(&[model, &version, protocol, outcome]).inc();
        m.request_duration
            .with(&[model, protocol])
            .observe(started.elapsed().as_secs_f64());
    }
}

/// Serves every gRPC service on `listener` until `shutdown` resolves; then reports NOT_SERVING
/// on the health service, refuses new requests with UNAVAILABLE, stops accepting connections
/// and lets requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    manager: Manager,
    config: GrpcConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let limit = config.max_message_bytes;
    let shared = Shared {
        manager,
        config: Arc::new(config),
        draining: Arc::new(AtomicBool::new(false)),
    };
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    for service in SERVICES {
        health
            .set_service_status(service, tonic_health::ServingStatus::Serving)
            .await;
    }
    let draining = Arc::clone(&shared.draining);
    let signal = async move {
        shutdown.await;
        draining.store(true, Ordering::Relaxed);
        for service in std::iter::once("").chain(SERVICES) {
            health
                .set_service_status(service, tonic_health::ServingStatus::NotServing)
                .await;
        }
        tracing::info!("gRPC: shutting down, draining in-flight requests");
    };
    use pb::inference::grpc_inference_service_server::GrpcInferenceServiceServer;
    use pb::tensorflow::serving::model_service_server::ModelServiceServer;
    use pb::tensorflow::serving::prediction_service_server::PredictionServiceServer;
    tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(
            PredictionServiceServer::new(tfserving::Prediction(shared.clone()))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(
            ModelServiceServer::new(tfserving::Models(shared.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(
            GrpcInferenceServiceServer::new(kserve::Inference(shared))
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX),
        )
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), signal)
        .await?;
    Ok(())
}
