//! Distributed-training kinds (`kind: tensorflow | pytorch | mpi`), their options, the roles
//! each allows, and the job-level restart mode. The environment a kind gives its replicas is
//! computed elsewhere (`mofang-launch`); here are only the spec's fields and their rules.
//! Kubeflow's names for every field are in docs/jobs.md.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The framework a job is run for (Kubeflow's `TFJob`, `PyTorchJob`, `MPIJob`). A spec without
/// `kind` is a plain job: no framework variables, done when every replica succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    Tensorflow,
    Pytorch,
    Mpi,
}

impl JobKind {
    /// The kind's name as written in a spec.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Tensorflow => "tensorflow",
            JobKind::Pytorch => "pytorch",
            JobKind::Mpi => "mpi",
        }
    }

    /// The task roles the kind accepts, in Kubeflow's replica types (lowercase).
    pub fn allowed_roles(self) -> &'static [&'static str] {
        match self {
            JobKind::Tensorflow => &["chief", "master", "ps", "worker", "evaluator"],
            JobKind::Pytorch => &["master", "worker"],
            JobKind::Mpi => &["launcher", "worker"],
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happens to the other replicas when one replica is restarted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartMode {
    /// Only the replica that ended is restarted (Kubeflow's behaviour).
    #[default]
    Replica,
    /// Every replica of the job is stopped and started again together, for frameworks whose
    /// processes cannot rejoin a running group.
    Gang,
}

impl RestartMode {
    pub(crate) fn is_replica(&self) -> bool {
        *self == RestartMode::Replica
    }
}

/// `tensorflow:` options (TFJob).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorflowOptions {
    /// When a job without chief or master succeeds (TFJob `successPolicy`).
    #[serde(default)]
    pub success_policy: SuccessPolicy,
}

/// TFJob's `successPolicy`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SuccessPolicy {
    /// The chief (or master) succeeded; without one, worker 0 succeeded (Kubeflow's `""`).
    #[default]
    #[serde(rename = "default", alias = "Default")]
    Default,
    /// Without chief or master: every worker succeeded (Kubeflow's `AllWorkers`).
    #[serde(rename = "all_workers", alias = "AllWorkers")]
    AllWorkers,
}

/// `pytorch:` options (PyTorchJob).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PytorchOptions {
    /// Processes per replica, `auto` or a count (PyTorchJob `nprocPerNode`, torchrun's
    /// `--nproc-per-node`); default `auto`.
    #[serde(default)]
    pub nproc_per_node: NprocPerNode,
    /// torchrun's elastic rendezvous (PyTorchJob `elasticPolicy`); absent: a fixed group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic: Option<ElasticOptions>,
    /// Which set of variables replicas get; default Training Operator v1's.
    #[serde(default)]
    pub flavour: PytorchFlavour,
}

/// The variable set a PyTorch job's replicas get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PytorchFlavour {
    /// Kubeflow Training Operator v1's PyTorchJob: `MASTER_ADDR`, `MASTER_PORT`, `WORLD_SIZE`,
    /// `RANK` for `init_process_group` scripts and `PET_*` for torchrun.
    #[default]
    TrainingOperatorV1,
    /// Kubeflow Trainer v2's torch runtime: `PET_*` only (torchrun), master port 29500 on
    /// Kubernetes. No elastic form.
    TrainerV2,
}

/// PyTorchJob `nprocPerNode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum NprocPerNode {
    /// torchrun decides (one per GPU, else one); `WORLD_SIZE` counts one per replica.
    #[default]
    Auto,
    /// This many processes per replica (at least 1).
    Count(u32),
}

impl NprocPerNode {
    /// The count used in `WORLD_SIZE`: the number, or 1 for `auto` (Kubeflow's rule).
    pub fn world_size_factor(self) -> u32 {
        match self {
            NprocPerNode::Auto => 1,
            NprocPerNode::Count(n) => n,
        }
    }
}

