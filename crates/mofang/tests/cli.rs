//! End-to-end tests of the real `mofang` binary: its command line, and `mofang serve` answering
//! HTTP and gRPC on 127.0.0.1 with ports the kernel picks (read back from `--address-file` and
//! `--grpc-address-file`).
//!
//! Needs `. scripts/env.sh` (ORT_DYLIB_PATH, MOFANG_TEST_MODELS) and what scripts/setup.sh
//! makes: the test models and the EfficientNet-Lite0 example.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

const MOFANG: &str = env!("CARGO_BIN_EXE_mofang");
const DOG_JPG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/data/dog.jpg");
const EXAMPLE_MODEL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../examples/model-repository/efficientnet_lite0"
);

/// Every flag of `mofang serve` that `--help` must document.
const SERVE_FLAGS: [&str; 8] = [
    "--model-repository",
    "--rest-port",
    "--grpc-port",
    "--grpc-address-file",
    "--model-name",
    "--model-base-path",
    "--poll-interval",
    "--max-body-bytes",
];

// ---------------------------------------------------------------- the command line

#[test]
fn help_exits_0_and_lists_the_serve_command() {
    let out = mofang(["--help"]);
    assert!(out.status.success(), "mofang --help: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("serve"),
        "mofang --help does not mention `serve`:\n{text}"
    );
}

#[test]
fn serve_help_exits_0_and_documents_every_flag() {
    let out = mofang(["serve", "--help"]);
    assert!(out.status.success(), "mofang serve --help: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in SERVE_FLAGS {
        assert!(
            text.contains(flag),
            "mofang serve --help does not mention {flag}:\n{text}"
        );
    }
}

#[test]
fn missing_repository_directory_is_a_one_line_error() {
    let dir = TempDir::new().expect("a temporary directory");
    let missing = dir.path().join("no-such-repository");
    let line = one_line_failure([
        OsStr::new("serve"),
        "--model-repository".as_ref(),
        missing.as_os_str(),
    ]);
    assert!(line.contains(&missing.display().to_string()), "{line}");
    assert!(line.contains("not a directory"), "{line}");
}

#[test]
fn model_name_without_model_base_path_is_a_one_line_error() {
    let line = one_line_failure(["serve", "--model-name", "tiny"]);
    assert!(line.contains("--model-base-path"), "{line}");
}

#[test]
fn negative_poll_interval_is_a_one_line_error() {
    let dir = TempDir::new().expect("a temporary directory");
    let line = one_line_failure([
        OsStr::new("serve"),
        "--model-repository".as_ref(),
        dir.path().as_os_str(),
        "--poll-interval".as_ref(),
        "-1".as_ref(),
    ]);
    assert!(line.contains("--poll-interval"), "{line}");
}

