//! KServe V2 / Open Inference Protocol REST (`/v2/...`), with the binary tensor data extension.

use serde_json::{Value, json};

use super::common::{
    Lcg, Reply, Repo, Server, StatusCode, TestTensor, assert_close, dtypes_inputs,
    reference_outputs, test_model,
};

/// Float outputs of the same runtime on the same inputs; the slack covers JSON printing.
const TOL: f64 = 1e-5;

const HEADER_LENGTH: &str = "inference-header-content-length";

async fn serve_one(file: &str) -> Server {
    Server::start(Repo::new().with_model("m", 1, file)).await
}

/// The V2 datatype of a reference dtype name.
fn v2_datatype(dtype: &str) -> &'static str {
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
        other => panic!("no V2 datatype for {other}"),
    }
}

/// A request input carrying `t` as flat JSON data.
fn json_input(name: &str, t: &TestTensor) -> Value {
    json!({"name": name, "shape": t.shape, "datatype": v2_datatype(&t.dtype), "data": t.flat()})
}

/// A request input whose data follows the JSON in binary.
fn binary_input(name: &str, t: &TestTensor) -> Value {
    json!({
        "name": name,
        "shape": t.shape,
        "datatype": v2_datatype(&t.dtype),
        "parameters": {"binary_data_size": t.le_bytes().len()},
    })
}

/// A response output as JSON data.
fn json_output(name: &str, t: &TestTensor) -> Value {
    json!({"name": name, "datatype": v2_datatype(&t.dtype), "shape": t.shape, "data": t.flat()})
}

/// A response output whose data is in the binary tail.
fn binary_output(name: &str, t: &TestTensor) -> Value {
    json!({
        "name": name,
        "datatype": v2_datatype(&t.dtype),
        "shape": t.shape,
        "parameters": {"binary_data_size": t.le_bytes().len()},
    })
}

/// Sends `header` followed by `blobs` with the binary extension's header.
async fn post_binary(server: &Server, path: &str, header: &Value, blobs: &[Vec<u8>]) -> Reply {
    let mut body = header.to_string().into_bytes();
    let length = body.len().to_string();
    for blob in blobs {
        body.extend_from_slice(blob);
    }
    let headers = [
        (HEADER_LENGTH, length.as_str()),
        ("content-type", "application/octet-stream"),
    ];
    server.post_bytes(path, body, &headers).await
}

/// Splits a binary-extension response into its JSON part and its binary tail.
fn split_binary(reply: &Reply) -> (Value, Vec<u8>) {
    assert_eq!(reply.status, StatusCode::OK, "body: {}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/octet-stream")
    );
    let length: usize = reply
        .header(HEADER_LENGTH)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {HEADER_LENGTH} header in {:?}", reply.headers));
    let json = serde_json::from_slice(&reply.body[..length])
        .unwrap_or_else(|e| panic!("the JSON part does not parse ({e}): {}", reply.text()));
    (json, reply.body[length..].to_vec())
}

