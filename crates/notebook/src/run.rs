//! One notebook run, step for step as papermill's `execute_notebook`: read, inject parameters,
//! prepare the record, execute every cell on a kernel, save as it goes, banner on failure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::document::{Notebook, cell_tags, new_code_cell};
use crate::kernel::{ExecEnd, Kernel, StartingKernel, wait_cancel};
use crate::kernelspec::find_kernel_spec;
use crate::outputs::Outputs;
use crate::params::{Params, Value as Param};
use crate::record::{
    Stamp, cell_record, ensure_notebook_record, find_execution_error, insert_error_banner,
    notebook_record, remove_error_markers,
};
use crate::translate::Translator;
use crate::{Error, Result};

/// Where the notebook comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    File(PathBuf),
    /// `-`: standard input.
    Stdin,
    /// `s3://bucket/key` (after `{parameter}` fields are filled in), read with one GET.
    S3(String),
}

/// Where the executed notebook goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Rewritten atomically (temporary file + rename) at every step, so it is always readable.
    File(PathBuf),
    /// `-`: standard output, written once at the end.
    Stdout,
    /// `s3://bucket/key`: each save replaces the object whole (one PUT), at most once a second
    /// while the run goes on, and always at the end ([`crate::storage`]).
    S3(String),
}

/// What to run and how (papermill's `execute_notebook` arguments).
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub input: Input,
    pub output: Output,
    pub parameters: Params,
    /// `-k`: overrides `metadata.kernelspec.name`.
    pub kernel_name: Option<String>,
    /// `--language`: overrides `metadata.language_info.name` for the translator.
    pub language: Option<String>,
    /// The kernel's working directory.
    pub cwd: Option<PathBuf>,
    pub prepare_only: bool,
    pub report_mode: bool,
    pub start_timeout: Duration,
    /// Per cell; `None` waits forever.
    pub execution_timeout: Option<Duration>,
    /// Environment prefixes whose `share/jupyter/kernels` are searched for the kernel, before
    /// `$VIRTUAL_ENV` and the rest of Jupyter's path.
    pub kernel_prefixes: Vec<PathBuf>,
    /// Written as `metadata.papermill.version`.
    pub version: String,
}

/// Progress and logging hooks (a progress bar, `--log-output`, `--stdout-file`).
pub trait Observer: Send {
    fn notebook_started(&mut self, _cells: usize) {}
    fn cell_started(&mut self, _index: usize, _cell: &Value) {}
    /// An output as it arrives (a stream chunk, a display, an error).
    fn output(&mut self, _index: usize, _output: &Value) {}
    fn cell_finished(&mut self, _index: usize, _failed: bool) {}
    fn notebook_finished(&mut self) {}
}

/// What a caller such as a sweep hands to one run besides its options.
#[derive(Debug, Default)]
pub struct RunHooks {
    /// A kernel started ahead; used when its kernelspec is the one the notebook needs (else it
    /// is dropped, which kills it, and a kernel is started as usual).
    pub kernel: Option<StartingKernel>,
    /// When this turns `true` the run stops: the running cell is interrupted, no further cell
    /// starts, and the run ends as [`Outcome::Cancelled`].
    pub cancel: Option<tokio::sync::watch::Receiver<bool>>,
    /// Log the run's input, output and kernel at debug level instead of info (a sweep reports
    /// its own progress).
    pub quiet: bool,
}

/// An observer that does nothing.
#[derive(Debug, Default)]
pub struct Quiet;
impl Observer for Quiet {}

/// How a run ended (errors before the run are [`Error`]s instead).
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `--prepare-only`: parameters injected, nothing executed.
    Prepared,
    Completed,
    /// A cell raised; 0-based index into the executed notebook (before the banner cells).
    CellError {
        cell_index: usize,
        ename: String,
        evalue: String,
    },
    /// A cell ran past `--execution-timeout`; it was interrupted.
    TimedOut {
        cell_index: usize,
        seconds: f64,
    },
    /// The kernel died while a cell ran (or could not be reached).
    KernelDied {
        cell_index: usize,
        why: String,
    },
    /// [`RunHooks::cancel`] stopped the run, in this cell or before the kernel was ready.
    Cancelled {
        cell_index: Option<usize>,
    },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Prepared | Outcome::Completed)
    }
}

