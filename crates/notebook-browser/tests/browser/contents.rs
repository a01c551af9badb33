//! The contents API against jupyter_server's own `FileContentsManager` over the same tree.

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};

use crate::fixtures::HOSTILE_NAME;
use crate::{Server, fixtures};

fn python() -> PathBuf {
    match std::env::var_os("MOFANG_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    }
}

/// jupyter_server's `FileContentsManager(root_dir=root).get(path, **kwargs)` for each case, as
/// JSON (datetimes as jupyter_client's `json_default` writes them), or `{"status": code}`
/// when it raises an HTTP error.
const REFERENCE: &str = r#"
import json, sys, tempfile, os
os.environ["JUPYTER_DATA_DIR"] = tempfile.mkdtemp()
import warnings; warnings.simplefilter("ignore")
from tornado import web
from jupyter_server.services.contents.filemanager import FileContentsManager
from jupyter_client.jsonutil import json_default
root, cases = sys.argv[1], json.loads(sys.argv[2])
cm = FileContentsManager(root_dir=root)
out = []
for path, kwargs in cases:
    try:
        out.append(cm.get(path, **kwargs))
    except web.HTTPError as e:
        out.append({"status": e.status_code})
print(json.dumps(out, default=json_default))
"#;

fn reference(root: &std::path::Path, cases: &[(&str, Value)]) -> Vec<Value> {
    let cases_json =
        serde_json::to_string(&cases.iter().map(|(p, k)| json!([p, k])).collect::<Vec<_>>())
            .expect("json");
    let output = Command::new(python())
        .arg("-c")
        .arg(REFERENCE)
        .arg(root)
        .arg(cases_json)
        .output()
        .expect("the venv's python runs (run scripts/setup.sh; . scripts/env.sh)");
    assert!(
        output.status.success(),
        "jupyter_server reference failed (is scripts/requirements-notebook-browser.txt installed? run scripts/setup.sh): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("reference JSON")
}

/// Our query string for jupyter_server's keyword arguments.
fn query(kwargs: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(t) = kwargs.get("type").and_then(Value::as_str) {
        parts.push(format!("type={t}"));
    }
    if let Some(f) = kwargs.get("format").and_then(Value::as_str) {
        parts.push(format!("format={f}"));
    }
    if kwargs.get("content") == Some(&json!(false)) {
        parts.push("content=0".into());
    }
    if kwargs.get("require_hash") == Some(&json!(true)) {
        parts.push("hash=1".into());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

fn encode(path: &str) -> String {
    path.split('/')
        .map(|s| {
            s.bytes()
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

/// `2026-01-02T03:04:05.123456Z` → (the part up to the seconds, microseconds).
fn split_time(t: &str) -> (String, i64) {
    let t = t
        .strip_suffix('Z')
        .unwrap_or_else(|| panic!("not UTC: {t}"));
    match t.split_once('.') {
        Some((secs, frac)) => (secs.to_owned(), frac.parse().expect("micros")),
        None => (t.to_owned(), 0),
    }
}

/// Symlinks are where we deliberately differ: jupyter_server follows them out of the root and
/// reports `lstat` sizes; we refuse links leaving the root and report the target's size.
const SYMLINKS: [&str; 3] = ["escape.txt", "escape-dir", "link-inside.txt"];

fn assert_same_model(ours: &Value, theirs: &Value, what: &str) {
    let ours_keys: Vec<&String> = ours.as_object().expect("object").keys().collect();
    let theirs_keys: Vec<&String> = theirs.as_object().expect("object").keys().collect();
    let mut a = ours_keys.clone();
    let mut b = theirs_keys.clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "{what}: key sets differ");
    for key in theirs_keys {
        let (o, t) = (&ours[key], &theirs[key]);
        match key.as_str() {
            "writable" => assert_eq!(o, &json!(false), "{what}: we are read-only"),
            "last_modified" | "created" => {
                let (os, om) = split_time(o.as_str().expect("string"));
                let (ts, tm) = split_time(t.as_str().expect("string"));
                assert_eq!(os, ts, "{what}: {key}");
                // Python goes through a float timestamp; a microsecond of rounding is allowed.
                assert!((om - tm).abs() <= 2, "{what}: {key} {o} vs {t}");
            }
            "content" if theirs["type"] == "directory" && t.is_array() => {
                let mut ours_list: Vec<&Value> = o.as_array().expect("list").iter().collect();
                let mut theirs_list: Vec<&Value> = t
                    .as_array()
                    .expect("list")
                    .iter()
                    .filter(|m| !SYMLINKS.contains(&m["name"].as_str().unwrap_or("")))
                    .collect();
                ours_list.retain(|m| !SYMLINKS.contains(&m["name"].as_str().unwrap_or("")));
                ours_list.sort_by_key(|m| m["name"].as_str().unwrap_or("").to_owned());
                theirs_list.sort_by_key(|m| m["name"].as_str().unwrap_or("").to_owned());
                let names = |l: &[&Value]| l.iter().map(|m| m["name"].clone()).collect::<Vec<_>>();
                assert_eq!(names(&ours_list), names(&theirs_list), "{what}: listing");
                for (o, t) in ours_list.iter().zip(&theirs_list) {
                    assert_same_model(o, t, &format!("{what} / {}", t["name"]));
                }
            }
            _ => assert_eq!(o, t, "{what}: `{key}` differs"),
        }
    }
}

#[test]
fn models_match_jupyter_server() {
    let server = Server::start();
    let cases: Vec<(&str, Value)> = vec![
        ("", json!({})),
        ("", json!({"content": false})),
        ("plain.ipynb", json!({})),
        ("plain.ipynb", json!({"require_hash": true})),
        ("failed.ipynb", json!({"content": false})),
        (
            "failed.ipynb",
            json!({"content": false, "require_hash": true}),
        ),
        (HOSTILE_NAME, json!({})),
        ("notes.txt", json!({})),
        ("notes.txt", json!({"format": "base64"})),
        ("notes.txt", json!({"content": false, "require_hash": true})),
        ("blob.bin", json!({})),
        ("blob.bin", json!({"format": "text"})),
        ("image.png", json!({})),
        ("image.png", json!({"content": false})),
        ("data.json", json!({"format": "text"})),
        ("script.py", json!({"content": false})),
        ("sub dir", json!({})),
        ("sub dir/inner.ipynb", json!({"type": "file"})),
        (
            "sub dir/inner.ipynb",
            json!({"type": "notebook", "content": false}),
        ),
        ("notes.txt", json!({"type": "notebook"})),
        ("plain.ipynb", json!({"type": "directory"})),
        ("sub dir", json!({"type": "notebook"})),
        ("sub dir", json!({"type": "file"})),
        ("missing.ipynb", json!({})),
        (".hidden.ipynb", json!({})),
    ];
    let theirs = reference(&server.fixture.root, &cases);
    assert_eq!(theirs.len(), cases.len());
    for ((path, kwargs), theirs) in cases.iter().zip(&theirs) {
        let target = format!("/api/contents/{}{}", encode(path), query(kwargs));
        let reply = server.get(&target);
        let what = format!("GET {target}");
        if let Some(status) = theirs.get("status") {
            assert_eq!(
                Some(u64::from(reply.status)),
                status.as_u64(),
                "{what}: {}",
                reply.text()
            );
            assert!(!reply.error().is_empty(), "{what}");
            continue;
        }
        assert_eq!(reply.status, 200, "{what}: {}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_same_model(&reply.json(), theirs, &what);
    }
}

#[test]
fn symlinks_inside_are_followed_and_outside_are_unlisted() {
    let server = Server::start();
    let root = server.get("/api/contents/").json();
    let names: Vec<&str> = root["content"]
        .as_array()
        .expect("listing")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert!(names.contains(&"link-inside.txt"), "{names:?}");
    assert!(
        !names.contains(&"escape.txt") && !names.contains(&"escape-dir"),
        "{names:?}"
    );
    assert!(
        !names.contains(&".hidden.ipynb") && !names.contains(&"__pycache__"),
        "{names:?}"
    );
    let link = server.get("/api/contents/link-inside.txt").json();
    let target = std::fs::read_to_string(server.fixture.root.join("notes.txt")).expect("read");
    assert_eq!(link["content"], json!(target));
    assert_eq!(link["size"], json!(target.len()));
}

#[test]
fn parameters_are_validated_like_jupyter_server() {
    let server = Server::start();
    for (target, status) in [
        ("/api/contents/notes.txt?format=json", 400),
        ("/api/contents/notes.txt?content=2", 400),
        ("/api/contents/notes.txt?hash=yes", 400),
        ("/api/contents/notes.txt?format=%zz", 400),
    ] {
        let reply = server.get(target);
        assert_eq!(reply.status, status, "{target}: {}", reply.text());
        assert!(!reply.error().is_empty());
    }
    // An unknown type falls back to `file`, as jupyter_server does.
    let reply = server.get("/api/contents/plain.ipynb?type=spreadsheet");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["type"], "file");
}

#[test]
fn notebook_content_is_normalised_like_nbformat() {
    let server = Server::start();
    let model = server.get("/api/contents/plain.ipynb").json();
    let cells = model["content"]["cells"].as_array().expect("cells");
    // Multi-line lists are joined; code cells are marked untrusted.
    assert_eq!(
        cells[1]["source"],
        "import math\nprint('hello', math.pi)  # comment"
    );
    assert_eq!(cells[1]["outputs"][0]["text"], "hello 3.141592653589793\n");
    assert_eq!(cells[1]["metadata"]["trusted"], false);
    assert!(cells[0]["metadata"].get("trusted").is_none());
    // JSON mimetypes stay structured.
    assert_eq!(
        cells[3]["outputs"][2]["data"]["application/json"],
        json!({"key": [1, 2]})
    );
}

#[test]
fn writes_are_refused_with_405() {
    let server = Server::start();
    for method in ["PUT", "POST", "PATCH", "DELETE"] {
        for target in [
            "/api/contents/notes.txt",
            "/api/contents/new.ipynb",
            "/files/notes.txt",
            "/view/notes.txt",
        ] {
            let reply = server.request(method, target);
            assert_eq!(reply.status, 405, "{method} {target}: {}", reply.text());
            assert_eq!(reply.header("allow"), Some("GET, HEAD"));
            assert!(reply.error().contains("read-only"), "{}", reply.text());
        }
    }
    // Nothing was written.
    assert!(!server.fixture.root.join("new.ipynb").exists());
    let notes = std::fs::read_to_string(server.fixture.root.join("notes.txt")).expect("read");
    assert!(notes.starts_with("hello"));
}

#[test]
fn raw_files_have_their_content_type() {
    let server = Server::start();
    for (path, content_type) in [
        ("notes.txt", "text/plain; charset=utf-8"),
        ("data.json", "application/json; charset=utf-8"),
        ("image.png", "image/png"),
        ("blob.bin", "application/octet-stream"),
        ("plain.ipynb", "application/x-ipynb+json"),
        ("script.py", "text/x-python; charset=utf-8"),
    ] {
        let reply = server.get(&format!("/files/{path}"));
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        assert!(
            reply
                .header("content-security-policy")
                .is_some_and(|c| c.starts_with("sandbox"))
        );
        let on_disk = std::fs::read(server.fixture.root.join(path)).expect("read");
        assert_eq!(reply.body, on_disk, "{path}");
    }
    let reply = server.get("/files/image.png?download=1");
    assert_eq!(
        reply.header("content-disposition"),
        Some("attachment; filename=\"image.png\"; filename*=UTF-8''image.png")
    );
    assert_eq!(reply.body, fixtures::base64_decode(fixtures::PNG_BASE64));
    assert_eq!(server.get("/files/missing.txt").status, 404);
    assert_eq!(server.get("/files/sub%20dir").status, 400);
    assert_eq!(server.get("/files/.hidden.ipynb").status, 404);
    assert_eq!(server.get("/nothing/here").status, 404);
}
