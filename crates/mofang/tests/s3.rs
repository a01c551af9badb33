//! `mofang run` and `mofang notebooks serve` on `s3://` locations, against moto's S3 server
//! (scripts/requirements-s3.txt): every test starts its own `moto_server` on a free port, makes
//! its bucket and objects with boto3, points mofang at it through the usual AWS variables and
//! reads the results back with boto3, papermill and nbformat.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn python() -> PathBuf {
    let p = std::env::var_os("MOFANG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(p.is_file(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// Python: `versions(bucket, key)`, every version of an object (each PUT makes one in a
/// versioned bucket), oldest first (S3 lists them newest first), parsed as JSON.
const VERSIONS_PY: &str = "def versions(bucket, key):\n    \
    r = s3.list_object_versions(Bucket=bucket, Prefix=key)\n    \
    vs = [v for v in r.get('Versions', []) if v['Key'] == key][::-1]\n    \
    assert not vs or vs[-1]['IsLatest'], 'versions are listed newest first'\n    \
    return [json.loads(s3.get_object(Bucket=bucket, Key=key, VersionId=v['VersionId'])['Body'].read()) for v in vs]\n";

/// A moto S3 server on 127.0.0.1, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        Moto::start_with(&[])
    }

    /// With extra environment for moto (e.g. `INITIAL_NO_AUTH_ACTION_COUNT`).
    fn start_with(env: &[(&str, &str)]) -> Moto {
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
            .envs(env.iter().copied())
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

    /// The usual AWS variables, pointing at this server (and nothing from the caller's).
    fn env(&self, cmd: &mut Command) {
        for name in ["AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"] {
            cmd.env_remove(name);
        }
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1");
    }

    /// Runs a Python script (boto3 as `s3`, `json`, `sys` imported) with `input` as JSON on stdin;
    /// returns its stdout parsed as JSON.
    fn python(&self, script: &str, input: &Value) -> Value {
        let prelude =
            "import json, sys, boto3\ns3 = boto3.client('s3')\narg = json.load(sys.stdin)\n";
        let mut cmd = Command::new(python());
        cmd.arg("-c").arg(format!("{prelude}{script}"));
        self.env(&mut cmd);
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
            .write_all(input.to_string().as_bytes())
            .expect("write stdin");
        let out = child.wait_with_output().expect("python runs");
        assert!(
            out.status.success(),
            "python failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "python printed no JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// Creates `bucket` (with versioning, so every PUT stays visible) holding `objects`.
    fn bucket(&self, bucket: &str, objects: &[(&str, String)]) {
        let objects: serde_json::Map<String, Value> = objects
            .iter()
            .map(|(k, v)| ((*k).to_owned(), json!(v)))
            .collect();
        self.python(
            "s3.create_bucket(Bucket=arg['bucket'])\n\
             s3.put_bucket_versioning(Bucket=arg['bucket'], VersioningConfiguration={'Status': 'Enabled'})\n\
             for key, body in arg['objects'].items():\n    s3.put_object(Bucket=arg['bucket'], Key=key, Body=body.encode())\n\
             print('null')",
            &json!({"bucket": bucket, "objects": objects}),
        );
    }

    /// The keys in `bucket`.
    fn keys(&self, bucket: &str) -> Vec<String> {
        let keys = self.python(
            "r = s3.list_objects_v2(Bucket=arg['bucket'])\n\
             print(json.dumps([o['Key'] for o in r.get('Contents', [])]))",
            &json!({"bucket": bucket}),
        );
        serde_json::from_value(keys).expect("a list of keys")
    }

    /// Every version of `key`, oldest first, parsed as JSON.
    fn versions(&self, bucket: &str, key: &str) -> Vec<Value> {
        let bodies = self.python(
            &format!("{VERSIONS_PY}print(json.dumps(versions(arg['bucket'], arg['key'])))"),
            &json!({"bucket": bucket, "key": key}),
        );
        serde_json::from_value(bodies).expect("a list of notebooks")
    }

    /// `mofang ARGS` with this server's AWS variables and the venv's kernel.
    fn mofang(&self, args: &[&str]) -> Output {
        let venv = python()
            .parent()
            .and_then(Path::parent)
            .expect("<venv>/bin/python")
            .to_path_buf();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mofang"));
        cmd.args(args)
            .env("VIRTUAL_ENV", &venv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        self.env(&mut cmd);
        cmd.output().expect("mofang runs")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn notebook(cells: &[(&str, &[&str])]) -> String {
    let cells: Vec<Value> = cells
        .iter()
        .enumerate()
        .map(|(i, (source, tags))| {
            json!({"id": format!("c{i}"), "cell_type": "code", "metadata": {"tags": tags},
                   "execution_count": null, "source": source, "outputs": []})
        })
        .collect();
    json!({"cells": cells, "nbformat": 4, "nbformat_minor": 5, "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}}})
    .to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The last non-empty line of stderr (after the log lines of a run).
fn last_line(out: &Output) -> String {
    stderr(out)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_owned()
}

/// A cell's source, joined when stored as a list of lines.
fn source(cell: &Value) -> String {
    match &cell["source"] {
        Value::String(s) => s.clone(),
        Value::Array(lines) => lines.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

/// A cell's stdout stream text (mofang coalesces consecutive stream outputs, papermill does not).
fn stdout_text(cell: &Value) -> String {
    cell["outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["output_type"] == "stream" && o["name"] == "stdout")
        .map(|o| match &o["text"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
            _ => String::new(),
        })
        .collect()
}

fn cell_status(nb: &Value, index: usize) -> &str {
    nb["cells"][index]["metadata"]["papermill"]["status"]
        .as_str()
        .unwrap_or("")
}

/// Input, output and a `-f` parameters file on S3 (the output path formatted with a parameter);
/// the output matches papermill's own run of the same command on the same server, read back
/// with papermill's S3 reader and checked by nbformat; it was saved as the run went, at most
/// about once a second.
#[test]
fn run_reads_and_writes_s3_like_papermill() {
    let moto = Moto::start();
    let loop_cell =
        "import time\nfor i in range(40):\n    print(i, flush=True)\n    time.sleep(0.05)";
    moto.bucket(
        "nbs",
        &[
            (
                "in.ipynb",
                notebook(&[
                    ("x = 1\nname = 'default'", &["parameters"]),
                    ("print(x * 2, name)", &[]),
                    (loop_cell, &[]),
                ]),
            ),
            ("params.yaml", "name: from_s3\nratio: 0.5\n".to_owned()),
        ],
    );
    let started = Instant::now();
    let out = moto.mofang(&[
        "run",
        "s3://nbs/in.ipynb",
        "s3://nbs/out/{name}.ipynb",
        "-f",
        "s3://nbs/params.yaml",
        "-p",
        "x",
        "21",
        "--no-progress-bar",
    ]);
    let elapsed = started.elapsed();
    assert!(out.status.success(), "mofang run failed:\n{}", stderr(&out));

    // Read back with papermill's S3 handler and checked by nbformat; the expected notebook is
    // papermill's own parameterisation of the input with the same parameters (read from S3 by
    // papermill), without a kernel (papermill's full run would take most of the time budget).
    let both = moto.python(
        &format!("{VERSIONS_PY}import contextlib, nbformat\n\
         from papermill.iorw import load_notebook_node, read_yaml_file\n\
         from papermill.parameterize import parameterize_notebook, parameterize_path\n\
         with contextlib.redirect_stdout(sys.stderr):\n    \
             ours = load_notebook_node('s3://nbs/out/from_s3.ipynb')\n    \
             nbformat.validate(ours)\n    \
             params = dict(read_yaml_file('s3://nbs/params.yaml'))\n    \
             params['x'] = 21\n    \
             expected = parameterize_notebook(load_notebook_node('s3://nbs/in.ipynb'), params)\n    \
             path = parameterize_path('s3://nbs/out/{{name}}.ipynb', params)\n\
         print(json.dumps({{'ours': json.loads(nbformat.writes(ours)), 'expected': json.loads(nbformat.writes(expected)), 'path': path, 'versions': versions('nbs', 'out/from_s3.ipynb')}}))"),
        &json!(null),
    );
    let (ours, expected) = (&both["ours"], &both["expected"]);
    let record = &ours["metadata"]["papermill"];
    assert_eq!(
        record["parameters"], expected["metadata"]["papermill"]["parameters"],
        "parameters"
    );
    assert_eq!(record["parameters"]["name"], "from_s3");
    assert_eq!(record["input_path"], "s3://nbs/in.ipynb");
    assert_eq!(record["output_path"], both["path"]);
    assert_eq!(record["exception"], Value::Null);
    let cells = ours["cells"].as_array().expect("cells");
    let expected_cells = expected["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), expected_cells.len());
    for (mine, theirs) in cells.iter().zip(expected_cells) {
        assert_eq!(source(mine), source(theirs), "cell sources");
        assert_eq!(mine["metadata"]["tags"], theirs["metadata"]["tags"]);
        assert_eq!(mine["metadata"]["papermill"]["status"], "completed");
    }
    assert_eq!(stdout_text(&cells[2]), "42 from_s3\n");
    let counted: String = (0..40).map(|i| format!("{i}\n")).collect();
    assert_eq!(stdout_text(&cells[3]), counted);
    assert_eq!(cells[1]["metadata"]["tags"], json!(["injected-parameters"]));

    // Progressive, throttled saves: every PUT is a version of the object.
    let versions = both["versions"].as_array().expect("versions");
    let bound = elapsed.as_secs_f64().ceil() as usize + 3;
    assert!(
        versions.len() >= 3 && versions.len() <= bound,
        "{} PUTs in {elapsed:?} (expected 3..={bound}: at most one a second, plus the first and the last)",
        versions.len()
    );
    let last = versions.last().expect("versions");
    assert_eq!(
        last["metadata"]["papermill"], *record,
        "the last PUT is the final notebook"
    );
    assert!(
        versions.iter().any(|nb| {
            cell_status(nb, 3) == "running" && nb["metadata"]["papermill"]["end_time"].is_null()
        }),
        "no save while the loop cell ran"
    );
}

/// A raising cell: exit 1, a one-line message naming the output URL, and the object holds
/// papermill's failure record (error banner, failed cell, exception flag).
#[test]
fn failing_run_records_the_failure_in_the_s3_output() {
    let moto = Moto::start();
    moto.bucket(
        "nbs",
        &[(
            "fail.ipynb",
            notebook(&[
                ("a = 1", &[]),
                ("raise ValueError('boom')", &[]),
                ("b = 2", &[]),
            ]),
        )],
    );
    let out = moto.mofang(&[
        "run",
        "s3://nbs/fail.ipynb",
        "s3://nbs/failed.ipynb",
        "--no-progress-bar",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = last_line(&out);
    assert!(
        line.contains("ValueError: boom") && line.contains("s3://nbs/failed.ipynb"),
        "{line}"
    );
    let versions = moto.versions("nbs", "failed.ipynb");
    let nb = versions.last().expect("the output object exists");
    assert_eq!(nb["metadata"]["papermill"]["exception"], true);
    assert!(nb["metadata"]["papermill"]["end_time"].is_string());
    let cells = nb["cells"].as_array().expect("cells");
    // papermill's banner cell comes first, then the cells; the raising one failed.
    assert!(
        source(&cells[0]).contains("An Exception was encountered"),
        "{}",
        cells[0]
    );
    let failed: Vec<&Value> = cells
        .iter()
        .filter(|c| c["metadata"]["papermill"]["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["outputs"][0]["ename"], "ValueError");
    assert!(
        cells
            .iter()
            .any(|c| source(c) == "b = 2" && c["metadata"]["papermill"]["status"] == "pending"),
        "the cell after the failure did not run"
    );
}

/// Missing objects and buckets, and a key naming a prefix: a one-line error naming the URL,
/// a non-zero exit, and no output object.
#[test]
fn s3_errors_are_one_line_and_write_nothing() {
    let moto = Moto::start();
    moto.bucket("nbs", &[("in.ipynb", notebook(&[("x = 1", &[])]))]);
    let cases = [
        (
            ["s3://nbs/missing.ipynb", "s3://nbs/out.ipynb"],
            "s3://nbs/missing.ipynb: no such object",
        ),
        (
            ["s3://no-such-bucket/in.ipynb", "s3://nbs/out.ipynb"],
            "s3://no-such-bucket/in.ipynb: no such bucket `no-such-bucket`",
        ),
        (
            ["s3://nbs/in.ipynb", "s3://no-such-bucket/out.ipynb"],
            "s3://no-such-bucket/out.ipynb: no such bucket `no-such-bucket`",
        ),
        (
            ["s3://nbs/in.ipynb", "s3://nbs/runs/"],
            "s3://nbs/runs/: the key must name an object",
        ),
    ];
    for ([input, output], expected) in cases {
        let out = moto.mofang(&["run", input, output, "--no-progress-bar"]);
        assert!(!out.status.success(), "{input} -> {output} succeeded");
        let line = last_line(&out);
        assert!(
            line.starts_with(&format!("mofang: {expected}")),
            "{input} -> {output}: {line}"
        );
        assert!(
            !stderr(&out).contains("Executing notebook with kernel"),
            "{input} -> {output}: a kernel was started:\n{}",
            stderr(&out)
        );
    }
    let out = moto.mofang(&[
        "run",
        "s3://nbs/in.ipynb",
        "s3://nbs/out.ipynb",
        "-f",
        "s3://nbs/no-params.yaml",
    ]);
    assert!(!out.status.success());
    assert!(
        last_line(&out).contains("s3://nbs/no-params.yaml: no such object"),
        "{}",
        stderr(&out)
    );
    assert_eq!(moto.keys("nbs"), vec!["in.ipynb".to_owned()]);
}

/// `mofang notebooks serve s3://bucket/prefix` serves the prefix's objects (contents API, raw
/// files); a missing bucket is a one-line error at start.
#[test]
fn notebooks_serve_an_s3_prefix() {
    let moto = Moto::start();
    let nb = notebook(&[("x = 1", &[])]);
    moto.bucket(
        "nbs",
        &[
            ("runs/a.ipynb", nb.clone()),
            ("runs/sub/b.txt", "hello".to_owned()),
            ("secret.txt", "outside".to_owned()),
        ],
    );
    let out = moto.mofang(&[
        "notebooks",
        "serve",
        "s3://no-such-bucket/runs",
        "--port",
        "0",
    ]);
    assert!(!out.status.success());
    assert_eq!(
        stderr(&out).trim(),
        "mofang: s3://no-such-bucket/runs: no such bucket `no-such-bucket` (NoSuchBucket)"
    );

    let scratch = tempfile::tempdir().expect("tempdir");
    let address_file = scratch.path().join("addr");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mofang"));
    cmd.args([
        "notebooks",
        "serve",
        "s3://nbs/runs",
        "--port",
        "0",
        "--address-file",
    ])
    .arg(&address_file)
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    moto.env(&mut cmd);
    let mut child = cmd.spawn().expect("serve starts");
    let deadline = Instant::now() + Duration::from_secs(15);
    let addr: SocketAddr = loop {
        if let Some(addr) = std::fs::read_to_string(&address_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            break addr;
        }
        assert!(child.try_wait().expect("status").is_none(), "serve exited");
        assert!(Instant::now() < deadline, "no address after 15 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    let get = |target: &str| -> (u16, String) {
        let mut stream = TcpStream::connect(addr).expect("connect");
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("read");
        let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .expect("status");
        (status, body.to_owned())
    };
    let (status, body) = get("/api/contents/");
    assert_eq!(status, 200, "{body}");
    let listing: Value = serde_json::from_str(&body).expect("JSON");
    let mut names: Vec<(String, String)> = listing["content"]
        .as_array()
        .expect("content")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or("").to_owned(),
                m["type"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("a.ipynb".to_owned(), "notebook".to_owned()),
            ("sub".to_owned(), "directory".to_owned())
        ]
    );
    assert_eq!(get("/files/sub/b.txt"), (200, "hello".to_owned()));
    let (status, body) = get("/files/../secret.txt");
    assert!(
        status == 403 && !body.contains("outside"),
        "{status} {body}"
    );
    assert_eq!(get("/api/contents/missing.ipynb").0, 404);
    let _ = child.kill();
    let _ = child.wait();
}

/// Credentials the server refuses: a one-line error naming the URL, the S3 error code and the
/// variables to check, from `mofang run` and `mofang notebooks serve` alike.
#[test]
fn refused_credentials_are_one_line_errors() {
    // moto checks credentials (against its IAM, where `testing` does not exist) once the set-up
    // requests are done: create the bucket, put the notebook.
    let moto = Moto::start_with(&[("INITIAL_NO_AUTH_ACTION_COUNT", "2")]);
    moto.python(
        "s3.create_bucket(Bucket='nbs')\n\
         s3.put_object(Bucket='nbs', Key='in.ipynb', Body=arg.encode())\n\
         print('null')",
        &json!(notebook(&[("x = 1", &[])])),
    );
    let out = moto.mofang(&["run", "s3://nbs/in.ipynb", "s3://nbs/out.ipynb"]);
    assert!(!out.status.success());
    let line = last_line(&out);
    assert!(
        line.starts_with("mofang: s3://nbs/in.ipynb: InvalidAccessKeyId: ")
            && line
                .ends_with("(check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)"),
        "{line}"
    );
    let out = moto.mofang(&["notebooks", "serve", "s3://nbs/runs", "--port", "0"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.starts_with("mofang: s3://nbs/runs: InvalidAccessKeyId: ")
            && err
                .trim()
                .ends_with("(check AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN)"),
        "{err}"
    );
}
