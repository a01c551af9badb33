//! The harness: a temporary model repository, the gRPC server on `127.0.0.1:0`, clients, ONNX
//! Runtime reference outputs and test data.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use mofang_backend::Backends;
use mofang_grpc::GrpcConfig;
use mofang_grpc::pb::inference::grpc_inference_service_client::GrpcInferenceServiceClient;
use mofang_grpc::pb::tensorflow::serving::model_service_client::ModelServiceClient;
use mofang_grpc::pb::tensorflow::serving::prediction_service_client::PredictionServiceClient;
use mofang_repository::{Manager, ManagerOptions, Source};
use serde_json::{Map, Value, json};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Channel;

/// The workspace root.
const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// What to run when something the tests need is missing.
const SETUP_HINT: &str = "run scripts/setup.sh (then `. scripts/env.sh`)";

/// The longest a test waits for the server.
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

/// A model repository in a temporary directory.
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

    /// Adds `<model>/<version>/model.onnx`, a copy of the test model `file`.
    pub fn with_model(self, model: &str, version: u64, file: &str) -> Repo {
        let dir = self.path().join(model).join(version.to_string());
        std::fs::create_dir_all(&dir).expect("create a version directory");
        std::fs::copy(test_model(file), dir.join("model.onnx")).expect("copy a test model");
        self
    }

    /// Writes `<model>/config.yaml`.
    pub fn with_config(self, model: &str, yaml: &str) -> Repo {
        let dir = self.path().join(model);
        std::fs::create_dir_all(&dir).expect("create the model directory");
        std::fs::write(dir.join("config.yaml"), yaml).expect("write config.yaml");
        self
    }
}

/// The gRPC server on an ephemeral port over a [`Repo`].
pub struct Server {
    addr: SocketAddr,
    manager: Manager,
    _repo: Repo,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), mofang_grpc::Error>>,
}

impl Server {
    pub async fn start(repo: Repo) -> Server {
        Server::start_with(repo, GrpcConfig::default()).await
    }

    pub async fn start_with(repo: Repo, config: GrpcConfig) -> Server {
        let backends = Backends::detect(None);
        if let Some(reason) = backends.onnxruntime_error() {
            panic!("ONNX Runtime is not available ({reason}): {SETUP_HINT}");
        }
        let manager = Manager::start(ManagerOptions {
            source: Source::Repository(repo.path().to_path_buf()),
            poll_interval: None,
            backends,
            metrics: Default::default(),
        })
        .await
        .expect("the manager starts on a temporary repository");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(mofang_grpc::serve(
            listener,
            manager.clone(),
            config,
            async move {
                let _ = signal.await;
            },
        ));
        Server {
            addr,
            manager,
            _repo: repo,
            shutdown: Some(shutdown),
            task,
        }
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .expect("a valid URI")
            .connect_timeout(WAIT)
            .connect()
            .await
            .expect("connect to the gRPC server")
    }

    pub async fn prediction(&self) -> PredictionServiceClient<Channel> {
        PredictionServiceClient::new(self.channel().await).max_decoding_message_size(usize::MAX)
    }

    pub async fn models(&self) -> ModelServiceClient<Channel> {
        ModelServiceClient::new(self.channel().await)
    }

    pub async fn inference(&self) -> GrpcInferenceServiceClient<Channel> {
        GrpcInferenceServiceClient::new(self.channel().await).max_decoding_message_size(usize::MAX)
    }

    /// `mofang_serve_requests_total` for these labels; 0 when the series does not exist.
    pub fn request_count(&self, model: &str, version: &str, protocol: &str, outcome: &str) -> f64 {
        let text = self.manager.metrics().registry.render();
        let series = format!(
            "mofang_serve_requests_total{{model=\"{model}\",version=\"{version}\",protocol=\"{protocol}\",outcome=\"{outcome}\"}} "
        );
        text.lines()
            .find_map(|l| l.strip_prefix(&series))
            .map_or(0.0, |v| v.parse().expect("a sample value is a number"))
    }

    /// The rendered metrics text.
    pub fn metrics(&self) -> String {
        self.manager.metrics().registry.render()
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

    pub fn f32s(&self) -> Vec<f32> {
        self.data
            .iter()
            .map(|v| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")) as f32)
            .collect()
    }

    pub fn f64s(&self) -> Vec<f64> {
        self.data
            .iter()
            .map(|v| v.as_f64().unwrap_or_else(|| panic!("not a number: {v}")))
            .collect()
    }

    pub fn i64s(&self) -> Vec<i64> {
        self.data
            .iter()
            .map(|v| v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}")))
            .collect()
    }

    pub fn bools(&self) -> Vec<bool> {
        self.data
            .iter()
            .map(|v| v.as_bool().unwrap_or_else(|| panic!("not a bool: {v}")))
            .collect()
    }

    pub fn byte_strings(&self) -> Vec<Vec<u8>> {
        self.data
            .iter()
            .map(|v| {
                v.as_str()
                    .unwrap_or_else(|| panic!("not a string: {v}"))
                    .as_bytes()
                    .to_vec()
            })
            .collect()
    }

    pub fn shape_i64(&self) -> Vec<i64> {
        self.shape.iter().map(|d| *d as i64).collect()
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
        let dtype = v["dtype"].as_str().expect("reference dtype is a string");
        TestTensor::new(dtype, &shape, data)
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
    let model = model.to_path_buf();
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
            .arg(&model)
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
            "ort_reference.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Value>(&out.stdout).expect("ort_reference.py prints JSON")
    };
    let result = tokio::task::spawn_blocking(run)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    result["outputs"]
        .as_object()
        .unwrap_or_else(|| panic!("no outputs from ort_reference.py: {result}"))
        .iter()
        .map(|(name, t)| (name.clone(), TestTensor::from_reference(t)))
        .collect()
}

/// Asserts that `actual` equals `expected` within `tol` relative to `max(1, |expected|)`.
pub fn assert_close(actual: &[f64], expected: &[f64], tol: f64, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: lengths differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= tol * e.abs().max(1.0),
            "{what}[{i}]: {a}, expected {e} (tolerance {tol})\n  actual:   {actual:?}\n  expected: {expected:?}"
        );
    }
}

/// f32 values widened, for [`assert_close`].
pub fn wide(v: &[f32]) -> Vec<f64> {
    v.iter().map(|x| f64::from(*x)).collect()
}
