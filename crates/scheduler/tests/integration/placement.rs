//! The placement rules, one scenario each: node selectors, CPU-only roles off GPU nodes,
//! a job's GPU replicas packed, and the `Spread` baseline they are measured against.

use std::collections::BTreeSet;

use mofang_scheduler::sim::MixedScenario;
use mofang_scheduler::{
    Config, Decisions, Node, PendingJob, PlacementPolicy, Reason, Rejection, Scheduler, Snapshot,
    TaskSpec, validate_job,
};

use crate::common::{job, job_with, node, queue, res, running, snapshot};

fn with(placement: PlacementPolicy) -> Scheduler {
    Scheduler::new(Config {
        placement,
        ..Config::default()
    })
}

fn decide(placement: PlacementPolicy, snap: &Snapshot) -> Decisions {
    with(placement).schedule(snap).expect("well formed")
}

/// `(role, node)` of every placed replica of `job`, in placement order.
fn replicas_of(d: &Decisions, job: &str) -> Vec<(String, String)> {
    d.placements
        .iter()
        .find(|p| p.job == job)
        .map(|p| {
            p.replicas
                .iter()
                .map(|r| (r.role.clone(), r.node.clone()))
                .collect()
        })
        .unwrap_or_default()
}

fn nodes_of(d: &Decisions, job: &str) -> BTreeSet<String> {
    replicas_of(d, job).into_iter().map(|(_, n)| n).collect()
}

fn nodes_of_role(d: &Decisions, job: &str, role: &str) -> BTreeSet<String> {
    replicas_of(d, job)
        .into_iter()
        .filter(|(r, _)| r == role)
        .map(|(_, n)| n)
        .collect()
}

fn gpu_node(name: &str, accelerator: &str, zone: &str) -> Node {
    Node::new(name, res(64, 512, 8)).with_labels([("accelerator", accelerator), ("zone", zone)])
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_string()).collect()
}

#[test]
fn the_builders_keep_the_old_constructors_and_add_labels_and_selectors() {
    let n = Node::new("gpu-0", res(8, 64, 8)).with_labels([("zone", "a"), ("accelerator", "h100")]);
    assert_eq!(n.labels.get("zone").map(String::as_str), Some("a"));
    let t = TaskSpec::new("worker", 2, res(1, 1, 1)).with_node_selector([("zone", "a")]);
    assert!(n.matches(&t.node_selector));
    let elsewhere = TaskSpec::new("worker", 2, res(1, 1, 1)).with_node_selector([("zone", "b")]);
    assert!(!n.matches(&elsewhere.node_selector));
    assert!(
        Node::new("bare", res(1, 1, 0)).matches(&TaskSpec::new("w", 1, res(1, 1, 0)).node_selector)
    );
    assert_eq!(Config::default().placement, PlacementPolicy::Pack);
}

#[test]
fn a_selector_sends_replicas_only_to_nodes_carrying_every_label() {
    // gpu-0 is the better fit (partly used), but only gpu-2 is both h100 and zone a.
    let mut snap = snapshot(
        vec![
            gpu_node("gpu-0", "h100", "b"),
            gpu_node("gpu-1", "a100", "a"),
            gpu_node("gpu-2", "h100", "a"),
        ],
        vec![queue("q", 1)],
        vec![job_with(
            "train",
            "q",
            vec![
                TaskSpec::new("worker", 2, res(8, 64, 2))
                    .with_node_selector([("accelerator", "h100"), ("zone", "a")]),
            ],
        )],
    );
    snap.running = vec![running("old", "q", "gpu-0", res(8, 64, 4))];
    for policy in [PlacementPolicy::Pack, PlacementPolicy::Spread] {
        let d = decide(policy, &snap);
        assert_eq!(nodes_of(&d, "train"), set(&["gpu-2"]), "{policy:?}");
    }
}

