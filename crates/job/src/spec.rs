//! The job specification users submit (YAML or JSON — YAML is a superset, one parser reads both)
//! and its validation. Field names are snake_case like the rest of mofang's files; the Kubeflow
//! names they correspond to are given in docs/jobs.md.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::kind::{JobKind, MpiOptions, PytorchOptions, RestartMode, TensorflowOptions};
use crate::quantity::{Bytes, Millicores};
use crate::restart::RestartPolicy;
use crate::{Error, Result};

/// Largest spec text accepted.
pub const MAX_SPEC_BYTES: usize = 256 * 1024;
/// Most tasks (roles) in one job.
pub const MAX_TASKS: usize = 32;
/// Most replicas in one job, over all its tasks.
pub const MAX_REPLICAS: u32 = 4096;
/// Most environment variables of one task.
pub const MAX_ENV: usize = 256;
/// Default number of restarts before a job is marked Failed (Kubeflow's `backoffLimit`).
pub const DEFAULT_BACKOFF_LIMIT: u32 = 3;
/// Most labels in one task's `node_selector`.
pub const MAX_NODE_SELECTOR: usize = 32;

/// A job: one or more tasks (roles), each with replicas, scheduled as one gang.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Unique among the live jobs of its user: a DNS label (lowercase letters, digits, `-`).
    pub name: String,
    /// Owner. The server fills it from the API token; a spec naming another user is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The owner's group (also from the token when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Queue to wait in; default: the queue named after the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Higher runs first within a queue.
    #[serde(default)]
    pub priority: i32,
    /// Replicas that must be placed together before any starts (the gang); default all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_available: Option<u32>,
    /// Restarts allowed over the whole job before it is Failed (Kubeflow `runPolicy.backoffLimit`).
    #[serde(default = "default_backoff_limit")]
    pub backoff_limit: u32,
    /// Seconds the job may run from its first start; then it is stopped and Failed
    /// (Kubeflow `runPolicy.activeDeadlineSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<u64>,
    pub tasks: Vec<TaskSpec>,
    /// Storage the job sees: its user's directory, its group's, the global read-only one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// The framework the job runs (Kubeflow's job kind); absent: a plain job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<JobKind>,
    /// Options of `kind: tensorflow`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorflow: Option<TensorflowOptions>,
    /// Options of `kind: pytorch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pytorch: Option<PytorchOptions>,
    /// Options of `kind: mpi`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mpi: Option<MpiOptions>,
    /// Whether a restart restarts one replica or the whole gang; default `replica`.
    #[serde(default, skip_serializing_if = "RestartMode::is_replica")]
    pub restart_mode: RestartMode,
}

fn default_backoff_limit() -> u32 {
    DEFAULT_BACKOFF_LIMIT
}

fn one() -> u32 {
    1
}

/// One role of a job (Kubeflow's replica spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// `master`, `worker`, `ps`, `chief`, `evaluator`, `launcher` or any DNS label; unique in the job.
    pub role: String,
    #[serde(default = "one")]
    pub replicas: u32,
    /// Program and its fixed arguments; run directly, not through a shell.
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Working directory; relative paths are under the job's own directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub resources: Resources,
    #[serde(default)]
    pub restart_policy: RestartPolicy,
    /// Node labels a replica's node must have (Kubernetes' `nodeSelector`), for the scheduler.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
}

/// What one replica needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Cores (`2`, `0.5`) or millicores (`500m`); default 1 core.
    #[serde(default = "one_core")]
    pub cpu: Millicores,
    /// Bytes with an optional suffix (`512Mi`, `2Gi`); default 0 (not accounted).
    #[serde(default)]
    pub memory: Bytes,
    /// Whole GPUs.
    #[serde(default)]
    pub gpu: u32,
}

fn one_core() -> Millicores {
    Millicores(1000)
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu: one_core(),
            memory: Bytes(0),
            gpu: 0,
        }
    }
}

/// Which storage root a mount comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The submitting user's own directory.
    User,
    /// The user's group's shared directory.
    Group,
    /// The platform-wide directory, always read-only.
    Global,
}

