//! Compatibility with clients we did not write: Triton's `tritonclient` (HTTP and gRPC) against
//! the KServe V2 endpoints and TF Serving's `tensorflow-serving-api` (requests built with
//! tensorflow's `make_tensor_proto`) against the TF Serving gRPC API, driving the real `mofang`
//! binary. The clients run in `.venv-compat` (made by `scripts/setup.sh --with-compat`) through
//! the scripts in `tests/compat/`, which only report what the client saw; every expected number
//! comes from onnxruntime's Python API (`scripts/ort_reference.py`) on the same model file.
//!
//! Needs `. scripts/env.sh` (MOFANG_PYTHON, MOFANG_COMPAT_PYTHON, MOFANG_TEST_MODELS,
//! ORT_DYLIB_PATH).

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

const MOFANG: &str = env!("CARGO_BIN_EXE_mofang");
const TRITON_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/triton_client.py");
const TFSERVING_CLIENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/compat/tfserving_client.py"
);
const ORT_REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/ort_reference.py"
);

// ---------------------------------------------------------------- tritonclient

#[test]
fn tritonclient_http_and_grpc_infer_match_onnxruntime() {
    let server = Server::start(&Repository::standard());
    let models = models_dir();
    let cases = [
        ("add_mul", add_mul_inputs(7)),
        ("dtypes", dtypes_inputs()),
        ("strings", strings_inputs()),
    ];
    let mut plan = Vec::new();
    for (model, inputs) in &cases {
        for protocol in ["http", "grpc"] {
            for binary in [true, false] {
                plan.push(
                    json!({"call": "infer", "protocol": protocol, "model": model,
                                 "inputs": inputs, "binary": binary}),
                );
            }
        }
    }
    let results = triton(&server, &plan);
    for (call, result) in plan.iter().zip(&results) {
        let model = call["model"].as_str().expect("model name");
        let expected = reference(&models.join(format!("{model}.onnx")), &call["inputs"]);
        let context = format!("{call}");
        assert_eq!(result["model_name"], json!(model), "{context}: {result}");
        assert_outputs_match(&result["outputs"], &expected, &context);
    }
}

#[test]
fn tritonclient_requested_outputs_versions_and_errors() {
    let server = Server::start(&Repository::standard());
    let inputs = add_mul_inputs(11);
    let mut plan = Vec::new();
    for protocol in ["http", "grpc"] {
        plan.push(
            json!({"call": "infer", "protocol": protocol, "model": "add_mul",
                         "version": "1", "inputs": inputs, "outputs": ["prod"]}),
        );
        plan.push(
            json!({"call": "infer", "protocol": protocol, "model": "add_mul",
                         "inputs": inputs, "outputs": ["sum"], "binary_outputs": false}),
        );
        plan.push(
            json!({"call": "infer", "protocol": protocol, "model": "no_such_model",
                         "inputs": inputs}),
        );
        plan.push(
            json!({"call": "infer", "protocol": protocol, "model": "add_mul",
                         "inputs": {"a": inputs["a"]}}),
        );
    }
    let results = triton(&server, &plan);
    let expected = reference(&models_dir().join("add_mul.onnx"), &inputs);
    for (i, protocol) in ["http", "grpc"].into_iter().enumerate() {
        let r = &results[i * 4..i * 4 + 4];
        let only = |name: &str| json!({name: expected[name].clone()});
        assert_outputs_match(&r[0]["outputs"], &only("prod"), protocol);
        assert_eq!(r[0]["model_version"], json!("1"), "{protocol}: {}", r[0]);
        assert_outputs_match(&r[1]["outputs"], &only("sum"), protocol);
        let missing_model = r[2]["error"]["message"].as_str().unwrap_or_default();
        assert!(
            missing_model.contains("no_such_model"),
            "{protocol}: an unknown model's error names it: {}",
            r[2]
        );
        let missing_input = r[3]["error"]["message"].as_str().unwrap_or_default();
        assert!(
            missing_input.contains('b'),
            "{protocol}: a missing input is an error naming it: {}",
            r[3]
        );
    }
}

