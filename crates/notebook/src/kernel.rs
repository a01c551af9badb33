//! One Jupyter kernel process and the client side of its sockets: start from the kernelspec's
//! argv in its own process group with a fresh connection file, wait for readiness
//! (`kernel_info_reply` on shell and traffic on iopub), execute code, watch the child for exit,
//! interrupt per `interrupt_mode`, and shut down with escalation
//! (`shutdown_request` → wait → SIGTERM → wait → SIGKILL to the process group).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use zeromq::{Socket as _, SocketSend as _};

use crate::kernelspec::{InterruptMode, KernelSpec};
use crate::wire::{Message, Session};
use crate::{Error, Result};

/// How long a kernel gets to exit after `shutdown_request`, then after SIGTERM.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);
const TERM_WAIT: Duration = Duration::from_secs(2);
/// How long a timed-out cell gets to stop after its interrupt before the kernel is given up.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);
const STDERR_TAIL_LINES: usize = 20;
/// How long a send may wait for the kernel's socket to take a message.
const SEND_WAIT: Duration = Duration::from_secs(10);
/// How often the kernel's ports are tried while it starts.
const PORT_POLL: Duration = Duration::from_millis(10);
/// How often `kernel_info_request` is repeated until the kernel answers on shell and iopub.
const READY_ROUND: Duration = Duration::from_millis(200);

/// What ended one `execute_request`.
#[derive(Debug)]
pub enum ExecEnd {
    /// `execute_reply` and iopub `idle` both arrived; the reply's content.
    Done(Value),
    /// The cell ran past its timeout and was interrupted; the reply if one came in the grace
    /// period (`None`: the kernel did not stop and must not be used again).
    TimedOut(Option<Value>),
    /// The kernel process exited or its sockets closed; the reason.
    Died(String),
    /// The caller cancelled the run; the kernel was interrupted. The reply if one came in the
    /// grace period (`None`: the kernel did not stop and must not be used again).
    Cancelled(Option<Value>),
}

/// A kernel starting on its own task, so that the next run's kernel can start while the
/// current run executes. Dropping it aborts the start and kills whatever was started.
pub struct StartingKernel {
    name: String,
    task: tokio::task::JoinHandle<Result<Kernel>>,
}

impl std::fmt::Debug for StartingKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StartingKernel")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl StartingKernel {
    /// Begins [`Kernel::start`] in the background.
    pub fn spawn(spec: KernelSpec, cwd: Option<PathBuf>, start_timeout: Duration) -> Self {
        let name = spec.name.clone();
        let task =
            tokio::spawn(async move { Kernel::start(&spec, cwd.as_deref(), start_timeout).await });
        StartingKernel { name, task }
    }

    /// The kernelspec's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits until the kernel answers (or its start failed).
    pub async fn ready(mut self) -> Result<Kernel> {
        match (&mut self.task).await {
            Ok(started) => started,
            Err(e) => Err(Error::KernelStart {
                name: self.name.clone(),
                why: format!("the start task ended: {e}"),
            }),
        }
    }
}

impl Drop for StartingKernel {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running kernel. Dropping it kills the process group; call [`Kernel::shutdown`] to stop it
/// politely.
pub struct Kernel {
    spec: KernelSpec,
    pid: i32,
    exit: watch::Receiver<Option<String>>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    session: Session,
    shell: zeromq::DealerSendHalf,
    control: zeromq::DealerSocket,
    shell_rx: mpsc::UnboundedReceiver<Message>,
    iopub_rx: mpsc::UnboundedReceiver<Message>,
    kernel_info: Value,
    stopped: bool,
    _runtime_dir: tempfile::TempDir,
}

impl std::fmt::Debug for Kernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernel")
            .field("name", &self.spec.name)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

/// Ports this process handed to kernels, so that kernels starting at the same time never get
/// the same one.
static HANDED_OUT: Mutex<std::collections::BTreeSet<u16>> =
    Mutex::new(std::collections::BTreeSet::new());
/// Where [`free_ports`] looks first: below Linux's ephemeral range (32768-60999 by default).
const QUIET_PORTS: std::ops::Range<u16> = 20_000..32_768;

/// `n` distinct free local ports for a kernel to bind. A port the OS picks for `bind(0)` comes
/// from the ephemeral range, where any outgoing connection (ours to another kernel, say) may
/// take it again before the kernel binds it ("Address already in use"); so the ports are picked
/// at random below that range, tried with a bind, and never handed out twice by this process.
/// If that finds too few, the OS picks.
fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    let mut handed = HANDED_OUT
        .lock()
        .map_err(|_| std::io::Error::other("the port registry is poisoned"))?;
    if handed.len() > 20_000 {
        handed.clear();
    }
    let span = u128::from(QUIET_PORTS.end - QUIET_PORTS.start);
    // Hold every listener until all are chosen so the ports differ.
    let mut listeners = Vec::with_capacity(n);
    for _ in 0..n * 50 {
        if listeners.len() == n {
            break;
        }
        let offset = u16::try_from(uuid::Uuid::new_v4().as_u128() % span).unwrap_or(0);
        let port = QUIET_PORTS.start + offset;
        if handed.contains(&port) {
            continue;
        }
        if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            handed.insert(port);
            listeners.push(l);
        }
    }
    while listeners.len() < n {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        handed.insert(l.local_addr()?.port());
        listeners.push(l);
    }
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

