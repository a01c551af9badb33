//! The batcher as its callers see it: a fake model (`y = 2 * x`) records every execution it is
//! given, and the tests check which requests shared an execution and what each caller got back.
//!
//! Every request is built so that its rows can be recognised: row `r` of request `id` holds
//! `id * 1000 + r * 10 + column`, so the first value of a row names the request it came from.
//! Batches in these tests run because they are full (the queue delay is far longer than the
//! test) or after a short delay that only bounds the wait from below; nothing asserts a speed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use futures::future::join_all;
use mofang_backend::{DataType, Model, Tensor, TensorData, TensorSpec};
use mofang_batch::{BatchConfig, BatchMetrics, Batcher, Batching, Error};
use mofang_metrics::{Gauge, Histogram};

/// The longest a test waits for something that should happen.
const WAIT: Duration = Duration::from_secs(10);

/// A queue delay longer than any test: a batch that runs did so because it was full.
const LONG_DELAY: Duration = Duration::from_secs(5);

type Outputs = Vec<(String, Tensor)>;

/// The constant `[3, 3]` output of a model made [`Fake::with_constant`].
fn constant() -> Tensor {
    Tensor::new(
        vec![3, 3],
        TensorData::F32((0..9).map(|v| v as f32).collect()),
    )
    .expect("9 values fit [3, 3]")
}

// ---------------------------------------------------------------------------------------------
// The fake model
// ---------------------------------------------------------------------------------------------

/// What one execution received.
#[derive(Debug, Clone)]
struct Run {
    shape: Vec<usize>,
    values: Vec<f32>,
}

impl Run {
    fn rows(&self) -> usize {
        self.shape[0]
    }

    /// The request each row came from (see the module comment).
    fn row_ids(&self) -> Vec<u32> {
        let width = self.shape[1];
        self.values
            .chunks(width)
            .map(|row| (row[0] / 1000.0).floor() as u32)
            .collect()
    }
}

/// Holds executions while closed. Never holds longer than [`WAIT`], so a failing test cannot
/// leave a worker thread stuck.
#[derive(Default)]
struct Gate {
    closed: Mutex<bool>,
    changed: Condvar,
}

impl Gate {
    fn close(&self) {
        *lock(&self.closed) = true;
    }

    fn open(&self) {
        *lock(&self.closed) = false;
        self.changed.notify_all();
    }

