//! The local executor with real processes: the `mofang-shim` binary of this crate supervises
//! `sh` scripts.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use mofang_executor::{Handle, Launch, LocalExecutor, Poll, is_alive};

const SHIM: &str = env!("CARGO_BIN_EXE_mofang-shim");

fn executor() -> LocalExecutor {
    LocalExecutor::new(SHIM.into(), Vec::new())
}

fn launch(dir: &Path, script: &str) -> Launch {
    let mut peers = BTreeMap::new();
    peers.insert("master".to_string(), vec!["127.0.0.1:4000".to_string()]);
    peers.insert(
        "worker".to_string(),
        vec!["127.0.0.1:4001".to_string(), "127.0.0.1:4002".to_string()],
    );
    let mut env = BTreeMap::new();
    env.insert("GREETING".to_string(), "hello".to_string());
    env.insert("MOFANG_RANK".to_string(), "999".to_string());
    let mut mounts = BTreeMap::new();
    mounts.insert("data".to_string(), dir.join("data"));
    Launch {
        job_id: "j1".into(),
        job_name: "train".into(),
        user: "alice".into(),
        group: "team-a".into(),
        role: "worker".into(),
        index: 1,
        rank: 2,
        world_size: 3,
        attempt: 0,
        command: vec!["sh".into(), "-c".into(), script.into()],
        env,
        working_dir: dir.join("work"),
        log_path: dir.join("logs/worker-1.0.log"),
        status_path: dir.join("status/worker-1.0.json"),
        port: 4002,
        peers,
        mounts,
    }
}

async fn wait_end(ex: &LocalExecutor, h: &Handle, secs: u64) -> Poll {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let p = ex.poll(h).expect("poll");
        if p != Poll::Running {
            return p;
        }
        assert!(Instant::now() < deadline, "still running after {secs} s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, r)| !r.starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn exit_codes_logs_environment_and_working_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ex = executor();
    let l = launch(
        dir.path(),
        "echo out; echo err >&2; echo \"$MOFANG_JOB_ID $MOFANG_JOB_NAME $MOFANG_USER $MOFANG_GROUP $MOFANG_TASK_ROLE $MOFANG_TASK_INDEX $MOFANG_RANK $MOFANG_WORLD_SIZE $MOFANG_ATTEMPT $MOFANG_PORT $GREETING\"; echo \"$MOFANG_PEERS\"; echo \"$MOFANG_MOUNT_DATA\"; pwd; exit 3",
    );
    let h = ex.start(&l).await.expect("start");
    let Poll::Exited(status) = wait_end(&ex, &h, 10).await else {
        panic!("lost")
    };
    assert_eq!((status.exit_code, status.signal), (Some(3), None));
    assert!(status.finished_ms >= status.started_ms);
    let log = std::fs::read_to_string(&l.log_path).expect("log");
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines[0], "out");
    assert_eq!(lines[1], "err");
    // mofang's variables win over the user's MOFANG_RANK=999.
    assert_eq!(lines[2], "j1 train alice team-a worker 1 2 3 0 4002 hello");
    let peers: serde_json::Value = serde_json::from_str(lines[3]).expect("peers JSON");
    assert_eq!(
        peers,
        serde_json::json!({"master": ["127.0.0.1:4000"], "worker": ["127.0.0.1:4001", "127.0.0.1:4002"]})
    );
    assert_eq!(lines[4], dir.path().join("data").display().to_string());
    assert_eq!(
        Path::new(lines[5]).canonicalize().expect("pwd"),
        l.working_dir.canonicalize().expect("work dir")
    );
    let ok = launch(dir.path(), "exit 0");
    let h = ex.start(&ok).await.expect("start");
    assert!(matches!(wait_end(&ex, &h, 10).await, Poll::Exited(s) if s.exit_code == Some(0)));
}

#[tokio::test]
async fn a_program_that_cannot_start_is_exit_127_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ex = executor();
    let mut l = launch(dir.path(), "");
    l.command = vec!["/no/such/program".into(), "x".into()];
    let h = ex.start(&l).await.expect("the shim starts");
    let Poll::Exited(status) = wait_end(&ex, &h, 10).await else {
        panic!("lost")
    };
    assert_eq!(status.exit_code, Some(127));
    let error = status.error.expect("an error");
    assert!(error.contains("/no/such/program"), "{error}");
    let log = std::fs::read_to_string(&l.log_path).expect("log");
    assert!(log.contains("/no/such/program"), "{log}");
}

