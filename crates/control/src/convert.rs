//! Translations between the stored records and the scheduler's model.

use mofang_job::JobSpec;
use mofang_scheduler::{PendingJob, Queue, Resources, TaskSpec};
use mofang_store::{JobRecord, QueueRecord, QueueResources};

/// What one replica of a task asks for, in the scheduler's units.
pub(crate) fn request(task: &mofang_job::TaskSpec) -> Resources {
    Resources::new(
        task.resources.cpu.0,
        task.resources.memory.0,
        u64::from(task.resources.gpu),
    )
}

/// A stored job as the scheduler sees it while it waits.
pub(crate) fn pending(job: &JobRecord) -> PendingJob {
    pending_spec(
        &job.id,
        &job.queue,
        job.priority,
        job.seq,
        job.queued_ms.unwrap_or(job.created_ms),
        &job.spec,
    )
}

pub(crate) fn pending_spec(
    id: &str,
    queue: &str,
    priority: i32,
    seq: i64,
    queued_ms: i64,
    spec: &JobSpec,
) -> PendingJob {
    PendingJob {
        id: id.to_string(),
        queue: queue.to_string(),
        priority,
        submit_seq: u64::try_from(seq).unwrap_or(0),
        queued_at: secs(queued_ms),
        tasks: spec
            .tasks
            .iter()
            .map(|t| {
                TaskSpec::new(t.role.clone(), t.replicas, request(t))
                    .with_node_selector(t.node_selector.clone())
            })
            .collect(),
        min_available: spec.min_available,
    }
}

pub(crate) fn secs(ms: i64) -> u64 {
    u64::try_from(ms / 1000).unwrap_or(0)
}

/// A stored queue as the scheduler sees it: absent limits are unlimited, absent guarantees zero.
pub(crate) fn queue(q: &QueueRecord) -> Queue {
    Queue {
        name: q.name.clone(),
        weight: q.weight.max(1),
        capability: limits(&q.capability, u64::MAX),
        guarantee: limits(&q.guarantee, 0),
    }
}

fn limits(r: &QueueResources, absent: u64) -> Resources {
    Resources::new(
        r.cpu_millis.unwrap_or(absent),
        r.memory_bytes.unwrap_or(absent),
        r.gpu.unwrap_or(absent),
    )
}

/// Resources as the API shows them; `None` where the amount is unlimited.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Amount {
    pub cpu_millis: Option<u64>,
    pub memory_bytes: Option<u64>,
    pub gpu: Option<u64>,
}

impl From<Resources> for Amount {
    fn from(r: Resources) -> Self {
        let shown = |v: u64| (v != u64::MAX).then_some(v);
        Amount {
            cpu_millis: shown(r.cpu_millis),
            memory_bytes: shown(r.memory_bytes),
            gpu: shown(r.gpus),
        }
    }
}
