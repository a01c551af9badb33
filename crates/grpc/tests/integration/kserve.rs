//! The KServe V2 / Open Inference Protocol `inference.GRPCInferenceService`.

use mofang_grpc::pb::inference::model_infer_request::{
    InferInputTensor, InferRequestedOutputTensor,
};
use mofang_grpc::pb::inference::{
    InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataRequest,
    ModelReadyRequest, ServerLiveRequest, ServerMetadataRequest, ServerReadyRequest,
};
use tonic::Code;

use super::common::*;

const TOL: f64 = 1e-5;

/// The V2 datatype name of a reference dtype.
fn v2_name(dtype: &str) -> &'static str {
    match dtype {
        "float32" => "FP32",
        "float64" => "FP64",
        "int8" => "INT8",
        "int16" => "INT16",
        "int32" => "INT32",
        "int64" => "INT64",
        "uint8" => "UINT8",
        "bool" => "BOOL",
        "string" => "BYTES",
        other => panic!("no V2 name for {other}"),
    }
}

/// A test tensor in the typed contents field of its datatype.
fn typed(name: &str, t: &TestTensor) -> InferInputTensor {
    let mut c = InferTensorContents::default();
    match t.dtype.as_str() {
        "float32" => c.fp32_contents = t.f32s(),
        "float64" => c.fp64_contents = t.f64s(),
        "int8" | "int16" | "int32" => {
            c.int_contents = t.i64s().iter().map(|v| *v as i32).collect();
        }
        "uint8" => c.uint_contents = t.i64s().iter().map(|v| *v as u32).collect(),
        "int64" => c.int64_contents = t.i64s(),
        "bool" => c.bool_contents = t.bools(),
        "string" => c.bytes_contents = t.byte_strings(),
        other => panic!("no contents for {other}"),
    }
    InferInputTensor {
        name: name.into(),
        datatype: v2_name(&t.dtype).into(),
        shape: t.shape_i64(),
        parameters: Default::default(),
        contents: Some(c),
    }
}

/// A test tensor's raw little-endian bytes (BYTES: each element after its u32 length).
fn raw_bytes(t: &TestTensor) -> Vec<u8> {
    match t.dtype.as_str() {
        "float32" => t.f32s().iter().flat_map(|v| v.to_le_bytes()).collect(),
        "float64" => t.f64s().iter().flat_map(|v| v.to_le_bytes()).collect(),
        "int8" => t.i64s().iter().map(|v| *v as i8 as u8).collect(),
        "uint8" => t.i64s().iter().map(|v| *v as u8).collect(),
        "int16" => t
            .i64s()
            .iter()
            .flat_map(|v| (*v as i16).to_le_bytes())
            .collect(),
        "int32" => t
            .i64s()
            .iter()
            .flat_map(|v| (*v as i32).to_le_bytes())
            .collect(),
        "int64" => t.i64s().iter().flat_map(|v| v.to_le_bytes()).collect(),
        "bool" => t.bools().iter().map(|b| u8::from(*b)).collect(),
        "string" => t
            .byte_strings()
            .iter()
            .flat_map(|s| {
                let len = u32::try_from(s.len()).expect("a short test string");
                len.to_le_bytes().into_iter().chain(s.iter().copied())
            })
            .collect(),
        other => panic!("no raw encoding for {other}"),
    }
}

fn raw_input(name: &str, t: &TestTensor) -> InferInputTensor {
    InferInputTensor {
        name: name.into(),
        datatype: v2_name(&t.dtype).into(),
        shape: t.shape_i64(),
        parameters: Default::default(),
        contents: None,
    }
}

fn request(model: &str, inputs: Vec<InferInputTensor>) -> ModelInferRequest {
    ModelInferRequest {
        model_name: model.into(),
        inputs,
        ..ModelInferRequest::default()
    }
}