#[test]
fn tritonclient_health_and_metadata() {
    let server = Server::start(&Repository::standard());
    let mut plan = Vec::new();
    for protocol in ["http", "grpc"] {
        plan.extend([
            json!({"call": "server_live", "protocol": protocol}),
            json!({"call": "server_ready", "protocol": protocol}),
            json!({"call": "model_ready", "protocol": protocol, "model": "add_mul"}),
            json!({"call": "model_ready", "protocol": protocol, "model": "add_mul", "version": "1"}),
            json!({"call": "model_metadata", "protocol": protocol, "model": "add_mul"}),
            json!({"call": "server_metadata", "protocol": protocol}),
        ]);
    }
    let results = triton(&server, &plan);
    let sent = add_mul_inputs(1);
    let expected = reference(&models_dir().join("add_mul.onnx"), &sent);
    for (i, protocol) in ["http", "grpc"].into_iter().enumerate() {
        let r = &results[i * 6..i * 6 + 6];
        for (what, result) in [
            "server live",
            "server ready",
            "model ready",
            "version ready",
        ]
        .iter()
        .zip(r)
        {
            assert_eq!(result["value"], json!(true), "{protocol} {what}: {result}");
        }
        let metadata = &r[4]["value"];
        assert_eq!(metadata["name"], json!("add_mul"), "{protocol}: {metadata}");
        assert_eq!(
            tensor_names(&metadata["inputs"]),
            sorted_keys(&sent),
            "{protocol}: {metadata}"
        );
        assert_eq!(
            tensor_names(&metadata["outputs"]),
            sorted_keys(&expected),
            "{protocol}: {metadata}"
        );
        assert!(
            r[5]["value"]["name"]
                .as_str()
                .is_some_and(|n| !n.is_empty()),
            "{protocol}: server metadata has a name: {}",
            r[5]
        );
    }
}

// ---------------------------------------------------------------- tensorflow-serving-api

#[test]
fn tensorflow_serving_api_predict_matches_onnxruntime() {
    let server = Server::start(&Repository::standard());
    let models = models_dir();
    let mut plan = Vec::new();
    for (model, inputs) in [
        ("add_mul", add_mul_inputs(3)),
        ("dtypes", dtypes_inputs()),
        ("strings", strings_inputs()),
    ] {
        for encoding in ["make_tensor_proto", "typed"] {
            plan.push(
                json!({"call": "predict", "model": model, "encoding": encoding,
                             "inputs": inputs}),
            );
        }
    }
    let results = tfserving(&server, &plan);
    for (call, result) in plan.iter().zip(&results) {
        let model = call["model"].as_str().expect("model name");
        let expected = reference(&models.join(format!("{model}.onnx")), &call["inputs"]);
        let context = format!("{call}");
        assert_outputs_match(&result["outputs"], &expected, &context);
        assert_eq!(result["model_spec"]["name"], json!(model), "{context}");
        assert_eq!(
            result["model_spec"]["signature_name"],
            json!("serving_default"),
            "{context}: {result}"
        );
        for (name, output) in result["outputs"].as_object().expect("outputs") {
            assert_ne!(
                output["field"],
                json!("tensor_content"),
                "{context}: output {name} must come in a typed *_val field, as TF Serving sends it"
            );
        }
    }
}

