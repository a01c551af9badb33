//! Rules of the framework kinds and of node selectors; each error names its field.

use std::collections::BTreeMap;

use crate::kind::{JobKind, PytorchFlavour};
use crate::spec::{JobSpec, MAX_NODE_SELECTOR};
use crate::{Error, Result};

/// The kind's options belong to the kind, its roles are the kind's, and its role counts are
/// what the framework needs.
pub(crate) fn kind(spec: &JobSpec) -> Result<()> {
    for (field, given, owner) in [
        ("tensorflow", spec.tensorflow.is_some(), JobKind::Tensorflow),
        ("pytorch", spec.pytorch.is_some(), JobKind::Pytorch),
        ("mpi", spec.mpi.is_some(), JobKind::Mpi),
    ] {
        if given && spec.kind != Some(owner) {
            let is = match spec.kind {
                Some(k) => format!("the job's kind is {k}"),
                None => "the job has no kind".to_string(),
            };
            return Err(Error::invalid(
                field,
                format!("is only for `kind: {owner}`, but {is}"),
            ));
        }
    }
    let Some(kind) = spec.kind else {
        return Ok(());
    };
    let allowed = kind.allowed_roles();
    for (i, task) in spec.tasks.iter().enumerate() {
        if !allowed.contains(&task.role.as_str()) {
            return Err(Error::invalid(
                format!("tasks[{i}].role"),
                format!(
                    "{:?} is not a role of kind {kind}; use {}",
                    task.role,
                    allowed.join(", ")
                ),
            ));
        }
    }
    match kind {
        JobKind::Tensorflow => tensorflow(spec),
        JobKind::Pytorch => pytorch(spec),
        JobKind::Mpi => mpi(spec),
    }
}

fn index_of(spec: &JobSpec, role: &str) -> Option<usize> {
    spec.tasks.iter().position(|t| t.role == role)
}

/// A role that must have exactly one replica, if present.
fn single_replica(spec: &JobSpec, role: &str, kind: JobKind) -> Result<()> {
    if let Some(i) = index_of(spec, role)
        && spec.tasks[i].replicas != 1
    {
        return Err(Error::invalid(
            format!("tasks[{i}].replicas"),
            format!(
                "is {}; a {kind} job's {role} has exactly 1 replica",
                spec.tasks[i].replicas
            ),
        ));
    }
    Ok(())
}

fn tensorflow(spec: &JobSpec) -> Result<()> {
    if let (Some(_), Some(master)) = (index_of(spec, "chief"), index_of(spec, "master")) {
        return Err(Error::invalid(
            format!("tasks[{master}].role"),
            "a tensorflow job has at most one chief or master role; it has both",
        ));
    }
    single_replica(spec, "chief", JobKind::Tensorflow)?;
    single_replica(spec, "master", JobKind::Tensorflow)?;
    if ["chief", "master", "worker"]
        .iter()
        .all(|r| index_of(spec, r).is_none())
    {
        return Err(Error::invalid(
            "tasks",
            "a tensorflow job needs a chief, master or worker task (its success is decided by them)",
        ));
    }
    Ok(())
}

fn pytorch(spec: &JobSpec) -> Result<()> {
    single_replica(spec, "master", JobKind::Pytorch)?;
    let options = spec.pytorch.clone().unwrap_or_default();
    let Some(elastic) = &options.elastic else {
        return Ok(());
    };
    if options.flavour == PytorchFlavour::TrainerV2 {
        return Err(Error::invalid(
            "pytorch.elastic",
            "is not part of flavour trainer_v2 (Trainer v2's torch runtime has no elastic form); \
             use flavour training_operator_v1",
        ));
    }
    let Some(worker) = index_of(spec, "worker") else {
        return Err(Error::invalid(
            "pytorch.elastic",
            "needs a worker task (the rendezvous runs on worker 0)",
        ));
    };
    let replicas = spec.tasks[worker].replicas;
    let (min, max) = elastic.bounds(replicas);
    if min == 0 {
        return Err(Error::invalid("pytorch.elastic.min", "must be at least 1"));
    }
    if max < min {
        return Err(Error::invalid(
            "pytorch.elastic.max",
            format!("is {max}; it must be at least min ({min})"),
        ));
    }
    if replicas < min || replicas > max {
        return Err(Error::invalid(
            format!("tasks[{worker}].replicas"),
            format!(
                "is {replicas}; with pytorch.elastic it must be between min ({min}) and max ({max})"
            ),
        ));
    }
    Ok(())
}

