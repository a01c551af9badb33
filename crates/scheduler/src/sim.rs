//! A deterministic multi-cycle simulation around the scheduler, and an independent checker of
//! its decisions. Used by the property tests and the `simulate` benchmark; also a way to try a
//! queue configuration before deploying it.
//!
//! Nothing here is needed to run the scheduler: the control plane builds snapshots from its
//! store and carries decisions out with an executor.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::validate::Gang;
use crate::{
    Allocation, Config, Decisions, Error, Node, PendingJob, PlacementPolicy, Queue, Reason,
    Rejection, Reservation, Resources, Scheduler, Snapshot, TaskSpec,
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
    /// Every check failure seen (see [`verify`] and, under [`PlacementPolicy::Pack`],
    /// [`verify_packing`]); empty when all decisions were sound.
    pub violations: Vec<String>,
    /// Jobs dropped because their explanation was permanent (the control plane fails them).
    pub rejected: Vec<String>,
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
            rejected: Vec::new(),
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

    /// Finishes jobs whose time is up, runs one cycle, starts what it placed, drops the jobs
    /// it rejected, checks the decisions with [`verify`] (and [`verify_packing`] under
    /// [`PlacementPolicy::Pack`]), then advances the clock by `dt` seconds.
    pub fn step(&mut self, dt: u64) -> Result<Decisions, Error> {
        let now = self.now;
        self.running.retain(|r| r.ends_at > now);
        let snapshot = self.snapshot();
        let decisions = self.scheduler.schedule(&snapshot)?;
        self.violations.extend(verify(&snapshot, &decisions));
        if self.scheduler.config().placement == PlacementPolicy::Pack {
            self.violations
                .extend(verify_packing(&snapshot, &decisions));
        }
        let mut placed: HashSet<&str> = decisions
            .placements
            .iter()
            .map(|p| p.job.as_str())
            .collect();
        for e in decisions.waiting.iter().filter(|e| e.is_permanent()) {
            self.rejected.push(e.job.clone());
            placed.insert(e.job.as_str());
        }
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

    /// How fragmented the GPU nodes are now.
    pub fn fragmentation(&self) -> Fragmentation {
        fragmentation(&self.nodes, self.running())
    }
}

/// How the GPU nodes are used at one moment. A GPU node is *partly used* when at least one
/// replica (with or without GPUs) runs on it, *whole free* when none does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fragmentation {
    /// Free GPUs on partly used GPU nodes: only replicas that fit beside what runs there can
    /// use them, so a job that needs whole nodes cannot.
    pub gpus_free_on_partly_used_nodes: u64,
    /// GPU nodes on which nothing runs.
    pub whole_free_gpu_nodes: u64,
    /// Free GPUs in all (on whole free and partly used nodes).
    pub free_gpus: u64,
    /// Replicas that ask for no GPU running on GPU nodes.
    pub cpu_replicas_on_gpu_nodes: u64,
}

/// The [`Fragmentation`] of `nodes` with `running` replicas on them (replicas on unknown
/// nodes are ignored).
pub fn fragmentation<'r>(
    nodes: &[Node],
    running: impl IntoIterator<Item = &'r Allocation>,
) -> Fragmentation {
    let mut used: HashMap<&str, (Resources, u64)> = HashMap::new();
    let mut cpu_on_gpu = 0;
    let gpu_nodes: HashSet<&str> = nodes
        .iter()
        .filter(|n| n.allocatable.gpus > 0)
        .map(|n| n.name.as_str())
        .collect();
    for a in running {
        let e = used.entry(a.node.as_str()).or_default();
        e.0 = e.0.saturating_add(a.resources);
        e.1 += 1;
        if a.resources.gpus == 0 && gpu_nodes.contains(a.node.as_str()) {
            cpu_on_gpu += 1;
        }
    }
    let mut f = Fragmentation {
        cpu_replicas_on_gpu_nodes: cpu_on_gpu,
        ..Fragmentation::default()
    };
    for n in nodes.iter().filter(|n| n.allocatable.gpus > 0) {
        let (taken, replicas) = used.get(n.name.as_str()).copied().unwrap_or_default();
        let free = n.allocatable.gpus.saturating_sub(taken.gpus);
        f.free_gpus += free;
        if replicas == 0 {
            f.whole_free_gpu_nodes += 1;
        } else {
            f.gpus_free_on_partly_used_nodes += free;
        }
    }
    f
}

