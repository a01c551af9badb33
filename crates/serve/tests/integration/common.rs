//! The harness every test uses: a temporary model repository, the server on `127.0.0.1:0`,
//! HTTP helpers, ONNX Runtime reference outputs and the comparisons.
//!
//! Nothing here skips: a missing test model, Python environment or ONNX Runtime library fails
//! the test with the command that makes it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mofang_backend::Backends;
use mofang_repository::{Manager, ManagerOptions, Source};
use mofang_serve::{AppState, ServeConfig};
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use reqwest::StatusCode;

/// The workspace root.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// The tutorial's photo of a beagle.
pub const DOG_JPG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/data/dog.jpg");

/// What to run when something the tests need is missing.
const SETUP_HINT: &str = "run scripts/setup.sh (then `. scripts/env.sh`)";

/// How often the manager rescans the repository.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The longest a test waits for the repository or the server to reach a state.
pub const WAIT: Duration = Duration::from_secs(10);

/// A test model made by `scripts/make_test_models.py`, e.g. `tiny.onnx`.
pub fn test_model(file: &str) -> PathBuf {
    let dir = std::env::var_os("MOFANG_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(ROOT).join("target/test-models"));
    let path = dir.join(file);
    assert!(
        path.is_file(),
        "test model {} is missing: {SETUP_HINT}",
        path.display()
    );
    path
}

/// A model directory of `examples/model-repository` (config, labels and `1/model.onnx`).
pub fn example_model(name: &str) -> PathBuf {
    let dir = Path::new(ROOT).join("examples/model-repository").join(name);
    assert!(
        dir.join("1/model.onnx").is_file(),
        "{}/1/model.onnx is missing: {SETUP_HINT}",
        dir.display()
    );
    dir
}

// ---------------------------------------------------------------------------------------------
// The model repository
// ---------------------------------------------------------------------------------------------

/// A model repository in a temporary directory. Every change is made atomically (written
/// under a hidden name, then renamed) so that a concurrent scan never sees half of it.
pub struct Repo {
    dir: TempDir,
}

impl Repo {
    pub fn new() -> Repo {
        Repo {
            dir: TempDir::new().expect("create a temporary model repository"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Builder form of [`Repo::add_version`].
    pub fn with_model(self, model: &str, version: u64, file: &str) -> Repo {
        self.add_version(model, version, file);
        self
    }

    /// Builder form of [`Repo::write_config`].
    pub fn with_config(self, model: &str, yaml: &str) -> Repo {
        self.write_config(model, yaml);
        self
    }

    /// Adds `<model>/<version>/model.onnx`, a copy of the test model `file`.
    pub fn add_version(&self, model: &str, version: u64, file: &str) {
        self.add_version_from(model, version, &test_model(file));
    }

    /// Adds `<model>/<version>/model.onnx`, a copy of `source`.
    pub fn add_version_from(&self, model: &str, version: u64, source: &Path) {
        self.install_version(model, version, |dest| std::fs::copy(source, dest).map(drop));
    }

    /// Adds `<model>/<version>/model.onnx` holding `bytes`.
    pub fn add_version_bytes(&self, model: &str, version: u64, bytes: &[u8]) {
        self.install_version(model, version, |dest| std::fs::write(dest, bytes));
    }

    fn install_version(
        &self,
        model: &str,
        version: u64,
        write: impl FnOnce(&Path) -> std::io::Result<()>,
    ) {
        let model_dir = self.path().join(model);
        let staging = model_dir.join(format!(".staging-{version}"));
        std::fs::create_dir_all(&staging).expect("create a staging version directory");
        let file = staging.join("model.onnx");
        write(&file).unwrap_or_else(|e| panic!("cannot write {}: {e}", file.display()));
        let target = model_dir.join(version.to_string());
        std::fs::rename(&staging, &target).unwrap_or_else(|e| {
            panic!(
                "cannot rename the staging directory to {}: {e}",
                target.display()
            )
        });
    }

    /// Replaces the model file of an existing version with a fresh copy of `file` (a new
    /// modification time, so the manager reloads it).
    pub fn replace_model(&self, model: &str, version: u64, file: &str) {
        let source = test_model(file);
        self.replace_model_with(model, version, |tmp| std::fs::copy(&source, tmp).map(drop));
    }

    /// Replaces the model file of an existing version with `bytes`.
    pub fn replace_model_bytes(&self, model: &str, version: u64, bytes: &[u8]) {
        self.replace_model_with(model, version, |tmp| std::fs::write(tmp, bytes));
    }

    fn replace_model_with(
        &self,
        model: &str,
        version: u64,
        write: impl FnOnce(&Path) -> std::io::Result<()>,
    ) {
        let dest = self
            .path()
            .join(model)
            .join(version.to_string())
            .join("model.onnx");
        write_atomically(&dest, write);
    }

    /// Writes `<model>/config.yaml`.
    pub fn write_config(&self, model: &str, yaml: &str) {
        let dir = self.path().join(model);
        std::fs::create_dir_all(&dir).expect("create the model directory");
        write_atomically(&dir.join("config.yaml"), |tmp| std::fs::write(tmp, yaml));
    }

    /// Copies a whole model directory (config, labels, versions) into the repository, named as
    /// the source directory.
    pub fn with_model_dir(self, source: &Path) -> Repo {
        let name = source.file_name().expect("a model directory has a name");
        copy_dir(source, &self.path().join(name));
        self
    }

    /// Removes `<model>/<version>` (renamed away first, then deleted).
    pub fn remove_version(&self, model: &str, version: u64) {
        let model_dir = self.path().join(model);
        let doomed = model_dir.join(format!(".removed-{version}"));
        std::fs::rename(model_dir.join(version.to_string()), &doomed)
            .unwrap_or_else(|e| panic!("cannot remove version {version} of {model}: {e}"));
        std::fs::remove_dir_all(&doomed).expect("delete a removed version directory");
    }
}

fn write_atomically(dest: &Path, write: impl FnOnce(&Path) -> std::io::Result<()>) {
    let name = dest.file_name().expect("a file path").to_string_lossy();
    let tmp = dest.with_file_name(format!(".{name}.tmp"));
    write(&tmp).unwrap_or_else(|e| panic!("cannot write {}: {e}", tmp.display()));
    std::fs::rename(&tmp, dest)
        .unwrap_or_else(|e| panic!("cannot rename to {}: {e}", dest.display()));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("cannot create {}: {e}", to.display()));
    let entries =
        std::fs::read_dir(from).unwrap_or_else(|e| panic!("cannot list {}: {e}", from.display()));
    for entry in entries {
        let path = entry.expect("read a directory entry").path();
        let dest = to.join(path.file_name().expect("a directory entry has a name"));
        if path.is_dir() {
            copy_dir(&path, &dest);
        } else {
            std::fs::copy(&path, &dest)
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", path.display()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

/// The server running on an ephemeral port over a [`Repo`], and a client for it.
pub struct Server {
    addr: SocketAddr,
    client: reqwest::Client,
    repo: Repo,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Server {
    pub async fn start(repo: Repo) -> Server {
        Server::start_with(repo, ServeConfig::default()).await
    }

    pub async fn start_with(repo: Repo, config: ServeConfig) -> Server {
        let backends = Backends::detect(None);
        if let Some(reason) = backends.onnxruntime_error() {
            panic!("ONNX Runtime is not available ({reason}): {SETUP_HINT}");
        }
        let manager = Manager::start(ManagerOptions {
            source: Source::Repository(repo.path().to_path_buf()),
            poll_interval: Some(POLL_INTERVAL),
            backends,
            metrics: Default::default(),
        })
        .await
        .expect("the manager starts on a temporary repository");
        let state = AppState::new(manager, config);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(mofang_serve::serve(listener, state, async move {
            // A dropped sender (the test ended) stops the server too.
            let _ = signal.await;
        }));
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("build an HTTP client");
        Server {
            addr,
            client,
            repo,
            shutdown: Some(shutdown),
            task,
        }
    }

    pub fn repo(&self) -> &Repo {
        &self.repo
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Resolves the shutdown future given to `serve`.
    pub fn begin_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Waits (at most [`WAIT`]) for `serve` to return and checks it returned `Ok`.
    pub async fn stopped(self) {
        let result = tokio::time::timeout(WAIT, self.task)
            .await
            .expect("serve returns within the wait limit after shutdown")
            .expect("the serve task does not panic");
        result.expect("serve returns Ok after a graceful shutdown");
    }

    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(self.client.get(self.url(path)).send().await).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Reply {
        Reply::read(self.client.post(self.url(path)).json(body).send().await).await
    }

    pub async fn post_bytes(&self, path: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.client.post(self.url(path)).body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::read(request.send().await).await
    }

    pub async fn post_form(&self, path: &str, form: reqwest::multipart::Form) -> Reply {
        Reply::read(
            self.client
                .post(self.url(path))
                .multipart(form)
                .send()
                .await,
        )
        .await
    }

    /// Uploads `bytes` as the form field `image`, as `curl -F image=@file` does.
    pub async fn post_image(&self, path: &str, bytes: Vec<u8>) -> Reply {
        let part = reqwest::multipart::Part::bytes(bytes).file_name("upload");
        self.post_form(path, reqwest::multipart::Form::new().part("image", part))
            .await
    }

    /// `(version, state)` of every version of `model` from TF Serving's status endpoint,
    /// sorted; empty when the model is unknown.
    pub async fn version_states(&self, model: &str) -> Vec<(String, String)> {
        let reply = self.get(&format!("/v1/models/{model}")).await;
        if reply.status == StatusCode::NOT_FOUND {
            return Vec::new();
        }
        let body = reply.ok();
        let mut states: Vec<(String, String)> = body["model_version_status"]
            .as_array()
            .expect("model_version_status is a list")
            .iter()
            .map(|v| (text(&v["version"]), text(&v["state"])))
            .collect();
        states.sort();
        states
    }

    /// Polls the status of `model` until it is exactly `expected` (`(version, state)` pairs).
    pub async fn wait_for_versions(&self, model: &str, expected: &[(u64, &str)]) {
        let mut expected: Vec<(String, String)> = expected
            .iter()
            .map(|(v, s)| (v.to_string(), s.to_string()))
            .collect();
        expected.sort();
        let expected = &expected;
        eventually(
            &format!("model {model} reaches {expected:?}"),
            || async move {
                let seen = self.version_states(model).await;
                if &seen == expected {
                    Ok(())
                } else {
                    Err(format!("status {seen:?}"))
                }
            },
        )
        .await;
    }

    /// Sleeps long enough for the manager to rescan the repository several times.
    pub async fn let_the_poller_run(&self) {
        tokio::time::sleep(POLL_INTERVAL * 5).await;
    }
}

/// Retries `check` until it succeeds; fails the test with its last error after [`WAIT`].
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let last = match check().await {
            Ok(()) => return,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "not true within {WAIT:?}: {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn text(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_string()
}

/// A whole HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    async fn read(response: reqwest::Result<reqwest::Response>) -> Reply {
        let response = response.expect("the server answers the request");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .expect("read the response body")
            .to_vec();
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.text()))
    }

    /// Asserts 200 and returns the JSON body.
    pub fn ok(&self) -> Value {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.text());
        self.json()
    }

    /// Asserts `status` and a JSON object body with an `error` string; returns the message.
    pub fn error(&self, status: StatusCode) -> String {
        assert_eq!(self.status, status, "body: {}", self.text());
        let content_type = self.header("content-type").unwrap_or_default();
        assert!(
            content_type.starts_with("application/json"),
            "an error is JSON, got content-type {content_type:?}: {}",
            self.text()
        );
        match self.json().get("error") {
            Some(Value::String(message)) => message.clone(),
            _ => panic!("an error body has an `error` string: {}", self.text()),
        }
    }
}

/// One HTTP/1.1 connection driven by hand, for requests whose timing a test controls.
pub struct RawHttp {
    stream: TcpStream,
    buffered: Vec<u8>,
}

impl RawHttp {
    pub async fn connect(addr: SocketAddr) -> RawHttp {
        RawHttp {
            stream: TcpStream::connect(addr)
                .await
                .expect("connect to the server"),
            buffered: Vec::new(),
        }
    }

    pub async fn send(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            self.stream
                .writable()
                .await
                .expect("wait to write to the server");
            match self.stream.try_write(bytes) {
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("cannot write to the server: {e}"),
            }
        }
    }

    /// Reads one response head (status line and headers).
    pub async fn read_head(&mut self) -> String {
        let end = loop {
            if let Some(i) = self.buffered.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await;
        };
        let head: Vec<u8> = self.buffered.drain(..end).collect();
        String::from_utf8(head).expect("a response head is ASCII")
    }

    /// Reads one whole response with a `content-length`: its status and JSON body.
    pub async fn read_response(&mut self) -> (u16, Value) {
        let head = self.read_head().await;
        let status: u16 = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {head:?}"));
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or_else(|| panic!("no content-length in {head:?}"));
        while self.buffered.len() < length {
            self.fill().await;
        }
        let body: Vec<u8> = self.buffered.drain(..length).collect();
        let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, json)
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 4096];
        loop {
            tokio::time::timeout(WAIT, self.stream.readable())
                .await
                .expect("the server answers within the wait limit")
                .expect("wait to read from the server");
            match self.stream.try_read(&mut chunk) {
                Ok(0) => panic!("the server closed the connection mid-response"),
                Ok(n) => {
                    self.buffered.extend_from_slice(&chunk[..n]);
                    return;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("cannot read from the server: {e}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test data
// ---------------------------------------------------------------------------------------------

/// A small deterministic pseudo-random generator (Knuth's MMIX LCG).
pub struct Lcg(u64);

impl Lcg {
    pub fn new(seed: u64) -> Lcg {
        Lcg(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0
    }

    /// An integer in `lo..=hi`.
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        let span = (hi - lo) as u64 + 1;
        lo + ((self.next_u64() >> 11) % span) as i64
    }

    /// A float in `[lo, hi)` with 24 random bits.
    pub fn float(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + unit * (hi - lo)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 56) as u8).collect()
    }
}

/// A tensor as the reference script reads and writes it: a dtype name (`float32`, `int64`,
/// `bool`, `string`, ...), a shape and the flat row-major data as JSON values.
#[derive(Debug, Clone, PartialEq)]
pub struct TestTensor {
    pub dtype: String,
    pub shape: Vec<usize>,
    pub data: Vec<Value>,
}

impl TestTensor {
    pub fn new(dtype: &str, shape: &[usize], data: Vec<Value>) -> TestTensor {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "shape {shape:?} does not fit {} values",
            data.len()
        );
        TestTensor {
            dtype: dtype.to_string(),
            shape: shape.to_vec(),
            data,
        }
    }

    /// float32 values in [-2, 2).
    pub fn random_f32(shape: &[usize], rng: &mut Lcg) -> TestTensor {
        let n = shape.iter().product();
        let data = (0..n).map(|_| json!(rng.float(-2.0, 2.0))).collect();
        TestTensor::new("float32", shape, data)
    }

    pub fn strings(items: &[&str]) -> TestTensor {
        TestTensor::new(
            "string",
            &[items.len()],
            items.iter().map(|s| json!(s)).collect(),
        )
    }

    /// The data nested by the shape: `[[1, 2], [3, 4]]`.
    pub fn nested(&self) -> Value {
        nest(&self.data, &self.shape)
    }

    /// The data as one flat list.
    pub fn flat(&self) -> Value {
        Value::Array(self.data.clone())
    }

    /// One nested value per item of the first dimension (TF Serving's row format).
    pub fn rows(&self) -> Vec<Value> {
        match self.nested() {
            Value::Array(rows) => rows,
            scalar => panic!("a scalar has no rows: {scalar}"),
        }
    }

    /// The raw little-endian layout of the KServe binary extension: packed float32, or each
    /// string prefixed by its length as a little-endian u32.
    pub fn le_bytes(&self) -> Vec<u8> {
        match self.dtype.as_str() {
            "float32" => self.f32s().iter().flat_map(|x| x.to_le_bytes()).collect(),
            "string" => self
                .data
                .iter()
                .flat_map(|v| {
                    let s = v.as_str().expect("string data holds strings");
                    let len = u32::try_from(s.len()).expect("a test string is short");
                    len.to_le_bytes().into_iter().chain(s.bytes())
                })
                .collect(),
            other => panic!("le_bytes does not handle {other}"),
        }
    }

    /// The data as f32 (for float tensors).
    pub fn f32s(&self) -> Vec<f32> {
        self.data
            .iter()
            .map(|v| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) as f32)
            .collect()
    }

    fn to_reference(&self) -> Value {
        json!({"dtype": self.dtype, "shape": self.shape, "data": self.data})
    }

    fn from_reference(v: &Value) -> TestTensor {
        let shape: Vec<usize> = serde_json::from_value(v["shape"].clone())
            .unwrap_or_else(|e| panic!("reference shape ({e}): {v}"));
        let data = v["data"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("reference data: {v}"));
        TestTensor::new(&text(&v["dtype"]), &shape, data)
    }
}

fn nest(data: &[Value], shape: &[usize]) -> Value {
    match shape.split_first() {
        None => data[0].clone(),
        Some((&n, rest)) => {
            let stride: usize = rest.iter().product();
            Value::Array((0..n).map(|i| nest(&data[i * stride..], rest)).collect())
        }
    }
}

/// One input of each type `dtypes.onnx` takes (`[2, 2]` each), named as its inputs. The
/// integers stay one below their type's maximum (the model adds 1) and the int64 values are
/// mostly beyond 2^53, where a detour through f64 would lose them.
pub fn dtypes_inputs(rng: &mut Lcg) -> Vec<(&'static str, TestTensor)> {
    let shape = [2, 2];
    let mut ints = |dtype: &str, lo: i64, hi: i64| {
        TestTensor::new(
            dtype,
            &shape,
            (0..4).map(|_| json!(rng.int(lo, hi))).collect(),
        )
    };
    let i8s = ints("int8", i8::MIN.into(), i64::from(i8::MAX) - 1);
    let i16s = ints("int16", i16::MIN.into(), i64::from(i16::MAX) - 1);
    let i32s = ints("int32", i32::MIN.into(), i64::from(i32::MAX) - 1);
    let i64s = ints("int64", i64::MIN / 2, i64::MAX / 2);
    let u8s = ints("uint8", 0, i64::from(u8::MAX) - 1);
    let f64s = TestTensor::new(
        "float64",
        &shape,
        (0..4)
            .map(|_| json!(rng.next_u64() as f64 / 3.0e18 - 3.0))
            .collect(),
    );
    let flags = TestTensor::new(
        "bool",
        &shape,
        (0..4).map(|_| json!(rng.next_u64() >> 63 == 1)).collect(),
    );
    vec![
        ("f32", TestTensor::random_f32(&shape, rng)),
        ("f64", f64s),
        ("i8", i8s),
        ("i16", i16s),
        ("i32", i32s),
        ("i64", i64s),
        ("u8", u8s),
        ("flag", flags),
    ]
}

/// A PNG of `width`×`height` RGB pixels.
pub fn png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb(pixel(x, y)));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("encode a PNG in memory");
    out.into_inner()
}

