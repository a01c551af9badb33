//! `mofang run`: papermill's command line (flags, defaults, parameter precedence, `-` and
//! pipes) → `mofang_notebook::RunOptions`; progress bar and `--log-output` on stderr.

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{ArgAction, Args};
use mofang_notebook::{Input, Observer, Outcome, Output, Params, RunOptions, Value};

mod sweep;

/// Exit status other than 1 for a failed run (papermill exits 138 when the kernel died).
#[derive(Debug)]
pub struct Exit {
    pub code: u8,
    pub message: String,
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Exit {}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Input notebook: a path, s3://bucket/key, or `-` for standard input (optional when stdin
    /// is a pipe).
    notebook_path: Option<String>,
    /// Output notebook: a path, s3://bucket/key, or `-` for standard output (the default when
    /// stdout is not a terminal); with --grid, the directory for the runs' notebooks and the
    /// summary.
    output_path: Option<String>,
    /// Run a sweep: one run per parameter set of this YAML/JSON file (a list of maps, or a map
    /// of lists for their cartesian product), over the other parameter flags.
    #[arg(long, value_name = "FILE")]
    grid: Option<PathBuf>,
    /// With --grid: runs at a time, each on a fresh kernel started ahead.
    #[arg(short = 'j', long, default_value_t = 1, value_name = "N")]
    jobs: usize,
    /// With --grid: skip runs whose output notebook already completed with the same parameters.
    #[arg(long)]
    resume: bool,
    /// Parameter NAME VALUE; VALUE is typed as papermill types it: True/False/None, int, float, else string.
    #[arg(short = 'p', long = "parameters", num_args = 2, value_names = ["NAME", "VALUE"], action = ArgAction::Append, allow_hyphen_values = true)]
    parameters: Vec<String>,
    /// Parameter NAME VALUE, VALUE kept as a string.
    #[arg(short = 'r', long = "parameters_raw", visible_alias = "parameters-raw", num_args = 2, value_names = ["NAME", "VALUE"], action = ArgAction::Append, allow_hyphen_values = true)]
    parameters_raw: Vec<String>,
    /// YAML file of parameters (a local path or s3://bucket/key).
    #[arg(short = 'f', long = "parameters_file", visible_alias = "parameters-file", action = ArgAction::Append)]
    parameters_file: Vec<PathBuf>,
    /// YAML string of parameters.
    #[arg(short = 'y', long = "parameters_yaml", visible_alias = "parameters-yaml", action = ArgAction::Append)]
    parameters_yaml: Vec<String>,
    /// Base64-encoded YAML string of parameters.
    #[arg(short = 'b', long = "parameters_base64", visible_alias = "parameters-base64", action = ArgAction::Append)]
    parameters_base64: Vec<String>,
    /// Add the input path as the parameter PAPERMILL_INPUT_PATH.
    #[arg(long)]
    inject_input_path: bool,
    /// Add the output path as the parameter PAPERMILL_OUTPUT_PATH.
    #[arg(long)]
    inject_output_path: bool,
    /// Both --inject-input-path and --inject-output-path.
    #[arg(long)]
    inject_paths: bool,
    /// Execution engine; only papermill's default (nbclient semantics) exists.
    #[arg(long)]
    engine: Option<String>,
    /// Accepted for papermill compatibility: the output is always saved as cells run.
    #[arg(long, overrides_with = "no_request_save_on_cell_execute")]
    request_save_on_cell_execute: bool,
    #[arg(long, hide = true)]
    no_request_save_on_cell_execute: bool,
    /// Accepted for papermill compatibility: outputs are saved at most every second while a cell runs.
    #[arg(long, default_value_t = 30)]
    autosave_cell_every: u64,
    /// Write the notebook with parameters injected, without executing it.
    #[arg(long, overrides_with = "prepare_execute")]
    prepare_only: bool,
    #[arg(long, hide = true)]
    prepare_execute: bool,
    /// Kernel to run (overrides metadata.kernelspec.name).
    #[arg(short = 'k', long)]
    kernel: Option<String>,
    /// Language for the parameters cell (overrides the notebook's metadata).
    #[arg(short = 'l', long)]
    language: Option<String>,
    /// Working directory of the kernel.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// Show a progress bar on stderr (default: on unless --log-output or output to stdout).
    #[arg(long, overrides_with = "no_progress_bar")]
    progress_bar: bool,
    #[arg(long)]
    no_progress_bar: bool,
    /// Write the cells' outputs to stderr as they arrive.
    #[arg(long, overrides_with = "no_log_output")]
    log_output: bool,
    #[arg(long, hide = true)]
    no_log_output: bool,
    /// Write the notebook's stdout stream to this file.
    #[arg(long)]
    stdout_file: Option<PathBuf>,
    /// Write the notebook's stderr stream to this file.
    #[arg(long)]
    stderr_file: Option<PathBuf>,
    /// Accepted for papermill compatibility; verbosity comes from RUST_LOG.
    #[arg(long)]
    log_level: Option<String>,
    /// Seconds to wait for the kernel to start.
    #[arg(long, alias = "start_timeout", default_value_t = 60)]
    start_timeout: u64,
    /// Seconds a cell may run before it is interrupted and the run fails (default: no limit).
    #[arg(long)]
    execution_timeout: Option<u64>,
    /// Hide code cells' input (metadata.jupyter.source_hidden).
    #[arg(long, overrides_with = "no_report_mode")]
    report_mode: bool,
    #[arg(long, hide = true)]
    no_report_mode: bool,
}

