//! What a scheduling cycle reads ([`Snapshot`]) and what it decides ([`Decisions`]).

use std::collections::BTreeMap;
use std::fmt;

use crate::{Dimension, Resources};

/// A machine work can run on: this machine for the local executor, a Kubernetes node later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Unique name; placements refer to nodes by it, and ties between equally good nodes are
    /// broken by it, so decisions never depend on the order of `Snapshot::nodes`.
    pub name: String,
    /// What jobs may use in all (capacity less what the system keeps for itself).
    pub allocatable: Resources,
    /// Labels a task's `node_selector` can match.
    pub labels: BTreeMap<String, String>,
}

impl Node {
    /// A node without labels.
    pub fn new(name: impl Into<String>, allocatable: Resources) -> Self {
        Node {
            name: name.into(),
            allocatable,
            labels: BTreeMap::new(),
        }
    }

    /// The node with these labels added (a later value for the same key wins):
    /// `Node::new("gpu-0", r).with_labels([("accelerator", "h100")])`.
    pub fn with_labels<K, V>(mut self, labels: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.labels
            .extend(labels.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// True when the node carries every label of `selector` with the same value (an empty
    /// selector matches every node).
    pub fn matches(&self, selector: &BTreeMap<String, String>) -> bool {
        selector
            .iter()
            .all(|(k, v)| self.labels.get(k).is_some_and(|nv| nv == v))
    }
}

/// A queue: the unit of sharing between groups (Volcano's `Queue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    /// Unique name.
    pub name: String,
    /// Relative share of the capacity left after guarantees (at least 1).
    pub weight: u32,
    /// Hard cap on what the queue's running jobs may hold in all; never exceeded.
    /// [`Resources::UNLIMITED`] for no cap.
    pub capability: Resources,
    /// Capacity kept for this queue: other queues never grow into it. At most `capability`.
    pub guarantee: Resources,
}

impl Queue {
    /// A queue with the given weight, no cap and no guarantee.
    pub fn new(name: impl Into<String>, weight: u32) -> Self {
        Queue {
            name: name.into(),
            weight,
            capability: Resources::UNLIMITED,
            guarantee: Resources::ZERO,
        }
    }
}

/// One role of a job (`master`, `worker`, `ps`, ...) with its replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskSpec {
    /// The role's name, unique within the job.
    pub role: String,
    /// How many replicas of this role the job has (at least 1).
    pub replicas: u32,
    /// What each replica needs.
    pub request: Resources,
    /// Labels a node must carry (all of them, with these values) to run a replica.
    pub node_selector: BTreeMap<String, String>,
}

impl TaskSpec {
    /// A task without node selector.
    pub fn new(role: impl Into<String>, replicas: u32, request: Resources) -> Self {
        TaskSpec {
            role: role.into(),
            replicas,
            request,
            node_selector: BTreeMap::new(),
        }
    }

    /// The task with these selector pairs added (a later value for the same key wins):
    /// its replicas go only to nodes carrying all of them.
    pub fn with_node_selector<K, V>(mut self, selector: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        self.node_selector
            .extend(selector.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }
}

/// A job waiting to start: a gang of replicas admitted together or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingJob {
    /// Unique id.
    pub id: String,
    /// The queue it was submitted to.
    pub queue: String,
    /// Higher runs first within its queue.
    pub priority: i32,
    /// Order of acceptance by the control plane: equal priorities run first-in first-out.
    pub submit_seq: u64,
    /// When it entered the queue, in seconds on the same clock as [`Snapshot::now`].
    pub queued_at: u64,
    /// The roles, in the order their replicas are placed: the first `min_available` replicas
    /// in this order form the gang, so list the roles that must run (master, ps, chief) first.
    pub tasks: Vec<TaskSpec>,
    /// How many replicas must start together; `None` means all of them.
    pub min_available: Option<u32>,
}

/// One running replica's hold on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub job: String,
    pub queue: String,
    pub node: String,
    pub resources: Resources,
}

/// Capacity held on one node for a starving job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub node: String,
    pub resources: Resources,
}

