//! A deterministic multi-cycle simulation around the scheduler, and an independent checker of
//! its decisions. Used by the property tests and the `simulate` benchmark; also a way to try a
//! queue configuration before deploying it.
//!
//! Nothing here is needed to run the scheduler: the control plane builds snapshots from its
//! store and carries decisions out with an executor.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::validate::Gang;
use crate::{
    Allocation, Decisions, Error, Node, PendingJob, Queue, Reservation, Resources, Scheduler,
    Snapshot,
};

/// SplitMix64: a tiny, fast, seeded generator for workloads (not for anything secret).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (returns `lo` if `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        let span = hi - lo + 1;
        if span == 0 {
            return self.next_u64();
        }
        lo + self.next_u64() % span
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    /// One element of a non-empty slice (`None` if empty).
    pub fn pick<'s, T>(&mut self, items: &'s [T]) -> Option<&'s T> {
        if items.is_empty() {
            return None;
        }
        let i = self.range(0, items.len() as u64 - 1);
        items.get(usize::try_from(i).unwrap_or(0))
    }

    /// Shuffles in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = usize::try_from(self.range(0, i as u64)).unwrap_or(0);
            items.swap(i, j);
        }
    }
}

struct Running {
    job: String,
    allocations: Vec<Allocation>,
    ends_at: u64,
}

/// A cluster that runs the scheduler every `step`, starts what it places, and finishes jobs
/// after their durations.
pub struct Simulation {
    pub scheduler: Scheduler,
    pub nodes: Vec<Node>,
    pub queues: Vec<Queue>,
    /// The simulated clock, in seconds.
    pub now: u64,
    pending: Vec<PendingJob>,
    durations: HashMap<String, u64>,
    running: Vec<Running>,
    reservations: Vec<Reservation>,
    next_seq: u64,
    /// Start time of every job that started.
    pub started_at: HashMap<String, u64>,
    /// Every check failure seen (see [`verify`]); empty when all decisions were sound.
    pub violations: Vec<String>,
}

impl Simulation {
    pub fn new(scheduler: Scheduler, nodes: Vec<Node>, queues: Vec<Queue>) -> Self {
        Simulation {
            scheduler,
            nodes,
            queues,
            now: 0,
            pending: Vec::new(),
            durations: HashMap::new(),
            running: Vec::new(),
            reservations: Vec::new(),
            next_seq: 0,
            started_at: HashMap::new(),
            violations: Vec::new(),
        }
    }

    /// Queues a job now (its `queued_at` and `submit_seq` are set here); it runs for
    /// `duration` seconds once started.
    pub fn submit(&mut self, mut job: PendingJob, duration: u64) {
        job.queued_at = self.now;
        job.submit_seq = self.next_seq;
        self.next_seq += 1;
        self.durations.insert(job.id.clone(), duration);
        self.pending.push(job);
    }

    /// Jobs waiting.
    pub fn pending(&self) -> &[PendingJob] {
        &self.pending
    }

    /// Replicas running now.
    pub fn running(&self) -> impl Iterator<Item = &Allocation> {
        self.running.iter().flat_map(|r| r.allocations.iter())
    }

    /// What each queue's running replicas hold now.
    pub fn allocated_by_queue(&self) -> BTreeMap<String, Resources> {
        let mut out: BTreeMap<String, Resources> = self
            .queues
            .iter()
            .map(|q| (q.name.clone(), Resources::ZERO))
            .collect();
        for a in self.running() {
            let e = out.entry(a.queue.clone()).or_default();
            *e = e.saturating_add(a.resources);
        }
        out
    }

    /// The snapshot the next cycle would see.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            now: self.now,
            nodes: self.nodes.clone(),
            queues: self.queues.clone(),
            running: self.running().cloned().collect(),
            pending: self.pending.clone(),
            reservations: self.reservations.clone(),
        }
    }

    /// Finishes jobs whose time is up, runs one cycle, starts what it placed, checks the
    /// decisions with [`verify`], then advances the clock by `dt` seconds.
    pub fn step(&mut self, dt: u64) -> Result<Decisions, Error> {
        let now = self.now;
        self.running.retain(|r| r.ends_at > now);
        let snapshot = self.snapshot();
        let decisions = self.scheduler.schedule(&snapshot)?;
        self.violations.extend(verify(&snapshot, &decisions));
        let placed: HashSet<&str> = decisions
            .placements
            .iter()
            .map(|p| p.job.as_str())
            .collect();
        let by_id: HashMap<&str, &PendingJob> =
            self.pending.iter().map(|j| (j.id.as_str(), j)).collect();
        let mut started = Vec::new();
        for p in &decisions.placements {
            let Some(job) = by_id.get(p.job.as_str()) else {
                continue;
            };
            let request: HashMap<&str, Resources> = job
                .tasks
                .iter()
                .map(|t| (t.role.as_str(), t.request))
                .collect();
            let allocations = p
                .replicas
                .iter()
                .map(|r| Allocation {
                    job: p.job.clone(),
                    queue: p.queue.clone(),
                    node: r.node.clone(),
                    resources: request.get(r.role.as_str()).copied().unwrap_or_default(),
                })
                .collect();
            let duration = self.durations.get(&p.job).copied().unwrap_or(1);
            started.push(Running {
                job: p.job.clone(),
                allocations,
                ends_at: now.saturating_add(duration.max(1)),
            });
        }
        for r in &started {
            self.started_at.insert(r.job.clone(), now);
        }
        self.running.extend(started);
        self.pending.retain(|j| !placed.contains(j.id.as_str()));
        self.reservations = decisions.reservations.clone();
        self.now = now.saturating_add(dt);
        Ok(decisions)
    }

    /// Jobs running now, by id.
    pub fn running_jobs(&self) -> impl Iterator<Item = &str> {
        self.running.iter().map(|r| r.job.as_str())
    }
}

