//! The browser over `s3://bucket/prefix` ([`S3Dir`]) against moto's S3 server
//! (scripts/requirements-s3.txt, started here on a free port): the browser tests' fixture tree
//! is uploaded with boto3 under a prefix, and every model, raw file and page the S3 root serves
//! must equal what the same tree served from a local directory gives ([`LocalDir`], itself
//! checked against jupyter_server in tests/browser), times aside — those come from S3's
//! `LastModified`, as boto3 reads it. Keys outside the prefix stay unreachable.

#[allow(dead_code)]
#[path = "browser/fixtures.rs"]
mod fixtures;

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mofang_notebook_browser::{Browser, BrowserOptions, LocalDir, S3Dir, Storage, router};
use serde_json::{Value, json};

fn python() -> PathBuf {
    let p = std::env::var_os("MOFANG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"));
    assert!(p.is_file(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// A moto S3 server on 127.0.0.1, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let server = python().with_file_name("moto_server");
        assert!(
            server.is_file(),
            "{} missing: run scripts/setup.sh (scripts/requirements-s3.txt)",
            server.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut child = Command::new(&server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + Duration::from_secs(15);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            if let Some(status) = child.try_wait().expect("moto status") {
                panic!("moto_server exited ({status}) before listening on {addr}");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server not listening after 15 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto {
            child,
            endpoint: format!("http://{addr}"),
        }
    }

    fn config(&self) -> Vec<(&str, &str)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ]
    }

    /// Runs a Python script (boto3 client as `s3`) with `arg` as JSON on stdin; its stdout as JSON.
    fn python(&self, script: &str, arg: &Value) -> Value {
        let prelude =
            "import json, os, sys, boto3\ns3 = boto3.client('s3')\narg = json.load(sys.stdin)\n";
        let mut cmd = Command::new(python());
        cmd.arg("-c").arg(format!("{prelude}{script}"));
        for name in ["AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"] {
            cmd.env_remove(name);
        }
        for (name, value) in self.config() {
            cmd.env(name, value);
        }
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python starts");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(arg.to_string().as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("python runs");
        assert!(
            out.status.success(),
            "python failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON on stdout")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A browser over `storage` on 127.0.0.1:0, on its own runtime.
struct Server {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl Server {
    fn start(storage: Arc<dyn Storage>) -> Server {
        let browser = Browser::new(storage, BrowserOptions::default()).expect("options");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        runtime.spawn(async move {
            axum::serve(listener, router(browser)).await.expect("serve");
        });
        Server {
            addr,
            _runtime: runtime,
        }
    }

    /// `GET target` sent as given (no client normalises hostile paths): status, content type,
    /// body.
    fn get(&self, target: &str) -> (u16, String, Vec<u8>) {
        let mut stream = TcpStream::connect(self.addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("send");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).expect("read");
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a header block");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        let content_type = head
            .lines()
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default();
        (status, content_type, raw[split + 4..].to_vec())
    }

    fn json(&self, target: &str) -> (u16, Value) {
        let (status, _, body) = self.get(target);
        let value = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{target}: not JSON ({e}): {}",
                String::from_utf8_lossy(&body)
            )
        });
        (status, value)
    }
}

/// A model with its (and its listing's) times taken out, returned separately by path.
fn split_times(model: &mut Value, times: &mut Vec<(String, Value, Value)>) {
    if let Some(obj) = model.as_object_mut() {
        let path = obj
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let modified = obj.remove("last_modified").unwrap_or(Value::Null);
        let created = obj.remove("created").unwrap_or(Value::Null);
        times.push((path, modified, created));
        if obj.get("type") == Some(&json!("directory"))
            && let Some(Value::Array(children)) = obj.get_mut("content")
        {
            children.sort_by_key(|c| c["name"].as_str().unwrap_or("").to_owned());
            for child in children {
                split_times(child, times);
            }
        }
    }
}

/// Percent-encodes a relative path segment by segment, as a browser would.
fn url_path(rel: &str) -> String {
    rel.split('/')
        .map(|seg| {
            seg.bytes()
                .map(|b| {
                    if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                        (b as char).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn an_s3_prefix_is_served_as_the_same_tree_from_disk() {
    let moto = Moto::start();
    let fixture = fixtures::Fixture::new();
    // An empty directory: a "folder" object in S3, a directory on disk.
    std::fs::create_dir(fixture.root.join("empty")).expect("mkdir");
    // Upload the tree's regular files under runs/ (symlinks have no S3 equivalent), a folder
    // object for empty/, and the secret at two keys outside the prefix.
    let uploaded = moto.python(
        "s3.create_bucket(Bucket='nbs')\n\
         keys = []\n\
         for dirpath, dirs, files in os.walk(arg['root']):\n    \
             for name in files:\n        \
                 path = os.path.join(dirpath, name)\n        \
                 if os.path.islink(path):\n            continue\n        \
                 rel = os.path.relpath(path, arg['root'])\n        \
                 s3.put_object(Bucket='nbs', Key='runs/' + rel, Body=open(path, 'rb').read())\n        \
                 keys.append(rel)\n\
         s3.put_object(Bucket='nbs', Key='runs/empty/', Body=b'')\n\
         s3.put_object(Bucket='nbs', Key='runs-other/secret.txt', Body=arg['secret'].encode())\n\
         s3.put_object(Bucket='nbs', Key='secret.txt', Body=arg['secret'].encode())\n\
         times = {k: s3.head_object(Bucket='nbs', Key='runs/' + k)['LastModified'].isoformat().replace('+00:00', 'Z') for k in keys}\n\
         print(json.dumps(times))",
        &json!({"root": fixture.root, "secret": fixtures::SECRET}),
    );
    let uploaded = uploaded.as_object().expect("key -> LastModified");
    assert!(uploaded.len() >= 10, "{uploaded:?}");

    let s3 = S3Dir::with_config("s3://nbs/runs/", &moto.config()).expect("S3 root");
    let s3 = Server::start(Arc::new(s3));
    let local = Server::start(Arc::new(LocalDir::new(&fixture.root).expect("local root")));

    // Every file: the same model (content included, hashed), the same raw bytes and type.
    for (rel, s3_time) in uploaded {
        let target = format!("/api/contents/{}?content=1&hash=1", url_path(rel));
        let (status, mut from_s3) = s3.json(&target);
        let (local_status, mut from_disk) = local.json(&target);
        assert_eq!(status, local_status, "{target}: {from_s3}");
        let (mut s3_times, mut disk_times) = (Vec::new(), Vec::new());
        split_times(&mut from_s3, &mut s3_times);
        split_times(&mut from_disk, &mut disk_times);
        assert_eq!(from_s3, from_disk, "{target}");
        if status == 200 {
            assert_eq!(s3_times[0].1, *s3_time, "{rel}: last_modified");
            assert_eq!(s3_times[0].2, *s3_time, "{rel}: created");
        } else {
            // Hidden files (.hidden.ipynb, __pycache__/…) are not served from either root.
            assert_eq!(status, 404, "{target}");
        }
        let raw = format!("/files/{}", url_path(rel));
        assert_eq!(s3.get(&raw), local.get(&raw), "{raw}");
    }

    // Directories: the same listings (a directory's times are the epoch in S3).
    for dir in ["", "sub%20dir", "empty"] {
        let target = format!("/api/contents/{dir}");
        let (status, mut from_s3) = s3.json(&target);
        assert_eq!(status, 200, "{target}: {from_s3}");
        let (_, mut from_disk) = local.json(&target);
        // The local root also lists link-inside.txt, a symlink S3 has no counterpart of.
        if let Some(Value::Array(children)) = from_disk.get_mut("content") {
            children.retain(|c| c["name"] != "link-inside.txt");
        }
        let (mut s3_times, mut disk_times) = (Vec::new(), Vec::new());
        split_times(&mut from_s3, &mut s3_times);
        split_times(&mut from_disk, &mut disk_times);
        assert_eq!(from_s3, from_disk, "{target}");
        assert_eq!(s3_times[0].1, json!("1970-01-01T00:00:00Z"));
        for (path, modified, _) in &s3_times[1..] {
            if let Some(expected) = uploaded.get(path) {
                assert_eq!(modified, expected, "{path} in the listing of {target}");
            }
        }
    }
    assert_eq!(
        s3.get("/view/plain.ipynb"),
        local.get("/view/plain.ipynb"),
        "the rendered notebook page"
    );

    // Missing keys: 404 with a JSON error, as on disk.
    for target in [
        "/api/contents/missing.ipynb",
        "/api/contents/sub%20dir/missing",
        "/files/missing.txt",
        "/api/contents/runs",
    ] {
        let (status, body) = s3.json(target);
        assert_eq!(status, 404, "{target}: {body}");
        assert!(body["error"].as_str().is_some_and(|e| !e.is_empty()));
    }
    // A file is not a directory.
    assert_eq!(s3.json("/api/contents/notes.txt?type=directory").0, 400);

    // Nothing outside the prefix: `..` in every spelling is refused, other spellings stay
    // inside runs/.
    for target in [
        "/files/../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/..%2fsecret.txt",
        "/files/..%2F..%2Fsecret.txt",
        "/api/contents/../runs-other/secret.txt",
        "/api/contents/%2E%2E/runs-other/secret.txt",
        "/api/contents/..%5cruns-other%5csecret.txt",
        "/files//secret.txt",
        "/files/%2fsecret.txt",
        "/view/../secret.txt",
        "/files/-other/secret.txt",
    ] {
        let (status, _, body) = s3.get(target);
        assert!(
            (400..=404).contains(&status),
            "{target}: {status} {}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            !String::from_utf8_lossy(&body).contains(fixtures::SECRET),
            "{target} leaked the secret"
        );
    }
}

#[test]
fn a_missing_bucket_is_a_clear_error() {
    let moto = Moto::start();
    let s3 = S3Dir::with_config("s3://no-such-bucket/runs", &moto.config()).expect("S3 root");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let error = runtime
        .block_on(s3.stat(&mofang_notebook_browser::RelPath::root()))
        .expect_err("no bucket");
    assert_eq!(error.status(), 404);
    assert_eq!(
        error.to_string(),
        "s3://no-such-bucket/runs: no such bucket `no-such-bucket` (NoSuchBucket)"
    );
}
