//! TF Serving's REST API: `/v1/models/{name}[/versions/{v}|/labels/{l}][:predict|/metadata]`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::{Map, Value, json};

use super::common::{
    Lcg, Repo, Server, StatusCode, TestTensor, assert_close, dtypes_inputs, reference_outputs,
    test_model,
};

/// Float outputs of the same runtime on the same inputs; the slack covers JSON printing.
const TOL: f64 = 1e-5;

async fn serve_one(file: &str) -> Server {
    Server::start(Repo::new().with_model("m", 1, file)).await
}

/// Random inputs `a` and `b` for `add_mul.onnx`, `[rows, 3]` each.
fn add_mul_inputs(rows: usize, seed: u64) -> (TestTensor, TestTensor) {
    let mut rng = Lcg::new(seed);
    (
        TestTensor::random_f32(&[rows, 3], &mut rng),
        TestTensor::random_f32(&[rows, 3], &mut rng),
    )
}

#[tokio::test]
async fn row_format_with_one_input_returns_predictions_matching_onnx_runtime() {
    let server = serve_one("tiny.onnx").await;
    let x = TestTensor::random_f32(&[3, 4], &mut Lcg::new(1));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;

    let body = server
        .post_json("/v1/models/m:predict", &json!({"instances": x.rows()}))
        .await
        .ok();

    assert_close(
        &body,
        &json!({"predictions": expected["y"].nested()}),
        TOL,
        "response",
    );
}

#[tokio::test]
async fn row_format_with_objects_feeds_several_inputs_and_returns_objects() {
    let server = serve_one("add_mul.onnx").await;
    let (a, b) = add_mul_inputs(2, 2);
    let expected = reference_outputs(&test_model("add_mul.onnx"), &[("a", &a), ("b", &b)]).await;
    let instances: Vec<Value> = a
        .rows()
        .into_iter()
        .zip(b.rows())
        .map(|(a, b)| json!({"a": a, "b": b}))
        .collect();
    let predictions: Vec<Value> = expected["sum"]
        .rows()
        .into_iter()
        .zip(expected["prod"].rows())
        .map(|(sum, prod)| json!({"sum": sum, "prod": prod}))
        .collect();

    let body = server
        .post_json("/v1/models/m:predict", &json!({"instances": instances}))
        .await
        .ok();

    assert_close(&body, &json!({"predictions": predictions}), TOL, "response");
}

#[tokio::test]
async fn columnar_inputs_take_a_plain_value_for_one_input_and_return_outputs() {
    let server = serve_one("tiny.onnx").await;
    let x = TestTensor::random_f32(&[2, 4], &mut Lcg::new(3));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;

    let body = server
        .post_json("/v1/models/m:predict", &json!({"inputs": x.nested()}))
        .await
        .ok();

    assert_close(
        &body,
        &json!({"outputs": expected["y"].nested()}),
        TOL,
        "response",
    );
}

