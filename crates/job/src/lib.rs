//! Jobs as users write them: the YAML/JSON [`JobSpec`] (tasks with roles and replicas,
//! resources, restart policy, node selectors, gang size, storage mounts, the framework
//! [`JobKind`] and its options, the [`RestartMode`]), its validation with errors that name
//! the field, the [`JobState`]s a job goes through, and the [`RestartPolicy`] decision taken when
//! a replica ends.
//!
//! Pure data and rules: no I/O. The control plane's API parses specs with [`JobSpec::parse`],
//! the scheduler turns them into gangs, the executors apply [`RestartPolicy::on_exit`] and
//! [`Backoff`].

mod kind;
mod quantity;
mod restart;
mod spec;
mod state;
mod validate;

pub use kind::{
    ElasticOptions, JobKind, MpiImplementation, MpiOptions, NprocPerNode, PytorchFlavour,
    PytorchOptions, RdzvBackend, RestartMode, SuccessPolicy, TensorflowOptions,
};

pub use quantity::{Bytes, Millicores, QuantityError};
pub use restart::{Backoff, Exit, Outcome, RestartPolicy};
pub use spec::{
    DEFAULT_BACKOFF_LIMIT, JobSpec, MAX_ENV, MAX_NODE_SELECTOR, MAX_REPLICAS, MAX_SPEC_BYTES,
    MAX_TASKS, Mount, Resources, Scope, TaskSpec,
};
pub use state::{Condition, JobState};

/// Why a spec was refused. The `Display` text starts with the field it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The text is not a spec (syntax, unknown field, wrong type); the parser's message names
    /// the field and position.
    #[error("{0}")]
    Parse(String),
    /// A rule was broken.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
