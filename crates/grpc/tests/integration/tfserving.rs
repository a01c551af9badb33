//! TF Serving's PredictionService and ModelService over gRPC, and the health service.

use std::sync::Arc;

use mofang_grpc::pb::tensorflow::serving::model_spec::VersionChoice;
use mofang_grpc::pb::tensorflow::serving::{
    GetModelMetadataRequest, GetModelStatusRequest, ModelSpec, PredictRequest, PredictResponse,
    SignatureDefMap, model_version_status::State,
};
use mofang_grpc::pb::tensorflow::{DataType, TensorProto, TensorShapeProto, tensor_shape_proto};
use prost::Message;
use tokio::task::JoinSet;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::common::*;

const TOL: f64 = 1e-5;

fn spec(name: &str) -> ModelSpec {
    ModelSpec {
        name: name.into(),
        ..ModelSpec::default()
    }
}

fn shape(dims: &[usize]) -> Option<TensorShapeProto> {
    Some(TensorShapeProto {
        dim: dims
            .iter()
            .map(|d| tensor_shape_proto::Dim {
                size: *d as i64,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    })
}

fn dims(p: &TensorProto) -> Vec<usize> {
    p.tensor_shape
        .as_ref()
        .map(|s| s.dim.iter().map(|d| d.size as usize).collect())
        .unwrap_or_default()
}

/// A test tensor in the typed field TensorFlow's `make_tensor_proto` uses for its dtype.
fn typed(t: &TestTensor) -> TensorProto {
    let mut p = TensorProto {
        tensor_shape: shape(&t.shape),
        ..TensorProto::default()
    };
    let ints = || t.i64s().iter().map(|v| *v as i32).collect::<Vec<i32>>();
    match t.dtype.as_str() {
        "float32" => {
            p.dtype = DataType::DtFloat as i32;
            p.float_val = t.f32s();
        }
        "float64" => {
            p.dtype = DataType::DtDouble as i32;
            p.double_val = t.f64s();
        }
        "int8" | "int16" | "int32" | "uint8" => {
            p.dtype = match t.dtype.as_str() {
                "int8" => DataType::DtInt8,
                "int16" => DataType::DtInt16,
                "int32" => DataType::DtInt32,
                _ => DataType::DtUint8,
            } as i32;
            p.int_val = ints();
        }
        "int64" => {
            p.dtype = DataType::DtInt64 as i32;
            p.int64_val = t.i64s();
        }
        "bool" => {
            p.dtype = DataType::DtBool as i32;
            p.bool_val = t.bools();
        }
        "string" => {
            p.dtype = DataType::DtString as i32;
            p.string_val = t.byte_strings();
        }
        other => panic!("no typed encoding for {other}"),
    }
    p
}

/// A test tensor as little-endian `tensor_content` (what `make_tensor_proto` sends for numpy
/// arrays of more than one element).
fn content(t: &TestTensor) -> TensorProto {
    let p = typed(t);
    let raw: Vec<u8> = match t.dtype.as_str() {
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
        other => panic!("no tensor_content encoding for {other}"),
    };
    TensorProto {
        dtype: p.dtype,
        tensor_shape: p.tensor_shape,
        tensor_content: raw.into(),
        ..TensorProto::default()
    }
}

/// Checks an output tensor against the reference: dtype name, shape and values in the typed
/// field (never `tensor_content`, which TF Serving's Predict does not use).
fn check_output(actual: &TensorProto, expected: &TestTensor, what: &str) {
    assert!(
        actual.tensor_content.is_empty(),
        "{what}: tensor_content is set"
    );
    assert_eq!(dims(actual), expected.shape, "{what}: shape");
    match expected.dtype.as_str() {
        "float32" => {
            assert_eq!(actual.dtype, DataType::DtFloat as i32, "{what}");
            assert_close(&wide(&actual.float_val), &expected.f64s(), TOL, what);
        }
        "float64" => {
            assert_eq!(actual.dtype, DataType::DtDouble as i32, "{what}");
            assert_close(&actual.double_val, &expected.f64s(), 1e-12, what);
        }
        "int8" | "int16" | "int32" | "uint8" => {
            let got: Vec<i64> = actual.int_val.iter().map(|v| i64::from(*v)).collect();
            assert_eq!(got, expected.i64s(), "{what}");
        }
        "int64" => assert_eq!(actual.int64_val, expected.i64s(), "{what}"),
        "bool" => assert_eq!(actual.bool_val, expected.bools(), "{what}"),
        "string" => assert_eq!(actual.string_val, expected.byte_strings(), "{what}"),
        other => panic!("no check for {other}"),
    }
}

fn predict_request(model: ModelSpec, inputs: Vec<(&str, TensorProto)>) -> PredictRequest {
    PredictRequest {
        model_spec: Some(model),
        inputs: inputs
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect(),
        output_filter: Vec::new(),
    }
}

async fn predict(
    server: &Server,
    request: PredictRequest,
) -> Result<PredictResponse, tonic::Status> {
    let mut client = server.prediction().await;
    client
        .predict(request)
        .await
        .map(tonic::Response::into_inner)
}

fn version_of(spec: Option<&ModelSpec>) -> Option<i64> {
    match spec.and_then(|s| s.version_choice.as_ref()) {
        Some(VersionChoice::Version(v)) => Some(*v),
        _ => None,
    }
}

async fn serve_one(file: &str) -> Server {
    Server::start(Repo::new().with_model("m", 1, file)).await
}

#[tokio::test]
async fn predict_with_typed_fields_matches_onnx_runtime_and_names_what_answered() {
    let server = serve_one("tiny.onnx").await;
    let x = TestTensor::random_f32(&[3, 4], &mut Lcg::new(1));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;

    let response = predict(&server, predict_request(spec("m"), vec![("x", typed(&x))]))
        .await
        .expect("predict succeeds");
    assert_eq!(response.outputs.len(), 1, "{response:?}");
    check_output(&response.outputs["y"], &expected["y"], "y");
    let answered = response.model_spec.as_ref().expect("a model_spec");
    assert_eq!(answered.name, "m");
    assert_eq!(answered.signature_name, "serving_default");
    assert_eq!(version_of(response.model_spec.as_ref()), Some(1));
    assert_eq!(
        server.request_count("m", "1", "tfs_grpc", "ok"),
        1.0,
        "{}",
        server.metrics()
    );
}

#[tokio::test]
async fn every_dtype_decodes_from_typed_fields_and_from_tensor_content() {
    let server = serve_one("dtypes.onnx").await;
    let inputs = dtypes_inputs(&mut Lcg::new(2));
    let refs: Vec<(&str, &TestTensor)> = inputs.iter().map(|(n, t)| (*n, t)).collect();
    let expected = reference_outputs(&test_model("dtypes.onnx"), &refs).await;
    for (how, encode) in [
        ("typed", typed as fn(&TestTensor) -> TensorProto),
        ("tensor_content", content),
    ] {
        let request = predict_request(
            spec("m"),
            inputs.iter().map(|(n, t)| (*n, encode(t))).collect(),
        );
        let response = predict(&server, request)
            .await
            .unwrap_or_else(|e| panic!("{how}: {e:?}"));
        assert_eq!(response.outputs.len(), expected.len(), "{how}");
        for (name, want) in &expected {
            let got = response
                .outputs
                .get(name)
                .unwrap_or_else(|| panic!("{how}: no output {name}"));
            check_output(got, want, &format!("{how} {name}"));
        }
    }
}

#[tokio::test]
async fn strings_travel_in_string_val() {
    let server = serve_one("strings.onnx").await;
    let text = TestTensor::strings(&["hello", "魔方", ""]);
    let expected = reference_outputs(&test_model("strings.onnx"), &[("text", &text)]).await;
    let response = predict(
        &server,
        predict_request(spec("m"), vec![("text", typed(&text))]),
    )
    .await
    .expect("predict succeeds");
    check_output(
        &response.outputs["text_out"],
        &expected["text_out"],
        "text_out",
    );
}

#[tokio::test]
async fn one_typed_value_fills_the_whole_shape_as_tensorflow_does() {
    let server = serve_one("tiny.onnx").await;
    let value = 0.375f32;
    let filled = TestTensor::new("float32", &[2, 4], vec![serde_json::json!(value); 8]);
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &filled)]).await;
    let one = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: shape(&[2, 4]),
        float_val: vec![value],
        ..TensorProto::default()
    };
    let response = predict(&server, predict_request(spec("m"), vec![("x", one)]))
        .await
        .expect("predict succeeds");
    check_output(&response.outputs["y"], &expected["y"], "y");
}

