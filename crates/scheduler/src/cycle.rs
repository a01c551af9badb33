//! One scheduling cycle: [`Snapshot`] in, [`Decisions`] out. The rules are described in
//! `docs/scheduler.md`; this file follows its order:
//!
//! 1. account running replicas against nodes and queues, check every pending job;
//! 2. compute each queue's deserved share ([`crate::proportion`]);
//! 3. place jobs that hold a reservation (step 0);
//! 4. the fair pass: queues in order of share (lowest first), each queue's jobs by
//!    starving first, then priority, then submission order; smaller jobs may pass a blocked one;
//! 5. the lending pass: capacity nobody within their share could use goes to jobs that were
//!    held back only by their queue's fair share;
//! 6. the oldest starving jobs that are blocked by node capacity reserve nodes.
//!
//! Wherever a replica is placed, `Cycle::choose` picks its node by [`PlacementPolicy`].

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use crate::index::NodeIndex;
use crate::proportion::{self, Claim};
use crate::validate::{self, Gang, NodeFitCache};
use crate::{
    Decisions, Error, Explanation, Hold, Node, PendingJob, Placement, Queue, QueueStatus, Reason,
    ReplicaPlacement, Reservation, Resources, Snapshot,
};

/// The scheduler's knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// A job that has been queued this long is *starving*: it goes ahead of the non-starving
    /// jobs of its queue, its queue admits nothing past it when its queue's capability or
    /// share holds it back, and when free node capacity holds it back it may reserve nodes.
    pub starvation_after_secs: u64,
    /// How many starving jobs may hold reservations at once (0 disables reservations; then
    /// backfill can starve big gangs).
    pub reservation_depth: usize,
    /// Whether capacity that no queue within its fair share can use this cycle is lent to
    /// queues beyond their share (still within capability). Without preemption, lent
    /// capacity comes back when the borrowing jobs finish.
    pub lend_idle_capacity: bool,
    /// How replicas choose among the nodes that fit them (see [`PlacementPolicy`]).
    pub placement: PlacementPolicy,
}

/// How a replica chooses among the nodes that can hold it. Both honour node selectors, gangs
/// and capabilities alike; they differ only in which fitting node is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PlacementPolicy {
    /// Keep whole GPU nodes free for big jobs (the default):
    /// - a replica that asks for no GPU goes to a node without GPUs while one fits, and to a
    ///   GPU node (first those whose GPUs are all taken) only when none does;
    /// - a GPU replica goes first to a node its job already took in this cycle (the fullest
    ///   of them), then to the fullest partly used node that holds all the job's GPU replicas
    ///   still to place, then to the fullest partly used node that holds it, and only then to
    ///   a whole free node (the smallest that holds it): a job's GPU replicas fill one node
    ///   before opening another, and whole GPU nodes stay free for jobs that need them;
    /// - among nodes without GPUs, best fit (the least free CPU that still holds the replica).
    #[default]
    Pack,
    /// Kubernetes' default `LeastAllocated` scoring, kept as the baseline the packing rules are
    /// measured against: every replica goes to the node with the most free of what it asks
    /// for (GPUs, else CPU), GPU nodes and CPU nodes alike.
    Spread,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            starvation_after_secs: 300,
            reservation_depth: 1,
            lend_idle_capacity: true,
            placement: PlacementPolicy::Pack,
        }
    }
}

/// The pure scheduling core. Holds only its configuration; every cycle is a function of the
/// snapshot, so equal snapshots give equal decisions, whatever order their lists are in.
#[derive(Debug, Clone, Default)]
pub struct Scheduler {
    config: Config,
}

impl Scheduler {
    pub fn new(config: Config) -> Self {
        Scheduler { config }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Runs one scheduling cycle. Fails only on a snapshot that breaks its invariants
    /// (duplicate node, queue or job names; an unusable queue definition).
    pub fn schedule(&self, snapshot: &Snapshot) -> Result<Decisions, Error> {
        let mut cycle = Cycle::new(&self.config, snapshot)?;
        cycle.run();
        Ok(cycle.into_decisions())
    }
}

enum Outcome {
    Unseen,
    Placed,
    Wait(Reason),
}

struct Job<'a> {
    job: &'a PendingJob,
    /// Index in `Snapshot::pending`.
    pos: usize,
    queue: usize,
    gang: Gang,
    waited: u64,
    starving: bool,
    /// Selector id per task (0: no selector).
    selectors: Vec<usize>,
}

