//! `mofang server`, `mofang token`, `mofang job` and `mofang queue`: the control plane and its
//! command-line client (a thin layer over the REST API).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use mofang_control::{Config, ControlPlane};
use mofang_job::{Backoff, Bytes, Millicores};
use mofang_scheduler::Resources;
use mofang_store::Store;
use serde_json::{Value, json};

/// Default port of the control plane's API and UI.
pub const DEFAULT_PORT: u16 = 8600;

#[derive(Debug, Args)]
pub struct DataArgs {
    /// Data directory: metadata (SQLite), job logs, working directories, storage scopes.
    /// Default: $XDG_DATA_HOME/mofang or ~/.local/share/mofang.
    #[arg(long, env = "MOFANG_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Metadata store: sqlite:PATH or postgres://USER@HOST/DB (default: sqlite in the data directory).
    #[arg(long, env = "MOFANG_DATABASE_URL")]
    database_url: Option<String>,
}

impl DataArgs {
    fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|x| !x.is_empty()) {
            return Ok(PathBuf::from(x).join("mofang"));
        }
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .context("--data-dir: not given and $HOME is not set")?;
        Ok(PathBuf::from(home).join(".local/share/mofang"))
    }

    async fn open(&self) -> anyhow::Result<(PathBuf, Store)> {
        let dir = self.data_dir()?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("--data-dir: cannot create {}", dir.display()))?;
        let url = match &self.database_url {
            Some(u) => u.clone(),
            None => format!("sqlite:{}", dir.join("mofang.db").display()),
        };
        let store = Store::open(&url)
            .await
            .with_context(|| format!("metadata store {}", redact(&url)))?;
        Ok((dir, store))
    }
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Address to listen on.
    #[arg(long, env = "MOFANG_SERVER_HOST", default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port of the API and the web UI; 0 picks a free port.
    #[arg(long, env = "MOFANG_SERVER_PORT", default_value_t = DEFAULT_PORT)]
    port: u16,
    /// CPU cores jobs may use in all (default: every core of this machine), e.g. 4 or 3500m.
    #[arg(long, env = "MOFANG_CPUS")]
    cpus: Option<String>,
    /// Memory jobs may use in all (default: this machine's), e.g. 16Gi.
    #[arg(long, env = "MOFANG_MEMORY")]
    memory: Option<String>,
    /// GPUs jobs may use in all (default: the /dev/nvidiaN devices found).
    #[arg(long, env = "MOFANG_GPUS")]
    gpus: Option<u64>,
    /// Seconds a stopped replica gets between SIGTERM and SIGKILL.
    #[arg(long, env = "MOFANG_KILL_GRACE", default_value_t = 10.0)]
    kill_grace: f64,
    /// Seconds before the first restart of a failed replica; doubles per restart up to 300 s.
    #[arg(long, env = "MOFANG_RESTART_BACKOFF", default_value_t = 10.0)]
    restart_backoff: f64,
    /// Seconds between control-loop cycles (submissions and cancellations wake it at once).
    #[arg(long, env = "MOFANG_TICK", default_value_t = 0.5)]
    tick: f64,
    /// Seconds a queued job waits before it counts as starving (goes first, may reserve).
    #[arg(long, env = "MOFANG_STARVATION_AFTER", default_value_t = 300)]
    starvation_after: u64,
    /// Write the bound address to this file once serving (for scripts and tests).
    #[arg(long, env = "MOFANG_SERVER_ADDRESS_FILE")]
    address_file: Option<PathBuf>,
}

fn positive_secs(flag: &str, v: f64) -> anyhow::Result<Duration> {
    if !v.is_finite() || v <= 0.0 {
        bail!("{flag}: expected a positive number of seconds, got {v}");
    }
    Ok(Duration::from_secs_f64(v))
}