#[test]
fn a_selector_no_node_satisfies_is_rejected_naming_it() {
    let nodes = vec![
        gpu_node("gpu-0", "a100", "a"),
        gpu_node("gpu-1", "h100", "b"),
    ];
    let tpu = job_with(
        "tpu",
        "q",
        vec![TaskSpec::new("worker", 1, res(1, 1, 1)).with_node_selector([("accelerator", "tpu")])],
    );
    // Each label exists, but no node carries both.
    let both = job_with(
        "both",
        "q",
        vec![
            TaskSpec::new("launcher", 1, res(1, 1, 0)),
            TaskSpec::new("worker", 1, res(1, 1, 1))
                .with_node_selector([("accelerator", "h100"), ("zone", "a")]),
        ],
    );
    // Nodes match, but none is large enough.
    let wide = job_with(
        "wide",
        "q",
        vec![TaskSpec::new("worker", 1, res(8, 8, 9)).with_node_selector([("zone", "a")])],
    );
    // Each replica fits an h100 node, but the gang needs more than the h100 nodes have.
    let h100s = job_with(
        "h100s",
        "q",
        vec![
            TaskSpec::new("launcher", 1, res(1, 1, 0)),
            TaskSpec::new("worker", 2, res(8, 64, 8)).with_node_selector([("accelerator", "h100")]),
        ],
    );
    let snap = snapshot(nodes, vec![queue("q", 1)], vec![tpu, both, wide, h100s]);
    let d = decide(PlacementPolicy::Pack, &snap);
    assert!(d.placements.is_empty());
    let expected = [
        (
            "tpu",
            "rejected: task worker selects nodes labelled accelerator=tpu and no node carries \
             that label",
        ),
        (
            "both",
            "rejected: task worker selects nodes labelled accelerator=h100,zone=a and no node \
             carries all those labels",
        ),
        (
            "wide",
            "rejected: a replica of task worker needs 9 GPUs, 8 CPU, 8 GiB on a node labelled \
             zone=a and no node has that much",
        ),
        (
            "h100s",
            "rejected: gang needs 16 GPUs on nodes labelled accelerator=h100 and those nodes \
             have 8 GPUs in all",
        ),
    ];
    for (id, message) in expected {
        let e = d
            .waiting
            .iter()
            .find(|e| e.job == id)
            .unwrap_or_else(|| panic!("{id} not explained: {d:?}"));
        assert_eq!(e.message, message);
        assert!(e.is_permanent(), "{id}");
        // The API's admission check refuses it with the same words.
        let job = snap.pending.iter().find(|j| j.id == id).expect("pending");
        let err = validate_job(job, &snap.queues, &snap.nodes).expect_err("never fits");
        assert_eq!(format!("rejected: {err}"), message);
        assert_eq!(e.reason, Reason::Rejected(err));
    }
    let Some(Reason::Rejected(Rejection::NoNodeMatchesSelector {
        role,
        node_selector,
    })) = d
        .waiting
        .iter()
        .find(|e| e.job == "both")
        .map(|e| &e.reason)
    else {
        panic!("typed reason expected: {d:?}");
    };
    assert_eq!(role, "worker");
    assert_eq!(node_selector.len(), 2);
}

/// A GPU training job: a launcher and two parameter servers without GPUs, two 4-GPU workers.
fn training_job(id: &str) -> PendingJob {
    job_with(
        id,
        "q",
        vec![
            TaskSpec::new("launcher", 1, res(2, 4, 0)),
            TaskSpec::new("ps", 2, res(4, 16, 0)),
            TaskSpec::new("worker", 2, res(16, 128, 4)),
        ],
    )
}

#[test]
fn cpu_roles_of_a_gpu_job_stay_off_gpu_nodes_while_a_cpu_node_fits() {
    let nodes = vec![
        node("cpu-0", res(16, 64, 0)),
        gpu_node("gpu-0", "h100", "a"),
    ];
    let snap = snapshot(nodes, vec![queue("q", 1)], vec![training_job("train")]);
    let d = decide(PlacementPolicy::Pack, &snap);
    assert_eq!(nodes_of_role(&d, "train", "launcher"), set(&["cpu-0"]));
    assert_eq!(nodes_of_role(&d, "train", "ps"), set(&["cpu-0"]));
    assert_eq!(nodes_of_role(&d, "train", "worker"), set(&["gpu-0"]));

    // Without the policy the launcher and ps go where the most CPU is free: the GPU node.
    let d = decide(PlacementPolicy::Spread, &snap);
    assert_eq!(nodes_of_role(&d, "train", "launcher"), set(&["gpu-0"]));
}

