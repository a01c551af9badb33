//! mofang's control plane: the REST API (with its OpenAPI document and the web UI), API-token
//! authentication, and the control loop that gang-schedules queued jobs
//! ([`mofang_scheduler`]) and runs them on the local executor ([`mofang_executor`]), all over
//! the metadata store ([`mofang_store`]).
//!
//! ```text
//! client ──HTTP──▶ api (auth) ──▶ Store ◀── controller ──▶ Scheduler (pure)
//!                     │ wake ──────────────────▲     └────▶ LocalExecutor ──▶ processes
//! ```
//!
//! Invariants: the store is the only truth (every accepted job is in it before the API
//! answers); the controller is the only writer of job states after `Created`, except
//! cancellation, which the API writes and the controller then carries out; a restart of the
//! server re-adopts or accounts for every replica (see [`ControlPlane::start`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mofang_executor::LocalExecutor;
use mofang_job::Backoff;
use mofang_scheduler::{QueueStatus, Resources};
use mofang_store::{QueueRecord, QueueResources, Store};
use tokio::sync::Notify;

mod api;
mod auth;
mod controller;
mod convert;
mod error;
mod ui;

pub use error::{Error, Result};

/// Everything the control plane needs to know at start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Jobs' logs, status files, working directories and the storage scopes live here.
    pub data_dir: PathBuf,
    /// The name of this machine as a scheduler node.
    pub node_name: String,
    /// What jobs may use on this machine in all.
    pub capacity: Resources,
    /// Time between control-loop cycles when nothing wakes it sooner.
    pub tick: Duration,
    /// Back-off between restarts of a replica (doubling per restart of the job, capped).
    pub restart_backoff: Backoff,
    /// Time a replica gets between SIGTERM and SIGKILL when it is stopped.
    pub kill_grace: Duration,
    /// Largest job spec accepted, in bytes.
    pub max_spec_bytes: usize,
    /// The scheduler's knobs (starvation, reservations, lending).
    pub scheduler: mofang_scheduler::Config,
    /// The program and leading arguments that start a replica's supervisor
    /// (`mofang shim` in production).
    pub shim_program: PathBuf,
    pub shim_args: Vec<String>,
}

impl Config {
    /// Defaults for a data directory: this machine's detected capacity, 0.5 s cycles, 10 s
    /// restart back-off doubling to 5 min, 10 s kill grace.
    pub fn new(data_dir: PathBuf, shim_program: PathBuf, shim_args: Vec<String>) -> Config {
        let c = mofang_executor::detect_capacity();
        Config {
            data_dir,
            node_name: "local".to_string(),
            capacity: Resources::new(c.cpu_millis, c.memory_bytes, u64::from(c.gpu)),
            tick: Duration::from_millis(500),
            restart_backoff: Backoff::default(),
            kill_grace: Duration::from_secs(10),
            max_spec_bytes: mofang_job::MAX_SPEC_BYTES,
            scheduler: mofang_scheduler::Config::default(),
            shim_program,
            shim_args,
        }
    }
}

/// What the control loop last computed, for the API (queue usage, cluster usage).
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    pub queues: Vec<QueueStatus>,
    pub allocated: Resources,
}

/// The queue every job without one of its own goes to; created on first start.
pub const DEFAULT_QUEUE: &str = "default";

/// A running control plane: share it with [`ControlPlane::router`], stop it with
/// [`ControlPlane::shutdown`].
#[derive(Clone)]
pub struct ControlPlane {
    pub(crate) store: Store,
    pub(crate) config: Arc<Config>,
    pub(crate) wake: Arc<Notify>,
    pub(crate) view: Arc<parking_lot::RwLock<View>>,
    stop: tokio::sync::watch::Sender<bool>,
    loop_done: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl ControlPlane {
    /// Prepares the data directory, makes sure the default queue exists, reconciles what a
    /// previous run of the server left running (re-adopting live replicas, recording lost
    /// ones), then starts the control loop.
    pub async fn start(store: Store, config: Config) -> Result<ControlPlane> {
        std::fs::create_dir_all(config.data_dir.join("jobs"))
            .map_err(|e| Error::io(format!("data directory {}", config.data_dir.display()), e))?;
        std::fs::create_dir_all(config.data_dir.join("storage/global"))
            .map_err(|e| Error::io(format!("data directory {}", config.data_dir.display()), e))?;
        if store.get_queue(DEFAULT_QUEUE).await?.is_none() {
            let created = store
                .create_queue(&QueueRecord {
                    name: DEFAULT_QUEUE.to_string(),
                    group: None,
                    weight: 1,
                    capability: QueueResources::default(),
                    guarantee: QueueResources::default(),
                    created_ms: now_ms(),
                })
                .await;
            match created {
                Ok(()) | Err(mofang_store::Error::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let config = Arc::new(config);
        let executor = Arc::new(LocalExecutor::new(
            config.shim_program.clone(),
            config.shim_args.clone(),
        ));
        let view = Arc::new(parking_lot::RwLock::new(View::default()));
        let mut controller =
            controller::Controller::new(store.clone(), executor, config.clone(), view.clone());
        controller.reconcile().await?;
        let wake = Arc::new(Notify::new());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let handle = tokio::spawn(controller.run(wake.clone(), stopped));
        Ok(ControlPlane {
            store,
            config,
            wake,
            view,
            stop,
            loop_done: Arc::new(tokio::sync::Mutex::new(Some(handle))),
        })
    }

    /// The HTTP API, the OpenAPI document and the web UI.
    pub fn router(&self) -> axum::Router {
        api::router(self.clone()).merge(ui::router())
    }

    /// Stops the control loop. Running replicas keep running; the next start re-adopts them.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Some(handle) = self.loop_done.lock().await.take() {
            let _ = handle.await;
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Serves the control plane on `listener` until `shutdown` resolves, then stops the loop.
pub async fn serve(
    listener: tokio::net::TcpListener,
    plane: ControlPlane,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = plane.router();
    let result = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    plane.shutdown().await;
    result
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
