//! Small scenarios that read as documentation: what the scheduler decides and what it says.

use mofang_scheduler::{
    Config, Error, PendingJob, Reason, Scheduler, Snapshot, TaskSpec, validate_job,
};

use crate::common::{job, job_with, node, queue, res, running, scheduler, snapshot};

fn message_for(d: &mofang_scheduler::Decisions, job: &str) -> String {
    d.waiting
        .iter()
        .find(|e| e.job == job)
        .map(|e| e.message.clone())
        .unwrap_or_else(|| panic!("no explanation for {job}: {d:?}"))
}

fn nodes_of(d: &mofang_scheduler::Decisions, job: &str) -> Vec<String> {
    d.placements
        .iter()
        .find(|p| p.job == job)
        .map(|p| p.replicas.iter().map(|r| r.node.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn a_gang_waits_for_its_queue_capability_then_packs_onto_one_node() {
    let mut team_a = queue("team-a", 1);
    team_a.capability = res(64, 512, 4);
    let mut snap = snapshot(
        vec![node("gpu-0", res(8, 64, 4)), node("gpu-1", res(8, 64, 4))],
        vec![team_a],
        vec![job("train", "team-a", 4, res(2, 8, 1))],
    );
    snap.running = vec![running("old", "team-a", "gpu-1", res(2, 8, 2))];
    let d = scheduler().schedule(&snap).expect("well formed");
    assert!(d.placements.is_empty());
    assert_eq!(
        message_for(&d, "train"),
        "waiting: gang needs 4 GPUs, queue team-a has 2 GPUs free of capability 4 GPUs"
    );
    assert!(!d.waiting[0].is_permanent());

    // The old job finishes: the gang starts, all four replicas on one node (best fit).
    snap.running.clear();
    let d = scheduler().schedule(&snap).expect("well formed");
    assert_eq!(nodes_of(&d, "train"), vec!["gpu-0"; 4]);
}

#[test]
fn a_gang_larger_than_its_queue_capability_is_rejected() {
    let mut team_a = queue("team-a", 1);
    team_a.capability = res(64, 512, 4);
    let j = job("huge", "team-a", 8, res(1, 1, 1));
    let snap = snapshot(
        vec![node("gpu-0", res(64, 512, 8))],
        vec![team_a],
        vec![j.clone()],
    );
    let d = scheduler().schedule(&snap).expect("well formed");
    let expected = "rejected: gang needs 8 GPUs but queue team-a's capability is 4 GPUs";
    assert_eq!(message_for(&d, "huge"), expected);
    assert!(d.waiting[0].is_permanent());
    // The API's admission check says the same before the job is ever stored.
    let err = validate_job(&j, &snap.queues, &snap.nodes).expect_err("too large");
    assert_eq!(format!("rejected: {err}"), expected);
}

#[test]
fn a_gang_larger_than_the_cluster_or_than_any_node_is_rejected() {
    let nodes = vec![node("gpu-0", res(8, 64, 4)), node("gpu-1", res(8, 64, 4))];
    let queues = vec![queue("team-a", 1)];
    let too_many = job("too-many", "team-a", 16, res(1, 1, 1));
    let too_wide = job("too-wide", "team-a", 1, res(12, 8, 1));
    let d = scheduler()
        .schedule(&snapshot(nodes, queues, vec![too_many, too_wide]))
        .expect("well formed");
    assert_eq!(
        message_for(&d, "too-many"),
        "rejected: gang needs 16 GPUs but the whole cluster has 8 GPUs"
    );
    assert_eq!(
        message_for(&d, "too-wide"),
        "rejected: a replica of task worker needs 1 GPU, 12 CPU, 8 GiB and no node has that much"
    );
}

#[test]
fn malformed_jobs_are_rejected_with_the_field_named() {
    let mut zero = job("zero", "q", 1, res(1, 1, 0));
    zero.tasks[0].replicas = 0;
    let mut min = job("min", "q", 2, res(1, 1, 0));
    min.min_available = Some(3);
    let dup = job_with(
        "dup",
        "q",
        vec![
            TaskSpec::new("worker", 1, res(1, 1, 0)),
            TaskSpec::new("worker", 1, res(1, 1, 0)),
        ],
    );
    let lost = job("lost", "nowhere", 1, res(1, 1, 0));
    let d = scheduler()
        .schedule(&snapshot(
            vec![node("n", res(8, 8, 0))],
            vec![queue("q", 1)],
            vec![zero, min, dup, lost],
        ))
        .expect("well formed");
    assert_eq!(
        message_for(&d, "zero"),
        "rejected: task worker: replicas must be at least 1"
    );
    assert_eq!(
        message_for(&d, "min"),
        "rejected: min_available 3 is more than the job's 2 replicas"
    );
    assert_eq!(
        message_for(&d, "dup"),
        "rejected: role worker appears twice"
    );
    assert_eq!(
        message_for(&d, "lost"),
        "rejected: queue nowhere does not exist"
    );
}

#[test]
fn a_gang_is_all_or_nothing_unless_min_available_says_otherwise() {
    let nodes = vec![node("n0", res(5, 16, 0)), node("n1", res(5, 16, 0))];
    let all = job("all", "q", 3, res(3, 1, 0));
    let d = scheduler()
        .schedule(&snapshot(
            nodes.clone(),
            vec![queue("q", 1)],
            vec![all.clone()],
        ))
        .expect("well formed");
    assert!(
        d.placements.is_empty(),
        "nothing is held while the gang waits"
    );
    assert_eq!(
        message_for(&d, "all"),
        "waiting: gang needs 3 replicas (9 CPU, 3 GiB in all) and only 2 fit on the free \
         capacity now; the cluster has 10 CPU, 32 GiB free"
    );

    let mut elastic = all;
    elastic.min_available = Some(2);
    let d = scheduler()
        .schedule(&snapshot(nodes, vec![queue("q", 1)], vec![elastic]))
        .expect("well formed");
    let mut got: Vec<(String, u32, String)> = d.placements[0]
        .replicas
        .iter()
        .map(|r| (r.role.clone(), r.index, r.node.clone()))
        .collect();
    got.sort();
    assert_eq!(
        got,
        vec![
            ("worker".into(), 0, "n0".into()),
            ("worker".into(), 1, "n1".into())
        ]
    );
}

#[test]
fn cpu_work_stays_off_gpu_nodes_while_cpu_nodes_have_room() {
    let nodes = vec![node("cpu-0", res(8, 32, 0)), node("gpu-0", res(8, 32, 4))];
    let d = scheduler()
        .schedule(&snapshot(
            nodes.clone(),
            vec![queue("q", 1)],
            vec![
                job("etl", "q", 4, res(2, 4, 0)),
                job("train", "q", 2, res(2, 4, 2)),
                job("more-etl", "q", 1, res(2, 4, 0)),
            ],
        ))
        .expect("well formed");
    assert_eq!(nodes_of(&d, "etl"), vec!["cpu-0"; 4]);
    assert_eq!(nodes_of(&d, "train"), vec!["gpu-0"; 2]);
    // CPU nodes are full now: CPU work may use the GPU node's spare CPU.
    assert_eq!(nodes_of(&d, "more-etl"), vec!["gpu-0"]);
}

#[test]
fn higher_priority_first_then_first_come_first_served() {
    let mut low = job("low", "q", 1, res(4, 1, 0));
    low.priority = 0;
    let mut high_early = job("high-early", "q", 1, res(4, 1, 0));
    high_early.priority = 5;
    let mut high_late = job("high-late", "q", 1, res(4, 1, 0));
    high_late.priority = 5;
    let d = scheduler()
        .schedule(&snapshot(
            vec![node("n", res(4, 16, 0))],
            vec![queue("q", 1)],
            vec![low, high_early, high_late],
        ))
        .expect("well formed");
    assert_eq!(d.placements.len(), 1);
    assert_eq!(d.placements[0].job, "high-early");
}

#[test]
fn a_small_job_backfills_ahead_of_a_blocked_big_one() {
    let mut snap = snapshot(
        vec![node("n", res(4, 16, 0))],
        vec![queue("q", 1)],
        vec![
            job("big", "q", 1, res(4, 1, 0)),
            job("small", "q", 1, res(1, 1, 0)),
        ],
    );
    snap.running = vec![running("r", "q", "n", res(2, 1, 0))];
    let d = scheduler().schedule(&snap).expect("well formed");
    assert_eq!(nodes_of(&d, "small"), vec!["n"]);
    assert!(
        matches!(d.waiting[0].reason, Reason::Insufficient { .. }),
        "{d:#?}"
    );
}

fn starving_setup() -> Snapshot {
    let mut big = job("big", "q", 1, res(4, 8, 0));
    big.queued_at = 0;
    let mut small = job("small", "q", 1, res(1, 1, 0));
    small.queued_at = 1000;
    let mut snap = snapshot(
        vec![node("node-0", res(4, 16, 0)), node("node-1", res(4, 16, 0))],
        vec![queue("q", 1)],
        vec![big, small],
    );
    snap.now = 1000;
    snap.running = vec![
        running("r0", "q", "node-0", res(2, 4, 0)),
        running("r1", "q", "node-1", res(3, 4, 0)),
    ];
    snap
}

#[test]
fn a_starving_gang_reserves_nodes_that_then_drain_for_it() {
    let s = scheduler(); // starvation after 300 s, one reservation at a time
    let mut snap = starving_setup();
    let d = s.schedule(&snap).expect("well formed");
    // This cycle the small job still backfills (onto the fuller node, best fit) ...
    assert_eq!(nodes_of(&d, "small"), vec!["node-1"]);
    // ... and the big job, queued 1000 s ago, reserves the node that will drain first.
    assert_eq!(
        message_for(&d, "big"),
        "waiting: queued 1000s, past the starvation limit, so it holds node node-0 for its \
         gang (4 CPU, 8 GiB); other jobs may use only what the gang does not need there, and it \
         starts once enough running work has finished"
    );
    assert_eq!(d.reservations.len(), 1);

    // Next cycle: the reservation is handed back; a new small job may not use node-0.
    snap.pending.retain(|j| j.id == "big");
    snap.running
        .push(running("small", "q", "node-1", res(1, 1, 0)));
    let mut small2 = job("small-2", "q", 1, res(1, 1, 0));
    small2.queued_at = 1001;
    small2.submit_seq = 9;
    snap.pending.push(small2);
    snap.now = 1001;
    snap.reservations = d.reservations.clone();
    let d = s.schedule(&snap).expect("well formed");
    assert!(d.placements.is_empty());
    assert_eq!(
        message_for(&d, "small-2"),
        "waiting: no node has free capacity for a worker replica (1 CPU, 1 GiB); the gang \
         needs 1 replica (1 CPU, 1 GiB in all); the cluster has 0 CPU, 15 GiB free; capacity \
         is held for starving job big"
    );

    // node-0's running work finishes: the big job starts there, the reservation ends.
    snap.running.retain(|a| a.node != "node-0");
    snap.reservations = d.reservations.clone();
    let d = s.schedule(&snap).expect("well formed");
    assert_eq!(nodes_of(&d, "big"), vec!["node-0"]);
    assert!(d.reservations.is_empty());
}

#[test]
fn capacity_no_queue_within_its_share_can_use_is_lent() {
    let mut snap = snapshot(
        vec![node("n", res(8, 64, 0))],
        vec![queue("a", 1), queue("b", 1)],
        vec![
            job("a-job", "a", 1, res(2, 1, 0)),
            job("b-job", "b", 1, res(6, 1, 0)),
        ],
    );
    snap.running = vec![running("a-old", "a", "n", res(4, 1, 0))];
    // a holds its fair half already; b's job does not fit the free 4 CPU.
    let strict = Scheduler::new(Config {
        lend_idle_capacity: false,
        ..Config::default()
    });
    let d = strict.schedule(&snap).expect("well formed");
    assert_eq!(
        message_for(&d, "a-job"),
        "waiting: queue a holds 4 CPU and the gang needs 2 CPU more, past the queue's fair \
         share of 4 CPU (weight 1 of 2); capacity goes to queues below their share first and \
         nothing left over fits this gang"
    );
    let d = scheduler().schedule(&snap).expect("well formed");
    assert_eq!(nodes_of(&d, "a-job"), vec!["n"]);
    assert!(matches!(
        d.waiting
            .iter()
            .find(|e| e.job == "b-job")
            .map(|e| &e.reason),
        Some(Reason::Insufficient { .. })
    ));
}

#[test]
fn other_queues_guarantees_are_kept_free() {
    let mut b = queue("b", 1);
    b.guarantee = res(4, 0, 0);
    let d = scheduler()
        .schedule(&snapshot(
            vec![node("n", res(8, 64, 0))],
            vec![queue("a", 1), b],
            vec![job("a-job", "a", 1, res(6, 1, 0))],
        ))
        .expect("well formed");
    assert_eq!(
        message_for(&d, "a-job"),
        "waiting: gang needs 6 CPU, queue a has 4 CPU free of capability unlimited CPU \
         (4 CPU after other queues' guarantees)"
    );
}

#[test]
fn replicas_beyond_the_gang_start_if_they_fit() {
    let mut j = job("elastic", "q", 4, res(2, 1, 0));
    j.min_available = Some(2);
    let d = scheduler()
        .schedule(&snapshot(
            vec![node("n", res(6, 64, 0))],
            vec![queue("q", 1)],
            vec![j],
        ))
        .expect("well formed");
    assert_eq!(nodes_of(&d, "elastic").len(), 3);
}

#[test]
fn a_snapshot_that_breaks_its_invariants_is_an_error() {
    let dup_nodes = snapshot(
        vec![node("n", res(1, 1, 0)), node("n", res(1, 1, 0))],
        vec![],
        vec![],
    );
    assert_eq!(
        scheduler().schedule(&dup_nodes),
        Err(Error::DuplicateNode("n".into()))
    );
    let mut bad_queue = queue("q", 0);
    bad_queue.weight = 0;
    let err = scheduler()
        .schedule(&snapshot(vec![], vec![bad_queue], vec![]))
        .expect_err("weight 0");
    assert_eq!(err.to_string(), "queue \"q\": weight must be at least 1");
    let j: PendingJob = job("j", "q", 1, res(1, 1, 0));
    let dup_jobs = snapshot(vec![], vec![queue("q", 1)], vec![j.clone(), j]);
    assert_eq!(
        scheduler().schedule(&dup_jobs),
        Err(Error::DuplicateJob("j".into()))
    );
}
