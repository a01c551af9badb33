//! Prometheus metrics in the text exposition format (version 0.0.4).
//!
//! Labelled families of counters, gauges and histograms ([`CounterVec`], [`GaugeVec`],
//! [`HistogramVec`]), lock-free on the hot path once a label set's cell exists, and
//! [`ServingMetrics`], the model server's families. Naming rule for every mofang metric:
//! `mofang_<subsystem>_<name>_<unit>`, counters ending in `_total`, durations in `_seconds`,
//! labels in snake_case. This crate does no I/O; the HTTP edge serves [`Registry::render`].

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use parking_lot::RwLock;

/// Something that can write itself in the exposition format.
trait Family: Send + Sync {
    fn render(&self, out: &mut String);
}

/// A set of metric families, rendered together.
#[derive(Default, Clone)]
pub struct Registry {
    families: Arc<RwLock<Vec<Arc<dyn Family>>>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

impl Registry {
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> CounterVec {
        let v = CounterVec(Arc::new(Vec_::new(name, help, "counter", labels)));
        self.families.write().push(v.0.clone());
        v
    }

    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
    ) -> GaugeVec {
        let v = GaugeVec(Arc::new(Vec_::new(name, help, "gauge", labels)));
        self.families.write().push(v.0.clone());
        v
    }

    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &'static [&'static str],
        buckets: &[f64],
    ) -> HistogramVec {
        let mut inner = Vec_::new(name, help, "histogram", labels);
        inner.buckets = buckets.to_vec();
        let v = HistogramVec(Arc::new(inner));
        self.families.write().push(v.0.clone());
        v
    }

    /// Every family in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        for f in self.families.read().iter() {
            f.render(&mut out);
        }
        out
    }
}

/// The content type of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One family: cells keyed by label values.
struct Vec_<C> {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    labels: &'static [&'static str],
    buckets: Vec<f64>,
    cells: RwLock<BTreeMap<Vec<String>, Arc<C>>>,
}

impl<C: Default> Vec_<C> {
    fn new(
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &'static [&'static str],
    ) -> Self {
        Vec_ {
            name,
            help,
            kind,
            labels,
            buckets: Vec::new(),
            cells: RwLock::new(BTreeMap::new()),
        }
    }

    fn cell(&self, values: &[&str], make: impl FnOnce() -> C) -> Arc<C> {
        debug_assert_eq!(
            values.len(),
            self.labels.len(),
            "label count of {}",
            self.name
        );
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        if let Some(c) = self.cells.read().get(&key) {
            return Arc::clone(c);
        }
        Arc::clone(
            self.cells
                .write()
                .entry(key)
                .or_insert_with(|| Arc::new(make())),
        )
    }

    fn remove(&self, values: &[&str]) {
        let key: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        self.cells.write().remove(&key);
    }

    fn header(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
    }

    fn labels(&self, values: &[String], extra: Option<(&str, &str)>) -> String {
        let mut s = String::new();
        let pairs = self
            .labels
            .iter()
            .zip(values)
            .map(|(k, v)| (*k, v.as_str()))
            .chain(extra);
        for (i, (k, v)) in pairs.enumerate() {
            s.push(if i == 0 { '{' } else { ',' });
            s.push_str(k);
            s.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => s.push_str("\\\\"),
                    '"' => s.push_str("\\\""),
                    '\n' => s.push_str("\\n"),
                    c => s.push(c),
                }
            }
            s.push('"');
        }
        if !s.is_empty() {
            s.push('}');
        }
        s
    }
}

fn fmt_f64(x: f64) -> String {
    if x.is_infinite() {
        if x > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{x}")
    }
}

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Observations counted into cumulative buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    count: AtomicU64,
    sum_bits: AtomicU64,
}

impl Histogram {
    fn with_bounds(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut cur = self.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + v).to_bits();
            match self.sum_bits.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(actual) => cur = actual,
            }
        }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum_bits.load(Ordering::Relaxed))
    }
}

/// A labelled family of counters.
#[derive(Clone)]
pub struct CounterVec(Arc<Vec_<Counter>>);
/// A labelled family of gauges.
#[derive(Clone)]
pub struct GaugeVec(Arc<Vec_<Gauge>>);
/// A labelled family of histograms.
#[derive(Clone)]
pub struct HistogramVec(Arc<Vec_<Histogram>>);

impl CounterVec {
    /// The counter for these label values (in the order the family declared its labels).
    pub fn with(&self, values: &[&str]) -> Arc<Counter> {
        self.0.cell(values, Counter::default)
    }
}

impl GaugeVec {
    pub fn with(&self, values: &[&str]) -> Arc<Gauge> {
        self.0.cell(values, Gauge::default)
    }
    /// Drops a label set (e.g. the state of a version that was unloaded).
    pub fn remove(&self, values: &[&str]) {
        self.0.remove(values)
    }
}

impl HistogramVec {
    pub fn with(&self, values: &[&str]) -> Arc<Histogram> {
        self.0
            .cell(values, || Histogram::with_bounds(&self.0.buckets))
    }
}

impl Family for Vec_<Counter> {
    fn render(&self, out: &mut String) {
        self.header(out);
        for (k, c) in self.cells.read().iter() {
            let _ = writeln!(out, "{}{} {}", self.name, self.labels(k, None), c.get());
        }
    }
}