fn f32s_from_le(raw: &[u8]) -> Value {
    raw.chunks_exact(4)
        .map(|c| json!(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
        .collect()
}

#[tokio::test]
async fn health_live_and_ready_are_200() {
    let server = serve_one("tiny.onnx").await;
    for path in ["/v2/health/live", "/v2/health/ready"] {
        assert_eq!(server.get(path).await.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn server_metadata_names_the_server_and_the_binary_extension() {
    let server = serve_one("tiny.onnx").await;
    let body = server.get("/v2").await.ok();
    assert_eq!(body["name"], "mofang", "{body}");
    assert!(
        body["version"].as_str().is_some_and(|v| !v.is_empty()),
        "{body}"
    );
    let extensions = body["extensions"].as_array().expect("extensions is a list");
    assert!(extensions.contains(&json!("binary_tensor_data")), "{body}");
}

#[tokio::test]
async fn model_metadata_lists_versions_platform_and_tensors() {
    let server = serve_one("tiny.onnx").await;
    let want = json!({
        "name": "m",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
    });
    assert_eq!(server.get("/v2/models/m").await.ok(), want);
    assert_eq!(server.get("/v2/models/m/versions/1").await.ok(), want);
}

#[tokio::test]
async fn model_ready_is_200_and_unknown_models_or_versions_are_404() {
    let server = serve_one("tiny.onnx").await;
    assert_eq!(
        server.get("/v2/models/m/ready").await.status,
        StatusCode::OK
    );
    assert_eq!(
        server.get("/v2/models/m/versions/1/ready").await.status,
        StatusCode::OK
    );
    for path in [
        "/v2/models/nope/ready",
        "/v2/models/m/versions/7/ready",
        "/v2/models/nope",
        "/v2/models/m/versions/7",
    ] {
        let message = server.get(path).await.error(StatusCode::NOT_FOUND);
        assert!(
            message.contains("'nope'") || message.contains("version 7"),
            "{path}: {message}"
        );
    }
}

#[tokio::test]
async fn infer_with_flat_or_nested_json_matches_onnx_runtime_and_echoes_the_id() {
    let server = serve_one("tiny.onnx").await;
    let x = TestTensor::random_f32(&[3, 4], &mut Lcg::new(11));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    let want = json!({
        "id": "request-42",
        "model_name": "m",
        "model_version": "1",
        "outputs": [json_output("y", &expected["y"])],
    });
    for (path, data) in [
        ("/v2/models/m/infer", x.flat()),
        ("/v2/models/m/infer", x.nested()),
        ("/v2/models/m/versions/1/infer", x.flat()),
    ] {
        let request = json!({
            "id": "request-42",
            "inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP32", "data": data}],
        });
        let body = server.post_json(path, &request).await.ok();
        assert_close(&body, &want, TOL, path);
    }
}

#[tokio::test]
async fn requested_outputs_are_the_only_ones_returned() {
    let server = serve_one("add_mul.onnx").await;
    let mut rng = Lcg::new(12);
    let a = TestTensor::random_f32(&[2, 3], &mut rng);
    let b = TestTensor::random_f32(&[2, 3], &mut rng);
    let expected = reference_outputs(&test_model("add_mul.onnx"), &[("a", &a), ("b", &b)]).await;
    let inputs = json!([json_input("a", &a), json_input("b", &b)]);

    let request = json!({"inputs": inputs, "outputs": [{"name": "prod"}]});
    let body = server.post_json("/v2/models/m/infer", &request).await.ok();
    assert_close(
        &body["outputs"],
        &json!([json_output("prod", &expected["prod"])]),
        TOL,
        "outputs",
    );

    let request = json!({"inputs": inputs, "outputs": [{"name": "quotient"}]});
    let message = server
        .post_json("/v2/models/m/infer", &request)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(message.contains("quotient"), "{message}");
}

#[tokio::test]
async fn binary_inputs_and_requested_binary_outputs_round_trip() {
    let server = serve_one("add_mul.onnx").await;
    let mut rng = Lcg::new(13);
    let a = TestTensor::random_f32(&[2, 3], &mut rng);
    let b = TestTensor::random_f32(&[2, 3], &mut rng);
    let expected = reference_outputs(&test_model("add_mul.onnx"), &[("a", &a), ("b", &b)]).await;
    let header = json!({
        "inputs": [binary_input("a", &a), binary_input("b", &b)],
        "outputs": [
            {"name": "sum", "parameters": {"binary_data": true}},
            {"name": "prod", "parameters": {"binary_data": false}},
        ],
    });

    let reply = post_binary(
        &server,
        "/v2/models/m/infer",
        &header,
        &[a.le_bytes(), b.le_bytes()],
    )
    .await;

    let (json, tail) = split_binary(&reply);
    let want = json!([
        binary_output("sum", &expected["sum"]),
        json_output("prod", &expected["prod"])
    ]);
    assert_close(&json["outputs"], &want, TOL, "outputs");
    assert_close(
        &f32s_from_le(&tail),
        &expected["sum"].flat(),
        TOL,
        "binary sum",
    );
}

#[tokio::test]
async fn binary_data_output_makes_every_output_binary() {
    let server = serve_one("tiny.onnx").await;
    let x = TestTensor::random_f32(&[3, 4], &mut Lcg::new(14));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    let request =
        json!({"parameters": {"binary_data_output": true}, "inputs": [json_input("x", &x)]});

    let reply = server.post_json("/v2/models/m/infer", &request).await;

    let (json, tail) = split_binary(&reply);
    assert_eq!(json["outputs"], json!([binary_output("y", &expected["y"])]));
    assert_close(&f32s_from_le(&tail), &expected["y"].flat(), TOL, "binary y");
}

#[tokio::test]
async fn bytes_tensors_travel_length_prefixed_in_binary_and_as_strings_in_json() {
    let server = serve_one("strings.onnx").await;
    let text = TestTensor::strings(&["alpha", "", "ünïcode ✓"]);
    let expected = reference_outputs(&test_model("strings.onnx"), &[("text", &text)]).await;
    let text_out = &expected["text_out"];

    let header = json!({
        "inputs": [binary_input("text", &text)],
        "outputs": [{"name": "text_out", "parameters": {"binary_data": true}}],
    });
    let reply = post_binary(&server, "/v2/models/m/infer", &header, &[text.le_bytes()]).await;
    let (json, tail) = split_binary(&reply);
    assert_eq!(
        json["outputs"],
        json!([binary_output("text_out", text_out)])
    );
    assert_eq!(tail, text_out.le_bytes());

    let request = json!({"inputs": [json_input("text", &text)]});
    let body = server.post_json("/v2/models/m/infer", &request).await.ok();
    assert_eq!(body["outputs"], json!([json_output("text_out", text_out)]));
}

#[tokio::test]
async fn every_dtype_round_trips_as_json_data() {
    let server = serve_one("dtypes.onnx").await;
    let inputs = dtypes_inputs(&mut Lcg::new(15));
    let refs: Vec<(&str, &TestTensor)> = inputs.iter().map(|(n, t)| (*n, t)).collect();
    let expected = reference_outputs(&test_model("dtypes.onnx"), &refs).await;
    let request: Vec<Value> = inputs.iter().map(|(name, t)| json_input(name, t)).collect();
    // The graph declares its outputs in the order of its inputs.
    let want: Vec<Value> = inputs
        .iter()
        .map(|(name, _)| {
            let out = format!("{name}_out");
            json_output(&out, &expected[&out])
        })
        .collect();

    let body = server
        .post_json("/v2/models/m/infer", &json!({"inputs": request}))
        .await
        .ok();

    assert_close(&body["outputs"], &Value::Array(want), 1e-6, "outputs");
}

#[tokio::test]
async fn an_unknown_datatype_is_400() {
    let server = serve_one("tiny.onnx").await;
    let request = json!({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}]});
    let message = server
        .post_json("/v2/models/m/infer", &request)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(message.contains("FP99"), "{message}");
}

#[tokio::test]
async fn a_shape_that_does_not_fit_the_data_or_the_model_is_400() {
    let server = serve_one("tiny.onnx").await;
    for (shape, data) in [
        (json!([2, 4]), json!([1.0, 2.0, 3.0, 4.0])),
        (json!([1, 4]), json!([1.0, 2.0, 3.0])),
        (json!([-1, 4]), json!([1.0, 2.0, 3.0, 4.0])),
        (json!([1, 3]), json!([1.0, 2.0, 3.0])),
    ] {
        let request =
            json!({"inputs": [{"name": "x", "shape": shape, "datatype": "FP32", "data": data}]});
        let message = server
            .post_json("/v2/models/m/infer", &request)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(message.contains('x'), "{shape}: {message}");
    }
}

#[tokio::test]
async fn a_binary_payload_of_the_wrong_size_is_400() {
    let server = serve_one("tiny.onnx").await;
    let x = TestTensor::random_f32(&[2, 4], &mut Lcg::new(16));
    let header = json!({"inputs": [binary_input("x", &x)]});
    let raw = x.le_bytes();

    let short = post_binary(
        &server,
        "/v2/models/m/infer",
        &header,
        &[raw[..16].to_vec()],
    )
    .await;
    let message = short.error(StatusCode::BAD_REQUEST);
    assert!(message.contains('x'), "{message}");

    let long = post_binary(
        &server,
        "/v2/models/m/infer",
        &header,
        &[raw.clone(), vec![0; 4]],
    )
    .await;
    long.error(StatusCode::BAD_REQUEST);

    // binary_data_size that disagrees with the shape.
    let header = json!({"inputs": [{
        "name": "x", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16},
    }]});
    let mismatch = post_binary(
        &server,
        "/v2/models/m/infer",
        &header,
        &[raw[..16].to_vec()],
    )
    .await;
    mismatch.error(StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_bad_inference_header_content_length_is_400() {
    let server = serve_one("tiny.onnx").await;
    let x = TestTensor::random_f32(&[1, 4], &mut Lcg::new(17));
    let header = json!({"inputs": [binary_input("x", &x)]}).to_string();
    let mut body = header.clone().into_bytes();
    body.extend_from_slice(&x.le_bytes());
    let too_long = (body.len() + 1).to_string();
    let mid_json = (header.len() / 2).to_string();
    for length in ["abc", "-5", "0", too_long.as_str(), mid_json.as_str()] {
        let reply = server
            .post_bytes(
                "/v2/models/m/infer",
                body.clone(),
                &[(HEADER_LENGTH, length)],
            )
            .await;
        let message = reply.error(StatusCode::BAD_REQUEST);
        assert!(!message.is_empty(), "{length}");
    }
}

/// A shape is a claim about the data, not a size to allocate: a request declaring 2^42
/// elements next to one value must get a 400, not make the server allocate 16 TiB (which
/// aborts the process).
#[tokio::test]
async fn a_declared_shape_far_larger_than_its_json_data_is_400_not_an_abort() {
    let server = serve_one("tiny.onnx").await;
    let input = json!({"name": "x", "shape": [1u64 << 40, 4], "datatype": "FP32", "data": [1.0]});
    let reply = server
        .post_json("/v2/models/m/infer", &json!({"inputs": [input]}))
        .await;
    let message = reply.error(StatusCode::BAD_REQUEST);
    assert!(message.contains('x'), "{message}");
}

/// The same for BYTES in binary: the element count must not size an allocation.
#[tokio::test]
async fn a_declared_bytes_shape_far_larger_than_its_binary_data_is_400_not_an_abort() {
    let server = serve_one("strings.onnx").await;
    let header = json!({"inputs": [{
        "name": "text", "shape": [1u64 << 40], "datatype": "BYTES",
        "parameters": {"binary_data_size": 0},
    }]});
    let reply = post_binary(&server, "/v2/models/m/infer", &header, &[]).await;
    reply.error(StatusCode::BAD_REQUEST);
}

/// Dimensions whose product overflows must be a 400, not a panic that drops the connection.
#[tokio::test]
async fn a_shape_whose_element_count_overflows_is_400() {
    let server = serve_one("tiny.onnx").await;
    let input = json!({"name": "x", "shape": [1u64 << 62, 4], "datatype": "FP32", "data": []});
    let reply = server
        .post_json("/v2/models/m/infer", &json!({"inputs": [input]}))
        .await;
    reply.error(StatusCode::BAD_REQUEST);
}