struct QueueState<'a> {
    queue: &'a Queue,
    allocated: Resources,
    deserved: Resources,
    effective: Resources,
    /// Jobs (indices into `Cycle::jobs`) in the order the queue serves them.
    order: Vec<usize>,
    /// A starving job the queue admits nothing past.
    held_by: Option<usize>,
}

struct Active {
    job: usize,
    since: u64,
    holds: Vec<(u32, Resources)>,
}

/// Why a gang did not fit.
struct Failure {
    task: usize,
    fits_alone: bool,
    fitted: u64,
}

/// A queue's position in the serving order: lowest share first, then name.
#[derive(PartialEq)]
struct Share(f64, usize);

impl Eq for Share {}

impl PartialOrd for Share {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Share {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0).then(self.1.cmp(&other.1))
    }
}

struct Cycle<'a> {
    config: &'a Config,
    snap: &'a Snapshot,
    /// Nodes ordered by name; node ids below are indices into this.
    nodes: Vec<&'a Node>,
    /// True free capacity (allocatable less running and placed replicas).
    free: Vec<Resources>,
    /// Capacity held by reservations.
    hold: Vec<Resources>,
    /// Nodes indexed by `free - hold`: what ordinary jobs may use.
    index: NodeIndex,
    /// Per selector id, which nodes match (id 0, no selector, is empty: all match).
    eligible: Vec<Vec<bool>>,
    queues: Vec<QueueState<'a>>,
    total_weight: u64,
    jobs: Vec<Job<'a>>,
    outcome: Vec<Outcome>,
    placements: Vec<Placement>,
    active: Vec<Active>,
    /// Requests (with selector id) that fit on no node even alone; capacity only shrinks
    /// within a cycle, so they stay unplaceable.
    unplaceable: Vec<(Resources, usize)>,
}

