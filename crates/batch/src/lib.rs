//! Dynamic batching for one model version.
//!
//! Callers hand a request (named tensors with a leading batch dimension) to
//! [`Batcher::infer`]; it joins a bounded FIFO queue. `instances` worker threads (plain OS
//! threads: inference blocks) take batches out of the queue: the oldest request plus every later
//! one whose inputs have the same dtypes and non-batch dimensions, up to `max_batch_size` rows,
//! waiting at most `max_queue_delay` after the oldest request arrived for the batch to fill.
//! The requests' inputs are concatenated along dimension 0 (and padded to the next of
//! `allowed_batch_sizes`), run once, and the outputs split back. Requests whose caller went
//! away are dropped before they cost compute. A full queue refuses at once ([`Error::QueueFull`]).
//!
//! The queue's decisions live in [`Queue`], plain state tested without threads.

mod queue;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mofang_backend::{Model, Tensor};
use mofang_metrics::{Gauge, Histogram};
use parking_lot::{Condvar, Mutex};
use tokio::sync::oneshot;

pub use queue::{Queue, Take};

/// How one model version batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// `None`: no batching; every request is its own execution.
    pub batching: Option<Batching>,
    /// Requests allowed to wait; more are refused with [`Error::QueueFull`].
    pub max_queue_size: usize,
    /// Worker threads, i.e. executions that may run at once.
    pub instances: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batching {
    /// Most rows in one execution; larger requests are refused.
    pub max_batch_size: usize,
    /// Longest a request waits for its batch to fill.
    pub max_queue_delay: Duration,
    /// If not empty, batches are padded up to the next of these sizes (ascending; the last
    /// equals `max_batch_size`).
    pub allowed_batch_sizes: Vec<usize>,
}

/// Errors of this crate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("the batch queue is full ({0} requests waiting); retry later")]
    QueueFull(usize),
    #[error("{0}")]
    InvalidInput(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the model version is shutting down")]
    Stopped,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Metric cells this batcher records into (one set per model version).
#[derive(Debug, Clone)]
pub struct BatchMetrics {
    pub queue_duration: Arc<Histogram>,
    pub compute_duration: Arc<Histogram>,
    pub batch_size: Arc<Histogram>,
    pub queue_depth: Arc<Gauge>,
}

type Outputs = Vec<(String, Tensor)>;

/// One queued request.
#[derive(Debug)]
pub struct Pending {
    inputs: Vec<(String, Tensor)>,
    rows: usize,
    /// Requests batch together only when their keys are equal.
    key: Option<Vec<(mofang_backend::DataType, Vec<usize>)>>,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Outputs>>,
}

impl Pending {
    fn new(inputs: Vec<(String, Tensor)>, reply: oneshot::Sender<Result<Outputs>>) -> Pending {
        let rows = inputs.first().and_then(|(_, t)| t.shape().first().copied());
        let same_rows = inputs
            .iter()
            .all(|(_, t)| t.shape().first().copied() == rows);
        // Only requests whose every input has the same leading dimension can be batched.
        let key = (same_rows && rows.is_some()).then(|| {
            inputs
                .iter()
                .map(|(_, t)| (t.dtype(), t.shape()[1..].to_vec()))
                .collect()
        });
        Pending {
            inputs,
            rows: rows.unwrap_or(1),
            key,
            enqueued: Instant::now(),
            reply,
        }
    }

    fn cancelled(&self) -> bool {
        self.reply.is_closed()
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    stop: AtomicBool,
    model: Arc<dyn Model>,
    config: BatchConfig,
    metrics: Option<BatchMetrics>,
}

/// The queue and workers of one model version. Dropping it stops the workers once the queue
/// is empty.
pub struct Batcher {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts `config.instances` worker threads named after `label`.
    pub fn start(
        label: &str,
        model: Arc<dyn Model>,
        config: BatchConfig,
        metrics: Option<BatchMetrics>,
    ) -> std::io::Result<Batcher> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new(config.batching.clone())),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            model,
            config: config.clone(),
            metrics,
        });
        for i in 0..config.instances.max(1) {
            let s = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("infer-{label}-{i}"))
                .spawn(move || worker(&s))?;
        }
        Ok(Batcher { shared })
    }

    /// Queues `inputs` (graph names, already checked against the model) and waits for the
    /// result. Cancel-safe: dropping the future withdraws the request before it runs.
    pub async fn infer(&self, inputs: Vec<(String, Tensor)>) -> Result<Outputs> {
        let (tx, rx) = oneshot::channel();
        let pending = Pending::new(inputs, tx);
        if let Some(b) = &self.shared.config.batching
            && pending.key.is_some()
            && pending.rows > b.max_batch_size
        {
            return Err(Error::InvalidInput(format!(
                "batch of {} rows is larger than the model's max_batch_size {}",
                pending.rows, b.max_batch_size
            )));
        }
        {
            let mut q = self.shared.queue.lock();
            if q.len() >= self.shared.config.max_queue_size {
                // Requests whose callers went away do not hold places in the queue.
                q.drop_cancelled();
            }
            if q.len() >= self.shared.config.max_queue_size {
                return Err(Error::QueueFull(q.len()));
            }
            q.push(pending);
            if let Some(m) = &self.shared.metrics {
                m.queue_depth.set(q.len() as i64);
            }
        }
        self.shared.wake.notify_one();
        rx.await.unwrap_or(Err(Error::Stopped))
    }
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        self.shared.wake.notify_all();
    }
}

