//! Dynamic batching and the Prometheus metrics, as clients and scrapers see them: concurrent
//! predicts that share executions yet each get the answer for their own input, 429 from a full
//! queue, and what `/metrics` reports about requests, batches and model states.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use mofang_serve::ServeConfig;
use serde_json::json;
use tokio::task::JoinSet;

use super::common::{
    Lcg, Repo, Server, StatusCode, TestTensor, assert_close, eventually, reference_outputs,
    test_model,
};

/// Float outputs of the same runtime on the same inputs; the slack covers JSON printing.
const TOL: f64 = 1e-5;

/// The families `/metrics` serves, with their types.
const FAMILIES: [(&str, &str); 7] = [
    ("mofang_serve_requests_total", "counter"),
    ("mofang_serve_request_duration_seconds", "histogram"),
    ("mofang_batch_queue_duration_seconds", "histogram"),
    ("mofang_batch_compute_duration_seconds", "histogram"),
    ("mofang_batch_size_rows", "histogram"),
    ("mofang_batch_queue_depth_requests", "gauge"),
    ("mofang_repository_model_state", "gauge"),
];

// ---------------------------------------------------------------------------------------------
// The Prometheus text format (0.0.4), parsed
// ---------------------------------------------------------------------------------------------

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One scrape of a metrics endpoint.
#[derive(Debug)]
struct Scrape {
    text: String,
    /// Family name → type, from the `# TYPE` lines.
    types: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut types = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("a TYPE line names a type: {line:?}"));
                types.insert(name.to_string(), kind.to_string());
            } else if !line.starts_with('#') {
                samples.push(parse_sample(line));
            }
        }
        Scrape {
            text,
            types,
            samples,
        }
    }

    /// The value of the sample `name` whose labels are exactly `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// Like [`Scrape::get`], failing the test when the sample is missing.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{labels:?} in:\n{}", self.text))
    }

    /// The sample names and label sets, without the values.
    fn series(&self) -> BTreeSet<(String, Vec<(String, String)>)> {
        self.samples
            .iter()
            .map(|s| {
                let labels = s.labels.clone().into_iter().collect();
                (s.name.clone(), labels)
            })
            .collect()
    }
}

fn parse_sample(line: &str) -> Sample {
    let (series, value) = line
        .rsplit_once(' ')
        .unwrap_or_else(|| panic!("a sample line ends in a value: {line:?}"));
    let value: f64 = value
        .parse()
        .unwrap_or_else(|e| panic!("not a number ({e}) in {line:?}"));
    let Some((name, rest)) = series.split_once('{') else {
        return Sample {
            name: series.to_string(),
            labels: BTreeMap::new(),
            value,
        };
    };
    let body = rest
        .strip_suffix('}')
        .unwrap_or_else(|| panic!("labels end in `}}`: {line:?}"));
    let mut labels = BTreeMap::new();
    let mut chars = body.chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "a label value is quoted: {line:?}");
        let mut value = String::new();
        loop {
            match chars.next() {
                Some('"') => break,
                Some('\\') => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("a dangling escape in {line:?}"),
                },
                Some(c) => value.push(c),
                None => panic!("an unterminated label value in {line:?}"),
            }
        }
        labels.insert(key, value);
        match chars.next() {
            Some(',') => {}
            None => break,
            Some(c) => panic!("unexpected {c:?} after a label in {line:?}"),
        }
    }
    Sample {
        name: name.to_string(),
        labels,
        value,
    }
}

/// The family a sample belongs to (`x_bucket`, `x_sum`, `x_count` belong to histogram `x`).
fn family_of<'a>(scrape: &Scrape, sample: &'a str) -> Option<&'a str> {
    if scrape.types.contains_key(sample) {
        return Some(sample);
    }
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| sample.strip_suffix(suffix))
        .find(|base| scrape.types.get(*base).map(String::as_str) == Some("histogram"))
}