impl<'a> Cycle<'a> {
    fn new(config: &'a Config, snap: &'a Snapshot) -> Result<Self, Error> {
        let mut nodes: Vec<&Node> = snap.nodes.iter().collect();
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = nodes.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::DuplicateNode(w[0].name.clone()));
        }
        let node_id: HashMap<&str, u32> = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.name.as_str(), id32(i)))
            .collect();

        let mut queue_refs: Vec<&Queue> = snap.queues.iter().collect();
        queue_refs.sort_by(|a, b| a.name.cmp(&b.name));
        if let Some(w) = queue_refs.windows(2).find(|w| w[0].name == w[1].name) {
            return Err(Error::DuplicateQueue(w[0].name.clone()));
        }
        for q in &queue_refs {
            validate::validate_queue(q)?;
        }
        let queue_id: HashMap<&str, usize> = queue_refs
            .iter()
            .enumerate()
            .map(|(i, q)| (q.name.as_str(), i))
            .collect();

        let total = nodes
            .iter()
            .fold(Resources::ZERO, |t, n| t.saturating_add(n.allocatable));
        let guarantees = queue_refs
            .iter()
            .fold(Resources::ZERO, |t, q| t.saturating_add(q.guarantee));
        let mut queues: Vec<QueueState> = queue_refs
            .iter()
            .map(|q| QueueState {
                queue: q,
                allocated: Resources::ZERO,
                deserved: Resources::ZERO,
                effective: effective_capability(q, total, guarantees),
                order: Vec::new(),
                held_by: None,
            })
            .collect();
        let total_weight = queue_refs.iter().map(|q| u64::from(q.weight)).sum();

        let mut free: Vec<Resources> = nodes.iter().map(|n| n.allocatable).collect();
        for a in &snap.running {
            if let Some(&n) = node_id.get(a.node.as_str()) {
                free[n as usize] = free[n as usize].saturating_sub(a.resources);
            }
            if let Some(&q) = queue_id.get(a.queue.as_str()) {
                queues[q].allocated = queues[q].allocated.saturating_add(a.resources);
            }
        }

        // Check every pending job; intern node selectors.
        let mut seen_ids: HashMap<&str, usize> = HashMap::with_capacity(snap.pending.len());
        let mut outcome = Vec::with_capacity(snap.pending.len());
        let mut jobs = Vec::with_capacity(snap.pending.len());
        let mut fit_cache = NodeFitCache::default();
        let mut selector_id: HashMap<&BTreeMap<String, String>, usize> = HashMap::new();
        let mut eligible: Vec<Vec<bool>> = vec![Vec::new()];
        let mut demand: Vec<Resources> = queues.iter().map(|q| q.allocated).collect();
        for (pos, job) in snap.pending.iter().enumerate() {
            if seen_ids.insert(job.id.as_str(), pos).is_some() {
                return Err(Error::DuplicateJob(job.id.clone()));
            }
            let checked = validate::check_job(
                job,
                |name| queue_id.get(name).map(|&i| queue_refs[i]),
                total,
                &nodes,
                &mut fit_cache,
            );
            let gang = match checked {
                Ok(g) => g,
                Err(rejection) => {
                    outcome.push(Outcome::Wait(Reason::Rejected(rejection)));
                    continue;
                }
            };
            outcome.push(Outcome::Unseen);
            let queue = queue_id
                .get(job.queue.as_str())
                .copied()
                .unwrap_or_default();
            demand[queue] = demand[queue].saturating_add(gang.total);
            let selectors = job
                .tasks
                .iter()
                .map(|t| {
                    if t.node_selector.is_empty() {
                        return 0;
                    }
                    *selector_id.entry(&t.node_selector).or_insert_with(|| {
                        eligible.push(nodes.iter().map(|n| n.matches(&t.node_selector)).collect());
                        eligible.len() - 1
                    })
                })
                .collect();
            let waited = snap.now.saturating_sub(job.queued_at);
            jobs.push(Job {
                job,
                pos,
                queue,
                gang,
                waited,
                starving: waited >= config.starvation_after_secs,
                selectors,
            });
        }

        // Deserved shares.
        let claims: Vec<Claim> = queues
            .iter()
            .zip(&demand)
            .map(|(q, &d)| Claim {
                weight: q.queue.weight,
                lo: q.queue.guarantee.min(d),
                hi: q.effective.min(d),
            })
            .collect();
        for (q, d) in queues.iter_mut().zip(proportion::deserved(total, &claims)) {
            q.deserved = d;
        }

        // Serving order within each queue.
        for (j, job) in jobs.iter().enumerate() {
            queues[job.queue].order.push(j);
        }
        for q in &mut queues {
            q.order.sort_by(|&a, &b| {
                let (a, b) = (&jobs[a], &jobs[b]);
                (
                    Reverse(a.starving),
                    Reverse(a.job.priority),
                    a.job.submit_seq,
                    &a.job.id,
                )
                    .cmp(&(
                        Reverse(b.starving),
                        Reverse(b.job.priority),
                        b.job.submit_seq,
                        &b.job.id,
                    ))
            });
        }

        let mut cycle = Cycle {
            config,
            snap,
            hold: vec![Resources::ZERO; nodes.len()],
            index: NodeIndex::default(),
            free,
            nodes,
            eligible,
            queues,
            total_weight,
            jobs,
            outcome,
            placements: Vec::new(),
            active: Vec::new(),
            unplaceable: Vec::new(),
        };
        cycle.keep_reservations(&node_id);
        cycle.index = NodeIndex::new(
            (0..cycle.nodes.len())
                .map(|n| (cycle.nodes[n].allocatable.gpus > 0, cycle.offered(id32(n)))),
        );
        Ok(cycle)
    }

    /// What ordinary jobs may use on node `n`.
    fn offered(&self, n: u32) -> Resources {
        self.free[n as usize].saturating_sub(self.hold[n as usize])
    }

    fn reindex(&mut self, n: u32) {
        let offered = self.offered(n);
        self.index.set_free(n, offered);
    }

    fn is_eligible(&self, selector: usize, n: u32) -> bool {
        selector == 0 || self.eligible[selector][n as usize]
    }

    /// Keeps the snapshot's reservations that still make sense: the job is pending, valid and
    /// starving, its nodes exist and can hold what is held, and the holds cover the gang.
    fn keep_reservations(&mut self, node_id: &HashMap<&str, u32>) {
        let job_id: HashMap<&str, usize> = self
            .jobs
            .iter()
            .enumerate()
            .map(|(j, job)| (job.job.id.as_str(), j))
            .collect();
        for r in &self.snap.reservations {
            if self.active.len() >= self.config.reservation_depth {
                break;
            }
            let Some(&j) = job_id.get(r.job.as_str()) else {
                continue;
            };
            if !self.jobs[j].starving || self.active.iter().any(|a| a.job == j) {
                continue;
            }
            let holds: Option<Vec<(u32, Resources)>> = r
                .holds
                .iter()
                .map(|h| node_id.get(h.node.as_str()).map(|&n| (n, h.resources)))
                .collect();
            let Some(holds) = holds else { continue };
            let fits_nodes = holds.iter().all(|&(n, h)| {
                self.hold[n as usize]
                    .checked_add(h)
                    .is_some_and(|t| t.fits_in(&self.nodes[n as usize].allocatable))
            });
            if !fits_nodes || !self.holds_cover_gang(j, &holds) {
                continue;
            }
            for &(n, h) in &holds {
                self.hold[n as usize] = self.hold[n as usize].saturating_add(h);
            }
            self.active.push(Active {
                job: j,
                since: r.since,
                holds,
            });
        }
    }

    /// True when the gang's replicas can be packed into the held amounts.
    fn holds_cover_gang(&self, j: usize, holds: &[(u32, Resources)]) -> bool {
        let job = &self.jobs[j];
        let mut left: Vec<Resources> = holds.iter().map(|h| h.1).collect();
        Gang::replicas(job.job)
            .take(usize::try_from(job.gang.min).unwrap_or(usize::MAX))
            .all(|(t, _)| {
                let request = job.job.tasks[t].request;
                let sel = job.selectors[t];
                let slot = holds
                    .iter()
                    .zip(&left)
                    .position(|(&(n, _), l)| request.fits_in(l) && self.is_eligible(sel, n));
                match slot {
                    Some(s) => {
                        left[s] = left[s].saturating_sub(request);
                        true
                    }
                    None => false,
                }
            })
    }

    fn run(&mut self) {
        self.place_reserved();
        let fair: Vec<Vec<usize>> = self
            .queues
            .iter()
            .map(|q| {
                q.order
                    .iter()
                    .copied()
                    .filter(|&j| matches!(self.outcome[self.jobs[j].pos], Outcome::Unseen))
                    .collect()
            })
            .collect();
        self.pass(fair, true);
        if self.config.lend_idle_capacity {
            let lend: Vec<Vec<usize>> = self
                .queues
                .iter()
                .map(|q| {
                    q.order
                        .iter()
                        .copied()
                        .filter(|&j| {
                            matches!(
                                self.outcome[self.jobs[j].pos],
                                Outcome::Wait(Reason::FairShare { .. })
                            )
                        })
                        .collect()
                })
                .collect();
            self.pass(lend, false);
        }
        self.reserve();
    }

    /// Step 0: jobs holding reservations go first, on their held nodes where they can.
    fn place_reserved(&mut self) {
        let mut k = 0;
        while k < self.active.len() {
            let j = self.active[k].job;
            let (q, pos, need) = (
                self.jobs[j].queue,
                self.jobs[j].pos,
                self.jobs[j].gang.min_total,
            );
            if let Some(reason) = self.capability_blocks(q, need) {
                self.outcome[pos] = Outcome::Wait(reason);
                self.queues[q].held_by = Some(j);
                k += 1;
                continue;
            }
            let holds = self.active[k].holds.clone();
            match self.place_gang(j, Some(&holds)) {
                Ok(placed) => {
                    let done = self.active.remove(k);
                    for (n, h) in done.holds {
                        self.hold[n as usize] = self.hold[n as usize].saturating_sub(h);
                        self.reindex(n);
                    }
                    self.admit(j, placed);
                }
                Err(_) => {
                    self.outcome[pos] = Outcome::Wait(self.draining(j, &holds));
                    k += 1;
                }
            }
        }
    }

    fn draining(&self, j: usize, holds: &[(u32, Resources)]) -> Reason {
        Reason::Draining {
            waited_secs: self.jobs[j].waited,
            needs: self.jobs[j].gang.min_total,
            nodes: holds
                .iter()
                .map(|&(n, _)| self.nodes[n as usize].name.clone())
                .collect(),
        }
    }

    fn share(&self, q: usize) -> Share {
        let qs = &self.queues[q];
        let mut share: f64 = 0.0;
        for d in crate::Dimension::ALL {
            let (a, s) = (qs.allocated.get(d), qs.deserved.get(d));
            if s > 0 {
                share = share.max(a as f64 / s as f64);
            } else if a > 0 {
                share = f64::INFINITY;
            }
        }
        Share(share, q)
    }

    /// Serves `lists[q]` for every queue, always from the queue with the lowest share.
    fn pass(&mut self, lists: Vec<Vec<usize>>, fair_gate: bool) {
        let mut cursor = vec![0usize; lists.len()];
        let mut heap: BinaryHeap<Reverse<Share>> = (0..lists.len())
            .filter(|&q| !lists[q].is_empty())
            .map(|q| Reverse(self.share(q)))
            .collect();
        while let Some(Reverse(Share(_, q))) = heap.pop() {
            let Some(&j) = lists[q].get(cursor[q]) else {
                continue;
            };
            cursor[q] += 1;
            self.attempt(j, fair_gate);
            if cursor[q] < lists[q].len() {
                heap.push(Reverse(self.share(q)));
            }
        }
    }

    fn capability_blocks(&self, q: usize, need: Resources) -> Option<Reason> {
        let qs = &self.queues[q];
        let fits = qs
            .allocated
            .checked_add(need)
            .is_some_and(|after| after.fits_in(&qs.effective));
        (!fits).then(|| Reason::QueueCapability {
            queue: qs.queue.name.clone(),
            needs: need,
            allocated: qs.allocated,
            capability: qs.queue.capability,
            effective_capability: qs.effective,
        })
    }

    /// The fair-share gate: a gang may start if it keeps its queue within its deserved share
    /// in every resource it asks for. A starving gang only needs its queue to be below its
    /// share (it may overshoot by itself), so that a gang larger than the share still starts
    /// once the queue has drained.
    fn fair_share_blocks(&self, q: usize, need: Resources, starving: bool) -> Option<Reason> {
        let qs = &self.queues[q];
        let over = crate::Dimension::ALL.into_iter().any(|d| {
            let (n, a, s) = (need.get(d), qs.allocated.get(d), qs.deserved.get(d));
            n > 0
                && if starving {
                    a >= s
                } else {
                    a.saturating_add(n) > s
                }
        });
        over.then(|| Reason::FairShare {
            queue: qs.queue.name.clone(),
            needs: need,
            allocated: qs.allocated,
            deserved: qs.deserved,
            weight: qs.queue.weight,
            total_weight: self.total_weight,
        })
    }

    fn attempt(&mut self, j: usize, fair_gate: bool) {
        let (q, pos, need, starving) = {
            let job = &self.jobs[j];
            (job.queue, job.pos, job.gang.min_total, job.starving)
        };
        if let Some(h) = self.queues[q].held_by.filter(|&h| h != j) {
            self.outcome[pos] = Outcome::Wait(Reason::BehindStarvingJob {
                queue: self.queues[q].queue.name.clone(),
                job: self.jobs[h].job.id.clone(),
            });
            return;
        }
        let gate = self.capability_blocks(q, need).or_else(|| {
            fair_gate
                .then(|| self.fair_share_blocks(q, need, starving))
                .flatten()
        });
        if let Some(reason) = gate {
            if starving && self.queues[q].held_by.is_none() {
                self.queues[q].held_by = Some(j);
            }
            self.outcome[pos] = Outcome::Wait(reason);
            return;
        }
        match self.place_gang(j, None) {
            Ok(placed) => self.admit(j, placed),
            Err(f) => {
                let job = &self.jobs[j];
                let task = &job.job.tasks[f.task];
                let reason = Reason::Insufficient {
                    replicas: job.gang.min,
                    needs: need,
                    role: task.role.clone(),
                    request: task.request,
                    fits_alone: f.fits_alone,
                    fitted: f.fitted,
                    free: self.index.total(),
                    reserved_for: self
                        .active
                        .iter()
                        .map(|a| self.jobs[a.job].job.id.clone())
                        .collect(),
                };
                // In the lending pass too: had the gang fitted, it would have been lent the
                // capacity, so what binds is the capacity, not the share.
                self.outcome[pos] = Outcome::Wait(reason);
            }
        }
    }

    fn unplaceable(&self, request: Resources, selector: usize) -> bool {
        self.unplaceable
            .iter()
            .any(|&(r, s)| s == selector && r.fits_in(&request))
    }

    fn take(&mut self, n: u32, request: Resources) {
        self.free[n as usize] = self.free[n as usize].saturating_sub(request);
        self.reindex(n);
    }

    fn give_back(&mut self, n: u32, request: Resources) {
        self.free[n as usize] = self.free[n as usize].saturating_add(request);
        self.reindex(n);
    }

    /// The first held node (of a reserving job) where `request` fits in what other
    /// reservations leave.
    fn find_in_holds(
        &self,
        holds: &[(u32, Resources)],
        request: Resources,
        sel: usize,
    ) -> Option<u32> {
        holds.iter().map(|h| h.0).find(|&n| {
            let own: Resources = holds
                .iter()
                .filter(|h| h.0 == n)
                .fold(Resources::ZERO, |t, h| t.saturating_add(h.1));
            let others = self.hold[n as usize].saturating_sub(own);
            self.is_eligible(sel, n)
                && request.fits_in(&self.free[n as usize].saturating_sub(others))
        })
    }

    /// The node for one replica of task `t` of job `j` under the configured
    /// [`PlacementPolicy`], or `None` if no node's offered capacity holds it. `gpu_rest` is
    /// what the job's GPU replicas still to place in this round ask for, this one included;
    /// `used` lists the nodes the job has taken in this round.
    fn choose(&self, j: usize, t: usize, gpu_rest: Resources, used: &[u32]) -> Option<u32> {
        let request = self.jobs[j].job.tasks[t].request;
        let sel = self.jobs[j].selectors[t];
        let eligible = |n: u32| self.is_eligible(sel, n);
        match self.config.placement {
            PlacementPolicy::Spread => self.index.find_most_free(request, eligible),
            PlacementPolicy::Pack if request.gpus == 0 => self.index.find(request, eligible),
            PlacementPolicy::Pack => {
                // 1. Fill a node the job already took before opening another.
                let own = used
                    .iter()
                    .copied()
                    .filter(|&n| eligible(n) && request.fits_in(&self.offered(n)))
                    .min_by_key(|&n| {
                        let o = self.offered(n);
                        (o.gpus, o.cpu_millis, o.memory_bytes, n)
                    });
                if own.is_some() {
                    return own;
                }
                // 2. The fullest partly used node that holds the rest of the job's GPU replicas
                //    (this task's selector decides where; the later ones are checked when
                //    their turn comes), so no whole free node is opened for them.
                let rest = gpu_rest.max(request);
                if let Some(n) = self
                    .index
                    .find(rest, |n| eligible(n) && self.partly_used(n))
                {
                    return Some(n);
                }
                // 3. Best fit: the least free GPUs that hold it, on a partly used node if
                //    one does, else on a whole free node.
                self.index
                    .find(request, |n| eligible(n) && self.partly_used(n))
                    .or_else(|| self.index.find(request, eligible))
            }
        }
    }

    /// True when something runs on (or is held on) node `n`: it is not a whole free node.
    fn partly_used(&self, n: u32) -> bool {
        self.offered(n) != self.nodes[n as usize].allocatable
    }

    /// Places the gang's `min` replicas all at once, or none (everything taken is given back).
    fn place_gang(
        &mut self,
        j: usize,
        holds: Option<&[(u32, Resources)]>,
    ) -> Result<Vec<(usize, u32, u32)>, Failure> {
        let job = self.jobs[j].job;
        let min = usize::try_from(self.jobs[j].gang.min).unwrap_or(usize::MAX);
        if holds.is_none() {
            // Fast refusal: a request already known to fit nowhere.
            let mut in_gang = 0u64;
            for (t, task) in job.tasks.iter().enumerate() {
                if in_gang >= self.jobs[j].gang.min {
                    break;
                }
                in_gang += u64::from(task.replicas);
                if self.unplaceable(task.request, self.jobs[j].selectors[t]) {
                    return Err(Failure {
                        task: t,
                        fits_alone: false,
                        fitted: 0,
                    });
                }
            }
        }
        let mut placed: Vec<(usize, u32, u32)> = Vec::with_capacity(min.min(1024));
        let mut used: Vec<u32> = Vec::new();
        let mut gpu_rest = gpu_requests(job, Gang::replicas(job).take(min));
        for (t, i) in Gang::replicas(job).take(min) {
            let request = job.tasks[t].request;
            let sel = self.jobs[j].selectors[t];
            let node = holds
                .and_then(|h| self.find_in_holds(h, request, sel))
                .or_else(|| self.choose(j, t, gpu_rest, &used));
            if request.gpus > 0 {
                gpu_rest = gpu_rest.saturating_sub(request);
            }
            if let Some(n) = node {
                self.take(n, request);
                placed.push((t, i, n));
                if !used.contains(&n) {
                    used.push(n);
                }
                continue;
            }
            let fitted = placed.len() as u64;
            for &(pt, _, n) in &placed {
                self.give_back(n, job.tasks[pt].request);
            }
            let fits_alone = fitted > 0
                && self
                    .index
                    .find(request, |n| self.is_eligible(sel, n))
                    .is_some();
            if !fits_alone && holds.is_none() && self.unplaceable.len() < MAX_UNPLACEABLE {
                self.unplaceable.push((request, sel));
            }
            return Err(Failure {
                task: t,
                fits_alone,
                fitted: if fits_alone { fitted } else { 0 },
            });
        }
        Ok(placed)
    }

    /// Records an admitted gang and places what fits of its replicas beyond the gang.
    fn admit(&mut self, j: usize, mut placed: Vec<(usize, u32, u32)>) {
        let (q, pos) = (self.jobs[j].queue, self.jobs[j].pos);
        let job = self.jobs[j].job;
        let qs = &mut self.queues[q];
        qs.allocated = qs.allocated.saturating_add(self.jobs[j].gang.min_total);
        if qs.held_by == Some(j) {
            qs.held_by = None;
        }
        let min = usize::try_from(self.jobs[j].gang.min).unwrap_or(usize::MAX);
        if self.jobs[j].gang.count > self.jobs[j].gang.min {
            let mut used: Vec<u32> = Vec::new();
            for &(_, _, n) in &placed {
                if !used.contains(&n) {
                    used.push(n);
                }
            }
            let mut gpu_rest = gpu_requests(job, Gang::replicas(job).skip(min));
            for (t, i) in Gang::replicas(job).skip(min) {
                let request = job.tasks[t].request;
                let rest = gpu_rest;
                if request.gpus > 0 {
                    gpu_rest = gpu_rest.saturating_sub(request);
                }
                if self.capability_blocks(q, request).is_some() {
                    continue;
                }
                if let Some(n) = self.choose(j, t, rest, &used) {
                    self.take(n, request);
                    let qs = &mut self.queues[q];
                    qs.allocated = qs.allocated.saturating_add(request);
                    placed.push((t, i, n));
                    if !used.contains(&n) {
                        used.push(n);
                    }
                }
            }
        }
        self.placements.push(Placement {
            job: job.id.clone(),
            queue: job.queue.clone(),
            replicas: placed
                .into_iter()
                .map(|(t, index, n)| ReplicaPlacement {
                    role: job.tasks[t].role.clone(),
                    index,
                    node: self.nodes[n as usize].name.clone(),
                })
                .collect(),
        });
        self.outcome[pos] = Outcome::Placed;
    }

    /// Step 6: the oldest starving jobs blocked by node capacity reserve nodes, up to
    /// `reservation_depth` reservations in all.
    fn reserve(&mut self) {
        let slots = self
            .config
            .reservation_depth
            .saturating_sub(self.active.len());
        if slots == 0 {
            return;
        }
        let mut candidates: Vec<usize> = (0..self.jobs.len())
            .filter(|&j| {
                self.jobs[j].starving
                    && matches!(
                        self.outcome[self.jobs[j].pos],
                        Outcome::Wait(Reason::Insufficient { .. })
                    )
            })
            .collect();
        candidates.sort_by(|&a, &b| {
            let (a, b) = (self.jobs[a].job, self.jobs[b].job);
            (a.queued_at, a.submit_seq, &a.id).cmp(&(b.queued_at, b.submit_seq, &b.id))
        });
        let mut made = 0;
        for j in candidates {
            if made == slots {
                break;
            }
            if let Some(holds) = self.plan_holds(j) {
                for &(n, h) in &holds {
                    self.hold[n as usize] = self.hold[n as usize].saturating_add(h);
                }
                self.outcome[self.jobs[j].pos] = Outcome::Wait(self.draining(j, &holds));
                self.active.push(Active {
                    job: j,
                    since: self.snap.now,
                    holds,
                });
                made += 1;
            }
        }
    }

    /// Chooses nodes for a reservation: those with the most free (less holds) of the gang's
    /// dominant resource first, so they drain soonest; CPU-only gangs prefer CPU-only nodes,
    /// and so do the CPU-only replicas of GPU gangs.
    /// Replicas are packed first-fit into what each node can hold once drained.
    fn plan_holds(&self, j: usize) -> Option<Vec<(u32, Resources)>> {
        let job = &self.jobs[j];
        let dim = validate::dominant(&job.gang.min_total);
        let gpu_job = job.gang.min_total.gpus > 0;
        let mut order: Vec<u32> = (0..self.nodes.len()).map(id32).collect();
        order.sort_by_key(|&n| {
            let node_has_gpus = self.nodes[n as usize].allocatable.gpus > 0;
            (
                !gpu_job && node_has_gpus,
                Reverse(self.offered(n).get(dim)),
                n,
            )
        });
        let mut planned: BTreeMap<u32, Resources> = BTreeMap::new();
        let mut sequence: Vec<u32> = Vec::new();
        for (t, _) in
            Gang::replicas(job.job).take(usize::try_from(job.gang.min).unwrap_or(usize::MAX))
        {
            let request = job.job.tasks[t].request;
            let sel = job.selectors[t];
            let holds_it = |n: u32| {
                let room = self.nodes[n as usize]
                    .allocatable
                    .saturating_sub(self.hold[n as usize]);
                let used = planned.get(&n).copied().unwrap_or(Resources::ZERO);
                self.is_eligible(sel, n)
                    && used
                        .checked_add(request)
                        .is_some_and(|after| after.fits_in(&room))
            };
            let has_gpus = |n: u32| self.nodes[n as usize].allocatable.gpus > 0;
            // A CPU-only replica of a GPU gang (a launcher, a parameter server) is planned on a
            // node without GPUs when one can hold it, as it would be placed.
            let n = order
                .iter()
                .copied()
                .filter(|&n| request.gpus > 0 || !has_gpus(n))
                .find(|&n| holds_it(n))
                .or_else(|| order.iter().copied().find(|&n| holds_it(n)))?;
            let entry = planned.entry(n).or_insert_with(|| {
                sequence.push(n);
                Resources::ZERO
            });
            *entry = entry.saturating_add(request);
        }
        Some(
            sequence
                .into_iter()
                .map(|n| (n, planned.get(&n).copied().unwrap_or(Resources::ZERO)))
                .collect(),
        )
    }

    fn into_decisions(self) -> Decisions {
        let mut pending_jobs = vec![0usize; self.queues.len()];
        for job in &self.jobs {
            if !matches!(self.outcome[job.pos], Outcome::Placed) {
                pending_jobs[job.queue] += 1;
            }
        }
        let waiting = self
            .snap
            .pending
            .iter()
            .zip(self.outcome)
            .filter_map(|(job, outcome)| match outcome {
                Outcome::Wait(reason) => Some(Explanation {
                    job: job.id.clone(),
                    message: reason.message(),
                    reason,
                }),
                Outcome::Placed => None,
                // Every valid job is served by exactly one pass; an unseen one would be a bug,
                // and the property tests check that every pending job is placed or explained.
                Outcome::Unseen => None,
            })
            .collect();
        let reservations = self
            .active
            .iter()
            .map(|a| Reservation {
                job: self.jobs[a.job].job.id.clone(),
                since: a.since,
                holds: a
                    .holds
                    .iter()
                    .map(|&(n, resources)| Hold {
                        node: self.nodes[n as usize].name.clone(),
                        resources,
                    })
                    .collect(),
            })
            .collect();
        let queues = self
            .queues
            .iter()
            .zip(pending_jobs)
            .map(|(q, pending_jobs)| QueueStatus {
                name: q.queue.name.clone(),
                weight: q.queue.weight,
                allocated: q.allocated,
                deserved: q.deserved,
                capability: q.queue.capability,
                effective_capability: q.effective,
                guarantee: q.queue.guarantee,
                pending_jobs,
            })
            .collect();
        Decisions {
            placements: self.placements,
            waiting,
            reservations,
            queues,
        }
    }
}

