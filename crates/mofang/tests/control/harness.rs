//! A real `mofang server` process on a temporary data directory, its tokens, and an HTTP client.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

pub const MOFANG: &str = env!("CARGO_BIN_EXE_mofang");

pub struct Plane {
    pub dir: TempDir,
    pub child: Option<Child>,
    pub url: String,
    pub admin: String,
    pub extra_args: Vec<String>,
    http: reqwest::Client,
}

impl Plane {
    /// A server with 2 CPUs and 4 GiB for jobs, quick restarts and kills.
    pub fn start() -> Plane {
        Plane::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Plane {
        let dir = TempDir::new().expect("a temporary directory");
        let admin = token_in(dir.path(), "admin", "admin", true);
        let mut plane = Plane {
            dir,
            child: None,
            url: String::new(),
            admin,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            http: reqwest::Client::new(),
        };
        plane.launch();
        plane
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Starts (or starts again) the server process on the same data directory.
    pub fn launch(&mut self) {
        let address_file = self.dir.path().join("address");
        let _ = std::fs::remove_file(&address_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .expect("server log");
        let child = Command::new(MOFANG)
            .args([
                "server", "--port", "0", "--cpus", "2", "--memory", "4Gi", "--gpus", "0",
            ])
            .args([
                "--kill-grace",
                "1",
                "--restart-backoff",
                "0.2",
                "--tick",
                "0.1",
            ])
            .arg("--data-dir")
            .arg(self.data())
            .arg("--address-file")
            .arg(&address_file)
            .args(&self.extra_args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("mofang server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&address_file)
                && !text.is_empty()
            {
                self.url = format!("http://{}", text.trim());
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("mofang server exited with {status}:\n{}", self.server_log());
            }
            assert!(
                Instant::now() < deadline,
                "mofang server did not start:\n{}",
                self.server_log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// SIGKILL: no chance to clean up, as in a crash.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn token(&self, user: &str, group: &str) -> String {
        token_in(self.dir.path(), user, group, false)
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(method, format!("{}{path}", self.url));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.body(b);
        }
        let response = rb.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("a body");
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    pub async fn get(&self, path: &str, token: &str) -> Value {
        let (status, v) = self
            .call(reqwest::Method::GET, path, Some(token), None)
            .await;
        assert_eq!(status, 200, "GET {path}: {v}");
        v
    }

    pub async fn submit(&self, token: &str, spec: &str) -> Value {
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                "/api/v1/jobs",
                Some(token),
                Some(spec.to_string()),
            )
            .await;
        assert_eq!(status, 201, "submit: {v}\n{spec}");
        v
    }

    pub async fn job(&self, token: &str, id: &str) -> Value {
        self.get(&format!("/api/v1/jobs/{id}"), token).await
    }

    /// Waits until the job is in `state`; panics with the job's record after `secs`.
    pub async fn wait_state(&self, token: &str, id: &str, state: &str, secs: u64) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let job = self.job(token, id).await;
            if job["state"] == state {
                return job;
            }
            if Instant::now() > deadline {
                panic!(
                    "job {id} is {} after {secs} s, expected {state}:\n{:#}\nserver log:\n{}",
                    job["state"],
                    job,
                    self.server_log()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs the CLI against this server.
    pub fn cli(&self, token: &str, args: &[&str]) -> Output {
        let config = self.dir.path().join("empty-config.yaml");
        std::fs::write(&config, "{}\n").expect("an empty client config");
        Command::new(MOFANG)
            .args(args)
            .env("MOFANG_URL", &self.url)
            .env("MOFANG_TOKEN", token)
            .env("MOFANG_CONFIG", &config)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("mofang runs")
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        self.crash();
        // Replicas outlive the server by design; end those of this test.
        for pid in shim_pids(&self.data()) {
            let _ = Command::new("kill")
                .args(["-9", &format!("-{pid}")])
                .status();
        }
    }
}

/// The pids of replica supervisors recorded by the store of a data directory: read back from
/// the replica status directory names is not possible, so ask the processes table.
fn shim_pids(data: &Path) -> Vec<String> {
    let Ok(out) = Command::new("pgrep")
        .args(["-f", &format!("{}.*shim", MOFANG)])
        .output()
    else {
        return Vec::new();
    };
    let data = data.to_string_lossy().to_string();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(&data))
                .unwrap_or(false)
        })
        .map(str::to_string)
        .collect()
}

pub fn token_in(dir: &Path, user: &str, group: &str, admin: bool) -> String {
    let mut cmd = Command::new(MOFANG);
    cmd.args(["token", "create", "--user", user, "--group", group])
        .arg("--data-dir")
        .arg(dir.join("data"));
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().expect("mofang token create runs");
    assert!(
        out.status.success(),
        "token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}
