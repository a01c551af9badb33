//! The model repository behind the server: versions loaded and unloaded while serving, models
//! that fail to load, and the tract backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::common::{
    Lcg, Repo, Server, StatusCode, TestTensor, assert_close, check_close, eventually,
    example_model, reference_outputs, test_model,
};

const TOL: f64 = 1e-5;

/// A `tiny.onnx` request and the response ONNX Runtime says it should get.
async fn tiny_request(seed: u64) -> (Value, Value) {
    let x = TestTensor::random_f32(&[2, 4], &mut Lcg::new(seed));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    (
        json!({"inputs": x.nested()}),
        json!({"outputs": expected["y"].nested()}),
    )
}

/// An `add_mul.onnx` request and the response ONNX Runtime says it should get.
async fn add_mul_request(seed: u64) -> (Value, Value) {
    let mut rng = Lcg::new(seed);
    let a = TestTensor::random_f32(&[2, 3], &mut rng);
    let b = TestTensor::random_f32(&[2, 3], &mut rng);
    let expected = reference_outputs(&test_model("add_mul.onnx"), &[("a", &a), ("b", &b)]).await;
    (
        json!({"inputs": {"a": a.nested(), "b": b.nested()}}),
        json!({"outputs": {"sum": expected["sum"].nested(), "prod": expected["prod"].nested()}}),
    )
}

/// TF Serving's status of the only version of `model`: `(state, error_code, error_message)`.
async fn only_version_status(server: &Server, model: &str) -> (String, String, String) {
    let body = server.get(&format!("/v1/models/{model}")).await.ok();
    let list = body["model_version_status"]
        .as_array()
        .expect("a status list");
    assert_eq!(list.len(), 1, "{body}");
    let field = |v: &Value| {
        v.as_str()
            .unwrap_or_else(|| panic!("not a string in {body}"))
            .to_string()
    };
    (
        field(&list[0]["state"]),
        field(&list[0]["status"]["error_code"]),
        field(&list[0]["status"]["error_message"]),
    )
}

#[tokio::test]
async fn a_new_version_is_loaded_while_serving_and_becomes_latest() {
    let server = Server::start(Repo::new().with_model("m", 1, "tiny.onnx")).await;
    server.wait_for_versions("m", &[(1, "AVAILABLE")]).await;

    server.repo().add_version("m", 2, "add_mul.onnx");
    server.wait_for_versions("m", &[(2, "AVAILABLE")]).await;

    let metadata = server.get("/v1/models/m/metadata").await.ok();
    assert_eq!(metadata["model_spec"]["version"], "2", "{metadata}");
    let inputs =
        &metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"];
    assert!(
        inputs.get("a").is_some() && inputs.get("b").is_some(),
        "{metadata}"
    );
    let (request, want) = add_mul_request(31).await;
    let body = server
        .post_json("/v1/models/m:predict", &request)
        .await
        .ok();
    assert_close(&body, &want, TOL, "latest is version 2");
    let v2 = server.get("/v2/models/m").await.ok();
    assert_eq!(v2["versions"], json!(["2"]), "{v2}");
}

#[tokio::test]
async fn a_removed_version_is_unloaded_and_requests_for_it_get_404() {
    let repo = Repo::new()
        .with_model("m", 1, "tiny.onnx")
        .with_model("m", 2, "tiny.onnx")
        .with_config("m", "version_policy: all\n");
    let server = Server::start(repo).await;
    server
        .wait_for_versions("m", &[(1, "AVAILABLE"), (2, "AVAILABLE")])
        .await;

    server.repo().remove_version("m", 2);
    server.wait_for_versions("m", &[(1, "AVAILABLE")]).await;

    let (request, want) = tiny_request(32).await;
    let message = server
        .post_json("/v1/models/m/versions/2:predict", &request)
        .await
        .error(StatusCode::NOT_FOUND);
    assert_eq!(message, "Servable not found for request: Specific(m, 2)");
    server
        .get("/v1/models/m/versions/2")
        .await
        .error(StatusCode::NOT_FOUND);
    server
        .get("/v2/models/m/versions/2/ready")
        .await
        .error(StatusCode::NOT_FOUND);
    let body = server
        .post_json("/v1/models/m:predict", &request)
        .await
        .ok();
    assert_close(&body, &want, TOL, "latest after the removal");
    let metadata = server.get("/v1/models/m/metadata").await.ok();
    assert_eq!(metadata["model_spec"]["version"], "1", "{metadata}");
}