#[test]
fn model_repository_with_model_name_is_a_one_line_error() {
    let dir = TempDir::new().expect("a temporary directory");
    let line = one_line_failure([
        OsStr::new("serve"),
        "--model-repository".as_ref(),
        dir.path().as_os_str(),
        "--model-name".as_ref(),
        "tiny".as_ref(),
        "--model-base-path".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert!(
        line.contains("--model-repository") && line.contains("--model-name"),
        "{line}"
    );
}

// ---------------------------------------------------------------- serving

#[tokio::test]
async fn predict_classifies_the_tutorial_dog_as_a_beagle() {
    let repository = example_repository();
    let server = Server::start(&repository_args(repository.path()));
    let image = reqwest::multipart::Part::bytes(dog_jpg())
        .file_name("dog.jpg")
        .mime_str("image/jpeg")
        .expect("a valid MIME type");
    let response = client()
        .post(server.url("/predict"))
        .multipart(reqwest::multipart::Form::new().part("image", image))
        .send()
        .await
        .expect("POST /predict");
    let status = response.status();
    let body: Value = response.json().await.expect("/predict answers JSON");
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    assert_top_label_is_beagle(&body);
}

#[tokio::test]
async fn single_model_is_served_tf_serving_style() {
    let base_path = single_model_base_path();
    let server = Server::start(&single_model_args(base_path.path()));
    assert_tiny_is_served(&server).await;
}

#[tokio::test]
async fn without_onnxruntime_the_server_starts_on_tract() {
    let base_path = single_model_base_path();
    let mut args = single_model_args(base_path.path());
    args.extend([
        "--ort-library".into(),
        "/nonexistent/libonnxruntime.so".into(),
    ]);
    let server = Server::start_with(&args, |cmd| {
        cmd.env_remove("ORT_DYLIB_PATH")
            .env_remove("MOFANG_ORT_LIBRARY");
    });
    assert_tiny_is_served(&server).await;
    let metadata = get_json(&server, "/v2/models/tiny").await;
    assert_eq!(metadata["platform"], "tract_onnx", "{metadata}");
    let log = server.log();
    assert!(
        log.lines()
            .any(|l| l.contains("default backend") && l.contains("tract")),
        "the log does not say tract is the default backend:\n{log}"
    );
}

/// `--grpc-port 0 --grpc-address-file F` serves TF Serving's Predict on the address in F, with
/// the same answer as the REST API of the same process (which the serve crate's tests check
/// against ONNX Runtime).
#[tokio::test]
async fn grpc_is_served_on_the_address_in_grpc_address_file() {
    use mofang_grpc::pb::tensorflow::serving::ModelSpec;
    use mofang_grpc::pb::tensorflow::serving::PredictRequest;
    use mofang_grpc::pb::tensorflow::serving::prediction_service_client::PredictionServiceClient;
    use mofang_grpc::pb::tensorflow::{
        DataType, TensorProto, TensorShapeProto, tensor_shape_proto,
    };

    let base_path = single_model_base_path();
    let server = Server::start(&single_model_args(base_path.path()));
    assert_ne!(server.grpc_addr.port(), 0);
    assert_ne!(server.grpc_addr, server.addr);
    let x = [0.5f32, -1.0, 2.0, 0.25, 1.0, 1.5, -0.75, 3.0];
    let rest = client()
        .post(server.url("/v1/models/tiny:predict"))
        .json(&json!({"instances": [&x[..4], &x[4..]]}))
        .send()
        .await
        .expect("REST predict");
    let rest: Value = rest.json().await.expect("a JSON answer");
    let want: Vec<f32> = rest["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions: {rest}"))
        .iter()
        .flat_map(|row| row.as_array().cloned().unwrap_or_default())
        .map(|v| v.as_f64().expect("a number") as f32)
        .collect();

    let mut grpc = PredictionServiceClient::connect(format!("http://{}", server.grpc_addr))
        .await
        .expect("connect to the gRPC port");
    let dims = [2i64, 4].map(|size| tensor_shape_proto::Dim {
        size,
        name: String::new(),
    });
    let request = PredictRequest {
        model_spec: Some(ModelSpec {
            name: "tiny".into(),
            ..ModelSpec::default()
        }),
        inputs: [(
            "x".to_string(),
            TensorProto {
                dtype: DataType::DtFloat as i32,
                tensor_shape: Some(TensorShapeProto {
                    dim: dims.to_vec(),
                    unknown_rank: false,
                }),
                float_val: x.to_vec(),
                ..TensorProto::default()
            },
        )]
        .into_iter()
        .collect(),
        output_filter: Vec::new(),
    };
    let response = grpc
        .predict(request)
        .await
        .expect("gRPC predict")
        .into_inner();
    assert_eq!(
        response.outputs["y"].float_val, want,
        "gRPC and REST disagree"
    );
    let log = server.log();
    assert!(
        log.contains(&server.grpc_addr.to_string()),
        "the log does not name the gRPC address:\n{log}"
    );
}

/// Requests that are in flight when SIGTERM arrives still complete, then the process exits 0.
///
/// "In flight" is made certain rather than hoped for: each request is sent with
/// `Expect: 100-continue` and its body is held back until the server answers `100 Continue`,
/// which it does only once the `/predict` handler reads the body. SIGTERM goes out with every
/// handler waiting; the bodies follow once the server has closed its listener (so shutdown has
/// begun), and every one must still be classified.
#[test]
fn sigterm_drains_in_flight_requests_then_exits_0() {
    const IN_FLIGHT: usize = 4;
    let repository = example_repository();
    let mut server = Server::start(&repository_args(repository.path()));
    let upload = MultipartImage::new(&dog_jpg());
    let mut requests: Vec<TcpStream> = (0..IN_FLIGHT).map(|_| upload.begin(server.addr)).collect();
    server.signal("TERM");
    wait_until_refused(server.addr);
    for stream in &mut requests {
        stream
            .write_all(&upload.body)
            .expect("send the held-back body");
    }
    for (i, stream) in requests.into_iter().enumerate() {
        let (status, body) = read_response(stream);
        assert_eq!(status, 200, "request {i}: {body}");
        assert_top_label_is_beagle(&body);
    }
    let status = server.wait_for_exit(Duration::from_secs(10));
    assert!(
        status.success(),
        "mofang exited with {status} after SIGTERM:\n{}",
        server.log()
    );
}

// ---------------------------------------------------------------- helpers: files

fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: run `. scripts/env.sh` before the tests"))
}

fn required_file(path: &Path) -> &Path {
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    path
}

