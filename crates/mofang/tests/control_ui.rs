//! The control plane's web UI in Debian's headless Chromium against a real `mofang server`:
//! what a user sees on the jobs, job and queues pages, read from the DOM after the page's
//! scripts ran. Screenshots (the running job's live log included) go to `target/ui-screenshots/`.

#[path = "control/harness.rs"]
#[allow(dead_code)]
mod harness;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use harness::Plane;

fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("MOFANG_CHROMIUM") {
        return PathBuf::from(p);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|dir| ["chromium", "chromium-browser"].map(|n| dir.join(n)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no chromium on PATH: run scripts/setup-chromium.sh"))
}

/// Runs headless Chromium on `url` with `extra` flags; returns stdout. A hung browser fails
/// the test after 60 s instead of hanging it.
fn chromium_run(url: &str, extra: &[String]) -> String {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-extensions",
            "--window-size=1400,1000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match child.try_wait().expect("wait") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within 60 s on {url}");
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    let output = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&output.stdout).to_string()
}

/// The DOM after the page's scripts ran for 3 s of virtual time (pages without a live stream:
/// the jobs and queues pages and ended or waiting jobs).
fn dom(url: &str) -> String {
    chromium_run(
        url,
        &[
            "--dump-dom".to_string(),
            "--virtual-time-budget=3000".to_string(),
        ],
    )
}

/// A screenshot after 4 s of real time (the page may be streaming a live log).
fn screenshot(url: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/ui-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let file = dir.join(name);
    let _ = std::fs::remove_file(&file);
    chromium_run(
        url,
        &[
            "--timeout=4000".to_string(),
            format!("--screenshot={}", file.display()),
        ],
    );
    let bytes = std::fs::read(&file).expect("a screenshot was written");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let file = file.canonicalize().unwrap_or(file);
    println!("screenshot: {}", file.display());
    file
}

/// The text of the element with `id` in a dumped DOM (tags stripped).
fn element_text(dom: &str, id: &str) -> String {
    let Some(start) = dom.find(&format!("id=\"{id}\"")) else {
        return String::new();
    };
    let tag_start = dom[..start].rfind('<').unwrap_or(start);
    let tag: String = dom[tag_start + 1..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric())
        .collect();
    let rest = &dom[start..];
    let body = &rest[rest.find('>').map_or(0, |i| i + 1)..];
    let end = body.find(&format!("</{tag}>")).unwrap_or(body.len());
    strip_tags(&body[..end])
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
}