/// A queue's capability, lowered where other queues' guarantees leave it less of the cluster.
/// (Where no other queue guarantees anything the capability stands as it is, even above the
/// cluster's size: what binds then is node capacity, and explanations say so.)
fn effective_capability(q: &Queue, total: Resources, guarantees: Resources) -> Resources {
    let others = guarantees.saturating_sub(q.guarantee);
    let limit = |cap: u64, total: u64, others: u64| {
        if others > 0 {
            cap.min(total.saturating_sub(others))
        } else {
            cap
        }
    };
    Resources::new(
        limit(q.capability.cpu_millis, total.cpu_millis, others.cpu_millis),
        limit(
            q.capability.memory_bytes,
            total.memory_bytes,
            others.memory_bytes,
        ),
        limit(q.capability.gpus, total.gpus, others.gpus),
    )
}

/// What the replicas among `replicas` that ask for GPUs need together.
fn gpu_requests(job: &PendingJob, replicas: impl Iterator<Item = (usize, u32)>) -> Resources {
    replicas
        .map(|(t, _)| job.tasks[t].request)
        .filter(|r| r.gpus > 0)
        .fold(Resources::ZERO, Resources::saturating_add)
}

/// How many known-unplaceable requests a cycle remembers (the check is a linear scan).
const MAX_UNPLACEABLE: usize = 64;

fn id32(i: usize) -> u32 {
    u32::try_from(i).unwrap_or(u32::MAX)
}