#[test]
fn cpu_roles_use_a_gpu_node_when_no_cpu_node_fits() {
    let nodes = vec![
        node("cpu-0", res(16, 64, 0)),
        node("cpu-1", res(16, 64, 0)),
        gpu_node("gpu-0", "h100", "a"),
    ];
    let mut snap = snapshot(nodes, vec![queue("q", 1)], vec![training_job("train")]);
    // cpu-0 has room for the launcher only; cpu-1 has 3 CPU free, less than a ps needs.
    snap.running = vec![
        running("etl", "q", "cpu-0", res(14, 8, 0)),
        running("etl", "q", "cpu-1", res(13, 8, 0)),
    ];
    let d = decide(PlacementPolicy::Pack, &snap);
    assert_eq!(nodes_of_role(&d, "train", "launcher"), set(&["cpu-0"]));
    assert_eq!(nodes_of_role(&d, "train", "ps"), set(&["gpu-0"]));
    assert_eq!(nodes_of_role(&d, "train", "worker"), set(&["gpu-0"]));
}

#[test]
fn a_cpu_job_spills_onto_the_gpu_node_whose_gpus_are_taken_first() {
    let nodes = vec![
        node("cpu-0", res(4, 64, 0)),
        gpu_node("gpu-busy", "h100", "a"),
        gpu_node("gpu-free", "h100", "a"),
    ];
    let mut snap = snapshot(
        nodes,
        vec![queue("q", 1)],
        vec![job("etl", "q", 2, res(4, 8, 0))],
    );
    snap.running = vec![running("train", "q", "gpu-busy", res(32, 256, 8))];
    let d = decide(PlacementPolicy::Pack, &snap);
    // One replica fills the CPU node; the other uses the CPU a fully used GPU node has left,
    // so gpu-free stays whole.
    assert_eq!(nodes_of(&d, "etl"), set(&["cpu-0", "gpu-busy"]));
}

#[test]
fn a_16_gpu_job_on_8_gpu_nodes_takes_2_nodes_not_4() {
    let nodes: Vec<Node> = (0..4)
        .map(|i| gpu_node(&format!("gpu-{i}"), "h100", "a"))
        .collect();
    for (replicas, each) in [
        (16, res(4, 32, 1)),
        (4, res(16, 128, 4)),
        (8, res(8, 64, 2)),
    ] {
        let snap = snapshot(
            nodes.clone(),
            vec![queue("q", 1)],
            vec![job("train", "q", replicas, each)],
        );
        let packed = nodes_of(&decide(PlacementPolicy::Pack, &snap), "train");
        assert_eq!(packed.len(), 2, "{replicas} x {each}: {packed:?}");
        let spread = nodes_of(&decide(PlacementPolicy::Spread, &snap), "train");
        assert_eq!(spread.len(), 4, "{replicas} x {each}: {spread:?}");
    }
}

/// Four 8-GPU nodes with 4, 6, 7 and 0 GPUs in use by other jobs: holes of 4, 2 and 1 GPUs,
/// and one whole free node.
fn holey_cluster(pending: Vec<PendingJob>) -> Snapshot {
    let nodes = vec![
        gpu_node("gpu-a", "h100", "a"),
        gpu_node("gpu-b", "h100", "a"),
        gpu_node("gpu-c", "h100", "a"),
        gpu_node("gpu-d", "h100", "a"),
    ];
    let mut snap = snapshot(nodes, vec![queue("q", 1)], pending);
    snap.running = vec![
        running("old-a", "q", "gpu-a", res(8, 64, 4)),
        running("old-b", "q", "gpu-b", res(8, 64, 6)),
        running("old-c", "q", "gpu-c", res(8, 64, 7)),
    ];
    snap
}

#[test]
fn a_job_goes_to_one_partly_used_node_that_holds_it_rather_than_scattered_holes() {
    // 1 + 3 GPUs: gpu-a (4 free) holds the whole job; the smaller holes on gpu-b and gpu-c
    // would each take a piece of it.
    let snap = holey_cluster(vec![job_with(
        "train",
        "q",
        vec![
            TaskSpec::new("chief", 1, res(4, 32, 1)),
            TaskSpec::new("worker", 3, res(4, 32, 1)),
        ],
    )]);
    let d = decide(PlacementPolicy::Pack, &snap);
    assert_eq!(nodes_of(&d, "train"), set(&["gpu-a"]), "{d:?}");
}