/// The `<tr>` whose attribute `attr` is `value`, as HTML.
fn row<'a>(dom: &'a str, attr: &str, value: &str) -> Option<&'a str> {
    let at = dom.find(&format!("{attr}=\"{value}\""))?;
    let start = dom[..at].rfind("<tr")?;
    let end = dom[at..].find("</tr>")? + at;
    Some(&dom[start..end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ui_shows_jobs_their_logs_and_queue_usage_to_the_right_users() {
    let plane = Plane::start();
    let admin = plane.admin.clone();
    let carol = plane.token("carol", "team-b");
    let running = plane
        .submit(
            &admin,
            "name: busy\ntasks:\n- role: worker\n  resources: {cpu: 1}\n  command: [sh, -c, 'echo hello-from-replica; sleep 60']\n",
        )
        .await;
    let running_id = running["id"].as_str().expect("id").to_string();
    plane.wait_state(&admin, &running_id, "Running", 20).await;
    let gang = plane
        .submit(
            &admin,
            "name: wide\ntasks:\n- role: worker\n  replicas: 2\n  resources: {cpu: 1}\n  command: [sleep, '1']\n",
        )
        .await;
    let gang_id = gang["id"].as_str().expect("id").to_string();
    plane.wait_state(&admin, &gang_id, "Queued", 20).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while plane.job(&admin, &gang_id).await["events"]
        .as_array()
        .is_none_or(|e| e.is_empty())
    {
        assert!(Instant::now() < deadline, "no waiting event");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A job that already ended, for its page's log and replica table.
    let done = plane
        .submit(
            &admin,
            "name: done\ntasks:\n- role: worker\n  resources: {cpu: 100m}\n  command: [sh, -c, 'echo finished-output']\n",
        )
        .await;
    let done_id = done["id"].as_str().expect("id").to_string();
    plane.wait_state(&admin, &done_id, "Succeeded", 20).await;
    let base = format!("{}/ui/?token={admin}", plane.url);
    let carol_url = format!("{}/ui/?token={carol}#/jobs", plane.url);
    let bad_url = format!("{}/ui/?token=mft_wrong#/jobs", plane.url);
    let (ids, pages) = (
        (running_id.clone(), gang_id.clone(), done_id.clone()),
        base.clone(),
    );
    let (jobs, waiting, ended, queues, others, bad, shots) =
        tokio::task::spawn_blocking(move || {
            let (running_id, gang_id, done_id) = ids;
            let base = pages;
            (
                dom(&format!("{base}#/jobs")),
                dom(&format!("{base}#/jobs/{gang_id}")),
                dom(&format!("{base}#/jobs/{done_id}")),
                dom(&format!("{base}#/queues")),
                dom(&carol_url),
                dom(&bad_url),
                vec![
                    screenshot(&format!("{base}#/jobs"), "jobs.png"),
                    screenshot(&format!("{base}#/jobs/{gang_id}"), "job-waiting.png"),
                    screenshot(&format!("{base}#/jobs/{running_id}"), "job-running.png"),
                    screenshot(&format!("{base}#/queues"), "queues.png"),
                ],
            )
        })
        .await
        .expect("chromium runs");

    // Jobs page: every job with its state.
    for (id, state) in [
        (&running_id, "Running"),
        (&gang_id, "Queued"),
        (&done_id, "Succeeded"),
    ] {
        let r = row(&jobs, "data-job-id", id).unwrap_or_else(|| panic!("{id} not listed:\n{jobs}"));
        assert!(r.contains(&format!("data-state=\"{state}\"")), "{r}");
    }
    assert!(element_text(&jobs, "who").contains("admin"));

    // The waiting gang's page says why it waits.
    assert_eq!(element_text(&waiting, "job-state"), "Queued");
    let events = element_text(&waiting, "events-table");
    assert!(
        events.contains("waiting:") && events.contains("CPU"),
        "events: {events}"
    );

    // An ended job's page: its replica, exit code and whole log.
    assert_eq!(element_text(&ended, "job-state"), "Succeeded");
    let replica =
        row(&ended, "data-replica", "worker-0").unwrap_or_else(|| panic!("no replica:\n{ended}"));
    assert!(replica.contains("data-state=\"Succeeded\""), "{replica}");
    assert_eq!(element_text(&ended, "log").trim(), "finished-output");
    assert!(element_text(&ended, "conditions").contains("JobSucceeded"));

    // Queues page: the default queue holds the running job's CPU; the node's totals.
    let default = row(&queues, "data-queue", "default")
        .unwrap_or_else(|| panic!("no default queue:\n{queues}"));
    assert!(default.contains("data-allocated-cpu=\"1000\""), "{default}");
    assert!(
        element_text(&queues, "cluster").contains("1 of 2 CPU"),
        "{}",
        element_text(&queues, "cluster")
    );

    // Another group's user sees none of them; a bad token lands on the sign-in form.
    assert!(element_text(&others, "who").contains("carol"));
    for id in [&running_id, &gang_id, &done_id] {
        assert!(row(&others, "data-job-id", id).is_none());
    }
    assert!(
        element_text(&bad, "login-error").contains("unknown API token"),
        "{}",
        element_text(&bad, "login-error")
    );
    for shot in shots {
        assert!(shot.exists());
    }
}
