//! Properties over generated workloads: each test runs a few hundred random snapshots (and a
//! second cycle that carries the first one's reservations forward, later in time) and checks
//! one rule from first principles.

use std::collections::{HashMap, HashSet};

use mofang_scheduler::sim::{Rng, verify, verify_packing};
use mofang_scheduler::{
    Config, Decisions, Node, PendingJob, PlacementPolicy, Reason, Rejection, Resources, Scheduler,
    Snapshot, validate_job,
};

use crate::common::random_snapshot;

const SEEDS: u64 = 300;

/// Every generated case under both placement policies (the invariants hold under either).
fn cases() -> impl Iterator<Item = (u64, Snapshot, Decisions)> {
    cases_with(PlacementPolicy::Pack).chain(cases_with(PlacementPolicy::Spread))
}

/// Every generated case: the first cycle, then a cycle 500 s later that gets its reservations
/// (so reservations and starving jobs are exercised too).
fn cases_with(placement: PlacementPolicy) -> impl Iterator<Item = (u64, Snapshot, Decisions)> {
    let s = Scheduler::new(mofang_scheduler::Config {
        starvation_after_secs: 400,
        placement,
        ..Default::default()
    });
    (0..SEEDS).flat_map(move |seed| {
        let first = random_snapshot(seed);
        let d1 = s
            .schedule(&first)
            .expect("generated snapshots are well formed");
        let mut second = first.clone();
        second.now += 500;
        second.reservations = d1.reservations.clone();
        let d2 = s
            .schedule(&second)
            .expect("generated snapshots are well formed");
        [(seed, first, d1), (seed, second, d2)]
    })
}

fn replica_count(job: &PendingJob) -> u64 {
    job.tasks.iter().map(|t| u64::from(t.replicas)).sum()
}

#[test]
fn a_gang_is_never_partially_placed() {
    let mut placed_jobs = 0;
    for (seed, snap, d) in cases() {
        let jobs: HashMap<&str, &PendingJob> =
            snap.pending.iter().map(|j| (j.id.as_str(), j)).collect();
        for p in &d.placements {
            let job = jobs[p.job.as_str()];
            let min = job.min_available.map_or(replica_count(job), u64::from);
            assert!(
                p.replicas.len() as u64 >= min,
                "seed {seed}: job {} placed {} of gang {min}",
                p.job,
                p.replicas.len()
            );
            // The gang is the first `min` replicas in task order.
            let mut k = 0u64;
            for t in &job.tasks {
                for i in 0..t.replicas {
                    if k < min {
                        assert!(
                            p.replicas.iter().any(|r| r.role == t.role && r.index == i),
                            "seed {seed}: job {} gang replica {}/{i} missing",
                            p.job,
                            t.role
                        );
                    }
                    k += 1;
                }
            }
            placed_jobs += 1;
        }
        // A waiting job holds nothing: it has no placement at all.
        let waiting: HashSet<&str> = d.waiting.iter().map(|e| e.job.as_str()).collect();
        assert!(
            d.placements
                .iter()
                .all(|p| !waiting.contains(p.job.as_str()))
        );
    }
    assert!(
        placed_jobs > 500,
        "the generator must place work ({placed_jobs})"
    );
}

#[test]
fn no_node_is_over_committed() {
    for (seed, snap, d) in cases() {
        let request: HashMap<(&str, &str), Resources> = snap
            .pending
            .iter()
            .flat_map(|j| {
                j.tasks
                    .iter()
                    .map(move |t| ((j.id.as_str(), t.role.as_str()), t.request))
            })
            .collect();
        let mut used: HashMap<&str, Resources> = HashMap::new();
        for a in &snap.running {
            let u = used.entry(a.node.as_str()).or_default();
            *u = u.checked_add(a.resources).expect("no overflow");
        }
        for p in &d.placements {
            for r in &p.replicas {
                let u = used.entry(r.node.as_str()).or_default();
                *u = u
                    .checked_add(request[&(p.job.as_str(), r.role.as_str())])
                    .expect("no overflow");
            }
        }
        for n in &snap.nodes {
            let u = used.get(n.name.as_str()).copied().unwrap_or_default();
            assert!(
                u.fits_in(&n.allocatable),
                "seed {seed}: node {} holds {u} of {}",
                n.name,
                n.allocatable
            );
        }
        // Reservations never hold more than a node has either.
        for r in &d.reservations {
            for h in &r.holds {
                let n = snap
                    .nodes
                    .iter()
                    .find(|n| n.name == h.node)
                    .expect("known node");
                assert!(h.resources.fits_in(&n.allocatable), "seed {seed}");
            }
        }
    }
}

