//! The launch environment of a distributed-training job, exact to Kubeflow: for every replica
//! of a `tensorflow`, `pytorch` or `mpi` job, the environment variables (`TF_CONFIG`;
//! `MASTER_ADDR`/`RANK`/`PET_*`; `OMPI_MCA_*`/`I_MPI_*`/`HYDRA_*`) and the files to write
//! (the MPI hostfile and `discover_hosts.sh`), plus the kind's [`Completion`] rules (when the
//! job has succeeded, which roles are servers, whether the launcher waits for its workers).
//!
//! One pure module: no I/O, no clock, no process or network. Where replicas are reachable is an
//! input, the [`AddressBook`]: [`AddressBook::local`] (`127.0.0.1` and a distinct port per
//! replica) or [`AddressBook::kubernetes`] (Kubeflow's service names); the same code serves
//! both. The values and their Kubeflow sources are in docs/jobs.md; the golden tests compare
//! them with the values Kubeflow's own tests expect.

mod address;
mod completion;
mod env;
mod mpi;
mod pytorch;
mod tensorflow;

use mofang_job::{JobKind, JobSpec, MpiOptions, PytorchOptions, Resources, TensorflowOptions};

pub use address::{
    Address, AddressBook, KubeNaming, Kubernetes, MPI_SSH_PORT, Network, PYTORCH_DEFAULT_PORT,
    TENSORFLOW_DEFAULT_PORT, TRAINER_TORCH_PORT,
};
pub use completion::{Completion, StartPolicy, SuccessRule};
pub use env::Env;
pub use mpi::{DISCOVER_HOSTS_FILE, HOSTFILE, discover_hosts};

/// Why no launch plan could be made. The input is the caller's (a spec that passed
/// `JobSpec::parse` and its address book never fail), so these are bugs or bad hand-made input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The roles, options or address-book arguments break a rule; the text says which.
    #[error("{0}")]
    Invalid(String),
    /// The address book has no entry for a replica the job has.
    #[error("the address book has no address for {role} {index}")]
    NoAddress { role: String, index: u32 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One role of the job and its replica count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    /// The task's role (`chief`, `worker`, ...).
    pub name: String,
    /// At least 1.
    pub replicas: u32,
    /// What one replica asks for (Trainer v2 derives `nproc_per_node: auto` from it).
    pub resources: Resources,
}

impl Role {
    /// A role with default resources (1 core, no GPU).
    pub fn new(name: &str, replicas: u32) -> Role {
        Role {
            name: name.to_string(),
            replicas,
            resources: Resources::default(),
        }
    }
}

/// The framework and its options, defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framework {
    /// No kind: no variables; done when every replica succeeded.
    Plain,
    Tensorflow(TensorflowOptions),
    Pytorch(PytorchOptions),
    Mpi(MpiOptions),
}

/// What a launch plan is made from: the job's name, framework and roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// The job's name (a DNS label): part of every Kubernetes host name.
    pub job: String,
    pub framework: Framework,
    /// In the spec's order; role names are unique.
    pub roles: Vec<Role>,
}

impl LaunchSpec {
    /// The launch spec of a parsed job spec (its kind's options, defaulted when absent).
    pub fn from_job(spec: &JobSpec) -> LaunchSpec {
        let framework = match spec.kind {
            None => Framework::Plain,
            Some(JobKind::Tensorflow) => {
                Framework::Tensorflow(spec.tensorflow.clone().unwrap_or_default())
            }
            Some(JobKind::Pytorch) => Framework::Pytorch(spec.pytorch.clone().unwrap_or_default()),
            Some(JobKind::Mpi) => Framework::Mpi(spec.mpi.clone().unwrap_or_default()),
        };
        LaunchSpec {
            job: spec.name.clone(),
            framework,
            roles: spec
                .tasks
                .iter()
                .map(|t| Role {
                    name: t.role.clone(),
                    replicas: t.replicas,
                    resources: t.resources,
                })
                .collect(),
        }
    }

    /// The role named `name`, if the job has it.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.iter().find(|r| r.name == name)
    }

    /// Replicas over all roles.
    pub fn total_replicas(&self) -> u32 {
        self.roles
            .iter()
            .fold(0u32, |sum, r| sum.saturating_add(r.replicas))
    }
}

/// What the caller decides for the files and the MPI remote shell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchContext {
    /// Directory the replica's files go to (MPI's hostfile); Kubernetes: `/etc/mpi` as MPI
    /// Operator mounts it. The variables name `<files_dir>/hostfile`.
    pub files_dir: String,
    /// Program MPI starts its remote daemons with instead of `ssh`
    /// (`OMPI_MCA_plm_rsh_agent`, Intel's `I_MPI_HYDRA_BOOTSTRAP_EXEC`, MPICH's
    /// `HYDRA_LAUNCHER_EXEC`); absent: MPI Operator v2's ssh. It is called as
    /// `AGENT [-o OPTION]... HOST COMMAND...`.
    pub rsh_agent: Option<String>,
}

