//! When a job of each kind has succeeded, which replicas wait for others to start, and which
//! replicas are servers — as values the controller applies.
//!
//! The rules are Kubeflow's: TFJob succeeds when its chief (or master) succeeded, else when
//! worker 0 did (`successPolicy: AllWorkers`: every worker); PyTorchJob when its master did,
//! else when every worker did (elastic: any worker); MPIJob when its launcher did. Once the
//! rule is met the job is done and every replica still running is stopped (Kubeflow's
//! `cleanPodPolicy: Running`), servers included. A failed replica that is not restarted fails
//! the job as for any job; that rule is the restart policy's, not this module's.

use mofang_job::SuccessPolicy;

use crate::{Framework, LaunchSpec};

/// The job's completion rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// When the job has succeeded.
    pub success: SuccessRule,
    /// Which replicas may start when.
    pub start: StartPolicy,
    /// Roles whose replicas serve the others and never exit on their own (TensorFlow `ps`, MPI
    /// `worker`): nothing waits for them, and they are stopped when the job ends — being
    /// stopped then is not a failure.
    pub servers: Vec<String>,
}

/// When a job has succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SuccessRule {
    /// Every replica of each `(role, replicas)` succeeded.
    Every(Vec<(String, u32)>),
    /// This one replica succeeded.
    Replica { role: String, index: u32 },
    /// At least one of the role's `replicas` succeeded.
    Any { role: String, replicas: u32 },
}

impl SuccessRule {
    /// Whether the rule is met, given which replicas have succeeded.
    pub fn is_met(&self, succeeded: impl Fn(&str, u32) -> bool) -> bool {
        match self {
            SuccessRule::Every(roles) => roles
                .iter()
                .all(|(role, n)| (0..*n).all(|i| succeeded(role, i))),
            SuccessRule::Replica { role, index } => succeeded(role, *index),
            SuccessRule::Any { role, replicas } => (0..*replicas).any(|i| succeeded(role, i)),
        }
    }

    /// What the rule waits for, for a condition's message ("worker 0 succeeded").
    pub fn describe(&self) -> String {
        match self {
            SuccessRule::Every(roles) => {
                let names: Vec<String> = roles
                    .iter()
                    .map(|(role, n)| {
                        if *n == 1 {
                            format!("{role} 0")
                        } else {
                            format!("every {role}")
                        }
                    })
                    .collect();
                format!("{} succeeded", names.join(" and "))
            }
            SuccessRule::Replica { role, index } => format!("{role} {index} succeeded"),
            SuccessRule::Any { role, .. } => format!("a {role} succeeded"),
        }
    }
}

/// Which replicas may start when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartPolicy {
    /// Every replica starts as soon as the gang is placed.
    Together,
    /// The launcher starts only once every worker runs (MPI Operator's
    /// `launcherCreationPolicy: WaitForWorkersReady`): its `mpirun` reaches them at once.
    WaitForWorkersReady {
        launcher: String,
        workers: String,
        worker_replicas: u32,
    },
}

impl StartPolicy {
    /// Whether a replica of `role` may start, given which replicas are running.
    pub fn may_start(&self, role: &str, running: impl Fn(&str, u32) -> bool) -> bool {
        match self {
            StartPolicy::Together => true,
            StartPolicy::WaitForWorkersReady {
                launcher,
                workers,
                worker_replicas,
            } => role != launcher || (0..*worker_replicas).all(|i| running(workers, i)),
        }
    }
}