/// A directory of one scope made visible to every replica (as `MOFANG_MOUNT_<NAME>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Letters, digits and `_`; unique in the job.
    pub name: String,
    pub scope: Scope,
    /// A relative path inside the scope's root; default the root itself.
    #[serde(default)]
    pub path: String,
    /// Global mounts are read-only whatever this says.
    #[serde(default)]
    pub read_only: bool,
}

impl JobSpec {
    /// Parses YAML or JSON and validates. Errors name the field (`tasks[0].resources.cpu: ...`).
    pub fn parse(text: &str) -> Result<JobSpec> {
        if text.len() > MAX_SPEC_BYTES {
            return Err(Error::invalid(
                "spec",
                format!("is {} bytes; the limit is {MAX_SPEC_BYTES}", text.len()),
            ));
        }
        if text.trim().is_empty() {
            return Err(Error::invalid("spec", "is empty"));
        }
        let spec: JobSpec = serde_yaml::from_str(text).map_err(|e| Error::Parse(e.to_string()))?;
        spec.validate()?;
        Ok(spec)
    }

    /// Replicas over all tasks.
    pub fn total_replicas(&self) -> u32 {
        self.tasks
            .iter()
            .fold(0u32, |sum, t| sum.saturating_add(t.replicas))
    }

    /// The gang's size: `min_available`, or every replica.
    pub fn gang_size(&self) -> u32 {
        self.min_available.unwrap_or_else(|| self.total_replicas())
    }

    /// Checks every rule the types cannot express.
    pub fn validate(&self) -> Result<()> {
        check_dns_label("name", &self.name)?;
        for (field, value) in [
            ("user", &self.user),
            ("group", &self.group),
            ("queue", &self.queue),
        ] {
            if let Some(v) = value {
                check_dns_label(field, v)?;
            }
        }
        if self.tasks.is_empty() {
            return Err(Error::invalid("tasks", "needs at least one task"));
        }
        if self.tasks.len() > MAX_TASKS {
            return Err(Error::invalid(
                "tasks",
                format!("has {} tasks; the limit is {MAX_TASKS}", self.tasks.len()),
            ));
        }
        let mut roles = BTreeSet::new();
        let mut total: u64 = 0;
        for (i, task) in self.tasks.iter().enumerate() {
            task.validate(&format!("tasks[{i}]"))?;
            if !roles.insert(task.role.as_str()) {
                return Err(Error::invalid(
                    format!("tasks[{i}].role"),
                    format!("{:?} appears twice; roles must be unique", task.role),
                ));
            }
            total += u64::from(task.replicas);
        }
        if total > u64::from(MAX_REPLICAS) {
            return Err(Error::invalid(
                "tasks",
                format!("ask for {total} replicas in all; the limit is {MAX_REPLICAS}"),
            ));
        }
        if let Some(min) = self.min_available
            && (min == 0 || u64::from(min) > total)
        {
            return Err(Error::invalid(
                "min_available",
                format!("is {min}; it must be between 1 and the job's {total} replicas"),
            ));
        }
        if self.active_deadline_seconds == Some(0) {
            return Err(Error::invalid(
                "active_deadline_seconds",
                "must be at least 1 (leave it out for no deadline)",
            ));
        }
        let mut names = BTreeSet::new();
        for (i, mount) in self.mounts.iter().enumerate() {
            let field = format!("mounts[{i}]");
            check_identifier(&format!("{field}.name"), &mount.name)?;
            if !names.insert(mount.name.to_ascii_uppercase()) {
                return Err(Error::invalid(
                    format!("{field}.name"),
                    format!(
                        "{:?} appears twice (names are case-insensitive)",
                        mount.name
                    ),
                ));
            }
            check_relative_path(&format!("{field}.path"), &mount.path)?;
        }
        crate::validate::kind(self)?;
        Ok(())
    }

    /// The task of a role, if the job has it.
    pub fn task(&self, role: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.role == role)
    }
}

