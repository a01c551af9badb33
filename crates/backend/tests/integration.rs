//! Conformance suite for [`Backend`]: every test is written once as a function taking
//! `&dyn Backend` and instantiated for each implementation by `conformance_suite!` (the way
//! object_store's `integration.rs` runs one suite on every store).
//!
//! The oracle is ONNX Runtime's Python API: `scripts/ort_reference.py` runs the same model on
//! the same pseudo-random inputs inside the test, so no expected number is written down here.
//! Needs `. scripts/env.sh` (MOFANG_PYTHON, MOFANG_TEST_MODELS, ORT_DYLIB_PATH) and the models
//! that scripts/setup.sh generates.

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use mofang_backend::{
    Backend, BackendKind, Backends, DataType, Error, LoadOptions, Model, OrtBackend, Tensor,
    TensorData, TensorSpec, element_count,
};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------- the suite, once per backend

macro_rules! conformance_suite {
    ($($test:ident),* $(,)?) => {
        mod onnxruntime {
            $(
                #[test]
                fn $test() {
                    super::$test(&super::onnxruntime());
                }
            )*
        }

        mod tract {
            $(
                #[test]
                fn $test() {
                    super::$test(&mofang_backend::TractBackend);
                }
            )*
        }
    };
}

conformance_suite!(
    reports_the_specs_of_every_model,
    add_mul_runs_like_onnxruntime_python,
    tiny_runs_like_onnxruntime_python,
    image_nchw_runs_like_onnxruntime_python,
    image_nhwc_runs_like_onnxruntime_python,
    every_dtype_runs_like_onnxruntime_python,
    strings_run_like_onnxruntime_python,
    check_inputs_errors_name_the_input_and_expected_shape,
    check_inputs_puts_inputs_in_graph_order,
    corrupt_model_is_a_load_error_naming_the_path,
    missing_model_is_a_load_error_naming_the_path,
    concurrent_runs_on_two_instances_are_correct,
);

#[test]
fn detect_picks_onnxruntime_when_ort_dylib_path_is_set() {
    let library = env_path("ORT_DYLIB_PATH");
    assert!(
        library.is_file(),
        "ORT_DYLIB_PATH={} is not a file",
        library.display()
    );
    let backends = Backends::detect(None);
    assert_eq!(backends.onnxruntime_error(), None);
    assert_eq!(backends.default_kind(), BackendKind::OnnxRuntime);
    let ort = backends
        .get(BackendKind::OnnxRuntime)
        .expect("ONNX Runtime was detected");
    assert_eq!(ort.kind(), BackendKind::OnnxRuntime);
    let tract = backends
        .get(BackendKind::Tract)
        .expect("tract is compiled in by default");
    assert_eq!(tract.kind(), BackendKind::Tract);
    assert_eq!(onnxruntime().library(), library);
}

// ---------------------------------------------------------------- the test models

/// One input or output: name, dtype, shape with `None` for the symbolic batch dimension.
type Io = (&'static str, DataType, &'static [Option<usize>]);

/// A model made by scripts/make_test_models.py and what it declares.
struct TestModel {
    file: &'static str,
    inputs: &'static [Io],
    outputs: &'static [Io],
}

const BATCH: Option<usize> = None;
const ROW2: &[Option<usize>] = &[BATCH, Some(2)];
const IMAGE_LOGITS: &[Io] = &[("logits", DataType::F32, &[BATCH, Some(10)])];

const ADD_MUL: TestModel = TestModel {
    file: "add_mul.onnx",
    inputs: &[
        ("a", DataType::F32, &[BATCH, Some(3)]),
        ("b", DataType::F32, &[BATCH, Some(3)]),
    ],
    outputs: &[
        ("sum", DataType::F32, &[BATCH, Some(3)]),
        ("prod", DataType::F32, &[BATCH, Some(3)]),
    ],
};

const TINY: TestModel = TestModel {
    file: "tiny.onnx",
    inputs: &[("x", DataType::F32, &[BATCH, Some(4)])],
    outputs: &[("y", DataType::F32, &[BATCH, Some(2)])],
};

