//! The web UI in headless Chromium against the real control plane started in this process:
//! what a user sees on the jobs, job and queues pages once the page's scripts ran, checked
//! against what the REST API says. Screenshots go to `target/ui-screenshots/ui-*.png`.
//!
//! Needs Chromium and chromedriver (`scripts/setup-chromium.sh`) and the executor's
//! `mofang-shim` binary (built by any workspace build).

mod chromium;
mod plane;

use chromium::Browser;
use plane::Plane;
use serde_json::{Value, json};

/// A script returning the `data-state` of the jobs-table row of job `id` ("" when absent).
fn row_state(id: &str) -> String {
    format!(
        "var r = document.querySelector('tr[data-job-id=\"' + {} + '\"]'); return r ? r.dataset.state : ''",
        json!(id)
    )
}

const JOB_IDS: &str =
    "return Array.from(document.querySelectorAll('tr[data-job-id]')).map(r => r.dataset.jobId)";

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Cores as the UI writes them (1000 millicores: "1", 1500: "1.5").
fn cores(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{}", millis as f64 / 1000.0)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_show_a_running_job_with_its_live_log_a_waiting_gang_and_queue_usage() {
    let plane = Plane::start().await;
    let alice = plane.token("alice", "team-a").await;
    let busy = plane
        .submit(
            &alice,
            "name: busy\ntasks:\n- role: worker\n  resources: {cpu: 1}\n  command: [sh, -c, 'echo hello-from-replica; sleep 30']\n",
        )
        .await;
    let busy_job = plane
        .wait_job(&busy, "a running replica", |j| {
            j["state"] == "Running" && j["replica_attempts"][0]["state"] == "Running"
        })
        .await;
    // Two 1-core replicas as one gang cannot start while `busy` holds one of the two cores.
    let wide = plane
        .submit(
            &alice,
            "name: wide\ntasks:\n- role: worker\n  replicas: 2\n  resources: {cpu: 1}\n  command: [sleep, '1']\n",
        )
        .await;
    let wide_job = plane
        .wait_job(&wide, "Queued with a waiting event", |j| {
            j["state"] == "Queued"
                && j["events"].as_array().is_some_and(|e| {
                    e.iter().any(|e| {
                        e["message"]
                            .as_str()
                            .is_some_and(|m| m.starts_with("waiting:"))
                    })
                })
        })
        .await;
    let waiting = wide_job["events"]
        .as_array()
        .and_then(|e| {
            e.iter()
                .filter_map(|e| e["message"].as_str())
                .find(|m| m.starts_with("waiting:"))
        })
        .expect("the waiting event")
        .to_string();

    let mut browser = Browser::start();
    browser.goto(&format!("{}/ui/?token={alice}#/jobs", plane.url));

    // Jobs page: both jobs with their states, the token gone from the address bar.
    assert_eq!(
        browser.wait_for("the running job", &row_state(&busy)).await,
        "Running"
    );
    assert_eq!(
        browser
            .wait_for("the waiting gang", &row_state(&wide))
            .await,
        "Queued"
    );
    let mut listed = ids(&browser.eval(JOB_IDS));
    listed.sort();
    let mut expected = vec![busy.clone(), wide.clone()];
    expected.sort();
    assert_eq!(listed, expected);
    let address = browser.eval("return location.href");
    assert!(
        !address.as_str().unwrap_or_default().contains("token="),
        "the token stayed in the address: {address}"
    );
    assert!(browser.text("#who").starts_with("alice (team-a)"));
    let gang_cell = browser.eval(&format!(
        "return document.querySelector('tr[data-job-id=\"{wide}\"]').cells[5].textContent"
    ));
    assert_eq!(
        gang_cell,
        format!("{} / {}", wide_job["gang"], wide_job["replicas"])
    );
    let jobs_png = browser.screenshot("ui-jobs.png");

    // A click on the row opens the job page: the replica Running with the pid the API
    // reports, the command as typed, and the live log.
    browser.eval(&format!(
        "document.querySelector('tr[data-job-id=\"{busy}\"] td:nth-child(3)').click(); return true"
    ));
    browser
        .wait_for(
            "the job page",
            &format!("return location.hash === '#/jobs/{busy}' && document.querySelector('#job-state').textContent === 'Running'"),
        )
        .await;
    browser
        .wait_for(
            "the live log",
            "return document.querySelector('#log').textContent.includes('hello-from-replica')",
        )
        .await;
    let replica = browser
        .wait_for(
            "the replica row",
            "var r = document.querySelector('tr[data-replica=\"worker-0\"]'); return r ? [r.dataset.state, r.cells[4].textContent] : ''",
        )
        .await;
    assert_eq!(replica[0], "Running");
    assert_eq!(
        replica[1].as_str().unwrap_or_default(),
        busy_job["replica_attempts"][0]["pid"].to_string(),
        "the replica's pid; the API now says {}; the page shows {}",
        plane.job(&alice, &busy).await["replica_attempts"],
        browser.eval("return document.querySelector('#replicas-table').outerHTML")
    );
    let command = browser.text("#tasks-table tbody td:nth-child(3)");
    assert_eq!(command, "sh -c 'echo hello-from-replica; sleep 30'");
    assert_eq!(browser.text("#log-status"), "following");
    let job_png = browser.screenshot("ui-job.png");

    // The waiting gang's page says why it waits, with the scheduler's own words.
    browser.goto(&format!("{}/ui/#/jobs/{wide}", plane.url));
    let events = browser
        .wait_for(
            "the waiting event",
            "var t = document.querySelector('#events-table tbody').textContent; return t.includes('waiting:') ? t : ''",
        )
        .await;
    assert!(
        events.as_str().unwrap_or_default().contains(&waiting),
        "{events} does not show {waiting}"
    );
    assert_eq!(browser.text("#job-state"), "Queued");
    // No replica started: no log is requested (a request would hang until one starts).
    assert_eq!(browser.text("#log-status"), "not started yet");
    browser.screenshot("ui-job-waiting.png");

    // Queues page: the default queue holds the running job's core, one job pends in it,
    // and the node's totals match the API's.
    let queues: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/queues", plane.url))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("queues")
        .json()
        .await
        .expect("JSON");
    let default = queues["queues"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["name"] == "default"))
        .expect("the default queue")
        .clone();
    let allocated = default["allocated"]["cpu_millis"].as_u64().expect("cpu");
    assert!(allocated > 0, "{default}");
    browser.goto(&format!("{}/ui/#/queues", plane.url));
    let shown = browser
        .wait_for(
            "the default queue",
            "var r = document.querySelector('tr[data-queue=\"default\"]'); return r ? [r.dataset.allocatedCpu, r.dataset.pendingJobs, r.querySelector('.meter[data-resource=cpu] .amount').textContent] : ''",
        )
        .await;
    assert_eq!(shown[0], allocated.to_string());
    assert_eq!(shown[1], default["pending_jobs"].to_string());
    assert_eq!(shown[2], format!("{} (no cap)", cores(allocated)));
    let cluster = browser.text("#cluster");
    let node_cpu = format!("{} of {} CPU", cores(allocated), cores(plane::CPU_MILLIS));
    assert!(cluster.contains(&node_cpu), "{cluster} lacks {node_cpu}");
    let queues_png = browser.screenshot("ui-queues.png");

    // Cancel from the job page (confirmation accepted): the job ends. A second cancel (the
    // button forced back on) shows the server's refusal.
    browser.goto(&format!("{}/ui/#/jobs/{busy}", plane.url));
    browser
        .wait_for(
            "the cancel button",
            "return document.querySelector('#job-state').textContent === 'Running' && !document.querySelector('#cancel').disabled",
        )
        .await;
    browser.eval(
        "window.confirm = () => true; document.querySelector('#cancel').click(); return true",
    );
    browser
        .wait_for(
            "the cancelled state",
            "return document.querySelector('#job-state').textContent === 'Cancelled' && document.querySelector('#cancel').disabled",
        )
        .await;
    browser.eval(
        "var b = document.querySelector('#cancel'); b.disabled = false; b.click(); return true",
    );
    let refusal = browser
        .wait_for(
            "the refusal",
            "return document.querySelector('#cancel-error').textContent",
        )
        .await;
    assert!(
        refusal
            .as_str()
            .unwrap_or_default()
            .contains("already ended"),
        "{refusal}"
    );

    for shot in [jobs_png, job_png, queues_png] {
        assert!(shot.is_file());
    }
    drop(browser);
    plane.stop(&[&busy, &wide]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_filters_group_visibility_log_switching_and_escaping() {
    let plane = Plane::start().await;
    let alice = plane.token("alice", "team-a").await;
    let bob = plane.token("bob", "team-b").await;
    // Markup in a command and in a log must show as text: if it ran, the title would change.
    let payload = "<img src=x onerror=\"document.title=`PWNED`\">";
    let alpha_spec = json!({
        "name": "alpha",
        "tasks": [{
            "role": "worker",
            "replicas": 2,
            "resources": {"cpu": "500m"},
            "command": ["sh", "-c",
                format!("echo line-from-$MOFANG_TASK_ROLE-$MOFANG_TASK_INDEX; echo '{payload}'; sleep 30")],
        }],
    });
    let alpha = plane.submit(&alice, &alpha_spec.to_string()).await;
    let beta = plane
        .submit(
            &bob,
            "name: beta\ntasks:\n- role: main\n  resources: {cpu: 500m}\n  command: [sleep, '30']\n",
        )
        .await;
    for id in [&alpha, &beta] {
        plane
            .wait_job(id, "Running", |j| j["state"] == "Running")
            .await;
    }

    // No token: the sign-in form. A wrong token: back to it with the server's reason.
    let mut browser = Browser::start();
    browser.goto(&format!("{}/ui/", plane.url));
    browser
        .wait_for(
            "the sign-in form",
            "return !document.querySelector('#login').hidden",
        )
        .await;
    let refused: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/whoami", plane.url))
        .bearer_auth("mft_not-a-token")
        .send()
        .await
        .expect("whoami")
        .json()
        .await
        .expect("JSON");
    let reason = refused["error"].as_str().expect("an error").to_string();
    let sign_in = |token: &str| {
        format!(
            "document.querySelector('#token-input').value = {}; document.querySelector('#login-form').requestSubmit(); return true",
            json!(token)
        )
    };
    browser.eval(&sign_in("mft_not-a-token"));
    let shown = browser
        .wait_for(
            "the sign-in error",
            "return document.querySelector('#login').hidden ? '' : document.querySelector('#login-error').textContent",
        )
        .await;
    assert_eq!(shown, reason.as_str());

    // Alice signs in with the form: her group's job, not bob's.
    browser.eval(&sign_in(&alice));
    browser.wait_for("alice's job", &row_state(&alpha)).await;
    assert_eq!(ids(&browser.eval(JOB_IDS)), vec![alpha.clone()]);
    assert!(browser.text("#who").starts_with("alice"));

    // The filter controls write the hash; the hash is the filter (a link reproduces it).
    browser
        .eval("var s = document.querySelector('#filter-state'); s.value = 'Queued'; s.dispatchEvent(new Event('change')); return true");
    browser
        .wait_for(
            "the empty filtered list",
            "return location.hash === '#/jobs?state=Queued' && !document.querySelector('#jobs-empty').hidden",
        )
        .await;
    assert!(ids(&browser.eval(JOB_IDS)).is_empty());
    browser.goto(&format!("{}/ui/#/jobs?state=Running&user=alice", plane.url));
    browser
        .wait_for(
            "the linked filter",
            "return document.querySelector('#filter-state').value === 'Running' && document.querySelector('#filter-user').value === 'alice' && document.querySelectorAll('tr[data-job-id]').length > 0",
        )
        .await;
    assert_eq!(ids(&browser.eval(JOB_IDS)), vec![alpha.clone()]);

    // Alpha's page: replica 0's log, then replica 1's after switching; markup stays text.
    browser.goto(&format!("{}/ui/#/jobs/{alpha}", plane.url));
    browser
        .wait_for(
            "worker-0's log",
            "return document.querySelector('#log').textContent.includes('line-from-worker-0')",
        )
        .await;
    browser
        .eval("var s = document.querySelector('#log-replica'); s.value = 'worker:1'; s.dispatchEvent(new Event('change')); return true");
    let log = browser
        .wait_for(
            "worker-1's log",
            "var t = document.querySelector('#log').textContent; return t.includes('line-from-worker-1') ? t : ''",
        )
        .await;
    let log = log.as_str().unwrap_or_default();
    assert!(!log.contains("line-from-worker-0"), "{log}");
    assert!(log.contains(payload), "{log}");
    let command = browser.text("#tasks-table tbody td:nth-child(3)");
    assert!(command.contains(payload), "{command}");
    assert_eq!(
        browser.eval("return document.querySelectorAll('main img').length"),
        0
    );
    assert_eq!(browser.eval("return document.title"), "alpha · mofang");

    // Following the latest attempt of a replica that is restarted: the panel moves on to
    // the new attempt's log, and the attempts table shows both, newest first.
    // Attempt 0 fails after a while; attempt 1 stays up.
    let gamma = plane
        .submit(
            &alice,
            "name: gamma\ntasks:\n- role: worker\n  resources: {cpu: 500m}\n  restart_policy: OnFailure\n  command: [sh, -c, 'echo attempt-$MOFANG_ATTEMPT; if [ $MOFANG_ATTEMPT = 0 ]; then sleep 2; exit 7; fi; sleep 30']\n",
        )
        .await;
    plane
        .wait_job(&gamma, "Running", |j| j["state"] == "Running")
        .await;
    browser.goto(&format!("{}/ui/#/jobs/{gamma}", plane.url));
    browser
        .wait_for(
            "the first attempt's log",
            "return document.querySelector('#log').textContent.includes('attempt-0')",
        )
        .await;
    let log = browser
        .wait_for(
            "the second attempt's log",
            "var t = document.querySelector('#log').textContent; return t.includes('attempt-1') ? t : ''",
        )
        .await;
    assert!(
        !log.as_str().unwrap_or_default().contains("attempt-0"),
        "{log}"
    );
    let gamma_job = plane
        .wait_job(&gamma, "a second attempt", |j| {
            j["replica_attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
        })
        .await;
    let first = gamma_job["replica_attempts"]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["attempt"] == 0))
        .expect("attempt 0")
        .clone();
    let rows = browser
        .wait_for(
            "both attempts",
            "var rows = Array.from(document.querySelectorAll('#replicas-table tbody tr')); return rows.length === 2 && rows.map(r => [r.dataset.attempt, r.dataset.state, r.cells[5].textContent])",
        )
        .await;
    assert_eq!(rows[0][0], "1");
    assert_eq!(rows[1][0], "0");
    assert_eq!(rows[1][1], first["state"]);
    assert_eq!(rows[1][2], format!("exit {}", first["exit_code"]));

    // Sign out: the token leaves the browser.
    browser.eval("document.querySelector('#sign-out').click(); return true");
    browser
        .wait_for(
            "signed out",
            "return !document.querySelector('#login').hidden && localStorage.getItem('mofang.token') === null",
        )
        .await;

    // Bob arrives through a #token= link: his job only, and alpha's page is not found.
    browser.goto(&format!("{}/ui/#token={bob}&/jobs", plane.url));
    browser.wait_for("bob's job", &row_state(&beta)).await;
    assert_eq!(ids(&browser.eval(JOB_IDS)), vec![beta.clone()]);
    assert_eq!(browser.eval("return location.hash"), "#/jobs");
    let hidden: Value = reqwest::Client::new()
        .get(format!("{}/api/v1/jobs/{alpha}", plane.url))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("get job")
        .json()
        .await
        .expect("JSON");
    let not_found = hidden["error"].as_str().expect("an error").to_string();
    browser.goto(&format!("{}/ui/#/jobs/{alpha}", plane.url));
    let shown = browser
        .wait_for(
            "the not-found error",
            "return document.querySelector('#job-error').textContent",
        )
        .await;
    assert_eq!(shown, not_found.as_str());
    assert_eq!(browser.text("#job-name"), "");

    drop(browser);
    plane.stop(&[&alpha, &beta, &gamma]).await;
}
