//! The records the store reads and writes.

use serde::{Deserialize, Serialize};

use crate::{Error, JobSpec, JobState, Result};

/// Who an API token acts as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    pub user: String,
    pub group: String,
    pub admin: bool,
}

/// Limits of a queue; `None` is unlimited for a capability and nothing for a guarantee.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueResources {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub gpu: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRecord {
    pub name: String,
    /// The group whose jobs go here when their spec names no queue.
    pub group: Option<String>,
    pub weight: u32,
    pub capability: QueueResources,
    pub guarantee: QueueResources,
    pub created_ms: i64,
}

/// A job to store.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: String,
    pub name: String,
    pub user: String,
    pub group: String,
    pub queue: String,
    pub priority: i32,
    pub spec: JobSpec,
    pub now_ms: i64,
}

/// A stored job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    pub user: String,
    pub group: String,
    pub queue: String,
    pub priority: i32,
    /// Order of acceptance, strictly increasing.
    pub seq: i64,
    pub spec: JobSpec,
    pub state: JobState,
    pub restarts: u32,
    /// The latest condition's message.
    pub message: String,
    pub created_ms: i64,
    pub queued_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

/// Which jobs [`crate::Store::list_jobs`] returns; the default is all of them.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Any of these states (empty: any state).
    pub states: Vec<JobState>,
    pub user: Option<String>,
    pub group: Option<String>,
    pub queue: Option<String>,
    /// Only jobs of this user or of this group.
    pub visible_to: Option<(String, String)>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    Normal,
    Warning,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Normal => "Normal",
            EventKind::Warning => "Warning",
        }
    }

    pub fn parse(text: &str) -> Option<EventKind> {
        match text {
            "Normal" => Some(EventKind::Normal),
            "Warning" => Some(EventKind::Warning),
            _ => None,
        }
    }
}

/// Something that happened to a job; repeats of the latest event are counted, not stored again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventRecord {
    pub kind: EventKind,
    pub reason: String,
    pub message: String,
    pub count: u32,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// Where one attempt of a replica is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReplicaState {
    /// Its row is written; its process is not (yet) known to run.
    Pending,
    Running,
    Succeeded,
    Failed,
    /// Stopped by the control plane (cancel, deadline, the job ended).
    Killed,
    /// Gone without an exit status.
    Lost,
}

impl ReplicaState {
    pub const ALL: [ReplicaState; 6] = [
        ReplicaState::Pending,
        ReplicaState::Running,
        ReplicaState::Succeeded,
        ReplicaState::Failed,
        ReplicaState::Killed,
        ReplicaState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Pending => "Pending",
            ReplicaState::Running => "Running",
            ReplicaState::Succeeded => "Succeeded",
            ReplicaState::Failed => "Failed",
            ReplicaState::Killed => "Killed",
            ReplicaState::Lost => "Lost",
        }
    }

    pub fn parse(text: &str) -> Option<ReplicaState> {
        ReplicaState::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One attempt of one replica.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReplicaRecord {
    pub job_id: String,
    pub role: String,
    pub index: u32,
    pub attempt: u32,
    pub state: ReplicaState,
    pub node: String,
    pub pid: Option<u32>,
    /// The supervisor's start time (/proc/<pid>/stat field 22): guards against reused pids.
    pub start_token: Option<String>,
    pub log_path: String,
    pub status_path: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub usage: Option<serde_json::Value>,
    pub message: String,
}

/// A DNS label: 1–63 of `a-z`, `0-9`, `-`, not starting or ending with `-`.
pub(crate) fn check_label(field: &str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            field: field.to_string(),
            message: format!(
                "`{value}` is not a DNS label (1-63 of a-z, 0-9 and -, not starting or ending with -)"
            ),
        })
    }
}