const DTYPES: TestModel = TestModel {
    file: "dtypes.onnx",
    inputs: &[
        ("f32", DataType::F32, ROW2),
        ("f64", DataType::F64, ROW2),
        ("i8", DataType::I8, ROW2),
        ("i16", DataType::I16, ROW2),
        ("i32", DataType::I32, ROW2),
        ("i64", DataType::I64, ROW2),
        ("u8", DataType::U8, ROW2),
        ("flag", DataType::Bool, ROW2),
    ],
    outputs: &[
        ("f32_out", DataType::F32, ROW2),
        ("f64_out", DataType::F64, ROW2),
        ("i8_out", DataType::I8, ROW2),
        ("i16_out", DataType::I16, ROW2),
        ("i32_out", DataType::I32, ROW2),
        ("i64_out", DataType::I64, ROW2),
        ("u8_out", DataType::U8, ROW2),
        ("flag_out", DataType::Bool, ROW2),
    ],
};

const STRINGS: TestModel = TestModel {
    file: "strings.onnx",
    inputs: &[("text", DataType::Bytes, &[BATCH])],
    outputs: &[("text_out", DataType::Bytes, &[BATCH])],
};

const IMAGE_NCHW: TestModel = TestModel {
    file: "image_nchw.onnx",
    inputs: &[(
        "input",
        DataType::F32,
        &[BATCH, Some(3), Some(32), Some(32)],
    )],
    outputs: IMAGE_LOGITS,
};

const IMAGE_NHWC: TestModel = TestModel {
    file: "image_nhwc.onnx",
    inputs: &[(
        "input",
        DataType::F32,
        &[BATCH, Some(32), Some(32), Some(3)],
    )],
    outputs: IMAGE_LOGITS,
};

const MODELS: [&TestModel; 6] = [&ADD_MUL, &TINY, &DTYPES, &STRINGS, &IMAGE_NCHW, &IMAGE_NHWC];

/// Batch sizes every model is run with.
const BATCH_SIZES: [usize; 3] = [1, 3, 7];

fn specs(ios: &[Io]) -> Vec<TensorSpec> {
    ios.iter()
        .map(|(name, dtype, shape)| TensorSpec {
            name: name.to_string(),
            dtype: *dtype,
            shape: shape.to_vec(),
        })
        .collect()
}

// ---------------------------------------------------------------- the tests

fn reports_the_specs_of_every_model(backend: &dyn Backend) {
    for model in MODELS {
        let loaded = load(backend, model.file, &LoadOptions::default());
        assert_eq!(
            loaded.inputs(),
            specs(model.inputs),
            "{} inputs of {}",
            backend.kind(),
            model.file
        );
        assert_eq!(
            loaded.outputs(),
            specs(model.outputs),
            "{} outputs of {}",
            backend.kind(),
            model.file
        );
    }
}

fn add_mul_runs_like_onnxruntime_python(backend: &dyn Backend) {
    assert_runs_like_reference(backend, &ADD_MUL);
}

fn tiny_runs_like_onnxruntime_python(backend: &dyn Backend) {
    assert_runs_like_reference(backend, &TINY);
}

fn image_nchw_runs_like_onnxruntime_python(backend: &dyn Backend) {
    assert_runs_like_reference(backend, &IMAGE_NCHW);
}

fn image_nhwc_runs_like_onnxruntime_python(backend: &dyn Backend) {
    assert_runs_like_reference(backend, &IMAGE_NHWC);
}

fn every_dtype_runs_like_onnxruntime_python(backend: &dyn Backend) {
    assert_runs_like_reference(backend, &DTYPES);
}

fn strings_run_like_onnxruntime_python(backend: &dyn Backend) {
    assert_runs_like_reference(backend, &STRINGS);
}

fn check_inputs_errors_name_the_input_and_expected_shape(backend: &dyn Backend) {
    let tiny = load(backend, TINY.file, &LoadOptions::default());
    let x = |tensor: Tensor| ("x".to_string(), tensor);
    let check = |inputs| tiny.check_inputs(inputs);
    let f64_row = Tensor::new(vec![1, 4], TensorData::F64(vec![0.0; 4])).expect("1x4");
    let unknown = vec![
        x(f32_tensor(vec![1, 4])),
        ("z".into(), f32_tensor(vec![1, 4])),
    ];
    assert_invalid_input(
        "wrong width",
        check(vec![x(f32_tensor(vec![2, 3]))]),
        &["`x`", "[-1, 4]", "[2, 3]"],
    );
    assert_invalid_input(
        "wrong rank",
        check(vec![x(f32_tensor(vec![4]))]),
        &["`x`", "[-1, 4]", "[4]"],
    );
    assert_invalid_input(
        "wrong dtype",
        check(vec![x(f64_row)]),
        &["`x`", "float32", "float64"],
    );
    assert_invalid_input("missing", check(Vec::new()), &["`x`", "float32", "[-1, 4]"]);
    assert_invalid_input("unknown", check(unknown), &["`z`", "\"x\""]);
    let add_mul = load(backend, ADD_MUL.file, &LoadOptions::default());
    let only_a = add_mul.check_inputs(vec![("a".into(), f32_tensor(vec![2, 3]))]);
    assert_invalid_input("b missing", only_a, &["`b`", "[-1, 3]"]);
}

