//! Compiles the .proto files under `proto/` with protox (pure Rust, no system `protoc`) and
//! generates prost messages and tonic servers and clients into `OUT_DIR`.

use std::path::Path;

const PROTOS: &[&str] = &[
    "tensorflow_serving/apis/prediction_service.proto",
    "tensorflow_serving/apis/model_service.proto",
    "inference/grpc_service.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let files: Vec<_> = PROTOS.iter().map(|p| root.join(p)).collect();
    let descriptors = protox::compile(&files, [&root])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .bytes(".tensorflow.TensorProto.tensor_content")
        .compile_fds(descriptors)?;
    Ok(())
}
