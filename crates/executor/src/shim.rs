//! The supervisor of one replica (`mofang shim` / `mofang-shim`):
//!
//! ```text
//! mofang shim --log FILE --status FILE [--cwd DIR] -- PROGRAM ARGS...
//! ```
//!
//! It runs PROGRAM with stdout and stderr appended to the log, in its own process group (so
//! one signal to the group reaches both), notes SIGTERM and SIGINT instead of dying of them
//! (the replica gets them from the same group signal and decides), waits for the replica, and
//! writes the status file atomically (temporary file, fsync, rename): exit code or signal, CPU
//! time and peak memory, start and end times. A program that cannot start is recorded as exit
//! code 127 with the reason, as a shell would. Its own exit code is the replica's (128 + signal
//! when a signal ended it).

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use crate::{ExitStatus, Usage, now_ms};

struct Args {
    log: PathBuf,
    status: PathBuf,
    cwd: Option<PathBuf>,
    command: Vec<OsString>,
}

fn parse(mut args: impl Iterator<Item = OsString>) -> Result<Args, String> {
    let (mut log, mut status, mut cwd) = (None, None, None);
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--log") => log = args.next().map(PathBuf::from),
            Some("--status") => status = args.next().map(PathBuf::from),
            Some("--cwd") => cwd = args.next().map(PathBuf::from),
            Some("--") => break,
            _ => return Err(format!("unexpected argument {}", arg.to_string_lossy())),
        }
    }
    let command: Vec<OsString> = args.collect();
    Ok(Args {
        log: log.ok_or("--log FILE is required")?,
        status: status.ok_or("--status FILE is required")?,
        cwd,
        command: if command.is_empty() {
            return Err("no program after --".into());
        } else {
            command
        },
    })
}

/// Runs the shim with the process's arguments after the program name (and after the word
/// `shim` when invoked as `mofang shim`).
pub fn main_from_args() -> ExitCode {
    let mut args = std::env::args_os().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "shim") {
        args.next();
    }
    run(args)
}

/// Runs the shim on the given arguments (without the program name).
pub fn run(args: impl Iterator<Item = OsString>) -> ExitCode {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "mofang shim: {e} (usage: --log FILE --status FILE [--cwd DIR] -- PROGRAM ARGS...)"
            );
            return ExitCode::from(2);
        }
    };
    // A handler, not SIG_IGN: the replica must not inherit an ignored SIGTERM.
    let noted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        let _ = signal_hook::flag::register(signal, noted.clone());
    }
    let started_ms = now_ms();
    let log = OpenOptions::new().create(true).append(true).open(&args.log);
    let (status, code) = match log {
        Err(e) => failed(
            started_ms,
            format!("cannot open the log {}: {e}", args.log.display()),
        ),
        Ok(log) => supervise(&args, log, started_ms),
    };
    if let Err(e) = write_status(&args.status, &status) {
        eprintln!("mofang shim: cannot write {}: {e}", args.status.display());
        return ExitCode::from(125);
    }
    ExitCode::from(code)
}

fn failed(started_ms: i64, error: String) -> (ExitStatus, u8) {
    (
        ExitStatus {
            exit_code: Some(127),
            signal: None,
            usage: Usage::default(),
            started_ms,
            finished_ms: now_ms(),
            error: Some(error),
        },
        127,
    )
}

fn supervise(args: &Args, mut log: std::fs::File, started_ms: i64) -> (ExitStatus, u8) {
    let (stdout, stderr) = match (log.try_clone(), log.try_clone()) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            return failed(started_ms, format!("cannot share the log: {e}"));
        }
    };
    let mut cmd = Command::new(&args.command[0]);
    cmd.args(&args.command[1..])
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if let Some(dir) = &args.cwd {
        cmd.current_dir(dir);
    }
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let error = format!("cannot start {}: {e}", args.command[0].to_string_lossy());
            let _ = writeln!(log, "mofang: {error}");
            return failed(started_ms, error);
        }
    };
    let waited = loop {
        match child.wait() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    let usage = children_usage();
    match waited {
        Ok(status) => {
            let (exit_code, signal) = (status.code(), status.signal());
            let code = match (exit_code, signal) {
                (Some(c), _) => u8::try_from(c & 0xff).unwrap_or(1),
                (None, Some(s)) => u8::try_from((128 + s) & 0xff).unwrap_or(1),
                (None, None) => 1,
            };
            (
                ExitStatus {
                    exit_code,
                    signal,
                    usage,
                    started_ms,
                    finished_ms: now_ms(),
                    error: None,
                },
                code,
            )
        }
        Err(e) => failed(started_ms, format!("cannot wait for the replica: {e}")),
    }
}

fn children_usage() -> Usage {
    match nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN) {
        Ok(u) => {
            let ms = |t: nix::sys::time::TimeVal| {
                u64::try_from(t.tv_sec()).unwrap_or(0) * 1000
                    + u64::try_from(t.tv_usec()).unwrap_or(0) / 1000
            };
            Usage {
                user_cpu_ms: ms(u.user_time()),
                system_cpu_ms: ms(u.system_time()),
                max_rss_kib: u64::try_from(u.max_rss()).unwrap_or(0),
            }
        }
        Err(_) => Usage::default(),
    }
}

fn write_status(path: &Path, status: &ExitStatus) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(status).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    Ok(())
}
