//! The `mofang` command: wires the library crates together; no logic of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use mofang_backend::Backends;
use mofang_grpc::GrpcConfig;
use mofang_repository::{Manager, ManagerOptions, Source};
use mofang_serve::{AppState, ServeConfig};
use tracing_subscriber::EnvFilter;

mod control;
mod notebooks;
mod run;

/// mimalloc instead of glibc malloc: the model server allocates per request on several threads,
/// where glibc's arenas cost ~12 % of its CPU (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mofang (魔方): serve models, run notebooks, schedule training — one program.
#[derive(Debug, Parser)]
#[command(name = "mofang", version, about, long_about = None)]
struct Cli {
    /// Log format: text or json. Verbosity comes from RUST_LOG (default: info).
    #[arg(long, global = true, env = "MOFANG_LOG_FORMAT", default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve models over TF Serving REST and gRPC, KServe V2 REST and gRPC, and POST /predict.
    Serve(ServeArgs),
    /// Notebooks: `mofang notebooks serve ROOT` browses executed notebooks read-only.
    #[command(subcommand)]
    Notebooks(notebooks::NotebooksCommand),
    /// Run a notebook on a Jupyter kernel, papermill-compatible: `mofang run IN.ipynb OUT.ipynb -p NAME VALUE`.
    Run(run::RunArgs),
    /// The control plane: jobs and queues API, web UI, gang scheduler and local executor.
    Server(control::ServerArgs),
    /// API tokens of the control plane: `mofang token create --user U --group G`.
    #[command(subcommand)]
    Token(control::TokenCommand),
    /// Jobs on the control plane: submit, list, get, logs, cancel.
    Job(control::JobArgs),
    /// Queues on the control plane: create, list, get.
    Queue(control::QueueArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Model repository: <DIR>/<model>/<version>/model.onnx (+ optional <DIR>/<model>/config.yaml).
    #[arg(long, env = "MOFANG_MODEL_REPOSITORY", conflicts_with_all = ["model_name", "model_base_path"])]
    model_repository: Option<PathBuf>,
    /// Serve a single model under this name (TF Serving's --model_name); needs --model-base-path.
    #[arg(long, env = "MOFANG_MODEL_NAME", requires = "model_base_path")]
    model_name: Option<String>,
    /// The single model's directory: <DIR>/<version>/model.onnx (TF Serving's --model_base_path).
    #[arg(long, env = "MOFANG_MODEL_BASE_PATH", requires = "model_name")]
    model_base_path: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "MOFANG_HOST", default_value = "0.0.0.0")]
    host: std::net::IpAddr,
    /// Port of the REST APIs (TF Serving REST, KServe V2 REST, /predict); 0 picks a free port.
    #[arg(long, env = "MOFANG_REST_PORT", default_value_t = 8501)]
    rest_port: u16,
    /// Port of the gRPC APIs (TF Serving PredictionService and ModelService, KServe V2
    /// GRPCInferenceService, grpc.health.v1.Health); 0 picks a free port.
    #[arg(long, env = "MOFANG_GRPC_PORT", default_value_t = 8500)]
    grpc_port: u16,
    /// Seconds between rescans of the repository for new, changed and removed versions; 0 disables.
    #[arg(long, env = "MOFANG_POLL_INTERVAL", default_value_t = 2.0)]
    #[arg(allow_negative_numbers = true)]
    poll_interval: f64,
    /// Path of libonnxruntime.so (default: $ORT_DYLIB_PATH, else the project's .venv); tract is used when none is found.
    #[arg(long, env = "MOFANG_ORT_LIBRARY")]
    ort_library: Option<PathBuf>,
    /// Largest request body in bytes (larger REST requests get HTTP 413), also the largest gRPC
    /// request message (larger ones get OUT_OF_RANGE).
    #[arg(long, env = "MOFANG_MAX_BODY_BYTES", default_value_t = 64 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Seconds a request may take, reading its body included; slower ones get HTTP 504 (gRPC:
    /// DEADLINE_EXCEEDED).
    #[arg(
        long,
        env = "MOFANG_REQUEST_TIMEOUT",
        default_value_t = 60.0,
        allow_negative_numbers = true
    )]
    request_timeout: f64,
    /// Write the bound REST address to this file once serving (for scripts and tests).
    #[arg(long, env = "MOFANG_ADDRESS_FILE")]
    address_file: Option<PathBuf>,
    /// Write the bound gRPC address to this file once serving (for scripts and tests).
    #[arg(long, env = "MOFANG_GRPC_ADDRESS_FILE")]
    grpc_address_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    // `mofang shim ...`: a replica's supervisor, started by the control plane's local executor.
    // Not a clap subcommand: its arguments are the replica's command line, taken verbatim.
    if std::env::args_os().nth(1).is_some_and(|a| a == "shim") {
        return mofang_executor::shim::main_from_args();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print as clap prints them.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            // One line: clap's first line, without the usage block.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid arguments");
            let detail: Vec<&str> = text
                .lines()
                .skip(1)
                .map(str::trim)
                .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .collect();
            let first = first.trim_start_matches("error: ");
            if detail.is_empty() {
                eprintln!("mofang: {first} (see mofang --help)");
            } else {
                eprintln!("mofang: {first} {} (see mofang --help)", detail.join(", "));
            }
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_tracing(&cli.log_format) {
        eprintln!("mofang: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mofang: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Notebooks(command) => notebooks::run(command).await,
            Command::Run(args) => run::run(args).await,
            Command::Server(args) => control::server(args, shutdown_signal()).await,
            Command::Token(command) => control::token(command).await,
            Command::Job(args) => control::job(args).await,
            Command::Queue(args) => control::queue(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mofang: {e:#}");
            ExitCode::from(e.downcast_ref::<run::Exit>().map_or(1, |exit| exit.code))
        }
    }
}

fn init_tracing(format: &str) -> anyhow::Result<()> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,ort=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        "text" => builder.init(),
        "json" => builder.json().init(),
        other => bail!("--log-format: expected text or json, got `{other}`"),
    }
    Ok(())
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Option<Duration>> {
    if !value.is_finite() || value < 0.0 {
        bail!("{flag}: expected a non-negative number of seconds, got {value}");
    }
    Ok((value > 0.0).then(|| Duration::from_secs_f64(value)))
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let source = match (args.model_repository, args.model_name, args.model_base_path) {
        (Some(dir), None, None) => {
            if !dir.is_dir() {
                bail!("--model-repository: {} is not a directory", dir.display());
            }
            Source::Repository(dir)
        }
        (None, Some(name), Some(base_path)) => {
            if !base_path.is_dir() {
                bail!(
                    "--model-base-path: {} is not a directory",
                    base_path.display()
                );
            }
            Source::Single { name, base_path }
        }
        _ => bail!("give --model-repository DIR, or --model-name NAME with --model-base-path DIR"),
    };
    let poll_interval = seconds("--poll-interval", args.poll_interval)?;
    let request_timeout = seconds("--request-timeout", args.request_timeout)?
        .context("--request-timeout: must be greater than 0")?;
    let backends = Backends::detect(args.ort_library.as_deref());
    match backends.onnxruntime_error() {
        None => tracing::info!("default backend: ONNX Runtime"),
        Some(why) => tracing::warn!("default backend: tract (ONNX Runtime unavailable: {why})"),
    }
    let manager = Manager::start(ManagerOptions {
        source,
        poll_interval,
        backends,
        metrics: mofang_metrics::ServingMetrics::default(),
    })
    .await?;
    for model in manager.models() {
        for v in &model.versions {
            tracing::info!(model = %model.name, version = v.version, state = ?v.state, error = v.error.as_deref().unwrap_or(""), "model version");
        }
    }
    let addr = SocketAddr::new(args.host, args.rest_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (--rest-port)"))?;
    let bound = listener.local_addr()?;
    let grpc_addr = SocketAddr::new(args.host, args.grpc_port);
    let grpc_listener = tokio::net::TcpListener::bind(grpc_addr)
        .await
        .with_context(|| format!("cannot listen on {grpc_addr} (--grpc-port)"))?;
    let grpc_bound = grpc_listener.local_addr()?;
    tracing::info!("REST API (TF Serving /v1, KServe V2 /v2, POST /predict) on http://{bound}");
    tracing::info!(
        "gRPC API (tensorflow.serving.PredictionService, ModelService, inference.GRPCInferenceService, grpc.health.v1) on {grpc_bound}"
    );
    if let Some(path) = &args.address_file {
        std::fs::write(path, bound.to_string())
            .with_context(|| format!("cannot write --address-file {}", path.display()))?;
    }
    if let Some(path) = &args.grpc_address_file {
        std::fs::write(path, grpc_bound.to_string())
            .with_context(|| format!("cannot write --grpc-address-file {}", path.display()))?;
    }
    let grpc_config = GrpcConfig {
        max_message_bytes: args.max_body_bytes,
        request_timeout,
    };
    let state = AppState::new(
        manager.clone(),
        ServeConfig {
            max_body_bytes: args.max_body_bytes,
            request_timeout,
        },
    );
    // One signal stops both servers.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        // An error means the sender is gone, which also means stop.
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let rest = async {
        mofang_serve::serve(listener, state, until_stopped(stopped.clone()))
            .await
            .context("REST server")
    };
    let grpc = async {
        mofang_grpc::serve(
            grpc_listener,
            manager,
            grpc_config,
            until_stopped(stopped.clone()),
        )
        .await
        .context("gRPC server")
    };
    tokio::try_join!(rest, grpc)?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