fn mpi(spec: &JobSpec) -> Result<()> {
    if index_of(spec, "launcher").is_none() {
        return Err(Error::invalid(
            "tasks",
            "an mpi job needs a launcher task (it runs mpirun)",
        ));
    }
    single_replica(spec, "launcher", JobKind::Mpi)?;
    if index_of(spec, "worker").is_none() {
        return Err(Error::invalid(
            "tasks",
            "an mpi job needs a worker task (the hosts of the hostfile)",
        ));
    }
    if let Some(options) = &spec.mpi
        && options.slots_per_worker == 0
    {
        return Err(Error::invalid("mpi.slots_per_worker", "must be at least 1"));
    }
    Ok(())
}

/// Kubernetes label keys (`[prefix/]name`) and values.
pub(crate) fn node_selector(field: &str, labels: &BTreeMap<String, String>) -> Result<()> {
    if labels.len() > MAX_NODE_SELECTOR {
        return Err(Error::invalid(
            field,
            format!(
                "has {} labels; the limit is {MAX_NODE_SELECTOR}",
                labels.len()
            ),
        ));
    }
    for (key, value) in labels {
        let at = format!("{field}.{key}");
        let (prefix, name) = match key.rsplit_once('/') {
            Some((prefix, name)) => (Some(prefix), name),
            None => (None, key.as_str()),
        };
        if let Some(prefix) = prefix
            && !is_dns_subdomain(prefix)
        {
            return Err(Error::invalid(
                at,
                format!(
                    "the key's prefix {prefix:?} is not a DNS subdomain (lowercase letters, digits, \
                     '-' and '.', at most 253 characters)"
                ),
            ));
        }
        if name.is_empty() || !is_label_text(name) {
            return Err(Error::invalid(
                at,
                format!(
                    "the key's name {name:?} is not a label name: 1-63 letters, digits, '-', '_' \
                     or '.', starting and ending with a letter or digit"
                ),
            ));
        }
        if !value.is_empty() && !is_label_text(value) {
            return Err(Error::invalid(
                at,
                format!(
                    "{value:?} is not a label value: at most 63 letters, digits, '-', '_' or '.', \
                     starting and ending with a letter or digit"
                ),
            ));
        }
    }
    Ok(())
}

