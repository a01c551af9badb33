//! End-to-end tests of the control plane: the real `mofang server` process, jobs run as real
//! processes by the local executor, the REST API, the CLI, and a crash of the server.

mod harness;

use std::time::{Duration, Instant};

use harness::{Plane, stderr, stdout};
use serde_json::{Value, json};

fn sh(script: &str) -> String {
    // A JSON string is a valid YAML scalar: no quoting rules to get wrong.
    serde_json::to_string(script).expect("a string")
}

fn is_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            // state is the field after the parenthesised command
            s.rsplit_once(") ")
                .map(|(_, rest)| !rest.starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

async fn log(plane: &Plane, token: &str, id: &str, role: &str, index: u32) -> String {
    let (status, v) = plane
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{id}/logs?role={role}&index={index}"),
            Some(token),
            None,
        )
        .await;
    assert_eq!(status, 200, "logs: {v}");
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gang_waits_until_it_fits_whole_then_runs() {
    let plane = Plane::start();
    let gate = plane.dir.path().join("gate");
    // A job holding both CPUs until the gate file appears.
    let big = plane
        .submit(
            &plane.admin,
            &format!(
                "name: holder\ntasks:\n- role: worker\n  resources: {{cpu: 2}}\n  command: [sh, -c, {}]\n",
                sh(&format!(
                    "while [ ! -f {} ]; do sleep 0.05; done; echo released",
                    gate.display()
                ))
            ),
        )
        .await;
    let big_id = big["id"].as_str().expect("id").to_string();
    plane.wait_state(&plane.admin, &big_id, "Running", 20).await;
    // A gang of 2 × 1 CPU cannot start while the holder runs, and must not start half.
    let gang = plane
        .submit(
            &plane.admin,
            "name: gang\ntasks:\n- role: worker\n  replicas: 2\n  resources: {cpu: 1}\n  command: [sh, -c, 'echo rank=$MOFANG_RANK world=$MOFANG_WORLD_SIZE']\n",
        )
        .await;
    let gang_id = gang["id"].as_str().expect("id").to_string();
    let waiting = plane.wait_state(&plane.admin, &gang_id, "Queued", 20).await;
    // The scheduler explains why, and no replica of the gang started.
    let deadline = Instant::now() + Duration::from_secs(10);
    let job = loop {
        let job = plane.job(&plane.admin, &gang_id).await;
        let explained = job["events"].as_array().is_some_and(|es| {
            es.iter().any(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("waiting:"))
            })
        });
        if explained {
            break job;
        }
        assert!(Instant::now() < deadline, "no waiting event: {job:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(job["state"], "Queued", "{job:#}");
    assert_eq!(
        job["replica_attempts"].as_array().map(Vec::len),
        Some(0),
        "a waiting gang started replicas: {waiting:#}"
    );
    let message = job["events"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["reason"] == "Waiting"))
        .and_then(|e| e["message"].as_str())
        .unwrap_or_default()
        .to_string();
    assert!(
        message.contains("CPU"),
        "the reason names the resource: {message}"
    );
    // The CLI shows the same job waiting with the same reason.
    let out = plane.cli(&plane.admin, &["job", "get", &gang_id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("Queued"), "{}", stdout(&out));
    assert!(stdout(&out).contains(&message), "{}", stdout(&out));

    std::fs::write(&gate, b"go").expect("open the gate");
    plane
        .wait_state(&plane.admin, &big_id, "Succeeded", 20)
        .await;
    let done = plane
        .wait_state(&plane.admin, &gang_id, "Succeeded", 20)
        .await;
    let attempts = done["replica_attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{done:#}");
    let starts: Vec<i64> = attempts
        .iter()
        .map(|a| a["started_ms"].as_i64().expect("started"))
        .collect();
    let holder = plane.job(&plane.admin, &big_id).await;
    let released = holder["finished_ms"].as_i64().expect("finished");
    assert!(
        starts.iter().all(|s| *s >= released),
        "a gang replica started before the holder ended: {starts:?} vs {released}"
    );
    for index in 0..2 {
        let text = log(&plane, &plane.admin, &gang_id, "worker", index).await;
        assert_eq!(text.trim(), format!("rank={index} world=2"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_see_their_job_role_rank_and_peers() {
    let plane = Plane::start();
    let spec = format!(
        "name: ddp\ntasks:\n- role: master\n  resources: {{cpu: 500m}}\n  command: [sh, -c, {script}]\n  env: {{GREETING: hello}}\n- role: worker\n  replicas: 2\n  resources: {{cpu: 500m}}\n  command: [sh, -c, {script}]\n",
        script = sh(
            "echo \"$MOFANG_JOB_NAME $MOFANG_TASK_ROLE $MOFANG_TASK_INDEX $MOFANG_RANK $MOFANG_WORLD_SIZE $MOFANG_PORT $GREETING\"; echo \"$MOFANG_PEERS\"; pwd"
        )
    );
    let job = plane.submit(&plane.admin, &spec).await;
    let id = job["id"].as_str().expect("id");
    plane.wait_state(&plane.admin, id, "Succeeded", 20).await;
    let mut ports = Vec::new();
    let mut peers_seen = Vec::new();
    for (role, index, rank) in [("master", 0, 0), ("worker", 0, 1), ("worker", 1, 2)] {
        let text = log(&plane, &plane.admin, id, role, index).await;
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let fields: Vec<&str> = lines[0].split(' ').collect();
        assert_eq!(
            fields[..5],
            ["ddp", role, &index.to_string(), &rank.to_string(), "3"]
        );
        assert_eq!(fields[6], if role == "master" { "hello" } else { "" });
        ports.push(format!("127.0.0.1:{}", fields[5]));
        let peers: Value = serde_json::from_str(lines[1]).expect("MOFANG_PEERS is JSON");
        peers_seen.push(peers);
        assert!(
            lines[2].contains(id),
            "working directory {} is the job's",
            lines[2]
        );
    }
    // Every replica sees the same peers, and they are the ports the replicas were given.
    assert!(peers_seen.iter().all(|p| *p == peers_seen[0]));
    assert_eq!(
        peers_seen[0],
        json!({"master": [ports[0]], "worker": [ports[1], ports[2]]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policies_retry_128_to_255_and_fail_on_1_to_127() {
    let plane = Plane::start();
    // First attempt dies like an OOM kill (137), the retry succeeds.
    let flaky = plane
        .submit(
            &plane.admin,
            &format!(
                "name: flaky\nbackoff_limit: 2\ntasks:\n- role: worker\n  restart_policy: ExitCode\n  command: [sh, -c, {}]\n",
                sh("if [ -f tried ]; then echo second; exit 0; fi; touch tried; echo first; exit 137")
            ),
        )
        .await;
    let broken = plane
        .submit(
            &plane.admin,
            "name: broken\nbackoff_limit: 2\ntasks:\n- role: worker\n  restart_policy: ExitCode\n  command: [sh, -c, 'exit 3']\n",
        )
        .await;
    let always_fails = plane
        .submit(
            &plane.admin,
            "name: hopeless\nbackoff_limit: 2\ntasks:\n- role: worker\n  restart_policy: OnFailure\n  command: [sh, -c, 'exit 1']\n",
        )
        .await;
    let flaky = plane
        .wait_state(
            &plane.admin,
            flaky["id"].as_str().expect("id"),
            "Succeeded",
            30,
        )
        .await;
    assert_eq!(flaky["restarts"], 1, "{flaky:#}");
    let attempts = flaky["replica_attempts"].as_array().expect("attempts");
    let codes: Vec<(i64, i64)> = attempts
        .iter()
        .map(|a| {
            (
                a["attempt"].as_i64().unwrap_or(-1),
                a["exit_code"].as_i64().unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(codes, [(0, 137), (1, 0)]);
    let states: Vec<&str> = flaky["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter_map(|c| c["state"].as_str())
        .collect();
    assert_eq!(
        states,
        [
            "Created",
            "Queued",
            "Running",
            "Restarting",
            "Running",
            "Succeeded"
        ]
    );

    let broken = plane
        .wait_state(
            &plane.admin,
            broken["id"].as_str().expect("id"),
            "Failed",
            30,
        )
        .await;
    assert_eq!(broken["restarts"], 0, "exit 3 is permanent: {broken:#}");
    assert!(
        broken["message"]
            .as_str()
            .unwrap_or_default()
            .contains("code 3"),
        "{broken:#}"
    );

    let hopeless = plane
        .wait_state(
            &plane.admin,
            always_fails["id"].as_str().expect("id"),
            "Failed",
            30,
        )
        .await;
    assert_eq!(hopeless["restarts"], 2, "{hopeless:#}");
    let last = hopeless["conditions"]
        .as_array()
        .and_then(|c| c.last())
        .cloned();
    assert_eq!(
        last.as_ref().map(|c| c["reason"].clone()),
        Some(json!("BackoffLimitExceeded"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_whole_process_group_and_deadlines_fail_jobs() {
    let plane = Plane::start();
    // The replica starts a grandchild and ignores SIGTERM: only SIGKILL of the group ends both.
    let job = plane
        .submit(
            &plane.admin,
            &format!(
                "name: stubborn\ntasks:\n- role: worker\n  command: [sh, -c, {}]\n",
                sh("trap '' TERM; sleep 300 & echo child=$!; while true; do sleep 0.1; done")
            ),
        )
        .await;
    let id = job["id"].as_str().expect("id").to_string();
    let running = plane.wait_state(&plane.admin, &id, "Running", 20).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let child: i64 = loop {
        let text = log(&plane, &plane.admin, &id, "worker", 0).await;
        if let Some(pid) = text.lines().find_map(|l| l.strip_prefix("child=")) {
            break pid.trim().parse().expect("a pid");
        }
        assert!(Instant::now() < deadline, "no child pid in the log: {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let pid = running["replica_attempts"][0]["pid"].as_i64().expect("pid");
    assert!(is_alive(child) && is_alive(pid));
    let out = plane.cli(&plane.admin, &["job", "cancel", "stubborn"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cancelled = plane.wait_state(&plane.admin, &id, "Cancelled", 10).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let job = plane.job(&plane.admin, &id).await;
        if job["replica_attempts"][0]["state"] == "Killed" {
            break;
        }
        assert!(Instant::now() < deadline, "replica not killed: {job:#}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!is_alive(child), "the grandchild survived the cancel");
    assert!(!is_alive(pid), "the supervisor survived the cancel");
    assert!(
        cancelled["message"]
            .as_str()
            .unwrap_or_default()
            .contains("admin")
    );
    // Cancelling again is a conflict, with a message.
    let out = plane.cli(&plane.admin, &["job", "cancel", &id]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already ended"), "{}", stderr(&out));

    let slow = plane
        .submit(
            &plane.admin,
            "name: slow\nactive_deadline_seconds: 1\ntasks:\n- role: worker\n  command: [sleep, '30']\n",
        )
        .await;
    let failed = plane
        .wait_state(&plane.admin, slow["id"].as_str().expect("id"), "Failed", 20)
        .await;
    let last = failed["conditions"]
        .as_array()
        .and_then(|c| c.last())
        .cloned();
    assert_eq!(
        last.map(|c| c["reason"].clone()),
        Some(json!("DeadlineExceeded"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_server_loses_nothing() {
    let mut plane = Plane::start();
    let gate = plane.dir.path().join("gate");
    let early_gate = plane.dir.path().join("early-gate");
    // Keeps running across the crash and prints a line every 50 ms until the gate opens.
    let long = plane
        .submit(
            &plane.admin,
            &format!(
                "name: survivor\ntasks:\n- role: worker\n  command: [sh, -c, {}]\n",
                sh(&format!(
                    "i=0; while [ ! -f {} ]; do i=$((i+1)); echo line $i; sleep 0.05; done; echo done $i",
                    gate.display()
                ))
            ),
        )
        .await;
    // Ends while the server is down: its exit code must still be recorded.
    let short = plane
        .submit(
            &plane.admin,
            &format!(
                "name: finisher\ntasks:\n- role: worker\n  restart_policy: Never\n  command: [sh, -c, {}]\n",
                sh(&format!("while [ ! -f {} ]; do sleep 0.05; done; exit 0", early_gate.display()))
            ),
        )
        .await;
    // Accepted but not yet admitted: it must still be there after the crash.
    let queued = plane
        .submit(
            &plane.admin,
            "name: later\ntasks:\n- role: worker\n  resources: {cpu: 2}\n  command: [sh, -c, 'echo later']\n",
        )
        .await;
    let long_id = long["id"].as_str().expect("id").to_string();
    let short_id = short["id"].as_str().expect("id").to_string();
    let queued_id = queued["id"].as_str().expect("id").to_string();
    let before = plane
        .wait_state(&plane.admin, &long_id, "Running", 20)
        .await;
    plane
        .wait_state(&plane.admin, &short_id, "Running", 20)
        .await;
    let pid = before["replica_attempts"][0]["pid"].as_i64().expect("pid");
    let log_file = before["replica_attempts"][0]["log_path"]
        .as_str()
        .expect("log path")
        .to_string();
    let lines_in = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log_file).unwrap_or_default();
            if text.lines().count() >= n {
                return text.lines().count();
            }
            assert!(
                Instant::now() < deadline,
                "the replica does not write: {text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let at_crash = lines_in(3);

    plane.crash();
    assert!(is_alive(pid), "the replica must outlive the server");
    std::fs::write(&early_gate, b"go").expect("open the early gate");
    // The replica keeps writing while nobody watches.
    let while_down = lines_in(at_crash + 4);
    plane.launch();

    // Re-adopted, not restarted: same pid, still running, the log still growing.
    let after = plane
        .wait_state(&plane.admin, &long_id, "Running", 20)
        .await;
    assert_eq!(after["replica_attempts"][0]["pid"].as_i64(), Some(pid));
    lines_in(while_down + 2);
    std::fs::write(&gate, b"go").expect("open the gate");

    let long = plane
        .wait_state(&plane.admin, &long_id, "Succeeded", 20)
        .await;
    let short = plane
        .wait_state(&plane.admin, &short_id, "Succeeded", 20)
        .await;
    plane
        .wait_state(&plane.admin, &queued_id, "Succeeded", 30)
        .await;
    for job in [&long, &short] {
        let attempts = job["replica_attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 1, "no restart was needed: {job:#}");
        assert_eq!(attempts[0]["exit_code"], 0, "{job:#}");
        assert_eq!(job["restarts"], 0, "{job:#}");
        let reconciled = job["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["reason"] == "Reconciled");
        assert!(reconciled, "{job:#}");
    }
    // The log is whole: every line from 1 to the last, then done.
    let text = log(&plane, &plane.admin, &long_id, "worker", 0).await;
    let lines: Vec<&str> = text.lines().collect();
    let last = lines.last().copied().unwrap_or_default();
    let n: usize = last
        .strip_prefix("done ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("log does not end with done: {text}"));
    assert!(n > while_down, "{text}");
    for (i, line) in lines[..n].iter().enumerate() {
        assert_eq!(*line, format!("line {}", i + 1));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_decide_who_sees_and_cancels_what() {
    let plane = Plane::start();
    let alice = plane.token("alice", "team-a");
    let bob = plane.token("bob", "team-a");
    let carol = plane.token("carol", "team-b");
    // Health is open; the API is not.
    let (status, _) = plane
        .call(reqwest::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(status, 200);
    let (status, v) = plane
        .call(reqwest::Method::GET, "/api/v1/jobs", None, None)
        .await;
    assert_eq!(status, 401);
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("token")),
        "{v}"
    );
    let (status, v) = plane
        .call(
            reqwest::Method::GET,
            "/api/v1/jobs",
            Some("mft_not-a-token"),
            None,
        )
        .await;
    assert_eq!(status, 401, "{v}");

    let job = plane
        .submit(
            &alice,
            "name: mine\ntasks:\n- role: worker\n  command: [sleep, '30']\n",
        )
        .await;
    let id = job["id"].as_str().expect("id");
    assert_eq!(job["user"], "alice");
    assert_eq!(job["group"], "team-a");
    // Same group sees it, another group does not, not even by id.
    assert_eq!(plane.job(&bob, id).await["id"], *id);
    let (status, v) = plane
        .call(
            reqwest::Method::GET,
            &format!("/api/v1/jobs/{id}"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(status, 404, "{v}");
    let listed = plane.get("/api/v1/jobs", &carol).await;
    assert_eq!(listed["jobs"].as_array().map(Vec::len), Some(0), "{listed}");
    let (status, _) = plane
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/jobs/{id}/cancel"),
            Some(&carol),
            None,
        )
        .await;
    assert_eq!(status, 404);
    // Submitting as someone else is refused, naming the field.
    let (status, v) = plane
        .call(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(&carol),
            Some("name: spoof\nuser: alice\ntasks:\n- role: w\n  command: [true]\n".into()),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.starts_with("user:")),
        "{v}"
    );
    // Only admins create queues.
    let (status, v) = plane
        .call(
            reqwest::Method::POST,
            "/api/v1/queues",
            Some(&alice),
            Some(r#"{"name": "q"}"#.into()),
        )
        .await;
    assert_eq!(status, 403, "{v}");
    // The group member may cancel it.
    let (status, v) = plane
        .call(
            reqwest::Method::POST,
            &format!("/api/v1/jobs/{id}/cancel"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["state"], "Cancelled");
    // Tokens are stored hashed: the database file does not contain them.
    let db = std::fs::read(plane.data().join("mofang.db")).expect("the SQLite file");
    let wal = std::fs::read(plane.data().join("mofang.db-wal")).unwrap_or_default();
    for token in [&alice, &bob, &carol, &plane.admin] {
        let needle = token.as_bytes();
        for bytes in [&db, &wal] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "a plaintext token is stored"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused_with_the_field_and_nothing_is_stored() {
    let plane = Plane::start();
    let t = &plane.admin;
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "name: a\ntasks:\n- role: w\n  command: [true]\n  colour: red\n".into(),
            400,
            "colour",
        ),
        (
            "name: a\ntasks:\n- role: w\n  command: [true]\n  resources: {cpu: -1}\n".into(),
            400,
            "cpu",
        ),
        (
            "name: a\ntasks:\n- role: w\n  command: [true]\n  resources: {memory: 12parsecs}\n"
                .into(),
            400,
            "memory",
        ),
        (
            "name: Bad_Name\ntasks:\n- role: w\n  command: [true]\n".into(),
            400,
            "name",
        ),
        (
            "name: a\nqueue: nowhere\ntasks:\n- role: w\n  command: [true]\n".into(),
            400,
            "nowhere",
        ),
        (
            "name: a\ntasks:\n- role: w\n  replicas: 3\n  resources: {cpu: 1}\n  command: [true]\n"
                .into(),
            422,
            "cluster",
        ),
        (
            "name: a\ntasks:\n- role: w\n  resources: {gpu: 1}\n  command: [true]\n".into(),
            422,
            "GPU",
        ),
        // Known to the job format but not carried out yet: refused, not silently ignored.
        (
            "name: a\nkind: pytorch\ntasks:\n- role: master\n  command: [true]\n".into(),
            422,
            "kind",
        ),
        (
            "name: a\nrestart_mode: gang\ntasks:\n- role: w\n  command: [true]\n".into(),
            422,
            "gang",
        ),
        // This machine's node carries no labels, so no replica could ever be placed.
        (
            "name: a\ntasks:\n- role: w\n  node_selector: {accelerator: tpu}\n  command: [true]\n"
                .into(),
            422,
            "accelerator=tpu",
        ),
        ("{not yaml".into(), 400, ""),
        (
            format!(
                "name: a\ntasks:\n- role: w\n  command: [true]\n# {}\n",
                "x".repeat(300 * 1024)
            ),
            413,
            "bytes",
        ),
    ];
    for (spec, want, mention) in &cases {
        let (status, v) = plane
            .call(
                reqwest::Method::POST,
                "/api/v1/jobs",
                Some(t),
                Some(spec.clone()),
            )
            .await;
        let error = v["error"].as_str().unwrap_or_default();
        assert_eq!(
            status,
            *want,
            "{error} for\n{}",
            &spec[..spec.len().min(200)]
        );
        assert!(
            error.contains(mention),
            "`{error}` does not mention {mention}"
        );
    }
    // A queue's capability smaller than the gang.
    let (status, v) = plane
        .call(
            reqwest::Method::POST,
            "/api/v1/queues",
            Some(t),
            Some(r#"{"name": "small", "capability": {"cpu": "1"}}"#.into()),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let (status, v) = plane
        .call(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(t),
            Some("name: a\nqueue: small\ntasks:\n- role: w\n  replicas: 2\n  resources: {cpu: 1}\n  command: [true]\n".into()),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("small"),
        "{v}"
    );
    let listed = plane.get("/api/v1/jobs", t).await;
    assert_eq!(
        listed["jobs"].as_array().map(Vec::len),
        Some(0),
        "refused specs were stored: {listed}"
    );
    // Duplicate live names conflict; bad queue definitions name the field.
    plane
        .submit(
            t,
            "name: twin\ntasks:\n- role: w\n  command: [sleep, '30']\n",
        )
        .await;
    let (status, v) = plane
        .call(
            reqwest::Method::POST,
            "/api/v1/jobs",
            Some(t),
            Some("name: twin\ntasks:\n- role: w\n  command: [true]\n".into()),
        )
        .await;
    assert_eq!(status, 409, "{v}");
    assert!(
        v["error"].as_str().unwrap_or_default().contains("twin"),
        "{v}"
    );
    for (body, mention) in [
        (
            r#"{"name": "q1", "capability": {"cpu": "lots"}}"#,
            "capability.cpu",
        ),
        (r#"{"name": "q2", "weight": 0}"#, "weight"),
        (r#"{"name": "q3", "colour": "red"}"#, "colour"),
        (r#"{"name": "small"}"#, "small"),
    ] {
        let (status, v) = plane
            .call(
                reqwest::Method::POST,
                "/api/v1/queues",
                Some(t),
                Some(body.into()),
            )
            .await;
        assert!((400..500).contains(&status), "{body}: {status} {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(mention),
            "{body}: {v}"
        );
    }
    let (status, v) = plane
        .call(
            reqwest::Method::GET,
            "/api/v1/jobs?state=Sleeping",
            Some(t),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert!(v["error"].as_str().unwrap_or_default().contains("Sleeping"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_submits_lists_follows_logs_and_manages_queues() {
    let plane = Plane::start();
    let t = &plane.admin;
    let out = plane.cli(
        t,
        &[
            "queue",
            "create",
            "team-a",
            "--group",
            "team-a",
            "--weight",
            "2",
            "--cpu",
            "2",
            "--guarantee-cpu",
            "500m",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = plane.cli(t, &["queue", "get", "team-a", "-o", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let q: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(q["capability"]["cpu_millis"], 2000);
    assert_eq!(q["guarantee"]["cpu_millis"], 500);
    assert_eq!(q["weight"], 2);
    let out = plane.cli(t, &["queue", "list"]);
    assert!(
        stdout(&out).lines().any(|l| l.starts_with("team-a")),
        "{}",
        stdout(&out)
    );

    let spec = plane.dir.path().join("job.yaml");
    std::fs::write(
        &spec,
        "name: counter\nqueue: team-a\ntasks:\n- role: worker\n  command: [sh, -c, 'for i in 1 2 3 4 5; do echo tick $i; sleep 0.2; done']\n",
    )
    .expect("spec");
    let out = plane.cli(
        t,
        &["job", "submit", spec.to_str().expect("path"), "-o", "json"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let job: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(job["queue"], "team-a");
    // Follow from the start: the stream ends by itself when the replica ends, with every line.
    let started = Instant::now();
    let out = plane.cli(t, &["job", "logs", "counter", "-f"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let expected: String = (1..=5).map(|i| format!("tick {i}\n")).collect();
    assert_eq!(stdout(&out), expected);
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "did not follow"
    );
    let out = plane.cli(t, &["job", "list", "--state", "Succeeded,Running"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.starts_with("ID"), "{table}");
    assert!(table.contains("counter"), "{table}");
    let out = plane.cli(t, &["job", "list", "-o", "json"]);
    let list: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    assert_eq!(list["jobs"][0]["name"], "counter");
    // Errors: one line, non-zero exit.
    for args in [
        vec!["job", "get", "no-such-job"],
        vec!["job", "submit", "/no/such/file.yaml"],
        vec!["queue", "create", "team-a"],
    ] {
        let out = plane.cli(t, &args);
        assert_ne!(out.status.code(), Some(0), "{args:?}");
        assert_eq!(
            stderr(&out).trim().lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
    let out = std::process::Command::new(harness::MOFANG)
        .args(["job", "list", "--url", &plane.url])
        .env_remove("MOFANG_TOKEN")
        .env("MOFANG_CONFIG", plane.dir.path().join("none.yaml"))
        .output()
        .expect("runs");
    assert_ne!(out.status.code(), Some(0));
    // A config file gives URL and token.
    let config = plane.dir.path().join("cli.yaml");
    std::fs::write(&config, format!("url: {}\ntoken: {}\n", plane.url, t)).expect("config");
    let out = std::process::Command::new(harness::MOFANG)
        .args([
            "job",
            "list",
            "-o",
            "json",
            "--config",
            config.to_str().expect("path"),
        ])
        .env_remove("MOFANG_TOKEN")
        .env_remove("MOFANG_URL")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_every_route() {
    let plane = Plane::start();
    let (status, doc) = plane
        .call(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(status, 200);
    let paths = doc["paths"].as_object().expect("paths");
    let source = include_str!("../../../control/src/api.rs");
    let mut routes = 0;
    for line in source.lines() {
        if let Some(rest) = line.trim().strip_prefix(".route(\"") {
            let path = rest.split('"').next().unwrap_or_default();
            routes += 1;
            assert!(
                paths.contains_key(path),
                "{path} is not in the OpenAPI document"
            );
        }
    }
    assert!(routes >= 10);
    // Validated by an OpenAPI validator we did not write, when the test venv has it.
    if let Ok(python) = std::env::var("MOFANG_PYTHON") {
        let file = plane.dir.path().join("openapi.json");
        std::fs::write(&file, doc.to_string()).expect("write");
        let out = std::process::Command::new(python)
            .args(["-c", "import sys, json; from openapi_spec_validator import validate; validate(json.load(open(sys.argv[1]))); print('valid')"])
            .arg(&file)
            .output()
            .expect("python runs");
        assert!(out.status.success(), "{}", stderr(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_jobs_run() {
    let plane = Plane::start();
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/jobs");
    for file in ["hello.yaml", "ddp.yaml"] {
        let out = plane.cli(
            &plane.admin,
            &["job", "submit", &format!("{examples}/{file}"), "-o", "json"],
        );
        assert!(out.status.success(), "{file}: {}", stderr(&out));
        let job: Value = serde_json::from_str(&stdout(&out)).expect("JSON");
        let id = job["id"].as_str().expect("id");
        plane.wait_state(&plane.admin, id, "Succeeded", 60).await;
    }
    let hello = log(&plane, &plane.admin, "hello", "worker", 1).await;
    assert_eq!(hello.trim(), "hello from worker 1 (rank 1 of 2)");
    // The DDP-shaped gang met: both workers reached the master's port.
    let master = log(&plane, &plane.admin, "ddp", "master", 0).await;
    assert!(master.contains("all ranks joined"), "{master}");
    for rank in [1, 2] {
        assert!(master.contains(&format!("joined: rank {rank}")), "{master}");
    }
    // The gang larger than this 2-CPU test server is refused with the reason.
    let out = plane.cli(
        &plane.admin,
        &["job", "submit", &format!("{examples}/big-gang.yaml")],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cluster"), "{}", stderr(&out));
}