pub(crate) fn of(spec: &LaunchSpec) -> Completion {
    let every = |role: &str| {
        SuccessRule::Every(
            spec.role(role)
                .map(|r| vec![(r.name.clone(), r.replicas)])
                .unwrap_or_default(),
        )
    };
    let has = |role: &str| spec.role(role).is_some();
    let servers = |roles: &[&str]| -> Vec<String> {
        roles
            .iter()
            .filter(|r| has(r))
            .map(|r| r.to_string())
            .collect()
    };
    match &spec.framework {
        Framework::Plain => Completion {
            success: SuccessRule::Every(
                spec.roles
                    .iter()
                    .map(|r| (r.name.clone(), r.replicas))
                    .collect(),
            ),
            start: StartPolicy::Together,
            servers: Vec::new(),
        },
        Framework::Tensorflow(options) => {
            let success = if has("chief") {
                every("chief")
            } else if has("master") {
                every("master")
            } else if options.success_policy == SuccessPolicy::AllWorkers {
                every("worker")
            } else {
                SuccessRule::Replica {
                    role: "worker".into(),
                    index: 0,
                }
            };
            Completion {
                success,
                start: StartPolicy::Together,
                servers: servers(&["ps"]),
            }
        }
        Framework::Pytorch(options) => {
            let success = if has("master") {
                every("master")
            } else if options.elastic.is_some() {
                SuccessRule::Any {
                    role: "worker".into(),
                    replicas: spec.role("worker").map_or(0, |r| r.replicas),
                }
            } else {
                every("worker")
            };
            Completion {
                success,
                start: StartPolicy::Together,
                servers: Vec::new(),
            }
        }
        Framework::Mpi(_) => Completion {
            success: every("launcher"),
            start: StartPolicy::WaitForWorkersReady {
                launcher: "launcher".into(),
                workers: "worker".into(),
                worker_replicas: spec.role("worker").map_or(0, |r| r.replicas),
            },
            servers: servers(&["worker"]),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use mofang_job::{ElasticOptions, MpiOptions, PytorchOptions, TensorflowOptions};

    use super::*;
    use crate::Role;

    fn spec(framework: Framework, roles: &[(&str, u32)]) -> LaunchSpec {
        LaunchSpec {
            job: "j".into(),
            framework,
            roles: roles.iter().map(|(r, n)| Role::new(r, *n)).collect(),
        }
    }

    fn tf(policy: SuccessPolicy, roles: &[(&str, u32)]) -> Completion {
        of(&spec(
            Framework::Tensorflow(TensorflowOptions {
                success_policy: policy,
            }),
            roles,
        ))
    }

    /// `is_met` with these replicas succeeded.
    fn met(rule: &SuccessRule, done: &[(&str, u32)]) -> bool {
        let done: BTreeSet<(String, u32)> = done.iter().map(|(r, i)| (r.to_string(), *i)).collect();
        rule.is_met(|r, i| done.contains(&(r.to_string(), i)))
    }

    // Cases of Training Operator v1's tensorflow/status_test.go.
    #[test]
    fn tensorflow_with_a_chief_succeeds_with_the_chief_alone() {
        let c = tf(
            SuccessPolicy::Default,
            &[("chief", 1), ("worker", 2), ("ps", 1)],
        );
        assert!(
            met(&c.success, &[("chief", 0)]),
            "chief succeeded, workers failed"
        );
        assert!(
            !met(&c.success, &[("worker", 0), ("worker", 1)]),
            "chief running"
        );
        assert_eq!(c.servers, ["ps"]);
        assert_eq!(c.success.describe(), "chief 0 succeeded");
        let m = tf(SuccessPolicy::Default, &[("master", 1), ("worker", 2)]);
        assert!(met(&m.success, &[("master", 0)]));
        assert!(m.servers.is_empty());
    }

    #[test]
    fn tensorflow_without_a_chief_succeeds_with_worker_0_or_with_every_worker() {
        let roles = [("worker", 4)];
        let default = tf(SuccessPolicy::Default, &roles);
        assert!(
            met(&default.success, &[("worker", 0)]),
            "worker-0 succeeded, 3 active"
        );
        assert!(
            !met(&default.success, &[("worker", 1), ("worker", 2)]),
            "2 succeeded, 2 active"
        );
        let all = tf(SuccessPolicy::AllWorkers, &roles);
        assert!(
            !met(&all.success, &[("worker", 0)]),
            "AllWorkers: worker-0 succeeded, 3 active"
        );
        assert!(met(
            &all.success,
            &[("worker", 0), ("worker", 1), ("worker", 2), ("worker", 3)]
        ));
        assert_eq!(all.success.describe(), "every worker succeeded");
    }

    // Cases of Training Operator v1's PyTorchJob UpdateJobStatus.
    #[test]
    fn pytorch_succeeds_with_its_master_or_its_workers() {
        let pt = |elastic: bool, roles: &[(&str, u32)]| {
            of(&spec(
                Framework::Pytorch(PytorchOptions {
                    elastic: elastic.then(ElasticOptions::default),
                    ..PytorchOptions::default()
                }),
                roles,
            ))
        };
        let master = pt(false, &[("master", 1), ("worker", 3)]);
        assert!(met(&master.success, &[("master", 0)]));
        assert!(!met(
            &master.success,
            &[("worker", 0), ("worker", 1), ("worker", 2)]
        ));
        let workers = pt(false, &[("worker", 2)]);
        assert!(!met(&workers.success, &[("worker", 0)]));
        assert!(met(&workers.success, &[("worker", 0), ("worker", 1)]));
        let elastic = pt(true, &[("worker", 3)]);
        assert!(
            met(&elastic.success, &[("worker", 2)]),
            "elastic: any worker"
        );
        assert!(!met(&elastic.success, &[]));
        assert_eq!(master.start, StartPolicy::Together);
    }

    #[test]
    fn mpi_succeeds_with_its_launcher_which_waits_for_every_worker() {
        let c = of(&spec(
            Framework::Mpi(MpiOptions::default()),
            &[("launcher", 1), ("worker", 2)],
        ));
        assert!(met(&c.success, &[("launcher", 0)]));
        assert!(!met(&c.success, &[("worker", 0), ("worker", 1)]));
        assert_eq!(c.servers, ["worker"]);
        assert!(c.start.may_start("worker", |_, _| false));
        assert!(!c.start.may_start("launcher", |_, i| i == 0));
        assert!(c.start.may_start("launcher", |r, _| r == "worker"));
    }

    #[test]
    fn plain_jobs_succeed_when_every_replica_did() {
        let c = of(&spec(Framework::Plain, &[("a", 1), ("b", 2)]));
        assert!(!met(&c.success, &[("a", 0), ("b", 0)]));
        assert!(met(&c.success, &[("a", 0), ("b", 0), ("b", 1)]));
        assert_eq!(c.success.describe(), "a 0 and every b succeeded");
    }
}