pub async fn server(
    args: ServerArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (data_dir, store) = args.data.open().await?;
    let shim =
        std::env::current_exe().context("cannot find the mofang binary for `mofang shim`")?;
    let mut config = Config::new(data_dir.join("control"), shim, vec!["shim".into()]);
    if let Some(cpus) = &args.cpus {
        config.capacity.cpu_millis = Millicores::parse(cpus)
            .map_err(|e| anyhow::anyhow!("--cpus: {e}"))?
            .0;
    }
    if let Some(memory) = &args.memory {
        config.capacity.memory_bytes = Bytes::parse(memory)
            .map_err(|e| anyhow::anyhow!("--memory: {e}"))?
            .0;
    }
    if let Some(gpus) = args.gpus {
        config.capacity.gpus = gpus;
    }
    config.kill_grace = positive_secs("--kill-grace", args.kill_grace)?;
    config.restart_backoff = Backoff {
        base: positive_secs("--restart-backoff", args.restart_backoff)?,
        cap: Duration::from_secs(300)
            .max(positive_secs("--restart-backoff", args.restart_backoff)?),
    };
    config.tick = positive_secs("--tick", args.tick)?;
    config.scheduler.starvation_after_secs = args.starvation_after;
    let capacity = config.capacity;
    let plane = ControlPlane::start(store, config).await?;
    let addr = SocketAddr::new(args.host, args.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--port)"))?;
    let bound = listener.local_addr()?;
    tracing::info!(
        "control plane on http://{bound} (web UI http://{bound}/ui/, API http://{bound}/api/v1, OpenAPI http://{bound}/api/v1/openapi.json); data in {}; node capacity {}",
        data_dir.display(),
        show_resources(capacity)
    );
    if let Some(path) = &args.address_file {
        std::fs::write(path, bound.to_string())
            .with_context(|| format!("cannot write --address-file {}", path.display()))?;
    }
    mofang_control::serve(listener, plane, shutdown)
        .await
        .context("control-plane server")?;
    Ok(())
}

fn show_resources(r: Resources) -> String {
    format!(
        "{} CPU, {} memory, {} GPU",
        Millicores(r.cpu_millis),
        Bytes(r.memory_bytes),
        r.gpus
    )
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create an API token for a user (prints it once; only its hash is stored).
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The user the token acts as.
    #[arg(long)]
    user: String,
    /// The user's group (sees and cancels the group's jobs).
    #[arg(long)]
    group: String,
    /// May see every job and create queues.
    #[arg(long)]
    admin: bool,
}

pub async fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create(args) => {
            let (_, store) = args.data.open().await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let token = store
                .create_token(&args.user, &args.group, args.admin, now)
                .await?;
            println!("{token}");
            Ok(())
        }
    }
}

/// Where the client finds the server and its token.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// Control-plane URL (else $MOFANG_URL, the config file's `url`, http://127.0.0.1:8600).
    #[arg(long, global = true)]
    url: Option<String>,
    /// API token (else $MOFANG_TOKEN, the config file's `token`).
    #[arg(long, global = true)]
    token: Option<String>,
    /// Client config file with `url:` and `token:` (default: $MOFANG_CONFIG, else
    /// ~/.config/mofang/config.yaml).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Output: human tables or JSON.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientFile {
    url: Option<String>,
    token: Option<String>,
}

struct Client {
    http: reqwest::Client,
    url: String,
    token: Option<String>,
    output: Output,
}

impl ClientArgs {
    fn client(&self) -> anyhow::Result<Client> {
        let path = match (&self.config, std::env::var_os("MOFANG_CONFIG")) {
            (Some(p), _) => Some((p.clone(), true)),
            (None, Some(p)) if !p.is_empty() => Some((PathBuf::from(p), true)),
            _ => std::env::var_os("HOME")
                .map(|h| (PathBuf::from(h).join(".config/mofang/config.yaml"), false)),
        };
        let file = match path {
            Some((p, required)) => read_client_file(&p, required)?,
            None => ClientFile::default(),
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let url = self
            .url
            .clone()
            .or_else(|| env("MOFANG_URL"))
            .or(file.url)
            .unwrap_or_else(|| format!("http://127.0.0.1:{DEFAULT_PORT}"));
        let token = self
            .token
            .clone()
            .or_else(|| env("MOFANG_TOKEN"))
            .or(file.token);
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("HTTP client")?;
        Ok(Client {
            http,
            url: url.trim_end_matches('/').to_string(),
            token,
            output: self.output,
        })
    }
}

fn read_client_file(path: &Path, required: bool) -> anyhow::Result<ClientFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_yaml::from_str(&text).with_context(|| format!("config file {}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            Ok(ClientFile::default())
        }
        Err(e) => Err(e).with_context(|| format!("config file {}", path.display())),
    }
}