/// Runs a notebook. Bad input (unreadable or invalid notebook, unknown kernel, parameters that
/// cannot be translated) is an `Err` before anything is written.
pub async fn run_notebook(opts: &RunOptions, observer: &mut dyn Observer) -> Result<Outcome> {
    run_notebook_with(opts, observer, RunHooks::default()).await
}

/// [`run_notebook`] with a kernel started ahead and/or a cancellation signal.
pub async fn run_notebook_with(
    opts: &RunOptions,
    observer: &mut dyn Observer,
    hooks: RunHooks,
) -> Result<Outcome> {
    let (input_label, input_bytes) = match &opts.input {
        Input::File(path) => {
            let formatted = format_path(&path.to_string_lossy(), &opts.parameters)?;
            let bytes = tokio::fs::read(&formatted).await.map_err(|e| Error::Io {
                path: formatted.clone(),
                source: e,
            })?;
            (formatted, bytes)
        }
        Input::Stdin => {
            let bytes = tokio::task::spawn_blocking(|| {
                let mut buf = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf).map(|_| buf)
            })
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map_err(|e| Error::Io {
                path: "-".to_owned(),
                source: e,
            })?;
            ("-".to_owned(), bytes)
        }
        Input::S3(url) => {
            let formatted = format_path(url, &opts.parameters)?;
            let bytes = crate::storage::get(&crate::storage::S3Url::parse(&formatted)?).await?;
            (formatted, bytes.to_vec())
        }
    };
    let output = match &opts.output {
        Output::File(p) => Output::File(PathBuf::from(format_path(
            &p.to_string_lossy(),
            &opts.parameters,
        )?)),
        Output::Stdout => Output::Stdout,
        Output::S3(url) => Output::S3(format_path(url, &opts.parameters)?),
    };
    let output_label = match &output {
        Output::File(p) => p.to_string_lossy().into_owned(),
        Output::Stdout => "-".to_owned(),
        Output::S3(url) => url.clone(),
    };
    if hooks.quiet {
        tracing::debug!("Input Notebook:  {input_label}");
        tracing::debug!("Output Notebook: {output_label}");
    } else {
        tracing::info!("Input Notebook:  {input_label}");
        tracing::info!("Output Notebook: {output_label}");
    }

    let mut nb = Notebook::parse(&input_bytes, &input_label)?;
    nb.upgrade();
    ensure_notebook_record(&mut nb, &opts.version);

    if !opts.parameters.is_empty() {
        let kernel_name = kernel_name(&nb, opts)?;
        let language = language(&nb, opts)?;
        let translator = Translator::find(&kernel_name, &language)?;
        let source = translator.codify(&opts.parameters, "Parameters")?;
        inject_parameters(&mut nb, &source, opts.report_mode);
        notebook_record(&mut nb).insert("parameters".into(), opts.parameters.to_json());
    }
    if opts.report_mode {
        for cell in nb.cells_mut() {
            if cell["cell_type"] == "code" {
                cell["metadata"]["jupyter"] = json!({"source_hidden": true});
            }
        }
    }
    let record = notebook_record(&mut nb);
    record.insert("input_path".into(), json!(input_label));
    record.insert("output_path".into(), json!(output_label));
    remove_error_markers(&mut nb);

    let mut saver = Saver::new(output)?;
    if opts.prepare_only {
        saver.save(&nb, true).await?;
        return Ok(Outcome::Prepared);
    }

    let spec = find_kernel_spec(&kernel_name(&nb, opts)?, &opts.kernel_prefixes)?;
    let outcome = match execute(&mut nb, opts, &spec, &mut saver, observer, hooks).await {
        Ok(outcome) => outcome,
        Err(e) => {
            // E.g. a kernel that did not start: its record is saved before the error returns.
            saver.flush().await;
            return Err(e);
        }
    };
    if !outcome.is_success()
        && let Some((index, count)) = find_execution_error(&nb)
    {
        insert_error_banner(&mut nb, index, &count);
    }
    saver.save(&nb, true).await?;
    Ok(outcome)
}