/// Nodes a starving job has reserved: other jobs may use only what the holds leave free, so
/// the held capacity grows as running work on those nodes finishes, until the gang fits.
/// The caller stores [`Decisions::reservations`] and hands them back in the next
/// [`Snapshot::reservations`] so the same nodes keep draining.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub job: String,
    /// `Snapshot::now` of the cycle that made it.
    pub since: u64,
    pub holds: Vec<Hold>,
}

/// Everything one scheduling cycle looks at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// The current time in seconds (any clock, the same as `PendingJob::queued_at`).
    pub now: u64,
    pub nodes: Vec<Node>,
    pub queues: Vec<Queue>,
    /// One entry per running replica.
    pub running: Vec<Allocation>,
    pub pending: Vec<PendingJob>,
    /// The reservations of the previous cycle's [`Decisions`].
    pub reservations: Vec<Reservation>,
}

/// Where one replica goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaPlacement {
    pub role: String,
    /// Index of the replica within its role, from 0.
    pub index: u32,
    pub node: String,
}

/// An admitted job: at least `min_available` of its replicas are placed (replicas beyond the
/// gang are placed if they fit in the same cycle; the caller keeps the rest pending).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub job: String,
    pub queue: String,
    pub replicas: Vec<ReplicaPlacement>,
}

/// Why a pending job was not admitted in this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    pub job: String,
    pub reason: Reason,
    /// One line for people: `"waiting: ..."` or `"rejected: ..."`.
    pub message: String,
}

impl Explanation {
    /// True when the job can never run as submitted (it should fail, not wait).
    pub fn is_permanent(&self) -> bool {
        matches!(self.reason, Reason::Rejected(_))
    }
}

/// A job that can never run as submitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    NoTasks,
    NoReplicas {
        role: String,
    },
    DuplicateRole {
        role: String,
    },
    ZeroMinAvailable,
    /// More than [`crate::MAX_REPLICAS_PER_JOB`] replicas.
    TooManyReplicas {
        replicas: u64,
    },
    MinAvailableTooLarge {
        min_available: u32,
        replicas: u64,
    },
    /// The requests add up to more than `u64` can count.
    Overflow,
    UnknownQueue {
        queue: String,
    },
    /// The gang's `min_available` replicas together exceed the queue's hard cap in `dimension`.
    LargerThanCapability {
        queue: String,
        dimension: Dimension,
        needs: Resources,
        capability: Resources,
    },
    /// The gang needs more in `dimension` than all nodes together have.
    LargerThanCluster {
        dimension: Dimension,
        needs: Resources,
        total: Resources,
    },
    /// The gang's replicas with this node selector need more in `dimension` than the nodes
    /// it matches have together.
    LargerThanSelectedNodes {
        node_selector: BTreeMap<String, String>,
        dimension: Dimension,
        needs: Resources,
        total: Resources,
    },
    /// The task's node selector matches no node: no node carries all its labels.
    NoNodeMatchesSelector {
        role: String,
        node_selector: BTreeMap<String, String>,
    },
    /// No node's allocatable (among those matching the task's selector) holds one replica.
    NoNodeFits {
        role: String,
        request: Resources,
        node_selector: BTreeMap<String, String>,
    },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::NoTasks => f.write_str("job has no tasks"),
            Rejection::NoReplicas { role } => {
                write!(f, "task {role}: replicas must be at least 1")
            }
            Rejection::DuplicateRole { role } => write!(f, "role {role} appears twice"),
            Rejection::ZeroMinAvailable => f.write_str("min_available must be at least 1"),
            Rejection::TooManyReplicas { replicas } => write!(
                f,
                "the job has {replicas} replicas; at most {} are allowed",
                crate::MAX_REPLICAS_PER_JOB
            ),
            Rejection::MinAvailableTooLarge {
                min_available,
                replicas,
            } => write!(
                f,
                "min_available {min_available} is more than the job's {replicas} replicas"
            ),
            Rejection::Overflow => {
                f.write_str("the job's resource requests add up to more than can be counted")
            }
            Rejection::UnknownQueue { queue } => write!(f, "queue {queue} does not exist"),
            Rejection::LargerThanCapability {
                queue,
                dimension,
                needs,
                capability,
            } => write!(
                f,
                "gang needs {} but queue {queue}'s capability is {}",
                needs.show(*dimension),
                capability.show(*dimension)
            ),
            Rejection::LargerThanCluster {
                dimension,
                needs,
                total,
            } => write!(
                f,
                "gang needs {} but the whole cluster has {}",
                needs.show(*dimension),
                total.show(*dimension)
            ),
            Rejection::LargerThanSelectedNodes {
                node_selector,
                dimension,
                needs,
                total,
            } => write!(
                f,
                "gang needs {} on nodes labelled {} and those nodes have {} in all",
                needs.show(*dimension),
                show_selector(node_selector),
                total.show(*dimension)
            ),
            Rejection::NoNodeMatchesSelector {
                role,
                node_selector,
            } => write!(
                f,
                "task {role} selects nodes labelled {} and no node carries {}",
                show_selector(node_selector),
                if node_selector.len() == 1 {
                    "that label"
                } else {
                    "all those labels"
                }
            ),
            Rejection::NoNodeFits {
                role,
                request,
                node_selector,
            } => {
                write!(f, "a replica of task {role} needs {request}")?;
                if !node_selector.is_empty() {
                    write!(f, " on a node labelled {}", show_selector(node_selector))?;
                }
                f.write_str(" and no node has that much")
            }
        }
    }
}