fn stdin_is_pipe() -> bool {
    use std::os::unix::fs::FileTypeExt as _;
    std::fs::metadata("/dev/stdin").is_ok_and(|m| m.file_type().is_fifo())
}

/// papermill's parameter order: injected paths, then -b, -f, -y, -p, -r (each in command-line
/// order); a later source replaces an earlier value.
fn collect_parameters(args: &RunArgs, input: &str, output: &str) -> anyhow::Result<Params> {
    let mut params = Params::new();
    if args.inject_input_path || args.inject_paths {
        params.set("PAPERMILL_INPUT_PATH", Value::Str(input.to_owned()));
    }
    if args.inject_output_path || args.inject_paths {
        params.set("PAPERMILL_OUTPUT_PATH", Value::Str(output.to_owned()));
    }
    for encoded in &args.parameters_base64 {
        params.update_from_base64(encoded)?;
    }
    for file in &args.parameters_file {
        let text = read_parameters_file(file)
            .with_context(|| format!("-f/--parameters_file {}", file.display()))?;
        params.update_from_yaml(&text, &format!("-f {}", file.display()))?;
    }
    for yaml in &args.parameters_yaml {
        params.update_from_yaml(yaml, "-y/--parameters_yaml")?;
    }
    for pair in args.parameters.chunks(2) {
        if let [name, value] = pair {
            params.set(name, mofang_notebook::params::resolve_type(value));
        }
    }
    for pair in args.parameters_raw.chunks(2) {
        if let [name, value] = pair {
            params.set(name, Value::Str(value.clone()));
        }
    }
    Ok(params)
}

/// A `-f` file: a local path or an `s3://bucket/key` object (read on this runtime's thread
/// pool, so `collect_parameters` stays synchronous).
fn read_parameters_file(file: &std::path::Path) -> anyhow::Result<String> {
    if let Some(url) = file
        .to_str()
        .filter(|f| mofang_notebook::storage::S3Url::is_s3(f))
    {
        let bytes = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(mofang_notebook::storage::read_arg(url))
        })?;
        return String::from_utf8(bytes.to_vec()).context("not UTF-8 text");
    }
    Ok(std::fs::read_to_string(file)?)
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    if let Some(engine) = args.engine.as_deref()
        && engine != "nbclient"
    {
        bail!("--engine: no engine named `{engine}` (only nbclient)");
    }
    if let Some(grid) = &args.grid {
        return sweep::run(&args, grid).await;
    }
    if args.resume || args.jobs != 1 {
        bail!("--resume and -j/--jobs need --grid FILE");
    }
    let input_piped = stdin_is_pipe();
    let output_piped = !std::io::stdout().is_terminal();
    let (input, output) = match (&args.notebook_path, &args.output_path) {
        (Some(nb), None) if input_piped => ("-".to_owned(), nb.clone()),
        (nb, out) => {
            if out.is_none() && !(input_piped || output_piped) {
                bail!("missing argument OUTPUT_PATH (or `-` for standard output)");
            }
            let Some(nb) = nb.clone().or_else(|| input_piped.then(|| "-".to_owned())) else {
                bail!("missing argument NOTEBOOK_PATH (or `-` for standard input)");
            };
            (nb, out.clone().unwrap_or_else(|| "-".to_owned()))
        }
    };
    let params = collect_parameters(&args, &input, &output)?;
    // Writing the notebook to stdout, or an explicit flag: only --progress-bar shows one.
    let progress = if output == "-" || args.progress_bar || args.no_progress_bar {
        args.progress_bar
    } else {
        !args.log_output
    };
    let positive = |flag: &str, seconds: u64| {
        if seconds == 0 {
            bail!("{flag}: must be greater than 0");
        }
        Ok(Duration::from_secs(seconds))
    };
    let options = RunOptions {
        input: Input::from_arg(&input),
        output: Output::from_arg(&output),
        parameters: params,
        kernel_name: args.kernel.clone(),
        language: args.language.clone(),
        cwd: args.cwd.clone(),
        prepare_only: args.prepare_only,
        report_mode: args.report_mode,
        start_timeout: positive("--start-timeout", args.start_timeout)?,
        execution_timeout: args
            .execution_timeout
            .map(|s| positive("--execution-timeout", s))
            .transpose()?,
        kernel_prefixes: Vec::new(),
        version: format!("mofang {}", env!("CARGO_PKG_VERSION")),
    };
    if let Some(cwd) = &options.cwd
        && !cwd.is_dir()
    {
        bail!("--cwd: {} is not a directory", cwd.display());
    }
    let open = |path: &Option<PathBuf>, flag: &str| -> anyhow::Result<Option<std::fs::File>> {
        path.as_ref()
            .map(|p| std::fs::File::create(p).with_context(|| format!("{flag} {}", p.display())))
            .transpose()
    };
    let mut observer = Console {
        progress,
        log_output: args.log_output,
        stdout_file: open(&args.stdout_file, "--stdout-file")?,
        stderr_file: open(&args.stderr_file, "--stderr-file")?,
        total: 0,
        done: 0,
    };
    let outcome = mofang_notebook::run_notebook(&options, &mut observer).await?;
    let shown = |i: usize| format!("cell {}", i + 1);
    match outcome {
        Outcome::Prepared | Outcome::Completed => Ok(()),
        Outcome::CellError {
            cell_index,
            ename,
            evalue,
        } => bail!(
            "{} raised {ename}: {evalue} (the output notebook {output} records it)",
            shown(cell_index)
        ),
        Outcome::TimedOut {
            cell_index,
            seconds,
        } => bail!(
            "{} timed out after {seconds} s (--execution-timeout) and was interrupted (the output notebook {output} records it)",
            shown(cell_index)
        ),
        Outcome::Cancelled { .. } => Err(Exit {
            code: 130,
            message: format!("interrupted (the output notebook {output} records it)"),
        }
        .into()),
        Outcome::KernelDied { cell_index, why } => Err(Exit {
            code: 138,
            message: format!(
                "the kernel died while running {}: {why} (the output notebook {output} records it)",
                shown(cell_index)
            ),
        }
        .into()),
    }
}