/// One request the clients of [`hammer`] repeat, and what makes it a success.
enum Probe {
    /// POST `request` as JSON; the response must be close to `want`.
    Predict {
        path: String,
        request: Value,
        want: Value,
    },
    /// GET `path`; the response must be 200.
    Get { path: String },
}

impl Probe {
    async fn run(&self, server: &Server) -> Result<(), String> {
        let reply = match self {
            Probe::Predict { path, request, .. } => server.post_json(path, request).await,
            Probe::Get { path } => server.get(path).await,
        };
        if reply.status != StatusCode::OK {
            return Err(format!("{}: {}", reply.status, reply.text()));
        }
        match self {
            Probe::Predict { want, .. } => check_close(&reply.json(), want, TOL, "response"),
            Probe::Get { .. } => Ok(()),
        }
    }
}

/// Runs `probe` from four concurrent clients until `done` is set and at least `at_least`
/// requests went out; returns how many were sent and every failure.
async fn hammer(
    server: &Arc<Server>,
    probe: Probe,
    done: &Arc<AtomicBool>,
    at_least: usize,
) -> (usize, Vec<String>) {
    const CLIENTS: usize = 4;
    let probe = Arc::new(probe);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        let (server, done, probe) = (Arc::clone(server), Arc::clone(done), Arc::clone(&probe));
        clients.spawn(async move {
            let (mut sent, mut failures) = (0, Vec::new());
            while !done.load(Ordering::SeqCst) || sent < at_least / CLIENTS {
                sent += 1;
                if let Err(e) = probe.run(&server).await {
                    failures.push(e);
                }
            }
            (sent, failures)
        });
    }
    let (mut sent, mut failures) = (0, Vec::new());
    while let Some(client) = clients.join_next().await {
        let (n, f) = client.expect("a client task does not panic");
        sent += n;
        failures.extend(f);
    }
    (sent, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_keep_succeeding_while_versions_come_and_go() {
    let repo = Repo::new()
        .with_model("m", 1, "tiny.onnx")
        .with_config("m", "version_policy: all\n");
    let server = Arc::new(Server::start(repo).await);
    let done = Arc::new(AtomicBool::new(false));
    let churn = {
        let (server, done) = (Arc::clone(&server), Arc::clone(&done));
        tokio::spawn(async move {
            let repo = server.repo();
            repo.add_version("m", 2, "tiny.onnx");
            server
                .wait_for_versions("m", &[(1, "AVAILABLE"), (2, "AVAILABLE")])
                .await;
            repo.add_version("m", 3, "tiny.onnx");
            server
                .wait_for_versions("m", &[(1, "AVAILABLE"), (2, "AVAILABLE"), (3, "AVAILABLE")])
                .await;
            repo.remove_version("m", 2);
            server
                .wait_for_versions("m", &[(1, "AVAILABLE"), (3, "AVAILABLE")])
                .await;
            // A changed file reloads version 3 in place; give the poller two rounds.
            repo.replace_model("m", 3, "tiny.onnx");
            tokio::time::sleep(Duration::from_millis(500)).await;
            repo.remove_version("m", 3);
            server.wait_for_versions("m", &[(1, "AVAILABLE")]).await;
            done.store(true, Ordering::SeqCst);
        })
    };

    let (request, want) = tiny_request(33).await;
    let path = "/v1/models/m:predict".to_string();
    let probe = Probe::Predict {
        path,
        request,
        want,
    };
    let (sent, failures) = hammer(&server, probe, &done, 200).await;

    churn.await.expect("the churn task does not panic");
    assert!(sent >= 200, "only {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:#?}",
        failures.len()
    );
}

/// Under the default policy (`latest: 1`) a new version replaces the old one. The old one
/// must keep answering until the new one is available, as TF Serving's availability-preserving
/// policy does. The new version is the EfficientNet example, which takes long enough to load
/// for the clients to notice a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_policy_keeps_serving_the_old_version_until_the_new_one_is_available() {
    let server = Arc::new(Server::start(Repo::new().with_model("m", 1, "tiny.onnx")).await);
    let done = Arc::new(AtomicBool::new(false));
    let swap = {
        let (server, done) = (Arc::clone(&server), Arc::clone(&done));
        tokio::spawn(async move {
            let big = example_model("efficientnet_lite0").join("1/model.onnx");
            server.repo().add_version_from("m", 2, &big);
            server.wait_for_versions("m", &[(2, "AVAILABLE")]).await;
            done.store(true, Ordering::SeqCst);
        })
    };

    let probe = Probe::Get {
        path: "/v1/models/m/metadata".to_string(),
    };
    let (sent, failures) = hammer(&server, probe, &done, 200).await;

    swap.await.expect("the swap task does not panic");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests for the latest version failed, the first: {:?}",
        failures.len(),
        failures.first()
    );
}