impl TaskSpec {
    fn validate(&self, at: &str) -> Result<()> {
        check_dns_label(&format!("{at}.role"), &self.role)?;
        if self.replicas == 0 {
            return Err(Error::invalid(
                format!("{at}.replicas"),
                "must be at least 1",
            ));
        }
        match self.command.first() {
            None => {
                return Err(Error::invalid(
                    format!("{at}.command"),
                    "needs the program to run",
                ));
            }
            Some(program) if program.trim().is_empty() => {
                return Err(Error::invalid(
                    format!("{at}.command[0]"),
                    "is empty; it must name the program to run",
                ));
            }
            Some(_) => {}
        }
        for (list, values) in [("command", &self.command), ("args", &self.args)] {
            for (j, v) in values.iter().enumerate() {
                check_no_nul(&format!("{at}.{list}[{j}]"), v)?;
            }
        }
        if self.env.len() > MAX_ENV {
            return Err(Error::invalid(
                format!("{at}.env"),
                format!("has {} variables; the limit is {MAX_ENV}", self.env.len()),
            ));
        }
        for (name, value) in &self.env {
            let field = format!("{at}.env.{name}");
            check_identifier(&field, name)?;
            if name.starts_with("MOFANG_") {
                return Err(Error::invalid(
                    field,
                    "MOFANG_* variables are set by mofang itself",
                ));
            }
            check_no_nul(&field, value)?;
        }
        if let Some(dir) = &self.working_dir {
            check_no_nul(&format!("{at}.working_dir"), dir)?;
        }
        crate::validate::node_selector(&format!("{at}.node_selector"), &self.node_selector)?;
        Ok(())
    }
}