/// Checks one output of a response: name, datatype, shape and its raw_output_contents entry
/// decoded against the reference.
fn check_output(response: &ModelInferResponse, name: &str, expected: &TestTensor) {
    let index = response
        .outputs
        .iter()
        .position(|o| o.name == name)
        .unwrap_or_else(|| panic!("no output {name} in {response:?}"));
    let output = &response.outputs[index];
    assert_eq!(output.datatype, v2_name(&expected.dtype), "{name}");
    assert_eq!(output.shape, expected.shape_i64(), "{name}");
    assert!(
        output.contents.is_none(),
        "{name}: data is in raw_output_contents"
    );
    assert_eq!(
        response.raw_output_contents.len(),
        response.outputs.len(),
        "one raw_output_contents entry per output"
    );
    let raw = &response.raw_output_contents[index];
    match expected.dtype.as_str() {
        "float32" => {
            let got: Vec<f32> = raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            assert_close(&wide(&got), &expected.f64s(), TOL, name);
        }
        "float64" => {
            let got: Vec<f64> = raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                .collect();
            assert_close(&got, &expected.f64s(), 1e-12, name);
        }
        _ => assert_eq!(&raw[..], raw_bytes(expected), "{name}"),
    }
}

async fn serve_one(file: &str) -> Server {
    Server::start(Repo::new().with_model("m", 1, file)).await
}

#[tokio::test]
async fn server_and_model_health_and_metadata_answer_as_triton_does() {
    let server = serve_one("tiny.onnx").await;
    let mut client = server.inference().await;
    let live = client
        .server_live(ServerLiveRequest {})
        .await
        .expect("live");
    assert!(live.into_inner().live);
    let ready = client
        .server_ready(ServerReadyRequest {})
        .await
        .expect("ready");
    assert!(ready.into_inner().ready);
    let meta = client
        .server_metadata(ServerMetadataRequest {})
        .await
        .expect("server metadata")
        .into_inner();
    assert_eq!(meta.name, "mofang");

    for version in ["", "1"] {
        let ready = client
            .model_ready(ModelReadyRequest {
                name: "m".into(),
                version: version.into(),
            })
            .await
            .expect("model ready")
            .into_inner();
        assert!(ready.ready, "version {version:?}");
    }
    let status = client
        .model_ready(ModelReadyRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await
        .expect_err("unknown model");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        status.message(),
        "Request for unknown model: 'nope' is not found"
    );
    let status = client
        .model_ready(ModelReadyRequest {
            name: "m".into(),
            version: "9".into(),
        })
        .await
        .expect_err("unknown version");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        status.message(),
        "Request for unknown model: 'm' version 9 is not found"
    );

    let meta = client
        .model_metadata(ModelMetadataRequest {
            name: "m".into(),
            version: String::new(),
        })
        .await
        .expect("model metadata")
        .into_inner();
    assert_eq!(meta.name, "m");
    assert_eq!(meta.versions, ["1"]);
    assert_eq!(meta.platform, "onnxruntime_onnx");
    let inputs: Vec<(&str, &str, &[i64])> = meta
        .inputs
        .iter()
        .map(|t| (t.name.as_str(), t.datatype.as_str(), &t.shape[..]))
        .collect();
    assert_eq!(inputs, [("x", "FP32", &[-1i64, 4][..])]);
    assert_eq!(meta.outputs[0].name, "y");
}

#[tokio::test]
async fn model_infer_with_typed_contents_matches_onnx_runtime() {
    let server = serve_one("tiny.onnx").await;
    let x = TestTensor::random_f32(&[3, 4], &mut Lcg::new(11));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    let mut r = request("m", vec![typed("x", &x)]);
    r.id = "req-7".into();
    let response = server
        .inference()
        .await
        .model_infer(r)
        .await
        .expect("infer")
        .into_inner();
    assert_eq!(response.model_name, "m");
    assert_eq!(response.model_version, "1");
    assert_eq!(response.id, "req-7");
    check_output(&response, "y", &expected["y"]);
    assert_eq!(
        server.request_count("m", "1", "v2_grpc", "ok"),
        1.0,
        "{}",
        server.metrics()
    );
}

#[tokio::test]
async fn every_datatype_arrives_typed_or_raw() {
    let server = serve_one("dtypes.onnx").await;
    let inputs = dtypes_inputs(&mut Lcg::new(12));
    let refs: Vec<(&str, &TestTensor)> = inputs.iter().map(|(n, t)| (*n, t)).collect();
    let expected = reference_outputs(&test_model("dtypes.onnx"), &refs).await;
    let mut client = server.inference().await;

    let typed_request = request("m", inputs.iter().map(|(n, t)| typed(n, t)).collect());
    let mut raw_request = request("m", inputs.iter().map(|(n, t)| raw_input(n, t)).collect());
    raw_request.raw_input_contents = inputs.iter().map(|(_, t)| raw_bytes(t).into()).collect();
    for (how, r) in [("typed", typed_request), ("raw", raw_request)] {
        let response = client
            .model_infer(r)
            .await
            .unwrap_or_else(|e| panic!("{how}: {e:?}"))
            .into_inner();
        assert_eq!(response.outputs.len(), expected.len(), "{how}");
        for (name, want) in &expected {
            check_output(&response, name, want);
        }
    }
}

