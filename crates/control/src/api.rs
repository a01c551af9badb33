//! The REST API under `/api/v1` (described by `/api/v1/openapi.json`) and the open health
//! endpoints. Every error is a status with `{"error": "..."}`.

use std::collections::HashSet;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mofang_job::{Bytes as ByteQuantity, JobSpec, JobState, Millicores};
use mofang_store::{
    JobFilter, JobRecord, NewJob, QueueRecord, QueueResources, ReplicaRecord, ReplicaState,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::convert::{self, Amount};
use crate::{ControlPlane, DEFAULT_QUEUE, Error, Result, now_ms};

/// The OpenAPI 3 document of this API.
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

/// Most jobs one list call returns.
const MAX_LIST: u32 = 1000;
/// Largest queue definition accepted, in bytes.
const MAX_QUEUE_BYTES: usize = 16 * 1024;

pub(crate) fn router(plane: ControlPlane) -> Router {
    Router::new()
        .route("/healthz", get(live))
        .route("/readyz", get(ready))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/whoami", get(whoami))
        .route("/api/v1/jobs", post(submit).get(list_jobs))
        .route("/api/v1/jobs/{job}", get(get_job))
        .route("/api/v1/jobs/{job}/cancel", post(cancel))
        .route("/api/v1/jobs/{job}/logs", get(logs))
        .route("/api/v1/queues", post(create_queue).get(list_queues))
        .route("/api/v1/queues/{queue}", get(get_queue))
        .route("/api/v1/cluster", get(cluster))
        .fallback(not_found)
        .with_state(plane)
}

async fn not_found(uri: axum::http::Uri) -> Error {
    Error::NotFound(format!("no such endpoint: {}", uri.path()))
}

async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(plane): State<ControlPlane>) -> Response {
    match plane.store.list_queues().await {
        Ok(_) => Json(json!({"status": "ok", "store": plane.store.backend()})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": format!("metadata store unavailable: {e}")})),
        )
            .into_response(),
    }
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

async fn whoami(caller: Caller) -> Json<Value> {
    Json(json!({"user": caller.0.user, "group": caller.0.group, "admin": caller.0.admin}))
}

async fn read_body(body: Body, limit: usize, what: &str) -> Result<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        Error::TooLarge(format!(
            "the {what} is larger than {limit} bytes (or the body could not be read)"
        ))
    })
}

async fn submit(
    State(plane): State<ControlPlane>,
    caller: Caller,
    body: Body,
) -> Result<(StatusCode, Json<Value>)> {
    let bytes = read_body(body, plane.config.max_spec_bytes, "job spec").await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| Error::BadRequest("the job spec is not UTF-8 text".into()))?;
    let spec = JobSpec::parse(text).map_err(|e| Error::BadRequest(e.to_string()))?;
    unsupported_yet(&spec)?;
    let me = &caller.0;
    let user = match &spec.user {
        Some(u) if u != &me.user && !me.admin => {
            return Err(Error::Forbidden(format!(
                "user: the spec names user {u} but the token is {}'s",
                me.user
            )));
        }
        Some(u) => u.clone(),
        None => me.user.clone(),
    };
    let group = match &spec.group {
        Some(g) if g != &me.group && !me.admin => {
            return Err(Error::Forbidden(format!(
                "group: the spec names group {g} but user {} is in group {}",
                me.user, me.group
            )));
        }
        Some(g) => g.clone(),
        None => me.group.clone(),
    };
    let queues = plane.store.list_queues().await?;
    let queue = match &spec.queue {
        Some(q) => {
            if !queues.iter().any(|r| &r.name == q) {
                let names: Vec<&str> = queues.iter().map(|r| r.name.as_str()).collect();
                return Err(Error::BadRequest(format!(
                    "queue: {q} does not exist (queues: {})",
                    names.join(", ")
                )));
            }
            q.clone()
        }
        None if queues.iter().any(|r| r.name == group) => group.clone(),
        None => DEFAULT_QUEUE.to_string(),
    };
    let now = now_ms();
    let id = new_job_id();
    let pending = convert::pending_spec(&id, &queue, spec.priority, 0, now, &spec);
    let scheduler_queues: Vec<_> = queues.iter().map(convert::queue).collect();
    let node = mofang_scheduler::Node::new(plane.config.node_name.clone(), plane.config.capacity);
    mofang_scheduler::validate_job(&pending, &scheduler_queues, &[node])
        .map_err(|rejection| Error::Unprocessable(format!("rejected: {rejection}")))?;
    let record = plane
        .store
        .insert_job(&NewJob {
            id,
            name: spec.name.clone(),
            user,
            group,
            queue,
            priority: spec.priority,
            spec,
            now_ms: now,
        })
        .await?;
    plane.wake.notify_one();
    Ok((StatusCode::CREATED, Json(job_json(&record))))
}