#[tokio::test]
async fn output_filter_returns_only_the_listed_aliases_and_refuses_unknown_ones() {
    let server = serve_one("add_mul.onnx").await;
    let mut rng = Lcg::new(3);
    let a = TestTensor::random_f32(&[2, 3], &mut rng);
    let b = TestTensor::random_f32(&[2, 3], &mut rng);
    let expected = reference_outputs(&test_model("add_mul.onnx"), &[("a", &a), ("b", &b)]).await;
    let mut request = predict_request(spec("m"), vec![("a", typed(&a)), ("b", typed(&b))]);
    request.output_filter = vec!["prod".into()];
    let response = predict(&server, request.clone()).await.expect("filtered");
    assert_eq!(response.outputs.keys().collect::<Vec<_>>(), ["prod"]);
    check_output(&response.outputs["prod"], &expected["prod"], "prod");

    request.output_filter = vec!["nope".into()];
    let status = predict(&server, request).await.expect_err("unknown alias");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("output tensor alias not found in signature: nope"),
        "{status:?}"
    );
}

/// Version 1 is `tiny.onnx` (input `x`), version 2 `add_mul.onnx` (inputs `a`, `b`).
async fn serve_two_labelled_versions() -> Server {
    let repo = Repo::new()
        .with_model("m", 1, "tiny.onnx")
        .with_model("m", 2, "add_mul.onnx")
        .with_config(
            "m",
            "version_policy: all\nversion_labels: {stable: 1, canary: 2}\n",
        );
    Server::start(repo).await
}