impl fmt::Display for NprocPerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NprocPerNode::Auto => f.write_str("auto"),
            NprocPerNode::Count(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for NprocPerNode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            NprocPerNode::Auto => serializer.serialize_str("auto"),
            NprocPerNode::Count(n) => serializer.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for NprocPerNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Nproc;
        impl Visitor<'_> for Nproc {
            type Value = NprocPerNode;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`auto` or a whole number of processes of at least 1")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NprocPerNode, E> {
                match u32::try_from(v) {
                    Ok(n) if n >= 1 => Ok(NprocPerNode::Count(n)),
                    _ => Err(E::custom(format!(
                        "{v} is not a valid nproc_per_node: use `auto` or a count from 1 to {}",
                        u32::MAX
                    ))),
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NprocPerNode, E> {
                match u64::try_from(v) {
                    Ok(v) => self.visit_u64(v),
                    Err(_) => Err(E::custom(format!(
                        "{v} is not a valid nproc_per_node: use `auto` or a count of at least 1"
                    ))),
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<NprocPerNode, E> {
                if v == "auto" {
                    return Ok(NprocPerNode::Auto);
                }
                match v.parse::<u64>() {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::custom(format!(
                        "{v:?} is not a valid nproc_per_node: use `auto` or a count of at least 1"
                    ))),
                }
            }
        }
        deserializer.deserialize_any(Nproc)
    }
}

/// PyTorchJob `elasticPolicy`: torchrun rendezvous between `min` and `max` replicas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticOptions {
    /// Fewest replicas (`minReplicas`); default `max`, or the worker replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<u32>,
    /// Most replicas (`maxReplicas`); default `min`, or the worker replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<u32>,
    /// Restarts of the worker group torchrun allows (`maxRestarts`); default torchrun's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_restarts: Option<u32>,
    /// Rendezvous backend (`rdzvBackend`); default `c10d`.
    #[serde(default)]
    pub rdzv_backend: RdzvBackend,
}

impl ElasticOptions {
    /// `(min, max)` after Kubeflow's defaulting: a missing bound takes the other, both missing
    /// take the worker replicas.
    pub fn bounds(&self, worker_replicas: u32) -> (u32, u32) {
        match (self.min, self.max) {
            (Some(min), Some(max)) => (min, max),
            (Some(min), None) => (min, min),
            (None, Some(max)) => (max, max),
            (None, None) => (worker_replicas, worker_replicas),
        }
    }
}

/// torchrun's rendezvous backends, named as torchrun names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RdzvBackend {
    #[default]
    #[serde(rename = "c10d")]
    C10d,
    #[serde(rename = "etcd")]
    Etcd,
    #[serde(rename = "etcd-v2")]
    EtcdV2,
}

impl RdzvBackend {
    pub fn as_str(self) -> &'static str {
        match self {
            RdzvBackend::C10d => "c10d",
            RdzvBackend::Etcd => "etcd",
            RdzvBackend::EtcdV2 => "etcd-v2",
        }
    }
}

/// `mpi:` options (MPIJob v2beta1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MpiOptions {
    /// Slots (processes) per worker in the hostfile (`slotsPerWorker`); default 1.
    #[serde(default = "one")]
    pub slots_per_worker: u32,
    /// Which MPI the image has (`mpiImplementation`); default `openmpi`.
    #[serde(default)]
    pub implementation: MpiImplementation,
}

impl Default for MpiOptions {
    fn default() -> Self {
        MpiOptions {
            slots_per_worker: 1,
            implementation: MpiImplementation::default(),
        }
    }
}

fn one() -> u32 {
    1
}

/// MPIJob's `mpiImplementation`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MpiImplementation {
    /// Open MPI: hostfile lines `host slots=N`, `OMPI_MCA_*` variables.
    #[default]
    #[serde(rename = "openmpi", alias = "OpenMPI")]
    OpenMpi,
    /// Intel MPI: hostfile lines `host:N`, `I_MPI_*` variables.
    #[serde(rename = "intel", alias = "Intel")]
    Intel,
    /// MPICH: hostfile lines `host:N`, `HYDRA_*` variables.
    #[serde(rename = "mpich", alias = "MPICH")]
    Mpich,
}