impl std::error::Error for Rejection {}

/// `key=value` pairs joined by commas, in key order: `accelerator=h100,zone=a`.
fn show_selector(selector: &BTreeMap<String, String>) -> String {
    let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.join(",")
}

/// The typed cause of a wait or rejection; [`Explanation::message`] renders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Permanent: the job can never run as submitted.
    Rejected(Rejection),
    /// Admitting the gang would take the queue past its capability (or past what other
    /// queues' guarantees leave it, when `effective_capability < capability`).
    QueueCapability {
        queue: String,
        needs: Resources,
        allocated: Resources,
        capability: Resources,
        effective_capability: Resources,
    },
    /// The queue already holds its deserved (weighted) share of a resource the job needs.
    FairShare {
        queue: String,
        needs: Resources,
        allocated: Resources,
        deserved: Resources,
        weight: u32,
        total_weight: u64,
    },
    /// A job of the same queue has starved and goes first; the queue admits nothing past it.
    BehindStarvingJob { queue: String, job: String },
    /// The free capacity of the nodes cannot hold the gang now.
    Insufficient {
        /// Replicas that must start together.
        replicas: u64,
        /// The whole gang's request.
        needs: Resources,
        /// The role of the first replica that found no node.
        role: String,
        /// That replica's request.
        request: Resources,
        /// Whether that replica fits on some node's free capacity on its own.
        fits_alone: bool,
        /// How many of the gang's replicas were placed before one found no node (0 when
        /// `fits_alone` is false).
        fitted: u64,
        /// Free capacity of the whole cluster, less reservations.
        free: Resources,
        /// Starving jobs that hold capacity others cannot use.
        reserved_for: Vec<String>,
    },
    /// The job has starved and reserved nodes; it waits for them to drain.
    Draining {
        waited_secs: u64,
        needs: Resources,
        nodes: Vec<String>,
    },
}

/// A queue after the cycle, for status pages ("usage against capability and guarantee").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    pub name: String,
    pub weight: u32,
    /// Held by running and newly placed replicas.
    pub allocated: Resources,
    /// Its fair share this cycle (see `docs/scheduler.md`).
    pub deserved: Resources,
    pub capability: Resources,
    /// The capability less other queues' guarantees.
    pub effective_capability: Resources,
    pub guarantee: Resources,
    /// Jobs still pending after this cycle.
    pub pending_jobs: usize,
}

/// What a scheduling cycle decided.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Admitted jobs, in the order they were admitted.
    pub placements: Vec<Placement>,
    /// One explanation for every pending job that was not admitted, in `Snapshot::pending` order.
    pub waiting: Vec<Explanation>,
    /// Reservations in force; pass them back in the next snapshot.
    pub reservations: Vec<Reservation>,
    /// Every queue, by name.
    pub queues: Vec<QueueStatus>,
}
