//! Builders and a random workload generator shared by the tests.

use mofang_scheduler::sim::Rng;
use mofang_scheduler::{
    Allocation, Node, PendingJob, Queue, Resources, Scheduler, Snapshot, TaskSpec,
};

pub const GIB: u64 = 1 << 30;

/// `cores` CPUs, `gib` GiB, `gpus` GPUs.
pub fn res(cores: u64, gib: u64, gpus: u64) -> Resources {
    Resources::new(cores * 1000, gib * GIB, gpus)
}

pub fn node(name: &str, allocatable: Resources) -> Node {
    Node::new(name, allocatable)
}

pub fn queue(name: &str, weight: u32) -> Queue {
    Queue::new(name, weight)
}

/// A job with one task `worker` of `replicas` replicas.
pub fn job(id: &str, queue: &str, replicas: u32, each: Resources) -> PendingJob {
    job_with(id, queue, vec![TaskSpec::new("worker", replicas, each)])
}

pub fn job_with(id: &str, queue: &str, tasks: Vec<TaskSpec>) -> PendingJob {
    PendingJob {
        id: id.into(),
        queue: queue.into(),
        priority: 0,
        submit_seq: 0,
        queued_at: 0,
        tasks,
        min_available: None,
    }
}

pub fn running(job: &str, queue: &str, node: &str, resources: Resources) -> Allocation {
    Allocation {
        job: job.into(),
        queue: queue.into(),
        node: node.into(),
        resources,
    }
}

/// A snapshot at time 0 without running work or reservations; submit sequence in list order.
pub fn snapshot(nodes: Vec<Node>, queues: Vec<Queue>, mut pending: Vec<PendingJob>) -> Snapshot {
    for (i, j) in pending.iter_mut().enumerate() {
        j.submit_seq = i as u64;
    }
    Snapshot {
        now: 0,
        nodes,
        queues,
        running: Vec::new(),
        pending,
        reservations: Vec::new(),
    }
}

pub fn scheduler() -> Scheduler {
    Scheduler::default()
}

fn random_request(rng: &mut Rng, gpu: bool) -> Resources {
    Resources::new(
        rng.range(1, 40) * 100,
        rng.range(1, 32) * GIB / 4,
        if gpu { rng.range(1, 2) } else { 0 },
    )
}

/// A random cluster with random queues, running work and pending jobs (including some
/// invalid ones and some that have starved).
pub fn random_snapshot(seed: u64) -> Snapshot {
    let mut rng = Rng::new(seed);
    let zones = ["a", "b"];
    let mut nodes = Vec::new();
    for i in 0..rng.range(1, 12) {
        let gpus = if rng.chance(0.3) { rng.range(1, 8) } else { 0 };
        let mut n = node(
            &format!("n{i:02}"),
            Resources::new(rng.range(2, 16) * 1000, rng.range(4, 64) * GIB, gpus),
        );
        if let Some(z) = rng.pick(&zones) {
            n.labels.insert("zone".into(), (*z).into());
        }
        nodes.push(n);
    }
    let total = nodes
        .iter()
        .fold(Resources::ZERO, |t, n| t.saturating_add(n.allocatable));
    let mut queues = Vec::new();
    for i in 0..rng.range(1, 4) {
        let mut q = queue(
            &format!("q{i}"),
            u32::try_from(rng.range(1, 4)).unwrap_or(1),
        );
        if rng.chance(0.5) {
            q.capability = Resources::new(
                total.cpu_millis * rng.range(2, 8) / 10,
                total.memory_bytes * rng.range(2, 8) / 10,
                total.gpus * rng.range(2, 8) / 10,
            );
        }
        if rng.chance(0.3) {
            q.guarantee = Resources::new(
                q.capability.cpu_millis.min(total.cpu_millis) / 5,
                q.capability.memory_bytes.min(total.memory_bytes) / 5,
                q.capability.gpus.min(total.gpus) / 5,
            );
        }
        queues.push(q);
    }
    // Running work, placed directly where it fits.
    let mut free: Vec<Resources> = nodes.iter().map(|n| n.allocatable).collect();
    let mut running_list = Vec::new();
    for i in 0..rng.range(0, 20) {
        let n = usize::try_from(rng.range(0, nodes.len() as u64 - 1)).unwrap_or(0);
        let gpu = free[n].gpus > 0 && rng.chance(0.5);
        let request = random_request(&mut rng, gpu);
        if let Some(left) = free[n].checked_sub(request) {
            free[n] = left;
            let q = rng
                .pick(&queues)
                .map(|q| q.name.clone())
                .unwrap_or_default();
            running_list.push(running(&format!("r{i}"), &q, &nodes[n].name, request));
        }
    }
    let now = 1000;
    let mut pending = Vec::new();
    for i in 0..rng.range(0, 25) {
        let mut tasks = Vec::new();
        for t in 0..rng.range(1, 3) {
            let gpu = total.gpus > 0 && rng.chance(0.3);
            let mut task = TaskSpec::new(
                format!("role{t}"),
                u32::try_from(rng.range(1, 6)).unwrap_or(1),
                random_request(&mut rng, gpu),
            );
            if rng.chance(0.15) {
                task.node_selector.insert("zone".into(), "a".into());
            }
            if rng.chance(0.02) {
                task = task.with_node_selector([("accelerator", "tpu")]); // no node has it
            }
            if rng.chance(0.03) {
                task.replicas = 0; // invalid
            }
            if rng.chance(0.03) {
                task.request.cpu_millis = 1000 * 1000; // fits on no node
            }
            tasks.push(task);
        }
        let count: u64 = tasks.iter().map(|t| u64::from(t.replicas)).sum();
        let queue_name = if rng.chance(0.03) {
            "missing".to_string()
        } else {
            rng.pick(&queues)
                .map(|q| q.name.clone())
                .unwrap_or_default()
        };
        pending.push(PendingJob {
            id: format!("j{i:02}"),
            queue: queue_name,
            priority: i32::try_from(rng.range(0, 3)).unwrap_or(0) - 1,
            submit_seq: i,
            queued_at: rng.range(0, now),
            min_available: if rng.chance(0.3) && count > 0 {
                u32::try_from(rng.range(1, count)).ok()
            } else {
                None
            },
            tasks,
        });
    }
    Snapshot {
        now,
        nodes,
        queues,
        running: running_list,
        pending,
        reservations: Vec::new(),
    }
}