#[tokio::test]
async fn terminate_gives_a_grace_period_then_kills_the_whole_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ex = executor();
    // Traps SIGTERM and exits 0 by itself.
    let polite = launch(
        dir.path(),
        "trap 'echo bye; exit 0' TERM; echo ready; while true; do sleep 0.05; done",
    );
    let h = ex.start(&polite).await.expect("start");
    wait_for_line(&polite.log_path, "ready").await;
    let end = ex
        .terminate(&h, Duration::from_secs(5))
        .await
        .expect("terminate");
    assert!(
        matches!(&end, Poll::Exited(s) if s.exit_code == Some(0)),
        "{end:?}"
    );
    assert!(
        std::fs::read_to_string(&polite.log_path)
            .expect("log")
            .contains("bye")
    );

    // Ignores SIGTERM and has a grandchild: both die of SIGKILL after the grace.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let stubborn = launch(
        dir2.path(),
        "trap '' TERM; sleep 300 & echo child=$!; while true; do sleep 0.05; done",
    );
    let h = ex.start(&stubborn).await.expect("start");
    let line = wait_for_line(&stubborn.log_path, "child=").await;
    let grandchild: u32 = line
        .trim_start_matches("child=")
        .trim()
        .parse()
        .expect("pid");
    assert!(pid_alive(grandchild));
    let started = Instant::now();
    let end = ex
        .terminate(&h, Duration::from_millis(500))
        .await
        .expect("terminate");
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "killed before the grace ended"
    );
    assert_eq!(end, Poll::Lost, "SIGKILL of the group takes the shim too");
    let deadline = Instant::now() + Duration::from_secs(5);
    while pid_alive(grandchild) || is_alive(h.pid, &h.start_token) {
        assert!(Instant::now() < deadline, "the group survived SIGKILL");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Terminating an ended replica is a no-op.
    assert_eq!(
        ex.terminate(&h, Duration::from_millis(10))
            .await
            .expect("again"),
        Poll::Lost
    );
}

async fn wait_for_line(path: &Path, prefix: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Some(line) = text.lines().find(|l| l.starts_with(prefix))
        {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no `{prefix}` line in {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn cpu_time_and_peak_memory_are_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ex = executor();
    let l = launch(
        dir.path(),
        "python3 -c \"import time\nb = bytearray(64 << 20)\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\"",
    );
    let h = ex.start(&l).await.expect("start");
    let Poll::Exited(status) = wait_end(&ex, &h, 20).await else {
        panic!("lost")
    };
    assert_eq!(
        status.exit_code,
        Some(0),
        "{}",
        std::fs::read_to_string(&l.log_path).unwrap_or_default()
    );
    // process_time() counts user + system time, so only their sum is guaranteed (a loaded
    // machine once recorded user 138 ms + system 315 ms here).
    let cpu = status.usage.user_cpu_ms + status.usage.system_cpu_ms;
    assert!(cpu >= 300, "{:?}", status.usage);
    assert!(status.usage.max_rss_kib >= 60 * 1024, "{:?}", status.usage);
}

#[tokio::test]
async fn a_new_executor_readopts_running_replicas_and_learns_how_they_ended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let gate = dir.path().join("gate");
    let l = launch(
        dir.path(),
        &format!(
            "while [ ! -f {} ]; do sleep 0.02; done; exit 7",
            gate.display()
        ),
    );
    let h = {
        let first = executor();
        first.start(&l).await.expect("start")
    };
    // A handle as the store keeps it, read by another executor (a restarted server).
    let stored = serde_json::to_string(&h).expect("serialise");
    let h2: Handle = serde_json::from_str(&stored).expect("deserialise");
    let second = executor();
    assert_eq!(second.poll(&h2).expect("poll"), Poll::Running);
    std::fs::write(&gate, b"go").expect("gate");
    assert!(matches!(wait_end(&second, &h2, 10).await, Poll::Exited(s) if s.exit_code == Some(7)));

    // The right pid with another start time is not the replica.
    let l2 = launch(dir.path(), "sleep 30");
    let h3 = second.start(&l2).await.expect("start");
    assert!(is_alive(h3.pid, &h3.start_token));
    assert!(!is_alive(h3.pid, "12345"));
    let mut impostor = h3.clone();
    impostor.start_token = "12345".into();
    impostor.status_path = dir.path().join("nothing.json");
    assert_eq!(second.poll(&impostor).expect("poll"), Poll::Lost);
    second
        .terminate(&h3, Duration::from_millis(100))
        .await
        .expect("stop");
}

#[tokio::test]
async fn the_shim_outlives_the_process_that_started_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let status = dir.path().join("status.json");
    let log = dir.path().join("log");
    let pidfile = dir.path().join("pid");
    // A short-lived parent starts the shim in the background and exits at once.
    let parent = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{SHIM} --log {} --status {} -- sh -c 'sleep 0.5; echo survived' & echo $! > {}",
            log.display(),
            status.display(),
            pidfile.display()
        ))
        .status()
        .expect("sh runs");
    assert!(parent.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !status.exists() {
        assert!(Instant::now() < deadline, "the shim died with its parent");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = std::fs::read_to_string(&status).expect("status");
    let s: mofang_executor::ExitStatus = serde_json::from_str(&text).expect("status JSON");
    assert_eq!(s.exit_code, Some(0));
    assert_eq!(std::fs::read_to_string(&log).expect("log"), "survived\n");
}

#[test]
fn capacity_is_this_machine() {
    let c = mofang_executor::detect_capacity();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as u64;
    assert_eq!(c.cpu_millis, cores * 1000);
    let meminfo = std::fs::read_to_string("/proc/meminfo").expect("meminfo");
    assert!(meminfo.contains(&format!("{} kB", c.memory_bytes / 1024)));
}