impl Family for Vec_<Gauge> {
    fn render(&self, out: &mut String) {
        self.header(out);
        for (k, g) in self.cells.read().iter() {
            let _ = writeln!(out, "{}{} {}", self.name, self.labels(k, None), g.get());
        }
    }
}

impl Family for Vec_<Histogram> {
    fn render(&self, out: &mut String) {
        self.header(out);
        for (k, h) in self.cells.read().iter() {
            let mut cumulative = 0;
            for (bound, c) in h.bounds.iter().zip(&h.counts) {
                cumulative += c.load(Ordering::Relaxed);
                let le = fmt_f64(*bound);
                let _ = writeln!(
                    out,
                    "{}_bucket{} {cumulative}",
                    self.name,
                    self.labels(k, Some(("le", &le)))
                );
            }
            let _ = writeln!(
                out,
                "{}_bucket{} {}",
                self.name,
                self.labels(k, Some(("le", "+Inf"))),
                h.count()
            );
            let _ = writeln!(
                out,
                "{}_sum{} {}",
                self.name,
                self.labels(k, None),
                fmt_f64(h.sum())
            );
            let _ = writeln!(
                out,
                "{}_count{} {}",
                self.name,
                self.labels(k, None),
                h.count()
            );
        }
    }
}

/// Latency buckets in seconds, 100 µs to 30 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// Batch-size buckets (rows per execution).
pub const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// The model server's metric families.
#[derive(Clone)]
pub struct ServingMetrics {
    pub registry: Registry,
    /// `model`, `version`, `protocol` (tfs_rest, v2_rest, predict), `outcome` (ok, invalid, not_found, queue_full, error).
    pub requests: CounterVec,
    /// End-to-end request latency at the HTTP edge: `model`, `protocol`.
    pub request_duration: HistogramVec,
    /// Time a request waited in the batch queue: `model`, `version`.
    pub queue_duration: HistogramVec,
    /// Time one model execution took: `model`, `version`.
    pub compute_duration: HistogramVec,
    /// Rows per execution: `model`, `version`.
    pub batch_size: HistogramVec,
    /// Requests waiting in the batch queue: `model`, `version`.
    pub queue_depth: GaugeVec,
    /// 1 for the version's current state, 0 otherwise: `model`, `version`, `state`.
    pub model_state: GaugeVec,
}

impl std::fmt::Debug for ServingMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingMetrics").finish_non_exhaustive()
    }
}

impl Default for ServingMetrics {
    fn default() -> Self {
        let r = Registry::default();
        ServingMetrics {
            requests: r.counter(
                "mofang_serve_requests_total",
                "Inference requests by model, version, protocol and outcome.",
                &["model", "version", "protocol", "outcome"],
            ),
            request_duration: r.histogram(
                "mofang_serve_request_duration_seconds",
                "End-to-end latency of inference requests at the HTTP edge.",
                &["model", "protocol"],
                LATENCY_BUCKETS,
            ),
            queue_duration: r.histogram(
                "mofang_batch_queue_duration_seconds",
                "Time requests waited in the batch queue before execution.",
                &["model", "version"],
                LATENCY_BUCKETS,
            ),
            compute_duration: r.histogram(
                "mofang_batch_compute_duration_seconds",
                "Time one model execution (one batch) took.",
                &["model", "version"],
                LATENCY_BUCKETS,
            ),
            batch_size: r.histogram(
                "mofang_batch_size_rows",
                "Rows (batch dimension) per model execution.",
                &["model", "version"],
                BATCH_BUCKETS,
            ),
            queue_depth: r.gauge(
                "mofang_batch_queue_depth_requests",
                "Requests waiting in the batch queue.",
                &["model", "version"],
            ),
            model_state: r.gauge(
                "mofang_repository_model_state",
                "1 for the state each model version is in (loading, available, end).",
                &["model", "version", "state"],
            ),
            registry: r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_gauges_and_cumulative_histograms() {
        let r = Registry::default();
        let c = r.counter("t_requests_total", "Requests.", &["model"]);
        c.with(&["a\"b"]).add(3);
        let g = r.gauge("t_depth", "Depth.", &[]);
        g.with(&[]).set(-2);
        let h = r.histogram("t_seconds", "Latency.", &["m"], &[0.1, 1.0]);
        let cell = h.with(&["x"]);
        cell.observe(0.05);
        cell.observe(0.5);
        cell.observe(5.0);
        let text = r.render();
        assert!(
            text.contains(
                "# TYPE t_requests_total counter\nt_requests_total{model=\"a\\\"b\"} 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("t_depth -2\n"), "{text}");
        assert!(
            text.contains("t_seconds_bucket{m=\"x\",le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{m=\"x\",le=\"1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{m=\"x\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("t_seconds_sum{m=\"x\"} 5.55\n"), "{text}");
        assert!(text.contains("t_seconds_count{m=\"x\"} 3\n"), "{text}");
    }

    #[test]
    fn removed_gauges_disappear() {
        let r = Registry::default();
        let g = r.gauge("t_state", "State.", &["v"]);
        g.with(&["1"]).set(1);
        g.remove(&["1"]);
        assert!(!r.render().contains("t_state{"));
    }
}
