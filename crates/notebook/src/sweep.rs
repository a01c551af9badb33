//! Parameter sweeps: one notebook run per point of a [`Grid`], `jobs` runs at a time, each on a
//! fresh kernel that was started ahead (while a worker's run executes, the kernel for its next
//! run is already starting; a kernel is never reused between runs), and a [`SweepSummary`] of
//! every run (status, duration, error, scrapbook scraps) written as `summary.csv` and
//! `summary.json` beside the output notebooks.
//!
//! Runs are independent: a failing run does not stop the others. Cancelling (the `cancel`
//! signal) starts no further run, interrupts the running ones and still writes the summary.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value as Json, json};
use tokio::sync::{mpsc, watch};

use crate::document::Notebook;
use crate::kernel::StartingKernel;
use crate::kernelspec::{KernelSpec, find_kernel_spec};
use crate::params::{Params, Value};
use crate::run::{
    Input, Outcome, Output, Quiet, RunHooks, RunOptions, kernel_name, run_notebook_with,
    write_atomic,
};
use crate::{Error, Result};

/// At most this many runs in one grid (a product of a few long lists grows fast).
pub const MAX_RUNS: usize = 100_000;

/// The parameter sets of a sweep, in run order.
#[derive(Debug, Clone, PartialEq)]
pub struct Grid {
    points: Vec<Params>,
}

impl Grid {
    /// Reads a grid file (YAML, or JSON, which YAML reads too).
    pub fn from_file(path: &Path) -> Result<Grid> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::InvalidGrid {
            what: path.display().to_string(),
            why: e.to_string(),
        })?;
        Grid::parse(&text, &path.display().to_string())
    }

    /// Parses a grid: a list of parameter maps (`[{a: 1, b: x}, {a: 2, b: y}]`, one run each)
    /// or a map of lists (`{a: [1, 2], b: [x, y]}`, the cartesian product with the keys in file
    /// order and the last key varying fastest). `source` names the grid in errors.
    pub fn parse(text: &str, source: &str) -> Result<Grid> {
        let invalid = |why: String| Error::InvalidGrid {
            what: source.to_owned(),
            why,
        };
        let doc: serde_yaml::Value = serde_yaml::from_str(text)
            .map_err(|e| invalid(format!("not valid YAML or JSON: {e}")))?;
        let points = match doc {
            serde_yaml::Value::Sequence(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    serde_yaml::Value::Mapping(map) => {
                        parameter_map(map).map_err(|why| invalid(format!("item {}: {why}", i + 1)))
                    }
                    other => Err(invalid(format!(
                        "item {}: expected a map of parameter names to values, got {}",
                        i + 1,
                        yaml_kind(other)
                    ))),
                })
                .collect::<Result<Vec<_>>>()?,
            serde_yaml::Value::Mapping(map) => product(&map).map_err(invalid)?,
            other => {
                return Err(invalid(format!(
                    "expected a list of parameter maps or a map of parameter names to lists of values, got {}",
                    yaml_kind(&other)
                )));
            }
        };
        if points.is_empty() {
            return Err(invalid("the grid has no runs".to_owned()));
        }
        if points.len() > MAX_RUNS {
            return Err(invalid(format!(
                "the grid has {} runs; at most {MAX_RUNS}",
                points.len()
            )));
        }
        Ok(Grid { points })
    }

    /// The parameter sets, one per run.
    pub fn points(&self) -> &[Params] {
        &self.points
    }
}

fn yaml_kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "null",
        serde_yaml::Value::Bool(_) => "a boolean",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a map",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

fn param_name(key: &serde_yaml::Value) -> std::result::Result<String, String> {
    match Value::from_yaml(key)? {
        Value::Str(s) => Ok(s),
        other => Ok(other.python_str()),
    }
}

fn parameter_map(map: &serde_yaml::Mapping) -> std::result::Result<Params, String> {
    let mut params = Params::new();
    for (k, v) in map {
        let name = param_name(k)?;
        let value = Value::from_yaml(v).map_err(|why| format!("`{name}`: {why}"))?;
        params.set(&name, value);
    }
    Ok(params)
}

