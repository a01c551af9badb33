//! `mofang run` end to end: papermill's flags and exit codes, checked against papermill's own
//! command line from the project's .venv.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

/// `mofang run ARGS` with the venv as the active environment (its ipykernel kernelspec).
fn mofang(args: &[&str], dir: &Path, stdin: Option<&[u8]>) -> Output {
    let venv = python()
        .parent()
        .and_then(Path::parent)
        .expect("<venv>/bin/python")
        .to_path_buf();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mofang"))
        .arg("run")
        .args(args)
        .current_dir(dir)
        .env("VIRTUAL_ENV", &venv)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mofang starts");
    if let Some(bytes) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(bytes).expect("write stdin");
    }
    child.wait_with_output().expect("mofang runs")
}

fn notebook(cells: &[(&str, &[&str])]) -> Value {
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
}

fn write(dir: &Path, name: &str, nb: &Value) {
    std::fs::write(dir.join(name), nb.to_string()).expect("write notebook");
}

fn read(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("notebook written")).expect("JSON")
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
        _ => String::new(),
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn parameter_flags_and_precedence_match_papermill() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        dir.path(),
        "in.ipynb",
        &notebook(&[("a = 0", &["parameters"])]),
    );
    std::fs::write(
        dir.path().join("p.yaml"),
        "f: from_file\nb64: file\nz: [1, 2]\n",
    )
    .expect("yaml");
    let b64 = "YjY0OiBiYXNlNjQKeTogYmFzZTY0Cg=="; // "b64: base64\ny: base64\n"
    let flags = [
        "-p",
        "a",
        "-1.5e3",
        "-r",
        "raw",
        "007",
        "-p",
        "raw",
        "1",
        "-y",
        "y: yaml\nn: null",
        "-f",
        "p.yaml",
        "-b",
        b64,
        "-p",
        "t",
        "True",
        "-p",
        "s",
        "some text",
        "-p",
        "i",
        "1_000",
        "--report-mode",
        "--inject-input-path",
        "--prepare-only",
    ];
    let mut ours_args = vec!["in.ipynb", "ours.ipynb"];
    ours_args.extend(flags);
    let out = mofang(&ours_args, dir.path(), None);
    assert!(out.status.success(), "{}", stderr(&out));
    let pm = Command::new(python())
        .args(["-m", "papermill", "in.ipynb", "theirs.ipynb"])
        .args(flags)
        .current_dir(dir.path())
        .output()
        .expect("papermill runs");
    assert!(pm.status.success(), "{}", stderr(&pm));
    let ours = read(&dir.path().join("ours.ipynb"));
    let theirs = read(&dir.path().join("theirs.ipynb"));
    assert_eq!(
        text(&ours["cells"][1]["source"]),
        text(&theirs["cells"][1]["source"])
    );
    assert_eq!(
        ours["metadata"]["papermill"]["parameters"],
        theirs["metadata"]["papermill"]["parameters"]
    );
    assert_eq!(ours["cells"][1]["metadata"], theirs["cells"][1]["metadata"]);
}

#[test]
fn exit_codes_and_records_for_success_error_and_dead_kernel() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "ok.ipynb", &notebook(&[("print('hi')", &[])]));
    let out = mofang(
        &["ok.ipynb", "ok-out.ipynb", "--no-progress-bar"],
        dir.path(),
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let nb = read(&dir.path().join("ok-out.ipynb"));
    assert_eq!(text(&nb["cells"][0]["outputs"][0]["text"]), "hi\n");

    write(
        dir.path(),
        "err.ipynb",
        &notebook(&[("x = 1", &[]), ("raise ValueError('boom')", &[])]),
    );
    let out = mofang(&["err.ipynb", "err-out.ipynb"], dir.path(), None);
    assert_eq!(out.status.code(), Some(1));
    let msg = stderr(&out);
    assert!(msg.contains("ValueError: boom"), "{msg}");
    let nb = read(&dir.path().join("err-out.ipynb"));
    assert_eq!(
        nb["cells"][0]["metadata"]["tags"],
        json!(["papermill-error-cell-tag"])
    );

    write(
        dir.path(),
        "dead.ipynb",
        &notebook(&[("import os\nos._exit(1)", &[])]),
    );
    let out = mofang(&["dead.ipynb", "dead-out.ipynb"], dir.path(), None);
    assert_eq!(out.status.code(), Some(138), "{}", stderr(&out));
    assert!(stderr(&out).contains("kernel died"), "{}", stderr(&out));
}

#[test]
fn stdin_to_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nb = notebook(&[("n = 0", &["parameters"]), ("print(n * 2)", &[])]);
    let out = mofang(
        &["-", "-", "-p", "n", "21"],
        dir.path(),
        Some(nb.to_string().as_bytes()),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let result: Value = serde_json::from_slice(&out.stdout).expect("notebook on stdout");
    assert_eq!(text(&result["cells"][2]["outputs"][0]["text"]), "42\n");
    assert_eq!(result["metadata"]["papermill"]["input_path"], "-");
    assert_eq!(result["metadata"]["papermill"]["output_path"], "-");
}

#[test]
fn bad_input_is_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("broken.ipynb"), "{ not json").expect("write");
    write(dir.path(), "ok.ipynb", &notebook(&[("1", &[])]));
    for (args, expected) in [
        (vec!["broken.ipynb", "out.ipynb"], "not valid JSON"),
        (vec!["missing.ipynb", "out.ipynb"], "missing.ipynb"),
        (
            vec!["ok.ipynb", "out.ipynb", "-k", "nope"],
            "no such kernel: `nope`; available:",
        ),
        (
            vec!["ok.ipynb", "out.ipynb", "-b", "%%%"],
            "not valid base64",
        ),
        (
            vec!["ok.ipynb", "out.ipynb", "-y", "a: ["],
            "not valid YAML",
        ),
        (
            vec!["ok.ipynb", "out.ipynb", "-f", "nofile.yaml"],
            "nofile.yaml",
        ),
    ] {
        let out = mofang(&args, dir.path(), None);
        let msg = stderr(&out);
        assert!(!out.status.success(), "{args:?}");
        assert!(msg.contains(expected), "{args:?}: {msg}");
        assert_eq!(
            msg.trim_end()
                .lines()
                .filter(|l| l.starts_with("mofang:"))
                .count(),
            1,
            "{msg}"
        );
        assert!(!dir.path().join("out.ipynb").exists(), "{args:?}");
    }
}