fn check_inputs_puts_inputs_in_graph_order(backend: &dyn Backend) {
    let add_mul = load(backend, ADD_MUL.file, &LoadOptions::default());
    let a = f32_tensor(vec![2, 3]);
    let b = Tensor::new(vec![2, 3], TensorData::F32(vec![1.0; 6])).expect("2x3");
    let ordered = add_mul
        .check_inputs(vec![("b".into(), b.clone()), ("a".into(), a.clone())])
        .expect("both inputs fit");
    assert_eq!(ordered, vec![("a".to_string(), a), ("b".to_string(), b)]);
}

fn corrupt_model_is_a_load_error_naming_the_path(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("corrupt.onnx");
    std::fs::write(
        &path,
        b"this is not a protobuf, let alone an ONNX model\xff\xfe",
    )
    .expect("write the corrupt model");
    assert_load_error_names(backend, &path);
}

fn missing_model_is_a_load_error_naming_the_path(backend: &dyn Backend) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    assert_load_error_names(backend, &dir.path().join("absent.onnx"));
}

/// Eight threads share one model loaded with two instances (two ONNX Runtime sessions); each
/// runs its own row many times, and every result must be that row's reference output.
fn concurrent_runs_on_two_instances_are_correct(backend: &dyn Backend) {
    const THREADS: usize = 8;
    const RUNS_PER_THREAD: usize = 20;
    let options = LoadOptions {
        instances: 2,
        ..LoadOptions::default()
    };
    let model = load(backend, IMAGE_NCHW.file, &options);
    let batch = random_inputs(&IMAGE_NCHW, THREADS, 0xC0FFEE);
    let reference = reference_outputs(IMAGE_NCHW.file, &batch);
    let input_rows = batch[0]
        .1
        .split(&[1; THREADS])
        .expect("8 rows split into 8");
    let (done, results) = mpsc::channel();
    for (row, input) in input_rows.into_iter().enumerate() {
        let model = Arc::clone(&model);
        let expected = reference_row(&reference, "logits", row);
        let done = done.clone();
        std::thread::spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                for run in 0..RUNS_PER_THREAD {
                    let outputs = model
                        .run(vec![("input".into(), input.clone())])
                        .unwrap_or_else(|e| panic!("thread {row}, run {run}: {e}"));
                    assert_eq!(outputs.len(), 1, "thread {row}: one output");
                    assert_matches_reference(
                        &format!("thread {row}, run {run}"),
                        &outputs[0].1,
                        &expected,
                    );
                }
            }));
            done.send((row, outcome.err().map(panic_message)))
                .expect("the test is waiting");
        });
    }
    drop(done);
    for _ in 0..THREADS {
        let (row, failure) = results
            .recv_timeout(Duration::from_secs(120))
            .expect("every thread finishes within 120 s (a deadlock in the session pool?)");
        if let Some(message) = failure {
            panic!("{}: thread {row} failed: {message}", backend.kind());
        }
    }
}

// ---------------------------------------------------------------- helpers

fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set: run `. scripts/env.sh` before the tests"))
}

fn model_path(file: &str) -> PathBuf {
    let path = env_path("MOFANG_TEST_MODELS").join(file);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/setup.sh",
        path.display()
    );
    path
}

fn onnxruntime() -> OrtBackend {
    OrtBackend::new(None).expect("ONNX Runtime loads from ORT_DYLIB_PATH (run `. scripts/env.sh`)")
}

fn load(backend: &dyn Backend, file: &str, options: &LoadOptions) -> Arc<dyn Model> {
    backend
        .load(&model_path(file), options)
        .unwrap_or_else(|e| panic!("{} cannot load {file}: {e}", backend.kind()))
}

fn assert_load_error_names(backend: &dyn Backend, path: &Path) {
    let kind = backend.kind();
    let Err(err) = backend.load(path, &LoadOptions::default()) else {
        panic!("{kind} loaded {}", path.display());
    };
    let Error::Load { path: reported, .. } = &err else {
        panic!("{kind}: expected Error::Load, got {err:?}");
    };
    assert_eq!(reported, path, "{kind}: {err}");
    let shown = err.to_string();
    assert!(
        shown.contains(&path.display().to_string()),
        "{kind}: {shown}"
    );
}