/// The cartesian product of a map of lists, last key fastest.
fn product(map: &serde_yaml::Mapping) -> std::result::Result<Vec<Params>, String> {
    let mut axes: Vec<(String, Vec<Value>)> = Vec::new();
    let mut total: usize = 1;
    for (k, v) in map {
        let name = param_name(k)?;
        let serde_yaml::Value::Sequence(items) = v else {
            return Err(format!(
                "`{name}`: expected a list of values, got {} (write [value] for a single one)",
                yaml_kind(v)
            ));
        };
        if items.is_empty() {
            return Err(format!("`{name}`: the list of values is empty"));
        }
        let values = items
            .iter()
            .map(Value::from_yaml)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|why| format!("`{name}`: {why}"))?;
        total = total
            .checked_mul(values.len())
            .filter(|t| *t <= MAX_RUNS)
            .ok_or_else(|| format!("the grid has more than {MAX_RUNS} runs"))?;
        axes.push((name, values));
    }
    let mut points = Vec::with_capacity(total);
    for mut i in 0..total {
        let mut picks = vec![0; axes.len()];
        for (slot, (_, values)) in picks.iter_mut().zip(&axes).rev() {
            *slot = i % values.len();
            i /= values.len();
        }
        let mut params = Params::new();
        for ((name, values), pick) in axes.iter().zip(picks) {
            params.set(name, values[pick].clone());
        }
        points.push(params);
    }
    Ok(points)
}

/// What to sweep and how.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Every run's options: the input notebook, the base parameters (each grid point is applied
    /// over them), kernel, timeouts. Its `output` is replaced per run.
    pub run: RunOptions,
    pub grid: Grid,
    /// Output notebooks and the summary go here (created if missing).
    pub out_dir: PathBuf,
    /// Runs at a time (at least 1).
    pub jobs: usize,
    /// Skip runs whose output notebook exists, completed, with the same parameters.
    pub resume: bool,
}

/// How one run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    Completed,
    Failed,
    /// Interrupted by cancellation, or never started because of it.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// One row of the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// 0-based position in the grid.
    pub index: usize,
    pub output: PathBuf,
    /// The run's parameters: the base parameters with the grid point applied.
    pub parameters: Params,
    pub status: RunStatus,
    /// Wall-clock seconds of the run (for a resumed run, the duration its notebook records).
    pub duration: Option<f64>,
    /// `ename: evalue` of the failing cell, or what else went wrong.
    pub error: Option<String>,
    /// Skipped by `--resume`: the output notebook had completed before.
    pub resumed: bool,
    /// Values glued with scrapbook (`sb.glue`), as `sb.read_notebook(output).scraps` reads them.
    pub scraps: Vec<(String, Json)>,
}

/// Every run of a sweep, in grid order.
#[derive(Debug, Clone, PartialEq)]
pub struct SweepSummary {
    pub runs: Vec<RunSummary>,
}

impl SweepSummary {
    pub fn count(&self, status: RunStatus) -> usize {
        self.runs.iter().filter(|r| r.status == status).count()
    }

    pub fn all_completed(&self) -> bool {
        self.runs.iter().all(|r| r.status == RunStatus::Completed)
    }

    /// `summary.json`: counts and one object per run.
    pub fn to_json(&self) -> Json {
        let runs: Vec<Json> = self
            .runs
            .iter()
            .map(|r| {
                json!({
                    "index": r.index,
                    "output": r.output.to_string_lossy(),
                    "parameters": r.parameters.to_json(),
                    "status": r.status.as_str(),
                    "duration_seconds": r.duration,
                    "error": r.error,
                    "resumed": r.resumed,
                    "scraps": Json::Object(r.scraps.iter().cloned().collect()),
                })
            })
            .collect();
        json!({
            "total": self.runs.len(),
            "completed": self.count(RunStatus::Completed),
            "failed": self.count(RunStatus::Failed),
            "cancelled": self.count(RunStatus::Cancelled),
            "runs": runs,
        })
    }