fn worker(shared: &Shared) {
    loop {
        let (batch, remaining) = {
            let mut q = shared.queue.lock();
            loop {
                match q.take(Instant::now()) {
                    Take::Run(batch) => break (batch, q.len()),
                    Take::WaitUntil(deadline) => {
                        shared.wake.wait_until(&mut q, deadline);
                    }
                    Take::Empty => {
                        if shared.stop.load(Ordering::Acquire) {
                            return;
                        }
                        shared.wake.wait_for(&mut q, Duration::from_millis(500));
                    }
                }
            }
        };
        if let Some(m) = &shared.metrics {
            m.queue_depth.set(remaining as i64);
        }
        // Another worker may be able to start on what remains (waking one for an empty queue
        // would only cost two context switches).
        if remaining > 0 {
            shared.wake.notify_one();
        }
        run_batch(shared, batch);
    }
}

fn run_batch(shared: &Shared, batch: Vec<Pending>) {
    let started = Instant::now();
    if let Some(m) = &shared.metrics {
        for p in &batch {
            m.queue_duration
                .observe(started.duration_since(p.enqueued).as_secs_f64());
        }
    }
    let rows: Vec<usize> = batch.iter().map(|p| p.rows).collect();
    let total: usize = rows.iter().sum();
    let (inputs, replies): (Vec<_>, Vec<_>) =
        batch.into_iter().map(|p| (p.inputs, p.reply)).unzip();
    // An empty batch has no row to pad with; it runs as it is.
    let padded = shared
        .config
        .batching
        .as_ref()
        .filter(|_| total > 0)
        .and_then(|b| b.allowed_batch_sizes.iter().copied().find(|s| *s >= total))
        .unwrap_or(total);
    let model = shared.model.as_ref();
    // A panic inside a backend must not take the worker (and so the version) down with it.
    let run = |inputs: Vec<(String, Tensor)>| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| model.run(inputs)))
            .map_err(|_| "the backend panicked while running the model".to_string())?
            .map_err(|e| e.to_string())
    };
    let result = if replies.len() == 1 && padded == total {
        let Some(only) = inputs.into_iter().next() else {
            return;
        };
        run(only).map(|outputs| vec![outputs])
    } else {
        join(inputs, padded)
            .and_then(run)
            .and_then(|outputs| split(model, outputs, &rows, padded))
    };
    if let Some(m) = &shared.metrics {
        m.compute_duration.observe(started.elapsed().as_secs_f64());
        m.batch_size.observe(padded as f64);
    }
    match result {
        Ok(per_request) => {
            for (reply, outputs) in replies.into_iter().zip(per_request) {
                let _ = reply.send(Ok(outputs));
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(Error::Inference(e.clone())));
            }
        }
    }
}

/// Concatenates the requests' inputs along dimension 0, then pads to `padded` rows by repeating
/// the last row.
fn join(
    requests: Vec<Vec<(String, Tensor)>>,
    padded: usize,
) -> std::result::Result<Vec<(String, Tensor)>, String> {
    let Some(first) = requests.first() else {
        return Err("empty batch".into());
    };
    let names: Vec<String> = first.iter().map(|(n, _)| n.clone()).collect();
    let mut joined = Vec::with_capacity(names.len());
    for (i, name) in names.into_iter().enumerate() {
        let mut parts: Vec<&Tensor> = requests.iter().map(|r| &r[i].1).collect();
        let total: usize = parts.iter().map(|t| t.shape()[0]).sum();
        let last_row;
        if padded > total {
            // Pad with the last row of the last request that has rows.
            let last = *parts
                .iter()
                .rev()
                .find(|t| t.shape()[0] > 0)
                .ok_or("no row to pad the batch with")?;
            let rows = last
                .split(&[last.shape()[0] - 1, 1])
                .map_err(|e| e.to_string())?;
            last_row = rows.into_iter().nth(1).ok_or("no last row")?;
            for _ in total..padded {
                parts.push(&last_row);
            }
        }
        joined.push((name, Tensor::concat(&parts).map_err(|e| e.to_string())?));
    }
    Ok(joined)
}

/// Splits each output along dimension 0 into the requests' row counts (dropping padding).
/// Only outputs the model declares with a dynamic first dimension are split; the others (e.g. a
/// shared transition matrix) go whole to every request.
fn split(
    model: &dyn Model,
    outputs: Vec<(String, Tensor)>,
    rows: &[usize],
    padded: usize,
) -> std::result::Result<Vec<Outputs>, String> {
    let total: usize = rows.iter().sum();
    let mut per_request: Vec<Outputs> = rows
        .iter()
        .map(|_| Vec::with_capacity(outputs.len()))
        .collect();
    for (name, tensor) in outputs {
        let batched = model
            .outputs()
            .iter()
            .find(|s| s.name == name)
            .is_none_or(|s| s.shape.first().is_some_and(Option::is_none));
        if batched && tensor.shape().first() == Some(&padded) {
            let mut sizes = rows.to_vec();
            if padded > total {
                sizes.push(padded - total);
            }
            let parts = tensor.split(&sizes).map_err(|e| e.to_string())?;
            for (dest, part) in per_request.iter_mut().zip(parts) {
                dest.push((name.clone(), part));
            }
        } else {
            for dest in per_request.iter_mut() {
                dest.push((name.clone(), tensor.clone()));
            }
        }
    }
    Ok(per_request)
}
