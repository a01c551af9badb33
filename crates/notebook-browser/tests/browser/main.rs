//! End-to-end tests of the notebook browser: the real router on 127.0.0.1:0 over a temporary
//! directory of notebooks written here, requests sent as raw HTTP (so no client normalises the
//! hostile paths), models compared with jupyter_server's own `FileContentsManager`, pages loaded
//! in headless Chromium.
//!
//! Needs `scripts/setup.sh` (jupyter_server in .venv; `. scripts/env.sh` sets MOFANG_PYTHON)
//! and Chromium (`scripts/setup-chromium.sh`, or MOFANG_CHROMIUM).

mod chromium;
mod contents;
mod fixtures;
mod pages;
mod traversal;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use mofang_notebook_browser::{Browser, BrowserOptions, LocalDir, router};

/// A running browser over a fixture tree.
pub struct Server {
    pub addr: SocketAddr,
    pub fixture: fixtures::Fixture,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(BrowserOptions::default(), None)
    }

    /// With `nest`, the router is mounted under that prefix (as the control plane will).
    pub fn start_with(options: BrowserOptions, nest: Option<&str>) -> Server {
        let fixture = fixtures::Fixture::new();
        let storage = Arc::new(LocalDir::new(&fixture.root).expect("fixture root opens"));
        let browser = Browser::new(storage, options).expect("valid options");
        let app = match nest {
            Some(prefix) => axum::Router::new().nest(prefix, router(browser)),
            None => router(browser),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("local addr");
        runtime.spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Server {
            addr,
            fixture,
            _runtime: runtime,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Sends `METHOD target HTTP/1.1` exactly as given (no normalisation) and reads the answer.
    pub fn request(&self, method: &str, target: &str) -> Reply {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let body = if method == "GET" || method == "HEAD" {
            ""
        } else {
            "{}"
        };
        write!(
            stream,
            "{method} {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read");
        Reply::parse(&raw)
    }

    pub fn get(&self, target: &str) -> Reply {
        self.request("GET", target)
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    fn parse(raw: &[u8]) -> Reply {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a header block");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.lines();
        let status_line = lines.next().expect("status line");
        let status = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status code");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Reply {
            status,
            headers,
            body: raw[split + 4..].to_vec(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// The `error` message of a JSON error reply, checking the format on the way.
    pub fn error(&self) -> String {
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{}",
            self.text()
        );
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error string: {}", self.text()))
            .to_owned()
    }
}
