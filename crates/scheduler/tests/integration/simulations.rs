//! Multi-cycle simulations: jobs arrive, run for a while and finish; the scheduler runs every
//! simulated second. Every cycle's decisions also pass the independent checker.

use std::collections::BTreeMap;

use mofang_scheduler::sim::{Rng, Simulation};
use mofang_scheduler::{Config, Node, Queue, Resources, Scheduler};

use crate::common::{GIB, job, node, queue, res};

fn nodes(count: usize, each: Resources) -> Vec<Node> {
    (0..count)
        .map(|i| node(&format!("node-{i:02}"), each))
        .collect()
}

/// Keeps at least `backlog` small jobs (1–2 CPU, 5–20 s) pending in each of `queues`.
fn top_up_small(
    sim: &mut Simulation,
    rng: &mut Rng,
    queues: &[&str],
    backlog: usize,
    next: &mut u64,
) {
    for q in queues {
        while sim
            .pending()
            .iter()
            .filter(|j| j.queue == *q && j.id.starts_with("small"))
            .count()
            < backlog
        {
            let cpu = rng.range(1, 2);
            sim.submit(
                job(&format!("small-{next}"), q, 1, res(cpu, 1, 0)),
                rng.range(5, 20),
            );
            *next += 1;
        }
    }
}

/// Runs the big-gang scenario and returns how long the big job waited (None: never started).
fn big_gang_wait(
    config: Config,
    small_queues: &[&str],
    big_queue: &str,
    queues: Vec<Queue>,
) -> Option<u64> {
    let mut sim = Simulation::new(Scheduler::new(config), nodes(4, res(8, 32, 0)), queues);
    let mut rng = Rng::new(7);
    let mut next = 0;
    for t in 0..900 {
        top_up_small(&mut sim, &mut rng, small_queues, 6, &mut next);
        if t == 20 {
            // Needs every CPU of the cluster at once.
            sim.submit(job("big", big_queue, 4, res(8, 8, 0)), 30);
        }
        sim.step(1).expect("well formed");
    }
    assert_eq!(sim.violations, Vec::<String>::new());
    sim.started_at.get("big").map(|&s| s - 20)
}

const STARVE: u64 = 60;
/// Starvation limit + the longest small job + a cycle or two of slack.
const BOUND: u64 = STARVE + 20 + 2;

#[test]
fn a_blocked_big_gang_runs_although_small_jobs_keep_arriving() {
    let config = Config {
        starvation_after_secs: STARVE,
        ..Config::default()
    };
    let queues = vec![queue("team-a", 1), queue("team-b", 1)];
    // Small jobs in the big job's own queue and in another one.
    let wait = big_gang_wait(
        config.clone(),
        &["team-a", "team-b"],
        "team-a",
        queues.clone(),
    )
    .expect("the big gang must start");
    assert!(wait <= BOUND, "big gang waited {wait}s, bound {BOUND}s");
    assert!(
        wait >= STARVE,
        "it cannot start before it reserves ({wait}s)"
    );

    // Control: without reservations the same stream starves it for the whole run.
    let no_reservations = Config {
        reservation_depth: 0,
        ..config
    };
    assert_eq!(
        big_gang_wait(no_reservations, &["team-a", "team-b"], "team-a", queues),
        None
    );
}

#[test]
fn a_big_gang_held_back_by_its_own_queue_capability_runs_eventually() {
    // The queue may hold 8 CPU; its small jobs always hold some of it, so the 8-CPU gang only
    // fits if the queue stops admitting past it once it starves.
    let mut capped = queue("team-a", 1);
    capped.capability = res(8, 1024, 0);
    let queues = vec![capped, queue("team-b", 1)];
    let config = Config {
        starvation_after_secs: STARVE,
        ..Config::default()
    };
    let mut sim = Simulation::new(Scheduler::new(config), nodes(4, res(8, 32, 0)), queues);
    let mut rng = Rng::new(11);
    let mut next = 0;
    for t in 0..600 {
        top_up_small(&mut sim, &mut rng, &["team-a", "team-b"], 6, &mut next);
        if t == 10 {
            sim.submit(job("big", "team-a", 8, res(1, 1, 0)), 30);
        }
        sim.step(1).expect("well formed");
    }
    assert_eq!(sim.violations, Vec::<String>::new());
    let wait = sim
        .started_at
        .get("big")
        .map(|&s| s - 10)
        .expect("the big gang must start");
    // First the queue drains (its small jobs end within 20 s), then, if team-b's jobs filled
    // the nodes meanwhile, the gang reserves nodes and those drain (another 20 s at most).
    assert!(wait <= BOUND + 20, "waited {wait}s");
}