/// Draws `\rLABEL:  45%|█████████           | 9/20 TAIL` on stderr (papermill's tqdm look);
/// the progress bars of a run and of a sweep.
fn draw_bar(label: &str, done: usize, total: usize, tail: &str) {
    let width = 20;
    let filled = (done * width)
        .checked_div(total)
        .unwrap_or(width)
        .min(width);
    let mut err = std::io::stderr().lock();
    let _ = write!(
        err,
        "\r{label}: {:>3}%|{}{}| {done}/{total} {tail}",
        (done * 100).checked_div(total).unwrap_or(100),
        "█".repeat(filled),
        " ".repeat(width - filled),
    );
    let _ = err.flush();
}

/// Progress bar, `--log-output` and `--stdout-file`/`--stderr-file`.
struct Console {
    progress: bool,
    log_output: bool,
    stdout_file: Option<std::fs::File>,
    stderr_file: Option<std::fs::File>,
    total: usize,
    done: usize,
}

impl Console {
    fn draw(&self) {
        if !self.progress {
            return;
        }
        draw_bar("Executing", self.done, self.total, "[cells]");
    }
}

impl Observer for Console {
    fn notebook_started(&mut self, cells: usize) {
        self.total = cells;
        self.draw();
    }

    fn cell_started(&mut self, index: usize, _cell: &serde_json::Value) {
        if self.log_output {
            eprintln!("Executing Cell {:-<40}", index + 1);
        }
    }

    fn output(&mut self, _index: usize, output: &serde_json::Value) {
        let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
        match output["output_type"].as_str() {
            Some("stream") => {
                let content = text(&output["text"]);
                let file = if output["name"] == "stderr" {
                    &mut self.stderr_file
                } else {
                    &mut self.stdout_file
                };
                if let Some(f) = file {
                    let _ = f.write_all(content.as_bytes()).and_then(|()| f.flush());
                }
                if self.log_output {
                    eprint!("{content}");
                }
            }
            _ if self.log_output => {
                if let Some(plain) = output["data"]["text/plain"].as_str() {
                    eprintln!("{plain}");
                }
            }
            _ => {}
        }
    }

    fn cell_finished(&mut self, index: usize, _failed: bool) {
        if self.log_output {
            eprintln!("Ending Cell {:-<43}", index + 1);
        }
        self.done = (self.done + 1).min(self.total);
        self.draw();
    }

    fn notebook_finished(&mut self) {
        if self.progress {
            self.done = self.total;
            self.draw();
            eprintln!();
        }
    }
}