#[test]
fn capabilities_and_other_queues_guarantees_are_never_exceeded() {
    for (seed, snap, d) in cases() {
        let request: HashMap<(&str, &str), Resources> = snap
            .pending
            .iter()
            .flat_map(|j| {
                j.tasks
                    .iter()
                    .map(move |t| ((j.id.as_str(), t.role.as_str()), t.request))
            })
            .collect();
        let total = snap
            .nodes
            .iter()
            .fold(Resources::ZERO, |t, n| t.saturating_add(n.allocatable));
        let guarantees = snap
            .queues
            .iter()
            .fold(Resources::ZERO, |t, q| t.saturating_add(q.guarantee));
        let mut before: HashMap<&str, Resources> = HashMap::new();
        for a in &snap.running {
            let u = before.entry(a.queue.as_str()).or_default();
            *u = u.saturating_add(a.resources);
        }
        let mut after = before.clone();
        for p in &d.placements {
            for r in &p.replicas {
                let u = after.entry(p.queue.as_str()).or_default();
                *u = u.saturating_add(request[&(p.job.as_str(), r.role.as_str())]);
            }
        }
        for q in &snap.queues {
            let others = guarantees.saturating_sub(q.guarantee);
            let limit = q.capability.min(total.saturating_sub(others));
            let b = before.get(q.name.as_str()).copied().unwrap_or_default();
            let a = after.get(q.name.as_str()).copied().unwrap_or_default();
            if a != b {
                assert!(
                    a.fits_in(&limit),
                    "seed {seed}: queue {} at {a}, limit {limit}",
                    q.name
                );
            }
        }
    }
}

#[test]
fn gpu_replicas_run_only_on_gpu_nodes_and_selectors_hold() {
    let mut gpu_replicas = 0;
    for (seed, snap, d) in cases() {
        let nodes: HashMap<&str, &Node> = snap.nodes.iter().map(|n| (n.name.as_str(), n)).collect();
        let jobs: HashMap<&str, &PendingJob> =
            snap.pending.iter().map(|j| (j.id.as_str(), j)).collect();
        for p in &d.placements {
            for r in &p.replicas {
                let task = jobs[p.job.as_str()]
                    .tasks
                    .iter()
                    .find(|t| t.role == r.role)
                    .expect("placed role exists");
                let node = nodes[r.node.as_str()];
                if task.request.gpus > 0 {
                    gpu_replicas += 1;
                    assert!(
                        node.allocatable.gpus > 0,
                        "seed {seed}: GPU replica on {}",
                        node.name
                    );
                }
                for (k, v) in &task.node_selector {
                    assert_eq!(node.labels.get(k), Some(v), "seed {seed}");
                }
            }
        }
    }
    assert!(
        gpu_replicas > 50,
        "the generator must place GPU work ({gpu_replicas})"
    );
}

#[test]
fn every_pending_job_is_placed_or_explained_exactly_once() {
    let mut reasons: HashSet<&'static str> = HashSet::new();
    for (seed, snap, d) in cases() {
        let mut decided: HashMap<&str, usize> = HashMap::new();
        for p in &d.placements {
            *decided.entry(p.job.as_str()).or_default() += 1;
        }
        for e in &d.waiting {
            *decided.entry(e.job.as_str()).or_default() += 1;
            assert!(
                e.message.starts_with("waiting: ") || e.message.starts_with("rejected: "),
                "seed {seed}: {}",
                e.message
            );
            assert_eq!(e.message, e.reason.message());
            reasons.insert(match e.reason {
                Reason::Rejected(_) => "rejected",
                Reason::QueueCapability { .. } => "capability",
                Reason::FairShare { .. } => "fair-share",
                Reason::BehindStarvingJob { .. } => "behind-starving",
                Reason::Insufficient { .. } => "insufficient",
                Reason::Draining { .. } => "draining",
            });
        }
        for j in &snap.pending {
            assert_eq!(
                decided.get(j.id.as_str()),
                Some(&1),
                "seed {seed}: job {}",
                j.id
            );
        }
        assert_eq!(
            decided.len(),
            snap.pending.len(),
            "seed {seed}: decisions for unknown jobs"
        );
    }
    // The generator reaches every kind of wait.
    for kind in ["rejected", "capability", "insufficient", "draining"] {
        assert!(
            reasons.contains(kind),
            "no case produced {kind}: {reasons:?}"
        );
    }
}

#[test]
fn rejections_are_exactly_the_jobs_validate_job_refuses() {
    for (seed, snap, d) in cases() {
        let rejected: HashMap<&str, String> = d
            .waiting
            .iter()
            .filter_map(|e| match &e.reason {
                Reason::Rejected(r) => Some((e.job.as_str(), r.to_string())),
                _ => None,
            })
            .collect();
        for j in &snap.pending {
            let v = validate_job(j, &snap.queues, &snap.nodes);
            assert_eq!(
                v.as_ref().err().map(ToString::to_string).as_deref(),
                rejected.get(j.id.as_str()).map(String::as_str),
                "seed {seed}: job {}",
                j.id
            );
        }
    }
}

/// Decisions with the waiting list in job order (placements are already in a content-defined
/// order).
fn normalised(mut d: Decisions) -> Decisions {
    d.waiting.sort_by(|a, b| a.job.cmp(&b.job));
    d
}