fn signal_group(pid: i32, signal: rustix::process::Signal) -> bool {
    rustix::process::Pid::from_raw(pid)
        .is_some_and(|p| rustix::process::kill_process_group(p, signal).is_ok())
}

impl Kernel {
    /// Starts `spec` in `cwd` and waits until it answers, at most `start_timeout`.
    pub async fn start(
        spec: &KernelSpec,
        cwd: Option<&Path>,
        start_timeout: Duration,
    ) -> Result<Kernel> {
        let start_error = |why: String| Error::KernelStart {
            name: spec.name.clone(),
            why,
        };
        let deadline = Instant::now() + start_timeout;
        let runtime_dir = tempfile::Builder::new()
            .prefix("mofang-kernel-")
            .tempdir()
            .map_err(|e| start_error(format!("cannot create a runtime directory: {e}")))?;
        let ports = free_ports(5).map_err(|e| start_error(format!("no free local ports: {e}")))?;
        let key = uuid::Uuid::new_v4().to_string();
        let connection = json!({
            "shell_port": ports[0],
            "iopub_port": ports[1],
            "stdin_port": ports[2],
            "control_port": ports[3],
            "hb_port": ports[4],
            "ip": "127.0.0.1",
            "key": key,
            "transport": "tcp",
            "signature_scheme": "hmac-sha256",
            "kernel_name": spec.name,
        });
        let connection_file = runtime_dir.path().join("kernel.json");
        std::fs::write(&connection_file, connection.to_string())
            .map_err(|e| start_error(format!("cannot write the connection file: {e}")))?;

        let argv = spec.command(&connection_file);
        let mut command = tokio::process::Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .envs(&spec.env)
            .env("JPY_PARENT_PID", std::process::id().to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .process_group(0);
        if std::env::var_os("PYDEVD_DISABLE_FILE_VALIDATION").is_none() {
            command.env("PYDEVD_DISABLE_FILE_VALIDATION", "1");
        }
        if let Some(cwd) = cwd {
            command.current_dir(cwd);
        }
        let mut child = command
            .spawn()
            .map_err(|e| start_error(format!("cannot run `{}`: {e}", argv[0])))?;
        let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
        tracing::debug!(kernel = %spec.name, pid, ?argv, "kernel started");

        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        if let Some(stderr) = child.stderr.take() {
            let tail = Arc::clone(&stderr_tail);
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::debug!(target: "mofang_notebook::kernel_stderr", "{line}");
                    if let Ok(mut t) = tail.lock() {
                        if t.len() == STDERR_TAIL_LINES {
                            t.pop_front();
                        }
                        t.push_back(line);
                    }
                }
            });
        }
        let (exit_tx, exit) = watch::channel(None);
        tokio::spawn(async move {
            let why = match child.wait().await {
                Ok(status) => match (
                    status.code(),
                    std::os::unix::process::ExitStatusExt::signal(&status),
                ) {
                    (Some(code), _) => format!("the kernel process exited with status {code}"),
                    (None, Some(sig)) => format!("the kernel process was killed by signal {sig}"),
                    _ => "the kernel process exited".to_owned(),
                },
                Err(e) => format!("lost track of the kernel process: {e}"),
            };
            let _ = exit_tx.send(Some(why));
        });

        let session = Session::new(&key);
        let mut kernel_guard = PartialKernel { pid, done: false };
        let connect = async {
            let url = |port: u16| format!("tcp://127.0.0.1:{port}");
            // zeromq retries a refused connect with exponential backoff (50 ms doubling), which
            // can leave a kernel that took 1 s to bind unreached for another second; poll the
            // ports at a short fixed interval instead (as libzmq's 100 ms reconnect interval).
            for port in [ports[0], ports[1], ports[3]] {
                wait_listening(port).await;
            }
            let mut shell = zeromq::DealerSocket::new();
            shell.connect(&url(ports[0])).await?;
            let mut iopub = zeromq::SubSocket::new();
            iopub.subscribe("").await?;
            iopub.connect(&url(ports[1])).await?;
            let mut control = zeromq::DealerSocket::new();
            control.connect(&url(ports[3])).await?;
            Ok::<_, zeromq::ZmqError>((shell, iopub, control))
        };
        let (shell, iopub, control) = match wait_or_exit(connect, exit.clone(), deadline).await {
            Waited::Done(Ok(sockets)) => sockets,
            Waited::Done(Err(e)) => return Err(start_error(format!("cannot connect: {e}"))),
            Waited::Exited(why) => {
                return Err(start_error(with_tail(why, &stderr_tail)));
            }
            Waited::TimedOut => {
                return Err(start_error(format!(
                    "no connection within {} s (--start-timeout)",
                    start_timeout.as_secs_f64()
                )));
            }
        };
        let (shell_tx, shell_recv) = shell.split();
        let (shell_sender, shell_rx) = mpsc::unbounded_channel();
        let (iopub_sender, iopub_rx) = mpsc::unbounded_channel();
        spawn_reader(shell_recv, session.clone(), shell_sender, "shell");
        spawn_reader(iopub, session.clone(), iopub_sender, "iopub");

        let mut kernel = Kernel {
            spec: spec.clone(),
            pid,
            exit,
            stderr_tail,
            session,
            shell: shell_tx,
            control,
            shell_rx,
            iopub_rx,
            kernel_info: Value::Null,
            stopped: false,
            _runtime_dir: runtime_dir,
        };
        kernel_guard.done = true;
        match kernel.wait_for_ready(deadline).await {
            Ok(()) => Ok(kernel),
            Err(why) => {
                let why = if why.is_empty() {
                    format!(
                        "no kernel_info_reply within {} s (--start-timeout)",
                        start_timeout.as_secs_f64()
                    )
                } else {
                    with_tail(why, &kernel.stderr_tail)
                };
                kernel.shutdown().await;
                Err(start_error(why))
            }
        }
    }

    /// Sends `kernel_info_request` until a reply arrives and iopub has carried a message, so
    /// the iopub subscription is known to be live before the first cell runs. An empty error
    /// means the deadline passed.
    async fn wait_for_ready(&mut self, deadline: Instant) -> std::result::Result<(), String> {
        let mut replied = false;
        let mut iopub_seen = false;
        while Instant::now() < deadline {
            let request = self.session.request("kernel_info_request", json!({}));
            let id = request.msg_id().to_owned();
            self.send_shell(&request).await?;
            let round = (Instant::now() + READY_ROUND).min(deadline);
            loop {
                if replied && iopub_seen {
                    return Ok(());
                }
                let mut exit = self.exit.clone();
                tokio::select! {
                    msg = self.shell_rx.recv() => match msg {
                        Some(m) if m.msg_type() == "kernel_info_reply" && m.parent_id() == id => {
                            self.kernel_info = m.content;
                            replied = true;
                        }
                        Some(_) => {}
                        None => return Err("the shell channel closed".to_owned()),
                    },
                    msg = self.iopub_rx.recv() => match msg {
                        Some(_) => iopub_seen = true,
                        None => return Err("the iopub channel closed".to_owned()),
                    },
                    why = wait_exit(&mut exit) => return Err(why),
                    () = tokio::time::sleep_until(round) => break,
                }
            }
        }
        Err(String::new())
    }

    /// Sends on shell; a DEALER with no live peer would wait forever, so a dead kernel or a
    /// stuck send ends it.
    async fn send_shell(&mut self, message: &Message) -> std::result::Result<(), String> {
        let frames = self.session.encode(message);
        let msg = zeromq::ZmqMessage::try_from(frames).map_err(|e| e.to_string())?;
        let mut exit = self.exit.clone();
        tokio::select! {
            sent = self.shell.send(msg) => sent.map_err(|e| format!("shell send: {e}")),
            why = wait_exit(&mut exit) => Err(why),
            () = tokio::time::sleep(SEND_WAIT) => Err("the kernel does not take messages on shell".to_owned()),
        }
    }

    async fn send_control(&mut self, message: &Message) -> std::result::Result<(), String> {
        let frames = self.session.encode(message);
        let msg = zeromq::ZmqMessage::try_from(frames).map_err(|e| e.to_string())?;
        let mut exit = self.exit.clone();
        tokio::select! {
            sent = self.control.send(msg) => sent.map_err(|e| format!("control send: {e}")),
            why = wait_exit(&mut exit) => Err(why),
            () = tokio::time::sleep(SEND_WAIT) => Err("the kernel does not take messages on control".to_owned()),
        }
    }

    pub fn spec(&self) -> &KernelSpec {
        &self.spec
    }

    /// The content of the kernel's `kernel_info_reply`.
    pub fn kernel_info(&self) -> &Value {
        &self.kernel_info
    }

    /// Why the kernel process is gone, if it is.
    pub fn exit_reason(&self) -> Option<String> {
        self.exit.borrow().clone()
    }

    /// The last lines the kernel wrote to stderr.
    pub fn stderr_tail(&self) -> Vec<String> {
        self.stderr_tail
            .lock()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Runs `code` (as nbclient does: `store_history`, `stop_on_error`, no stdin) and feeds every
    /// iopub message of the request but `status` to `on_output`. Finishes when both the
    /// `execute_reply` and the iopub `idle` with this request as parent arrived.
    pub async fn execute(
        &mut self,
        code: &str,
        timeout: Option<Duration>,
        on_output: impl FnMut(&Message),
    ) -> ExecEnd {
        let (_never, mut cancel) = watch::channel(false);
        self.execute_cancellable(code, timeout, &mut cancel, on_output)
            .await
    }

    /// [`Kernel::execute`] that also interrupts the cell when `cancel` turns `true` (and ends
    /// with [`ExecEnd::Cancelled`]).
    pub async fn execute_cancellable(
        &mut self,
        code: &str,
        timeout: Option<Duration>,
        cancel: &mut watch::Receiver<bool>,
        mut on_output: impl FnMut(&Message),
    ) -> ExecEnd {
        if let Some(why) = self.exit_reason() {
            return ExecEnd::Died(why);
        }
        let request = self.session.request(
            "execute_request",
            json!({
                "code": code,
                "silent": false,
                "store_history": true,
                "user_expressions": {},
                "allow_stdin": false,
                "stop_on_error": true,
            }),
        );
        let id = request.msg_id().to_owned();
        if let Err(why) = self.send_shell(&request).await {
            return ExecEnd::Died(self.exit_reason().unwrap_or(why));
        }
        let mut reply: Option<Value> = None;
        let mut idle = false;
        let mut deadline = timeout.map(|t| Instant::now() + t);
        let mut timed_out = false;
        let mut cancelled = false;
        let mut exit = self.exit.clone();
        loop {
            if idle && let Some(content) = reply.take() {
                return if cancelled {
                    ExecEnd::Cancelled(Some(content))
                } else if timed_out {
                    ExecEnd::TimedOut(Some(content))
                } else {
                    ExecEnd::Done(content)
                };
            }
            let sleep = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = self.shell_rx.recv() => match msg {
                    Some(m) if m.parent_id() == id && m.msg_type() == "execute_reply" => {
                        reply = Some(m.content);
                    }
                    Some(_) => {}
                    None => return ExecEnd::Died(self.died_reason("the shell channel closed").await),
                },
                msg = self.iopub_rx.recv() => match msg {
                    Some(m) if m.parent_id() == id => {
                        if m.msg_type() == "status" {
                            if m.content.get("execution_state").and_then(Value::as_str) == Some("idle") {
                                idle = true;
                            }
                        } else {
                            on_output(&m);
                        }
                    }
                    Some(_) => {}
                    None => return ExecEnd::Died(self.died_reason("the iopub channel closed").await),
                },
                why = wait_exit(&mut exit) => return ExecEnd::Died(why),
                () = wait_cancel(cancel), if !cancelled && !timed_out => {
                    cancelled = true;
                    tracing::warn!("run cancelled; interrupting the kernel");
                    self.interrupt().await;
                    deadline = Some(Instant::now() + INTERRUPT_GRACE);
                }
                () = sleep => {
                    if cancelled {
                        return ExecEnd::Cancelled(None);
                    }
                    if timed_out {
                        return ExecEnd::TimedOut(None);
                    }
                    timed_out = true;
                    tracing::warn!("cell timed out; interrupting the kernel");
                    self.interrupt().await;
                    deadline = Some(Instant::now() + INTERRUPT_GRACE);
                }
            }
        }
    }

    async fn died_reason(&mut self, fallback: &str) -> String {
        // A closed channel usually means the process is exiting; give the watcher a moment.
        let mut exit = self.exit.clone();
        match tokio::time::timeout(Duration::from_secs(2), wait_exit(&mut exit)).await {
            Ok(why) => why,
            Err(_) => fallback.to_owned(),
        }
    }

    /// Interrupts the running cell: SIGINT to the process group, or `interrupt_request` on the
    /// control channel when the spec says `interrupt_mode: message`.
    pub async fn interrupt(&mut self) {
        match self.spec.interrupt_mode {
            InterruptMode::Signal => {
                signal_group(self.pid, rustix::process::Signal::INT);
            }
            InterruptMode::Message => {
                let request = self.session.request("interrupt_request", json!({}));
                if let Err(why) = self.send_control(&request).await {
                    tracing::warn!("interrupt_request: {why}");
                }
            }
        }
    }

    /// Stops the kernel: `shutdown_request` on control, then SIGTERM, then SIGKILL to its process
    /// group, each after a wait; whatever else is left in the group is killed too.
    pub async fn shutdown(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let mut exit = self.exit.clone();
        if self.exit_reason().is_none() {
            let request = self
                .session
                .request("shutdown_request", json!({"restart": false}));
            let sent = self.send_control(&request).await.is_ok();
            let polite = sent
                && tokio::time::timeout(SHUTDOWN_WAIT, wait_exit(&mut exit))
                    .await
                    .is_ok();
            if !polite {
                tracing::warn!(pid = self.pid, "kernel did not shut down; sending SIGTERM");
                signal_group(self.pid, rustix::process::Signal::TERM);
                if tokio::time::timeout(TERM_WAIT, wait_exit(&mut exit))
                    .await
                    .is_err()
                {
                    tracing::warn!(pid = self.pid, "kernel ignored SIGTERM; sending SIGKILL");
                    signal_group(self.pid, rustix::process::Signal::KILL);
                    let _ = tokio::time::timeout(TERM_WAIT, wait_exit(&mut exit)).await;
                }
            }
        }
        // Children the notebook left behind in the kernel's group.
        signal_group(self.pid, rustix::process::Signal::KILL);
    }
}