/// The rule of [`PlacementPolicy::Pack`] for replicas that ask for no GPU, checked from first
/// principles: such a replica is on a GPU node only if no node without GPUs that its selector
/// allows had room for it. Capacity only shrinks during a cycle and reservations only grow,
/// so "room" is judged at the end of the cycle (allocatable less running, placed and held):
/// a node with room then had room when the replica was placed. Replicas of jobs that held a
/// reservation in the snapshot are exempt (they go where their reservation holds capacity).
pub fn verify_packing(snapshot: &Snapshot, decisions: &Decisions) -> Vec<String> {
    let mut bad = Vec::new();
    let jobs: HashMap<&str, &PendingJob> = snapshot
        .pending
        .iter()
        .map(|j| (j.id.as_str(), j))
        .collect();
    let reserved: HashSet<&str> = snapshot
        .reservations
        .iter()
        .map(|r| r.job.as_str())
        .collect();
    let mut taken: HashMap<&str, Resources> = HashMap::new();
    for a in &snapshot.running {
        let e = taken.entry(a.node.as_str()).or_default();
        *e = e.saturating_add(a.resources);
    }
    for h in decisions.reservations.iter().flat_map(|r| &r.holds) {
        let e = taken.entry(h.node.as_str()).or_default();
        *e = e.saturating_add(h.resources);
    }
    let request_of = |job: &str, role: &str| {
        jobs.get(job)
            .and_then(|j| j.tasks.iter().find(|t| t.role == role))
    };
    for p in &decisions.placements {
        for r in &p.replicas {
            if let Some(t) = request_of(&p.job, &r.role) {
                let e = taken.entry(r.node.as_str()).or_default();
                *e = e.saturating_add(t.request);
            }
        }
    }
    let cpu_nodes: Vec<(&Node, Resources)> = snapshot
        .nodes
        .iter()
        .filter(|n| n.allocatable.gpus == 0)
        .map(|n| {
            let t = taken.get(n.name.as_str()).copied().unwrap_or_default();
            (n, n.allocatable.saturating_sub(t))
        })
        .collect();
    let gpu_nodes: HashSet<&str> = snapshot
        .nodes
        .iter()
        .filter(|n| n.allocatable.gpus > 0)
        .map(|n| n.name.as_str())
        .collect();
    for p in decisions
        .placements
        .iter()
        .filter(|p| !reserved.contains(p.job.as_str()))
    {
        for r in &p.replicas {
            let Some(task) = request_of(&p.job, &r.role) else {
                continue;
            };
            if task.request.gpus > 0 || !gpu_nodes.contains(r.node.as_str()) {
                continue;
            }
            let room = cpu_nodes.iter().find(|(n, free)| {
                task.request.fits_in(free)
                    && task
                        .node_selector
                        .iter()
                        .all(|(k, v)| n.labels.get(k) == Some(v))
            });
            if let Some((n, free)) = room {
                bad.push(format!(
                    "job {}: CPU-only replica {}/{} on GPU node {} while node {} without GPUs \
                     has {free} free",
                    p.job, r.role, r.index, r.node, n.name
                ));
            }
        }
    }
    bad
}