/// One replica's launch: its variables and the files to write before it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLaunch {
    pub role: String,
    pub index: u32,
    pub env: Env,
    pub files: Vec<FileToWrite>,
}

/// A file a replica needs, written by the caller before the replica starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileToWrite {
    /// `<files_dir>/<name>`.
    pub path: String,
    pub contents: String,
    /// Unix permission bits (MPI Operator's: hostfile 0444, discover_hosts.sh 0555).
    pub mode: u32,
}

/// Every replica's launch and the job's completion rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchPlan {
    /// Role by role in the spec's order, indices ascending.
    pub replicas: Vec<ReplicaLaunch>,
    pub completion: Completion,
}

impl LaunchPlan {
    /// The launch of one replica.
    pub fn replica(&self, role: &str, index: u32) -> Option<&ReplicaLaunch> {
        self.replicas
            .iter()
            .find(|r| r.role == role && r.index == index)
    }
}

/// The launch plan of a job on an address book. Pure: equal inputs give equal plans.
pub fn plan(spec: &LaunchSpec, book: &AddressBook, context: &LaunchContext) -> Result<LaunchPlan> {
    check_roles(spec)?;
    let mut replicas = Vec::new();
    for role in &spec.roles {
        for index in 0..role.replicas {
            book.get(&role.name, index)?;
            let (env, files) = match &spec.framework {
                Framework::Plain => (Env::new(), Vec::new()),
                Framework::Tensorflow(_) => {
                    (tensorflow::env(spec, book, &role.name, index)?, Vec::new())
                }
                Framework::Pytorch(options) => {
                    (pytorch::env(spec, options, book, role, index)?, Vec::new())
                }
                Framework::Mpi(options) => mpi::launch(spec, options, book, context, &role.name)?,
            };
            replicas.push(ReplicaLaunch {
                role: role.name.clone(),
                index,
                env,
                files,
            });
        }
    }
    Ok(LaunchPlan {
        replicas,
        completion: completion::of(spec),
    })
}

/// The rules the generators rely on (a parsed `JobSpec` already keeps them).
fn check_roles(spec: &LaunchSpec) -> Result<()> {
    for (i, role) in spec.roles.iter().enumerate() {
        if role.replicas == 0 {
            return Err(Error::Invalid(format!(
                "role {:?} has 0 replicas; every role needs at least 1",
                role.name
            )));
        }
        if spec.roles[..i].iter().any(|r| r.name == role.name) {
            return Err(Error::Invalid(format!(
                "role {:?} appears twice",
                role.name
            )));
        }
    }
    let kind = match &spec.framework {
        Framework::Plain => return Ok(()),
        Framework::Tensorflow(_) => JobKind::Tensorflow,
        Framework::Pytorch(_) => JobKind::Pytorch,
        Framework::Mpi(_) => JobKind::Mpi,
    };
    let allowed = kind.allowed_roles();
    if let Some(role) = spec
        .roles
        .iter()
        .find(|r| !allowed.contains(&r.name.as_str()))
    {
        return Err(Error::Invalid(format!(
            "{:?} is not a role of kind {kind}; use {}",
            role.name,
            allowed.join(", ")
        )));
    }
    let single = |name: &str| -> Result<()> {
        match spec.role(name) {
            Some(r) if r.replicas != 1 => Err(Error::Invalid(format!(
                "a {kind} job's {name} has exactly 1 replica, not {}",
                r.replicas
            ))),
            _ => Ok(()),
        }
    };
    match kind {
        JobKind::Tensorflow => {
            if spec.role("chief").is_some() && spec.role("master").is_some() {
                return Err(Error::Invalid(
                    "a tensorflow job has at most one chief or master role; it has both".into(),
                ));
            }
            single("chief")?;
            single("master")?;
            if ["chief", "master", "worker"]
                .iter()
                .all(|r| spec.role(r).is_none())
            {
                return Err(Error::Invalid(
                    "a tensorflow job needs a chief, master or worker role".into(),
                ));
            }
        }
        JobKind::Pytorch => {
            single("master")?;
            if let Framework::Pytorch(options) = &spec.framework
                && options.elastic.is_some()
                && spec.role("worker").is_none()
            {
                return Err(Error::Invalid(
                    "an elastic pytorch job needs a worker role (the rendezvous runs on worker 0)"
                        .into(),
                ));
            }
        }
        JobKind::Mpi => {
            if spec.role("launcher").is_none() || spec.role("worker").is_none() {
                return Err(Error::Invalid(
                    "an mpi job needs a launcher and a worker role".into(),
                ));
            }
            single("launcher")?;
        }
    }
    Ok(())
}
