//! The control plane's web UI in Debian's headless Chromium, driven through chromedriver's
//! W3C WebDriver API, against a real `mofang server`: what a user sees on the jobs, job and
//! queues pages after the page's scripts ran. Screenshots go to `target/ui-screenshots/`.

#[path = "control/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use harness::Plane;
use serde_json::{Value, json};

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("MOFANG_CHROMIUM") {
        return PathBuf::from(p);
    }
    which(&["chromium", "chromium-browser"])
        .unwrap_or_else(|| panic!("no chromium on PATH: run scripts/setup-chromium.sh"))
}

/// Headless Chromium driven through chromedriver's W3C WebDriver HTTP API.
struct Browser {
    driver: Child,
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Browser {
    async fn start() -> Browser {
        let chromedriver = which(&["chromedriver"])
            .unwrap_or_else(|| panic!("no chromedriver on PATH: run scripts/setup-chromium.sh"));
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while http.get(format!("{base}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium().display().to_string(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--window-size=1400,1000"],
            }
        }}});
        let v: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("JSON");
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_string();
        Browser {
            driver,
            http,
            base,
            session,
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut rb = self.http.request(method, url);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let v: Value = rb
            .send()
            .await
            .expect("webdriver")
            .json()
            .await
            .expect("JSON");
        if v["value"]["error"].is_string() {
            panic!("webdriver {path}: {v}");
        }
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    async fn eval(&self, script: &str) -> Value {
        self.command(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .await
    }

    /// Waits until `script` returns something truthy and returns it; panics with `what` and
    /// the page's text after 15 s.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.eval(script).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let text = self.eval("return document.body.innerText").await;
                panic!(
                    "{what}: not seen within 15 s; the page shows:\n{}",
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let v = self
            .command(reqwest::Method::GET, "/screenshot", None)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64"))
            .expect("a PNG");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let file = dir.join(name);
        std::fs::write(&file, png).expect("write the screenshot");
        let file = file.canonicalize().unwrap_or(file);
        println!("screenshot: {}", file.display());
        file
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_shows_jobs_their_logs_and_queue_usage_to_the_right_users() {
    let plane = Plane::start();
    let admin = plane.admin.clone();
    let carol = plane.token("carol", "team-b");
    let running = plane
        .submit(
            &admin,
            "name: busy\ntasks:\n- role: worker\n  resources: {cpu: 1}\n  command: [sh, -c, 'echo hello-from-replica; sleep 60']\n",
        )
        .await;
    let running_id = running["id"].as_str().expect("id").to_string();
    plane.wait_state(&admin, &running_id, "Running", 20).await;
    let gang = plane
        .submit(
            &admin,
            "name: wide\ntasks:\n- role: worker\n  replicas: 2\n  resources: {cpu: 1}\n  command: [sleep, '1']\n",
        )
        .await;
    let gang_id = gang["id"].as_str().expect("id").to_string();
    plane.wait_state(&admin, &gang_id, "Queued", 20).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while plane.job(&admin, &gang_id).await["events"]
        .as_array()
        .is_none_or(|e| e.is_empty())
    {
        assert!(Instant::now() < deadline, "no waiting event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let browser = Browser::start().await;
    browser
        .goto(&format!("{}/ui/?token={admin}#/jobs", plane.url))
        .await;
    // Jobs page: both jobs with their states; the token left the address bar.
    let row_state = |id: &str| {
        format!(
            "var r = document.querySelector('tr[data-job-id=\"{id}\"]'); return r ? r.dataset.state : ''"
        )
    };
    assert_eq!(
        browser
            .wait_for("the running job", &row_state(&running_id))
            .await,
        "Running"
    );
    assert_eq!(
        browser
            .wait_for("the waiting gang", &row_state(&gang_id))
            .await,
        "Queued"
    );
    let address = browser.eval("return location.href").await;
    assert!(
        !address.as_str().unwrap_or_default().contains("token="),
        "{address}"
    );
    let jobs_png = browser.screenshot("jobs.png").await;

    // A filter is part of the address and narrows the list.
    browser
        .goto(&format!("{}/ui/#/jobs?state=Queued", plane.url))
        .await;
    browser
        .wait_for(
            "the filtered list",
            "var rows = document.querySelectorAll('tr[data-job-id]'); return rows.length === 1 && rows[0].dataset.state === 'Queued'",
        )
        .await;

    // The waiting gang's page says why it waits.
    browser
        .goto(&format!("{}/ui/#/jobs/{gang_id}", plane.url))
        .await;
    let events = browser
        .wait_for(
            "the waiting event",
            "var t = document.querySelector('#events-table tbody').innerText; return t.includes('waiting:') ? t : ''",
        )
        .await;
    assert!(
        events.as_str().unwrap_or_default().contains("CPU"),
        "{events}"
    );
    assert_eq!(
        browser
            .eval("return document.querySelector('#job-state').textContent")
            .await,
        "Queued"
    );
    let waiting_png = browser.screenshot("job-waiting.png").await;

    // The running job's page: its replica Running, and the live log.
    browser
        .goto(&format!("{}/ui/#/jobs/{running_id}", plane.url))
        .await;
    browser
        .wait_for(
            "the live log",
            "return document.querySelector('#log').textContent.includes('hello-from-replica')",
        )
        .await;
    let replica = browser
        .wait_for(
            "the replica row",
            "var r = document.querySelector('tr[data-replica=\"worker-0\"]'); return r ? r.dataset.state : ''",
        )
        .await;
    assert_eq!(replica, "Running");
    let running_png = browser.screenshot("job-running.png").await;

    // Queues page: the default queue holds the running job's CPU; the node's totals.
    browser.goto(&format!("{}/ui/#/queues", plane.url)).await;
    let cpu = browser
        .wait_for(
            "the default queue",
            "var r = document.querySelector('tr[data-queue=\"default\"]'); return r ? r.dataset.allocatedCpu : ''",
        )
        .await;
    assert_eq!(cpu, "1000");
    let cluster = browser
        .eval("return document.querySelector('#cluster').textContent")
        .await;
    assert!(
        cluster.as_str().unwrap_or_default().contains("1 of 2 CPU"),
        "{cluster}"
    );
    let queues_png = browser.screenshot("queues.png").await;

    // Cancelling from the job page (confirmation accepted) ends the job.
    browser
        .goto(&format!("{}/ui/#/jobs/{running_id}", plane.url))
        .await;
    browser
        .wait_for(
            "the cancel button",
            "return document.querySelector('#job-state').textContent === 'Running' && !document.querySelector('#cancel').disabled",
        )
        .await;
    browser
        .eval("window.confirm = () => true; document.querySelector('#cancel').click(); return true")
        .await;
    browser
        .wait_for(
            "the cancelled state",
            "return document.querySelector('#job-state').textContent === 'Cancelled'",
        )
        .await;
    plane.wait_state(&admin, &running_id, "Cancelled", 10).await;

    // Another group's user sees neither job; a bad token lands on the sign-in form.
    browser
        .goto(&format!("{}/ui/?token={carol}#/jobs", plane.url))
        .await;
    browser
        .wait_for(
            "carol signed in",
            "return document.querySelector('#who').textContent.includes('carol')",
        )
        .await;
    browser
        .wait_for(
            "the empty list",
            "return !document.querySelector('#jobs-empty').hidden",
        )
        .await;
    assert_eq!(
        browser
            .eval("return document.querySelectorAll('tr[data-job-id]').length")
            .await,
        0
    );
    browser
        .goto(&format!("{}/ui/?token=mft_wrong#/jobs", plane.url))
        .await;
    let error = browser
        .wait_for(
            "the sign-in error",
            "return document.querySelector('#login').hidden ? '' : document.querySelector('#login-error').textContent",
        )
        .await;
    assert!(
        error
            .as_str()
            .unwrap_or_default()
            .contains("unknown API token"),
        "{error}"
    );
    for shot in [jobs_png, waiting_png, running_png, queues_png] {
        assert!(shot.exists());
    }
}
