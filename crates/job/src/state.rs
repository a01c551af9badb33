//! Job states and conditions as Kubeflow names them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a job is in its life. `Succeeded`, `Failed` and `Cancelled` are final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum JobState {
    /// Accepted and stored; not yet considered by the scheduler.
    Created,
    /// Waiting in its queue for the whole gang to fit.
    Queued,
    /// Every replica of the gang was started.
    Running,
    /// A replica ended and is being started again under its restart policy.
    Restarting,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Created,
        JobState::Queued,
        JobState::Running,
        JobState::Restarting,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }

    /// The transitions the control plane may make. A final state never changes; any live
    /// state may be cancelled or fail (deadline, lost, invalid at admission).
    pub fn can_become(self, next: JobState) -> bool {
        use JobState::*;
        if self.is_final() {
            return false;
        }
        match next {
            Cancelled | Failed => true,
            Created => false,
            Queued => matches!(self, Created | Restarting),
            Running => matches!(self, Queued | Restarting),
            Restarting => matches!(self, Running),
            Succeeded => matches!(self, Running),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Created => "Created",
            JobState::Queued => "Queued",
            JobState::Running => "Running",
            JobState::Restarting => "Restarting",
            JobState::Succeeded => "Succeeded",
            JobState::Failed => "Failed",
            JobState::Cancelled => "Cancelled",
        }
    }

    /// Parses the names `as_str` writes (case-insensitive).
    pub fn parse(text: &str) -> Option<JobState> {
        JobState::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of a job's history: a state it entered, why, and when (Kubeflow's JobCondition).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Condition {
    pub state: JobState,
    /// A CamelCase machine-readable reason, e.g. `GangScheduled`, `BackoffLimitExceeded`.
    pub reason: String,
    /// What a person needs to know, e.g. "waiting: gang needs 4 GPUs, queue team-a has 2 free".
    pub message: String,
    /// Milliseconds since the Unix epoch.
    pub time_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_states_never_change() {
        for from in JobState::ALL.into_iter().filter(|s| s.is_final()) {
            for to in JobState::ALL {
                assert!(!from.can_become(to), "{from} → {to}");
            }
        }
    }

    #[test]
    fn the_normal_life_is_allowed_and_shortcuts_are_not() {
        use JobState::*;
        for (from, to) in [
            (Created, Queued),
            (Queued, Running),
            (Running, Restarting),
            (Restarting, Running),
            (Running, Succeeded),
            (Queued, Cancelled),
            (Running, Failed),
        ] {
            assert!(from.can_become(to), "{from} → {to}");
        }
        for (from, to) in [
            (Created, Running),
            (Queued, Succeeded),
            (Running, Created),
            (Running, Queued),
            (Created, Restarting),
        ] {
            assert!(!from.can_become(to), "{from} → {to}");
        }
    }

    #[test]
    fn names_round_trip() {
        for s in JobState::ALL {
            assert_eq!(JobState::parse(s.as_str()), Some(s));
            assert_eq!(JobState::parse(&s.as_str().to_lowercase()), Some(s));
        }
        assert_eq!(JobState::parse("Pending"), None);
    }
}