/// GETs `path`, checks it is Prometheus text, and parses it.
async fn scrape_path(server: &Server, path: &str) -> Scrape {
    let reply = server.get(path).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.text());
    let content_type = reply.header("content-type").unwrap_or_default();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{path} content-type: {content_type:?}"
    );
    Scrape::parse(reply.text())
}

async fn scrape(server: &Server) -> Scrape {
    scrape_path(server, "/metrics").await
}

/// The `model` and `version` labels of the batch families.
fn of(model: &'static str) -> [(&'static str, &'static str); 2] {
    [("model", model), ("version", "1")]
}

/// `mofang_serve_requests_total` for these labels; 0 when the series does not exist.
fn request_count(m: &Scrape, model: &str, version: &str, protocol: &str, outcome: &str) -> f64 {
    let labels = [
        ("model", model),
        ("version", version),
        ("protocol", protocol),
        ("outcome", outcome),
    ];
    m.get("mofang_serve_requests_total", &labels).unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// Batching over HTTP
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_predicts_share_executions_and_each_gets_the_answer_for_its_own_input() {
    const CLIENTS: usize = 32;
    // A long delay makes batching certain: the first request of a batch waits up to 200 ms
    // for 7 more to arrive.
    let config = "batching:\n  max_batch_size: 8\n  max_queue_delay_micros: 200000\n";
    let repo = Repo::new()
        .with_model("m", 1, "tiny.onnx")
        .with_config("m", config);
    let server = Arc::new(Server::start(repo).await);
    let x = TestTensor::random_f32(&[CLIENTS, 4], &mut Lcg::new(71));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    let want = expected["y"].rows();

    let mut clients = JoinSet::new();
    for (i, row) in x.rows().into_iter().enumerate() {
        let server = Arc::clone(&server);
        clients.spawn(async move {
            let request = json!({"instances": [row]});
            (i, server.post_json("/v1/models/m:predict", &request).await)
        });
    }
    let mut answered = BTreeSet::new();
    while let Some(done) = clients.join_next().await {
        let (i, reply) = done.expect("a client task does not panic");
        let body = reply.ok();
        let own = json!({"predictions": [want[i]]});
        assert_close(&body, &own, TOL, &format!("client {i}"));
        answered.insert(i);
    }
    assert_eq!(answered.len(), CLIENTS);

    let m = scrape(&server).await;
    let executions = m.value("mofang_batch_size_rows_count", &of("m"));
    let rows = m.value("mofang_batch_size_rows_sum", &of("m"));
    assert_eq!(rows, CLIENTS as f64, "every row ran once");
    assert!(
        rows / executions > 1.0,
        "{rows} rows in {executions} executions: no batching happened"
    );
    let at_most_8 = m.value(
        "mofang_batch_size_rows_bucket",
        &[("model", "m"), ("version", "1"), ("le", "8")],
    );
    assert_eq!(at_most_8, executions, "no execution exceeds max_batch_size");
    assert_eq!(
        request_count(&m, "m", "1", "tfs_rest", "ok"),
        CLIENTS as f64,
        "{}",
        m.text
    );
    assert_eq!(
        m.value("mofang_batch_queue_duration_seconds_count", &of("m")),
        CLIENTS as f64,
        "one queue wait per request"
    );
    assert_eq!(
        m.value("mofang_batch_compute_duration_seconds_count", &of("m")),
        executions,
        "one compute time per execution"
    );
    assert_eq!(m.value("mofang_batch_queue_depth_requests", &of("m")), 0.0);
}

/// A batch of `levels.len()` images for `resnet50.onnx`, each one grey level: cheap as JSON,
/// and a different answer for each level.
fn grey_images(levels: &[f32]) -> TestTensor {
    const PIXELS: usize = 3 * 224 * 224;
    let data = levels
        .iter()
        .flat_map(|level| std::iter::repeat_n(json!(level), PIXELS))
        .collect();
    TestTensor::new("float32", &[levels.len(), 3, 224, 224], data)
}

fn predict_body(images: &TestTensor) -> Vec<u8> {
    serde_json::to_vec(&json!({"instances": images.rows()})).expect("serialize a request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_with_a_json_error_and_the_others_get_their_answers() {
    const CLIENTS: usize = 20;
    const JSON: [(&str, &str); 1] = [("content-type", "application/json")];
    // One execution at a time, one request allowed to wait, no waiting for batches to fill.
    let config = "instances: 1\nbatching:\n  max_batch_size: 8\n  max_queue_delay_micros: 0\n  \
                  max_queue_size: 1\n";
    let repo = Repo::new()
        .with_model("slow", 1, "resnet50.onnx")
        .with_config("slow", config);
    let server = Arc::new(Server::start(repo).await);

    // Level 0.75 for the request that keeps the worker busy, the others for the clients.
    let client_levels = [-1.0, -0.5, 0.0, 0.5, 1.0];
    let blocker_level = 0.75;
    let mut all_levels = client_levels.to_vec();
    all_levels.push(blocker_level);
    let expected = reference_outputs(
        &test_model("resnet50.onnx"),
        &[("data", &grey_images(&all_levels))],
    )
    .await;
    let want = expected["softmax"].rows();
    let blocker_want = json!({"predictions": vec![want[client_levels.len()].clone(); 8]});
    let bodies: Vec<Vec<u8>> = client_levels
        .iter()
        .map(|level| predict_body(&grey_images(&[*level])))
        .collect();

    // 8 images: the longest execution max_batch_size allows.
    let blocker = {
        let server = Arc::clone(&server);
        let body = predict_body(&grey_images(&[blocker_level; 8]));
        tokio::spawn(async move {
            server
                .post_bytes("/v1/models/slow:predict", body, &JSON)
                .await
        })
    };
    let s = &*server;
    eventually("the blocking request starts to run", || async move {
        let m = scrape(s).await;
        match m.get("mofang_batch_queue_duration_seconds_count", &of("slow")) {
            Some(n) if n >= 1.0 => Ok(()),
            other => Err(format!("queue waits recorded: {other:?}")),
        }
    })
    .await;

    let mut clients = JoinSet::new();
    for i in 0..CLIENTS {
        let server = Arc::clone(&server);
        let body = bodies[i % client_levels.len()].clone();
        clients.spawn(async move {
            (
                i,
                server
                    .post_bytes("/v1/models/slow:predict", body, &JSON)
                    .await,
            )
        });
    }
    let mut refused = 0;
    while let Some(done) = clients.join_next().await {
        let (i, reply) = done.expect("a client task does not panic");
        if reply.status == StatusCode::TOO_MANY_REQUESTS {
            let message = reply.error(StatusCode::TOO_MANY_REQUESTS);
            assert!(message.contains("full"), "client {i}: {message}");
            refused += 1;
        } else {
            let body = reply.ok();
            let own = json!({"predictions": [want[i % client_levels.len()]]});
            assert_close(&body, &own, 1e-4, &format!("client {i}"));
        }
    }
    let blocker = blocker.await.expect("the blocking request does not panic");
    assert_close(&blocker.ok(), &blocker_want, 1e-4, "the blocking request");

    assert!(
        refused >= 1,
        "{CLIENTS} clients arrived while an execution of 8 images ran and one request could \
         wait, yet none was refused"
    );
    let m = scrape(&server).await;
    assert_eq!(
        request_count(&m, "slow", "1", "tfs_rest", "queue_full"),
        refused as f64,
        "{}",
        m.text
    );
    assert_eq!(
        request_count(&m, "slow", "1", "tfs_rest", "ok"),
        (CLIENTS + 1 - refused) as f64,
        "{}",
        m.text
    );
}

/// `x` of shape `[0, 4]`: an empty batch, which the model's `[batch, 4]` input admits and
/// KServe V2 can express.
#[tokio::test]
async fn an_empty_batch_over_kserve_leaves_the_model_serving() {
    let serve = ServeConfig {
        request_timeout: Duration::from_secs(5),
        ..ServeConfig::default()
    };
    let config = "batching:\n  max_batch_size: 8\n  max_queue_delay_micros: 1000\n  \
                  allowed_batch_sizes: [4, 8]\n";
    let repo = Repo::new()
        .with_model("m", 1, "tiny.onnx")
        .with_config("m", config);
    let server = Server::start_with(repo, serve).await;

    let empty = json!({"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP32", "data": []}]});
    let x = TestTensor::random_f32(&[2, 4], &mut Lcg::new(72));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;

    let empty_reply = server.post_json("/v2/models/m/infer", &empty).await;
    let after = server
        .post_json("/v1/models/m:predict", &json!({"inputs": x.nested()}))
        .await;

    assert!(
        empty_reply.status == StatusCode::OK || empty_reply.status == StatusCode::BAD_REQUEST,
        "an empty batch is answered or refused as invalid, got {}: {}; the request after it got {}: {}",
        empty_reply.status,
        empty_reply.text(),
        after.status,
        after.text()
    );
    assert_eq!(
        after.status,
        StatusCode::OK,
        "a request after the empty batch: {}",
        after.text()
    );
    assert_close(
        &after.json(),
        &json!({"outputs": expected["y"].nested()}),
        TOL,
        "after the empty batch",
    );
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn both_metrics_paths_serve_the_same_families_as_prometheus_text() {
    let server = Server::start(Repo::new().with_model("m", 1, "tiny.onnx")).await;
    // One request, so that every family has samples.
    let x = TestTensor::random_f32(&[1, 4], &mut Lcg::new(73));
    server
        .post_json("/v1/models/m:predict", &json!({"instances": x.rows()}))
        .await
        .ok();

    let metrics = scrape_path(&server, "/metrics").await;
    let monitoring = scrape_path(&server, "/monitoring/prometheus/metrics").await;

    assert_eq!(metrics.types, monitoring.types, "the same families");
    assert_eq!(metrics.series(), monitoring.series(), "the same series");
    for (name, kind) in FAMILIES {
        assert_eq!(
            metrics.types.get(name).map(String::as_str),
            Some(kind),
            "family {name}:\n{}",
            metrics.text
        );
        assert!(
            metrics
                .samples
                .iter()
                .any(|s| family_of(&metrics, &s.name) == Some(name)),
            "family {name} has no samples:\n{}",
            metrics.text
        );
    }
    for sample in &metrics.samples {
        assert!(
            family_of(&metrics, &sample.name).is_some(),
            "sample {} has no # TYPE line",
            sample.name
        );
        assert!(sample.name.starts_with("mofang_"), "{}", sample.name);
    }
    for name in metrics.types.keys() {
        assert!(
            metrics.text.contains(&format!("# HELP {name} ")),
            "family {name} has no # HELP line"
        );
    }
    // Histograms are cumulative and end with +Inf = _count.
    let buckets: Vec<f64> = metrics
        .samples
        .iter()
        .filter(|s| {
            s.name == "mofang_batch_queue_duration_seconds_bucket"
                && s.labels.get("model").map(String::as_str) == Some("m")
        })
        .map(|s| s.value)
        .collect();
    assert!(
        buckets.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {buckets:?}"
    );
    assert_eq!(
        metrics.value(
            "mofang_batch_queue_duration_seconds_bucket",
            &[("model", "m"), ("version", "1"), ("le", "+Inf")]
        ),
        metrics.value("mofang_batch_queue_duration_seconds_count", &of("m"))
    );
}

#[tokio::test]
async fn model_state_metrics_show_a_loaded_version_and_a_failed_one() {
    let repo = Repo::new().with_model("good", 1, "tiny.onnx");
    repo.add_version_bytes("bad", 1, &Lcg::new(74).bytes(4096));
    let server = Server::start(repo).await;
    server.wait_for_versions("good", &[(1, "AVAILABLE")]).await;
    server.wait_for_versions("bad", &[(1, "END")]).await;

    let state = |m: &Scrape, model: &str, state: &str| {
        m.get(
            "mofang_repository_model_state",
            &[("model", model), ("version", "1"), ("state", state)],
        )
    };
    let s = &server;
    eventually("the metrics show both versions' states", || async move {
        let m = scrape(s).await;
        match (state(&m, "good", "available"), state(&m, "bad", "end")) {
            (Some(1.0), Some(1.0)) => Ok(()),
            other => Err(format!("(good available, bad end) = {other:?}")),
        }
    })
    .await;

    let m = scrape(&server).await;
    for (model, current) in [("good", "available"), ("bad", "end")] {
        for s in ["loading", "available", "end"] {
            let want = if s == current { 1.0 } else { 0.0 };
            assert_eq!(
                state(&m, model, s),
                Some(want),
                "{model} version 1, state {s}:\n{}",
                m.text
            );
        }
    }
}

#[tokio::test]
async fn requests_are_counted_by_model_version_protocol_and_outcome() {
    let server = Server::start(Repo::new().with_model("m", 1, "tiny.onnx")).await;
    let before = scrape(&server).await;
    let count = |m: &Scrape, name: &str| m.get(name, &of("m")).unwrap_or(0.0);

    let x = TestTensor::random_f32(&[2, 4], &mut Lcg::new(75));
    let expected = reference_outputs(&test_model("tiny.onnx"), &[("x", &x)]).await;
    let body = server
        .post_json("/v1/models/m:predict", &json!({"instances": x.rows()}))
        .await
        .ok();
    assert_close(
        &body,
        &json!({"predictions": expected["y"].nested()}),
        TOL,
        "ok",
    );
    // Rows of 3 values for an input of 4.
    server
        .post_json(
            "/v1/models/m:predict",
            &json!({"instances": [[1.0, 2.0, 3.0]]}),
        )
        .await
        .error(StatusCode::BAD_REQUEST);
    server
        .post_json("/v1/models/nosuch:predict", &json!({"instances": x.rows()}))
        .await
        .error(StatusCode::NOT_FOUND);
    let v2 =
        json!({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32", "data": x.flat()}]});
    server
        .post_json("/v2/models/nosuch/infer", &v2)
        .await
        .error(StatusCode::NOT_FOUND);

    let m = scrape(&server).await;
    let counted = [
        ("m", "1", "tfs_rest", "ok"),
        ("m", "1", "tfs_rest", "invalid"),
        ("_unknown", "", "tfs_rest", "not_found"),
        ("_unknown", "", "v2_rest", "not_found"),
    ];
    for (model, version, protocol, outcome) in counted {
        assert_eq!(
            request_count(&m, model, version, protocol, outcome),
            1.0,
            "{model} {version:?} {protocol} {outcome}:\n{}",
            m.text
        );
    }
    let total: f64 = m
        .samples
        .iter()
        .filter(|s| s.name == "mofang_serve_requests_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 4.0, "no other request was counted:\n{}", m.text);
    assert!(
        !m.text.contains("nosuch"),
        "an unknown model name never becomes a label value:\n{}",
        m.text
    );
    assert_eq!(
        m.value(
            "mofang_serve_request_duration_seconds_count",
            &[("model", "m"), ("protocol", "tfs_rest")]
        ),
        2.0,
        "one latency per request to m"
    );

    // Only the valid request reached the queue and ran.
    for name in [
        "mofang_batch_queue_duration_seconds_count",
        "mofang_batch_compute_duration_seconds_count",
        "mofang_batch_size_rows_count",
    ] {
        assert_eq!(
            count(&m, name) - count(&before, name),
            1.0,
            "{name}:\n{}",
            m.text
        );
    }
    assert_eq!(
        count(&m, "mofang_batch_size_rows_sum") - count(&before, "mofang_batch_size_rows_sum"),
        2.0,
        "the request's 2 rows"
    );
}