async fn execute(
    nb: &mut Notebook,
    opts: &RunOptions,
    spec: &crate::kernelspec::KernelSpec,
    saver: &mut Saver,
    observer: &mut dyn Observer,
    hooks: RunHooks,
) -> Result<Outcome> {
    let (_never, no_cancel) = tokio::sync::watch::channel(false);
    let mut cancel = hooks.cancel.unwrap_or(no_cancel);
    // notebook_start
    let start = Stamp::now();
    let record = notebook_record(nb);
    record.insert("start_time".into(), json!(start.iso()));
    record.insert("end_time".into(), Value::Null);
    record.insert("duration".into(), Value::Null);
    record.insert("exception".into(), Value::Null);
    for cell in nb.cells_mut() {
        if cell["cell_type"] == "code" {
            cell["execution_count"] = Value::Null;
            cell["outputs"] = json!([]);
        }
        let record = cell_record(cell);
        record.clear();
        record.insert("exception".into(), Value::Null);
        record.insert("start_time".into(), Value::Null);
        record.insert("end_time".into(), Value::Null);
        record.insert("duration".into(), Value::Null);
        record.insert("status".into(), json!("pending"));
    }
    saver.save(nb, false).await?;
    observer.notebook_started(nb.cells().len());

    if hooks.quiet {
        tracing::debug!("Executing notebook with kernel: {}", spec.name);
    } else {
        tracing::info!("Executing notebook with kernel: {}", spec.name);
    }
    let starting = async {
        match hooks.kernel {
            Some(ahead) if ahead.name() == spec.name => ahead.ready().await,
            _ => Kernel::start(spec, opts.cwd.as_deref(), opts.start_timeout).await,
        }
    };
    let started = tokio::select! {
        started = starting => Some(started),
        () = wait_cancel(&mut cancel) => None,
    };
    let mut kernel = match started {
        Some(Ok(k)) => k,
        None => {
            finish_unstarted(nb, start, saver).await?;
            return Ok(Outcome::Cancelled { cell_index: None });
        }
        Some(Err(e)) => {
            finish_unstarted(nb, start, saver).await?;
            return Err(e);
        }
    };
    if let Some(info) = kernel.kernel_info().get("language_info") {
        nb.metadata_mut()
            .insert("language_info".into(), info.clone());
    }

    let mut outputs = Outputs::default();
    let mut outcome = Outcome::Completed;
    for index in 0..nb.cells().len() {
        // cell_start
        let cell = &mut nb.cells_mut()[index];
        let record = cell_record(cell);
        let cell_start = Stamp::now();
        record.insert("start_time".into(), json!(cell_start.iso()));
        record.insert("status".into(), json!("running"));
        record.insert("exception".into(), json!(false));
        observer.cell_started(index, &nb.cells()[index]);
        saver.save(nb, false).await?;

        let cell = &nb.cells()[index];
        let source = cell["source"].as_str().unwrap_or("").to_owned();
        let mut failure: Option<Outcome> = None;
        if *cancel.borrow() {
            failure = Some(Outcome::Cancelled {
                cell_index: Some(index),
            });
        } else if cell["cell_type"] == "code" && !source.trim().is_empty() {
            outputs.start_cell();
            let mut last_save = Instant::now();
            let mut pending_save = false;
            let mut failed_save: Option<Error> = None;
            let end = {
                let cells_ptr: &mut Notebook = nb;
                let saver_ref: &mut Saver = saver;
                let mut on_output = |msg: &crate::wire::Message| {
                    if let Some(out) = outputs.handle(cells_ptr.cells_mut(), index, msg) {
                        observer.output(index, &out);
                        pending_save = true;
                    }
                    if pending_save && last_save.elapsed() >= Duration::from_secs(1) {
                        if let Err(e) = saver_ref.save_now(cells_ptr) {
                            failed_save.get_or_insert(e);
                        }
                        last_save = Instant::now();
                        pending_save = false;
                    }
                };
                kernel
                    .execute_cancellable(
                        &source,
                        opts.execution_timeout,
                        &mut cancel,
                        &mut on_output,
                    )
                    .await
            };
            if let Some(e) = failed_save {
                kernel.shutdown().await;
                return Err(e);
            }
            failure = match end {
                ExecEnd::Done(reply) => {
                    if reply.get("status").and_then(Value::as_str) == Some("error") {
                        Some(Outcome::CellError {
                            cell_index: index,
                            ename: text(&reply, "ename"),
                            evalue: text(&reply, "evalue"),
                        })
                    } else {
                        None
                    }
                }
                ExecEnd::TimedOut(_) => {
                    let seconds = opts.execution_timeout.map_or(0.0, |t| t.as_secs_f64());
                    push_error(
                        &mut nb.cells_mut()[index],
                        "CellTimeoutError",
                        &format!(
                            "Cell execution timed out after {seconds} seconds (--execution-timeout); the kernel was interrupted"
                        ),
                    );
                    Some(Outcome::TimedOut {
                        cell_index: index,
                        seconds,
                    })
                }
                ExecEnd::Cancelled(_) => {
                    push_error(
                        &mut nb.cells_mut()[index],
                        "RunCancelled",
                        "The run was cancelled; the kernel was interrupted",
                    );
                    Some(Outcome::Cancelled {
                        cell_index: Some(index),
                    })
                }
                ExecEnd::Died(why) => {
                    let tail = kernel.stderr_tail();
                    let mut message = format!("Kernel died while executing this cell: {why}");
                    if let Some(last) = tail.last() {
                        message.push_str(&format!(" (last stderr line: {last})"));
                    }
                    push_error(&mut nb.cells_mut()[index], "DeadKernelError", &message);
                    Some(Outcome::KernelDied {
                        cell_index: index,
                        why,
                    })
                }
            };
        }
        // cell_exception, cell_complete
        let end = Stamp::now();
        let cell = &mut nb.cells_mut()[index];
        let record = cell_record(cell);
        if failure.is_some() {
            record.insert("exception".into(), json!(true));
            record.insert("status".into(), json!("failed"));
        }
        record.insert("end_time".into(), json!(end.iso()));
        record.insert("duration".into(), json!(end.seconds_since(cell_start)));
        if failure.is_none() {
            record.insert("status".into(), json!("completed"));
        }
        if failure.is_some() {
            notebook_record(nb).insert("exception".into(), json!(true));
        }
        observer.cell_finished(index, failure.is_some());
        saver.save(nb, false).await?;
        if let Some(f) = failure {
            outcome = f;
            break;
        }
    }
    kernel.shutdown().await;

    // notebook_complete
    let end = Stamp::now();
    let record = notebook_record(nb);
    record.insert("end_time".into(), json!(end.iso()));
    record.insert("duration".into(), json!(end.seconds_since(start)));
    for cell in nb.cells_mut() {
        let record = cell_record(cell);
        match record.get("status").and_then(Value::as_str) {
            Some("failed") => break,
            Some("pending") => {
                record.insert("status".into(), json!("completed"));
            }
            _ => {}
        }
    }
    observer.notebook_finished();
    Ok(outcome)
}