/// Spec fields the job format knows but this control loop does not carry out yet: refused
/// rather than accepted and silently ignored.
fn unsupported_yet(spec: &JobSpec) -> Result<()> {
    if let Some(kind) = spec.kind {
        return Err(Error::Unprocessable(format!(
            "kind: `{}` jobs are not run by this control plane yet (their launch environment is computed by mofang-launch but not yet injected); submit a plain job and set the variables in env",
            kind.as_str()
        )));
    }
    if spec.restart_mode == mofang_job::RestartMode::Gang {
        return Err(Error::Unprocessable(
            "restart_mode: `gang` is not carried out by this control plane yet; use `replica`"
                .into(),
        ));
    }
    Ok(())
}

fn new_job_id() -> String {
    let uuid = uuid::Uuid::new_v4().simple().to_string();
    uuid[..12].to_string()
}

fn job_json(job: &JobRecord) -> Value {
    let mut v = serde_json::to_value(job).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert("replicas".into(), json!(job.spec.total_replicas()));
        map.insert("gang".into(), json!(job.spec.gang_size()));
    }
    v
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    user: Option<String>,
    group: Option<String>,
    queue: Option<String>,
    limit: Option<u32>,
}

async fn list_jobs(
    State(plane): State<ControlPlane>,
    caller: Caller,
    query: std::result::Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>> {
    let Query(q) = query.map_err(|e| Error::BadRequest(e.body_text()))?;
    let mut states = Vec::new();
    if let Some(list) = &q.state {
        for s in list.split(',').filter(|s| !s.is_empty()) {
            states.push(JobState::parse(s).ok_or_else(|| {
                Error::BadRequest(format!(
                    "state: unknown state {s} (one of {})",
                    JobState::ALL.map(|s| s.as_str()).join(", ")
                ))
            })?);
        }
    }
    let limit = q.limit.unwrap_or(200);
    if limit == 0 || limit > MAX_LIST {
        return Err(Error::BadRequest(format!(
            "limit: must be between 1 and {MAX_LIST}"
        )));
    }
    let me = &caller.0;
    let filter = JobFilter {
        states,
        user: q.user,
        group: q.group,
        queue: q.queue,
        visible_to: (!me.admin).then(|| (me.user.clone(), me.group.clone())),
        limit: Some(limit),
    };
    let jobs = plane.store.list_jobs(&filter).await?;
    Ok(Json(
        json!({"jobs": jobs.iter().map(job_json).collect::<Vec<_>>()}),
    ))
}

/// A job by id, or by name (the caller's newest job of that name).
async fn find_job(plane: &ControlPlane, caller: &Caller, key: &str) -> Result<JobRecord> {
    if let Some(job) = plane.store.get_job(key).await?
        && caller.may_see(&job)
    {
        return Ok(job);
    }
    let me = &caller.0;
    let mine = plane
        .store
        .list_jobs(&JobFilter {
            visible_to: (!me.admin).then(|| (me.user.clone(), me.group.clone())),
            limit: Some(MAX_LIST),
            ..JobFilter::default()
        })
        .await?;
    mine.iter()
        .find(|j| j.name == key && j.user == me.user)
        .or_else(|| mine.iter().find(|j| j.name == key))
        .cloned()
        .ok_or_else(|| Error::NotFound(format!("job {key} not found")))
}

async fn get_job(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<Value>> {
    let job = find_job(&plane, &caller, &key).await?;
    let conditions = plane.store.conditions(&job.id).await?;
    let events = plane.store.events(&job.id).await?;
    let replicas = plane.store.replicas(&job.id).await?;
    let mut v = job_json(&job);
    if let Value::Object(map) = &mut v {
        map.insert("conditions".into(), json!(conditions));
        map.insert("events".into(), json!(events));
        map.insert("replica_attempts".into(), json!(replicas));
    }
    Ok(Json(v))
}

async fn cancel(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(key): Path<String>,
) -> Result<Json<Value>> {
    let job = find_job(&plane, &caller, &key).await?;
    if job.state.is_final() {
        return Err(Error::Conflict(format!(
            "job {} ({}) already ended: {}",
            job.name, job.id, job.state
        )));
    }
    let moved = plane
        .store
        .transition(
            &job.id,
            &[
                JobState::Created,
                JobState::Queued,
                JobState::Running,
                JobState::Restarting,
            ],
            JobState::Cancelled,
            "Cancelled",
            &format!("cancelled by {}", caller.0.user),
            now_ms(),
        )
        .await?;
    let Some(job) = moved else {
        return Err(Error::Conflict(format!(
            "job {} changed state meanwhile; try again",
            job.id
        )));
    };
    plane.wake.notify_one();
    Ok(Json(job_json(&job)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogQuery {
    role: Option<String>,
    index: Option<u32>,
    attempt: Option<u32>,
    #[serde(default)]
    follow: bool,
}

async fn logs(
    State(plane): State<ControlPlane>,
    caller: Caller,
    Path(key): Path<String>,
    query: std::result::Result<Query<LogQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    let Query(q) = query.map_err(|e| Error::BadRequest(e.body_text()))?;
    let job = find_job(&plane, &caller, &key).await?;
    let role = match q.role {
        Some(r) => {
            if !job.spec.tasks.iter().any(|t| t.role == r) {
                let roles: Vec<&str> = job.spec.tasks.iter().map(|t| t.role.as_str()).collect();
                return Err(Error::BadRequest(format!(
                    "role: job {} has no role {r} (roles: {})",
                    job.name,
                    roles.join(", ")
                )));
            }
            r
        }
        None => job
            .spec
            .tasks
            .first()
            .map(|t| t.role.clone())
            .unwrap_or_default(),
    };
    let index = q.index.unwrap_or(0);
    let rows = plane.store.replicas(&job.id).await?;
    let row = rows
        .iter()
        .filter(|r| r.role == role && r.index == index)
        .filter(|r| q.attempt.is_none_or(|a| r.attempt == a))
        .max_by_key(|r| r.attempt)
        .cloned();
    let Some(row) = row else {
        if q.follow && !job.state.is_final() {
            // Not started yet: wait for it.
            return Ok(follow_response(plane, job.id, role, index, q.attempt, None));
        }
        return Err(Error::NotFound(format!(
            "no logs yet for {role}-{index} of job {} ({})",
            job.name, job.state
        )));
    };
    if !q.follow {
        let data = match tokio::fs::read(&row.log_path).await {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(Error::io(format!("log {}", row.log_path), e)),
        };
        return Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], data).into_response());
    }
    Ok(follow_response(
        plane,
        job.id,
        role,
        index,
        q.attempt,
        Some(row),
    ))
}

/// Streams a replica's log as it grows until the replica has ended and everything is sent.
/// Follows one attempt: the one asked for, else the latest when the stream starts.
fn follow_response(
    plane: ControlPlane,
    job: String,
    role: String,
    index: u32,
    attempt: Option<u32>,
    row: Option<ReplicaRecord>,
) -> Response {
    struct Follow {
        plane: ControlPlane,
        job: String,
        role: String,
        index: u32,
        attempt: Option<u32>,
        row: Option<ReplicaRecord>,
        file: Option<tokio::fs::File>,
        done: bool,
    }
    let state = Follow {
        plane,
        job,
        role,
        index,
        attempt,
        row,
        file: None,
        done: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        use tokio::io::AsyncReadExt;
        if s.done {
            return None;
        }
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if s.row.is_none() {
                match find_row(&s.plane, &s.job, &s.role, s.index, s.attempt).await {
                    Ok(Some(row)) => s.row = Some(row),
                    Ok(None) => {
                        if job_ended(&s.plane, &s.job).await {
                            return None;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                    Err(e) => return Some((Err(std::io::Error::other(e.to_string())), s)),
                }
            }
            let Some(row) = s.row.clone() else { continue };
            if s.file.is_none() {
                match tokio::fs::File::open(&row.log_path).await {
                    Ok(f) => s.file = Some(f),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Some((Err(e), s)),
                }
            }
            if let Some(file) = &mut s.file {
                match file.read(&mut buf).await {
                    Ok(0) => {}
                    Ok(n) => {
                        buf.truncate(n);
                        return Some((Ok(Bytes::from(buf)), s));
                    }
                    Err(e) => return Some((Err(e), s)),
                }
            }
            // At the end of what is written: stop once the replica has ended (after one last
            // read, so nothing written just before the end is lost).
            let ended = match find_row(&s.plane, &s.job, &s.role, s.index, Some(row.attempt)).await
            {
                Ok(Some(r)) => !matches!(r.state, ReplicaState::Running | ReplicaState::Pending),
                Ok(None) => true,
                Err(_) => true,
            } || job_ended(&s.plane, &s.job).await;
            if ended {
                if let Some(file) = &mut s.file
                    && let Ok(n) = file.read(&mut buf).await
                    && n > 0
                {
                    buf.truncate(n);
                    s.done = true;
                    return Some((Ok(Bytes::from(buf)), s));
                }
                return None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn find_row(
    plane: &ControlPlane,
    job: &str,
    role: &str,
    index: u32,
    attempt: Option<u32>,
) -> Result<Option<ReplicaRecord>> {
    Ok(plane
        .store
        .replicas(job)
        .await?
        .into_iter()
        .filter(|r| r.role == role && r.index == index)
        .filter(|r| attempt.is_none_or(|a| r.attempt == a))
        .max_by_key(|r| r.attempt))
}

async fn job_ended(plane: &ControlPlane, job: &str) -> bool {
    match plane.store.get_job(job).await {
        Ok(Some(j)) => j.state.is_final(),
        _ => true,
    }
}

/// A queue definition as the API takes it: quantities written as in job specs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueueSpec {
    name: String,
    #[serde(default)]
    group: Option<String>,
    #[serde(default = "one")]
    weight: u32,
    #[serde(default)]
    capability: Limits,
    #[serde(default)]
    guarantee: Limits,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Limits {
    cpu: Option<Quantity>,
    memory: Option<Quantity>,
    gpu: Option<u64>,
}

/// `2`, `0.5`, `"500m"`, `"4Gi"`: numbers or strings.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Quantity {
    Number(f64),
    Text(String),
}

impl Quantity {
    fn text(&self) -> String {
        match self {
            Quantity::Number(n) => n.to_string(),
            Quantity::Text(t) => t.clone(),
        }
    }
}

fn limits(field: &str, l: &Limits) -> Result<QueueResources> {
    let cpu = l
        .cpu
        .as_ref()
        .map(|q| {
            Millicores::parse(&q.text())
                .map(|m| m.0)
                .map_err(|e| Error::BadRequest(format!("{field}.cpu: {e}")))
        })
        .transpose()?;
    let memory = l
        .memory
        .as_ref()
        .map(|q| {
            ByteQuantity::parse(&q.text())
                .map(|b| b.0)
                .map_err(|e| Error::BadRequest(format!("{field}.memory: {e}")))
        })
        .transpose()?;
    Ok(QueueResources {
        cpu_millis: cpu,
        memory_bytes: memory,
        gpu: l.gpu,
    })
}

async fn create_queue(
    State(plane): State<ControlPlane>,
    caller: Caller,
    body: Body,
) -> Result<(StatusCode, Json<Value>)> {
    caller.require_admin("creating a queue")?;
    let bytes = read_body(body, MAX_QUEUE_BYTES, "queue definition").await?;
    let spec: QueueSpec =
        serde_json::from_slice(&bytes).map_err(|e| Error::BadRequest(format!("queue: {e}")))?;
    let record = QueueRecord {
        name: spec.name,
        group: spec.group,
        weight: spec.weight,
        capability: limits("capability", &spec.capability)?,
        guarantee: limits("guarantee", &spec.guarantee)?,
        created_ms: now_ms(),
    };
    if record.weight == 0 {
        return Err(Error::BadRequest("weight: must be at least 1".into()));
    }
    mofang_scheduler::validate_queue(&convert::queue(&record))
        .map_err(|e| Error::BadRequest(e.to_string()))?;
    plane.store.create_queue(&record).await?;
    plane.wake.notify_one();
    Ok((StatusCode::CREATED, Json(queue_json(&plane, &record))))
}

fn queue_json(plane: &ControlPlane, q: &QueueRecord) -> Value {
    let view = plane.view.read();
    let status = view.queues.iter().find(|s| s.name == q.name);
    let queue = convert::queue(q);
    json!({
        "name": q.name,
        "group": q.group,
        "weight": q.weight,
        "capability": Amount::from(queue.capability),
        "guarantee": Amount::from(queue.guarantee),
        "allocated": Amount::from(status.map(|s| s.allocated).unwrap_or_default()),
        "deserved": status.map(|s| Amount::from(s.deserved)),
        "pending_jobs": status.map_or(0, |s| s.pending_jobs),
        "created_ms": q.created_ms,
    })
}

async fn list_queues(State(plane): State<ControlPlane>, _caller: Caller) -> Result<Json<Value>> {
    let queues = plane.store.list_queues().await?;
    Ok(Json(json!({
        "queues": queues.iter().map(|q| queue_json(&plane, q)).collect::<Vec<_>>()
    })))
}

async fn get_queue(
    State(plane): State<ControlPlane>,
    _caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>> {
    let queue = plane
        .store
        .get_queue(&name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("queue {name} not found")))?;
    Ok(Json(queue_json(&plane, &queue)))
}

async fn cluster(State(plane): State<ControlPlane>, _caller: Caller) -> Result<Json<Value>> {
    let allocated = plane.view.read().allocated;
    let live = plane.store.live_jobs().await?;
    let mut counts = serde_json::Map::new();
    for state in JobState::ALL.iter().filter(|s| !s.is_final()) {
        counts.insert(
            state.as_str().into(),
            json!(live.iter().filter(|j| j.state == *state).count()),
        );
    }
    let queues: HashSet<String> = live.iter().map(|j| j.queue.clone()).collect();
    Ok(Json(json!({
        "nodes": [{
            "name": plane.config.node_name,
            "allocatable": Amount::from(plane.config.capacity),
            "allocated": Amount::from(allocated),
        }],
        "store": plane.store.backend(),
        "live_jobs": counts,
        "busy_queues": queues.len(),
    })))
}
