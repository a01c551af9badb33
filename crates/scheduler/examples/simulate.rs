//! Scheduling throughput of the scheduler core on a simulated cluster (issue 6, item 10), and
//! GPU fragmentation with and without the packing placement policy.
//!
//! ```sh
//! cargo run --release -p mofang-scheduler --example simulate [-- --seed N] [--placement-only]
//! ```
//!
//! Scenario A mirrors kube-scheduler's `scheduler_perf` test `SchedulingBasic/5000Nodes_50000Pods`
//! (5,000 nodes of 4 CPU / 32 GiB, 5,000 pods already running, 50,000 pods of 100m CPU /
//! 500 MiB to schedule), except that the pods come in gangs of 1–64 across 10 queues. Scenario
//! B is a mixed cluster (CPU and GPU nodes, GPU and CPU gangs, queue capabilities) asked for
//! more than it has, so that many gangs wait and get explanations. Each runs scheduling
//! cycles, starting what was placed (nothing finishes), until a cycle places nothing; the
//! throughput counts pods placed per second of time spent inside `Scheduler::schedule`.
//! Every cycle's decisions are also checked with `sim::verify` (outside the timing).
//!
//! Scenario C is `sim::MixedScenario::default()`: 40 CPU nodes and 20 nodes of 8 GPUs, an
//! hour of GPU training jobs (CPU launchers and parameter servers beside GPU workers) and CPU
//! jobs arriving at random, with a burst of CPU work half-way. It runs twice on the same
//! arrivals, with `PlacementPolicy::Pack` (the default) and `PlacementPolicy::Spread`
//! (Kubernetes' LeastAllocated), and prints the GPUs free on partly used GPU nodes (usable
//! only by jobs that fit beside what runs there) and the whole free GPU nodes over the run.

use std::time::{Duration, Instant};

use mofang_scheduler::sim::{Fragmentation, MixedRun, MixedScenario, Rng, verify};
use mofang_scheduler::{
    Allocation, Config, Node, PendingJob, PlacementPolicy, Queue, Resources, Scheduler, Snapshot,
    TaskSpec,
};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// kube-scheduler's threshold for `SchedulingBasic/5000Nodes_50000Pods` in
/// kubernetes `test/integration/scheduler_perf/misc/performance-config.yaml` (pods/s).
const KUBE_SCHEDULER_PERF_THRESHOLD: f64 = 810.0;
/// Issue 6's target for this benchmark (pods/s).
const TARGET: f64 = 20_000.0;

struct Scenario {
    name: &'static str,
    snapshot: Snapshot,
}

/// Gang sizes 1–64 adding up to exactly `pods`.
fn gang_sizes(rng: &mut Rng, pods: u64) -> Vec<u32> {
    let mut left = pods;
    let mut sizes = Vec::new();
    while left > 0 {
        let s = rng.range(1, 64).min(left);
        sizes.push(u32::try_from(s).unwrap_or(1));
        left -= s;
    }
    sizes
}

fn pending_job(
    i: usize,
    queue: &str,
    replicas: u32,
    request: Resources,
    priority: i32,
) -> PendingJob {
    PendingJob {
        id: format!("job-{i:05}"),
        queue: queue.to_string(),
        priority,
        submit_seq: i as u64,
        queued_at: 0,
        tasks: vec![TaskSpec::new("worker", replicas, request)],
        min_available: None,
    }
}

fn scenario_a(seed: u64) -> Scenario {
    let mut rng = Rng::new(seed);
    let node_size = Resources::new(4000, 32 * GIB, 0);
    let pod = Resources::new(100, 500 * MIB, 0);
    let nodes: Vec<Node> = (0..5000)
        .map(|i| Node::new(format!("node-{i:04}"), node_size))
        .collect();
    let queues: Vec<Queue> = (0..10)
        .map(|i| Queue::new(format!("queue-{i}"), (i % 4) + 1))
        .collect();
    let running = (0..5000)
        .map(|i| Allocation {
            job: format!("init-{i}"),
            queue: queues[i % 10].name.clone(),
            node: nodes[i].name.clone(),
            resources: pod,
        })
        .collect();
    let pending = gang_sizes(&mut rng, 50_000)
        .into_iter()
        .enumerate()
        .map(|(i, size)| {
            let priority = i32::try_from(rng.range(0, 2)).unwrap_or(0);
            pending_job(i, &queues[i % 10].name, size, pod, priority)
        })
        .collect();
    Scenario {
        name: "A: scheduler_perf shape (5,000 nodes 4 CPU/32 GiB, 5,000 running, 50,000 pods 100m/500Mi in gangs 1-64, 10 queues)",
        snapshot: Snapshot {
            now: 0,
            nodes,
            queues,
            running,
            pending,
            reservations: Vec::new(),
        },
    }
}

