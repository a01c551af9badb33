//! `mofang run NB --grid FILE [-j N] [--resume] OUTDIR`: the sweep flags →
//! `mofang_notebook::sweep::SweepOptions`; a runs progress bar on stderr; Ctrl-C / SIGTERM
//! cancel the sweep (running kernels are interrupted, the summary is still written).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::bail;
use mofang_notebook::sweep::{Grid, RunStatus, RunSummary, SweepObserver, SweepOptions, run_sweep};
use mofang_notebook::{Input, Output, RunOptions};

use super::{Exit, RunArgs, collect_parameters};

pub async fn run(args: &RunArgs, grid_file: &Path) -> anyhow::Result<()> {
    if args.jobs == 0 {
        bail!("-j/--jobs: must be at least 1");
    }
    for (given, flag) in [
        (args.stdout_file.is_some(), "--stdout-file"),
        (args.stderr_file.is_some(), "--stderr-file"),
        (args.log_output, "--log-output"),
        (
            args.inject_output_path || args.inject_paths,
            "--inject-output-path/--inject-paths",
        ),
    ] {
        if given {
            bail!("{flag} cannot be used with --grid (every run has its own output notebook)");
        }
    }
    let Some(input) = args.notebook_path.clone() else {
        bail!("missing argument NOTEBOOK_PATH");
    };
    if input == "-" || input.starts_with("s3://") {
        bail!("--grid: the input notebook must be a local file, not {input}");
    }
    let Some(out_dir) = args.output_path.clone() else {
        bail!(
            "missing argument OUTDIR (with --grid the output is a directory for the notebooks and the summary)"
        );
    };
    if out_dir == "-" || out_dir.starts_with("s3://") {
        bail!("--grid: the output must be a local directory, not {out_dir}");
    }
    if Path::new(&out_dir).is_file() {
        bail!("--grid: the output {out_dir} is a file; with --grid it is a directory");
    }
    let grid = Grid::from_file(grid_file).map_err(|e| anyhow::anyhow!("--grid {e}"))?;
    let parameters = collect_parameters(args, &input, &out_dir)?;
    let positive = |flag: &str, seconds: u64| {
        if seconds == 0 {
            bail!("{flag}: must be greater than 0");
        }
        Ok(Duration::from_secs(seconds))
    };
    if let Some(cwd) = &args.cwd
        && !cwd.is_dir()
    {
        bail!("--cwd: {} is not a directory", cwd.display());
    }
    let options = SweepOptions {
        run: RunOptions {
            input: Input::File(PathBuf::from(&input)),
            // Replaced per run.
            output: Output::Stdout,
            parameters,
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
        },
        grid,
        out_dir: PathBuf::from(&out_dir),
        jobs: args.jobs,
        resume: args.resume,
    };

    let (cancel_tx, cancel) = tokio::sync::watch::channel(false);
    let signals = tokio::spawn(async move {
        crate::shutdown_signal().await;
        let _ = cancel_tx.send(true);
        // stderr may be gone (a closed pipe); printing must not panic.
        let _ = writeln!(
            std::io::stderr(),
            "\nmofang: interrupted; stopping the running notebooks"
        );
    });
    let mut progress = Progress {
        show: !args.no_progress_bar,
        total: 0,
        done: 0,
        failed: 0,
    };
    let result = run_sweep(&options, cancel, &mut progress).await;
    signals.abort();
    progress.finish();
    let summary = result?;

    let files = format!(
        "{}",
        Path::new(&out_dir).join("summary.{csv,json}").display()
    );
    let total = summary.runs.len();
    let completed = summary.count(RunStatus::Completed);
    let failed = summary.count(RunStatus::Failed);
    let cancelled = summary.count(RunStatus::Cancelled);
    let resumed = summary.runs.iter().filter(|r| r.resumed).count();
    if cancelled > 0 {
        return Err(Exit {
            code: 130,
            message: format!(
                "interrupted: {completed} of {total} runs completed, {failed} failed, {cancelled} cancelled or not started; summary in {files}"
            ),
        }
        .into());
    }
    if failed > 0 {
        let first = summary
            .runs
            .iter()
            .find(|r| r.status == RunStatus::Failed)
            .map(|r| {
                format!(
                    " (first: run {}: {})",
                    r.index,
                    r.error.as_deref().unwrap_or("failed")
                )
            })
            .unwrap_or_default();
        bail!("{failed} of {total} runs failed{first}; summary in {files}");
    }
    let resumed = if resumed > 0 {
        format!(" ({resumed} resumed)")
    } else {
        String::new()
    };
    let _ = writeln!(
        std::io::stderr(),
        "{completed} runs completed{resumed}; summary in {files}"
    );
    Ok(())
}

/// `Sweep:  45%|█████████           | 9/20 runs [1 failed]` on stderr.
struct Progress {
    show: bool,
    total: usize,
    done: usize,
    failed: usize,
}

impl Progress {
    fn draw(&self) {
        if !self.show {
            return;
        }
        super::draw_bar(
            "Sweep",
            self.done,
            self.total,
            &format!("runs [{} failed]", self.failed),
        );
    }

    fn finish(&self) {
        if self.show && self.total > 0 {
            let _ = writeln!(std::io::stderr());
        }
    }
}

impl SweepObserver for Progress {
    fn sweep_started(&mut self, total: usize, resumed: usize) {
        self.total = total;
        self.done = resumed;
        self.draw();
    }

    fn run_finished(&mut self, run: &RunSummary) {
        self.done += 1;
        if run.status == RunStatus::Failed {
            self.failed += 1;
        }
        self.draw();
    }
}