    /// `summary.csv`: `index,output,status,duration_seconds,error,resumed`, then a
    /// `param.NAME` column per parameter and a `scrap.NAME` column per glued value (names in
    /// order of first appearance). Strings are written as they are, other values as JSON.
    pub fn to_csv(&self) -> String {
        let mut params: Vec<String> = Vec::new();
        let mut scraps: Vec<String> = Vec::new();
        for run in &self.runs {
            for (name, _) in run.parameters.iter() {
                if !params.iter().any(|p| p == name) {
                    params.push(name.to_owned());
                }
            }
            for (name, _) in &run.scraps {
                if !scraps.contains(name) {
                    scraps.push(name.clone());
                }
            }
        }
        let mut header: Vec<String> = [
            "index",
            "output",
            "status",
            "duration_seconds",
            "error",
            "resumed",
        ]
        .map(str::to_owned)
        .to_vec();
        header.extend(params.iter().map(|p| format!("param.{p}")));
        header.extend(scraps.iter().map(|s| format!("scrap.{s}")));
        let mut out = csv_line(&header);
        for run in &self.runs {
            let mut row = vec![
                run.index.to_string(),
                run.output.to_string_lossy().into_owned(),
                run.status.as_str().to_owned(),
                run.duration.map(|d| format!("{d:.3}")).unwrap_or_default(),
                run.error.clone().unwrap_or_default(),
                run.resumed.to_string(),
            ];
            row.extend(params.iter().map(|p| {
                run.parameters
                    .get(p)
                    .map_or(String::new(), |v| cell(&v.to_json()))
            }));
            row.extend(scraps.iter().map(|s| {
                run.scraps
                    .iter()
                    .find(|(n, _)| n == s)
                    .map_or(String::new(), |(_, v)| cell(v))
            }));
            out.push_str(&csv_line(&row));
        }
        out
    }

    /// Writes `summary.csv` and `summary.json` into `dir`, each atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut text = serde_json::to_vec_pretty(&self.to_json())
            .map_err(|e| Error::Internal(e.to_string()))?;
        text.push(b'\n');
        write_atomic(&dir.join("summary.json"), &text)?;
        write_atomic(&dir.join("summary.csv"), self.to_csv().as_bytes())
    }
}