fn scenario_b(seed: u64) -> Scenario {
    let mut rng = Rng::new(seed ^ 0xB);
    let mut nodes: Vec<Node> = (0..4000)
        .map(|i| Node::new(format!("cpu-{i:04}"), Resources::new(32_000, 128 * GIB, 0)))
        .collect();
    nodes.extend(
        (0..1000).map(|i| Node::new(format!("gpu-{i:04}"), Resources::new(64_000, 512 * GIB, 8))),
    );
    let queues: Vec<Queue> = (0..10)
        .map(|i| {
            let mut q = Queue::new(format!("team-{i}"), i + 1);
            if i % 3 == 0 {
                q.capability = Resources::new(40_000_000, 200_000 * GIB, 1500);
            }
            if i == 9 {
                q.guarantee = Resources::new(10_000_000, 40_000 * GIB, 400);
            }
            q
        })
        .collect();
    let pending = gang_sizes(&mut rng, 50_000)
        .into_iter()
        .enumerate()
        .map(|(i, size)| {
            let request = if rng.chance(0.3) {
                Resources::new(8000, 64 * GIB, 1)
            } else {
                Resources::new(rng.range(1, 4) * 1000, rng.range(2, 8) * GIB, 0)
            };
            let priority = i32::try_from(rng.range(0, 2)).unwrap_or(0);
            pending_job(i, &queues[i % 10].name, size, request, priority)
        })
        .collect();
    Scenario {
        name: "B: mixed and oversubscribed (4,000 CPU nodes + 1,000 8-GPU nodes, 50,000 pods in gangs 1-64, 30% GPU gangs, 10 weighted queues with caps)",
        snapshot: Snapshot {
            now: 0,
            nodes,
            queues,
            running: Vec::new(),
            pending,
            reservations: Vec::new(),
        },
    }
}

struct Outcome {
    pods_placed: u64,
    gangs_placed: usize,
    cycles: usize,
    schedule_time: Duration,
    waiting: usize,
    violations: usize,
    sample_explanation: Option<String>,
}

/// Runs cycles until one places nothing, starting what each places.
fn run(scheduler: &Scheduler, mut snap: Snapshot) -> Result<Outcome, mofang_scheduler::Error> {
    let mut out = Outcome {
        pods_placed: 0,
        gangs_placed: 0,
        cycles: 0,
        schedule_time: Duration::ZERO,
        waiting: 0,
        violations: 0,
        sample_explanation: None,
    };
    loop {
        let started = Instant::now();
        let d = scheduler.schedule(&snap)?;
        out.schedule_time += started.elapsed();
        out.cycles += 1;
        out.violations += verify(&snap, &d).len();
        out.waiting = d.waiting.len();
        out.sample_explanation = d
            .waiting
            .first()
            .map(|e| format!("{}: {}", e.job, e.message));
        if d.placements.is_empty() {
            return Ok(out);
        }
        let placed: std::collections::HashSet<&str> =
            d.placements.iter().map(|p| p.job.as_str()).collect();
        for p in &d.placements {
            let Some(job) = snap.pending.iter().find(|j| j.id == p.job) else {
                continue;
            };
            let request = job.tasks[0].request;
            out.pods_placed += p.replicas.len() as u64;
            out.gangs_placed += 1;
            snap.running.extend(p.replicas.iter().map(|r| Allocation {
                job: p.job.clone(),
                queue: p.queue.clone(),
                node: r.node.clone(),
                resources: request,
            }));
        }
        snap.pending.retain(|j| !placed.contains(j.id.as_str()));
        snap.reservations = d.reservations;
        snap.now += 1;
    }
}

