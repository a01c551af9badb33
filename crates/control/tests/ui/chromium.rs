//! Headless Chromium driven over the DevTools protocol through `--remote-debugging-pipe`: load
//! a page, evaluate a script in it, wait for something to show, take a screenshot. Nothing but
//! Chromium is needed (no chromedriver, no WebSocket): the browser reads commands on fd 3 and
//! writes answers on fd 4, each a JSON message ended by a NUL byte; `sh` wires those two
//! descriptors to the child's stdin and stdout. (`--dump-dom` cannot be used: the pages
//! stream logs and refresh themselves, so they never go idle.)

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long [`Browser::wait_for`] waits before it fails the test.
const WAIT: Duration = Duration::from_secs(15);
/// How long one protocol command may take.
const COMMAND: Duration = Duration::from_secs(20);
const WIDTH: u32 = 1400;
const HEIGHT: u32 = 1000;

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("MOFANG_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("no chromium on PATH: run scripts/setup-chromium.sh (or set MOFANG_CHROMIUM)")
        })
}

/// Where screenshots go: `target/ui-screenshots/` (or under `$CARGO_TARGET_DIR`).
pub fn screenshot_dir() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    };
    let dir = target.join("ui-screenshots");
    std::fs::create_dir_all(&dir).expect("create target/ui-screenshots");
    dir
}

/// JavaScript's idea of truth, for values a script returned.
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// One headless browser with one page; closed (and its process ended) on drop.
pub struct Browser {
    child: Child,
    commands: ChildStdin,
    messages: Receiver<Value>,
    next_id: u64,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub fn start() -> Browser {
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#"exec "$0" "$@" 3<&0 4>&1 </dev/null >/dev/null"#)
            .arg(chromium())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-extensions",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--window-size={WIDTH},{HEIGHT}"))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromium starts");
        let commands = child.stdin.take().expect("chromium's command pipe");
        let answers = child.stdout.take().expect("chromium's answer pipe");
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(answers);
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if message.last() == Some(&0) {
                    message.pop();
                }
                let Ok(v) = serde_json::from_slice::<Value>(&message) else {
                    continue;
                };
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        let mut browser = Browser {
            child,
            commands,
            messages,
            next_id: 0,
            session: String::new(),
            _profile: profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}));
        let target = target["targetId"]
            .as_str()
            .expect("a target id")
            .to_string();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        );
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_string();
        browser.page(
            "Emulation.setDeviceMetricsOverride",
            json!({
                "width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": false,
            }),
        );
        browser
    }

    /// Sends one command (to the page's session, or the browser) and returns its result;
    /// events and other answers in between are skipped.
    fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .and_then(|()| self.commands.flush())
            .unwrap_or_else(|e| panic!("chromium stopped reading commands ({method}): {e}"));
        let deadline = Instant::now() + COMMAND;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            // Blocking here is fine: the control plane runs on the runtime's other threads.
            let answer = tokio::task::block_in_place(|| self.messages.recv_timeout(left));
            match answer {
                Ok(v) if v["id"] == id => {
                    if !v["error"].is_null() {
                        panic!("{method}: {}", v["error"]);
                    }
                    return v["result"].clone();
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{method}: no answer from chromium in {} s",
                        COMMAND.as_secs()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => panic!("{method}: chromium exited"),
            }
        }
    }

    fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// Starts loading `url` (a change of the hash alone is a same-document navigation).
    pub fn goto(&mut self, url: &str) {
        let v = self.page("Page.navigate", json!({"url": url}));
        assert!(v["errorText"].is_null(), "loading {url}: {v}");
    }

    /// Runs `script` (a function body: `return …`) in the page and returns its value.
    pub fn eval(&mut self, script: &str) -> Value {
        let v = self.page(
            "Runtime.evaluate",
            json!({"expression": format!("(() => {{ {script} }})()"), "returnByValue": true}),
        );
        if !v["exceptionDetails"].is_null() {
            panic!("script failed: {script}\n{}", v["exceptionDetails"]);
        }
        v["result"]["value"].clone()
    }

    /// Polls `script` until it returns something truthy and returns that; fails the test,
    /// showing `what` and the page's text, after 15 s.
    pub async fn wait_for(&mut self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            // The page may be between documents; that is not an answer yet.
            let v = self.page(
                "Runtime.evaluate",
                json!({"expression": format!("(() => {{ {script} }})()"), "returnByValue": true}),
            );
            if v["exceptionDetails"].is_null() && truthy(&v["result"]["value"]) {
                return v["result"]["value"].clone();
            }
            if Instant::now() > deadline {
                let text = self.eval("return location.href + '\\n' + document.body.innerText");
                panic!(
                    "{what}: not seen within {} s ({}); the page shows:\n{}",
                    WAIT.as_secs(),
                    v["exceptionDetails"]["exception"]["description"],
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The text of the first element matching `selector` ("" when there is none).
    pub fn text(&mut self, selector: &str) -> String {
        let script = format!(
            "var e = document.querySelector({}); return e ? e.textContent : ''",
            json!(selector)
        );
        self.eval(&script).as_str().unwrap_or_default().to_string()
    }

    /// Saves a PNG of the page to `target/ui-screenshots/<name>`, prints and returns its path.
    pub fn screenshot(&mut self, name: &str) -> PathBuf {
        use base64::Engine as _;
        let v = self.page("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(v["data"].as_str().expect("a base64 screenshot"))
            .expect("valid base64");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        assert_eq!((be(&png[16..20]), be(&png[20..24])), (WIDTH, HEIGHT));
        // A blank page compresses to a few kilobytes; rendered tables do not.
        assert!(
            png.len() > 20_000,
            "{name} looks empty: {} bytes",
            png.len()
        );
        let file = screenshot_dir().join(name);
        std::fs::write(&file, &png).expect("write the screenshot");
        let file = file.canonicalize().unwrap_or(file);
        println!("screenshot: {}", file.display());
        file
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Ask the browser to close (it ends its helper processes), then make sure.
        let _ = self
            .commands
            .write_all(b"{\"id\":0,\"method\":\"Browser.close\",\"params\":{}}\0");
        let _ = self.commands.flush();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