    fn pass(&self) {
        let deadline = Instant::now() + WAIT;
        let mut closed = lock(&self.closed);
        while *closed {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            closed = self
                .changed
                .wait_timeout(closed, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `y = 2 * x` for `x` float32 `[batch, width]`; fails on a negative input value.
struct Fake {
    inputs: Vec<TensorSpec>,
    outputs: Vec<TensorSpec>,
    /// Also return [`constant`] as output `k`, which has no batch dimension.
    with_constant: bool,
    /// When set, each execution waits (at most this long) until two have been running at once.
    rendezvous: Option<Duration>,
    gate: Gate,
    runs: Mutex<Vec<Run>>,
    running: AtomicUsize,
    max_running: AtomicUsize,
}

impl Fake {
    fn new() -> Fake {
        let spec = |name: &str, shape: Vec<Option<usize>>| TensorSpec {
            name: name.into(),
            dtype: DataType::F32,
            shape,
        };
        Fake {
            inputs: vec![spec("x", vec![None, None])],
            outputs: vec![
                spec("y", vec![None, None]),
                spec("k", vec![Some(3), Some(3)]),
            ],
            with_constant: false,
            rendezvous: None,
            gate: Gate::default(),
            runs: Mutex::new(Vec::new()),
            running: AtomicUsize::new(0),
            max_running: AtomicUsize::new(0),
        }
    }

    fn with_constant(mut self) -> Fake {
        self.with_constant = true;
        self
    }

    fn with_rendezvous(mut self, patience: Duration) -> Fake {
        self.rendezvous = Some(patience);
        self
    }

    fn runs(&self) -> Vec<Run> {
        lock(&self.runs).clone()
    }

    fn run_count(&self) -> usize {
        lock(&self.runs).len()
    }

    /// The rows of every execution so far, in order.
    fn batch_sizes(&self) -> Vec<usize> {
        self.runs().iter().map(Run::rows).collect()
    }

    /// Every request id that reached the model, in order.
    fn ids_seen(&self) -> Vec<u32> {
        self.runs().iter().flat_map(Run::row_ids).collect()
    }
}

impl Model for Fake {
    fn inputs(&self) -> &[TensorSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorSpec] {
        &self.outputs
    }

    fn run(&self, inputs: Vec<(String, Tensor)>) -> mofang_backend::Result<Outputs> {
        let fail = |m: String| Err(mofang_backend::Error::Inference(m));
        let [(name, x)]: [(String, Tensor); 1] = match inputs.try_into() {
            Ok(one) => one,
            Err(all) => return fail(format!("expected only x, got {} inputs", all.len())),
        };
        let (shape, data) = x.into_parts();
        let TensorData::F32(values) = data else {
            return fail(format!("{name} is not float32"));
        };
        if name != "x" || shape.len() != 2 {
            return fail(format!("expected x [batch, width], got {name} {shape:?}"));
        }
        lock(&self.runs).push(Run {
            shape: shape.clone(),
            values: values.clone(),
        });

        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        if let Some(patience) = self.rendezvous {
            let deadline = Instant::now() + patience;
            while self.max_running.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        self.gate.pass();
        self.running.fetch_sub(1, Ordering::SeqCst);

        if let Some(bad) = values.iter().find(|v| **v < 0.0) {
            return fail(format!("the fake model refuses negative input {bad}"));
        }
        let y = Tensor::new(
            shape,
            TensorData::F32(values.iter().map(|v| v * 2.0).collect()),
        )
        .expect("y has the shape of x");
        let mut out = vec![("y".to_string(), y)];
        if self.with_constant {
            out.push(("k".to_string(), constant()));
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Requests, configs and checks
// ---------------------------------------------------------------------------------------------

fn values(id: u32, rows: usize, width: usize) -> Vec<f32> {
    (0..rows)
        .flat_map(|r| (0..width).map(move |c| (id as usize * 1000 + r * 10 + c) as f32))
        .collect()
}

/// Input `x` of request `id`: `[rows, width]`.
fn request(id: u32, rows: usize, width: usize) -> Outputs {
    let x = Tensor::new(vec![rows, width], TensorData::F32(values(id, rows, width)))
        .expect("the values fit the shape");
    vec![("x".to_string(), x)]
}

/// A request the fake model fails on.
fn poisoned(id: u32, width: usize) -> Outputs {
    let mut v = values(id, 1, width);
    v[width - 1] = -1.0;
    let x = Tensor::new(vec![1, width], TensorData::F32(v)).expect("the values fit the shape");
    vec![("x".to_string(), x)]
}

fn output<'a>(outputs: &'a Outputs, name: &str) -> &'a Tensor {
    outputs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, t)| t)
        .unwrap_or_else(|| panic!("no output {name} in {outputs:?}"))
}

/// Asserts that request `id` got `y = 2 * x` for exactly its own rows.
fn assert_own_answer(result: &Result<Outputs, Error>, id: u32, rows: usize, width: usize) {
    let outputs = result
        .as_ref()
        .unwrap_or_else(|e| panic!("request {id} failed: {e}"));
    let y = output(outputs, "y");
    assert_eq!(y.shape(), &[rows, width], "shape of y for request {id}");
    let want: Vec<f32> = values(id, rows, width).iter().map(|v| v * 2.0).collect();
    assert_eq!(y.data(), &TensorData::F32(want), "y of request {id}");
}

fn batching(max_batch_size: usize, delay: Duration, allowed: &[usize]) -> Option<Batching> {
    Some(Batching {
        max_batch_size,
        max_queue_delay: delay,
        allowed_batch_sizes: allowed.to_vec(),
    })
}

fn config(batching: Option<Batching>, max_queue_size: usize, instances: usize) -> BatchConfig {
    BatchConfig {
        batching,
        max_queue_size,
        instances,
    }
}

fn start(model: &Arc<Fake>, config: BatchConfig) -> Batcher {
    Batcher::start("test", Arc::clone(model) as Arc<dyn Model>, config, None)
        .expect("start the worker threads")
}

fn metric_cells() -> BatchMetrics {
    BatchMetrics {
        queue_duration: Arc::new(Histogram::default()),
        compute_duration: Arc::new(Histogram::default()),
        batch_size: Arc::new(Histogram::default()),
        queue_depth: Arc::new(Gauge::default()),
    }
}

fn start_with_metrics(model: &Arc<Fake>, config: BatchConfig, metrics: &BatchMetrics) -> Batcher {
    let model = Arc::clone(model) as Arc<dyn Model>;
    Batcher::start("test", model, config, Some(metrics.clone())).expect("start the worker threads")
}

/// Polls `check` until it holds; fails the test after [`WAIT`].
async fn wait_until(what: &str, check: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "not true within {WAIT:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Awaits `work`, failing the test instead of hanging when no answer comes.
async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {WAIT:?}"))
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn concurrent_requests_share_executions_and_each_caller_gets_its_own_rows() {
    let model = Arc::new(Fake::new());
    let metrics = metric_cells();
    let batcher = start_with_metrics(
        &model,
        config(batching(4, LONG_DELAY, &[]), 64, 1),
        &metrics,
    );

    let results = within(
        "8 requests",
        join_all((1..=8).map(|id| batcher.infer(request(id, 1, 3)))),
    )
    .await;

    for (id, result) in (1..=8).zip(&results) {
        assert_own_answer(result, id, 1, 3);
    }
    // Full batches run at once; the queue delay (5 s) never came into play.
    assert_eq!(model.batch_sizes(), vec![4, 4], "{:?}", model.runs());
    assert_eq!(model.ids_seen(), (1..=8).collect::<Vec<_>>(), "FIFO order");

    assert_eq!(
        metrics.batch_size.count(),
        2,
        "one observation per execution"
    );
    assert_eq!(metrics.batch_size.sum(), 8.0, "rows over all executions");
    assert_eq!(metrics.compute_duration.count(), 2);
    assert_eq!(
        metrics.queue_duration.count(),
        8,
        "one observation per request"
    );
    assert!(metrics.queue_duration.sum() >= 0.0);
    assert_eq!(metrics.queue_depth.get(), 0, "nothing is left waiting");
}

#[tokio::test]
async fn requests_of_several_rows_are_split_back_by_their_own_row_counts() {
    let model = Arc::new(Fake::new());
    let batcher = start(&model, config(batching(8, LONG_DELAY, &[]), 64, 1));
    let sizes = [(1, 3), (2, 1), (3, 4)];

    let results = within(
        "3 requests of 8 rows in all",
        join_all(
            sizes
                .iter()
                .map(|&(id, rows)| batcher.infer(request(id, rows, 2))),
        ),
    )
    .await;

    for (&(id, rows), result) in sizes.iter().zip(&results) {
        assert_own_answer(result, id, rows, 2);
    }
    assert_eq!(model.batch_sizes(), vec![8]);
    assert_eq!(model.ids_seen(), vec![1, 1, 1, 2, 3, 3, 3, 3]);
}

#[tokio::test]
async fn a_partial_batch_runs_once_the_queue_delay_has_passed() {
    let model = Arc::new(Fake::new());
    let delay = Duration::from_millis(200);
    let batcher = start(&model, config(batching(8, delay, &[]), 64, 1));

    let started = Instant::now();
    let results = within(
        "3 requests",
        join_all((1..=3).map(|id| batcher.infer(request(id, 1, 2)))),
    )
    .await;
    let waited = started.elapsed();

    for (id, result) in (1..=3).zip(&results) {
        assert_own_answer(result, id, 1, 2);
    }
    assert_eq!(model.batch_sizes(), vec![3], "one execution for the 3 rows");
    assert!(
        waited >= delay,
        "a batch that is not full waits for max_queue_delay ({delay:?}), answered after {waited:?}"
    );
}

#[tokio::test]
async fn without_batching_every_request_runs_alone_whatever_its_size() {
    let model = Arc::new(Fake::new());
    let batcher = start(&model, config(None, 64, 1));
    let sizes = [(1, 2), (2, 1), (3, 100), (4, 2)];

    let results = within(
        "4 requests",
        join_all(
            sizes
                .iter()
                .map(|&(id, rows)| batcher.infer(request(id, rows, 3))),
        ),
    )
    .await;

    for (&(id, rows), result) in sizes.iter().zip(&results) {
        assert_own_answer(result, id, rows, 3);
    }
    assert_eq!(model.batch_sizes(), vec![2, 1, 100, 2]);
}

#[tokio::test]
async fn requests_with_different_row_shapes_never_share_an_execution() {
    let model = Arc::new(Fake::new());
    let batcher = start(&model, config(batching(3, LONG_DELAY, &[]), 64, 1));
    // Interleaved: ids 1, 3, 5 are 2 wide; ids 2, 4, 6 are 3 wide.
    let width = |id: u32| if id % 2 == 1 { 2 } else { 3 };

    let results = within(
        "6 requests of two shapes",
        join_all((1..=6).map(|id| batcher.infer(request(id, 1, width(id))))),
    )
    .await;

    for (id, result) in (1..=6).zip(&results) {
        assert_own_answer(result, id, 1, width(id));
    }
    let runs = model.runs();
    for run in &runs {
        for id in run.row_ids() {
            assert_eq!(
                width(id),
                run.shape[1],
                "request {id} ran in an execution of shape {:?}: {runs:?}",
                run.shape
            );
        }
    }
    let executions: Vec<Vec<u32>> = runs.iter().map(Run::row_ids).collect();
    assert_eq!(executions, vec![vec![1, 3, 5], vec![2, 4, 6]]);
}

#[tokio::test]
async fn padding_to_an_allowed_batch_size_is_invisible_to_callers() {
    let model = Arc::new(Fake::new());
    let delay = Duration::from_millis(100);
    let batcher = start(&model, config(batching(4, delay, &[2, 4]), 64, 1));

    // 3 rows are padded to 4 by repeating the last row.
    let results = within(
        "3 requests",
        join_all((1..=3).map(|id| batcher.infer(request(id, 1, 2)))),
    )
    .await;
    for (id, result) in (1..=3).zip(&results) {
        assert_own_answer(result, id, 1, 2);
    }
    let runs = model.runs();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].shape, vec![4, 2], "the model sees the padded batch");
    assert_eq!(runs[0].row_ids(), vec![1, 2, 3, 3], "the last row repeats");

    // A request of 2 rows and one of 1 row: 3 rows, padded to 4.
    let (two, one) = within("2 + 1 rows", async {
        tokio::join!(
            batcher.infer(request(10, 2, 2)),
            batcher.infer(request(11, 1, 2))
        )
    })
    .await;
    assert_own_answer(&two, 10, 2, 2);
    assert_own_answer(&one, 11, 1, 2);
    assert_eq!(model.runs()[1].row_ids(), vec![10, 10, 11, 11]);

    // One request alone is padded too: 1 row becomes 2.
    let alone = within("1 row", batcher.infer(request(20, 1, 2))).await;
    assert_own_answer(&alone, 20, 1, 2);
    assert_eq!(model.runs()[2].row_ids(), vec![20, 20]);

    // A batch of exactly an allowed size is not padded.
    let full = within("4 rows", batcher.infer(request(30, 4, 2))).await;
    assert_own_answer(&full, 30, 4, 2);
    assert_eq!(model.batch_sizes(), vec![4, 4, 2, 4]);
}

#[tokio::test]
async fn a_full_queue_refuses_at_once_while_the_worker_is_busy() {
    let model = Arc::new(Fake::new());
    let metrics = metric_cells();
    let batcher = start_with_metrics(&model, config(None, 2, 1), &metrics);
    model.gate.close();

    let (held, (queued, refused)) = tokio::join!(batcher.infer(request(1, 1, 2)), async {
        wait_until("the worker runs request 1", || model.run_count() == 1).await;
        tokio::join!(
            join_all([
                batcher.infer(request(2, 1, 2)),
                batcher.infer(request(3, 1, 2))
            ]),
            async {
                wait_until("2 requests wait", || metrics.queue_depth.get() == 2).await;
                // The gate opens only after the answer: it came while the worker was held.
                let refused = tokio::time::timeout(WAIT, batcher.infer(request(4, 1, 2))).await;
                model.gate.open();
                refused
            }
        )
    });

    let refused = refused.expect("a full queue answers at once, not after the worker frees up");
    assert!(
        matches!(refused, Err(Error::QueueFull(2))),
        "the 4th request: {refused:?}"
    );
    let message = refused.expect_err("refused").to_string();
    assert!(message.contains("full"), "{message}");
    assert_own_answer(&held, 1, 1, 2);
    assert_own_answer(&queued[0], 2, 1, 2);
    assert_own_answer(&queued[1], 3, 1, 2);
    assert_eq!(
        model.ids_seen(),
        vec![1, 2, 3],
        "the refused request never ran"
    );
    assert_eq!(metrics.queue_depth.get(), 0);
}

/// The queue bound counts every request not yet running, including those waiting for their
/// batch to fill: with room for 4 and batches of 8, the 5th of 8 concurrent requests is refused
/// although no execution is running, and the 4 accepted run as one batch after the delay.
#[tokio::test]
async fn requests_waiting_for_their_batch_to_fill_count_against_max_queue_size() {
    let model = Arc::new(Fake::new());
    let delay = Duration::from_secs(1);
    let batcher = start(&model, config(batching(8, delay, &[]), 4, 1));

    let results = within(
        "8 requests",
        join_all((1..=8).map(|id| batcher.infer(request(id, 1, 2)))),
    )
    .await;

    for (id, result) in (1..=8).zip(&results) {
        if id <= 4 {
            assert_own_answer(result, id, 1, 2);
        } else {
            assert!(
                matches!(result, Err(Error::QueueFull(4))),
                "request {id}: {result:?}"
            );
        }
    }
    assert_eq!(model.batch_sizes(), vec![4]);
}

#[tokio::test]
async fn a_request_abandoned_by_its_caller_never_reaches_the_model() {
    let model = Arc::new(Fake::new());
    let batcher = start(
        &model,
        config(batching(4, Duration::from_millis(100), &[]), 64, 1),
    );
    model.gate.close();

    let (held, abandoned) = tokio::join!(
        // A full batch: it runs at once and holds the worker at the gate.
        batcher.infer(request(1, 4, 2)),
        async {
            wait_until("the worker runs request 1", || model.run_count() == 1).await;
            let abandoned =
                tokio::time::timeout(Duration::from_millis(1), batcher.infer(request(2, 1, 2)))
                    .await;
            model.gate.open();
            abandoned
        }
    );
    assert!(
        abandoned.is_err(),
        "request 2 cannot finish while the worker is held"
    );
    assert_own_answer(&held, 1, 4, 2);

    let (three, four) = within("two later requests", async {
        tokio::join!(
            batcher.infer(request(3, 1, 2)),
            batcher.infer(request(4, 1, 2))
        )
    })
    .await;
    assert_own_answer(&three, 3, 1, 2);
    assert_own_answer(&four, 4, 1, 2);

    assert!(
        !model.ids_seen().contains(&2),
        "the abandoned request reached the model: {:?}",
        model.runs()
    );
    assert_eq!(model.batch_sizes(), vec![4, 2]);
}

#[tokio::test]
async fn a_request_larger_than_max_batch_size_is_refused_before_it_queues() {
    let model = Arc::new(Fake::new());
    let batcher = start(&model, config(batching(4, Duration::ZERO, &[]), 64, 1));

    let refused = within("5 rows", batcher.infer(request(1, 5, 2))).await;
    match &refused {
        Err(Error::InvalidInput(message)) => {
            assert!(
                message.contains('5') && message.contains("max_batch_size"),
                "{message}"
            );
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert_eq!(model.run_count(), 0, "the refused request never ran");

    let accepted = within("4 rows", batcher.infer(request(2, 4, 2))).await;
    assert_own_answer(&accepted, 2, 4, 2);
}

#[tokio::test]
async fn an_output_without_the_batch_dimension_goes_whole_to_every_request() {
    let model = Arc::new(Fake::new().with_constant());
    let batcher = start(&model, config(batching(2, LONG_DELAY, &[]), 64, 1));

    let (one, two) = within("2 requests", async {
        tokio::join!(
            batcher.infer(request(1, 1, 2)),
            batcher.infer(request(2, 1, 2))
        )
    })
    .await;

    assert_eq!(
        model.batch_sizes(),
        vec![2],
        "the two requests shared one execution"
    );
    for (id, result) in [(1, &one), (2, &two)] {
        assert_own_answer(result, id, 1, 2);
        let outputs = result.as_ref().expect("checked above");
        assert_eq!(output(outputs, "k"), &constant(), "k of request {id}");
    }
}

/// The model declares `k` as `[3, 3]`, so `k` has no batch dimension even when an execution
/// happens to hold 3 rows.
#[tokio::test]
async fn an_output_without_the_batch_dimension_goes_whole_even_when_the_batch_has_as_many_rows() {
    let model = Arc::new(Fake::new().with_constant());
    let batcher = start(&model, config(batching(3, LONG_DELAY, &[]), 64, 1));

    let results = within(
        "3 requests",
        join_all((1..=3).map(|id| batcher.infer(request(id, 1, 2)))),
    )
    .await;

    assert_eq!(model.batch_sizes(), vec![3]);
    for (id, result) in (1..=3).zip(&results) {
        assert_own_answer(result, id, 1, 2);
        let outputs = result.as_ref().expect("checked above");
        assert_eq!(output(outputs, "k"), &constant(), "k of request {id}");
    }
}

#[tokio::test]
async fn two_instances_run_two_executions_at_the_same_time() {
    // Each execution waits (up to 5 s) for a second one to start.
    let model = Arc::new(Fake::new().with_rendezvous(LONG_DELAY));
    let batcher = start(&model, config(None, 64, 2));

    let (one, two) = within("2 requests", async {
        tokio::join!(
            batcher.infer(request(1, 1, 2)),
            batcher.infer(request(2, 1, 2))
        )
    })
    .await;

    assert_own_answer(&one, 1, 1, 2);
    assert_own_answer(&two, 2, 1, 2);
    assert_eq!(model.max_running.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn one_instance_runs_one_execution_at_a_time() {
    // Each execution waits 200 ms for a second one that never comes.
    let model = Arc::new(Fake::new().with_rendezvous(Duration::from_millis(200)));
    let batcher = start(&model, config(None, 64, 1));

    let (one, two) = within("2 requests", async {
        tokio::join!(
            batcher.infer(request(1, 1, 2)),
            batcher.infer(request(2, 1, 2))
        )
    })
    .await;

    assert_own_answer(&one, 1, 1, 2);
    assert_own_answer(&two, 2, 1, 2);
    assert_eq!(model.max_running.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_model_error_reaches_every_request_of_the_failed_batch() {
    let model = Arc::new(Fake::new());
    let batcher = start(&model, config(batching(3, LONG_DELAY, &[]), 64, 1));

    let (one, bad, three) = within("3 requests, one poisoned", async {
        tokio::join!(
            batcher.infer(request(1, 1, 2)),
            batcher.infer(poisoned(2, 2)),
            batcher.infer(request(3, 1, 2))
        )
    })
    .await;

    assert_eq!(
        model.batch_sizes(),
        vec![3],
        "the three requests shared one execution"
    );
    for (id, result) in [(1, one), (2, bad), (3, three)] {
        match result {
            Err(Error::Inference(message)) => {
                assert!(message.contains("refuses negative input"), "{message}")
            }
            other => panic!("request {id}: expected the model's error, got {other:?}"),
        }
    }

    let after = within(
        "a request after the failure",
        batcher.infer(request(4, 3, 2)),
    )
    .await;
    assert_own_answer(&after, 4, 3, 2);
}

/// A request whose batch dimension is 0 (`x` of shape `[0, 2]`, which a `[batch, width]`
/// input admits) gets an answer, or InvalidInput, and the batcher keeps serving.
fn assert_empty_answer(result: &Result<Outputs, Error>, what: &str) {
    match result {
        Ok(outputs) => assert_eq!(output(outputs, "y").shape(), &[0, 2], "{what}"),
        Err(Error::InvalidInput(_)) => {}
        Err(other) => panic!("{what}: expected an answer or InvalidInput, got {other:?}"),
    }
}

/// Sends one ordinary request after something that may have broken the batcher.
async fn assert_still_serving(batcher: &Batcher, id: u32) {
    let after = tokio::time::timeout(WAIT, batcher.infer(request(id, 1, 2)))
        .await
        .unwrap_or_else(|_| {
            panic!("request {id} got no answer within {WAIT:?}: no worker is left to run it")
        });
    assert_own_answer(&after, id, 1, 2);
}

#[tokio::test]
async fn a_request_with_no_rows_alone_in_a_padded_batch_leaves_the_batcher_working() {
    let model = Arc::new(Fake::new());
    let delay = Duration::from_millis(20);
    let batcher = start(&model, config(batching(4, delay, &[2, 4]), 64, 1));

    let empty = within("0 rows", batcher.infer(request(1, 0, 2))).await;

    assert_empty_answer(&empty, "the empty request");
    assert_still_serving(&batcher, 2).await;
}

#[tokio::test]
async fn a_request_with_no_rows_last_in_a_padded_batch_leaves_the_batcher_working() {
    let model = Arc::new(Fake::new());
    let delay = Duration::from_millis(20);
    let batcher = start(&model, config(batching(4, delay, &[2, 4]), 64, 1));

    // 1 + 0 rows, padded to 2 by repeating the last row of the last request (which has none).
    let (one, empty) = within("1 row and 0 rows", async {
        tokio::join!(
            batcher.infer(request(1, 1, 2)),
            batcher.infer(request(2, 0, 2))
        )
    })
    .await;

    assert_own_answer(&one, 1, 1, 2);
    assert_empty_answer(&empty, "the empty request");
    assert_still_serving(&batcher, 3).await;
}

/// Dropping the batcher lets the worker threads end (they would otherwise keep the fake model
/// alive: its last reference is theirs).
#[tokio::test]
async fn dropping_the_batcher_stops_its_workers() {
    let model = Arc::new(Fake::new());
    let batcher = start(&model, config(batching(2, Duration::ZERO, &[]), 64, 2));
    let done = within("1 row", batcher.infer(request(1, 1, 2))).await;
    assert_own_answer(&done, 1, 1, 2);

    drop(batcher);
    wait_until("the workers release the model", || {
        Arc::strong_count(&model) == 1
    })
    .await;
}