impl Drop for Kernel {
    fn drop(&mut self) {
        if !self.stopped {
            signal_group(self.pid, rustix::process::Signal::KILL);
        }
    }
}

/// Kills the process group if start-up fails before a `Kernel` owns it.
struct PartialKernel {
    pid: i32,
    done: bool,
}

impl Drop for PartialKernel {
    fn drop(&mut self) {
        if !self.done {
            signal_group(self.pid, rustix::process::Signal::KILL);
        }
    }
}

fn with_tail(why: String, tail: &Arc<Mutex<VecDeque<String>>>) -> String {
    let last: Vec<String> = tail
        .lock()
        .map(|t| t.iter().rev().take(3).rev().cloned().collect())
        .unwrap_or_default();
    if last.is_empty() {
        why
    } else {
        format!("{why}; its stderr ended with: {}", last.join(" | "))
    }
}

/// Resolves once something accepts TCP connections on the local `port`.
async fn wait_listening(port: u16) {
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        tokio::time::sleep(PORT_POLL).await;
    }
}

/// Resolves once `cancel` is `true`; never when its sender is gone.
pub async fn wait_cancel(cancel: &mut watch::Receiver<bool>) {
    if cancel.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves with the exit reason once the process is gone.
async fn wait_exit(exit: &mut watch::Receiver<Option<String>>) -> String {
    match exit.wait_for(Option::is_some).await {
        Ok(why) => why.clone().unwrap_or_default(),
        Err(_) => "lost track of the kernel process".to_owned(),
    }
}

enum Waited<T> {
    Done(T),
    Exited(String),
    TimedOut,
}

async fn wait_or_exit<T>(
    fut: impl std::future::Future<Output = T>,
    mut exit: watch::Receiver<Option<String>>,
    deadline: Instant,
) -> Waited<T> {
    tokio::select! {
        v = fut => Waited::Done(v),
        why = wait_exit(&mut exit) => Waited::Exited(why),
        () = tokio::time::sleep_until(deadline) => Waited::TimedOut,
    }
}

fn spawn_reader<S: zeromq::SocketRecv + Send + 'static>(
    mut socket: S,
    session: Session,
    tx: mpsc::UnboundedSender<Message>,
    channel: &'static str,
) {
    tokio::spawn(async move {
        loop {
            let frames = match socket.recv().await {
                Ok(m) => m.into_vec(),
                Err(e) => {
                    tracing::debug!("{channel} socket closed: {e}");
                    break;
                }
            };
            match session.decode(&frames) {
                Ok(message) => {
                    if tx.send(message).is_err() {
                        break;
                    }
                }
                Err(why) => tracing::warn!("dropping a malformed {channel} message: {why}"),
            }
        }
    });
}