/// Lowercase letters, digits and `-`, 1 to 63 characters, starting and ending alphanumeric
/// (Kubernetes' DNS-1123 label, so names carry over to the Kubernetes executor).
fn check_dns_label(field: &str, value: &str) -> Result<()> {
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
        Err(Error::invalid(
            field,
            format!(
                "{value:?} is not a valid name: use 1-63 lowercase letters, digits and '-', \
                 starting and ending with a letter or digit"
            ),
        ))
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`, as environment variable names.
fn check_identifier(field: &str, value: &str) -> Result<()> {
    let mut bytes = value.bytes();
    let ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{value:?} is not a valid name: use letters, digits and '_', not starting with a digit"
            ),
        ))
    }
}

fn check_no_nul(field: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        Err(Error::invalid(field, "contains a NUL character"))
    } else {
        Ok(())
    }
}

/// A path that stays inside its root: relative, no `..`, no NUL.
fn check_relative_path(field: &str, value: &str) -> Result<()> {
    check_no_nul(field, value)?;
    if value.starts_with('/') {
        return Err(Error::invalid(
            field,
            format!("{value:?} is absolute; give a path relative to the scope's root"),
        ));
    }
    if value.split('/').any(|part| part == "..") {
        return Err(Error::invalid(
            field,
            format!("{value:?} leaves the scope's root ('..' is not allowed)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DDP: &str = r#"
name: mnist-ddp
queue: team-a
priority: 5
tasks:
  - role: master
    command: [python, train.py]
    resources: {cpu: 500m, memory: 1Gi}
  - role: worker
    replicas: 3
    command: [python, train.py]
    args: [--epochs, "3"]
    env: {NCCL_DEBUG: INFO}
    resources: {cpu: 2, memory: 2Gi, gpu: 1}
    restart_policy: ExitCode
mounts:
  - {name: data, scope: group, path: datasets/mnist}
"#;

    fn error_of(text: &str) -> String {
        match JobSpec::parse(text) {
            Ok(spec) => panic!("{text}\nwas accepted as {spec:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_ddp_job_parses_with_defaults_filled_in() {
        let spec = JobSpec::parse(DDP).expect("valid spec");
        assert_eq!(spec.total_replicas(), 4);
        assert_eq!(spec.gang_size(), 4);
        assert_eq!(spec.backoff_limit, DEFAULT_BACKOFF_LIMIT);
        assert_eq!(spec.tasks[0].replicas, 1);
        assert_eq!(spec.tasks[0].resources.cpu, Millicores(500));
        assert_eq!(spec.tasks[0].restart_policy, RestartPolicy::Never);
        assert_eq!(spec.tasks[1].resources.memory, Bytes(2 << 30));
        assert_eq!(spec.tasks[1].restart_policy, RestartPolicy::ExitCode);
        assert_eq!(spec.mounts[0].scope, Scope::Group);
    }

    #[test]
    fn json_is_read_by_the_same_parser() {
        let yaml = JobSpec::parse(DDP).expect("valid spec");
        let json = serde_json::to_string(&yaml).expect("serialize");
        assert_eq!(JobSpec::parse(&json).expect("the JSON form parses"), yaml);
    }

    #[test]
    fn unknown_fields_are_named() {
        let e = error_of("name: a\ntasks: [{role: w, command: [x], resources: {gpus: 1}}]\n");
        assert!(e.contains("gpus"), "{e}");
        let e = error_of("name: a\nreplica: 2\ntasks: [{role: w, command: [x]}]\n");
        assert!(e.contains("replica"), "{e}");
    }

    #[test]
    fn bad_resources_name_the_field() {
        let e = error_of("name: a\ntasks: [{role: w, command: [x], resources: {cpu: -1}}]\n");
        assert!(
            e.contains("tasks[0].resources.cpu") && e.contains("-1"),
            "{e}"
        );
        let e = error_of("name: a\ntasks: [{role: w, command: [x], resources: {memory: 2Gx}}]\n");
        assert!(
            e.contains("tasks[0].resources.memory") && e.contains("2Gx"),
            "{e}"
        );
        let e = error_of("name: a\ntasks: [{role: w, command: [x], resources: {gpu: -2}}]\n");
        assert!(e.contains("tasks[0].resources.gpu"), "{e}");
    }

    #[test]
    fn structural_rules_name_the_field() {
        for (text, field) in [
            ("name: Bad_Name\ntasks: [{role: w, command: [x]}]\n", "name"),
            ("name: a\ntasks: []\n", "tasks"),
            (
                "name: a\ntasks: [{role: w, command: []}]\n",
                "tasks[0].command",
            ),
            (
                "name: a\ntasks: [{role: w, command: [x], replicas: 0}]\n",
                "tasks[0].replicas",
            ),
            (
                "name: a\ntasks: [{role: w, command: [x]}, {role: w, command: [y]}]\n",
                "tasks[1].role",
            ),
            (
                "name: a\nmin_available: 3\ntasks: [{role: w, command: [x], replicas: 2}]\n",
                "min_available",
            ),
            (
                "name: a\ntasks: [{role: w, command: [x], env: {MOFANG_JOB: x}}]\n",
                "tasks[0].env.MOFANG_JOB",
            ),
            (
                "name: a\ntasks: [{role: w, command: [x], env: {1X: y}}]\n",
                "tasks[0].env.1X",
            ),
            (
                "name: a\ntasks: [{role: w, command: [x]}]\nmounts: [{name: d, scope: user, path: ../other}]\n",
                "mounts[0].path",
            ),
            (
                "name: a\ntasks: [{role: w, command: [x]}]\nmounts: [{name: d, scope: user, path: /etc}]\n",
                "mounts[0].path",
            ),
            (
                "name: a\ntasks: [{role: w, command: [x], replicas: 5000}]\n",
                "tasks",
            ),
            (
                "name: a\nactive_deadline_seconds: 0\ntasks: [{role: w, command: [x]}]\n",
                "active_deadline_seconds",
            ),
        ] {
            let e = error_of(text);
            assert!(e.starts_with(&format!("{field}:")), "{text}\n→ {e}");
        }
    }

    #[test]
    fn oversized_and_empty_specs_are_refused() {
        let big = format!("name: a\n# {}\n", "x".repeat(MAX_SPEC_BYTES));
        assert!(error_of(&big).contains("limit"));
        assert!(error_of("  \n").contains("empty"));
        assert!(error_of("[1, 2]").contains("invalid"));
    }
}