/// `checked` is an [`Error::InvalidInput`] whose message mentions every needle.
fn assert_invalid_input(
    case: &str,
    checked: mofang_backend::Result<Vec<(String, Tensor)>>,
    needles: &[&str],
) {
    let err = checked.expect_err(case);
    assert!(matches!(err, Error::InvalidInput(_)), "{case}: {err:?}");
    let message = err.to_string();
    for needle in needles {
        assert!(
            message.contains(needle),
            "{case}: `{message}` should mention {needle}"
        );
    }
}

fn f32_tensor(shape: Vec<usize>) -> Tensor {
    let n = element_count(&shape);
    Tensor::new(shape, TensorData::F32(vec![0.5; n])).expect("data sized from the shape")
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Knuth's MMIX linear congruential generator: small, deterministic, good enough for inputs.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Uniform in [-4, 4), in steps of 1/1024 (exact in every float type).
    fn float(&mut self) -> f64 {
        (self.below(8 * 1024) as f64) / 1024.0 - 4.0
    }

    /// In -50..50: `+ 1` cannot overflow any signed type.
    fn signed(&mut self) -> i64 {
        self.below(100) as i64 - 50
    }
}

/// Strings mixing ASCII, CJK, emoji and the empty string.
const WORDS: [&str; 6] = ["hello", "魔方", "", "naïve café", "🦀 tract", "a\tb\nc"];

fn random_tensor(rng: &mut Lcg, dtype: DataType, shape: Vec<usize>) -> Tensor {
    let n = element_count(&shape);
    let data = match dtype {
        DataType::F32 => TensorData::F32((0..n).map(|_| rng.float() as f32).collect()),
        DataType::F64 => TensorData::F64((0..n).map(|_| rng.float()).collect()),
        DataType::I8 => TensorData::I8((0..n).map(|_| rng.signed() as i8).collect()),
        DataType::I16 => TensorData::I16((0..n).map(|_| rng.signed() as i16).collect()),
        DataType::I32 => TensorData::I32((0..n).map(|_| rng.signed() as i32).collect()),
        DataType::I64 => TensorData::I64((0..n).map(|_| rng.signed()).collect()),
        DataType::U8 => TensorData::U8((0..n).map(|_| rng.below(200) as u8).collect()),
        DataType::Bool => TensorData::Bool((0..n).map(|_| rng.below(2) == 1).collect()),
        DataType::Bytes => TensorData::Bytes(
            (0..n)
                .map(|_| {
                    WORDS[rng.below(WORDS.len() as u64) as usize]
                        .as_bytes()
                        .to_vec()
                })
                .collect(),
        ),
        other => panic!("no test model takes {other} (and ort_reference.py cannot encode it)"),
    };
    Tensor::new(shape, data).expect("data sized from the shape")
}

/// Inputs for every graph input of `model`, with the batch dimension set to `batch`.
fn random_inputs(model: &TestModel, batch: usize, seed: u64) -> Vec<(String, Tensor)> {
    let mut rng = Lcg(seed);
    model
        .inputs
        .iter()
        .map(|(name, dtype, shape)| {
            let shape = shape.iter().map(|d| d.unwrap_or(batch)).collect();
            (name.to_string(), random_tensor(&mut rng, *dtype, shape))
        })
        .collect()
}

/// A tensor in ort_reference.py's format: `{"dtype", "shape", "data": [flat]}`.
fn tensor_json(tensor: &Tensor) -> Value {
    let data = match tensor.data() {
        TensorData::F32(v) => json!(v),
        TensorData::F64(v) => json!(v),
        TensorData::I8(v) => json!(v),
        TensorData::I16(v) => json!(v),
        TensorData::I32(v) => json!(v),
        TensorData::I64(v) => json!(v),
        TensorData::U8(v) => json!(v),
        TensorData::Bool(v) => json!(v),
        TensorData::Bytes(v) => json!(
            v.iter()
                .map(|s| String::from_utf8(s.clone()).expect("test strings are UTF-8"))
                .collect::<Vec<_>>()
        ),
        other => panic!("ort_reference.py cannot encode {}", other.dtype()),
    };
    json!({"dtype": tensor.dtype().short_name(), "shape": tensor.shape(), "data": data})
}