#[tokio::test]
async fn versions_and_labels_select_the_version_they_name() {
    let server = serve_two_labelled_versions().await;
    let x = TestTensor::random_f32(&[1, 4], &mut Lcg::new(4));
    let tiny = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    let mut rng = Lcg::new(5);
    let a = TestTensor::random_f32(&[1, 3], &mut rng);
    let b = TestTensor::random_f32(&[1, 3], &mut rng);
    let add_mul = reference_outputs(&test_model("add_mul.onnx"), &[("a", &a), ("b", &b)]).await;

    let with = |choice: Option<VersionChoice>| ModelSpec {
        name: "m".into(),
        version_choice: choice,
        signature_name: String::new(),
    };
    for choice in [
        Some(VersionChoice::Version(1)),
        Some(VersionChoice::VersionLabel("stable".into())),
    ] {
        let response = predict(
            &server,
            predict_request(with(choice.clone()), vec![("x", typed(&x))]),
        )
        .await
        .unwrap_or_else(|e| panic!("{choice:?}: {e:?}"));
        assert_eq!(
            version_of(response.model_spec.as_ref()),
            Some(1),
            "{choice:?}"
        );
        check_output(&response.outputs["y"], &tiny["y"], "version 1");
    }
    for choice in [
        None,
        Some(VersionChoice::Version(2)),
        Some(VersionChoice::VersionLabel("canary".into())),
    ] {
        let request = predict_request(
            with(choice.clone()),
            vec![("a", typed(&a)), ("b", typed(&b))],
        );
        let response = predict(&server, request)
            .await
            .unwrap_or_else(|e| panic!("{choice:?}: {e:?}"));
        assert_eq!(
            version_of(response.model_spec.as_ref()),
            Some(2),
            "{choice:?}"
        );
        check_output(&response.outputs["sum"], &add_mul["sum"], "version 2");
    }

    let request = predict_request(
        with(Some(VersionChoice::VersionLabel("beta".into()))),
        vec![("x", typed(&x))],
    );
    let status = predict(&server, request).await.expect_err("unknown label");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.message(),
        "Unrecognized servable version label: beta"
    );

    let request = predict_request(
        with(Some(VersionChoice::Version(7))),
        vec![("x", typed(&x))],
    );
    let status = predict(&server, request)
        .await
        .expect_err("unknown version");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        status.message(),
        "Servable not found for request: Specific(m, 7)"
    );
}