#[tokio::test]
async fn bytes_tensors_arrive_typed_or_length_prefixed_and_return_length_prefixed() {
    let server = serve_one("strings.onnx").await;
    let text = TestTensor::strings(&["hello", "魔方", ""]);
    let expected = reference_outputs(&test_model("strings.onnx"), &[("text", &text)]).await;
    let mut client = server.inference().await;
    let mut raw = request("m", vec![raw_input("text", &text)]);
    raw.raw_input_contents = vec![raw_bytes(&text).into()];
    for r in [request("m", vec![typed("text", &text)]), raw] {
        let response = client.model_infer(r).await.expect("infer").into_inner();
        check_output(&response, "text_out", &expected["text_out"]);
    }
}

#[tokio::test]
async fn requested_outputs_are_returned_in_their_order_and_unknown_ones_refused() {
    let server = serve_one("add_mul.onnx").await;
    let mut rng = Lcg::new(13);
    let a = TestTensor::random_f32(&[2, 3], &mut rng);
    let b = TestTensor::random_f32(&[2, 3], &mut rng);
    let expected = reference_outputs(&test_model("add_mul.onnx"), &[("a", &a), ("b", &b)]).await;
    let mut client = server.inference().await;
    let wanted = |names: &[&str]| {
        names
            .iter()
            .map(|n| InferRequestedOutputTensor {
                name: n.to_string(),
                parameters: Default::default(),
            })
            .collect()
    };

    let mut r = request("m", vec![typed("a", &a), typed("b", &b)]);
    r.outputs = wanted(&["prod", "sum"]);
    let response = client
        .model_infer(r.clone())
        .await
        .expect("infer")
        .into_inner();
    let names: Vec<&str> = response.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["prod", "sum"]);
    check_output(&response, "prod", &expected["prod"]);
    check_output(&response, "sum", &expected["sum"]);

    r.outputs = wanted(&["sum"]);
    let response = client
        .model_infer(r.clone())
        .await
        .expect("infer")
        .into_inner();
    assert_eq!(response.outputs.len(), 1);
    check_output(&response, "sum", &expected["sum"]);

    r.outputs = wanted(&["nope"]);
    let status = client.model_infer(r).await.expect_err("unknown output");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("'nope'"), "{status:?}");
}

#[tokio::test]
async fn bad_infer_requests_are_errors_naming_what_was_wrong() {
    let server = serve_one("tiny.onnx").await;
    let mut client = server.inference().await;
    let x = TestTensor::random_f32(&[1, 4], &mut Lcg::new(14));

    let status = client
        .model_infer(request("nope", vec![typed("x", &x)]))
        .await
        .expect_err("unknown model");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        status.message(),
        "Request for unknown model: 'nope' is not found"
    );

    let mut wrong = typed("x", &x);
    wrong.shape = vec![2, 2];
    let status = client
        .model_infer(request("m", vec![wrong]))
        .await
        .expect_err("wrong shape for the model");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("[-1, 4]"), "{status:?}");

    let mut mismatch = typed("x", &x);
    mismatch.shape = vec![2, 4];
    let status = client
        .model_infer(request("m", vec![mismatch]))
        .await
        .expect_err("shape and data disagree");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("'x'"), "{status:?}");

    let mut both = request("m", vec![typed("x", &x)]);
    both.raw_input_contents = vec![raw_bytes(&x).into()];
    let status = client
        .model_infer(both)
        .await
        .expect_err("contents and raw");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("contents field must not be specified"),
        "{status:?}"
    );

    let mut short = request("m", vec![raw_input("x", &x)]);
    short.raw_input_contents = vec![raw_bytes(&x)[..10].to_vec().into()];
    let status = client.model_infer(short).await.expect_err("short raw");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("expected 16 bytes"), "{status:?}");

    let mut version = request("m", vec![typed("x", &x)]);
    version.model_version = "one".into();
    let status = client.model_infer(version).await.expect_err("bad version");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("'one'"), "{status:?}");

    assert_eq!(
        server.request_count("_unknown", "", "v2_grpc", "not_found"),
        1.0
    );
}