#[tokio::test]
async fn a_corrupt_new_version_leaves_the_previous_one_serving() {
    let server = Server::start(Repo::new().with_model("m", 1, "tiny.onnx")).await;
    server
        .repo()
        .add_version_bytes("m", 2, &Lcg::new(35).bytes(4096));
    let server = &server;
    eventually("version 2 fails to load", || async move {
        let states = server.version_states("m").await;
        match states.iter().any(|(v, s)| v == "2" && s == "END") {
            true => Ok(()),
            false => Err(format!("status {states:?}")),
        }
    })
    .await;

    assert_eq!(
        server.version_states("m").await,
        [
            ("1".to_string(), "AVAILABLE".to_string()),
            ("2".to_string(), "END".to_string())
        ]
    );
    let (request, want) = tiny_request(36).await;
    let body = server
        .post_json("/v1/models/m:predict", &request)
        .await
        .ok();
    assert_close(&body, &want, TOL, "latest falls back to version 1");
}

#[tokio::test]
async fn a_corrupt_replacement_file_leaves_the_previous_load_serving() {
    let server = Server::start(Repo::new().with_model("m", 1, "tiny.onnx")).await;
    let (request, want) = tiny_request(42).await;
    server
        .post_json("/v1/models/m:predict", &request)
        .await
        .ok();

    server
        .repo()
        .replace_model_bytes("m", 1, &Lcg::new(43).bytes(4096));
    server.let_the_poller_run().await;

    let body = server
        .post_json("/v1/models/m:predict", &request)
        .await
        .ok();
    assert_close(&body, &want, TOL, "the previous load");
    server.wait_for_versions("m", &[(1, "AVAILABLE")]).await;
}

#[tokio::test]
async fn an_edited_config_applies_to_the_loaded_versions() {
    let server = Server::start(Repo::new().with_model("m", 1, "tiny.onnx")).await;
    let x = TestTensor::random_f32(&[2, 4], &mut Lcg::new(44));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    let want = json!({"outputs": expected["y"].nested()});
    let body = server
        .post_json(
            "/v1/models/m:predict",
            &json!({"inputs": {"x": x.nested()}}),
        )
        .await
        .ok();
    assert_close(&body, &want, TOL, "before the edit");

    let config = "signatures: {serving_default: {inputs: {features: x}, outputs: {scores: y}}}\n";
    server.repo().write_config("m", config);
    let server = &server;
    eventually("the new signature is served", || async move {
        let metadata = server.get("/v1/models/m/metadata").await.ok();
        let inputs =
            &metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["inputs"];
        match inputs.get("features") {
            Some(_) => Ok(()),
            None => Err(metadata.to_string()),
        }
    })
    .await;

    let body = server
        .post_json(
            "/v1/models/m:predict",
            &json!({"inputs": {"features": x.nested()}}),
        )
        .await
        .ok();
    assert_close(&body, &want, TOL, "after the edit");
}