impl Client {
    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let token = self.token.as_deref().context(
            "no API token: pass --token, set MOFANG_TOKEN or put `token:` in the config file (create one with `mofang token create`)",
        )?;
        Ok(self
            .http
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token))
    }

    async fn send(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = rb
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the control plane at {}: {e}", self.url))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
            .unwrap_or(text);
        bail!("{message} (HTTP {})", status.as_u16())
    }

    async fn json(&self, rb: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = self.send(rb).await?;
        response
            .json()
            .await
            .context("the control plane answered with invalid JSON")
    }

    fn print_json(&self, v: &Value) -> anyhow::Result<()> {
        println!("{}", serde_json::to_string_pretty(v)?);
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct JobArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: JobCommand,
}

#[derive(Debug, Subcommand)]
enum JobCommand {
    /// Submit a job spec (YAML or JSON; `-` reads stdin).
    Submit { file: PathBuf },
    /// List the jobs you may see, newest first.
    List {
        /// Only these states (comma-separated: Queued,Running).
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        queue: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Show a job (by id or name): state, replicas, conditions, events.
    Get { job: String },
    /// Print a replica's log; -f follows it until the replica ends.
    Logs {
        job: String,
        /// Role (default: the first task's).
        #[arg(long)]
        role: Option<String>,
        #[arg(long, default_value_t = 0)]
        index: u32,
        /// Attempt (default: the latest).
        #[arg(long)]
        attempt: Option<u32>,
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Cancel a job: its processes get SIGTERM, then SIGKILL after the grace period.
    Cancel { job: String },
}

pub async fn job(args: JobArgs) -> anyhow::Result<()> {
    let c = args.client.client()?;
    match args.command {
        JobCommand::Submit { file } => {
            let text = if file.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                    .context("cannot read the job spec from stdin")?;
                s
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            let job = c
                .json(
                    c.request(reqwest::Method::POST, "/api/v1/jobs")?
                        .header("content-type", "application/yaml")
                        .body(text),
                )
                .await?;
            if c.output == Output::Json {
                return c.print_json(&job);
            }
            println!(
                "job {} submitted as {} to queue {}",
                s(&job, "name"),
                s(&job, "id"),
                s(&job, "queue")
            );
        }
        JobCommand::List {
            state,
            user,
            queue,
            limit,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            for (k, v) in [("state", state), ("user", user), ("queue", queue)] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            let v = c
                .json(
                    c.request(reqwest::Method::GET, "/api/v1/jobs")?
                        .query(&query),
                )
                .await?;
            if c.output == Output::Json {
                return c.print_json(&v);
            }
            let now = now_ms();
            let rows: Vec<Vec<String>> = v["jobs"]
                .as_array()
                .map(|jobs| {
                    jobs.iter()
                        .map(|j| {
                            vec![
                                s(j, "id"),
                                s(j, "name"),
                                s(j, "user"),
                                s(j, "queue"),
                                s(j, "state"),
                                format!("{}/{}", s(j, "gang"), s(j, "replicas")),
                                s(j, "restarts"),
                                age(now, j["created_ms"].as_i64()),
                                s(j, "message"),
                            ]
                        })
                        .collect()
                })
                .unwrap_or_default();
            table(
                &[
                    "ID", "NAME", "USER", "QUEUE", "STATE", "GANG", "RESTARTS", "AGE", "MESSAGE",
                ],
                &rows,
            );
        }
        JobCommand::Get { job } => {
            let v = c
                .json(c.request(reqwest::Method::GET, &format!("/api/v1/jobs/{}", seg(&job)))?)
                .await?;
            if c.output == Output::Json {
                return c.print_json(&v);
            }
            show_job(&v);
        }
        JobCommand::Logs {
            job,
            role,
            index,
            attempt,
            follow,
        } => {
            let mut query = vec![("index", index.to_string()), ("follow", follow.to_string())];
            if let Some(r) = role {
                query.push(("role", r));
            }
            if let Some(a) = attempt {
                query.push(("attempt", a.to_string()));
            }
            let mut response = c
                .send(
                    c.request(
                        reqwest::Method::GET,
                        &format!("/api/v1/jobs/{}/logs", seg(&job)),
                    )?
                    .query(&query),
                )
                .await?;
            let mut out = std::io::stdout().lock();
            while let Some(chunk) = response.chunk().await.context("log stream")? {
                out.write_all(&chunk)?;
                out.flush()?;
            }
        }
        JobCommand::Cancel { job } => {
            let v = c
                .json(c.request(
                    reqwest::Method::POST,
                    &format!("/api/v1/jobs/{}/cancel", seg(&job)),
                )?)
                .await?;
            if c.output == Output::Json {
                return c.print_json(&v);
            }
            println!("job {} ({}) cancelled", s(&v, "name"), s(&v, "id"));
        }
    }
    Ok(())
}

fn show_job(v: &Value) {
    let now = now_ms();
    for (label, key) in [
        ("Name", "name"),
        ("ID", "id"),
        ("User", "user"),
        ("Group", "group"),
        ("Queue", "queue"),
        ("Priority", "priority"),
        ("State", "state"),
        ("Message", "message"),
        ("Restarts", "restarts"),
    ] {
        println!("{label:<10} {}", s(v, key));
    }
    println!(
        "{:<10} {}",
        "Created",
        age(now, v["created_ms"].as_i64()) + " ago"
    );
    println!("\nReplicas:");
    let rows: Vec<Vec<String>> = v["replica_attempts"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .map(|r| {
                    let exit = match (r["exit_code"].as_i64(), r["signal"].as_i64()) {
                        (_, Some(sig)) => format!("signal {sig}"),
                        (Some(code), None) => code.to_string(),
                        _ => String::new(),
                    };
                    vec![
                        format!("{}-{}", s(r, "role"), s(r, "index")),
                        s(r, "attempt"),
                        s(r, "state"),
                        s(r, "pid"),
                        exit,
                        r["usage"]["user_cpu_ms"]
                            .as_u64()
                            .map(|ms| format!("{:.2}s", ms as f64 / 1000.0))
                            .unwrap_or_default(),
                        s(r, "message"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(
        &[
            "REPLICA", "ATTEMPT", "STATE", "PID", "EXIT", "CPU", "MESSAGE",
        ],
        &rows,
    );
    println!("\nConditions:");
    let rows: Vec<Vec<String>> = v["conditions"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    vec![
                        s(c, "state"),
                        s(c, "reason"),
                        age(now, c["time_ms"].as_i64()),
                        s(c, "message"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["STATE", "REASON", "AGE", "MESSAGE"], &rows);
    println!("\nEvents:");
    let rows: Vec<Vec<String>> = v["events"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    vec![
                        s(e, "kind"),
                        s(e, "reason"),
                        s(e, "count"),
                        age(now, e["last_ms"].as_i64()),
                        s(e, "message"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table(&["KIND", "REASON", "COUNT", "LAST", "MESSAGE"], &rows);
}

#[derive(Debug, Args)]
pub struct QueueArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: QueueCommand,
}

#[derive(Debug, Subcommand)]
enum QueueCommand {
    /// Create a queue (admin token).
    Create {
        name: String,
        /// The group the queue belongs to (its jobs go here by default).
        #[arg(long)]
        group: Option<String>,
        /// Share of spare capacity relative to other queues.
        #[arg(long, default_value_t = 1)]
        weight: u32,
        /// Hard cap on CPU (cores or millicores: 8, 500m).
        #[arg(long)]
        cpu: Option<String>,
        /// Hard cap on memory (16Gi).
        #[arg(long)]
        memory: Option<String>,
        /// Hard cap on GPUs.
        #[arg(long)]
        gpu: Option<u64>,
        /// CPU kept for this queue.
        #[arg(long)]
        guarantee_cpu: Option<String>,
        /// Memory kept for this queue.
        #[arg(long)]
        guarantee_memory: Option<String>,
        /// GPUs kept for this queue.
        #[arg(long)]
        guarantee_gpu: Option<u64>,
    },
    /// List queues with their usage.
    List,
    /// Show one queue.
    Get { name: String },
}

pub async fn queue(args: QueueArgs) -> anyhow::Result<()> {
    let c = args.client.client()?;
    match args.command {
        QueueCommand::Create {
            name,
            group,
            weight,
            cpu,
            memory,
            gpu,
            guarantee_cpu,
            guarantee_memory,
            guarantee_gpu,
        } => {
            let body = json!({
                "name": name,
                "group": group,
                "weight": weight,
                "capability": {"cpu": cpu, "memory": memory, "gpu": gpu},
                "guarantee": {"cpu": guarantee_cpu, "memory": guarantee_memory, "gpu": guarantee_gpu},
            });
            let v = c
                .json(
                    c.request(reqwest::Method::POST, "/api/v1/queues")?
                        .json(&body),
                )
                .await?;
            if c.output == Output::Json {
                return c.print_json(&v);
            }
            println!("queue {} created", s(&v, "name"));
        }
        QueueCommand::List => {
            let v = c
                .json(c.request(reqwest::Method::GET, "/api/v1/queues")?)
                .await?;
            if c.output == Output::Json {
                return c.print_json(&v);
            }
            let rows: Vec<Vec<String>> = v["queues"]
                .as_array()
                .map(|qs| qs.iter().map(queue_row).collect())
                .unwrap_or_default();
            table(&QUEUE_HEADER, &rows);
        }
        QueueCommand::Get { name } => {
            let v = c
                .json(c.request(
                    reqwest::Method::GET,
                    &format!("/api/v1/queues/{}", seg(&name)),
                )?)
                .await?;
            if c.output == Output::Json {
                return c.print_json(&v);
            }
            table(&QUEUE_HEADER, &[queue_row(&v)]);
        }
    }
    Ok(())
}

const QUEUE_HEADER: [&str; 7] = [
    "NAME",
    "GROUP",
    "WEIGHT",
    "ALLOCATED",
    "CAPABILITY",
    "GUARANTEE",
    "PENDING",
];

fn queue_row(q: &Value) -> Vec<String> {
    vec![
        s(q, "name"),
        s(q, "group"),
        s(q, "weight"),
        amount(&q["allocated"]),
        amount(&q["capability"]),
        amount(&q["guarantee"]),
        s(q, "pending_jobs"),
    ]
}

/// `2 CPU, 4Gi, 1 GPU`, `-` for unlimited dimensions.
fn amount(v: &Value) -> String {
    let cpu = v["cpu_millis"]
        .as_u64()
        .map_or("-".to_string(), |m| Millicores(m).to_string());
    let mem = v["memory_bytes"]
        .as_u64()
        .map_or("-".to_string(), |b| Bytes(b).to_string());
    let gpu = v["gpu"].as_u64().map_or("-".to_string(), |g| g.to_string());
    format!("cpu {cpu}, mem {mem}, gpu {gpu}")
}

/// A field as text ("" when absent or null).
fn s(v: &Value, key: &str) -> String {
    match &v[key] {
        Value::Null => String::new(),
        Value::String(t) => t.clone(),
        other => other.to_string(),
    }
}

/// A path segment, percent-encoded.
fn seg(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn age(now: i64, then: Option<i64>) -> String {
    let Some(then) = then else {
        return String::new();
    };
    let secs = (now - then).max(0) / 1000;
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m", secs / 60),
        3600..=86399 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                out.push_str(cell);
                out.push_str(&" ".repeat(pad + 2));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}
