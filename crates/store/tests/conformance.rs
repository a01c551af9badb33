//! One conformance suite, run against SQLite (a temporary file) and PostgreSQL (a throwaway
//! cluster of Debian's server, `mofang_store::testing`): every case is a function over a
//! `&Store`, and `conformance!` makes a test of it per engine.

use std::collections::BTreeSet;

use mofang_store::testing::TestPostgres;
use mofang_store::{
    Error, EventKind, JobFilter, JobSpec, JobState, NewJob, QueueRecord, QueueResources,
    ReplicaRecord, ReplicaState, Store,
};
use sha2::{Digest, Sha256};
use sqlx::Row;

struct Db {
    store: Store,
    _pg: Option<TestPostgres>,
    _dir: tempfile::TempDir,
    url: String,
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite:{}", dir.path().join("meta.db").display());
    let store = Store::open(&url).await.expect("open sqlite");
    assert_eq!(store.backend(), "sqlite");
    Db {
        store,
        _pg: None,
        _dir: dir,
        url,
    }
}

async fn postgres() -> Db {
    let pg = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .expect("cluster");
    let url = pg.fresh_database();
    let store = Store::open(&url).await.expect("open postgres");
    assert_eq!(store.backend(), "postgres");
    Db {
        store,
        _pg: Some(pg),
        _dir: tempfile::tempdir().expect("tempdir"),
        url,
    }
}

impl Db {
    /// A pool straight onto the database, beside the store: the tests read and corrupt tables
    /// with it, independently of the store's own queries.
    async fn raw(&self) -> sqlx::AnyPool {
        sqlx::any::install_default_drivers();
        sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&self.url)
            .await
            .expect("a raw connection")
    }

    async fn count(&self, table: &str) -> i64 {
        let raw = self.raw().await;
        let n = sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table}"))
            .fetch_one(&raw)
            .await
            .expect("count")
            .try_get("n")
            .expect("a count");
        raw.close().await;
        n
    }

    async fn execute(&self, sql: &str) -> u64 {
        let raw = self.raw().await;
        let n = sqlx::query(sql)
            .execute(&raw)
            .await
            .expect("raw SQL")
            .rows_affected();
        raw.close().await;
        n
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::sqlite().await;
                    super::$case(&db).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::postgres().await;
                    super::$case(&db).await;
                }
            )*
        }
    };
}

conformance!(
    migrations_are_idempotent,
    tokens_authenticate_and_are_stored_hashed,
    queues_are_unique_and_listed_by_name,
    jobs_insert_with_a_first_condition_and_live_names_are_unique,
    a_job_for_an_unknown_queue_writes_nothing,
    transitions_are_compare_and_set,
    repeated_events_are_counted,
    replica_attempts_upsert_and_list,
    list_filters_and_orders,
    concurrent_inserts_get_unique_increasing_seq,
    concurrent_transitions_have_one_winner,
    corrupt_values_are_reported_by_column,
    a_newer_schema_is_refused,
);

fn spec(name: &str) -> JobSpec {
    JobSpec::parse(&format!(
        "name: {name}\npriority: 3\ntasks:\n- role: master\n  command: [python, train.py]\n  resources: {{cpu: 500m, memory: 1Gi}}\n- role: worker\n  replicas: 2\n  command: [python, train.py]\n  args: [--lr, '0.1']\n  env: {{A: b}}\n  resources: {{cpu: 2, gpu: 1}}\n  restart_policy: ExitCode\nmounts:\n- {{name: data, scope: group, path: d}}\n"
    ))
    .expect("a valid spec")
}

fn new_job(id: &str, name: &str, user: &str, group: &str, queue: &str) -> NewJob {
    NewJob {
        id: id.into(),
        name: name.into(),
        user: user.into(),
        group: group.into(),
        queue: queue.into(),
        priority: 3,
        spec: spec(name),
        now_ms: 1_000,
    }
}