/// Records a run that stopped before its kernel was ready (`exception: true`, as a failed start).
async fn finish_unstarted(nb: &mut Notebook, start: Stamp, saver: &mut Saver) -> Result<()> {
    let end = Stamp::now();
    let record = notebook_record(nb);
    record.insert("end_time".into(), json!(end.iso()));
    record.insert("duration".into(), json!(end.seconds_since(start)));
    record.insert("exception".into(), json!(true));
    saver.save(nb, false).await
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

fn push_error(cell: &mut Value, ename: &str, evalue: &str) {
    if let Some(outputs) = cell.get_mut("outputs").and_then(Value::as_array_mut) {
        outputs.push(json!({
            "output_type": "error",
            "ename": ename,
            "evalue": evalue,
            "traceback": [format!("{ename}: {evalue}")],
        }));
    }
}

/// papermill's `nb_kernel_name`.
pub(crate) fn kernel_name(nb: &Notebook, opts: &RunOptions) -> Result<String> {
    opts.kernel_name
        .clone()
        .or_else(|| {
            nb.metadata()
                .get("kernelspec")
                .and_then(|k| k.get("name"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .filter(|n| !n.is_empty())
        .ok_or(Error::NoKernelName)
}

/// papermill's `nb_language`.
fn language(nb: &Notebook, opts: &RunOptions) -> Result<String> {
    let meta = nb.metadata();
    let field = |section: &str, key: &str| {
        meta.get(section)
            .and_then(|s| s.get(key))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    opts.language
        .clone()
        .or_else(|| field("language_info", "name"))
        .or_else(|| field("kernelspec", "language"))
        .ok_or(Error::NoLanguage)
}

/// papermill's `parameterize_notebook` placement: replace the first `injected-parameters`
/// cell, else insert after the first `parameters` cell, else at the top (with a warning).
fn inject_parameters(nb: &mut Notebook, source: &str, report_mode: bool) {
    let mut cell = new_code_cell(source);
    cell["metadata"]["tags"] = json!(["injected-parameters"]);
    if report_mode {
        cell["metadata"]["jupyter"] = json!({"source_hidden": true});
    }
    let first = |tag: &str, cells: &[Value]| cells.iter().position(|c| cell_tags(c).contains(&tag));
    let cells = nb.cells_mut();
    if let Some(i) = first("injected-parameters", cells) {
        cells[i] = cell;
    } else if let Some(i) = first("parameters", cells) {
        cells.insert(i + 1, cell);
    } else {
        tracing::warn!("Input notebook does not contain a cell with tag 'parameters'");
        cells.insert(0, cell);
    }
}

/// papermill's `parameterize_path`: `{name}` fields replaced by `str(value)`, `{{`/`}}` escapes.
pub fn format_path(path: &str, params: &Params) -> Result<String> {
    if !path.contains(['{', '}']) {
        return Ok(path.to_owned());
    }
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(ch) => name.push(ch),
                        None => {
                            return Err(Error::PathFormat {
                                path: path.to_owned(),
                                why: "unclosed `{`".to_owned(),
                            });
                        }
                    }
                }
                let value = params.get(&name).ok_or_else(|| Error::PathFormat {
                    path: path.to_owned(),
                    why: format!("missing parameter '{name}'"),
                })?;
                out.push_str(&match value {
                    Param::Str(s) => s.clone(),
                    other => other.python_str(),
                });
            }
            '}' => {
                return Err(Error::PathFormat {
                    path: path.to_owned(),
                    why: "single `}`".to_owned(),
                });
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Writes the output notebook: atomically to a file at every step, throttled to S3, or once to
/// stdout.
struct Saver {
    output: Output,
    s3: Option<crate::storage::Uploader>,
}

impl Saver {
    fn new(output: Output) -> Result<Saver> {
        let s3 = match &output {
            Output::S3(url) => Some(crate::storage::Uploader::new(url)?),
            _ => None,
        };
        Ok(Saver { output, s3 })
    }

    async fn save(&mut self, nb: &Notebook, last: bool) -> Result<()> {
        if let Some(s3) = &mut self.s3 {
            let bytes = bytes::Bytes::from(nb.to_json_bytes());
            return if last {
                s3.finish(bytes).await
            } else {
                s3.save(bytes).await
            };
        }
        match &self.output {
            Output::File(path) => {
                let bytes = nb.to_json_bytes();
                let path = path.clone();
                tokio::task::spawn_blocking(move || write_atomic(&path, &bytes))
                    .await
                    .map_err(|e| Error::Internal(e.to_string()))?
            }
            Output::Stdout if last => {
                let bytes = nb.to_json_bytes();
                tokio::task::spawn_blocking(move || {
                    use std::io::Write as _;
                    let mut out = std::io::stdout().lock();
                    out.write_all(&bytes).and_then(|()| out.flush())
                })
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
                .map_err(|e| Error::Io {
                    path: "-".to_owned(),
                    source: e,
                })
            }
            Output::Stdout | Output::S3(_) => Ok(()),
        }
    }

    /// Waits for queued saves (S3) when a run ends in an error; their failures are only logged
    /// (the run's error is the one reported).
    async fn flush(&mut self) {
        if let Some(s3) = &mut self.s3 {
            s3.flush().await;
        }
    }

    /// A save from inside the output callback (which cannot await).
    fn save_now(&mut self, nb: &Notebook) -> Result<()> {
        match &self.output {
            Output::File(path) => write_atomic(path, &nb.to_json_bytes()),
            Output::S3(_) => match &mut self.s3 {
                Some(s3) => s3.offer(bytes::Bytes::from(nb.to_json_bytes())),
                None => Ok(()),
            },
            Output::Stdout => Ok(()),
        }
    }
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io_err = |source| Error::Io {
        path: path.to_string_lossy().into_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".mofang-")
        .suffix(".ipynb.tmp")
        .tempfile_in(&dir)
        .map_err(io_err)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(io_err)?;
    // A temporary file is created private (0600); the record is an ordinary file.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))
        .map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_formatting_as_python_format() {
        let mut p = Params::new();
        p.set("alpha", Param::Float(0.5));
        p.set("name", Param::Str("run".into()));
        assert_eq!(
            format_path("out/{name}_{alpha}.ipynb", &p).expect("formats"),
            "out/run_0.5.ipynb"
        );
        assert_eq!(
            format_path("a{{b}}.ipynb", &p).expect("formats"),
            "a{b}.ipynb"
        );
        assert!(format_path("{missing}.ipynb", &p).is_err());
        assert!(format_path("{name.ipynb", &p).is_err());
    }
}
