//! What every endpoint shares: body limits, timeouts, unknown routes and graceful shutdown.

use std::time::{Duration, Instant};

use mofang_serve::ServeConfig;
use serde_json::json;

use super::common::{
    Lcg, RawHttp, Repo, Server, StatusCode, TestTensor, WAIT, assert_close, reference_outputs,
    test_model,
};

#[tokio::test]
async fn graceful_shutdown_lets_an_in_flight_request_finish_then_serve_returns() {
    let mut server = Server::start(Repo::new().with_model("m", 1, "tiny.onnx")).await;
    let x = TestTensor::random_f32(&[4, 4], &mut Lcg::new(51));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    let body = json!({"inputs": x.nested()}).to_string();

    // `Expect: 100-continue` makes the server say when its handler starts reading the body:
    // from then on the request is in flight.
    let mut conn = RawHttp::connect(server.addr()).await;
    let head = format!(
        "POST /v1/models/m:predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    );
    conn.send(head.as_bytes()).await;
    let interim = conn.read_head().await;
    assert!(interim.starts_with("HTTP/1.1 100"), "{interim:?}");

    server.begin_shutdown();
    // Once new connections are refused, the server has begun draining.
    let deadline = Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(server.addr()).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "the server still accepts connections"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    conn.send(body.as_bytes()).await;
    let (status, response) = conn.read_response().await;
    assert_eq!(status, 200, "{response}");
    assert_close(
        &response,
        &json!({"outputs": expected["y"].nested()}),
        1e-5,
        "response",
    );
    server.stopped().await;
}

#[tokio::test]
async fn a_request_slower_than_the_timeout_gets_504_json() {
    let config = ServeConfig {
        request_timeout: Duration::from_millis(300),
        ..ServeConfig::default()
    };
    let server = Server::start_with(Repo::new().with_model("m", 1, "tiny.onnx"), config).await;
    let mut conn = RawHttp::connect(server.addr()).await;
    // Promise 100 bytes, send 10.
    conn.send(
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n\
          Content-Length: 100\r\n\r\n{\"inputs\":",
    )
    .await;
    let (status, body) = conn.read_response().await;
    assert_eq!(status, 504, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413_json_on_every_endpoint() {
    let repo = Repo::new()
        .with_model("m", 1, "tiny.onnx")
        .with_model("img", 1, "image_nchw.onnx")
        .with_config(
            "img",
            "pipeline: {kind: image_classification, size: [32, 32], normalize: torch}\n",
        );
    let config = ServeConfig {
        max_body_bytes: 1024,
        ..ServeConfig::default()
    };
    let server = Server::start_with(repo, config).await;
    let big = TestTensor::random_f32(&[100, 4], &mut Lcg::new(52));
    let tf = json!({"inputs": big.nested()});
    let v2 = json!({"inputs": [{"name": "x", "shape": [100, 4], "datatype": "FP32", "data": big.flat()}]});
    assert!(
        tf.to_string().len() > 4096,
        "the test body must be well over the limit"
    );

    for (path, body) in [("/v1/models/m:predict", &tf), ("/v2/models/m/infer", &v2)] {
        let message = server
            .post_json(path, body)
            .await
            .error(StatusCode::PAYLOAD_TOO_LARGE);
        assert!(message.contains("1024"), "{path}: {message}");
    }
    let reply = server
        .post_image("/predict", Lcg::new(53).bytes(4096))
        .await;
    reply.error(StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.json()["success"], false, "{}", reply.text());

    // A body under the limit still works.
    let small = json!({"inputs": [[1.0, 2.0, 3.0, 4.0]]});
    server.post_json("/v1/models/m:predict", &small).await.ok();
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let server = Server::start(Repo::new().with_model("m", 1, "tiny.onnx")).await;
    for path in ["/nope", "/v2/models", "/v3/models/m"] {
        let message = server.get(path).await.error(StatusCode::NOT_FOUND);
        assert!(message.contains(path), "{path}: {message}");
    }
    for path in ["/v2/models/m/infer", "/predict"] {
        let message = server.get(path).await.error(StatusCode::METHOD_NOT_ALLOWED);
        assert!(message.contains("GET"), "{path}: {message}");
    }
}