// ---------------------------------------------------------------------------------------------
// ONNX Runtime reference (scripts/ort_reference.py)
// ---------------------------------------------------------------------------------------------

/// Runs `model` in onnxruntime on the named inputs; returns every output by name.
pub async fn reference_outputs(
    model: &Path,
    inputs: &[(&str, &TestTensor)],
) -> BTreeMap<String, TestTensor> {
    let inputs: Map<String, Value> = inputs
        .iter()
        .map(|(name, t)| (name.to_string(), t.to_reference()))
        .collect();
    let stdin = json!({"inputs": inputs}).to_string().into_bytes();
    let result = run_reference(vec![model.into()], stdin).await;
    result["outputs"]
        .as_object()
        .unwrap_or_else(|| panic!("no outputs from ort_reference.py: {result}"))
        .iter()
        .map(|(name, t)| (name.clone(), TestTensor::from_reference(t)))
        .collect()
}

/// What `ort_reference.py --image` is asked to do.
pub struct ImageReference<'a> {
    pub model: &'a Path,
    pub image: &'a Path,
    /// `[height, width]`.
    pub size: [u32; 2],
    /// `NCHW` or `NHWC`.
    pub layout: &'a str,
    /// `tf`, `torch`, `caffe` or `none`.
    pub preset: &'a str,
    pub top_k: usize,
    pub labels: Option<&'a Path>,
}

