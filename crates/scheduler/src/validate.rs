//! Admission checks: which jobs can never run as submitted, and which queue definitions are
//! unusable. The API calls these before accepting a job or a queue; the scheduling cycle runs
//! the same checks and reports a failing pending job as rejected rather than waiting.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::{Dimension, Error, Node, PendingJob, Queue, Rejection, Resources};

/// The most replicas one job may have: more is refused rather than expanded.
pub const MAX_REPLICAS_PER_JOB: u64 = 65_536;

/// A job that passed the checks, with the totals the cycle needs.
#[derive(Debug, Clone)]
pub(crate) struct Gang {
    /// Replicas that must start together (the first `min` in task order).
    pub min: u64,
    /// All replicas.
    pub count: u64,
    /// What the first `min` replicas need together.
    pub min_total: Resources,
    /// What all replicas need together.
    pub total: Resources,
}

impl Gang {
    /// `(task index, replica index)` of every replica, in placement order.
    pub fn replicas(job: &PendingJob) -> impl Iterator<Item = (usize, u32)> + '_ {
        job.tasks
            .iter()
            .enumerate()
            .flat_map(|(t, task)| (0..task.replicas).map(move |i| (t, i)))
    }
}

/// Checks that a queue definition is usable: a name, a weight of at least 1, and a guarantee
/// no larger than the capability.
pub fn validate_queue(queue: &Queue) -> Result<(), Error> {
    let invalid = |reason: String| Error::InvalidQueue {
        queue: queue.name.clone(),
        reason,
    };
    if queue.name.is_empty() {
        return Err(invalid("the name is empty".into()));
    }
    if queue.weight == 0 {
        return Err(invalid("weight must be at least 1".into()));
    }
    if let Some(dim) = queue.guarantee.first_excess(&queue.capability) {
        return Err(invalid(format!(
            "guarantee {} is more than capability {}",
            queue.guarantee.show(dim),
            queue.capability.show(dim)
        )));
    }
    Ok(())
}

/// Checks that `job` could ever run on `nodes` within its queue: well formed, its queue exists,
/// its gang is no larger than the queue's capability or the whole cluster, every replica fits
/// on at least one node (with its selector: a selector no node's labels satisfy is
/// [`Rejection::NoNodeMatchesSelector`]), and the gang's replicas with a selector need no more
/// than the nodes it matches have together. Any error is permanent: waiting will not help.
pub fn validate_job(job: &PendingJob, queues: &[Queue], nodes: &[Node]) -> Result<(), Rejection> {
    let total = nodes
        .iter()
        .fold(Resources::ZERO, |t, n| t.saturating_add(n.allocatable));
    let nodes: Vec<&Node> = nodes.iter().collect();
    let mut fits = NodeFitCache::default();
    check_job(
        job,
        |name| queues.iter().find(|q| q.name == name),
        total,
        &nodes,
        &mut fits,
    )
    .map(|_| ())
}

/// Whether some node could ever run one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeFit {
    /// A node matching the selector has the allocatable for it.
    Fits,
    /// The selector matches no node.
    NoMatch,
    /// Nodes match the selector, but none has that much allocatable.
    TooSmall,
}

/// Remembers, per request and selector, whether any node's allocatable holds it, and per
/// selector what the nodes it matches have in all.
#[derive(Debug, Default)]
pub(crate) struct NodeFitCache<'a> {
    known: HashMap<(Resources, &'a BTreeMap<String, String>), NodeFit>,
    totals: HashMap<&'a BTreeMap<String, String>, Resources>,
}

impl<'a> NodeFitCache<'a> {
    /// The allocatable of the nodes `selector` matches, together.
    pub fn selected_total(
        &mut self,
        nodes: &[&Node],
        selector: &'a BTreeMap<String, String>,
    ) -> Resources {
        *self.totals.entry(selector).or_insert_with(|| {
            nodes
                .iter()
                .filter(|n| n.matches(selector))
                .fold(Resources::ZERO, |t, n| t.saturating_add(n.allocatable))
        })
    }

    pub fn check(
        &mut self,
        nodes: &[&Node],
        request: Resources,
        selector: &'a BTreeMap<String, String>,
    ) -> NodeFit {
        *self.known.entry((request, selector)).or_insert_with(|| {
            let mut matched = false;
            for n in nodes.iter().filter(|n| n.matches(selector)) {
                if request.fits_in(&n.allocatable) {
                    return NodeFit::Fits;
                }
                matched = true;
            }
            if matched || selector.is_empty() {
                NodeFit::TooSmall
            } else {
                NodeFit::NoMatch
            }
        })
    }
}

