//! Pages in headless Chromium: the rendered DOM (after any script could have run) and
//! screenshots. The failed-run page's screenshot is kept at
//! `target/notebook-browser/failed-run.png` for people to look at.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::Server;

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("MOFANG_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    panic!("no chromium on PATH: run scripts/setup-chromium.sh (or set MOFANG_CHROMIUM)");
}

/// Runs headless Chromium with `args` and the URL; returns stdout.
fn run(url: &str, args: &[&str]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--virtual-time-budget=3000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("chromium starts");
    // A hung browser must fail the test, not hang it.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => break,
            None if std::time::Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within 90 s on {url}");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let output = child.wait_with_output().expect("output");
    assert!(output.status.success(), "chromium failed on {url}");
    String::from_utf8_lossy(&output.stdout).to_string()
}

fn dump_dom(url: &str) -> String {
    run(url, &["--dump-dom"])
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&bytes[16..20]), be(&bytes[20..24]))
}

fn screenshot(url: &str, file: &Path) {
    let _ = std::fs::remove_file(file);
    run(
        url,
        &[
            &format!("--screenshot={}", file.display()),
            "--window-size=1280,900",
            "--hide-scrollbars",
        ],
    );
    let bytes = std::fs::read(file).expect("chromium wrote the screenshot");
    assert_eq!(png_size(&bytes), (1280, 900));
    // A blank page compresses to a few kilobytes; a rendered notebook does not.
    assert!(
        bytes.len() > 20_000,
        "screenshot looks empty: {} bytes",
        bytes.len()
    );
}

fn target_dir() -> PathBuf {
    let dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
    };
    let dir = dir.join("notebook-browser");
    std::fs::create_dir_all(&dir).expect("mkdir target/notebook-browser");
    dir
}

#[test]
fn chromium_renders_the_failed_run_and_keeps_a_screenshot() {
    let server = Server::start();
    let url = server.url("/view/failed.ipynb");
    let dom = dump_dom(&url);
    assert!(
        dom.contains("<title>failed.ipynb · mofang notebooks</title>"),
        "{dom}"
    );
    assert!(dom.contains("id=\"papermill-error-cell\""), "{dom}");
    assert!(
        dom.contains("<span class=\"ansi-red\">ZeroDivisionError</span>"),
        "{dom}"
    );
    assert!(dom.contains("cell-failed"), "{dom}");
    let file = target_dir().join("failed-run.png");
    screenshot(&url, &file);
    eprintln!("screenshot of the failed run: {}", file.display());
}

#[test]
fn chromium_runs_no_script_from_a_hostile_notebook() {
    let server = Server::start();
    let url = server.url("/view/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E.ipynb");
    let dom = dump_dom(&url);
    // Every payload sets document.title to PWNED-…; the title must be the page's own.
    assert!(
        dom.contains("<title>&lt;img src=x onerror=alert(1)&gt;.ipynb · mofang notebooks</title>"),
        "title changed (a script ran?): {}",
        dom.lines().take(5).collect::<Vec<_>>().join("\n")
    );
    assert!(!dom.contains("<script"), "{dom}");
    assert!(!dom.contains("<iframe"), "{dom}");
    assert!(dom.contains("safe text"), "{dom}");
    // The hostile listing page too.
    let dom = dump_dom(&server.url("/view/"));
    assert!(dom.contains("<title>/ · mofang notebooks</title>"), "{dom}");
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt;.ipynb"),
        "{dom}"
    );
}

#[test]
fn chromium_renders_plain_and_report_pages() {
    let server = Server::start();
    let dom = dump_dom(&server.url("/view/plain.ipynb"));
    assert!(dom.contains("<h1>Plain notebook</h1>"), "{dom}");
    assert!(dom.contains("<table class=\"dataframe\">"), "{dom}");
    assert!(dom.contains("data:image/png;base64,"), "{dom}");
    let dom = dump_dom(&server.url("/view/report.ipynb?report=1"));
    assert!(!dom.contains("hidden_input_marker"), "{dom}");
    assert!(dom.contains("REPORT-OUTPUT-42"), "{dom}");
    screenshot(
        &server.url("/view/plain.ipynb"),
        &target_dir().join("plain.png"),
    );
}