/// One prediction of the reference: the class index, its label (without a labels file, none)
/// and its softmax probability.
#[derive(Debug, Clone, PartialEq)]
pub struct RefPrediction {
    pub index: usize,
    pub label: Option<String>,
    pub probability: f64,
}

/// Classifies an image file in onnxruntime with Pillow preprocessing and a softmax.
pub async fn reference_image_predictions(r: ImageReference<'_>) -> Vec<RefPrediction> {
    let mut args: Vec<OsString> = vec![
        r.model.into(),
        "--image".into(),
        r.image.into(),
        "--size".into(),
    ];
    args.extend([r.size[0].to_string().into(), r.size[1].to_string().into()]);
    args.extend([
        "--layout".into(),
        r.layout.into(),
        "--preset".into(),
        r.preset.into(),
    ]);
    args.extend([
        "--top-k".into(),
        r.top_k.to_string().into(),
        "--softmax".into(),
    ]);
    if let Some(labels) = r.labels {
        args.extend(["--labels".into(), labels.into()]);
    }
    let result = run_reference(args, Vec::new()).await;
    result["predictions"]
        .as_array()
        .unwrap_or_else(|| panic!("no predictions from ort_reference.py: {result}"))
        .iter()
        .map(|p| RefPrediction {
            index: p["index"].as_u64().expect("an index") as usize,
            label: p["label"].as_str().map(str::to_string),
            probability: p["probability"].as_f64().expect("a probability"),
        })
        .collect()
}

