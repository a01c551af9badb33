//! The real control plane in this process: a SQLite store in a temporary directory, tokens
//! made through the store, [`mofang_control::serve`] on 127.0.0.1:0, and replicas run by the
//! executor's real supervisor (`mofang-shim`, built beside this test binary).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mofang_control::{Config, ControlPlane};
use mofang_scheduler::Resources;
use mofang_store::Store;
use serde_json::Value;
use tempfile::TempDir;

/// CPU the plane may hand out: two cores, so one 1-core job leaves room for one more core.
pub const CPU_MILLIS: u64 = 2000;
const MEMORY: u64 = 4 << 30;

/// The executor's supervisor binary, built by cargo into the same profile directory as this
/// test (`target/<profile>/mofang-shim`; the test binary is `target/<profile>/deps/ui-…`).
fn shim() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps");
    let shim = profile.join("mofang-shim");
    assert!(
        shim.is_file(),
        "{} is missing: the UI test runs replicas under the executor's supervisor; build it \
         with `cargo build -p mofang-executor --bin mofang-shim` (a workspace build or test \
         builds it too)",
        shim.display()
    );
    shim
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub struct Plane {
    pub url: String,
    pub store: Store,
    pub admin: String,
    plane: ControlPlane,
    dir: TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    http: reqwest::Client,
}

impl Plane {
    pub async fn start() -> Plane {
        let dir = TempDir::new().expect("a temporary directory");
        let store = Store::open(&format!("sqlite:{}", dir.path().join("db").display()))
            .await
            .expect("the store opens");
        let admin = store
            .create_token("root", "admins", true, now_ms())
            .await
            .expect("an admin token");
        let mut config = Config::new(dir.path().join("data"), shim(), Vec::new());
        config.capacity = Resources::new(CPU_MILLIS, MEMORY, 0);
        config.tick = Duration::from_millis(100);
        config.kill_grace = Duration::from_secs(1);
        config.restart_backoff = mofang_job::Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(1),
        };
        let plane = ControlPlane::start(store.clone(), config)
            .await
            .expect("the control plane starts");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().expect("an address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(mofang_control::serve(listener, plane.clone(), async move {
            let _ = stopped.await;
        }));
        Plane {
            url,
            store,
            admin,
            plane,
            dir,
            stop: Some(stop),
            server: Some(server),
            http: reqwest::Client::new(),
        }
    }

    /// A token for a normal user.
    pub async fn token(&self, user: &str, group: &str) -> String {
        self.store
            .create_token(user, group, false, now_ms())
            .await
            .expect("a user token")
    }

    pub async fn submit(&self, token: &str, spec: &str) -> String {
        let response = self
            .http
            .post(format!("{}/api/v1/jobs", self.url))
            .bearer_auth(token)
            .body(spec.to_string())
            .send()
            .await
            .expect("the server answers");
        let status = response.status();
        let v: Value = response.json().await.expect("a JSON answer");
        assert_eq!(status.as_u16(), 201, "submit: {v}\n{spec}");
        v["id"].as_str().expect("a job id").to_string()
    }

    pub async fn job(&self, token: &str, id: &str) -> Value {
        let response = self
            .http
            .get(format!("{}/api/v1/jobs/{id}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("the server answers");
        assert!(response.status().is_success(), "GET job {id}");
        response.json().await.expect("a JSON answer")
    }

    pub async fn cancel(&self, token: &str, id: &str) {
        let response = self
            .http
            .post(format!("{}/api/v1/jobs/{id}/cancel", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("the server answers");
        assert!(response.status().is_success(), "cancel {id}");
    }

    /// Waits (up to 20 s) until `ready` holds for the job's record, and returns the record.
    pub async fn wait_job(&self, id: &str, what: &str, ready: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let job = self.job(&self.admin, id).await;
            if ready(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "job {id}: {what} not seen in 20 s:\n{job:#}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Cancels what still runs, waits for it to end, then stops the server and control loop.
    pub async fn stop(mut self, jobs: &[&str]) {
        for id in jobs {
            let job = self.job(&self.admin, id).await;
            if !matches!(
                job["state"].as_str(),
                Some("Succeeded" | "Failed" | "Cancelled")
            ) {
                self.cancel(&self.admin, id).await;
            }
        }
        for id in jobs {
            self.wait_job(id, "every replica ended", |j| {
                j["replica_attempts"]
                    .as_array()
                    .is_some_and(|a| a.iter().all(|r| r["state"] != "Running"))
            })
            .await;
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.plane.shutdown().await;
    }
}

impl Drop for Plane {
    /// Replicas outlive the control plane by design; after a failed test end every process
    /// whose command line names this plane's data directory (the supervisors), with its group.
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let data = self.dir.path().display().to_string();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&data) {
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", "--", &format!("-{name}"), &name])
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
    }
}