/// `tiny.onnx` behind two named signatures; the default one also declares an input the graph
/// does not have (`Dropout`), which clients may send and the server drops.
async fn serve_with_signatures() -> Server {
    let config = "\
signatures:
  serving_default:
    inputs:
      x_alias: x
      Dropout: {ignore: true, dtype: float32}
    outputs: {y_alias: y}
  other:
    inputs: {features: x}
    outputs: {scores: y}
";
    Server::start(
        Repo::new()
            .with_model("m", 1, "tiny.onnx")
            .with_config("m", config),
    )
    .await
}

#[tokio::test]
async fn signatures_map_aliases_and_an_ignored_input_is_accepted_and_dropped() {
    let server = serve_with_signatures().await;
    let x = TestTensor::random_f32(&[2, 4], &mut Lcg::new(6));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    let dropout = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(TensorShapeProto::default()),
        float_val: vec![0.5],
        ..TensorProto::default()
    };
    for inputs in [
        vec![("x_alias", typed(&x)), ("Dropout", dropout.clone())],
        vec![("x_alias", typed(&x))],
    ] {
        let response = predict(&server, predict_request(spec("m"), inputs))
            .await
            .expect("predict succeeds");
        assert_eq!(response.outputs.keys().collect::<Vec<_>>(), ["y_alias"]);
        check_output(&response.outputs["y_alias"], &expected["y"], "y_alias");
    }

    let mut other = spec("m");
    other.signature_name = "other".into();
    let response = predict(
        &server,
        predict_request(other, vec![("features", typed(&x))]),
    )
    .await
    .expect("signature other");
    check_output(&response.outputs["scores"], &expected["y"], "scores");
    assert_eq!(
        response.model_spec.expect("a model_spec").signature_name,
        "other"
    );

    // The graph's own name is not an input of the signature.
    let status = predict(&server, predict_request(spec("m"), vec![("x", typed(&x))]))
        .await
        .expect_err("graph name");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("x_alias"), "{status:?}");

    let mut unknown = spec("m");
    unknown.signature_name = "nonesuch".into();
    let status = predict(
        &server,
        predict_request(unknown, vec![("features", typed(&x))]),
    )
    .await
    .expect_err("unknown signature");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("nonesuch"), "{status:?}");
}

#[tokio::test]
async fn bad_requests_get_tf_serving_codes_and_texts() {
    let server = serve_one("tiny.onnx").await;
    let x = TestTensor::random_f32(&[1, 4], &mut Lcg::new(7));

    let status = predict(
        &server,
        predict_request(spec("nope"), vec![("x", typed(&x))]),
    )
    .await
    .expect_err("unknown model");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        status.message(),
        "Servable not found for request: Latest(nope)"
    );

    let wrong = TestTensor::random_f32(&[4], &mut Lcg::new(8));
    let status = predict(
        &server,
        predict_request(spec("m"), vec![("x", typed(&wrong))]),
    )
    .await
    .expect_err("wrong shape");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("`x`") && status.message().contains("[-1, 4]"),
        "{status:?}"
    );

    let mut short = content(&x);
    short.tensor_content.truncate(5);
    let status = predict(&server, predict_request(spec("m"), vec![("x", short)]))
        .await
        .expect_err("short content");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("tensor parsing error: x"),
        "{status:?}"
    );

    let status = predict(&server, predict_request(spec("m"), Vec::new()))
        .await
        .expect_err("missing input");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("`x`"), "{status:?}");

    let mut no_spec = predict_request(spec("m"), vec![("x", typed(&x))]);
    no_spec.model_spec = None;
    let status = predict(&server, no_spec).await.expect_err("no model spec");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(status.message(), "Missing ModelSpec");

    assert_eq!(
        server.request_count("_unknown", "", "tfs_grpc", "not_found"),
        1.0
    );
    assert_eq!(
        server.request_count("m", "1", "tfs_grpc", "invalid"),
        3.0,
        "{}",
        server.metrics()
    );
}

