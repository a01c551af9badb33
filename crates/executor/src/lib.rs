//! The local executor: runs each replica of a job as a child process of a small supervisor
//! (the *shim*, [`shim`]) in its own process group, with its output in a log file and its end
//! recorded in a status file the shim writes atomically.
//!
//! Because the shim, not the server, is the replica's parent and writes the status, a server
//! that restarts can re-adopt replicas that kept running ([`LocalExecutor::poll`] works on any
//! [`Handle`], including one read back from the store) and still learn how they ended. A
//! [`Handle`] names the shim by pid *and* start time, so a reused pid is never mistaken for it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub mod shim;

/// What can go wrong starting or stopping a replica.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("replica has no command")]
    NoCommand,
    #[error("status file {path}: {message}")]
    Status { path: String, message: String },
}

impl Error {
    fn io(what: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything needed to start one attempt of one replica.
#[derive(Debug, Clone)]
pub struct Launch {
    pub job_id: String,
    pub job_name: String,
    pub user: String,
    pub group: String,
    /// The replica's role and its index within the role.
    pub role: String,
    pub index: u32,
    /// Its position over all replicas of the job (roles in spec order), and their number.
    pub rank: u32,
    pub world_size: u32,
    pub attempt: u32,
    /// Program and arguments; run directly, not through a shell.
    pub command: Vec<String>,
    /// The user's environment; the `MOFANG_*` variables are added over it.
    pub env: BTreeMap<String, String>,
    /// Created if missing.
    pub working_dir: PathBuf,
    pub log_path: PathBuf,
    pub status_path: PathBuf,
    /// This replica's own port, which its peers know it by.
    pub port: u16,
    /// role → `host:port` of every replica of the job, in index order.
    pub peers: BTreeMap<String, Vec<String>>,
    /// Mount name → path, exported as `MOFANG_MOUNT_<NAME>`.
    pub mounts: BTreeMap<String, PathBuf>,
}

/// The environment a replica runs with: the user's variables, then mofang's (which win).
pub fn replica_env(l: &Launch) -> BTreeMap<String, String> {
    let mut env = l.env.clone();
    let peers = serde_json::to_string(&l.peers).unwrap_or_else(|_| "{}".to_string());
    for (k, v) in [
        ("MOFANG_JOB_ID", l.job_id.clone()),
        ("MOFANG_JOB_NAME", l.job_name.clone()),
        ("MOFANG_USER", l.user.clone()),
        ("MOFANG_GROUP", l.group.clone()),
        ("MOFANG_TASK_ROLE", l.role.clone()),
        ("MOFANG_TASK_INDEX", l.index.to_string()),
        ("MOFANG_RANK", l.rank.to_string()),
        ("MOFANG_WORLD_SIZE", l.world_size.to_string()),
        ("MOFANG_ATTEMPT", l.attempt.to_string()),
        ("MOFANG_PORT", l.port.to_string()),
        ("MOFANG_PEERS", peers),
    ] {
        env.insert(k.to_string(), v);
    }
    for (name, path) in &l.mounts {
        env.insert(
            format!("MOFANG_MOUNT_{}", name.to_ascii_uppercase()),
            path.display().to_string(),
        );
    }
    env
}

/// A started replica: its shim's pid and start time, and its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handle {
    pub pid: u32,
    /// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot).
    pub start_token: String,
    pub status_path: PathBuf,
    pub log_path: PathBuf,
}

/// CPU time and peak memory of a replica (and the descendants it waited for).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub user_cpu_ms: u64,
    pub system_cpu_ms: u64,
    pub max_rss_kib: u64,
}

/// How a replica ended, as its shim recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    #[serde(flatten)]
    pub usage: Usage,
    pub started_ms: i64,
    pub finished_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What [`LocalExecutor::poll`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    Running,
    Exited(ExitStatus),
    /// The shim is gone and left no status (killed with its group, or the machine restarted).
    Lost,
}

/// What this machine offers to jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Capacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
    pub gpu: u32,
}

/// Cores × 1000, `MemTotal` of /proc/meminfo, and the `/dev/nvidiaN` devices.
pub fn detect_capacity() -> Capacity {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        })
        .map_or(0, |kib| kib * 1024);
    let gpus = std::fs::read_dir("/dev")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("nvidia"))
                        .is_some_and(|rest| {
                            !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
                        })
                })
                .count()
        })
        .unwrap_or(0);
    Capacity {
        cpu_millis: u64::try_from(cores).unwrap_or(1).saturating_mul(1000),
        memory_bytes: memory,
        gpu: u32::try_from(gpus).unwrap_or(0),
    }
}