/// 1-63 of `[A-Za-z0-9._-]`, alphanumeric at both ends.
fn is_label_text(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// DNS-1123 subdomain: dot-separated labels of lowercase alphanumerics and `-`, ≤ 253 bytes.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && !s.is_empty()
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

#[cfg(test)]
mod tests {
    use crate::kind::*;
    use crate::spec::JobSpec;

    const PLAIN: &str = "name: a\ntasks:\n  - {role: master, command: [x]}\n  - {role: worker, replicas: 2, command: [x]}\n";

    const PYTORCH: &str = r#"
name: ddp
kind: pytorch
restart_mode: gang
pytorch:
  nproc_per_node: 2
  elastic: {min: 1, max: 4, max_restarts: 3, rdzv_backend: etcd-v2}
tasks:
  - {role: master, command: [torchrun, train.py]}
  - role: worker
    replicas: 3
    command: [torchrun, train.py]
    node_selector: {gpu.example.com/model: a100, zone: eu-1}
"#;

    fn error_of(text: &str) -> String {
        match JobSpec::parse(text) {
            Ok(spec) => panic!("{text}\nwas accepted as {spec:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_spec_without_the_new_fields_parses_and_serializes_as_before() {
        let spec = JobSpec::parse(PLAIN).expect("valid");
        assert_eq!(spec.kind, None);
        assert_eq!(spec.restart_mode, RestartMode::Replica);
        assert!(spec.tasks.iter().all(|t| t.node_selector.is_empty()));
        let json = serde_json::to_value(&spec).expect("serialize");
        for absent in ["kind", "tensorflow", "pytorch", "mpi", "restart_mode"] {
            assert!(json.get(absent).is_none(), "{absent} in {json}");
        }
        assert!(json["tasks"][0].get("node_selector").is_none(), "{json}");
    }

    #[test]
    fn a_pytorch_spec_parses_with_its_options() {
        let spec = JobSpec::parse(PYTORCH).expect("valid");
        assert_eq!(spec.kind, Some(JobKind::Pytorch));
        assert_eq!(spec.restart_mode, RestartMode::Gang);
        let options = spec.pytorch.clone().expect("options");
        assert_eq!(options.nproc_per_node, NprocPerNode::Count(2));
        assert_eq!(options.flavour, PytorchFlavour::TrainingOperatorV1);
        let elastic = options.elastic.expect("elastic");
        assert_eq!(elastic.bounds(3), (1, 4));
        assert_eq!(elastic.max_restarts, Some(3));
        assert_eq!(elastic.rdzv_backend, RdzvBackend::EtcdV2);
        assert_eq!(
            spec.tasks[1].node_selector.get("gpu.example.com/model"),
            Some(&"a100".to_string())
        );
        let json = serde_json::to_string(&spec).expect("serialize");
        assert_eq!(JobSpec::parse(&json).expect("JSON form parses"), spec);
    }

    #[test]
    fn options_take_their_defaults() {
        let spec = JobSpec::parse(
            "name: a\nkind: pytorch\npytorch: {elastic: {}}\ntasks: [{role: worker, replicas: 2, command: [x]}]\n",
        )
        .expect("valid");
        let options = spec.pytorch.expect("options");
        assert_eq!(options.nproc_per_node, NprocPerNode::Auto);
        let elastic = options.elastic.expect("elastic");
        assert_eq!(elastic.bounds(2), (2, 2));
        assert_eq!(elastic.rdzv_backend, RdzvBackend::C10d);
        for (text, want) in [
            ("\"auto\"", NprocPerNode::Auto),
            ("\"4\"", NprocPerNode::Count(4)),
        ] {
            let spec = JobSpec::parse(&format!(
                "name: a\nkind: pytorch\npytorch: {{nproc_per_node: {text}}}\ntasks: [{{role: worker, command: [x]}}]\n"
            ))
            .expect("valid");
            assert_eq!(spec.pytorch.expect("options").nproc_per_node, want);
        }
        let spec = JobSpec::parse(
            "name: a\nkind: mpi\nmpi: {implementation: Intel}\ntasks: [{role: launcher, command: [mpirun]}, {role: worker, command: [x]}]\n",
        )
        .expect("valid");
        let mpi = spec.mpi.expect("options");
        assert_eq!(
            (mpi.implementation, mpi.slots_per_worker),
            (MpiImplementation::Intel, 1)
        );
        let spec = JobSpec::parse(
            "name: a\nkind: tensorflow\ntensorflow: {success_policy: AllWorkers}\ntasks: [{role: worker, replicas: 2, command: [x]}, {role: ps, command: [x]}]\n",
        )
        .expect("valid");
        assert_eq!(
            spec.tensorflow.expect("options").success_policy,
            SuccessPolicy::AllWorkers
        );
    }

    #[test]
    fn kind_rules_name_the_field() {
        let tf = "name: a\nkind: tensorflow\ntasks:\n";
        let pt = "name: a\nkind: pytorch\ntasks:\n";
        let mpi = "name: a\nkind: mpi\ntasks:\n";
        for (text, field) in [
            (format!("{tf}  - {{role: launcher, command: [x]}}\n"), "tasks[0].role"),
            (
                format!("{tf}  - {{role: chief, command: [x]}}\n  - {{role: master, command: [x]}}\n"),
                "tasks[1].role",
            ),
            (format!("{tf}  - {{role: chief, replicas: 2, command: [x]}}\n"), "tasks[0].replicas"),
            (format!("{tf}  - {{role: ps, command: [x]}}\n"), "tasks"),
            (format!("{pt}  - {{role: ps, command: [x]}}\n"), "tasks[0].role"),
            (format!("{pt}  - {{role: master, replicas: 2, command: [x]}}\n"), "tasks[0].replicas"),
            (
                format!("pytorch: {{elastic: {{min: 2}}}}\n{pt}  - {{role: master, command: [x]}}\n"),
                "pytorch.elastic",
            ),
            (
                format!("pytorch: {{elastic: {{min: 0, max: 2}}}}\n{pt}  - {{role: worker, command: [x]}}\n"),
                "pytorch.elastic.min",
            ),
            (
                format!("pytorch: {{elastic: {{min: 3, max: 2}}}}\n{pt}  - {{role: worker, command: [x]}}\n"),
                "pytorch.elastic.max",
            ),
            (
                format!("pytorch: {{elastic: {{min: 2, max: 4}}}}\n{pt}  - {{role: worker, command: [x]}}\n"),
                "tasks[0].replicas",
            ),
            (
                format!("pytorch: {{flavour: trainer_v2, elastic: {{}}}}\n{pt}  - {{role: worker, command: [x]}}\n"),
                "pytorch.elastic",
            ),
            (format!("{mpi}  - {{role: worker, command: [x]}}\n"), "tasks"),
            (format!("{mpi}  - {{role: launcher, command: [x]}}\n"), "tasks"),
            (
                format!("{mpi}  - {{role: launcher, replicas: 2, command: [x]}}\n  - {{role: worker, command: [x]}}\n"),
                "tasks[0].replicas",
            ),
            (
                format!("mpi: {{slots_per_worker: 0}}\n{mpi}  - {{role: launcher, command: [x]}}\n  - {{role: worker, command: [x]}}\n"),
                "mpi.slots_per_worker",
            ),
            (
                format!("mpi: {{}}\n{pt}  - {{role: worker, command: [x]}}\n"),
                "mpi",
            ),
            (
                "name: a\ntensorflow: {}\ntasks: [{role: worker, command: [x]}]\n".to_string(),
                "tensorflow",
            ),
            (
                "name: a\ntasks: [{role: w, command: [x], node_selector: {\"-bad\": x}}]\n".to_string(),
                "tasks[0].node_selector.-bad",
            ),
            (
                "name: a\ntasks: [{role: w, command: [x], node_selector: {\"Bad_Prefix/zone\": x}}]\n".to_string(),
                "tasks[0].node_selector.Bad_Prefix/zone",
            ),
            (
                "name: a\ntasks: [{role: w, command: [x], node_selector: {zone: \"eu 1\"}}]\n".to_string(),
                "tasks[0].node_selector.zone",
            ),
        ] {
            let e = error_of(&text);
            assert!(e.starts_with(&format!("{field}:")), "{text}\n→ {e}");
        }
    }

    #[test]
    fn bad_option_values_are_refused_by_the_parser() {
        for (text, word) in [
            (
                "name: a\nkind: keras\ntasks: [{role: w, command: [x]}]\n",
                "keras",
            ),
            (
                "name: a\nrestart_mode: all\ntasks: [{role: w, command: [x]}]\n",
                "all",
            ),
            (
                "name: a\nkind: pytorch\npytorch: {nproc_per_node: 0}\ntasks: [{role: worker, command: [x]}]\n",
                "nproc_per_node",
            ),
            (
                "name: a\nkind: pytorch\npytorch: {nprocs: 2}\ntasks: [{role: worker, command: [x]}]\n",
                "nprocs",
            ),
            (
                "name: a\nkind: mpi\nmpi: {implementation: lam}\ntasks: [{role: launcher, command: [x]}, {role: worker, command: [x]}]\n",
                "lam",
            ),
        ] {
            let e = error_of(text);
            assert!(e.contains(word), "{text}\n→ {e}");
        }
    }
}