#[tokio::test]
async fn classify_and_regress_are_unimplemented() {
    let server = serve_one("tiny.onnx").await;
    let mut grpc = tonic::client::Grpc::new(server.channel().await);
    for method in ["Classify", "Regress"] {
        grpc.ready().await.expect("the channel is ready");
        let path = format!("/tensorflow.serving.PredictionService/{method}");
        let status = grpc
            .unary(
                tonic::Request::new(()),
                path.parse().expect("a valid path"),
                tonic_prost::ProstCodec::<(), ()>::default(),
            )
            .await
            .expect_err("not served");
        assert_eq!(status.code(), Code::Unimplemented, "{method}: {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_resource_exhausted_and_the_others_get_their_answers() {
    const CLIENTS: usize = 20;
    // One execution at a time, one request allowed to wait, no waiting for batches to fill.
    let config = "instances: 1\nbatching:\n  max_batch_size: 8\n  max_queue_delay_micros: 0\n  \
                  max_queue_size: 1\n";
    let repo = Repo::new()
        .with_model("slow", 1, "resnet50.onnx")
        .with_config("slow", config);
    let server = Arc::new(Server::start(repo).await);
    const PIXELS: usize = 3 * 224 * 224;
    let image = |level: f32, n: usize| {
        TestTensor::new(
            "float32",
            &[n, 3, 224, 224],
            vec![serde_json::json!(level); n * PIXELS],
        )
    };
    let expected =
        reference_outputs(&test_model("resnet50.onnx"), &[("data", &image(0.5, 1))]).await;
    let request = |level: f32, n: usize| {
        let mut spec = spec("slow");
        spec.signature_name = String::new();
        predict_request(spec, vec![("data", content(&image(level, n)))])
    };

    // 8 images: the longest execution max_batch_size allows, keeping the worker busy.
    let blocker = {
        let server = Arc::clone(&server);
        let r = request(0.75, 8);
        tokio::spawn(async move { predict(&server, r).await })
    };
    let s = Arc::clone(&server);
    let deadline = std::time::Instant::now() + WAIT;
    while !s
        .metrics()
        .lines()
        .any(|l| l.starts_with("mofang_batch_queue_duration_seconds_count") && !l.ends_with(" 0"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the blocking request never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    let mut clients = JoinSet::new();
    for i in 0..CLIENTS {
        let server = Arc::clone(&server);
        let r = request(0.5, 1);
        clients.spawn(async move { (i, predict(&server, r).await) });
    }
    let mut refused = 0;
    while let Some(done) = clients.join_next().await {
        let (i, result) = done.expect("a client task does not panic");
        match result {
            Err(status) => {
                assert_eq!(
                    status.code(),
                    Code::ResourceExhausted,
                    "client {i}: {status:?}"
                );
                assert!(status.message().contains("full"), "client {i}: {status:?}");
                refused += 1;
            }
            Ok(response) => {
                check_output(
                    &response.outputs["softmax"],
                    &expected["softmax"],
                    &format!("client {i}"),
                );
            }
        }
    }
    blocker
        .await
        .expect("the blocking request does not panic")
        .expect("the blocking request succeeds");
    assert!(
        refused >= 1,
        "{CLIENTS} clients arrived while an execution of 8 images ran and one request could \
         wait, yet none was refused"
    );
    assert_eq!(
        server.request_count("slow", "1", "tfs_grpc", "queue_full"),
        refused as f64,
        "{}",
        server.metrics()
    );
    assert_eq!(
        server.request_count("slow", "1", "tfs_grpc", "ok"),
        (CLIENTS + 1 - refused) as f64,
        "{}",
        server.metrics()
    );
}

#[tokio::test]
async fn metadata_packs_a_signature_def_map_with_aliases_and_graph_names() {
    let server = serve_with_signatures().await;
    let mut client = server.prediction().await;
    let response = client
        .get_model_metadata(GetModelMetadataRequest {
            model_spec: Some(spec("m")),
            metadata_field: vec!["signature_def".into()],
        })
        .await
        .expect("metadata")
        .into_inner();
    assert_eq!(version_of(response.model_spec.as_ref()), Some(1));
    let any = &response.metadata["signature_def"];
    assert_eq!(
        any.type_url,
        "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    );
    let defs = SignatureDefMap::decode(&any.value[..]).expect("a SignatureDefMap");
    let default = &defs.signature_def["serving_default"];
    assert_eq!(default.method_name, "tensorflow/serving/predict");
    let x = &default.inputs["x_alias"];
    assert_eq!(
        x.encoding,
        Some(mofang_grpc::pb::tensorflow::tensor_info::Encoding::Name(
            "x".into()
        ))
    );
    assert_eq!(x.dtype, DataType::DtFloat as i32);
    let sizes: Vec<i64> = x
        .tensor_shape
        .as_ref()
        .expect("a shape")
        .dim
        .iter()
        .map(|d| d.size)
        .collect();
    assert_eq!(sizes, [-1, 4]);
    assert_eq!(default.inputs["Dropout"].dtype, DataType::DtFloat as i32);
    assert!(default.outputs.contains_key("y_alias"), "{default:?}");
    assert!(defs.signature_def["other"].inputs.contains_key("features"));

    for (fields, text) in [
        (Vec::new(), "must specify at least one metadata_field"),
        (
            vec!["graph_def".to_string()],
            "Metadata field graph_def is not supported",
        ),
    ] {
        let status = client
            .get_model_metadata(GetModelMetadataRequest {
                model_spec: Some(spec("m")),
                metadata_field: fields,
            })
            .await
            .expect_err("bad fields");
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(text), "{status:?}");
    }
}

#[tokio::test]
async fn model_status_reports_versions_as_the_rest_status_endpoint_does() {
    let server = serve_two_labelled_versions().await;
    let mut client = server.models().await;
    let all = client
        .get_model_status(GetModelStatusRequest {
            model_spec: Some(spec("m")),
        })
        .await
        .expect("status")
        .into_inner();
    let seen: Vec<(i64, i32)> = all
        .model_version_status
        .iter()
        .map(|v| (v.version, v.state))
        .collect();
    assert_eq!(
        seen,
        [(2, State::Available as i32), (1, State::Available as i32)]
    );
    let ok = all.model_version_status[0]
        .status
        .as_ref()
        .expect("a status");
    assert_eq!(ok.error_code, 0);
    assert_eq!(ok.error_message, "");

    let one = client
        .get_model_status(GetModelStatusRequest {
            model_spec: Some(ModelSpec {
                name: "m".into(),
                version_choice: Some(VersionChoice::VersionLabel("stable".into())),
                signature_name: String::new(),
            }),
        })
        .await
        .expect("status by label")
        .into_inner();
    assert_eq!(one.model_version_status.len(), 1);
    assert_eq!(one.model_version_status[0].version, 1);

    let status = client
        .get_model_status(GetModelStatusRequest {
            model_spec: Some(spec("nope")),
        })
        .await
        .expect_err("unknown model");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    assert_eq!(
        status.message(),
        "Could not find any versions of model nope"
    );
}

#[tokio::test]
async fn health_reports_serving_until_shutdown_and_the_server_stops_cleanly() {
    let mut server = serve_one("tiny.onnx").await;
    let mut health = HealthClient::new(server.channel().await);
    for service in [
        "",
        "tensorflow.serving.PredictionService",
        "inference.GRPCInferenceService",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let status = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(status.code(), Code::NotFound, "{status:?}");
    drop(health);
    server.begin_shutdown();
    server.stopped().await;
}