#[test]
fn decisions_depend_on_the_snapshot_not_on_the_order_of_its_lists() {
    for (s, seed) in [PlacementPolicy::Pack, PlacementPolicy::Spread]
        .into_iter()
        .flat_map(|placement| {
            let s = Scheduler::new(Config {
                placement,
                ..Config::default()
            });
            (0..SEEDS).map(move |seed| (s.clone(), seed))
        })
    {
        let snap = random_snapshot(seed);
        let expected = normalised(s.schedule(&snap).expect("well formed"));
        assert_eq!(
            expected,
            normalised(s.schedule(&snap).expect("well formed"))
        );
        let mut shuffled = snap.clone();
        let mut rng = Rng::new(seed ^ 0x5EED);
        rng.shuffle(&mut shuffled.nodes);
        rng.shuffle(&mut shuffled.queues);
        rng.shuffle(&mut shuffled.pending);
        rng.shuffle(&mut shuffled.running);
        assert_eq!(
            expected,
            normalised(s.schedule(&shuffled).expect("well formed")),
            "seed {seed}"
        );
    }
}

#[test]
fn the_independent_checker_passes_generated_cases_and_catches_broken_decisions() {
    let mut broken_caught = 0;
    let mut selector_caught = 0;
    for (seed, snap, d) in cases() {
        assert_eq!(verify(&snap, &d), Vec::<String>::new(), "seed {seed}");
        // Drop one replica of a placed gang: the checker must object.
        if let Some(p) = d.placements.iter().position(|p| !p.replicas.is_empty()) {
            let mut bad = d.clone();
            let job = snap
                .pending
                .iter()
                .find(|j| j.id == bad.placements[p].job)
                .expect("pending");
            let min = job.min_available.map_or(replica_count(job), u64::from);
            if bad.placements[p].replicas.len() as u64 == min {
                bad.placements[p].replicas.pop();
                assert!(
                    !verify(&snap, &bad).is_empty(),
                    "seed {seed}: partial gang not caught"
                );
                broken_caught += 1;
            }
        }
        // Move a replica with a node selector to a node outside it: the checker must object.
        let jobs: HashMap<&str, &PendingJob> =
            snap.pending.iter().map(|j| (j.id.as_str(), j)).collect();
        let moved = d.placements.iter().enumerate().find_map(|(p, placement)| {
            placement
                .replicas
                .iter()
                .enumerate()
                .find_map(|(r, replica)| {
                    let task = jobs[placement.job.as_str()]
                        .tasks
                        .iter()
                        .find(|t| t.role == replica.role)?;
                    let outside = snap
                        .nodes
                        .iter()
                        .find(|n| !n.matches(&task.node_selector))?;
                    Some((p, r, outside.name.clone()))
                })
        });
        if let Some((p, r, outside)) = moved {
            let mut bad = d.clone();
            bad.placements[p].replicas[r].node = outside;
            assert!(
                !verify(&snap, &bad).is_empty(),
                "seed {seed}: replica outside its selector not caught"
            );
            selector_caught += 1;
        }
        // Forget an explanation: the checker must object.
        if !d.waiting.is_empty() {
            let mut bad = d.clone();
            bad.waiting.pop();
            assert!(
                !verify(&snap, &bad).is_empty(),
                "seed {seed}: missing explanation not caught"
            );
        }
    }
    assert!(broken_caught > 100);
    assert!(selector_caught > 20, "{selector_caught}");
}

#[test]
fn cpu_only_replicas_use_gpu_nodes_only_when_no_cpu_node_has_room() {
    let mut on_gpu_nodes = 0;
    for (seed, snap, d) in cases_with(PlacementPolicy::Pack) {
        assert_eq!(
            verify_packing(&snap, &d),
            Vec::<String>::new(),
            "seed {seed}"
        );
        let gpu_nodes: HashSet<&str> = snap
            .nodes
            .iter()
            .filter(|n| n.allocatable.gpus > 0)
            .map(|n| n.name.as_str())
            .collect();
        let jobs: HashMap<&str, &PendingJob> =
            snap.pending.iter().map(|j| (j.id.as_str(), j)).collect();
        for p in &d.placements {
            for r in &p.replicas {
                let cpu_only = jobs[p.job.as_str()]
                    .tasks
                    .iter()
                    .any(|t| t.role == r.role && t.request.gpus == 0);
                if cpu_only && gpu_nodes.contains(r.node.as_str()) {
                    on_gpu_nodes += 1;
                }
            }
        }
    }
    // The generator produces cases where CPU nodes are full, so the rule is exercised.
    assert!(on_gpu_nodes > 20, "{on_gpu_nodes}");
    // And the check is not vacuous: under Spread it objects somewhere.
    let objections: usize = cases_with(PlacementPolicy::Spread)
        .map(|(_, snap, d)| verify_packing(&snap, &d).len())
        .sum();
    assert!(objections > 0);
}

#[test]
fn selector_rejections_name_a_selector_no_node_carries() {
    let mut no_match = 0;
    for (seed, snap, d) in cases() {
        for e in &d.waiting {
            if let Reason::Rejected(Rejection::NoNodeMatchesSelector { node_selector, .. }) =
                &e.reason
            {
                assert!(
                    snap.nodes.iter().all(|n| !n.matches(node_selector)),
                    "seed {seed}: {}",
                    e.message
                );
                no_match += 1;
            }
        }
    }
    assert!(no_match > 10, "{no_match}");
}