#[tokio::test]
async fn a_broken_config_edit_leaves_the_loaded_versions_serving() {
    let repo = Repo::new()
        .with_model("m", 1, "tiny.onnx")
        .with_config("m", "version_policy: all\n");
    let server = Server::start(repo).await;
    let (request, want) = tiny_request(45).await;
    server
        .post_json("/v1/models/m:predict", &request)
        .await
        .ok();

    server
        .repo()
        .write_config("m", "version_policy: all\nbakend: tract\n");
    server.let_the_poller_run().await;

    let body = server
        .post_json("/v1/models/m:predict", &request)
        .await
        .ok();
    assert_close(&body, &want, TOL, "the previous load");
}

#[tokio::test]
async fn a_corrupt_model_ends_with_its_error_and_other_models_keep_serving() {
    let repo = Repo::new().with_model("good", 1, "tiny.onnx");
    repo.add_version_bytes("bad", 1, &Lcg::new(37).bytes(4096));
    let server = Server::start(repo).await;

    let (state, code, message) = only_version_status(&server, "bad").await;
    assert_eq!(state, "END");
    assert_ne!(code, "OK");
    assert!(!message.is_empty());
    let (request, want) = tiny_request(38).await;
    server
        .post_json("/v1/models/bad:predict", &request)
        .await
        .error(StatusCode::NOT_FOUND);
    server
        .get("/v2/models/bad/ready")
        .await
        .error(StatusCode::NOT_FOUND);

    assert_eq!(only_version_status(&server, "good").await.0, "AVAILABLE");
    let body = server
        .post_json("/v1/models/good:predict", &request)
        .await
        .ok();
    assert_close(&body, &want, TOL, "the good model");
}

#[tokio::test]
async fn a_config_with_an_unknown_field_ends_the_versions_naming_the_field() {
    let repo = Repo::new()
        .with_model("good", 1, "tiny.onnx")
        .with_model("m", 1, "tiny.onnx")
        .with_config("m", "version_policy: all\nbakend: tract\n");
    let server = Server::start(repo).await;

    let (state, code, message) = only_version_status(&server, "m").await;
    assert_eq!(state, "END");
    assert_ne!(code, "OK");
    assert!(message.contains("bakend"), "{message}");

    let (request, want) = tiny_request(39).await;
    let body = server
        .post_json("/v1/models/good:predict", &request)
        .await
        .ok();
    assert_close(&body, &want, TOL, "the good model");
}

#[tokio::test]
async fn the_tract_backend_serves_the_numbers_onnx_runtime_computes() {
    let repo = Repo::new()
        .with_model("tiny", 1, "tiny.onnx")
        .with_config("tiny", "backend: tract\n")
        .with_model("add_mul", 1, "add_mul.onnx")
        .with_config("add_mul", "backend: tract\n");
    let server = Server::start(repo).await;

    for model in ["tiny", "add_mul"] {
        let metadata = server.get(&format!("/v2/models/{model}")).await.ok();
        assert_eq!(metadata["platform"], "tract_onnx", "{metadata}");
    }
    let (request, want) = tiny_request(40).await;
    let body = server
        .post_json("/v1/models/tiny:predict", &request)
        .await
        .ok();
    assert_close(&body, &want, 1e-4, "tiny on tract");
    let (request, want) = add_mul_request(41).await;
    let body = server
        .post_json("/v1/models/add_mul:predict", &request)
        .await
        .ok();
    assert_close(&body, &want, 1e-4, "add_mul on tract");
}