/// The checks of [`validate_job`], with the queue lookup, cluster total and node-fit cache
/// supplied by the caller (the cycle has them indexed and checks many jobs).
pub(crate) fn check_job<'j, 'q>(
    job: &'j PendingJob,
    find_queue: impl Fn(&str) -> Option<&'q Queue>,
    cluster_total: Resources,
    nodes: &[&Node],
    fits: &mut NodeFitCache<'j>,
) -> Result<Gang, Rejection> {
    if job.tasks.is_empty() {
        return Err(Rejection::NoTasks);
    }
    let mut roles = HashSet::new();
    let mut count: u64 = 0;
    for task in &job.tasks {
        if task.replicas == 0 {
            return Err(Rejection::NoReplicas {
                role: task.role.clone(),
            });
        }
        if !roles.insert(task.role.as_str()) {
            return Err(Rejection::DuplicateRole {
                role: task.role.clone(),
            });
        }
        count += u64::from(task.replicas);
    }
    if count > MAX_REPLICAS_PER_JOB {
        return Err(Rejection::TooManyReplicas { replicas: count });
    }
    let min = match job.min_available {
        None => count,
        Some(0) => return Err(Rejection::ZeroMinAvailable),
        Some(m) if u64::from(m) > count => {
            return Err(Rejection::MinAvailableTooLarge {
                min_available: m,
                replicas: count,
            });
        }
        Some(m) => u64::from(m),
    };
    let mut total = Resources::ZERO;
    let mut min_total = Resources::ZERO;
    // What the gang's replicas with each (non-empty) selector need together.
    let mut by_selector: BTreeMap<&BTreeMap<String, String>, Resources> = BTreeMap::new();
    let mut k = 0u64;
    for task in &job.tasks {
        let all = task
            .request
            .checked_mul(u64::from(task.replicas))
            .ok_or(Rejection::Overflow)?;
        total = total.checked_add(all).ok_or(Rejection::Overflow)?;
        let in_gang = min.saturating_sub(k).min(u64::from(task.replicas));
        let part = task
            .request
            .checked_mul(in_gang)
            .ok_or(Rejection::Overflow)?;
        min_total = min_total.checked_add(part).ok_or(Rejection::Overflow)?;
        if !task.node_selector.is_empty() && in_gang > 0 {
            let e = by_selector.entry(&task.node_selector).or_default();
            *e = e.saturating_add(part);
        }
        k += u64::from(task.replicas);
    }
    let queue = find_queue(&job.queue).ok_or_else(|| Rejection::UnknownQueue {
        queue: job.queue.clone(),
    })?;
    if let Some(dimension) = min_total.first_excess(&queue.capability) {
        return Err(Rejection::LargerThanCapability {
            queue: queue.name.clone(),
            dimension,
            needs: min_total,
            capability: queue.capability,
        });
    }
    if let Some(dimension) = min_total.first_excess(&cluster_total) {
        return Err(Rejection::LargerThanCluster {
            dimension,
            needs: min_total,
            total: cluster_total,
        });
    }
    for task in &job.tasks {
        match fits.check(nodes, task.request, &task.node_selector) {
            NodeFit::Fits => {}
            NodeFit::NoMatch => {
                return Err(Rejection::NoNodeMatchesSelector {
                    role: task.role.clone(),
                    node_selector: task.node_selector.clone(),
                });
            }
            NodeFit::TooSmall => {
                return Err(Rejection::NoNodeFits {
                    role: task.role.clone(),
                    request: task.request,
                    node_selector: task.node_selector.clone(),
                });
            }
        }
    }
    for (selector, needs) in by_selector {
        let total = fits.selected_total(nodes, selector);
        if let Some(dimension) = needs.first_excess(&total) {
            return Err(Rejection::LargerThanSelectedNodes {
                node_selector: selector.clone(),
                dimension,
                needs,
                total,
            });
        }
    }
    Ok(Gang {
        min,
        count,
        min_total,
        total,
    })
}

/// The dimension a job is mostly about: GPUs if it asks for any, otherwise CPU.
pub(crate) fn dominant(request: &Resources) -> Dimension {
    if request.gpus > 0 {
        Dimension::Gpu
    } else {
        Dimension::Cpu
    }
}