async fn run_reference(args: Vec<OsString>, stdin: Vec<u8>) -> Value {
    let run = move || {
        let python = std::env::var_os("MOFANG_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(ROOT).join(".venv/bin/python"));
        assert!(
            python.exists(),
            "{} is missing: {SETUP_HINT}",
            python.display()
        );
        let script = Path::new(ROOT).join("scripts/ort_reference.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {SETUP_HINT}", python.display()));
        child
            .stdin
            .take()
            .expect("stdin is piped")
            .write_all(&stdin)
            .expect("write the request to ort_reference.py");
        let out = child.wait_with_output().expect("wait for ort_reference.py");
        assert!(
            out.status.success(),
            "ort_reference.py {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("ort_reference.py prints JSON")
    };
    tokio::task::spawn_blocking(run)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

// ---------------------------------------------------------------------------------------------
// Comparisons
// ---------------------------------------------------------------------------------------------

/// Asserts that two JSON values have the same structure (lists of the same lengths, objects
/// with the same keys) and the same leaves: integers exactly, other numbers within `tol`
/// relative to `max(1, |expected|)`, everything else equal.
pub fn assert_close(actual: &Value, expected: &Value, tol: f64, what: &str) {
    if let Err(at) = check_close(actual, expected, tol, what) {
        panic!("{at}\n  actual:   {actual}\n  expected: {expected}");
    }
}

/// [`assert_close`] as a result: the first difference, prefixed by `what`.
pub fn check_close(actual: &Value, expected: &Value, tol: f64, what: &str) -> Result<(), String> {
    compare(actual, expected, tol, what.to_string())
}

fn compare(actual: &Value, expected: &Value, tol: f64, at: String) -> Result<(), String> {
    match (actual, expected) {
        (Value::Array(a), Value::Array(e)) => {
            if a.len() != e.len() {
                return Err(format!("{at}: {} items, expected {}", a.len(), e.len()));
            }
            a.iter()
                .zip(e)
                .enumerate()
                .try_for_each(|(i, (a, e))| compare(a, e, tol, format!("{at}[{i}]")))
        }
        (Value::Object(a), Value::Object(e)) => {
            let (mut ka, mut ke): (Vec<_>, Vec<_>) = (a.keys().collect(), e.keys().collect());
            ka.sort();
            ke.sort();
            if ka != ke {
                return Err(format!("{at}: keys {ka:?}, expected {ke:?}"));
            }
            a.iter()
                .try_for_each(|(k, v)| compare(v, &e[k], tol, format!("{at}.{k}")))
        }
        (Value::Number(a), Value::Number(e)) => {
            let exact_ints = (a.is_i64() || a.is_u64()) && (e.is_i64() || e.is_u64());
            let same = if exact_ints {
                a == e
            } else {
                let (a, e) = (
                    a.as_f64().unwrap_or(f64::NAN),
                    e.as_f64().unwrap_or(f64::NAN),
                );
                (a - e).abs() <= tol * e.abs().max(1.0)
            };
            if same {
                Ok(())
            } else {
                Err(format!("{at}: {a}, expected {e} (tolerance {tol})"))
            }
        }
        (a, e) if a == e => Ok(()),
        (a, e) => Err(format!("{at}: {a}, expected {e}")),
    }
}