fn dog_jpg() -> Vec<u8> {
    std::fs::read(DOG_JPG).expect("read examples/data/dog.jpg")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy's directory");
    for entry in std::fs::read_dir(from).expect("list the example model") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy an example file");
        }
    }
}

/// A repository holding a copy of examples/model-repository/efficientnet_lite0.
fn example_repository() -> TempDir {
    let example = Path::new(EXAMPLE_MODEL);
    for file in ["config.yaml", "labels.txt", "1/model.onnx"] {
        required_file(&example.join(file));
    }
    let repository = TempDir::new().expect("a temporary repository");
    copy_dir(example, &repository.path().join("efficientnet_lite0"));
    repository
}

/// A TF-Serving-style model base path: `<dir>/1/model.onnx` = tiny.onnx (x [batch,4] → y [batch,2]).
fn single_model_base_path() -> TempDir {
    let tiny = env_path("MOFANG_TEST_MODELS").join("tiny.onnx");
    let base = TempDir::new().expect("a temporary model base path");
    std::fs::create_dir(base.path().join("1")).expect("create the version directory");
    std::fs::copy(required_file(&tiny), base.path().join("1/model.onnx")).expect("copy tiny.onnx");
    base
}

fn repository_args(repository: &Path) -> Vec<OsString> {
    vec!["--model-repository".into(), repository.into()]
}

fn single_model_args(base_path: &Path) -> Vec<OsString> {
    vec![
        "--model-name".into(),
        "tiny".into(),
        "--model-base-path".into(),
        base_path.into(),
    ]
}

// ---------------------------------------------------------------- helpers: the command line

fn mofang<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    Command::new(MOFANG)
        .args(args)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .output()
        .expect("run mofang")
}

/// Runs mofang with logging off, expects it to fail, and returns the one line it printed.
fn one_line_failure<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let out = mofang(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mofang succeeded; stderr:\n{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        lines.len(),
        1,
        "expected a one-line message, got:\n{stderr}"
    );
    lines[0].to_string()
}

// ---------------------------------------------------------------- helpers: the server

/// `mofang serve` in the background on 127.0.0.1, port 0; killed when dropped, its log shown
/// when a test fails.
struct Server {
    child: Child,
    addr: SocketAddr,
    grpc_addr: SocketAddr,
    scratch: TempDir,
}

impl Server {
    fn start(args: &[impl AsRef<OsStr>]) -> Server {
        Server::start_with(args, |_| {})
    }

    fn start_with(args: &[impl AsRef<OsStr>], adjust: impl FnOnce(&mut Command)) -> Server {
        let scratch = TempDir::new().expect("a scratch directory");
        let address_file = scratch.path().join("addr");
        let grpc_address_file = scratch.path().join("grpc-addr");
        let log = File::create(scratch.path().join("stderr.log")).expect("create the log file");
        let mut cmd = Command::new(MOFANG);
        cmd.arg("serve")
            .args(args)
            .args(["--host", "127.0.0.1", "--rest-port", "0", "--address-file"])
            .arg(&address_file)
            .args(["--grpc-port", "0", "--grpc-address-file"])
            .arg(&grpc_address_file)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        adjust(&mut cmd);
        let child = cmd.spawn().expect("start mofang serve");
        let mut server = Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            scratch,
        };
        server.addr = server.wait_for_address(&address_file);
        server.grpc_addr = server.wait_for_address(&grpc_address_file);
        server
    }

    fn wait_for_address(&mut self, file: &Path) -> SocketAddr {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(addr) = std::fs::read_to_string(file)
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
                "mofang serve wrote no address within 30 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.scratch.path().join("stderr.log")).unwrap_or_default()
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed: {status}");
    }

    fn wait_for_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll mofang") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "mofang did not exit within {limit:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
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

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("an HTTP client")
}

async fn get_json(server: &Server, path: &str) -> Value {
    let response = client().get(server.url(path)).send().await.expect("GET");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON answer");
    assert_eq!(status, reqwest::StatusCode::OK, "GET {path}: {body}");
    body
}

