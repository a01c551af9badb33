//! What happens when a replica's process ends: Kubeflow's restart policies and exponential
//! back-off between restarts.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a replica that ended is started again (Kubeflow's `restartPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// Never restart; a failure fails the job.
    #[default]
    Never,
    /// Restart after any failure (non-zero exit, killed by a signal, lost).
    OnFailure,
    /// Restart only after a retryable failure: exit codes 128–255 (killed by a signal, the
    /// shell's 128+n), a signal, or a process lost with the machine; exit codes 1–127 are
    /// permanent and fail the job at once. Kubeflow's rule.
    ExitCode,
    /// Restart whenever the process ends, success included (for servers).
    Always,
}

/// How a replica's process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal ended it.
    Signal(i32),
    /// It is gone and how it ended is unknown (e.g. mofang restarted and could not re-adopt it).
    Lost,
}

impl Exit {
    pub fn is_success(self) -> bool {
        self == Exit::Code(0)
    }

    /// A failure that may go away on a retry, by Kubeflow's `ExitCode` rule.
    pub fn is_retryable(self) -> bool {
        match self {
            Exit::Code(code) => (128..=255).contains(&code),
            Exit::Signal(_) | Exit::Lost => true,
        }
    }
}

/// The decision for one ended replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The replica is done and succeeded.
    Succeeded,
    /// Start it again (if the job's back-off limit allows).
    Restart,
    /// The replica failed for good: the job fails.
    Failed,
}

impl RestartPolicy {
    pub fn on_exit(self, exit: Exit) -> Outcome {
        match (self, exit.is_success()) {
            (RestartPolicy::Always, _) => Outcome::Restart,
            (_, true) => Outcome::Succeeded,
            (RestartPolicy::Never, false) => Outcome::Failed,
            (RestartPolicy::OnFailure, false) => Outcome::Restart,
            (RestartPolicy::ExitCode, false) if exit.is_retryable() => Outcome::Restart,
            (RestartPolicy::ExitCode, false) => Outcome::Failed,
        }
    }
}

/// Exponential back-off: `base * 2^n`, at most `cap` (n = restarts so far).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    /// 10 s doubling up to 5 minutes, as Kubernetes restarts crashing containers.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(10),
            cap: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    pub fn delay(&self, restarts_so_far: u32) -> Duration {
        let factor = 1u32
            .checked_shl(restarts_so_far.min(31))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_code_policy_retries_only_128_to_255_signals_and_lost() {
        let p = RestartPolicy::ExitCode;
        for code in [1, 2, 64, 127] {
            assert_eq!(p.on_exit(Exit::Code(code)), Outcome::Failed, "exit {code}");
        }
        for code in [128, 137, 143, 255] {
            assert_eq!(p.on_exit(Exit::Code(code)), Outcome::Restart, "exit {code}");
        }
        assert_eq!(p.on_exit(Exit::Signal(9)), Outcome::Restart);
        assert_eq!(p.on_exit(Exit::Lost), Outcome::Restart);
        assert_eq!(p.on_exit(Exit::Code(0)), Outcome::Succeeded);
    }

    #[test]
    fn never_on_failure_and_always() {
        for exit in [Exit::Code(1), Exit::Code(200), Exit::Signal(15), Exit::Lost] {
            assert_eq!(RestartPolicy::Never.on_exit(exit), Outcome::Failed);
            assert_eq!(RestartPolicy::OnFailure.on_exit(exit), Outcome::Restart);
            assert_eq!(RestartPolicy::Always.on_exit(exit), Outcome::Restart);
        }
        assert_eq!(
            RestartPolicy::Never.on_exit(Exit::Code(0)),
            Outcome::Succeeded
        );
        assert_eq!(
            RestartPolicy::OnFailure.on_exit(Exit::Code(0)),
            Outcome::Succeeded
        );
        assert_eq!(
            RestartPolicy::Always.on_exit(Exit::Code(0)),
            Outcome::Restart
        );
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_without_overflow() {
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        };
        let delays: Vec<u64> = (0..8).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(60));
    }
}
