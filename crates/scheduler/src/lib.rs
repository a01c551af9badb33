//! The pure scheduling core of mofang's control plane.
//!
//! A [`Snapshot`] (nodes, queues, running replicas, pending jobs, the time) goes in, and
//! [`Decisions`] come out: which jobs start and on which node each replica runs, and for every
//! job that does not start, a typed [`Reason`] and a one-line message saying why. Jobs are
//! gangs: a job starts only when its `min_available` replicas all fit at once. Queues share
//! the cluster by weight above their guarantees and never exceed their capability; a big job
//! that smaller ones keep overtaking eventually reserves nodes. Replicas go only to nodes whose
//! labels satisfy their task's node selector, and [`PlacementPolicy::Pack`] keeps CPU-only
//! replicas off GPU nodes and a job's GPU replicas together, so whole GPU nodes stay free. The
//! rules, with the reasons behind them, are in `docs/scheduler.md`.
//!
//! Architecture invariants: this crate does no I/O, no async and keeps no state between
//! cycles (what must survive, the reservations, travels through [`Snapshot`] and
//! [`Decisions`]); a cycle is a deterministic function of the snapshot, independent of the
//! order of its lists; malformed input is an [`Error`] or a [`Rejection`], never a panic.
//! The store, the executors and the API call it; it knows none of them.

mod cycle;
mod explain;
mod index;
mod model;
mod proportion;
mod resources;
pub mod sim;
mod validate;

pub use cycle::{Config, PlacementPolicy, Scheduler};
pub use model::{
    Allocation, Decisions, Explanation, Hold, Node, PendingJob, Placement, Queue, QueueStatus,
    Reason, Rejection, ReplicaPlacement, Reservation, Snapshot, TaskSpec,
};
pub use resources::{Dimension, Resources, show_amount};
pub use validate::{MAX_REPLICAS_PER_JOB, validate_job, validate_queue};

/// A snapshot that breaks the invariants the control plane keeps.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("two nodes are named {0:?}")]
    DuplicateNode(String),
    #[error("two queues are named {0:?}")]
    DuplicateQueue(String),
    #[error("two pending jobs have the id {0:?}")]
    DuplicateJob(String),
    #[error("queue {queue:?}: {reason}")]
    InvalidQueue { queue: String, reason: String },
}