/// Average CPU each queue holds over `[from, steps)` in a saturated simulation of
/// `queues` (name, weight, guarantee in cores); returns (name -> average millicores, total).
fn saturated_average(
    queues: &[(&str, u32, u64)],
    idle: &[&str],
    steps: u64,
    from: u64,
) -> (BTreeMap<String, f64>, f64) {
    let qs = queues
        .iter()
        .map(|&(name, weight, guarantee)| {
            let mut q = queue(name, weight);
            q.guarantee = res(guarantee, 0, 0);
            q
        })
        .collect();
    let mut sim = Simulation::new(Scheduler::default(), nodes(12, res(16, 64, 0)), qs);
    let mut rng = Rng::new(42);
    let mut sums: BTreeMap<String, f64> = BTreeMap::new();
    let mut next = 0u64;
    for t in 0..steps {
        for &(name, _, _) in queues {
            if idle.contains(&name) {
                continue;
            }
            while sim.pending().iter().filter(|j| j.queue == name).count() < 8 {
                let replicas = u32::try_from(rng.range(1, 4)).unwrap_or(1);
                let each = Resources::new(rng.range(1, 4) * 1000, 2 * GIB, 0);
                sim.submit(
                    job(&format!("{name}-{next}"), name, replicas, each),
                    rng.range(10, 40),
                );
                next += 1;
            }
        }
        sim.step(1).expect("well formed");
        if t >= from {
            for (q, r) in sim.allocated_by_queue() {
                *sums.entry(q).or_default() += r.cpu_millis as f64;
            }
        }
    }
    assert_eq!(sim.violations, Vec::<String>::new());
    let n = (steps - from) as f64;
    let avg: BTreeMap<String, f64> = sums.into_iter().map(|(q, s)| (q, s / n)).collect();
    let total = avg.values().sum();
    (avg, total)
}

/// Tolerance for weight tests: each queue's fraction of the CPU in use is within 0.02 of its
/// weight's fraction (gangs are whole, and capacity a queue within its share cannot use is
/// lent to the others).
const TOLERANCE: f64 = 0.02;

#[test]
fn weights_are_honoured_when_three_queues_saturate_the_cluster() {
    let (avg, total) =
        saturated_average(&[("w1", 1, 0), ("w2", 2, 0), ("w3", 3, 0)], &[], 900, 150);
    let cluster = 12.0 * 16_000.0;
    assert!(
        total > 0.9 * cluster,
        "the cluster must stay busy ({total} of {cluster})"
    );
    for (q, w) in [("w1", 1.0), ("w2", 2.0), ("w3", 3.0)] {
        let got = avg[q] / total;
        let want = w / 6.0;
        assert!(
            (got - want).abs() <= TOLERANCE,
            "queue {q}: {got:.3} of the CPU in use, weight share {want:.3} ({avg:?})"
        );
    }
}

#[test]
fn a_guarantee_beats_weight_and_is_never_lent() {
    // w=1 with 96 of 192 cores guaranteed against w=9: the guarantee, not the weight, decides.
    let (avg, _) = saturated_average(&[("big", 9, 0), ("small", 1, 96)], &[], 700, 150);
    assert!(
        avg["small"] >= 0.9 * 96_000.0,
        "guaranteed queue averaged {} millicores",
        avg["small"]
    );
    // With the guaranteed queue idle, the other queue never grows into its guarantee.
    let (avg, _) = saturated_average(&[("big", 9, 0), ("small", 1, 96)], &["small"], 300, 50);
    assert!(avg["big"] <= 96_000.0, "{}", avg["big"]);
    assert!(avg["big"] >= 0.8 * 96_000.0, "{}", avg["big"]);
}