/// The start time of a live, non-zombie process, or `None`.
fn start_token(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); starttime is field 22.
    let state = *fields.first()?;
    if state == "Z" || state == "X" {
        return None;
    }
    fields.get(22 - 3).map(|s| s.to_string())
}

/// True when `pid` is alive and is the process that `start_token` was taken from.
pub fn is_alive(pid: u32, start_token: &str) -> bool {
    self::start_token(pid).is_some_and(|t| t == start_token)
}

/// Starts, watches and stops replicas on this machine.
#[derive(Debug, Clone)]
pub struct LocalExecutor {
    shim_program: PathBuf,
    shim_args: Vec<String>,
}

impl LocalExecutor {
    /// `shim_program shim_args… --log … --status … -- command…` starts a replica's supervisor:
    /// `mofang shim` in production, the `mofang-shim` binary in this crate's tests.
    pub fn new(shim_program: PathBuf, shim_args_prefix: Vec<String>) -> Self {
        LocalExecutor {
            shim_program,
            shim_args: shim_args_prefix,
        }
    }

    /// Starts the replica's shim in a new process group and returns once it runs.
    pub async fn start(&self, launch: &Launch) -> Result<Handle> {
        if launch.command.is_empty() {
            return Err(Error::NoCommand);
        }
        for dir in [
            Some(launch.working_dir.as_path()),
            launch.log_path.parent(),
            launch.status_path.parent(),
        ]
        .into_iter()
        .flatten()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        }
        // A status file from an earlier process at this path would be taken for this one's.
        match std::fs::remove_file(&launch.status_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    format!("cannot clear {}", launch.status_path.display()),
                    e,
                ));
            }
        }
        let mut cmd = Command::new(&self.shim_program);
        cmd.args(&self.shim_args)
            .arg("--log")
            .arg(&launch.log_path)
            .arg("--status")
            .arg(&launch.status_path)
            .arg("--cwd")
            .arg(&launch.working_dir)
            .arg("--")
            .args(&launch.command)
            .envs(replica_env(launch))
            .current_dir(&launch.working_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| {
            Error::io(
                format!(
                    "cannot start the supervisor {}",
                    self.shim_program.display()
                ),
                e,
            )
        })?;
        let pid = child.id();
        // The start time is readable as soon as the process exists.
        let token = start_token(pid);
        // Reap the shim when it ends so it does not linger as a zombie; its status file, not
        // this wait, is what counts.
        std::thread::Builder::new()
            .name(format!("reap-{pid}"))
            .spawn(move || {
                let _ = child.wait();
            })
            .map_err(|e| Error::io("cannot start a reaper thread", e))?;
        let start_token = match token {
            Some(t) => t,
            // It already ended (and may have been reaped): read what it left.
            None => String::from("gone"),
        };
        Ok(Handle {
            pid,
            start_token,
            status_path: launch.status_path.clone(),
            log_path: launch.log_path.clone(),
        })
    }

    /// Where a replica is: its status file first (authoritative), else whether its shim lives.
    pub fn poll(&self, h: &Handle) -> Result<Poll> {
        if let Some(status) = read_status(&h.status_path)? {
            return Ok(Poll::Exited(status));
        }
        if is_alive(h.pid, &h.start_token) {
            return Ok(Poll::Running);
        }
        // It may have written the status between the two looks.
        if let Some(status) = read_status(&h.status_path)? {
            return Ok(Poll::Exited(status));
        }
        Ok(Poll::Lost)
    }

    /// Stops a replica: SIGTERM to its process group, up to `grace` for it to end, then SIGKILL
    /// to the group. Returns how it ended. Does nothing to a replica that already ended.
    pub async fn terminate(&self, h: &Handle, grace: Duration) -> Result<Poll> {
        let poll = self.poll(h)?;
        if poll != Poll::Running {
            return Ok(poll);
        }
        signal_group(h, rustix::process::Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let poll = self.poll(h)?;
            if poll != Poll::Running {
                // The shim wrote the status; make sure nothing else of the group lingers.
                signal_group(h, rustix::process::Signal::KILL);
                return Ok(poll);
            }
        }
        signal_group(h, rustix::process::Signal::KILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let poll = self.poll(h)?;
            if poll != Poll::Running || Instant::now() > deadline {
                return Ok(poll);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn signal_group(h: &Handle, signal: rustix::process::Signal) {
    // Only the group we started: the shim leads it (pgid = its pid) while it lives; after it
    // is gone, its group may still hold the replica's leftovers, and the pid cannot have been
    // reused as a group id while any member remains.
    let Some(pid) = i32::try_from(h.pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if is_alive(h.pid, &h.start_token) || rustix::process::test_kill_process_group(pid).is_ok() {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

fn read_status(path: &Path) -> Result<Option<ExitStatus>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Status {
                path: path.display().to_string(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