async fn queue(store: &Store, name: &str) {
    store
        .create_queue(&QueueRecord {
            name: name.into(),
            group: None,
            weight: 1,
            capability: QueueResources::default(),
            guarantee: QueueResources::default(),
            created_ms: 1,
        })
        .await
        .expect("queue");
}

async fn migrations_are_idempotent(db: &Db) {
    queue(&db.store, "q").await;
    // Opening again migrates nothing and loses nothing.
    let again = Store::open(&db.url).await.expect("reopen");
    assert_eq!(again.list_queues().await.expect("list").len(), 1);
    let again = Store::open(&db.url).await.expect("reopen twice");
    assert_eq!(again.list_queues().await.expect("list").len(), 1);
    assert_eq!(db.count("queues").await, 1);
    assert_eq!(
        db.count("schema_migrations").await,
        1,
        "migration 1 recorded once"
    );
}

async fn tokens_authenticate_and_are_stored_hashed(db: &Db) {
    let s = &db.store;
    let alice = s
        .create_token("alice", "team-a", false, 5)
        .await
        .expect("token");
    let root = s.create_token("root", "ops", true, 5).await.expect("token");
    assert_ne!(alice, root);
    assert!(alice.starts_with("mft_") && alice.len() > 40, "{alice}");
    let p = s.authenticate(&alice).await.expect("auth").expect("known");
    assert_eq!(
        (p.user.as_str(), p.group.as_str(), p.admin),
        ("alice", "team-a", false)
    );
    assert!(
        s.authenticate(&root)
            .await
            .expect("auth")
            .expect("known")
            .admin
    );
    assert!(s.authenticate("mft_nope").await.expect("auth").is_none());
    assert!(
        s.authenticate(&alice[..alice.len() - 1])
            .await
            .expect("auth")
            .is_none()
    );
    // Only SHA-256 hashes are stored: read every text column of the table.
    let raw = db.raw().await;
    let rows = sqlx::query("SELECT hash, user_name, group_name FROM tokens ORDER BY user_name")
        .fetch_all(&raw)
        .await
        .expect("read tokens");
    let stored: Vec<String> = rows
        .iter()
        .flat_map(|r| (0..3).map(|i| r.try_get::<String, _>(i).expect("text")))
        .collect();
    for token in [&alice, &root] {
        assert!(
            stored.iter().all(|v| !v.contains(token.as_str())),
            "a token was stored in plaintext"
        );
    }
    let hex = |t: &str| -> String {
        Sha256::digest(t.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(
        stored[0],
        hex(&alice),
        "alice's row holds the SHA-256 of her token"
    );
    assert_eq!(stored[3], hex(&root));
    raw.close().await;
    match s.create_token("Not A Label", "g", false, 1).await {
        Err(Error::Invalid { field, .. }) => assert_eq!(field, "user"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

async fn queues_are_unique_and_listed_by_name(db: &Db) {
    let s = &db.store;
    let q = QueueRecord {
        name: "team-b".into(),
        group: Some("team-b".into()),
        weight: 3,
        capability: QueueResources {
            cpu_millis: Some(4000),
            memory_bytes: None,
            gpu: Some(2),
        },
        guarantee: QueueResources {
            cpu_millis: Some(1000),
            memory_bytes: None,
            gpu: None,
        },
        created_ms: 9,
    };
    s.create_queue(&q).await.expect("create");
    queue(s, "team-a").await;
    match s.create_queue(&q).await {
        Err(Error::Conflict(m)) => assert!(m.contains("team-b"), "{m}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    assert_eq!(s.get_queue("team-b").await.expect("get"), Some(q.clone()));
    assert_eq!(s.get_queue("nope").await.expect("get"), None);
    let names: Vec<String> = s
        .list_queues()
        .await
        .expect("list")
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, ["team-a", "team-b"]);
}

async fn jobs_insert_with_a_first_condition_and_live_names_are_unique(db: &Db) {
    let s = &db.store;
    queue(s, "q").await;
    let job = s
        .insert_job(&new_job("j1", "train", "alice", "team-a", "q"))
        .await
        .expect("insert");
    assert_eq!(job.state, JobState::Created);
    let stored = s.get_job("j1").await.expect("get").expect("stored");
    assert_eq!(stored, job);
    assert_eq!(stored.spec, spec("train"), "the spec round-trips exactly");
    let conditions = s.conditions("j1").await.expect("conditions");
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0].state, JobState::Created);
    // Same user, same live name: conflict. Another user may use the name.
    match s
        .insert_job(&new_job("j2", "train", "alice", "team-a", "q"))
        .await
    {
        Err(Error::Conflict(m)) => assert!(m.contains("train"), "{m}"),
        other => panic!("expected Conflict, got {other:?}"),
    }
    s.insert_job(&new_job("j3", "train", "bob", "team-a", "q"))
        .await
        .expect("another user's job of the same name");
    // Once the first is final, the name is free again.
    s.transition(
        "j1",
        &[JobState::Created],
        JobState::Cancelled,
        "Cancelled",
        "by alice",
        2_000,
    )
    .await
    .expect("cancel")
    .expect("moved");
    s.insert_job(&new_job("j4", "train", "alice", "team-a", "q"))
        .await
        .expect("the name is free after the first job ended");
    // The refused insert left nothing: j1 (Created, Cancelled), j3 and j4 (Created).
    assert_eq!(db.count("jobs").await, 3);
    assert_eq!(db.count("conditions").await, 4);
    // A taken id is a conflict too.
    assert!(matches!(
        s.insert_job(&new_job("j3", "other", "carol", "team-b", "q"))
            .await,
        Err(Error::Conflict(_))
    ));
    assert_eq!(db.count("jobs").await, 3);
}

async fn a_job_for_an_unknown_queue_writes_nothing(db: &Db) {
    let s = &db.store;
    match s
        .insert_job(&new_job("j1", "x", "alice", "team-a", "ghost"))
        .await
    {
        Err(Error::NotFound(m)) => assert!(m.contains("ghost"), "{m}"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(
        (db.count("jobs").await, db.count("conditions").await),
        (0, 0)
    );
}

async fn transitions_are_compare_and_set(db: &Db) {
    let s = &db.store;
    queue(s, "q").await;
    s.insert_job(&new_job("j", "t", "u", "g", "q"))
        .await
        .expect("insert");
    // Wrong `from`: nothing changes.
    let none = s
        .transition("j", &[JobState::Queued], JobState::Running, "X", "x", 5)
        .await
        .expect("call");
    assert!(none.is_none());
    // Illegal even when `from` matches: Created cannot become Running directly.
    let none = s
        .transition("j", &[JobState::Created], JobState::Running, "X", "x", 5)
        .await
        .expect("call");
    assert!(none.is_none());
    let q = s
        .transition(
            "j",
            &[JobState::Created],
            JobState::Queued,
            "Queued",
            "in q",
            10,
        )
        .await
        .expect("call")
        .expect("moved");
    assert_eq!(
        (q.state, q.queued_ms, q.message.as_str()),
        (JobState::Queued, Some(10), "in q")
    );
    let r = s
        .transition(
            "j",
            &[JobState::Queued],
            JobState::Running,
            "GangScheduled",
            "go",
            20,
        )
        .await
        .expect("call")
        .expect("moved");
    assert_eq!(r.started_ms, Some(20));
    assert_eq!(s.record_restart("j").await.expect("restart"), 1);
    assert_eq!(s.record_restart("j").await.expect("restart"), 2);
    s.transition(
        "j",
        &[JobState::Running],
        JobState::Restarting,
        "R",
        "r",
        25,
    )
    .await
    .expect("call")
    .expect("moved");
    s.transition(
        "j",
        &[JobState::Restarting],
        JobState::Running,
        "R",
        "again",
        27,
    )
    .await
    .expect("call")
    .expect("moved");
    let done = s
        .transition(
            "j",
            &[JobState::Running],
            JobState::Succeeded,
            "Done",
            "ok",
            30,
        )
        .await
        .expect("call")
        .expect("moved");
    assert_eq!(
        (done.finished_ms, done.started_ms, done.restarts),
        (Some(30), Some(20), 2)
    );
    // Final is final.
    assert!(
        s.transition("j", &JobState::ALL, JobState::Failed, "X", "x", 40)
            .await
            .expect("call")
            .is_none()
    );
    let states: Vec<JobState> = s
        .conditions("j")
        .await
        .expect("conditions")
        .into_iter()
        .map(|c| c.state)
        .collect();
    use JobState::*;
    assert_eq!(
        states,
        [Created, Queued, Running, Restarting, Running, Succeeded]
    );
    assert!(s.live_jobs().await.expect("live").is_empty());
    assert!(matches!(
        s.transition("missing", &[Created], Queued, "X", "x", 1)
            .await,
        Err(Error::NotFound(_))
    ));
}

async fn repeated_events_are_counted(db: &Db) {
    let s = &db.store;
    queue(s, "q").await;
    s.insert_job(&new_job("j", "t", "u", "g", "q"))
        .await
        .expect("insert");
    for t in 0..5 {
        s.add_event(
            "j",
            EventKind::Warning,
            "Waiting",
            "waiting: gang needs 4 GPUs",
            100 + t,
        )
        .await
        .expect("event");
    }
    s.add_event("j", EventKind::Normal, "Started", "go", 200)
        .await
        .expect("event");
    s.add_event(
        "j",
        EventKind::Warning,
        "Waiting",
        "waiting: gang needs 4 GPUs",
        300,
    )
    .await
    .expect("event");
    let events = s.events("j").await.expect("events");
    let summary: Vec<(EventKind, &str, u32, i64, i64)> = events
        .iter()
        .map(|e| (e.kind, e.reason.as_str(), e.count, e.first_ms, e.last_ms))
        .collect();
    assert_eq!(
        summary,
        [
            (EventKind::Warning, "Waiting", 5, 100, 104),
            (EventKind::Normal, "Started", 1, 200, 200),
            (EventKind::Warning, "Waiting", 1, 300, 300),
        ]
    );
    assert!(matches!(
        s.add_event("nope", EventKind::Normal, "X", "x", 1).await,
        Err(Error::NotFound(_))
    ));
}

async fn replica_attempts_upsert_and_list(db: &Db) {
    let s = &db.store;
    queue(s, "q").await;
    s.insert_job(&new_job("j", "t", "u", "g", "q"))
        .await
        .expect("insert");
    let mut r = ReplicaRecord {
        job_id: "j".into(),
        role: "worker".into(),
        index: 1,
        attempt: 0,
        state: ReplicaState::Pending,
        node: "local".into(),
        pid: None,
        start_token: None,
        log_path: "/l/worker-1.0.log".into(),
        status_path: "/s/worker-1.0.json".into(),
        exit_code: None,
        signal: None,
        started_ms: None,
        finished_ms: None,
        usage: None,
        message: String::new(),
    };
    s.upsert_replica(&r).await.expect("pending");
    r.state = ReplicaState::Running;
    r.pid = Some(4242);
    r.start_token = Some("123456".into());
    r.started_ms = Some(5);
    s.upsert_replica(&r).await.expect("running");
    r.state = ReplicaState::Failed;
    r.exit_code = Some(137);
    r.usage = Some(serde_json::json!({"user_cpu_ms": 12, "max_rss_kib": 3000}));
    r.finished_ms = Some(9);
    s.upsert_replica(&r).await.expect("failed");
    let mut second = r.clone();
    second.attempt = 1;
    second.state = ReplicaState::Running;
    second.exit_code = None;
    s.upsert_replica(&second).await.expect("attempt 1");
    let mut master = r.clone();
    master.role = "master".into();
    master.index = 0;
    s.upsert_replica(&master).await.expect("master");
    let rows = s.replicas("j").await.expect("list");
    let keys: Vec<(&str, u32, u32, ReplicaState)> = rows
        .iter()
        .map(|r| (r.role.as_str(), r.index, r.attempt, r.state))
        .collect();
    assert_eq!(
        keys,
        [
            ("master", 0, 0, ReplicaState::Failed),
            ("worker", 1, 0, ReplicaState::Failed),
            ("worker", 1, 1, ReplicaState::Running),
        ]
    );
    assert_eq!(rows[1], r, "every field round-trips");
    let mut orphan = r.clone();
    orphan.job_id = "ghost".into();
    assert!(matches!(
        s.upsert_replica(&orphan).await,
        Err(Error::NotFound(_))
    ));
}

async fn list_filters_and_orders(db: &Db) {
    let s = &db.store;
    queue(s, "qa").await;
    queue(s, "qb").await;
    for (i, (user, group, q)) in [
        ("alice", "team-a", "qa"),
        ("bob", "team-a", "qb"),
        ("carol", "team-b", "qb"),
        ("alice", "team-a", "qb"),
    ]
    .iter()
    .enumerate()
    {
        s.insert_job(&new_job(&format!("j{i}"), &format!("n{i}"), user, group, q))
            .await
            .expect("insert");
    }
    s.transition("j1", &[JobState::Created], JobState::Queued, "Q", "q", 5)
        .await
        .expect("call")
        .expect("moved");
    let ids = |jobs: Vec<mofang_store::JobRecord>| -> Vec<String> {
        jobs.into_iter().map(|j| j.id).collect()
    };
    let all = ids(s.list_jobs(&JobFilter::default()).await.expect("list"));
    assert_eq!(all, ["j3", "j2", "j1", "j0"], "newest first");
    let f = |f: JobFilter| async move { ids(s.list_jobs(&f).await.expect("list")) };
    assert_eq!(
        f(JobFilter {
            user: Some("alice".into()),
            ..Default::default()
        })
        .await,
        ["j3", "j0"]
    );
    assert_eq!(
        f(JobFilter {
            queue: Some("qb".into()),
            ..Default::default()
        })
        .await,
        ["j3", "j2", "j1"]
    );
    assert_eq!(
        f(JobFilter {
            states: vec![JobState::Queued],
            ..Default::default()
        })
        .await,
        ["j1"]
    );
    assert_eq!(
        f(JobFilter {
            states: vec![JobState::Queued, JobState::Created],
            limit: Some(2),
            ..Default::default()
        })
        .await,
        ["j3", "j2"]
    );
    assert_eq!(
        f(JobFilter {
            visible_to: Some(("carol".into(), "team-b".into())),
            ..Default::default()
        })
        .await,
        ["j2"]
    );
    assert_eq!(
        f(JobFilter {
            visible_to: Some(("dave".into(), "team-a".into())),
            group: Some("team-a".into()),
            ..Default::default()
        })
        .await,
        ["j3", "j1", "j0"]
    );
    let live = ids(s.live_jobs().await.expect("live"));
    assert_eq!(live, ["j0", "j1", "j2", "j3"], "live jobs oldest first");
}

async fn concurrent_inserts_get_unique_increasing_seq(db: &Db) {
    let s = &db.store;
    queue(s, "q").await;
    let mut tasks = Vec::new();
    for i in 0..24 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.insert_job(&new_job(&format!("j{i}"), &format!("n{i}"), "u", "g", "q"))
                .await
                .map(|j| j.seq)
        }));
    }
    let mut seqs = BTreeSet::new();
    for t in tasks {
        let seq = t.await.expect("task").expect("insert");
        assert!(seqs.insert(seq), "seq {seq} given twice");
    }
    assert_eq!(seqs.len(), 24);
    let listed: Vec<i64> = s
        .list_jobs(&JobFilter::default())
        .await
        .expect("list")
        .into_iter()
        .map(|j| j.seq)
        .collect();
    let mut sorted = listed.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(listed, sorted);
}

async fn corrupt_values_are_reported_by_column(db: &Db) {
    let s = &db.store;
    queue(s, "q").await;
    s.insert_job(&new_job("j", "t", "u", "g", "q"))
        .await
        .expect("insert");
    db.execute("UPDATE jobs SET state = 'Sleeping' WHERE id = 'j'")
        .await;
    match s.get_job("j").await {
        Err(Error::Corrupt(m)) => assert!(m.contains("jobs.state"), "{m}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    db.execute("UPDATE jobs SET state = 'Created', spec = '{\"name\": 1}' WHERE id = 'j'")
        .await;
    match s.get_job("j").await {
        Err(Error::Corrupt(m)) => assert!(m.contains("jobs.spec"), "{m}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    s.add_event("j", EventKind::Normal, "R", "m", 1)
        .await
        .expect("event");
    db.execute("UPDATE events SET kind = 'Loud'").await;
    match s.events("j").await {
        Err(Error::Corrupt(m)) => assert!(m.contains("events.kind"), "{m}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    db.execute("UPDATE conditions SET state = 'Dozing'").await;
    match s.conditions("j").await {
        Err(Error::Corrupt(m)) => assert!(m.contains("conditions.state"), "{m}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

async fn concurrent_transitions_have_one_winner(db: &Db) {
    let s = &db.store;
    queue(s, "q").await;
    s.insert_job(&new_job("j", "t", "u", "g", "q"))
        .await
        .expect("insert");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.transition(
                "j",
                &[JobState::Created],
                JobState::Queued,
                "Queued",
                &format!("by {i}"),
                10 + i,
            )
            .await
        }));
    }
    let mut winners = Vec::new();
    for t in tasks {
        if let Some(job) = t.await.expect("task").expect("transition") {
            winners.push(job);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one compare-and-set wins");
    let conditions = s.conditions("j").await.expect("conditions");
    assert_eq!(
        conditions.len(),
        2,
        "one condition per change: {conditions:?}"
    );
    assert_eq!(conditions[1].message, winners[0].message);
    let stored = s.get_job("j").await.expect("get").expect("stored");
    assert_eq!(stored, winners[0]);
}

async fn a_newer_schema_is_refused(db: &Db) {
    db.execute(
        "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (9999, 'future', 1)",
    )
    .await;
    match Store::open(&db.url).await {
        Err(Error::Migrate { version, message }) => {
            assert_eq!(version, 9999);
            assert!(message.contains("newer"), "{message}");
        }
        Err(other) => panic!("expected Migrate, got {other:?}"),
        Ok(_) => panic!("a database of a newer schema opened"),
    }
}

#[tokio::test]
async fn sqlite_memory_is_one_database_and_files_get_their_directory() {
    let memory = Store::open("sqlite::memory:").await.expect("memory");
    queue(&memory, "q").await;
    let clone = memory.clone();
    assert_eq!(clone.list_queues().await.expect("list").len(), 1);
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("new/deeper/meta.db");
    let store = Store::open(&format!("sqlite:{}", path.display()))
        .await
        .expect("open in a directory that does not exist yet");
    queue(&store, "q").await;
    assert!(path.is_file());
}

#[tokio::test]
async fn unsupported_urls_are_refused_by_scheme() {
    match Store::open("mysql://x/y").await {
        Err(Error::Config(m)) => assert!(m.contains("mysql"), "{m}"),
        other => panic!("expected Config, got {other:?}"),
    }
}
