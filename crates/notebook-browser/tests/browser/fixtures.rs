//! The tree the tests browse, written fresh for every server:
//!
//! ```text
//! <tmp>/outside/secret.txt                 never reachable
//! <tmp>/root/plain.ipynb                   markdown, math, stream, HTML, PNG, SVG, JSON, LaTeX
//! <tmp>/root/failed.ipynb                  a failed papermill run (banner, anchor, ANSI traceback)
//! <tmp>/root/report.ipynb                  papermill --report-mode (source_hidden inputs)
//! <tmp>/root/<img src=x onerror=…>.ipynb   hostile name and hostile content
//! <tmp>/root/notes.txt, data.json, image.png, blob.bin, script.py
//! <tmp>/root/sub dir/inner.ipynb
//! <tmp>/root/.hidden.ipynb, __pycache__/m.pyc   not listed
//! <tmp>/root/link-inside.txt -> notes.txt  allowed
//! <tmp>/root/escape.txt -> ../outside/secret.txt, escape-dir -> ../outside   refused
//! ```

use std::path::PathBuf;

use serde_json::{Value, json};

pub const SECRET: &str = "TOP-SECRET-OUTSIDE-ROOT";
pub const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>.ipynb";

/// A 1×1 red PNG.
pub const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC";

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub outside: PathBuf,
}

fn write(path: PathBuf, bytes: &[u8]) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(&path, bytes).expect("write fixture");
}

fn notebook(cells: Value, metadata: Value) -> Vec<u8> {
    serde_json::to_vec_pretty(&json!({
        "cells": cells,
        "metadata": metadata,
        "nbformat": 4,
        "nbformat_minor": 5
    }))
    .expect("json")
}

fn python_metadata() -> Value {
    json!({
        "kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python", "name": "python3"},
        "language_info": {"name": "python", "version": "3.11.7"}
    })
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).expect("mkdir root");
        write(outside.join("secret.txt"), SECRET.as_bytes());
        write(root.join("plain.ipynb"), &plain());
        write(root.join("failed.ipynb"), &failed());
        write(root.join("report.ipynb"), &report());
        write(root.join(HOSTILE_NAME), &hostile());
        write(
            root.join("notes.txt"),
            "hello\nnotes <b>not bold</b>\n".as_bytes(),
        );
        write(root.join("data.json"), br#"{"a": [1, 2, 3]}"#);
        write(
            root.join("script.py"),
            b"def f(x):\n    return x + 1  # add\n",
        );
        write(root.join("image.png"), &base64_decode(PNG_BASE64));
        write(root.join("blob.bin"), &[0u8, 159, 146, 150, 255, 0, 1, 2]);
        write(
            root.join("sub dir").join("inner.ipynb"),
            &notebook(
                json!([{"cell_type": "markdown", "id": "inner-md", "metadata": {}, "source": ["# Inner\n", "notebook"]}]),
                python_metadata(),
            ),
        );
        write(root.join(".hidden.ipynb"), &notebook(json!([]), json!({})));
        write(root.join("__pycache__").join("m.pyc"), b"\0\0");
        #[cfg(unix)]
        {
            use std::os::unix::fs::symlink;
            symlink("notes.txt", root.join("link-inside.txt")).expect("symlink");
            symlink("../outside/secret.txt", root.join("escape.txt")).expect("symlink");
            symlink("../outside", root.join("escape-dir")).expect("symlink");
        }
        Fixture {
            _dir: dir,
            root,
            outside,
        }
    }
}

pub fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("valid base64")
}