#[test]
fn a_job_larger_than_any_hole_fills_holes_before_opening_a_whole_node() {
    // 7 GPUs free in holes (4 + 2 + 1) and a whole free node: a 7-GPU job of 1-GPU replicas
    // fills the holes, each before the next, and leaves gpu-d whole.
    let snap = holey_cluster(vec![job("train", "q", 7, res(4, 32, 1))]);
    let d = decide(PlacementPolicy::Pack, &snap);
    assert!(!nodes_of(&d, "train").contains("gpu-d"), "{d:?}");
    assert_eq!(replicas_of(&d, "train").len(), 7);
    // Spreading opens the whole node first.
    let d = decide(PlacementPolicy::Spread, &snap);
    assert!(nodes_of(&d, "train").contains("gpu-d"), "{d:?}");
}

#[test]
fn a_job_fills_the_node_it_opened_before_taking_another() {
    // No partly used node holds the 4-GPU chief, so it opens gpu-d; the 1-GPU workers then
    // join it there instead of taking the smaller holes on gpu-b and gpu-c.
    let mut snap = holey_cluster(vec![job_with(
        "train",
        "q",
        vec![
            TaskSpec::new("chief", 1, res(8, 64, 4)),
            TaskSpec::new("worker", 3, res(4, 32, 1)),
        ],
    )]);
    snap.nodes.retain(|n| n.name != "gpu-a");
    snap.running.retain(|r| r.node != "gpu-a");
    let d = decide(PlacementPolicy::Pack, &snap);
    assert_eq!(nodes_of(&d, "train"), set(&["gpu-d"]), "{d:?}");
}

#[test]
fn on_a_mixed_cluster_packing_fragments_gpus_no_more_than_spreading() {
    for seed in 1..=3 {
        let scenario = MixedScenario {
            seed,
            steps: 1800,
            cpu_burst_at: 900,
            ..MixedScenario::default()
        };
        let config = |placement| Config {
            placement,
            ..Config::default()
        };
        let pack = scenario
            .run(config(PlacementPolicy::Pack))
            .expect("well formed");
        let spread = scenario
            .run(config(PlacementPolicy::Spread))
            .expect("well formed");
        // The checker saw every cycle: selectors honoured, gangs whole, nothing over-committed,
        // and (under Pack) CPU-only replicas on GPU nodes only when no CPU node had room.
        assert_eq!(pack.violations, Vec::<String>::new(), "seed {seed}");
        assert_eq!(spread.violations, Vec::<String>::new(), "seed {seed}");
        assert_eq!(pack.submitted, spread.submitted, "the same arrivals");
        assert!(pack.gpu_jobs_started > 0, "seed {seed}: no GPU work ran");

        let stranded =
            |r: &mofang_scheduler::sim::MixedRun| r.mean(|f| f.gpus_free_on_partly_used_nodes);
        assert!(
            stranded(&pack) <= stranded(&spread),
            "seed {seed}: {:.1} GPUs free on partly used nodes with the policy, {:.1} without",
            stranded(&pack),
            stranded(&spread)
        );

        // The CPU burst overflowed the CPU nodes, so the rule "GPU nodes only when no CPU node
        // fits" was put to the test; before the burst the CPU nodes had room.
        let before = &pack.samples[..usize::try_from(scenario.cpu_burst_at).unwrap_or(0)];
        let spilled = pack
            .samples
            .iter()
            .map(|f| f.cpu_replicas_on_gpu_nodes)
            .max();
        assert!(spilled > Some(0), "seed {seed}: the burst never spilled");
        assert!(
            before
                .iter()
                .map(|f| f.cpu_replicas_on_gpu_nodes)
                .sum::<u64>()
                <= spread.samples[..before.len()]
                    .iter()
                    .map(|f| f.cpu_replicas_on_gpu_nodes)
                    .sum::<u64>(),
            "seed {seed}: more CPU work on GPU nodes with the policy than without"
        );
    }
}

#[test]
fn spread_balances_cpu_work_over_all_nodes() {
    // The baseline really is LeastAllocated: three 1-CPU replicas go to three nodes.
    let nodes = vec![
        node("cpu-0", res(8, 64, 0)),
        node("cpu-1", res(8, 64, 0)),
        node("cpu-2", res(8, 64, 0)),
    ];
    let snap = snapshot(
        nodes,
        vec![queue("q", 1)],
        vec![job("etl", "q", 3, res(1, 1, 0))],
    );
    assert_eq!(
        nodes_of(&decide(PlacementPolicy::Spread, &snap), "etl").len(),
        3
    );
    assert_eq!(
        nodes_of(&decide(PlacementPolicy::Pack, &snap), "etl").len(),
        1
    );
}
