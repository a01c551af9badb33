//! PyTorch's variables in two flavours.
//!
//! Training Operator v1 (PyTorchJob), in its order: `PYTHONUNBUFFERED=1`; with a master,
//! `MASTER_PORT`, `PET_MASTER_PORT`, `MASTER_ADDR`, `PET_MASTER_ADDR` (the master's address),
//! `WORLD_SIZE` (replicas × nproc, `auto` counting 1), `RANK` and `PET_NODE_RANK` (master 0,
//! worker i → i + 1); `PET_NPROC_PER_NODE`; then either the elastic set (`PET_RDZV_ENDPOINT`
//! = worker 0, `PET_RDZV_BACKEND`, `PET_NNODES=min:max`, `PET_MAX_RESTARTS` when set) or
//! `PET_NNODES` = all replicas. Without a master there is no `MASTER_*`, `WORLD_SIZE` or
//! `RANK`: torchrun's rendezvous assigns ranks.
//!
//! Trainer v2's torch runtime: `PET_NNODES`, `PET_NPROC_PER_NODE` (`auto` on a replica without
//! GPUs becomes its whole CPUs, at least 1), `PET_NODE_RANK`, `PET_MASTER_ADDR`,
//! `PET_MASTER_PORT` (rank 0's address; 29500 on Kubernetes) — nothing else.

use mofang_job::{NprocPerNode, PytorchFlavour, PytorchOptions};

use crate::{AddressBook, Env, Error, LaunchSpec, Result, Role};

/// The replica's node rank: the master first, then the other roles in order (workers), each
/// replica by index. None when the role is not in `roles`.
pub(crate) fn node_rank(roles: &[Role], role: &str, index: u32) -> Option<u32> {
    let ordered = roles
        .iter()
        .filter(|r| r.name == "master")
        .chain(roles.iter().filter(|r| r.name != "master"));
    let mut offset = 0u32;
    for r in ordered {
        if r.name == role {
            return (index < r.replicas).then(|| offset.saturating_add(index));
        }
        offset = offset.saturating_add(r.replicas);
    }
    None
}

pub(crate) fn env(
    spec: &LaunchSpec,
    options: &PytorchOptions,
    book: &AddressBook,
    role: &Role,
    index: u32,
) -> Result<Env> {
    match options.flavour {
        PytorchFlavour::TrainingOperatorV1 => {
            training_operator_v1(spec, options, book, role, index)
        }
        PytorchFlavour::TrainerV2 => trainer_v2(spec, options, book, role, index),
    }
}

fn training_operator_v1(
    spec: &LaunchSpec,
    options: &PytorchOptions,
    book: &AddressBook,
    role: &Role,
    index: u32,
) -> Result<Env> {
    let mut env = Env::new();
    env.set("PYTHONUNBUFFERED", "1");
    let total = spec.total_replicas();
    if spec.role("master").is_some() {
        let master = book.get("master", 0)?;
        env.set("MASTER_PORT", master.port.to_string());
        env.set("PET_MASTER_PORT", master.port.to_string());
        env.set("MASTER_ADDR", master.host.clone());
        env.set("PET_MASTER_ADDR", master.host.clone());
        let world = u64::from(total) * u64::from(options.nproc_per_node.world_size_factor());
        env.set("WORLD_SIZE", world.to_string());
        let rank = if role.name == "worker" {
            u64::from(index) + 1
        } else {
            u64::from(index)
        };
        env.set("RANK", rank.to_string());
        env.set("PET_NODE_RANK", rank.to_string());
    }
    env.set("PET_NPROC_PER_NODE", options.nproc_per_node.to_string());
    match &options.elastic {
        Some(elastic) => {
            let workers = spec.role("worker").ok_or_else(|| {
                Error::Invalid("an elastic pytorch job needs a worker role".into())
            })?;
            env.set("PET_RDZV_ENDPOINT", book.endpoint("worker", 0)?);
            env.set("PET_RDZV_BACKEND", elastic.rdzv_backend.as_str());
            let (min, max) = elastic.bounds(workers.replicas);
            env.set("PET_NNODES", format!("{min}:{max}"));
            if let Some(restarts) = elastic.max_restarts {
                env.set("PET_MAX_RESTARTS", restarts.to_string());
            }
        }
        None => env.set("PET_NNODES", total.to_string()),
    }
    Ok(env)
}

fn trainer_v2(
    spec: &LaunchSpec,
    options: &PytorchOptions,
    book: &AddressBook,
    role: &Role,
    index: u32,
) -> Result<Env> {
    if options.elastic.is_some() {
        return Err(Error::Invalid(
            "flavour trainer_v2 has no elastic form (Trainer v2's torch runtime)".into(),
        ));
    }
    let rank = node_rank(&spec.roles, &role.name, index)
        .ok_or_else(|| Error::Invalid(format!("no node rank for {} {index}", role.name)))?;
    let first = spec
        .roles
        .iter()
        .find(|r| node_rank(&spec.roles, &r.name, 0) == Some(0))
        .ok_or_else(|| Error::Invalid("a pytorch job needs a replica".into()))?;
    let master = book.get(&first.name, 0)?;
    let nproc = match options.nproc_per_node {
        NprocPerNode::Auto if role.resources.gpu == 0 => {
            // Quantity.Value() rounds up: 500m is 1, 2500m is 3.
            let cores = role.resources.cpu.0.div_ceil(1000);
            cores.max(1).to_string()
        }
        n => n.to_string(),
    };
    let mut env = Env::new();
    env.set("PET_NNODES", spec.total_replicas().to_string());
    env.set("PET_NPROC_PER_NODE", nproc);
    env.set("PET_NODE_RANK", rank.to_string());
    env.set("PET_MASTER_ADDR", master.host.clone());
    env.set("PET_MASTER_PORT", master.port.to_string());
    Ok(env)
}

#[cfg(test)]
mod tests {
    use super::node_rank;
    use crate::Role;

    #[test]
    fn the_master_is_rank_0_wherever_it_is_listed() {
        let roles = [Role::new("worker", 3), Role::new("master", 1)];
        assert_eq!(node_rank(&roles, "master", 0), Some(0));
        assert_eq!(node_rank(&roles, "worker", 0), Some(1));
        assert_eq!(node_rank(&roles, "worker", 2), Some(3));
        assert_eq!(node_rank(&roles, "worker", 3), None);
        let workers = [Role::new("worker", 2)];
        assert_eq!(node_rank(&workers, "worker", 1), Some(1));
    }
}