/// Scenario C: the mixed cluster under both placement policies.
fn placement(seed: u64) -> Result<(), mofang_scheduler::Error> {
    let scenario = MixedScenario {
        seed,
        ..MixedScenario::default()
    };
    println!(
        "scenario C: placement on a mixed cluster ({} CPU nodes 32 CPU/128 GiB, {} GPU nodes 8 GPUs/64 CPU/512 GiB, {} s, seed {seed}, CPU burst of {} jobs at {} s)",
        scenario.cpu_nodes,
        scenario.gpu_nodes,
        scenario.steps,
        scenario.cpu_burst_jobs,
        scenario.cpu_burst_at
    );
    let with_policy = |placement| Config {
        placement,
        ..Config::default()
    };
    let pack = scenario.run(with_policy(PlacementPolicy::Pack))?;
    let spread = scenario.run(with_policy(PlacementPolicy::Spread))?;
    println!(
        "  at time t: GPUs free on partly used GPU nodes / whole free GPU nodes / CPU-only replicas on GPU nodes"
    );
    println!("  {:>6}  {:>22}  {:>22}", "t (s)", "Pack", "Spread");
    let show = |f: &Fragmentation| {
        format!(
            "{:>4} / {:>2} / {:>4}",
            f.gpus_free_on_partly_used_nodes, f.whole_free_gpu_nodes, f.cpu_replicas_on_gpu_nodes
        )
    };
    for t in (299..pack.samples.len()).step_by(300) {
        println!(
            "  {:>6}  {:>22}  {:>22}",
            t + 1,
            show(&pack.samples[t]),
            show(&spread.samples[t])
        );
    }
    let summary = |name: &str, r: &MixedRun| {
        let waits = &r.gpu_job_waits;
        let mean_wait = waits.iter().sum::<u64>() as f64 / waits.len().max(1) as f64;
        println!(
            "  {name:<6} mean over the run: {:.1} GPUs free on partly used nodes (of {:.1} free), {:.1} whole free GPU nodes, {:.1} CPU-only replicas on GPU nodes; {} of {} jobs started; {} GPU jobs started, mean wait {mean_wait:.0} s; {} rejected; checker violations: {}",
            r.mean(|f| f.gpus_free_on_partly_used_nodes),
            r.mean(|f| f.free_gpus),
            r.mean(|f| f.whole_free_gpu_nodes),
            r.mean(|f| f.cpu_replicas_on_gpu_nodes),
            r.started,
            r.submitted,
            r.gpu_jobs_started,
            r.rejected,
            r.violations.len()
        );
    };
    summary("Pack", &pack);
    summary("Spread", &spread);
    Ok(())
}

fn main() {
    let mut seed = 1;
    let mut placement_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--placement-only" => placement_only = true,
            "--seed" => match args.next().map(|v| v.parse::<u64>()) {
                Some(Ok(v)) => seed = v,
                _ => {
                    eprintln!("simulate: --seed needs a number");
                    std::process::exit(2);
                }
            },
            _ => {
                eprintln!("usage: simulate [--seed N] [--placement-only]");
                std::process::exit(2);
            }
        }
    }
    if placement_only {
        if let Err(e) = placement(seed) {
            eprintln!("simulate: {e}");
            std::process::exit(1);
        }
        return;
    }
    let scheduler = Scheduler::default();
    let mut scenario_a_rate = 0.0;
    for (k, scenario) in [scenario_a(seed), scenario_b(seed)].into_iter().enumerate() {
        println!("scenario {}", scenario.name);
        let gangs = scenario.snapshot.pending.len();
        // Three runs; report the median by scheduling time.
        let mut runs = Vec::new();
        for _ in 0..3 {
            match run(&scheduler, scenario.snapshot.clone()) {
                Ok(o) => runs.push(o),
                Err(e) => {
                    eprintln!("simulate: {e}");
                    std::process::exit(1);
                }
            }
        }
        runs.sort_by_key(|o| o.schedule_time);
        let o = &runs[1];
        let secs = o.schedule_time.as_secs_f64();
        let rate = o.pods_placed as f64 / secs;
        println!("  pending gangs:          {gangs}");
        println!(
            "  placed:                 {} pods in {} gangs over {} cycles (the last places nothing)",
            o.pods_placed, o.gangs_placed, o.cycles
        );
        println!(
            "  still waiting:          {} gangs, each with an explanation",
            o.waiting
        );
        if let Some(e) = &o.sample_explanation {
            println!("  e.g.                    {e}");
        }
        println!(
            "  time in schedule():     {:.1} ms (median of 3 runs; runs took {:.1} / {:.1} / {:.1} ms)",
            secs * 1e3,
            runs[0].schedule_time.as_secs_f64() * 1e3,
            runs[1].schedule_time.as_secs_f64() * 1e3,
            runs[2].schedule_time.as_secs_f64() * 1e3
        );
        println!("  pods placed per second: {rate:.0}");
        println!("  checker violations:     {}", o.violations);
        if k == 0 {
            scenario_a_rate = rate;
        }
    }
    println!();
    println!(
        "kube-scheduler scheduler_perf threshold, SchedulingBasic/5000Nodes_50000Pods: {KUBE_SCHEDULER_PERF_THRESHOLD:.0} pods/s"
    );
    println!(
        "scenario A vs that threshold: {:.0}x; target >= {TARGET:.0} pods/s: {}",
        scenario_a_rate / KUBE_SCHEDULER_PERF_THRESHOLD,
        if scenario_a_rate >= TARGET {
            "met"
        } else {
            "NOT met"
        }
    );
    println!();
    if let Err(e) = placement(seed) {
        eprintln!("simulate: {e}");
        std::process::exit(1);
    }
}