/// `tiny` is AVAILABLE at version 1 and answers a TF Serving row-format predict with 1 × 2 floats.
async fn assert_tiny_is_served(server: &Server) {
    let status = get_json(server, "/v1/models/tiny").await;
    assert_eq!(
        status["model_version_status"],
        json!([{"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]),
        "{status}"
    );
    let response = client()
        .post(server.url("/v1/models/tiny:predict"))
        .json(&json!({"instances": [[1.0, 2.0, 3.0, 4.0]]}))
        .send()
        .await
        .expect("POST /v1/models/tiny:predict");
    let code = response.status();
    let body: Value = response.json().await.expect("predict answers JSON");
    assert_eq!(code, reqwest::StatusCode::OK, "{body}");
    let rows = body["predictions"]
        .as_array()
        .expect("predictions is an array");
    assert_eq!(rows.len(), 1, "{body}");
    let row = rows[0].as_array().expect("one row of outputs");
    assert_eq!(row.len(), 2, "{body}");
    assert!(
        row.iter().all(|v| v.as_f64().is_some_and(f64::is_finite)),
        "{body}"
    );
}

fn assert_top_label_is_beagle(body: &Value) {
    assert_eq!(body["success"], true, "{body}");
    assert_eq!(body["predictions"][0]["label"], "beagle", "{body}");
}

// ---------------------------------------------------------------- helpers: raw HTTP/1.1

/// A multipart/form-data body with the image in the `image` field.
struct MultipartImage {
    content_type: String,
    body: Vec<u8>,
}

impl MultipartImage {
    fn new(image: &[u8]) -> MultipartImage {
        let boundary = "mofang-cli-test-boundary";
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"dog.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(image);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        MultipartImage {
            content_type: format!("multipart/form-data; boundary={boundary}"),
            body,
        }
    }

    /// Sends the head of `POST /predict` with `Expect: 100-continue` and returns once the
    /// server's handler asks for the body.
    fn begin(&self, addr: SocketAddr) -> TcpStream {
        let mut stream = TcpStream::connect(addr).expect("connect to mofang");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("set a read timeout");
        let head = format!(
            "POST /predict HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
            self.content_type,
            self.body.len()
        );
        stream
            .write_all(head.as_bytes())
            .expect("send the request head");
        let mut interim = Vec::new();
        let mut byte = [0u8; 1];
        while !interim.ends_with(b"\r\n\r\n") {
            stream
                .read_exact(&mut byte)
                .expect("the server answers 100 Continue");
            interim.push(byte[0]);
        }
        let interim = String::from_utf8_lossy(&interim);
        assert!(
            interim.starts_with("HTTP/1.1 100"),
            "expected 100 Continue, got {interim}"
        );
        stream
    }
}

/// Reads a whole `Connection: close` response: its status code and JSON body.
fn read_response(mut stream: TcpStream) -> (u16, Value) {
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read the response");
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .expect("a response head and body");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "this test reads only Content-Length bodies:\n{head}"
    );
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {head}"));
    let body =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {body}"));
    (status, body)
}

/// Waits (≤ 10 s) until connecting fails: the server closed its listener.
fn wait_until_refused(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "mofang still accepts connections 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------- mofang notebooks serve

#[test]
fn notebooks_serve_refuses_a_missing_root_and_other_schemes_in_one_line() {
    let line = one_line_failure(["notebooks", "serve", "no-such-notebook-dir"]);
    assert_eq!(line, "mofang: no-such-notebook-dir does not exist");
    // s3:// roots are served (crates/notebook-browser/tests/s3.rs); other schemes are not.
    let line = one_line_failure(["notebooks", "serve", "gs://bucket/runs"]);
    assert!(
        line.contains("gs://bucket/runs") && line.contains("s3://bucket/prefix are supported"),
        "{line}"
    );
}

/// The browser serves a directory's contents model, then exits 0 on SIGTERM.
#[tokio::test]
async fn notebooks_serve_answers_the_contents_api_and_stops_on_sigterm() {
    let root = TempDir::new().expect("a notebook directory");
    std::fs::write(
        root.path().join("run.ipynb"),
        r#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#,
    )
    .expect("write a notebook");
    let scratch = TempDir::new().expect("a scratch directory");
    let address_file = scratch.path().join("addr");
    let mut child = Command::new(MOFANG)
        .args(["notebooks", "serve"])
        .arg(root.path())
        .args(["--port", "0", "--address-file"])
        .arg(&address_file)
        .env("RUST_LOG", "off")
        .stdin(Stdio::null())
        .spawn()
        .expect("start mofang notebooks serve");
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr: SocketAddr = loop {
        if let Some(addr) = std::fs::read_to_string(&address_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break addr;
        }
        if let Some(status) = child.try_wait().expect("poll") {
            panic!("mofang notebooks serve exited with {status} before serving");
        }
        assert!(Instant::now() < deadline, "no address within 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        addr.ip().is_loopback(),
        "binds to localhost by default: {addr}"
    );
    let model: Value = client()
        .get(format!("http://{addr}/api/contents/"))
        .send()
        .await
        .expect("GET /api/contents/")
        .json()
        .await
        .expect("a JSON model");
    assert_eq!(model["type"], "directory");
    assert_eq!(model["content"][0]["name"], "run.ipynb");
    assert_eq!(model["content"][0]["type"], "notebook");
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("mofang notebooks serve did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