/// Checks decisions against their snapshot from first principles, without the scheduler's
/// data structures, and returns every violation found:
/// - every pending job is either placed or explained, exactly once;
/// - a placed job has at least its `min_available` replicas, each a real, distinct replica,
///   and no rejected or unknown job is placed;
/// - no node holds more than its allocatable (running plus placed replicas);
/// - no queue holds more than its capability, unless it already did before the cycle;
/// - a replica that asks for GPUs is only on a node that has GPUs, and matches its selector;
/// - reservations hold no more than a node's allocatable.
pub fn verify(snapshot: &Snapshot, decisions: &Decisions) -> Vec<String> {
    let mut bad = Vec::new();
    let jobs: HashMap<&str, &PendingJob> = snapshot
        .pending
        .iter()
        .map(|j| (j.id.as_str(), j))
        .collect();
    let nodes: HashMap<&str, &Node> = snapshot
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n))
        .collect();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for p in &decisions.placements {
        *seen.entry(p.job.as_str()).or_default() += 1;
    }
    for e in &decisions.waiting {
        *seen.entry(e.job.as_str()).or_default() += 1;
        if e.message.is_empty() {
            bad.push(format!("job {}: empty explanation", e.job));
        }
    }
    for j in &snapshot.pending {
        match seen.get(j.id.as_str()) {
            Some(1) => {}
            Some(n) => bad.push(format!("job {} decided {n} times", j.id)),
            None => bad.push(format!("job {} neither placed nor explained", j.id)),
        }
    }
    let mut used: HashMap<&str, Resources> = HashMap::new();
    let mut queue_used: HashMap<&str, Resources> = HashMap::new();
    for a in &snapshot.running {
        let u = used.entry(a.node.as_str()).or_default();
        *u = u.saturating_add(a.resources);
        let q = queue_used.entry(a.queue.as_str()).or_default();
        *q = q.saturating_add(a.resources);
    }
    let before = queue_used.clone();
    for p in &decisions.placements {
        let Some(job) = jobs.get(p.job.as_str()) else {
            bad.push(format!("placed job {} is not pending", p.job));
            continue;
        };
        let count: u64 = job.tasks.iter().map(|t| u64::from(t.replicas)).sum();
        let min = job.min_available.map_or(count, u64::from);
        if (p.replicas.len() as u64) < min {
            bad.push(format!(
                "job {}: {} replicas placed, gang needs {min}",
                p.job,
                p.replicas.len()
            ));
        }
        // The gang is the first `min` replicas in task order: all of them must be placed.
        let placed: HashSet<(&str, u32)> = p
            .replicas
            .iter()
            .map(|r| (r.role.as_str(), r.index))
            .collect();
        if placed.len() != p.replicas.len() {
            bad.push(format!("job {}: a replica is placed twice", p.job));
        }
        for (t, i) in Gang::replicas(job).take(usize::try_from(min).unwrap_or(usize::MAX)) {
            if !placed.contains(&(job.tasks[t].role.as_str(), i)) {
                bad.push(format!(
                    "job {}: gang replica {}/{i} not placed",
                    p.job, job.tasks[t].role
                ));
            }
        }
        for r in &p.replicas {
            let Some(task) = job.tasks.iter().find(|t| t.role == r.role) else {
                bad.push(format!("job {}: unknown role {}", p.job, r.role));
                continue;
            };
            if r.index >= task.replicas {
                bad.push(format!(
                    "job {}: replica {}/{} out of range",
                    p.job, r.role, r.index
                ));
            }
            let Some(node) = nodes.get(r.node.as_str()) else {
                bad.push(format!("job {}: unknown node {}", p.job, r.node));
                continue;
            };
            if task.request.gpus > 0 && node.allocatable.gpus == 0 {
                bad.push(format!(
                    "job {}: GPU replica on GPU-less node {}",
                    p.job, r.node
                ));
            }
            if !task
                .node_selector
                .iter()
                .all(|(k, v)| node.labels.get(k) == Some(v))
            {
                bad.push(format!(
                    "job {}: replica on node {} outside its selector",
                    p.job, r.node
                ));
            }
            let u = used.entry(r.node.as_str()).or_default();
            *u = u.saturating_add(task.request);
            let q = queue_used.entry(p.queue.as_str()).or_default();
            *q = q.saturating_add(task.request);
        }
    }
    for (name, u) in &used {
        if let Some(node) = nodes.get(name)
            && !u.fits_in(&node.allocatable)
        {
            bad.push(format!(
                "node {name} over-committed: {u} of {}",
                node.allocatable
            ));
        }
    }
    for q in &snapshot.queues {
        let after = queue_used.get(q.name.as_str()).copied().unwrap_or_default();
        let prior = before.get(q.name.as_str()).copied().unwrap_or_default();
        if !after.fits_in(&q.capability) && after != prior {
            bad.push(format!(
                "queue {} past its capability: {after} of {}",
                q.name, q.capability
            ));
        }
    }
    let mut held: HashMap<&str, Resources> = HashMap::new();
    for r in &decisions.reservations {
        for h in &r.holds {
            let e = held.entry(h.node.as_str()).or_default();
            *e = e.saturating_add(h.resources);
        }
    }
    for (name, h) in held {
        match nodes.get(name) {
            Some(node) if h.fits_in(&node.allocatable) => {}
            _ => bad.push(format!(
                "reservation holds {h} on node {name}, more than it has"
            )),
        }
    }
    bad
}