#[tokio::test]
async fn columnar_inputs_take_an_object_for_several_inputs_and_return_an_object() {
    let server = serve_one("add_mul.onnx").await;
    let (a, b) = add_mul_inputs(3, 4);
    let expected = reference_outputs(&test_model("add_mul.onnx"), &[("a", &a), ("b", &b)]).await;

    let body = server
        .post_json(
            "/v1/models/m:predict",
            &json!({"inputs": {"a": a.nested(), "b": b.nested()}}),
        )
        .await
        .ok();

    let outputs = json!({"sum": expected["sum"].nested(), "prod": expected["prod"].nested()});
    assert_close(&body, &json!({"outputs": outputs}), TOL, "response");
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

/// The version metadata reports and the input names of its default signature.
async fn served_version_and_inputs(server: &Server, prefix: &str) -> (String, Vec<String>) {
    let body = server.get(&format!("{prefix}/metadata")).await.ok();
    let inputs = body["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"]
        .as_object()
        .unwrap_or_else(|| panic!("no serving_default inputs in {body}"))
        .keys()
        .cloned()
        .collect();
    let version = body["model_spec"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    (version, inputs)
}

#[tokio::test]
async fn versions_and_labels_select_the_version_they_name() {
    let server = serve_two_labelled_versions().await;
    let one = (String::from("1"), vec![String::from("x")]);
    let two = (
        String::from("2"),
        vec![String::from("a"), String::from("b")],
    );
    assert_eq!(
        served_version_and_inputs(&server, "/v1/models/m/versions/1").await,
        one
    );
    assert_eq!(
        served_version_and_inputs(&server, "/v1/models/m/labels/stable").await,
        one
    );
    assert_eq!(
        served_version_and_inputs(&server, "/v1/models/m/versions/2").await,
        two
    );
    assert_eq!(
        served_version_and_inputs(&server, "/v1/models/m/labels/canary").await,
        two
    );
    assert_eq!(
        served_version_and_inputs(&server, "/v1/models/m").await,
        two
    );

    let x = TestTensor::random_f32(&[1, 4], &mut Lcg::new(5));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    let want = json!({"outputs": expected["y"].nested()});
    let request = json!({"inputs": x.nested()});
    for path in [
        "/v1/models/m/versions/1:predict",
        "/v1/models/m/labels/stable:predict",
    ] {
        let body = server.post_json(path, &request).await.ok();
        assert_close(&body, &want, TOL, path);
    }

    let (a, b) = add_mul_inputs(1, 6);
    let expected = reference_outputs(&test_model("add_mul.onnx"), &[("a", &a), ("b", &b)]).await;
    let want =
        json!({"outputs": {"sum": expected["sum"].nested(), "prod": expected["prod"].nested()}});
    let request = json!({"inputs": {"a": a.nested(), "b": b.nested()}});
    for path in [
        "/v1/models/m:predict",
        "/v1/models/m/versions/2:predict",
        "/v1/models/m/labels/canary:predict",
    ] {
        let body = server.post_json(path, &request).await.ok();
        assert_close(&body, &want, TOL, path);
    }

    let stable = server.get("/v1/models/m/labels/stable").await.ok();
    assert_eq!(
        stable["model_version_status"][0]["version"], "1",
        "{stable}"
    );
    assert_eq!(
        stable["model_version_status"].as_array().map(Vec::len),
        Some(1),
        "{stable}"
    );
}

#[tokio::test]
async fn unknown_label_is_400_and_unknown_version_is_404() {
    let server = serve_two_labelled_versions().await;
    let request = json!({"inputs": [[1.0, 2.0, 3.0, 4.0]]});

    let label = server
        .post_json("/v1/models/m/labels/beta:predict", &request)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(label.contains("beta"), "{label}");
    let label = server
        .get("/v1/models/m/labels/beta")
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(label.contains("beta"), "{label}");

    let version = server
        .post_json("/v1/models/m/versions/9:predict", &request)
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(version, "Servable not found for request: Specific(m, 9)");
    let version = server
        .get("/v1/models/m/versions/9/metadata")
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(version, "Servable not found for request: Specific(m, 9)");
    server
        .get("/v1/models/m/versions/9")
        .await
        .error(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_dtype_round_trips_through_json() {
    let server = serve_one("dtypes.onnx").await;
    let inputs = dtypes_inputs(&mut Lcg::new(7));
    let refs: Vec<(&str, &TestTensor)> = inputs.iter().map(|(n, t)| (*n, t)).collect();
    let expected = reference_outputs(&test_model("dtypes.onnx"), &refs).await;
    let columns: Map<String, Value> = inputs
        .iter()
        .map(|(name, t)| (name.to_string(), t.nested()))
        .collect();
    let want: Map<String, Value> = expected
        .iter()
        .map(|(name, t)| (name.clone(), t.nested()))
        .collect();

    let body = server
        .post_json("/v1/models/m:predict", &json!({"inputs": columns}))
        .await
        .ok();
    assert_close(&body, &json!({"outputs": want}), 1e-6, "columnar response");

    let rows: Vec<Value> = (0..2)
        .map(|i| {
            let row: Map<String, Value> = inputs
                .iter()
                .map(|(name, t)| (name.to_string(), t.rows()[i].clone()))
                .collect();
            Value::Object(row)
        })
        .collect();
    let want_rows: Vec<Value> = (0..2)
        .map(|i| {
            let row: Map<String, Value> = expected
                .iter()
                .map(|(name, t)| (name.clone(), t.rows()[i].clone()))
                .collect();
            Value::Object(row)
        })
        .collect();
    let body = server
        .post_json("/v1/models/m:predict", &json!({"instances": rows}))
        .await
        .ok();
    assert_close(
        &body,
        &json!({"predictions": want_rows}),
        1e-6,
        "row response",
    );
}

#[tokio::test]
async fn strings_arrive_plain_or_as_b64_and_return_as_plain_strings() {
    let server = serve_one("strings.onnx").await;
    let texts = ["hello", "wörld ✓", ""];
    let expected = reference_outputs(
        &test_model("strings.onnx"),
        &[("text", &TestTensor::strings(&texts))],
    )
    .await;
    let want = expected["text_out"].nested();
    let sent = json!([texts[0], {"b64": B64.encode(texts[1])}, texts[2]]);

    let body = server
        .post_json("/v1/models/m:predict", &json!({"instances": sent}))
        .await
        .ok();
    assert_eq!(body, json!({"predictions": want}));

    let body = server
        .post_json("/v1/models/m:predict", &json!({"inputs": sent}))
        .await
        .ok();
    assert_eq!(body, json!({"outputs": want}));
}

/// `tiny.onnx` behind two named signatures; the default one also declares an input the
/// graph does not have (`Dropout`), which clients may send and the server drops.
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
async fn named_signatures_map_aliases_onto_the_graph_and_drop_ignored_inputs() {
    let server = serve_with_signatures().await;
    let x = TestTensor::random_f32(&[2, 4], &mut Lcg::new(8));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    let y = expected["y"].nested();

    let instances: Vec<Value> = x
        .rows()
        .into_iter()
        .map(|row| json!({"x_alias": row, "Dropout": 0.5}))
        .collect();
    let body = server
        .post_json("/v1/models/m:predict", &json!({"instances": instances}))
        .await
        .ok();
    assert_close(
        &body,
        &json!({"predictions": y}),
        TOL,
        "row format with Dropout",
    );

    let with_dropout = json!({"inputs": {"x_alias": x.nested(), "Dropout": 0.25}});
    let without = json!({"signature_name": "serving_default", "inputs": {"x_alias": x.nested()}});
    for request in [with_dropout, without] {
        let body = server
            .post_json("/v1/models/m:predict", &request)
            .await
            .ok();
        assert_close(&body, &json!({"outputs": y}), TOL, &request.to_string());
    }

    let other = json!({"signature_name": "other", "inputs": {"features": x.nested()}});
    let body = server.post_json("/v1/models/m:predict", &other).await.ok();
    assert_close(&body, &json!({"outputs": y}), TOL, "signature `other`");

    // The graph's own name is not an input of the signature; the error names the alias.
    let graph_name = json!({"inputs": {"x": x.nested()}});
    let message = server
        .post_json("/v1/models/m:predict", &graph_name)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(message.contains("x_alias"), "{message}");
}

#[tokio::test]
async fn unknown_signature_is_400_naming_it() {
    let server = serve_with_signatures().await;
    let request = json!({"signature_name": "nonesuch", "inputs": [[1.0, 2.0, 3.0, 4.0]]});
    let message = server
        .post_json("/v1/models/m:predict", &request)
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(message.contains("nonesuch"), "{message}");
}

#[tokio::test]
async fn metadata_lists_every_signature_with_aliases_and_graph_names() {
    let server = serve_with_signatures().await;
    let body = server.get("/v1/models/m/metadata").await.ok();
    let defs = &body["metadata"]["signature_def"]["signature_def"];
    let default = &defs["serving_default"];
    assert_eq!(default["inputs"]["x_alias"]["name"], "x", "{body}");
    assert_eq!(default["inputs"]["Dropout"]["dtype"], "DT_FLOAT", "{body}");
    assert_eq!(default["outputs"]["y_alias"]["name"], "y", "{body}");
    assert_eq!(defs["other"]["inputs"]["features"]["name"], "x", "{body}");
    assert_eq!(defs["other"]["outputs"]["scores"]["name"], "y", "{body}");
    let names: Vec<&String> = defs
        .as_object()
        .expect("signature_def is an object")
        .keys()
        .collect();
    assert_eq!(names, ["other", "serving_default"], "{body}");
}

#[tokio::test]
async fn status_reports_an_available_version_as_tf_serving_does() {
    let server = serve_one("tiny.onnx").await;
    let want = json!({"model_version_status": [{
        "version": "1",
        "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""},
    }]});
    assert_eq!(server.get("/v1/models/m").await.ok(), want);
    assert_eq!(server.get("/v1/models/m/versions/1").await.ok(), want);
}

#[tokio::test]
async fn metadata_has_tf_serving_shape() {
    let server = serve_one("tiny.onnx").await;
    let dims = |n: &str| json!([{"size": "-1", "name": ""}, {"size": n, "name": ""}]);
    let tensor = |name: &str, n: &str| {
        json!({
            "dtype": "DT_FLOAT",
            "tensor_shape": {"dim": dims(n), "unknown_rank": false},
            "name": name,
        })
    };
    let want = json!({
        "model_spec": {"name": "m", "signature_name": "", "version": "1"},
        "metadata": {"signature_def": {"signature_def": {"serving_default": {
            "inputs": {"x": tensor("x", "4")},
            "outputs": {"y": tensor("y", "2")},
            "method_name": "tensorflow/serving/predict",
            "defaults": {},
        }}}},
    });
    assert_eq!(server.get("/v1/models/m/metadata").await.ok(), want);
    assert_eq!(
        server.get("/v1/models/m/versions/1/metadata").await.ok(),
        want
    );
}

#[tokio::test]
async fn malformed_json_is_400_json_parse_error() {
    let server = serve_one("tiny.onnx").await;
    for body in [&b"{\"instances\": [[1, 2,"[..], b"", b"not json"] {
        let message = server
            .post_bytes(
                "/v1/models/m:predict",
                body.to_vec(),
                &[("content-type", "application/json")],
            )
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(message.starts_with("JSON Parse error"), "{message}");
    }
}

#[tokio::test]
async fn both_or_neither_of_instances_and_inputs_is_400() {
    let server = serve_one("tiny.onnx").await;
    let row = json!([[1.0, 2.0, 3.0, 4.0]]);
    for request in [
        json!({"instances": row, "inputs": row}),
        json!({"signature_name": ""}),
        json!({}),
    ] {
        let message = server
            .post_json("/v1/models/m:predict", &request)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(
            message.contains("instances") && message.contains("inputs"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_400_naming_the_input() {
    let server = serve_one("tiny.onnx").await;
    for request in [
        json!({"instances": [["one", 2.0, 3.0, 4.0]]}),
        json!({"inputs": [[1.0, 2.0, true, 4.0]]}),
    ] {
        let message = server
            .post_json("/v1/models/m:predict", &request)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(message.contains("`x`"), "{message}");
    }
}

#[tokio::test]
async fn a_tensor_of_the_wrong_shape_is_400_naming_the_input_and_expected_shape() {
    let server = serve_one("tiny.onnx").await;
    for request in [
        json!({"instances": [[1.0, 2.0, 3.0]]}),
        json!({"inputs": [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]}),
        json!({"inputs": [1.0, 2.0, 3.0, 4.0]}),
    ] {
        let message = server
            .post_json("/v1/models/m:predict", &request)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(
            message.contains("`x`") && message.contains("[-1, 4]"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn a_missing_input_is_400_naming_it() {
    let server = serve_one("add_mul.onnx").await;
    let a = json!([[1.0, 2.0, 3.0]]);
    for request in [
        json!({"inputs": {"a": a}}),
        json!({"instances": [{"a": a[0]}]}),
    ] {
        let message = server
            .post_json("/v1/models/m:predict", &request)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(message.contains("`b`"), "{message}");
    }
}

#[tokio::test]
async fn an_unknown_model_is_404_servable_not_found() {
    let server = serve_one("tiny.onnx").await;
    let message = server
        .post_json(
            "/v1/models/nope:predict",
            &json!({"inputs": [[1.0, 2.0, 3.0, 4.0]]}),
        )
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(message, "Servable not found for request: Latest(nope)");
    let message = server
        .get("/v1/models/nope/metadata")
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(message, "Servable not found for request: Latest(nope)");
    let message = server
        .get("/v1/models/nope")
        .await
        .error(StatusCode::NOT_FOUND);
    assert!(message.contains("nope"), "{message}");
}

#[tokio::test]
async fn a_malformed_url_is_400_malformed_request() {
    let server = serve_one("tiny.onnx").await;
    let request = json!({"inputs": [[1.0, 2.0, 3.0, 4.0]]});
    for path in [
        "/v1/models/m:explode",
        "/v1/models/m/version/1:predict",
        "/v1/models/m/versions/one:predict",
        "/v1/models/m/versions/1/extra:predict",
    ] {
        let message = server
            .post_json(path, &request)
            .await
            .error(StatusCode::BAD_REQUEST);
        assert!(
            message.starts_with("Malformed request"),
            "{path}: {message}"
        );
    }
    let message = server
        .get("/v1/models/m:predict")
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(message.starts_with("Malformed request"), "{message}");
}

#[tokio::test]
async fn listing_all_models_is_400() {
    let server = serve_one("tiny.onnx").await;
    let message = server
        .get("/v1/models")
        .await
        .error(StatusCode::BAD_REQUEST);
    assert!(!message.is_empty());
}

#[tokio::test]
async fn classify_and_regress_are_501() {
    let server = serve_one("tiny.onnx").await;
    let request = json!({"examples": [{"x": [1.0, 2.0, 3.0, 4.0]}]});
    for verb in ["classify", "regress"] {
        let message = server
            .post_json(&format!("/v1/models/m:{verb}"), &request)
            .await
            .error(StatusCode::NOT_IMPLEMENTED);
        assert!(message.contains(verb), "{message}");
    }
}
