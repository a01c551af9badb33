//! Real ipykernel runs of small notebooks made here, checked against nbformat's validator,
//! papermill's own output and scrapbook's reader (all from the project's .venv, see
//! scripts/requirements-notebooks.txt).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mofang_notebook::{Input, Outcome, Output, Params, Quiet, RunOptions, Value, run_notebook};
use serde_json::{Value as Json, json};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The venv's python (scripts/env.sh's MOFANG_PYTHON).
fn python() -> PathBuf {
    let p = std::env::var_os("MOFANG_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(p.is_file(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// The venv prefix, where ipykernel's kernelspec lives (share/jupyter/kernels/python3).
fn venv() -> PathBuf {
    python()
        .parent()
        .and_then(Path::parent)
        .expect("python is <venv>/bin/python")
        .to_path_buf()
}

fn notebook(cells: Vec<Json>) -> Json {
    json!({
        "cells": cells,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}
        },
        "nbformat": 4,
        "nbformat_minor": 5
    })
}

fn code(id: &str, source: &str, tags: &[&str]) -> Json {
    json!({"id": id, "cell_type": "code", "metadata": {"tags": tags}, "execution_count": null,
           "source": source, "outputs": []})
}

fn markdown(id: &str, source: &str) -> Json {
    json!({"id": id, "cell_type": "markdown", "metadata": {}, "source": source})
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(nb: &Json) -> Case {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("in.ipynb"), nb.to_string()).expect("write input");
        Case { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn options(&self, params: Params) -> RunOptions {
        RunOptions {
            input: Input::File(self.path("in.ipynb")),
            output: Output::File(self.path("out.ipynb")),
            parameters: params,
            kernel_name: None,
            language: None,
            cwd: None,
            prepare_only: false,
            report_mode: false,
            start_timeout: Duration::from_secs(60),
            execution_timeout: None,
            kernel_prefixes: vec![venv()],
            version: "test".to_owned(),
        }
    }

    async fn run(&self, opts: &RunOptions) -> Outcome {
        run_notebook(opts, &mut Quiet).await.expect("runs")
    }

    fn output(&self) -> Json {
        read_json(&self.path("out.ipynb"))
    }
}

fn read_json(path: &Path) -> Json {
    serde_json::from_slice(&std::fs::read(path).expect("output written")).expect("output is JSON")
}

/// Runs python code with the venv's interpreter; returns stdout, panics with stderr on failure.
fn py(code: &str, args: &[&Path]) -> String {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// nbformat's own validator (schema 4.5) must accept the file.
fn assert_valid(path: &Path) {
    py(
        "import sys, nbformat\n\
         nb = nbformat.read(sys.argv[1], as_version=nbformat.NO_CONVERT)\n\
         assert (nb.nbformat, nb.nbformat_minor) == (4, 5), (nb.nbformat, nb.nbformat_minor)\n\
         nbformat.validate(nb)\n",
        &[path],
    );
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Array(parts) => parts.iter().filter_map(Json::as_str).collect(),
        _ => String::new(),
    }
}

fn statuses(nb: &Json) -> Vec<String> {
    nb["cells"]
        .as_array()
        .expect("cells")
        .iter()
        .map(|c| {
            c["metadata"]["papermill"]["status"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

fn tags(cell: &Json) -> Vec<String> {
    cell["metadata"]["tags"]
        .as_array()
        .map(|t| {
            t.iter()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn success_records_outputs_streams_displays_and_papermill_metadata() {
    let case = Case::new(&notebook(vec![
        markdown("m1", "# Title"),
        code("p1", "alpha = 1\nname = 'default'", &["parameters"]),
        code(
            "c1",
            "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.3)",
            &[],
        ),
        code(
            "c2",
            "h = display('v1', display_id=True)\nh.update('v2')\nalpha * 2",
            &[],
        ),
        code("c3", "", &[]),
    ]));
    let mut params = Params::new();
    params.set("alpha", Value::Float(0.5));
    params.set("name", Value::Str("run".into()));
    let outcome = case.run(&case.options(params)).await;
    assert_eq!(outcome, Outcome::Completed);
    let nb = case.output();
    assert_valid(&case.path("out.ipynb"));
    let cells = nb["cells"].as_array().expect("cells");
    assert_eq!(
        cells.len(),
        6,
        "the injected cell follows the parameters cell"
    );
    assert_eq!(tags(&cells[2]), ["injected-parameters"]);
    assert_eq!(
        text(&cells[2]["source"]),
        "# Parameters\nalpha = 0.5\nname = \"run\"\n"
    );
    assert_eq!(statuses(&nb), ["completed"; 6]);
    // Three stream messages (flushes 0.3 s apart) are one output.
    let outs = cells[3]["outputs"].as_array().expect("outputs");
    assert_eq!(outs.len(), 1, "{outs:?}");
    assert_eq!(text(&outs[0]["text"]), "0\n1\n2\n");
    // The display shows its update; the result is the injected alpha's.
    let outs = cells[4]["outputs"].as_array().expect("outputs");
    assert_eq!(text(&outs[0]["data"]["text/plain"]), "'v2'");
    assert_eq!(outs[1]["output_type"], "execute_result");
    assert_eq!(text(&outs[1]["data"]["text/plain"]), "1.0");
    let counts: Vec<&Json> = cells.iter().map(|c| &c["execution_count"]).collect();
    assert_eq!(
        counts[1..],
        [&json!(1), &json!(2), &json!(3), &json!(4), &Json::Null]
    );
    let pm = &nb["metadata"]["papermill"];
    let mut keys: Vec<&str> = pm
        .as_object()
        .expect("papermill")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "default_parameters",
            "duration",
            "end_time",
            "environment_variables",
            "exception",
            "input_path",
            "output_path",
            "parameters",
            "start_time",
            "version"
        ]
    );
    assert_eq!(pm["parameters"], json!({"alpha": 0.5, "name": "run"}));
    assert_eq!(pm["exception"], Json::Null);
    assert_eq!(nb["metadata"]["language_info"]["name"], "python");
    for cell in cells {
        let rec = &cell["metadata"]["papermill"];
        assert!(rec["duration"].as_f64().is_some_and(|d| d >= 0.0), "{rec}");
        assert_eq!(rec["exception"], json!(false));
    }
    // papermill's and scrapbook's readers accept it.
    let seen = py(
        "import sys, papermill, scrapbook\n\
         nb = scrapbook.read_notebook(sys.argv[1])\n\
         print(sorted(nb.parameters.items()))\n\
         print(len(nb.papermill_metrics) > 0)\n\
         print(papermill.inspect_notebook(sys.argv[1]) is not None)\n",
        &[&case.path("out.ipynb")],
    );
    assert_eq!(seen, "[('alpha', 0.5), ('name', 'run')]\nTrue\nTrue\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn error_in_cell_two_writes_papermills_banner_and_statuses() {
    let nb = notebook(vec![
        code("a", "x = 1", &[]),
        code("b", "1/0", &[]),
        code("c", "print('never')", &[]),
    ]);
    let case = Case::new(&nb);
    let outcome = case.run(&case.options(Params::new())).await;
    assert!(
        matches!(&outcome, Outcome::CellError { cell_index: 1, ename, .. } if ename == "ZeroDivisionError"),
        "{outcome:?}"
    );
    let ours = case.output();
    assert_valid(&case.path("out.ipynb"));
    // The same notebook through papermill itself.
    let pm_out = case.path("papermill.ipynb");
    let status = Command::new(python())
        .args(["-m", "papermill", "--no-progress-bar", "-k", "python3"])
        .arg(case.path("in.ipynb"))
        .arg(&pm_out)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("papermill runs");
    assert!(!status.success());
    let theirs = read_json(&pm_out);
    let shape = |nb: &Json| -> Vec<(String, Vec<String>, String)> {
        nb["cells"]
            .as_array()
            .expect("cells")
            .iter()
            .map(|c| {
                let source = if c["cell_type"] == "markdown" {
                    text(&c["source"])
                } else {
                    String::new()
                };
                (
                    c["metadata"]["papermill"]["status"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned(),
                    tags(c),
                    source,
                )
            })
            .collect()
    };
    assert_eq!(shape(&ours), shape(&theirs));
    assert_eq!(statuses(&ours), ["", "completed", "", "failed", "pending"]);
    assert_eq!(ours["metadata"]["papermill"]["exception"], json!(true));
    assert_eq!(ours["cells"][3]["outputs"][0]["ename"], "ZeroDivisionError");
}

#[tokio::test(flavor = "multi_thread")]
async fn kernel_that_dies_fails_the_running_cell_with_a_clear_error() {
    for (how, source) in [
        ("os._exit", "import os\nos._exit(3)"),
        (
            "SIGKILL",
            "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        ),
    ] {
        let case = Case::new(&notebook(vec![
            code("a", "print('before')", &[]),
            code("b", source, &[]),
            code("c", "print('after')", &[]),
        ]));
        let outcome = case.run(&case.options(Params::new())).await;
        let Outcome::KernelDied { cell_index, why } = &outcome else {
            panic!("{how}: {outcome:?}");
        };
        assert_eq!(*cell_index, 1, "{how}");
        let expected = if how == "SIGKILL" {
            "signal 9"
        } else {
            "status 3"
        };
        assert!(why.contains(expected), "{how}: {why}");
        let nb = case.output();
        assert_valid(&case.path("out.ipynb"));
        assert_eq!(
            statuses(&nb),
            ["", "completed", "", "failed", "pending"],
            "{how}"
        );
        let err = &nb["cells"][3]["outputs"][0];
        assert_eq!(err["ename"], "DeadKernelError", "{how}");
        assert!(
            err["evalue"].as_str().is_some_and(|e| e.contains(expected)),
            "{err}"
        );
        assert_eq!(nb["metadata"]["papermill"]["exception"], json!(true));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn timed_out_cell_is_interrupted_and_failed() {
    let case = Case::new(&notebook(vec![
        code("a", "import time\ntime.sleep(60)", &[]),
        code("b", "print('after')", &[]),
    ]));
    let mut opts = case.options(Params::new());
    opts.execution_timeout = Some(Duration::from_secs(2));
    let started = Instant::now();
    let outcome = case.run(&opts).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        matches!(outcome, Outcome::TimedOut { cell_index: 0, .. }),
        "{outcome:?}"
    );
    let nb = case.output();
    assert_valid(&case.path("out.ipynb"));
    assert_eq!(statuses(&nb), ["", "", "failed", "pending"]);
    let enames: Vec<&str> = nb["cells"][2]["outputs"]
        .as_array()
        .expect("outputs")
        .iter()
        .filter_map(|o| o["ename"].as_str())
        .collect();
    // The interrupt reached the kernel (KeyboardInterrupt) and the record says why.
    assert_eq!(enames, ["KeyboardInterrupt", "CellTimeoutError"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn injected_cell_replaces_an_earlier_one_and_goes_on_top_without_parameters_cell() {
    let case = Case::new(&notebook(vec![
        code("p", "a = 0", &["parameters"]),
        code("b", "print(a)", &[]),
    ]));
    let mut params = Params::new();
    params.set("a", Value::Int(1));
    assert_eq!(case.run(&case.options(params)).await, Outcome::Completed);
    // Run the output again with another value.
    std::fs::copy(case.path("out.ipynb"), case.path("in.ipynb")).expect("copy");
    let mut params = Params::new();
    params.set("a", Value::Int(2));
    assert_eq!(case.run(&case.options(params)).await, Outcome::Completed);
    let nb = case.output();
    let cells = nb["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 3);
    assert_eq!(tags(&cells[1]), ["injected-parameters"]);
    assert_eq!(text(&cells[1]["source"]), "# Parameters\na = 2\n");
    assert_eq!(text(&cells[2]["outputs"][0]["text"]), "2\n");

    let top = Case::new(&notebook(vec![code("b", "print(a)", &[])]));
    let mut params = Params::new();
    params.set("a", Value::Str("x".into()));
    assert_eq!(top.run(&top.options(params)).await, Outcome::Completed);
    let nb = top.output();
    assert_eq!(tags(&nb["cells"][0]), ["injected-parameters"]);
    assert_eq!(text(&nb["cells"][1]["outputs"][0]["text"]), "x\n");
    assert_valid(&top.path("out.ipynb"));
}

#[tokio::test(flavor = "multi_thread")]
async fn prepare_only_matches_papermill() {
    let case = Case::new(&notebook(vec![
        markdown("m", "intro"),
        code("p", "a = 0", &["parameters"]),
        code("old", "# Parameters\na = -1\n", &["injected-parameters"]),
        code("b", "print(a)", &[]),
    ]));
    let yaml = "s: \"it's \\\"q\\\" ü\\n\"\nf: 1.0e-5\nbig: 123456789012\nneg: -3\nt: true\nn: null\n\
                l: [1, 2.5, x, [y]]\nd: {k: v, n: 1}\n";
    let mut params = Params::new();
    params.update_from_yaml(yaml, "-y").expect("yaml");
    let mut opts = case.options(params);
    opts.prepare_only = true;
    opts.report_mode = true;
    assert_eq!(case.run(&opts).await, Outcome::Prepared);
    let ours = case.output();
    let pm_out = case.path("papermill.ipynb");
    let out = Command::new(python())
        .args([
            "-m",
            "papermill",
            "--prepare-only",
            "--report-mode",
            "-y",
            yaml,
        ])
        .arg(case.path("in.ipynb"))
        .arg(&pm_out)
        .output()
        .expect("papermill runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = read_json(&pm_out);
    let sources = |nb: &Json| -> Vec<(String, Vec<String>, Json)> {
        nb["cells"]
            .as_array()
            .expect("cells")
            .iter()
            .map(|c| {
                (
                    text(&c["source"]),
                    tags(c),
                    c["metadata"]["jupyter"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(sources(&ours), sources(&theirs));
    let pm = |nb: &Json| {
        let mut p = nb["metadata"]["papermill"].clone();
        p["version"] = Json::Null;
        p["output_path"] = Json::Null;
        p
    };
    assert_eq!(pm(&ours), pm(&theirs));
    assert_eq!(ours["nbformat_minor"], theirs["nbformat_minor"]);
    assert_valid(&case.path("out.ipynb"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_an_error_and_writes_nothing() {
    let case = Case::new(&notebook(vec![code("a", "1", &[])]));
    std::fs::write(case.path("in.ipynb"), "{\"cells\": [").expect("write");
    let err = run_notebook(&case.options(Params::new()), &mut Quiet)
        .await
        .expect_err("invalid JSON");
    assert!(err.to_string().contains("not valid JSON"), "{err}");

    let mut bad_cell = notebook(vec![code("a", "1", &[])]);
    bad_cell["cells"][0]["cell_type"] = json!("cod");
    std::fs::write(case.path("in.ipynb"), bad_cell.to_string()).expect("write");
    let err = run_notebook(&case.options(Params::new()), &mut Quiet)
        .await
        .expect_err("bad cell");
    assert!(
        err.to_string().contains("cell 1: unknown cell_type `cod`"),
        "{err}"
    );

    let mut unknown = notebook(vec![code("a", "1", &[])]);
    unknown["metadata"]["kernelspec"]["name"] = json!("no-such-kernel");
    std::fs::write(case.path("in.ipynb"), unknown.to_string()).expect("write");
    let err = run_notebook(&case.options(Params::new()), &mut Quiet)
        .await
        .expect_err("unknown kernel");
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-kernel") && msg.contains("python3"),
        "{msg}"
    );

    std::fs::remove_file(case.path("in.ipynb")).expect("remove");
    let err = run_notebook(&case.options(Params::new()), &mut Quiet)
        .await
        .expect_err("missing input");
    assert!(err.to_string().contains("in.ipynb"), "{err}");
    assert!(!case.path("out.ipynb").exists());
}