fn plain() -> Vec<u8> {
    let svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"40\" height=\"20\"><rect width=\"40\" height=\"20\" fill=\"#36c\"/><script>document.title='PWNED-SVG'</script></svg>";
    notebook(
        json!([
            {"cell_type": "markdown", "id": "md-1", "metadata": {},
             "source": ["# Plain notebook\n", "\n", "Some *markdown* with math $e^{i\\pi} + 1 = 0$ and a table:\n", "\n",
                        "| a | b |\n", "|---|---|\n", "| 1 | 2 |\n"]},
            {"cell_type": "code", "id": "code-1", "execution_count": 1, "metadata": {},
             "source": ["import math\n", "print('hello', math.pi)  # comment"],
             "outputs": [{"output_type": "stream", "name": "stdout", "text": ["hello 3.141592653589793\n"]}]},
            {"cell_type": "code", "id": "code-2", "execution_count": 2, "metadata": {},
             "source": "df",
             "outputs": [{"output_type": "execute_result", "execution_count": 2, "metadata": {},
                          "data": {"text/plain": ["   a\n", "0  1"],
                                   "text/html": ["<table class=\"dataframe\"><thead><tr><th>a</th></tr></thead>\n", "<tbody><tr><td>1</td></tr></tbody></table>"]}}]},
            {"cell_type": "code", "id": "code-3", "execution_count": 3, "metadata": {},
             "source": "plot()",
             "outputs": [
                {"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG_BASE64, "text/plain": "<Figure size 1x1>"}},
                {"output_type": "display_data", "metadata": {}, "data": {"image/svg+xml": [svg], "text/plain": "<SVG>"}},
                {"output_type": "display_data", "metadata": {}, "data": {"application/json": {"key": [1, 2]}, "text/plain": "{'key': [1, 2]}"}},
                {"output_type": "display_data", "metadata": {}, "data": {"text/latex": "$$\\frac{a}{b}$$", "text/plain": "a/b"}}
             ]},
            {"cell_type": "raw", "id": "raw-1", "metadata": {}, "source": "raw <text>"}
        ]),
        python_metadata(),
    )
}

/// What papermill 2.x writes for a run that failed in its second cell (the error banner cell
/// at the top, the anchor cell before the failing cell, per-cell `metadata.papermill`).
fn failed() -> Vec<u8> {
    let banner = "<span style=\"color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;\">An Exception was encountered at '<a href=\"#papermill-error-cell\">In [2]</a>'.</span>";
    let anchor = "<span id=\"papermill-error-cell\" style=\"color:red; font-family:Helvetica Neue, Helvetica, Arial, sans-serif; font-size:2em;\">Execution using papermill encountered an exception here and stopped:</span>";
    let traceback = [
        "\u{1b}[0;31m---------------------------------------------------------------------------\u{1b}[0m",
        "\u{1b}[0;31mZeroDivisionError\u{1b}[0m                         Traceback (most recent call last)",
        "Cell \u{1b}[0;32mIn[2], line 1\u{1b}[0m\n\u{1b}[0;32m----> 1\u{1b}[0m \u{1b}[38;5;241m1\u{1b}[39m\u{1b}[38;5;241m/\u{1b}[39m\u{1b}[38;5;241m0\u{1b}[39m\n",
        "\u{1b}[0;31mZeroDivisionError\u{1b}[0m: division by zero",
    ];
    let pm_cell = |status: &str, exception: bool| {
        json!({"papermill": {"status": status, "exception": exception,
                             "start_time": if status == "pending" { Value::Null } else { json!("2026-01-02T03:04:05.000001") },
                             "end_time": if status == "pending" { Value::Null } else { json!("2026-01-02T03:04:05.500001") },
                             "duration": if status == "pending" { Value::Null } else { json!(0.5) }},
               "tags": []})
    };
    let mut injected = pm_cell("completed", false);
    injected["tags"] = json!(["injected-parameters"]);
    notebook(
        json!([
            {"cell_type": "markdown", "id": "banner", "metadata": {"tags": ["papermill-error-cell-tag"]}, "source": banner},
            {"cell_type": "code", "id": "params", "execution_count": 1, "metadata": injected,
             "source": "# Parameters\nalpha = 0.5\n", "outputs": []},
            {"cell_type": "markdown", "id": "anchor", "metadata": {"tags": ["papermill-error-cell-tag"]}, "source": anchor},
            {"cell_type": "code", "id": "boom", "execution_count": 2, "metadata": pm_cell("failed", true),
             "source": "1/0",
             "outputs": [
                {"output_type": "stream", "name": "stderr", "text": "about to divide\n"},
                {"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": traceback}
             ]},
            {"cell_type": "code", "id": "after", "execution_count": null, "metadata": pm_cell("pending", false),
             "source": "print('never runs')", "outputs": []}
        ]),
        json!({
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "papermill": {"default_parameters": {}, "duration": 1.25, "end_time": "2026-01-02T03:04:06.25",
                          "environment_variables": {}, "exception": true, "input_path": "template.ipynb",
                          "output_path": "failed.ipynb", "parameters": {"alpha": 0.5},
                          "start_time": "2026-01-02T03:04:05", "version": "2.7.0"}
        }),
    )
}

fn report() -> Vec<u8> {
    notebook(
        json!([
            {"cell_type": "code", "id": "r1", "execution_count": 1,
             "metadata": {"jupyter": {"source_hidden": true}},
             "source": "hidden_input_marker = 42\nprint(hidden_input_marker)",
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "REPORT-OUTPUT-42\n"}]},
            {"cell_type": "markdown", "id": "r2", "metadata": {}, "source": "## Report text"}
        ]),
        python_metadata(),
    )
}

/// Hostile content everywhere HTML can hide. If any of it ran, the page title would change.
fn hostile() -> Vec<u8> {
    notebook(
        json!([
            {"cell_type": "markdown", "id": "h1", "metadata": {},
             "source": "# Hostile <script>document.title='PWNED-MD'</script>\n\n<img src=x onerror=\"document.title='PWNED-IMG'\">\n\n[click](javascript:document.title='PWNED-LINK')"},
            {"cell_type": "code", "id": "h2", "execution_count": 1, "metadata": {},
             "source": "'</code></pre><script>document.title=\"PWNED-CODE\"</script>'",
             "outputs": [
                {"output_type": "display_data", "metadata": {},
                 "data": {"text/html": "<div id=\"html-out\">safe text<script>document.title='PWNED-HTML'</script><iframe src=\"javascript:parent.document.title='PWNED-IFRAME'\"></iframe><a href=\"javascript:alert(1)\" onclick=\"document.title='PWNED-CLICK'\">link</a></div>",
                          "application/javascript": "document.title='PWNED-JS'",
                          "text/plain": "plain"}},
                {"output_type": "stream", "name": "stdout", "text": "<script>document.title='PWNED-STREAM'</script>\n"},
                {"output_type": "error", "ename": "E", "evalue": "v",
                 "traceback": ["\u{1b}[31m<script>document.title='PWNED-TB'</script>\u{1b}[0m"]}
             ]}
        ]),
        json!({"kernelspec": {"display_name": "<script>document.title='PWNED-KERNEL'</script>", "language": "python", "name": "python3"}}),
    )
}