/// Checks decisions against their snapshot from first principles, without the scheduler's
/// data structures, and returns every violation found:
/// - every pending job is either placed or explained, exactly once;
/// - a placed job has at least its `min_available` replicas, each a real, distinct replica,
///   and no rejected or unknown job is placed;
/// - no node holds more than its allocatable (running plus placed replicas);
/// - no queue holds more than its capability, unless it already did before the cycle;
/// - a replica that asks for GPUs is only on a node that has GPUs, and every replica is on a
///   node that carries all the labels of its task's selector;
/// - a job rejected because its selector matches no node (or no selected node is large
///   enough, or the selected nodes together are too small for the gang) really is so;
/// - reservations hold no more than a node's allocatable.
///
/// These hold under every [`PlacementPolicy`]; [`verify_packing`] checks what only
/// [`PlacementPolicy::Pack`] promises.
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
    for e in &decisions.waiting {
        let Reason::Rejected(rejection) = &e.reason else {
            continue;
        };
        let selected = |selector: &BTreeMap<String, String>| {
            snapshot
                .nodes
                .iter()
                .filter(|n| selector.iter().all(|(k, v)| n.labels.get(k) == Some(v)))
                .map(|n| n.allocatable)
                .collect::<Vec<_>>()
        };
        match rejection {
            Rejection::NoNodeMatchesSelector { node_selector, .. }
                if !selected(node_selector).is_empty() =>
            {
                bad.push(format!(
                    "job {}: rejected for a selector that some node matches",
                    e.job
                ));
            }
            Rejection::NoNodeFits {
                request,
                node_selector,
                ..
            } if selected(node_selector).iter().any(|a| request.fits_in(a)) => {
                bad.push(format!(
                    "job {}: rejected as fitting no node, but a selected node holds it",
                    e.job
                ));
            }
            Rejection::LargerThanSelectedNodes {
                node_selector,
                needs,
                ..
            } if needs.fits_in(
                &selected(node_selector)
                    .into_iter()
                    .fold(Resources::ZERO, Resources::saturating_add),
            ) =>
            {
                bad.push(format!(
                    "job {}: rejected as larger than its selected nodes, but they hold it",
                    e.job
                ));
            }
            _ => {}
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

/// The mixed cluster and workload of the placement tests and the `simulate` example.
///
/// Nodes: `cpu_nodes` of 32 CPU / 128 GiB without GPUs, `gpu_nodes` of 8 GPUs / 64 CPU /
/// 512 GiB; every node is labelled `zone=a` or `zone=b` (alternately), and GPU nodes
/// `accelerator=a100` (the first half) or `accelerator=h100`. One queue, `default`.
///
/// Each step a job arrives with probability `arrival_chance`: a GPU training job with
/// probability `gpu_job_share` (a CPU `launcher`, sometimes one or two `ps` replicas, and 1–4
/// `worker`s of 1, 2, 4 or 8 GPUs each, 6 CPU and 48 GiB per GPU; a quarter of them select
/// `accelerator=h100`), otherwise a CPU job (1–16 replicas of 1–8 CPU, 2–16 GiB; a fifth
/// select `zone=a`). At step `cpu_burst_at`, `cpu_burst_jobs` CPU jobs of 16 replicas × 4 CPU
/// arrive at once, more than the nodes without GPUs have, so CPU work spills onto GPU nodes.
#[derive(Debug, Clone, PartialEq)]
pub struct MixedScenario {
    pub seed: u64,
    pub cpu_nodes: usize,
    pub gpu_nodes: usize,
    /// Simulated seconds (one cycle each).
    pub steps: u64,
    pub arrival_chance: f64,
    pub gpu_job_share: f64,
    pub cpu_burst_at: u64,
    pub cpu_burst_jobs: usize,
}

impl Default for MixedScenario {
    /// 40 CPU nodes and 20 GPU nodes for an hour of simulated time, loaded to roughly 80 % of
    /// the GPUs, with a burst of CPU work half-way.
    fn default() -> Self {
        MixedScenario {
            seed: 1,
            cpu_nodes: 40,
            gpu_nodes: 20,
            steps: 3600,
            arrival_chance: 0.09,
            gpu_job_share: 0.45,
            cpu_burst_at: 1800,
            cpu_burst_jobs: 30,
        }
    }
}

/// What one run of a [`MixedScenario`] saw.
#[derive(Debug, Clone, Default)]
pub struct MixedRun {
    /// The fragmentation after each cycle's placements started, by step.
    pub samples: Vec<Fragmentation>,
    /// Jobs submitted, started, and rejected (permanently).
    pub submitted: usize,
    pub started: usize,
    pub rejected: usize,
    /// GPU jobs started.
    pub gpu_jobs_started: usize,
    /// How long each started GPU job waited in the queue, in seconds.
    pub gpu_job_waits: Vec<u64>,
    /// The checker's findings ([`verify`], and [`verify_packing`] under
    /// [`PlacementPolicy::Pack`]); empty when every decision was sound.
    pub violations: Vec<String>,
}

impl MixedRun {
    /// The mean of one [`Fragmentation`] field over all samples.
    pub fn mean(&self, field: impl Fn(&Fragmentation) -> u64) -> f64 {
        if self.samples.is_empty() {
            return 0.0;
        }
        self.samples.iter().map(|f| field(f) as f64).sum::<f64>() / self.samples.len() as f64
    }
}

impl MixedScenario {
    /// The scenario's nodes.
    pub fn nodes(&self) -> Vec<Node> {
        let zone = |i: usize| if i.is_multiple_of(2) { "a" } else { "b" };
        let mut nodes: Vec<Node> = (0..self.cpu_nodes)
            .map(|i| {
                Node::new(format!("cpu-{i:03}"), Resources::new(32_000, 128 * GIB, 0))
                    .with_labels([("zone", zone(i))])
            })
            .collect();
        nodes.extend((0..self.gpu_nodes).map(|i| {
            let accelerator = if i < self.gpu_nodes / 2 {
                "a100"
            } else {
                "h100"
            };
            Node::new(format!("gpu-{i:03}"), Resources::new(64_000, 512 * GIB, 8))
                .with_labels([("zone", zone(i)), ("accelerator", accelerator)])
        }));
        nodes
    }

    fn gpu_job(rng: &mut Rng, id: String) -> (PendingJob, u64) {
        let gpus = *rng.pick(&[1u64, 2, 4, 8]).unwrap_or(&1);
        let workers = u32::try_from(rng.range(1, 4)).unwrap_or(1);
        let mut tasks = vec![TaskSpec::new(
            "launcher",
            1,
            Resources::new(2000, 4 * GIB, 0),
        )];
        if rng.chance(0.3) {
            let ps = u32::try_from(rng.range(1, 2)).unwrap_or(1);
            tasks.push(TaskSpec::new("ps", ps, Resources::new(4000, 16 * GIB, 0)));
        }
        let mut worker = TaskSpec::new(
            "worker",
            workers,
            Resources::new(6000 * gpus, 48 * GIB * gpus, gpus),
        );
        if rng.chance(0.25) {
            worker = worker.with_node_selector([("accelerator", "h100")]);
        }
        tasks.push(worker);
        (mixed_job(id, tasks), rng.range(60, 600))
    }

    fn cpu_job(rng: &mut Rng, id: String) -> (PendingJob, u64) {
        let replicas = u32::try_from(rng.range(1, 16)).unwrap_or(1);
        let request = Resources::new(rng.range(1, 8) * 1000, rng.range(2, 16) * GIB, 0);
        let mut task = TaskSpec::new("worker", replicas, request);
        if rng.chance(0.2) {
            task = task.with_node_selector([("zone", "a")]);
        }
        (mixed_job(id, vec![task]), rng.range(20, 300))
    }

    /// Runs the scenario with `config`. The arrivals depend only on the seed, so runs with
    /// different configs see the same jobs at the same times.
    pub fn run(&self, config: Config) -> Result<MixedRun, Error> {
        let mut sim = Simulation::new(
            Scheduler::new(config),
            self.nodes(),
            vec![Queue::new("default", 1)],
        );
        let mut rng = Rng::new(self.seed);
        let mut out = MixedRun::default();
        // GPU jobs and when they were submitted.
        let mut gpu_jobs: HashMap<String, u64> = HashMap::new();
        for t in 0..self.steps {
            let mut arrivals = Vec::new();
            if rng.chance(self.arrival_chance) {
                let id = format!("job-{:05}", out.submitted + arrivals.len());
                arrivals.push(if rng.chance(self.gpu_job_share) {
                    gpu_jobs.insert(id.clone(), t);
                    Self::gpu_job(&mut rng, id)
                } else {
                    Self::cpu_job(&mut rng, id)
                });
            }
            if t == self.cpu_burst_at {
                for _ in 0..self.cpu_burst_jobs {
                    let id = format!("burst-{:05}", out.submitted + arrivals.len());
                    let task = TaskSpec::new("worker", 16, Resources::new(4000, 8 * GIB, 0));
                    arrivals.push((mixed_job(id, vec![task]), rng.range(200, 400)));
                }
            }
            out.submitted += arrivals.len();
            for (job, duration) in arrivals {
                sim.submit(job, duration);
            }
            let decisions = sim.step(1)?;
            out.started += decisions.placements.len();
            for p in &decisions.placements {
                if let Some(&submitted) = gpu_jobs.get(&p.job) {
                    out.gpu_jobs_started += 1;
                    out.gpu_job_waits.push(t - submitted);
                }
            }
            out.samples.push(sim.fragmentation());
        }
        out.rejected = sim.rejected.len();
        out.violations = std::mem::take(&mut sim.violations);
        Ok(out)
    }
}

const GIB: u64 = 1 << 30;

fn mixed_job(id: String, tasks: Vec<TaskSpec>) -> PendingJob {
    PendingJob {
        id,
        queue: "default".into(),
        priority: 0,
        submit_seq: 0,
        queued_at: 0,
        tasks,
        min_available: None,
    }
}