#[test]
fn tensorflow_serving_api_versions_labels_filter_metadata_status_and_errors() {
    let repository = Repository::standard();
    repository.add_version("add_mul", 2, "add_mul.onnx");
    repository.write_config(
        "add_mul",
        "version_policy: all\nversion_labels: {stable: 1, canary: 2}\n",
    );
    let server = Server::start(&repository);
    let inputs = add_mul_inputs(5);
    let plan = vec![
        json!({"call": "predict", "model": "add_mul", "version": 1, "inputs": inputs}),
        json!({"call": "predict", "model": "add_mul", "label": "canary", "inputs": inputs}),
        json!({"call": "predict", "model": "add_mul", "inputs": inputs, "output_filter": ["prod"]}),
        json!({"call": "predict", "model": "nope", "inputs": inputs}),
        json!({"call": "predict", "model": "add_mul", "label": "nightly", "inputs": inputs}),
        json!({"call": "predict", "model": "add_mul", "inputs": inputs, "output_filter": ["nope"]}),
        json!({"call": "predict", "model": "add_mul",
               "inputs": {"a": inputs["a"], "b": {"dtype": "float32", "shape": [1, 2], "data": [1.0, 2.0]}}}),
        json!({"call": "metadata", "model": "add_mul"}),
        json!({"call": "status", "model": "add_mul"}),
    ];
    let r = tfserving(&server, &plan);
    let expected = reference(&models_dir().join("add_mul.onnx"), &inputs);
    assert_outputs_match(&r[0]["outputs"], &expected, "version 1");
    assert_eq!(r[0]["model_spec"]["version"], json!("1"), "{}", r[0]);
    assert_outputs_match(&r[1]["outputs"], &expected, "label canary");
    assert_eq!(r[1]["model_spec"]["version"], json!("2"), "{}", r[1]);
    assert_outputs_match(
        &r[2]["outputs"],
        &json!({"prod": expected["prod"].clone()}),
        "output_filter",
    );
    assert_eq!(r[3]["error"]["code"], json!("NOT_FOUND"), "{}", r[3]);
    assert!(
        r[3]["error"]["details"]
            .as_str()
            .is_some_and(|d| d.contains("nope")),
        "{}",
        r[3]
    );
    assert_eq!(r[4]["error"]["code"], json!("INVALID_ARGUMENT"), "{}", r[4]);
    assert!(
        r[4]["error"]["details"]
            .as_str()
            .is_some_and(|d| d.contains("nightly")),
        "{}",
        r[4]
    );
    assert_eq!(r[5]["error"]["code"], json!("INVALID_ARGUMENT"), "{}", r[5]);
    assert_eq!(r[6]["error"]["code"], json!("INVALID_ARGUMENT"), "{}", r[6]);

    let signature = &r[7]["metadata"]["signature_def"]["signature_def"]["serving_default"];
    assert_eq!(
        sorted_keys(&signature["inputs"]),
        sorted_keys(&inputs),
        "metadata: {}",
        r[7]
    );
    assert_eq!(
        sorted_keys(&signature["outputs"]),
        sorted_keys(&expected),
        "metadata: {}",
        r[7]
    );
    let mut versions: Vec<(String, String)> = r[8]["model_version_status"]
        .as_array()
        .unwrap_or_else(|| panic!("status lists versions: {}", r[8]))
        .iter()
        .map(|v| {
            (
                v["version"].as_str().unwrap_or_default().to_string(),
                v["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    versions.sort();
    assert_eq!(
        versions,
        [
            ("1".to_string(), "AVAILABLE".to_string()),
            ("2".to_string(), "AVAILABLE".to_string())
        ]
    );
}

/// The BERT-BiLSTM-CRF-NER article's TF Serving client, unchanged: it tokenizes itself, sends
/// int32 `[1, 150]` tensors plus a scalar `Dropout` to signature `ner_def`, reads the flat
/// `int_val`/`float_val` outputs, reshapes them and runs Viterbi itself. Its entities must be
/// the ones the server-side pipeline (`POST /v2/models/ner/entities`) finds on its own.
#[test]
fn the_ner_articles_tf_serving_client_works_and_agrees_with_the_entities_endpoint() {
    let repository = Repository::standard();
    repository.add_version("ner", 1, "ner.onnx");
    for file in ["vocab.txt", "tags.txt", "trans.json"] {
        let source = models_dir().join("ner").join(file);
        std::fs::copy(&source, repository.dir.path().join("ner").join(file))
            .unwrap_or_else(|e| panic!("copy {}: {e} (run scripts/setup.sh)", source.display()));
    }
    repository.write_config("ner", NER_CONFIG);
    let server = Server::start(&repository);
    let tags: Vec<String> = std::fs::read_to_string(models_dir().join("ner/tags.txt"))
        .expect("read tags.txt")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let vocab = repository.dir.path().join("ner/vocab.txt");
    let plan = [
        json!({"call": "ner_article", "model": "ner", "vocab": vocab, "tags": tags,
                       "text": NER_SENTENCE, "max_seq_length": 150}),
    ];
    let article = &tfserving(&server, &plan)[0];
    assert!(article.get("error").is_none(), "{article}");
    assert_eq!(
        article["logits_shape"],
        json!([1, 150, tags.len() + 1]),
        "{article}"
    );
    for (output, field) in [
        ("lengths", "int_val"),
        ("logits", "float_val"),
        ("trans", "float_val"),
    ] {
        assert_eq!(article["fields"][output], json!(field), "{article}");
    }

    let endpoint: Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(async {
            reqwest::Client::new()
                .post(format!("http://{}/v2/models/ner/entities", server.rest))
                .json(&json!({"text": NER_SENTENCE}))
                .send()
                .await
                .expect("POST /v2/models/ner/entities")
                .json()
                .await
                .expect("a JSON reply")
        });
    let words_and_types = |list: &Value| -> Vec<(String, String)> {
        list.as_array()
            .unwrap_or_else(|| panic!("a list of entities: {list}"))
            .iter()
            .map(|e| {
                (
                    e["word"].as_str().unwrap_or_default().to_string(),
                    e["type"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let from_client = words_and_types(&article["entities"]);
    assert!(
        !from_client.is_empty(),
        "the model tags entities: {article}"
    );
    assert_eq!(
        from_client,
        words_and_types(&endpoint["entities"]),
        "client-side decode {article}\nserver-side pipeline {endpoint}"
    );
    for entity in endpoint["entities"].as_array().into_iter().flatten() {
        let (start, end) = (
            entity["start"].as_u64().expect("start") as usize,
            entity["end"].as_u64().expect("end") as usize,
        );
        let span: String = NER_SENTENCE.chars().skip(start).take(end - start).collect();
        assert_eq!(json!(span), entity["word"], "character offsets of {entity}");
    }
}

/// The article's sentence.
const NER_SENTENCE: &str =
    "重庆市南川中学副校长张竞说,寒假放假前高三年级还有10%左右的内容没复习完,";

/// The replaced deployment's `ner_def` signature (with the `Dropout` input the ONNX export no
/// longer has) and the server-side pipeline, as docs/pipelines.md shows.
const NER_CONFIG: &str = "\
pipeline:
  kind: token_classification
  max_seq_length: 150
  tags_file: tags.txt
  tag_offset: 1
  transitions: {output: trans}
  padded_start_state: true
signatures:
  ner_def:
    inputs:
      input_ids: input_ids
      input_mask: input_mask
      segment_ids: segment_ids
      Dropout: {ignore: true, dtype: float32, shape: []}
    outputs: {lengths: lengths, logits: logits, trans: trans}
";

// ---------------------------------------------------------------- comparing

/// Every expected output is present with the same dtype, shape and values (floats within a
/// relative 1e-5: the same onnxruntime build may still pick other kernels for other batch sizes).
fn assert_outputs_match(actual: &Value, expected: &Value, context: &str) {
    let actual = actual
        .as_object()
        .unwrap_or_else(|| panic!("{context}: no outputs in the reply: {actual}"));
    let expected = expected.as_object().expect("reference outputs");
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{context}: output names"
    );
    for (name, want) in expected {
        let got = &actual[name];
        assert_eq!(got["dtype"], want["dtype"], "{context}: dtype of {name}");
        assert_eq!(got["shape"], want["shape"], "{context}: shape of {name}");
        let (got, want) = (
            got["data"].as_array().expect("data"),
            want["data"].as_array().expect("data"),
        );
        assert_eq!(got.len(), want.len(), "{context}: {name} length");
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            match (g.as_f64(), w.as_f64()) {
                (Some(g), Some(w)) => assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{context}: {name}[{i}] = {g}, onnxruntime says {w}"
                ),
                _ => assert_eq!(g, w, "{context}: {name}[{i}]"),
            }
        }
    }
}

fn tensor_names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn sorted_keys(object: &Value) -> Vec<String> {
    let mut keys: Vec<String> = object
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();
    keys.sort();
    keys
}

// ---------------------------------------------------------------- inputs

/// Pseudo-random floats in [-4, 4) from a fixed seed (a 64-bit LCG), rounded to 1/1024 so that
/// they are exact in float32 and in JSON.
fn floats(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % 8192) as f64 / 1024.0 - 4.0
        })
        .collect()
}

fn add_mul_inputs(seed: u64) -> Value {
    json!({
        "a": {"dtype": "float32", "shape": [2, 3], "data": floats(seed, 6)},
        "b": {"dtype": "float32", "shape": [2, 3], "data": floats(seed + 100, 6)},
    })
}

/// Every numeric input of dtypes.onnx (`<name>_out = <name> + 1`) and its bool `flag`.
fn dtypes_inputs() -> Value {
    let mut inputs = serde_json::Map::new();
    for (name, dtype) in [
        ("f32", "float32"),
        ("f64", "float64"),
        ("i8", "int8"),
        ("i16", "int16"),
        ("i32", "int32"),
        ("i64", "int64"),
        ("u8", "uint8"),
    ] {
        let data: Vec<Value> = if dtype.starts_with("float") {
            floats(name.len() as u64, 4)
                .into_iter()
                .map(Value::from)
                .collect()
        } else {
            [5, 17, 0, 99].into_iter().map(Value::from).collect()
        };
        inputs.insert(
            name.into(),
            json!({"dtype": dtype, "shape": [2, 2], "data": data}),
        );
    }
    inputs.insert(
        "flag".into(),
        json!({"dtype": "bool", "shape": [2, 2], "data": [true, false, false, true]}),
    );
    Value::Object(inputs)
}

fn strings_inputs() -> Value {
    json!({"text": {"dtype": "string", "shape": [3], "data": ["hello", "魔方", ""]}})
}

// ---------------------------------------------------------------- reference and clients

fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: run `. scripts/env.sh` before the tests"))
}

fn models_dir() -> PathBuf {
    env_path("MOFANG_TEST_MODELS")
}

/// onnxruntime's outputs for `inputs` (`{"NAME": {"dtype", "shape", "data"}}`).
fn reference(model: &Path, inputs: &Value) -> Value {
    let reply = run_python(
        &env_path("MOFANG_PYTHON"),
        &[ORT_REFERENCE.as_ref(), model.as_os_str()],
        &json!({ "inputs": inputs }),
    );
    reply["outputs"].clone()
}

fn triton(server: &Server, plan: &[Value]) -> Vec<Value> {
    let http = server.rest.to_string();
    let grpc = server.grpc.to_string();
    let reply = run_python(
        &compat_python(),
        &[
            TRITON_CLIENT.as_ref(),
            "--http".as_ref(),
            http.as_ref(),
            "--grpc".as_ref(),
            grpc.as_ref(),
        ],
        &Value::from(plan.to_vec()),
    );
    results(reply, plan.len(), server)
}

fn tfserving(server: &Server, plan: &[Value]) -> Vec<Value> {
    let grpc = server.grpc.to_string();
    let reply = run_python(
        &compat_python(),
        &[TFSERVING_CLIENT.as_ref(), "--grpc".as_ref(), grpc.as_ref()],
        &Value::from(plan.to_vec()),
    );
    results(reply, plan.len(), server)
}

fn results(reply: Value, n: usize, server: &Server) -> Vec<Value> {
    let list = reply.as_array().cloned().unwrap_or_default();
    assert_eq!(
        list.len(),
        n,
        "one result per call: {reply}\n{}",
        server.log()
    );
    list
}

fn compat_python() -> PathBuf {
    let python = env_path("MOFANG_COMPAT_PYTHON");
    assert!(
        python.is_file(),
        "{} is missing: run scripts/setup.sh --with-compat",
        python.display()
    );
    python
}

fn run_python(python: &Path, args: &[&std::ffi::OsStr], stdin: &Value) -> Value {
    let mut child = Command::new(python)
        .args(args)
        .env("TF_CPP_MIN_LOG_LEVEL", "3")
        .env("CUDA_VISIBLE_DEVICES", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", python.display()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.to_string().as_bytes())
        .expect("write the plan");
    let out = child.wait_with_output().expect("wait for python");
    assert!(
        out.status.success(),
        "{} {:?} failed ({}):\n{}",
        python.display(),
        args,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "python printed no JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

// ---------------------------------------------------------------- the repository and server

/// A temporary model repository of copies of the generated test models, one version each.
struct Repository {
    dir: TempDir,
}

impl Repository {
    fn standard() -> Repository {
        let repository = Repository {
            dir: TempDir::new().expect("a temporary repository"),
        };
        for model in ["add_mul", "dtypes", "strings"] {
            repository.add_version(model, 1, &format!("{model}.onnx"));
        }
        repository
    }

    fn add_version(&self, model: &str, version: u64, file: &str) {
        let source = models_dir().join(file);
        assert!(
            source.is_file(),
            "{} is missing: run scripts/setup.sh",
            source.display()
        );
        let dir = self.dir.path().join(model).join(version.to_string());
        std::fs::create_dir_all(&dir).expect("create the version directory");
        std::fs::copy(&source, dir.join("model.onnx")).expect("copy the model");
    }

    fn write_config(&self, model: &str, yaml: &str) {
        std::fs::write(self.dir.path().join(model).join("config.yaml"), yaml)
            .expect("write config.yaml");
    }
}

/// `mofang serve` on 127.0.0.1 with kernel-picked REST and gRPC ports; killed when dropped,
/// its log shown when a test fails.
struct Server {
    child: Child,
    rest: SocketAddr,
    grpc: SocketAddr,
    scratch: TempDir,
}

impl Server {
    fn start(repository: &Repository) -> Server {
        let scratch = TempDir::new().expect("a scratch directory");
        let log = File::create(scratch.path().join("stderr.log")).expect("create the log file");
        let child = Command::new(MOFANG)
            .arg("serve")
            .arg("--model-repository")
            .arg(repository.dir.path())
            .args([
                "--host",
                "127.0.0.1",
                "--rest-port",
                "0",
                "--grpc-port",
                "0",
            ])
            .arg("--address-file")
            .arg(scratch.path().join("rest"))
            .arg("--grpc-address-file")
            .arg(scratch.path().join("grpc"))
            .args(["--poll-interval", "0"])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start mofang serve");
        let mut server = Server {
            child,
            rest: SocketAddr::from(([127, 0, 0, 1], 0)),
            grpc: SocketAddr::from(([127, 0, 0, 1], 0)),
            scratch,
        };
        server.rest = server.wait_for_address("rest");
        server.grpc = server.wait_for_address("grpc");
        server
    }

    fn wait_for_address(&mut self, name: &str) -> SocketAddr {
        let file = self.scratch.path().join(name);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(addr) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|text| text.trim().parse().ok())
            {
                return addr;
            }
            if let Some(status) = self.child.try_wait().expect("poll mofang") {
                panic!(
                    "mofang serve exited with {status} before serving:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "mofang serve wrote no {name} address within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("stderr.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- mofang serve log ----\n{}", self.log());
        }
    }
}