fn cell(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// One RFC 4180 line: fields with a comma, quote or line break are quoted, quotes doubled.
fn csv_line(fields: &[String]) -> String {
    let mut line = fields
        .iter()
        .map(|f| {
            if f.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", f.replace('"', "\"\""))
            } else {
                f.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// Progress of a sweep (called on the caller's task, one event at a time).
pub trait SweepObserver {
    /// `total` runs in the grid, `resumed` of them skipped by `--resume`.
    fn sweep_started(&mut self, _total: usize, _resumed: usize) {}
    fn run_started(&mut self, _index: usize) {}
    fn run_finished(&mut self, _run: &RunSummary) {}
}

impl SweepObserver for Quiet {}

/// `OUTDIR/<stem>-<index>.ipynb`, the index zero-padded to at least 3 digits (more when the
/// grid has more runs) so the names sort in run order.
pub fn output_path(out_dir: &Path, stem: &str, index: usize, total: usize) -> PathBuf {
    let width = total.saturating_sub(1).to_string().len().max(3);
    out_dir.join(format!("{stem}-{index:0width$}.ipynb"))
}

/// Runs every point of the grid and writes the summary. Bad input that every run would share
/// (an unreadable notebook, an unknown kernel, standard input as the notebook) is an `Err`
/// before anything runs; a failing run is a row of the summary.
pub async fn run_sweep(
    opts: &SweepOptions,
    cancel: watch::Receiver<bool>,
    observer: &mut dyn SweepObserver,
) -> Result<SweepSummary> {
    let Input::File(input) = &opts.run.input else {
        return Err(Error::InvalidGrid {
            what: "input".to_owned(),
            why: "a sweep needs the input notebook as a local file".to_owned(),
        });
    };
    let stem = input.file_stem().map_or_else(
        || "notebook".to_owned(),
        |s| s.to_string_lossy().into_owned(),
    );
    let jobs = opts.jobs.max(1);
    let points = opts.grid.points();
    let total = points.len();
    let plans: Vec<(PathBuf, Params)> = points
        .iter()
        .enumerate()
        .map(|(i, point)| {
            let mut params = opts.run.parameters.clone();
            for (name, value) in point.iter() {
                params.set(name, value.clone());
            }
            (output_path(&opts.out_dir, &stem, i, total), params)
        })
        .collect();

    let spec = sweep_kernel_spec(&opts.run, input, &plans[0].1).await?;
    let spec = (!opts.run.prepare_only).then_some(spec);
    std::fs::create_dir_all(&opts.out_dir).map_err(|e| Error::Io {
        path: opts.out_dir.display().to_string(),
        source: e,
    })?;

    let mut results: Vec<Option<RunSummary>> = vec![None; total];
    if opts.resume {
        for (i, (path, params)) in plans.iter().enumerate() {
            if let Some(done) = completed_run(i, path, params) {
                results[i] = Some(done);
            }
        }
    }
    let todo: Vec<usize> = (0..total).filter(|i| results[*i].is_none()).collect();
    observer.sweep_started(total, total - todo.len());

    let workers_count = jobs.min(todo.len());
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        plans,
    });
    // The pool: kernels started in run order, at most `jobs` of them waiting for a worker.
    let (pool_tx, pool_rx) = mpsc::channel(jobs);
    let pool_rx = Arc::new(tokio::sync::Mutex::new(pool_rx));
    let starter = tokio::spawn(start_kernels(
        todo,
        spec,
        opts.run.clone(),
        pool_tx,
        cancel.clone(),
    ));
    let (events, mut rx) = mpsc::unbounded_channel();
    let mut workers = Vec::new();
    for _ in 0..workers_count {
        let shared = Arc::clone(&shared);
        let events = events.clone();
        let cancel = cancel.clone();
        let pool = Arc::clone(&pool_rx);
        workers.push(tokio::spawn(worker(shared, pool, events, cancel)));
    }
    drop(events);
    while let Some(event) = rx.recv().await {
        match event {
            Event::Started(index) => observer.run_started(index),
            Event::Finished(run) => {
                observer.run_finished(&run);
                let index = run.index;
                results[index] = Some(run);
                partial_summary(&results, &shared.plans).write(&opts.out_dir)?;
            }
        }
    }
    for w in workers {
        w.await
            .map_err(|e| Error::Internal(format!("a sweep worker ended: {e}")))?;
    }
    starter.abort();
    // Kernels started ahead for runs that will not run (after a cancel) are killed here.
    drop(pool_rx);
    let summary = partial_summary(&results, &shared.plans);
    summary.write(&opts.out_dir)?;
    Ok(summary)
}

/// The summary so far: runs not (yet) finished are `cancelled` ("not started").
fn partial_summary(results: &[Option<RunSummary>], plans: &[(PathBuf, Params)]) -> SweepSummary {
    let runs = results
        .iter()
        .zip(plans)
        .enumerate()
        .map(|(index, (done, (output, parameters)))| {
            done.clone().unwrap_or_else(|| RunSummary {
                index,
                output: output.clone(),
                parameters: parameters.clone(),
                status: RunStatus::Cancelled,
                duration: None,
                error: Some("not started".to_owned()),
                resumed: false,
                scraps: Vec::new(),
            })
        })
        .collect();
    SweepSummary { runs }
}

struct Shared {
    opts: SweepOptions,
    plans: Vec<(PathBuf, Params)>,
}

/// A run and the kernel started for it (`None` with `--prepare-only`).
type Ready = (usize, Option<StartingKernel>);

enum Event {
    Started(usize),
    Finished(RunSummary),
}

/// Starts a kernel for each run in `todo`, in order, as soon as the pool has room: with `jobs`
/// workers busy, `jobs` more kernels are starting or ready, so each worker's next kernel starts
/// while its current run executes. Stops at a cancel.
async fn start_kernels(
    todo: Vec<usize>,
    spec: Option<KernelSpec>,
    run: RunOptions,
    pool: mpsc::Sender<Ready>,
    mut cancel: watch::Receiver<bool>,
) {
    for index in todo {
        let permit = tokio::select! {
            permit = pool.reserve() => match permit {
                Ok(p) => p,
                Err(_) => return,
            },
            () = crate::kernel::wait_cancel(&mut cancel) => return,
        };
        let kernel = spec
            .as_ref()
            .map(|spec| StartingKernel::spawn(spec.clone(), run.cwd.clone(), run.start_timeout));
        permit.send((index, kernel));
    }
}

/// Takes the next run and its kernel from the pool until the pool is empty or a cancel.
async fn worker(
    shared: Arc<Shared>,
    pool: Arc<tokio::sync::Mutex<mpsc::Receiver<Ready>>>,
    events: mpsc::UnboundedSender<Event>,
    cancel: watch::Receiver<bool>,
) {
    loop {
        let next = pool.lock().await.recv().await;
        let Some((index, kernel)) = next else {
            break;
        };
        if *cancel.borrow() {
            break;
        }
        let _ = events.send(Event::Started(index));
        let run = run_one(&shared, index, kernel, cancel.clone()).await;
        let _ = events.send(Event::Finished(run));
    }
}

async fn run_one(
    shared: &Shared,
    index: usize,
    kernel: Option<StartingKernel>,
    cancel: watch::Receiver<bool>,
) -> RunSummary {
    let (output, parameters) = &shared.plans[index];
    let mut options = shared.opts.run.clone();
    options.parameters = parameters.clone();
    // Braces in the output directory are literal (the path is formatted like papermill's).
    let literal = output
        .to_string_lossy()
        .replace('{', "{{")
        .replace('}', "}}");
    options.output = Output::File(PathBuf::from(literal));
    let started = Instant::now();
    let hooks = RunHooks {
        kernel,
        cancel: Some(cancel),
        quiet: true,
    };
    let result = run_notebook_with(&options, &mut Quiet, hooks).await;
    let duration = started.elapsed().as_secs_f64();
    let (status, error) = match result {
        Ok(Outcome::Completed | Outcome::Prepared) => (RunStatus::Completed, None),
        Ok(Outcome::CellError { ename, evalue, .. }) => {
            (RunStatus::Failed, Some(format!("{ename}: {evalue}")))
        }
        Ok(Outcome::TimedOut {
            cell_index,
            seconds,
        }) => (
            RunStatus::Failed,
            Some(format!(
                "CellTimeoutError: cell {} timed out after {seconds} s",
                cell_index + 1
            )),
        ),
        Ok(Outcome::KernelDied { why, .. }) => {
            (RunStatus::Failed, Some(format!("DeadKernelError: {why}")))
        }
        Ok(Outcome::Cancelled { .. }) => (RunStatus::Cancelled, Some("cancelled".to_owned())),
        Err(e) => (RunStatus::Failed, Some(e.to_string())),
    };
    let scraps = std::fs::read(output)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Json>(&bytes).ok())
        .map(|nb| scraps(&nb))
        .unwrap_or_default();
    RunSummary {
        index,
        output: output.clone(),
        parameters: parameters.clone(),
        status,
        duration: Some(duration),
        error,
        resumed: false,
        scraps,
    }
}

/// The kernelspec every run uses: `-k`, else the notebook's. The notebook is read (with the
/// first run's parameters, as its path may hold `{name}` fields) so that a missing or invalid
/// one fails the sweep before anything runs.
async fn sweep_kernel_spec(run: &RunOptions, input: &Path, first: &Params) -> Result<KernelSpec> {
    let path = crate::run::format_path(&input.to_string_lossy(), first)?;
    let bytes = tokio::fs::read(&path).await.map_err(|e| Error::Io {
        path: path.clone(),
        source: e,
    })?;
    let nb = Notebook::parse(&bytes, &path)?;
    find_kernel_spec(&kernel_name(&nb, run)?, &run.kernel_prefixes)
}

/// A run `--resume` may skip: its output notebook exists, finished without an exception, every
/// cell completed, and it was run with these parameters.
fn completed_run(index: usize, path: &Path, params: &Params) -> Option<RunSummary> {
    let nb: Json = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let record = &nb["metadata"]["papermill"];
    let finished = record["exception"] != json!(true)
        && !record["end_time"].is_null()
        && record["parameters"] == params.to_json();
    let cells_done = nb["cells"].as_array()?.iter().all(|cell| {
        !matches!(
            cell["metadata"]["papermill"]["status"].as_str(),
            Some("pending" | "running" | "failed")
        )
    });
    (finished && cells_done).then(|| RunSummary {
        index,
        output: path.to_path_buf(),
        parameters: params.clone(),
        status: RunStatus::Completed,
        duration: record["duration"].as_f64(),
        error: None,
        resumed: true,
        scraps: scraps(&nb),
    })
}

const GLUE_PREFIX: &str = "application/scrapbook.scrap";
const RECORD_PREFIX: &str = "application/papermill.record";

/// The data scraps of a notebook as scrapbook's `Notebook.scraps` reads them: outputs whose
/// mimetype starts with `application/scrapbook.scrap` (payload `{name, data, encoder,
/// version}`) or papermill's older `application/papermill.record` (`{name: data}`), in cell
/// order, a later one with the same name replacing the value in place. `json` data that is a
/// JSON string is parsed, `text` data is made a string; scraps of other encoders (`pandas`,
/// `display`) and display-only scraps have no JSON value and are left out.
pub fn scraps(nb: &Json) -> Vec<(String, Json)> {
    let mut found: Vec<(String, Json)> = Vec::new();
    let cells = nb["cells"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for cell in cells {
        let outputs = cell["outputs"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        for output in outputs {
            let Some(data) = output["data"].as_object() else {
                continue;
            };
            for (mime, payload) in data {
                let scrap = if let Some(rest) = mime.strip_prefix(RECORD_PREFIX) {
                    let encoder = rest.get(1..).unwrap_or("");
                    payload
                        .as_object()
                        .and_then(|p| p.iter().next())
                        .map(|(name, data)| (name.clone(), data.clone(), encoder.to_owned()))
                } else if mime.starts_with(GLUE_PREFIX) {
                    match (payload["name"].as_str(), payload["encoder"].as_str()) {
                        (Some(name), Some(encoder)) => {
                            Some((name.to_owned(), payload["data"].clone(), encoder.to_owned()))
                        }
                        _ => None,
                    }
                } else {
                    None
                };
                let Some((name, data, encoder)) = scrap else {
                    continue;
                };
                let Some(value) = decode_scrap(data, &encoder) else {
                    continue;
                };
                match found.iter_mut().find(|(n, _)| *n == name) {
                    Some(entry) => entry.1 = value,
                    None => found.push((name, value)),
                }
            }
        }
    }
    found
}

fn decode_scrap(data: Json, encoder: &str) -> Option<Json> {
    if data.is_null() {
        return None;
    }
    match encoder {
        "json" => Some(match &data {
            Json::String(s) => serde_json::from_str(s).unwrap_or(data),
            _ => data,
        }),
        "text" => Some(match data {
            Json::String(_) => data,
            other => Json::String(json_to_value(&other).python_str()),
        }),
        _ => None,
    }
}

/// A JSON value as the Python object `json.loads` makes of it.
fn json_to_value(v: &Json) -> Value {
    match v {
        Json::Null => Value::None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => n
            .as_i64()
            .map_or_else(|| Value::Float(n.as_f64().unwrap_or(f64::NAN)), Value::Int),
        Json::String(s) => Value::Str(s.clone()),
        Json::Array(items) => Value::List(items.iter().map(json_to_value).collect()),
        Json::Object(map) => Value::Dict(
            map.iter()
                .map(|(k, v)| (Value::Str(k.clone()), json_to_value(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_values(p: &Params) -> Vec<(String, String)> {
        p.iter()
            .map(|(n, v)| (n.to_owned(), v.python_repr()))
            .collect()
    }

    #[test]
    fn map_of_lists_is_a_product_with_the_last_key_fastest() {
        let grid = Grid::parse("b: [1, 2]\na: [x, y, z]\n", "g").expect("valid");
        let got: Vec<Vec<(String, String)>> = grid.points().iter().map(names_values).collect();
        let mut want = Vec::new();
        for b in ["1", "2"] {
            for a in ["'x'", "'y'", "'z'"] {
                want.push(vec![
                    ("b".to_owned(), b.to_owned()),
                    ("a".to_owned(), a.to_owned()),
                ]);
            }
        }
        assert_eq!(got, want);
    }

    #[test]
    fn list_of_maps_and_json() {
        let grid = Grid::parse(r#"[{"a": 1.5}, {"a": 2, "b": [1, 2]}]"#, "g").expect("valid");
        assert_eq!(grid.points().len(), 2);
        assert_eq!(grid.points()[0].get("a"), Some(&Value::Float(1.5)));
        assert_eq!(
            grid.points()[1].get("b"),
            Some(&Value::List(vec![Value::Int(1), Value::Int(2)]))
        );
    }

    #[test]
    fn bad_grids_name_the_problem() {
        for (text, expected) in [
            ("a: [", "not valid YAML"),
            ("42", "got a number"),
            ("[]", "no runs"),
            ("a: 1", "`a`: expected a list of values, got a number"),
            ("a: []", "`a`: the list of values is empty"),
            ("[{a: 1}, 3]", "item 2: expected a map"),
            ("a: [1, 18446744073709551615]", "`a`: integer"),
        ] {
            let e = Grid::parse(text, "grid.yaml").expect_err(text).to_string();
            assert!(e.starts_with("grid.yaml: "), "{e}");
            assert!(e.contains(expected), "{text}: {e}");
        }
        let huge: String = ["a", "b", "c", "d", "e", "f"]
            .map(|k| format!("{k}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n"))
            .concat();
        let e = Grid::parse(&huge, "g")
            .map(|g| g.points().len())
            .expect_err("too big")
            .to_string();
        assert!(e.contains("more than"), "{e}");
    }

    #[test]
    fn output_names_sort_in_run_order() {
        let dir = Path::new("out");
        assert_eq!(output_path(dir, "nb", 7, 20), dir.join("nb-007.ipynb"));
        assert_eq!(output_path(dir, "nb", 42, 5000), dir.join("nb-0042.ipynb"));
    }

    #[test]
    fn scraps_as_scrapbook_reads_them() {
        let nb = json!({"cells": [
            {"cell_type": "code", "outputs": [
                {"output_type": "display_data", "metadata": {"scrapbook": {"name": "a", "data": true, "display": false}},
                 "data": {"application/scrapbook.scrap.json+json": {"name": "a", "data": 0.5, "encoder": "json", "version": 1}}},
                {"output_type": "display_data", "metadata": {},
                 "data": {"application/scrapbook.scrap.text+json": {"name": "t", "data": 12, "encoder": "text", "version": 1}}},
                {"output_type": "display_data", "metadata": {},
                 "data": {"application/papermill.record/json": {"old": "[1, 2]"}}},
                {"output_type": "display_data", "metadata": {},
                 "data": {"application/scrapbook.scrap.pandas+json": {"name": "df", "data": "AAAA", "encoder": "pandas", "version": 1}}}
            ]},
            {"cell_type": "code", "outputs": [
                {"output_type": "display_data", "metadata": {},
                 "data": {"application/scrapbook.scrap.json+json": {"name": "a", "data": {"k": [1]}, "encoder": "json", "version": 1}}}
            ]}
        ]});
        assert_eq!(
            scraps(&nb),
            vec![
                ("a".to_owned(), json!({"k": [1]})),
                ("t".to_owned(), json!("12")),
                ("old".to_owned(), json!([1, 2])),
            ]
        );
    }

    #[test]
    fn csv_quotes_and_columns() {
        let mut p = Params::new();
        p.set("name", Value::Str("a,b".to_owned()));
        p.set("n", Value::Int(3));
        let summary = SweepSummary {
            runs: vec![RunSummary {
                index: 0,
                output: PathBuf::from("out/nb-000.ipynb"),
                parameters: p,
                status: RunStatus::Failed,
                duration: Some(1.25),
                error: Some("ValueError: say \"no\"".to_owned()),
                resumed: false,
                scraps: vec![("acc".to_owned(), json!(0.5))],
            }],
        };
        assert_eq!(
            summary.to_csv(),
            "index,output,status,duration_seconds,error,resumed,param.name,param.n,scrap.acc\r\n\
             0,out/nb-000.ipynb,failed,1.250,\"ValueError: say \"\"no\"\"\",false,\"a,b\",3,0.5\r\n"
        );
    }
}
