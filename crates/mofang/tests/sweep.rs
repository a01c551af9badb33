//! `mofang run --grid` end to end on the venv's ipykernel: the runs' notebooks and papermill
//! records, the summary files checked against scrapbook's own reader, failures, `--resume`,
//! concurrency with `-j`, Ctrl-C, and one-line errors for bad grids.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
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

/// `mofang run ARGS` in `dir` with the venv as the active environment (its python3 kernel).
fn command(args: &[&str], dir: &Path) -> Command {
    let venv = python()
        .parent()
        .and_then(Path::parent)
        .expect("<venv>/bin/python")
        .to_path_buf();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mofang"));
    cmd.arg("run")
        .args(args)
        .current_dir(dir)
        .env("VIRTUAL_ENV", &venv)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn mofang(args: &[&str], dir: &Path) -> Output {
    command(args, dir).output().expect("mofang runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
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

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write file");
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("file written")).expect("JSON")
}

fn stream_text(cell: &Value) -> String {
    cell["outputs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| o["output_type"] == "stream")
        .map(|o| match &o["text"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(Value::as_str).collect(),
            _ => String::new(),
        })
        .collect()
}

#[test]
fn cartesian_grid_runs_every_point_with_summary_matching_scrapbook() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nb = notebook(&[
        ("alpha = 0.0\nname = 'none'\nextra = 0", &["parameters"]),
        (
            // Half the runs glue (scrapbook's import is slow), the others leave empty cells.
            "if alpha > 0.2:\n    import scrapbook as sb\n    sb.glue('accuracy', alpha * 2 + extra)\n    sb.glue('label', f'{name}-{alpha}')\nprint(name, alpha, extra)",
            &[],
        ),
    ]);
    write(&dir.path().join("train.ipynb"), &nb.to_string());
    write(
        &dir.path().join("grid.yaml"),
        "alpha: [0.1, 0.25]\nname: [a, b]\n",
    );
    let out = mofang(
        &[
            "train.ipynb",
            "--grid",
            "grid.yaml",
            "-j",
            "2",
            "-p",
            "extra",
            "7",
            "-p",
            "name",
            "overridden",
            "sweep",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Keys in file order, the last one fastest; -p values under every point, the grid wins.
    let mut expected = Vec::new();
    for alpha in [0.1, 0.25] {
        for name in ["a", "b"] {
            expected.push((alpha, name));
        }
    }
    let summary = read_json(&dir.path().join("sweep/summary.json"));
    let runs = summary["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), expected.len());
    assert_eq!(summary["completed"], 4);
    for (i, (alpha, name)) in expected.iter().enumerate() {
        let path = format!("sweep/train-{i:03}.ipynb");
        let nb = read_json(&dir.path().join(&path));
        let params = json!({"extra": 7, "name": name, "alpha": alpha});
        assert_eq!(nb["metadata"]["papermill"]["parameters"], params, "{path}");
        assert_eq!(nb["metadata"]["papermill"]["exception"], Value::Null);
        assert_eq!(stream_text(&nb["cells"][2]), format!("{name} {alpha} 7\n"));
        let run = &runs[i];
        assert_eq!(run["index"], i);
        assert_eq!(run["output"], path);
        assert_eq!(run["parameters"], params);
        assert_eq!(run["status"], "completed");
        assert_eq!(run["error"], Value::Null);
        assert!(run["duration_seconds"].as_f64().is_some_and(|d| d > 0.0));
    }

    // scrapbook's reader on our notebooks gives the summary's scraps; the CSV agrees.
    let check = r#"
import csv, json, sys
import scrapbook as sb
summary = json.load(open("sweep/summary.json"))
rows = list(csv.DictReader(open("sweep/summary.csv", newline="")))
assert len(rows) == len(summary["runs"]), rows
for run, row in zip(summary["runs"], rows):
    scraps = {name: scrap.data for name, scrap in sb.read_notebook(run["output"]).scraps.items()}
    assert scraps == run["scraps"], (scraps, run["scraps"])
    glued = run["parameters"]["alpha"] > 0.2
    assert set(scraps) == ({"accuracy", "label"} if glued else set()), scraps
    assert row["index"] == str(run["index"]) and row["output"] == run["output"], row
    assert row["status"] == "completed" and row["error"] == "", row
    if glued:
        assert float(row["scrap.accuracy"]) == scraps["accuracy"], row
        assert row["scrap.label"] == scraps["label"], row
    else:
        assert row["scrap.accuracy"] == row["scrap.label"] == "", row
    assert row["param.name"] == run["parameters"]["name"], row
    assert float(row["param.alpha"]) == run["parameters"]["alpha"], row
    assert abs(float(row["duration_seconds"]) - run["duration_seconds"]) < 0.001, row
print("ok")
"#;
    let py = Command::new(python())
        .args(["-c", check])
        .current_dir(dir.path())
        .output()
        .expect("python runs");
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "ok",
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
}

#[test]
fn a_failing_point_fails_alone_and_resume_reruns_only_what_did_not_complete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nb = notebook(&[
        ("n = 0", &["parameters"]),
        (
            "with open(f'count-{n}', 'a') as f:\n    f.write('x')\nif n == 2:\n    raise ValueError(f'bad n {n}')",
            &[],
        ),
    ]);
    write(&dir.path().join("nb.ipynb"), &nb.to_string());
    write(
        &dir.path().join("grid.json"),
        r#"[{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]"#,
    );
    let args = ["nb.ipynb", "out", "--grid", "grid.json", "-j", "2"];
    let out = mofang(&args, dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 of 4 runs failed (first: run 1: ValueError: bad n 2)"),
        "{}",
        stderr(&out)
    );
    let summary = read_json(&dir.path().join("out/summary.json"));
    let statuses: Vec<&str> = summary["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["status"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(statuses, ["completed", "failed", "completed", "completed"]);
    assert_eq!(summary["runs"][1]["error"], "ValueError: bad n 2");
    let failed = read_json(&dir.path().join("out/nb-001.ipynb"));
    assert_eq!(failed["metadata"]["papermill"]["exception"], true);
    let counts = || -> Vec<usize> {
        (1..=4)
            .map(|n| {
                std::fs::read_to_string(dir.path().join(format!("count-{n}")))
                    .map_or(0, |s| s.len())
            })
            .collect()
    };
    assert_eq!(counts(), [1, 1, 1, 1]);

    // Run 0 looks interrupted (no end time), run 2's notebook is gone, run 3 completed.
    let partial = dir.path().join("out/nb-000.ipynb");
    let mut nb0 = read_json(&partial);
    nb0["metadata"]["papermill"]["end_time"] = Value::Null;
    write(&partial, &nb0.to_string());
    std::fs::remove_file(dir.path().join("out/nb-002.ipynb")).expect("remove");
    let mut resume_args = args.to_vec();
    resume_args.push("--resume");
    let out = mofang(&resume_args, dir.path());
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(counts(), [2, 2, 2, 1]);
    let summary = read_json(&dir.path().join("out/summary.json"));
    let resumed: Vec<bool> = summary["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| r["resumed"] == true)
        .collect();
    assert_eq!(resumed, [false, false, false, true]);
    assert_eq!(summary["runs"][3]["status"], "completed");
    assert_eq!(summary["failed"], 1);

    // A changed grid point is not "the same run": its notebook is run again.
    write(
        &dir.path().join("grid.json"),
        r#"[{"n": 1}, {"n": 5}, {"n": 3}, {"n": 4}]"#,
    );
    let out = mofang(&resume_args, dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("4 runs completed (3 resumed)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(counts(), [2, 2, 2, 1]);
    assert!(dir.path().join("count-5").is_file());
}

/// Two runs that each wait for the other's marker file: only concurrent runs both complete.
#[test]
fn jobs_run_concurrently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nb = notebook(&[
        ("me = ''\nother = ''\nwait = 0", &["parameters"]),
        (
            "import pathlib, time\npathlib.Path(me).touch()\ndeadline = time.time() + wait\nwhile not pathlib.Path(other).exists():\n    if time.time() > deadline:\n        raise TimeoutError(f'{other} never appeared')\n    time.sleep(0.02)",
            &[],
        ),
    ]);
    write(&dir.path().join("pair.ipynb"), &nb.to_string());
    write(
        &dir.path().join("grid.yaml"),
        "- {me: a, other: b}\n- {me: b, other: a}\n",
    );
    let out = mofang(
        &[
            "pair.ipynb",
            "par",
            "--grid",
            "grid.yaml",
            "-j",
            "2",
            "-p",
            "wait",
            "20",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // One at a time, the first run waits in vain.
    for marker in ["a", "b"] {
        std::fs::remove_file(dir.path().join(marker)).expect("marker written");
    }
    let out = mofang(
        &[
            "pair.ipynb",
            "seq",
            "--grid",
            "grid.yaml",
            "-j",
            "1",
            "-p",
            "wait",
            "1",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("TimeoutError: b never appeared"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn ctrl_c_interrupts_running_kernels_and_writes_the_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nb = notebook(&[
        ("x = 0", &["parameters"]),
        ("import time\ntime.sleep(120)", &[]),
    ]);
    write(&dir.path().join("slow.ipynb"), &nb.to_string());
    write(&dir.path().join("grid.yaml"), "x: [1, 2, 3, 4]\n");
    let child = command(
        &[
            "slow.ipynb",
            "out",
            "--grid",
            "grid.yaml",
            "-j",
            "2",
            "--no-progress-bar",
        ],
        dir.path(),
    )
    .spawn()
    .expect("mofang starts");
    // Wait until the first run's sleeping cell is running.
    let first = dir.path().join("out/slow-000.ipynb");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let running = std::fs::read(&first)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|nb| nb["cells"][2]["metadata"]["papermill"]["status"] == "running");
        if running {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the first run never started its cell"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(kill.success());
    let out = child.wait_with_output().expect("mofang exits");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let summary = read_json(&dir.path().join("out/summary.json"));
    assert_eq!(summary["completed"], 0);
    assert_eq!(summary["cancelled"], 4);
    assert_eq!(summary["runs"][0]["status"], "cancelled");
    // The interrupted run's notebook records the KeyboardInterrupt.
    let nb = read_json(&first);
    assert_eq!(nb["metadata"]["papermill"]["exception"], true);
    let enames: Vec<&str> = nb["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .flat_map(|c| c["outputs"].as_array().into_iter().flatten())
        .filter_map(|o| o["ename"].as_str())
        .collect();
    assert!(enames.contains(&"KeyboardInterrupt"), "{enames:?}");
}

#[test]
fn bad_grids_and_flags_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(
        &dir.path().join("nb.ipynb"),
        &notebook(&[("a = 1", &["parameters"])]).to_string(),
    );
    for (name, text) in [
        ("broken.yaml", "a: [1, 2"),
        ("scalar.yaml", "a: [1, 2]\nb: 3\n"),
        ("empty.yaml", "a: []\n"),
        ("items.json", "[{\"a\": 1}, 2]"),
    ] {
        write(&dir.path().join(name), text);
    }
    for (args, expected) in [
        (
            vec!["nb.ipynb", "out", "--grid", "broken.yaml"],
            "--grid broken.yaml: not valid YAML",
        ),
        (
            vec!["nb.ipynb", "out", "--grid", "scalar.yaml"],
            "--grid scalar.yaml: `b`: expected a list of values, got a number",
        ),
        (
            vec!["nb.ipynb", "out", "--grid", "empty.yaml"],
            "`a`: the list of values is empty",
        ),
        (
            vec!["nb.ipynb", "out", "--grid", "items.json"],
            "items.json: item 2: expected a map of parameter names to values, got a number",
        ),
        (
            vec!["nb.ipynb", "out", "--grid", "missing.yaml"],
            "--grid missing.yaml: No such file",
        ),
        (
            vec!["nb.ipynb", "out", "--grid", "scalar.yaml", "-j", "0"],
            "-j/--jobs: must be at least 1",
        ),
        (
            vec!["nb.ipynb", "out.ipynb", "--resume"],
            "--resume and -j/--jobs need --grid FILE",
        ),
        (
            vec!["nb.ipynb", "-", "--grid", "empty.yaml"],
            "the output must be a local directory, not -",
        ),
        (
            vec!["nb.ipynb", "out", "--grid", "items.json", "-k", "nope"],
            "items.json: item 2",
        ),
    ] {
        let out = mofang(&args, dir.path());
        let msg = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {msg}");
        assert!(msg.contains(expected), "{args:?}: {msg}");
        assert_eq!(
            msg.trim_end()
                .lines()
                .filter(|l| l.starts_with("mofang:"))
                .count(),
            1,
            "{msg}"
        );
        assert!(!dir.path().join("out").exists(), "{args:?}");
    }
    write(&dir.path().join("ok.yaml"), "a: [1]\n");
    let out = mofang(
        &["nb.ipynb", "out", "--grid", "ok.yaml", "-k", "nope"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no such kernel: `nope`"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("out").exists());
    let out = mofang(
        &["missing.ipynb", "out", "--grid", "ok.yaml", "-k", "python3"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("missing.ipynb: No such file"),
        "{}",
        stderr(&out)
    );
    assert!(!dir.path().join("out").exists());
}