/// ONNX Runtime's Python API on `inputs`: `{"output name": tensor_json-style value}`.
fn reference_outputs(file: &str, inputs: &[(String, Tensor)]) -> Map<String, Value> {
    let request: Map<String, Value> = inputs
        .iter()
        .map(|(name, t)| (name.clone(), tensor_json(t)))
        .collect();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/ort_reference.py"
    );
    let mut child = Command::new(env_path("MOFANG_PYTHON"))
        .arg(script)
        .arg(model_path(file))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("MOFANG_PYTHON starts (run scripts/setup.sh)");
    child
        .stdin
        .take()
        .expect("stdin was piped")
        .write_all(json!({ "inputs": request }).to_string().as_bytes())
        .expect("write the request to ort_reference.py");
    let output = child.wait_with_output().expect("ort_reference.py runs");
    assert!(
        output.status.success(),
        "ort_reference.py {file} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut reply: Value =
        serde_json::from_slice(&output.stdout).expect("ort_reference.py prints JSON");
    match reply["outputs"].take() {
        Value::Object(outputs) => outputs,
        other => panic!("ort_reference.py printed no outputs object: {other}"),
    }
}

/// Row `row` of the reference output `name` (a batch of one).
fn reference_row(reference: &Map<String, Value>, name: &str, row: usize) -> Value {
    let tensor = &reference[name];
    let data = tensor["data"]
        .as_array()
        .expect("reference data is an array");
    let shape: Vec<u64> = serde_json::from_value(tensor["shape"].clone()).expect("reference shape");
    let row_len = data.len() / shape[0] as usize;
    let mut row_shape = shape;
    row_shape[0] = 1;
    json!({
        "dtype": tensor["dtype"],
        "shape": row_shape,
        "data": data[row * row_len..(row + 1) * row_len],
    })
}

/// A reference float: a JSON number, or "NaN" / "Infinity" / "-Infinity".
fn reference_float(value: &Value) -> f64 {
    match value {
        Value::Number(n) => n.as_f64().expect("a JSON number is an f64"),
        Value::String(s) if s == "NaN" => f64::NAN,
        Value::String(s) if s == "Infinity" => f64::INFINITY,
        Value::String(s) if s == "-Infinity" => f64::NEG_INFINITY,
        other => panic!("not a reference float: {other}"),
    }
}

fn assert_floats_close(what: &str, actual: &[f64], expected: &[Value], tolerance: f64) {
    assert_eq!(actual.len(), expected.len(), "{what}: element count");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        let e = reference_float(e);
        let close =
            (a.is_nan() && e.is_nan()) || a == &e || (a - e).abs() <= tolerance * e.abs().max(1.0);
        assert!(
            close,
            "{what}: element {i} is {a}, ONNX Runtime (Python) says {e}"
        );
    }
}

/// Floats within a relative tolerance (backends may sum in another order), the rest exactly.
fn assert_matches_reference(what: &str, actual: &Tensor, expected: &Value) {
    assert_eq!(
        expected["dtype"],
        actual.dtype().short_name(),
        "{what}: dtype"
    );
    assert_eq!(expected["shape"], json!(actual.shape()), "{what}: shape");
    let want = expected["data"]
        .as_array()
        .expect("reference data is an array");
    match actual.data() {
        TensorData::F32(v) => {
            let widened: Vec<f64> = v.iter().map(|x| f64::from(*x)).collect();
            assert_floats_close(what, &widened, want, 1e-5);
        }
        TensorData::F64(v) => assert_floats_close(what, v, want, 1e-12),
        _ => assert_eq!(
            &tensor_json(actual)["data"],
            &expected["data"],
            "{what}: data"
        ),
    }
}

/// Runs `model` at every batch size on pseudo-random inputs and compares every output with
/// ONNX Runtime's Python API on the same inputs.
fn assert_runs_like_reference(backend: &dyn Backend, model: &TestModel) {
    let loaded = load(backend, model.file, &LoadOptions::default());
    for (seed, batch) in BATCH_SIZES.into_iter().enumerate() {
        let what = format!("{} on {}, batch {batch}", backend.kind(), model.file);
        let inputs = random_inputs(model, batch, seed as u64 + 1);
        let checked = loaded
            .check_inputs(inputs.clone())
            .unwrap_or_else(|e| panic!("{what}: check_inputs: {e}"));
        let outputs = loaded
            .run(checked)
            .unwrap_or_else(|e| panic!("{what}: run: {e}"));
        let names: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
        let declared: Vec<&str> = model.outputs.iter().map(|(n, _, _)| *n).collect();
        assert_eq!(names, declared, "{what}: outputs in declared order");
        let reference = reference_outputs(model.file, &inputs);
        for (name, tensor) in &outputs {
            assert_matches_reference(
                &format!("{what}, output `{name}`"),
                tensor,
                &reference[name],
            );
        }
    }
}
