//! The control loop: admits created jobs, runs the scheduler over the queued ones, starts the
//! admitted gangs on the local executor, watches their replicas (restart policies, back-off,
//! deadlines, completion), stops what was cancelled, and after a restart of the server
//! reconciles every job it believed running.
//!
//! The store is the source of truth; the loop's memory ([`Run`]) only caches the handles of
//! processes it started or re-adopted, so losing it (a crash) loses nothing: [`Controller::reconcile`]
//! rebuilds it from the replica rows.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mofang_executor::{Handle, Launch, LocalExecutor, Poll};
use mofang_job::{Exit, JobSpec, JobState, Outcome, RestartPolicy, Scope};
use mofang_scheduler::{Allocation, Node, Reservation, Resources, Scheduler, Snapshot};
use mofang_store::{EventKind, JobFilter, JobRecord, ReplicaRecord, ReplicaState, Store};
use tokio::sync::{Notify, mpsc};

use crate::convert;
use crate::{Config, Error, Result, View, now_ms};

/// Roles whose success is the job's success (Kubeflow: the chief/master decides; MPI's launcher).
const DECIDING_ROLES: [&str; 3] = ["master", "chief", "launcher"];

/// One replica as the loop tracks it.
#[derive(Debug)]
struct Replica {
    role: String,
    index: u32,
    rank: u32,
    attempt: u32,
    port: u16,
    request: Resources,
    policy: RestartPolicy,
    phase: Phase,
}

#[derive(Debug)]
enum Phase {
    /// Not started yet (beyond the gang and not yet fitting, or never started before a crash).
    Pending,
    Running(Handle),
    /// Ended, to be started again at this time (ms since the epoch).
    Waiting(i64),
    /// Its row says it started but nothing can be found of it (crash before the pid was written).
    Lost,
    Done {
        succeeded: bool,
    },
}

impl Replica {
    fn holds_resources(&self) -> bool {
        matches!(
            self.phase,
            Phase::Running(_) | Phase::Waiting(_) | Phase::Lost
        )
    }
    fn name(&self) -> String {
        format!("{}-{}", self.role, self.index)
    }
}

/// A job the loop is running.
#[derive(Debug)]
struct Run {
    replicas: Vec<Replica>,
    /// Set once the job reached a final state; its processes are being stopped.
    stopping: bool,
}

/// Messages from background tasks back to the loop.
enum Note {
    Stopped { job: String },
}

pub(crate) struct Controller {
    store: Store,
    executor: Arc<LocalExecutor>,
    config: Arc<Config>,
    scheduler: Scheduler,
    node: Node,
    runs: HashMap<String, Run>,
    reservations: Vec<Reservation>,
    view: Arc<parking_lot::RwLock<View>>,
    notes_tx: mpsc::UnboundedSender<Note>,
    notes_rx: mpsc::UnboundedReceiver<Note>,
}

impl Controller {
    pub(crate) fn new(
        store: Store,
        executor: Arc<LocalExecutor>,
        config: Arc<Config>,
        view: Arc<parking_lot::RwLock<View>>,
    ) -> Controller {
        let node = Node::new(config.node_name.clone(), config.capacity);
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        Controller {
            store,
            executor,
            scheduler: Scheduler::new(config.scheduler.clone()),
            config,
            node,
            runs: HashMap::new(),
            reservations: Vec::new(),
            view,
            notes_tx,
            notes_rx,
        }
    }

    /// Runs cycles until `stop` resolves: every `config.tick`, or sooner when woken.
    pub(crate) async fn run(
        mut self,
        wake: Arc<Notify>,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if let Err(e) = self.cycle().await {
                tracing::error!(error = %e, "control loop cycle failed; retrying");
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(self.config.tick) => {}
                _ = stop.wait_for(|s| *s) => break,
            }
        }
        // Replicas keep running: a restarted server re-adopts them (see reconcile).
        tracing::info!(
            "control loop stopped; {} job(s) keep running",
            self.runs.len()
        );
    }

    /// Rebuilds the loop's memory from the store after a (re)start: re-adopts the replicas of
    /// every job it believed running, marks what cannot be found as lost, and stops the
    /// processes of jobs that ended (cancelled) while the server was down.
    pub(crate) async fn reconcile(&mut self) -> Result<()> {
        let now = now_ms();
        for job in self.store.live_jobs().await? {
            if !matches!(job.state, JobState::Running | JobState::Restarting) {
                continue;
            }
            let rows = self.store.replicas(&job.id).await?;
            let mut latest: HashMap<(String, u32), ReplicaRecord> = HashMap::new();
            for row in rows {
                let key = (row.role.clone(), row.index);
                if latest.get(&key).is_none_or(|r| r.attempt < row.attempt) {
                    latest.insert(key, row);
                }
            }
            let mut replicas = plan(&job.spec);
            let (mut adopted, mut lost) = (0, 0);
            for r in &mut replicas {
                let Some(row) = latest.remove(&(r.role.clone(), r.index)) else {
                    continue; // never started: Pending
                };
                r.attempt = row.attempt;
                r.phase = match row.state {
                    ReplicaState::Running => match (row.pid, row.start_token.clone()) {
                        (Some(pid), Some(start_token)) => {
                            adopted += 1;
                            Phase::Running(Handle {
                                pid,
                                start_token,
                                status_path: PathBuf::from(&row.status_path),
                                log_path: PathBuf::from(&row.log_path),
                            })
                        }
                        _ => {
                            lost += 1;
                            Phase::Lost
                        }
                    },
                    ReplicaState::Pending => {
                        lost += 1;
                        Phase::Lost
                    }
                    ReplicaState::Succeeded => Phase::Done { succeeded: true },
                    ReplicaState::Failed | ReplicaState::Lost | ReplicaState::Killed => {
                        let exit = exit_of(&row);
                        if job.state == JobState::Restarting
                            && r.policy.on_exit(exit) == Outcome::Restart
                        {
                            // It was waiting for its restart when the server stopped.
                            r.attempt = row.attempt + 1;
                            Phase::Waiting(now)
                        } else {
                            Phase::Done { succeeded: false }
                        }
                    }
                };
            }
            self.store
                .add_event(
                    &job.id,
                    EventKind::Normal,
                    "Reconciled",
                    &format!(
                        "server restarted: re-adopted {adopted} running replica(s), {lost} not found"
                    ),
                    now,
                )
                .await?;
            self.runs.insert(
                job.id.clone(),
                Run {
                    replicas,
                    stopping: false,
                },
            );
        }
        // Jobs that ended while their processes ran on (cancelled just before a crash).
        let ended = self
            .store
            .list_jobs(&JobFilter {
                states: vec![JobState::Cancelled, JobState::Failed, JobState::Succeeded],
                limit: Some(200),
                ..JobFilter::default()
            })
            .await?;
        for job in ended {
            let rows = self.store.replicas(&job.id).await?;
            let running: Vec<ReplicaRecord> = rows
                .into_iter()
                .filter(|r| matches!(r.state, ReplicaState::Running | ReplicaState::Pending))
                .collect();
            if running.is_empty() {
                continue;
            }
            tracing::info!(job = %job.id, "stopping {} replica(s) of an ended job", running.len());
            let mut replicas = plan(&job.spec);
            for r in &mut replicas {
                if let Some(row) = running
                    .iter()
                    .find(|row| row.role == r.role && row.index == r.index)
                {
                    r.attempt = row.attempt;
                    r.phase = match (row.pid, row.start_token.clone()) {
                        (Some(pid), Some(start_token)) => Phase::Running(Handle {
                            pid,
                            start_token,
                            status_path: PathBuf::from(&row.status_path),
                            log_path: PathBuf::from(&row.log_path),
                        }),
                        _ => Phase::Lost,
                    };
                }
            }
            let mut run = Run {
                replicas,
                stopping: false,
            };
            self.stop_run(&job.id, &mut run, "the job ended while the server was down");
            self.runs.insert(job.id.clone(), run);
        }
        Ok(())
    }

    async fn cycle(&mut self) -> Result<()> {
        while let Ok(note) = self.notes_rx.try_recv() {
            match note {
                Note::Stopped { job } => {
                    self.runs.remove(&job);
                }
            }
        }
        let now = now_ms();
        let live = self.store.live_jobs().await?;
        let live_ids: HashSet<&str> = live.iter().map(|j| j.id.as_str()).collect();

        // Jobs cancelled through the API (or ended elsewhere): stop their processes.
        let gone: Vec<String> = self
            .runs
            .iter()
            .filter(|(id, run)| !run.stopping && !live_ids.contains(id.as_str()))
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            if let Some(mut run) = self.runs.remove(&id) {
                self.stop_run(&id, &mut run, "the job was cancelled");
                self.runs.insert(id, run);
            }
        }

        let queues: Vec<_> = self
            .store
            .list_queues()
            .await?
            .iter()
            .map(convert::queue)
            .collect();
        let nodes = vec![self.node.clone()];

        for job in &live {
            match job.state {
                JobState::Created => {
                    let pending = convert::pending(job);
                    match mofang_scheduler::validate_job(&pending, &queues, &nodes) {
                        Err(rejection) => {
                            self.store
                                .transition(
                                    &job.id,
                                    &[JobState::Created],
                                    JobState::Failed,
                                    "Rejected",
                                    &format!("rejected: {rejection}"),
                                    now,
                                )
                                .await?;
                        }
                        Ok(()) => {
                            self.store
                                .transition(
                                    &job.id,
                                    &[JobState::Created],
                                    JobState::Queued,
                                    "Queued",
                                    &format!("waiting in queue {}", job.queue),
                                    now,
                                )
                                .await?;
                        }
                    }
                }
                JobState::Running | JobState::Restarting => {
                    if !self.runs.contains_key(&job.id) {
                        // Running in the store but unknown here: started by a previous life of
                        // the server and missed by reconcile (should not happen); adopt now.
                        self.reconcile().await?;
                    }
                    self.advance(job, now).await?;
                }
                _ => {}
            }
        }

        self.schedule(now).await
    }

    /// One scheduling pass over the queued jobs.
    async fn schedule(&mut self, now: i64) -> Result<()> {
        let live = self.store.live_jobs().await?;
        let queue_records = self.store.list_queues().await?;
        let queues: Vec<_> = queue_records.iter().map(convert::queue).collect();
        let by_id: HashMap<&str, &JobRecord> = live.iter().map(|j| (j.id.as_str(), j)).collect();
        let mut running = Vec::new();
        for (id, run) in &self.runs {
            let queue = by_id
                .get(id.as_str())
                .map(|j| j.queue.clone())
                .unwrap_or_default();
            for r in run.replicas.iter().filter(|r| r.holds_resources()) {
                running.push(Allocation {
                    job: id.clone(),
                    queue: queue.clone(),
                    node: self.node.name.clone(),
                    resources: r.request,
                });
            }
        }
        let pending: Vec<_> = live
            .iter()
            .filter(|j| j.state == JobState::Queued)
            .map(convert::pending)
            .collect();
        // A job whose queue was removed would break the snapshot; it fails instead.
        let snapshot = Snapshot {
            now: convert::secs(now),
            nodes: vec![self.node.clone()],
            queues,
            running,
            pending,
            reservations: std::mem::take(&mut self.reservations),
        };
        let decisions = match self.scheduler.schedule(&snapshot) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "scheduler refused the snapshot");
                self.reservations = snapshot.reservations;
                return Ok(());
            }
        };
        self.reservations = decisions.reservations.clone();
        {
            let mut view = self.view.write();
            view.queues = decisions.queues.clone();
            view.allocated = snapshot
                .running
                .iter()
                .fold(Resources::ZERO, |sum, a| sum.saturating_add(a.resources));
        }
        for placement in &decisions.placements {
            let Some(job) = by_id.get(placement.job.as_str()) else {
                continue;
            };
            let placed: HashSet<(String, u32)> = placement
                .replicas
                .iter()
                .map(|r| (r.role.clone(), r.index))
                .collect();
            self.launch(job, &placed, now).await?;
        }
        for waiting in &decisions.waiting {
            if waiting.is_permanent() {
                self.store
                    .transition(
                        &waiting.job,
                        &[JobState::Queued],
                        JobState::Failed,
                        "Rejected",
                        &waiting.message,
                        now,
                    )
                    .await?;
            } else {
                self.store
                    .add_event(
                        &waiting.job,
                        EventKind::Warning,
                        "Waiting",
                        &waiting.message,
                        now,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    /// Starts an admitted job's placed replicas.
    async fn launch(
        &mut self,
        job: &JobRecord,
        placed: &HashSet<(String, u32)>,
        now: i64,
    ) -> Result<()> {
        let total = job.spec.total_replicas();
        let Some(job) = self
            .store
            .transition(
                &job.id,
                &[JobState::Queued],
                JobState::Running,
                "GangScheduled",
                &format!(
                    "{} of {total} replica(s) placed on {} (gang of {})",
                    placed.len(),
                    self.node.name,
                    job.spec.gang_size()
                ),
                now,
            )
            .await?
        else {
            return Ok(()); // cancelled meanwhile
        };
        let mut replicas = plan(&job.spec);
        let mut run_error = None;
        for i in 0..replicas.len() {
            if !placed.contains(&(replicas[i].role.clone(), replicas[i].index)) {
                continue;
            }
            if let Err(e) = self.start_replica(&job, &mut replicas, i, now).await {
                run_error = Some(e);
                break;
            }
        }
        let mut run = Run {
            replicas,
            stopping: false,
        };
        if let Some(e) = run_error {
            self.fail(&job, &mut run, "StartFailed", &e.to_string(), now)
                .await?;
        }
        self.runs.insert(job.id.clone(), run);
        Ok(())
    }

    async fn start_replica(
        &self,
        job: &JobRecord,
        replicas: &mut [Replica],
        i: usize,
        now: i64,
    ) -> Result<()> {
        let peers = peers(replicas);
        let dir = job_dir(&self.config.data_dir, &job.id);
        let r = &replicas[i];
        let task = job
            .spec
            .tasks
            .iter()
            .find(|t| t.role == r.role)
            .ok_or_else(|| Error::BadRequest(format!("task {} vanished", r.role)))?;
        let stem = format!("{}-{}.{}", r.role, r.index, r.attempt);
        let log_path = dir.join("logs").join(format!("{stem}.log"));
        let status_path = dir.join("status").join(format!("{stem}.json"));
        let working_dir = match &task.working_dir {
            Some(w) if Path::new(w).is_absolute() => PathBuf::from(w),
            Some(w) => dir.join("work").join(w),
            None => dir.join("work"),
        };
        let mut mounts = BTreeMap::new();
        for m in &job.spec.mounts {
            let root = match m.scope {
                Scope::User => self.config.data_dir.join("storage/users").join(&job.user),
                Scope::Group => self.config.data_dir.join("storage/groups").join(&job.group),
                Scope::Global => self.config.data_dir.join("storage/global"),
            };
            let path = if m.path.is_empty() {
                root
            } else {
                root.join(&m.path)
            };
            if m.scope != Scope::Global {
                std::fs::create_dir_all(&path)
                    .map_err(|e| Error::io(format!("mount {} at {}", m.name, path.display()), e))?;
            }
            mounts.insert(m.name.clone(), path);
        }
        let mut command = task.command.clone();
        command.extend(task.args.iter().cloned());
        let launch = Launch {
            job_id: job.id.clone(),
            job_name: job.name.clone(),
            user: job.user.clone(),
            group: job.group.clone(),
            role: r.role.clone(),
            index: r.index,
            rank: r.rank,
            world_size: u32::try_from(replicas.len()).unwrap_or(u32::MAX),
            attempt: r.attempt,
            command,
            env: task.env.clone(),
            working_dir,
            log_path: log_path.clone(),
            status_path: status_path.clone(),
            port: r.port,
            peers,
            mounts,
        };
        let mut row = ReplicaRecord {
            job_id: job.id.clone(),
            role: r.role.clone(),
            index: r.index,
            attempt: r.attempt,
            state: ReplicaState::Pending,
            node: self.node.name.clone(),
            pid: None,
            start_token: None,
            log_path: log_path.to_string_lossy().into_owned(),
            status_path: status_path.to_string_lossy().into_owned(),
            exit_code: None,
            signal: None,
            started_ms: None,
            finished_ms: None,
            usage: None,
            message: String::new(),
        };
        // The row first: a crash between here and the spawn leaves a Pending row, which
        // reconcile treats as lost (and the restart policy decides).
        self.store.upsert_replica(&row).await?;
        let handle = match self.executor.start(&launch).await {
            Ok(h) => h,
            Err(e) => {
                row.state = ReplicaState::Failed;
                row.message = format!("could not start: {e}");
                row.finished_ms = Some(now_ms());
                self.store.upsert_replica(&row).await?;
                return Err(e.into());
            }
        };
        row.state = ReplicaState::Running;
        row.pid = Some(handle.pid);
        row.start_token = Some(handle.start_token.clone());
        row.started_ms = Some(now);
        self.store.upsert_replica(&row).await?;
        replicas[i].phase = Phase::Running(handle);
        Ok(())
    }

    /// Watches a running job's replicas and decides what their ends mean.
    async fn advance(&mut self, job: &JobRecord, now: i64) -> Result<()> {
        let Some(mut run) = self.runs.remove(&job.id) else {
            return Ok(());
        };
        let result = self.advance_run(job, &mut run, now).await;
        self.runs.insert(job.id.clone(), run);
        result
    }

    async fn advance_run(&mut self, job: &JobRecord, run: &mut Run, now: i64) -> Result<()> {
        if run.stopping {
            return Ok(());
        }
        if let (Some(limit), Some(started)) = (job.spec.active_deadline_seconds, job.started_ms) {
            let limit_ms = i64::try_from(limit.saturating_mul(1000)).unwrap_or(i64::MAX);
            if now.saturating_sub(started) > limit_ms {
                return self
                    .fail(
                        job,
                        run,
                        "DeadlineExceeded",
                        &format!("the job ran longer than its active deadline of {limit} s"),
                        now,
                    )
                    .await;
            }
        }
        let mut failure: Option<(String, String)> = None;
        let mut restarts = job.restarts;
        for i in 0..run.replicas.len() {
            let exit = match &run.replicas[i].phase {
                Phase::Running(handle) => match self.executor.poll(handle)? {
                    Poll::Running => continue,
                    Poll::Exited(status) => {
                        let exit = match (status.signal, status.exit_code) {
                            (Some(sig), _) => Exit::Signal(sig),
                            (None, Some(code)) => Exit::Code(code),
                            (None, None) => Exit::Lost,
                        };
                        self.record_end(job, &run.replicas[i], handle, Some(&status), exit)
                            .await?;
                        exit
                    }
                    Poll::Lost => {
                        let handle = handle.clone();
                        self.record_end(job, &run.replicas[i], &handle, None, Exit::Lost)
                            .await?;
                        Exit::Lost
                    }
                },
                Phase::Lost => Exit::Lost,
                Phase::Waiting(at) if *at <= now => {
                    let mut replicas = std::mem::take(&mut run.replicas);
                    let started = self.start_replica(job, &mut replicas, i, now).await;
                    run.replicas = replicas;
                    if let Err(e) = started {
                        failure = Some(("StartFailed".into(), e.to_string()));
                        break;
                    }
                    continue;
                }
                Phase::Pending => {
                    // A replica beyond the gang: start it when the node has room.
                    if self.node_has_room(run.replicas[i].request) {
                        let mut replicas = std::mem::take(&mut run.replicas);
                        let started = self.start_replica(job, &mut replicas, i, now).await;
                        run.replicas = replicas;
                        if let Err(e) = started {
                            failure = Some(("StartFailed".into(), e.to_string()));
                            break;
                        }
                    }
                    continue;
                }
                Phase::Waiting(_) | Phase::Done { .. } => continue,
            };
            let r = &mut run.replicas[i];
            let how = describe(exit);
            match r.policy.on_exit(exit) {
                Outcome::Succeeded => r.phase = Phase::Done { succeeded: true },
                Outcome::Failed => {
                    r.phase = Phase::Done { succeeded: false };
                    failure = Some((
                        "ReplicaFailed".into(),
                        format!(
                            "{} {how}; restart policy {:?} does not retry it",
                            r.name(),
                            r.policy
                        ),
                    ));
                    break;
                }
                Outcome::Restart => {
                    if restarts >= job.spec.backoff_limit {
                        r.phase = Phase::Done { succeeded: false };
                        failure = Some((
                            "BackoffLimitExceeded".into(),
                            format!(
                                "{} {how}; the job already restarted {restarts} time(s), its backoff_limit",
                                r.name()
                            ),
                        ));
                        break;
                    }
                    let delay = self.config.restart_backoff.delay(restarts);
                    restarts = self.store.record_restart(&job.id).await?;
                    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                    r.attempt += 1;
                    r.phase = Phase::Waiting(now.saturating_add(delay_ms));
                    let message = format!(
                        "{} {how}; restart {restarts} of {} in {:.1} s",
                        r.name(),
                        job.spec.backoff_limit,
                        delay.as_secs_f64()
                    );
                    let moved = self
                        .store
                        .transition(
                            &job.id,
                            &[JobState::Running],
                            JobState::Restarting,
                            "Restarting",
                            &message,
                            now,
                        )
                        .await?;
                    if moved.is_none() {
                        self.store
                            .add_event(&job.id, EventKind::Warning, "Restarting", &message, now)
                            .await?;
                    }
                }
            }
        }
        if let Some((reason, message)) = failure {
            return self.fail(job, run, &reason, &message, now).await;
        }
        let deciding: Vec<&Replica> = run
            .replicas
            .iter()
            .filter(|r| DECIDING_ROLES.contains(&r.role.as_str()))
            .collect();
        let succeeded = |r: &&Replica| matches!(r.phase, Phase::Done { succeeded: true });
        let done = if deciding.is_empty() {
            run.replicas.iter().all(|r| succeeded(&r))
        } else {
            deciding.iter().all(succeeded)
        };
        if done {
            let message = if deciding.is_empty() {
                "every replica succeeded".to_string()
            } else {
                format!("{} succeeded", deciding[0].role)
            };
            if self
                .store
                .transition(
                    &job.id,
                    &[JobState::Running, JobState::Restarting],
                    JobState::Succeeded,
                    "JobSucceeded",
                    &message,
                    now,
                )
                .await?
                .is_some()
            {
                self.stop_run(&job.id, run, "the job succeeded");
            }
            return Ok(());
        }
        let waiting = run
            .replicas
            .iter()
            .any(|r| matches!(r.phase, Phase::Waiting(_)));
        if !waiting {
            // Re-read: this cycle may have moved it to Restarting.
            if let Some(current) = self.store.get_job(&job.id).await?
                && current.state == JobState::Restarting
            {
                self.store
                    .transition(
                        &job.id,
                        &[JobState::Restarting],
                        JobState::Running,
                        "Restarted",
                        "every replica is running again",
                        now,
                    )
                    .await?;
            }
        }
        Ok(())
    }

    fn node_has_room(&self, request: Resources) -> bool {
        let used = self
            .runs
            .values()
            .flat_map(|r| r.replicas.iter())
            .filter(|r| r.holds_resources())
            .fold(Resources::ZERO, |sum, r| sum.saturating_add(r.request));
        used.saturating_add(request).fits_in(&self.node.allocatable)
    }

    async fn record_end(
        &self,
        job: &JobRecord,
        r: &Replica,
        handle: &Handle,
        status: Option<&mofang_executor::ExitStatus>,
        exit: Exit,
    ) -> Result<()> {
        let row = ReplicaRecord {
            job_id: job.id.clone(),
            role: r.role.clone(),
            index: r.index,
            attempt: r.attempt,
            state: match exit {
                Exit::Code(0) => ReplicaState::Succeeded,
                Exit::Lost => ReplicaState::Lost,
                _ => ReplicaState::Failed,
            },
            node: self.node.name.clone(),
            pid: Some(handle.pid),
            start_token: Some(handle.start_token.clone()),
            log_path: handle.log_path.to_string_lossy().into_owned(),
            status_path: handle.status_path.to_string_lossy().into_owned(),
            exit_code: status.and_then(|s| s.exit_code),
            signal: status.and_then(|s| s.signal),
            started_ms: status.map(|s| s.started_ms),
            finished_ms: Some(status.map_or_else(now_ms, |s| s.finished_ms)),
            usage: status.and_then(|s| serde_json::to_value(s.usage).ok()),
            message: match (exit, status.and_then(|s| s.error.clone())) {
                (_, Some(error)) => error,
                (Exit::Lost, None) => {
                    "the process is gone and left no exit status (killed with its supervisor, or the machine restarted)".into()
                }
                (exit, None) => describe(exit),
            },
        };
        self.store.upsert_replica(&row).await?;
        Ok(())
    }

    async fn fail(
        &mut self,
        job: &JobRecord,
        run: &mut Run,
        reason: &str,
        message: &str,
        now: i64,
    ) -> Result<()> {
        self.store
            .transition(
                &job.id,
                &[JobState::Running, JobState::Restarting, JobState::Queued],
                JobState::Failed,
                reason,
                message,
                now,
            )
            .await?;
        self.stop_run(&job.id, run, message);
        Ok(())
    }

    /// Stops every process of a run in the background (SIGTERM, grace, SIGKILL of the group);
    /// the run's resources stay accounted until they are gone.
    fn stop_run(&self, job_id: &str, run: &mut Run, why: &str) {
        run.stopping = true;
        let mut handles = Vec::new();
        for r in &mut run.replicas {
            if let Phase::Running(h) = &r.phase {
                handles.push((r.role.clone(), r.index, r.attempt, h.clone()));
            }
            if !matches!(r.phase, Phase::Done { .. }) {
                r.phase = Phase::Done { succeeded: false };
            }
        }
        let executor = self.executor.clone();
        let store = self.store.clone();
        let grace = self.config.kill_grace;
        let notes = self.notes_tx.clone();
        let job = job_id.to_string();
        let why = why.to_string();
        let node = self.node.name.clone();
        tokio::spawn(async move {
            for (role, index, attempt, handle) in handles {
                let end = executor.terminate(&handle, grace).await;
                let status = match &end {
                    Ok(Poll::Exited(s)) => Some(s.clone()),
                    _ => None,
                };
                let row = ReplicaRecord {
                    job_id: job.clone(),
                    role,
                    index,
                    attempt,
                    state: ReplicaState::Killed,
                    node: node.clone(),
                    pid: Some(handle.pid),
                    start_token: Some(handle.start_token.clone()),
                    log_path: handle.log_path.to_string_lossy().into_owned(),
                    status_path: handle.status_path.to_string_lossy().into_owned(),
                    exit_code: status.as_ref().and_then(|s| s.exit_code),
                    signal: status.as_ref().and_then(|s| s.signal),
                    started_ms: status.as_ref().map(|s| s.started_ms),
                    finished_ms: Some(status.as_ref().map_or_else(now_ms, |s| s.finished_ms)),
                    usage: status
                        .as_ref()
                        .and_then(|s| serde_json::to_value(s.usage).ok()),
                    message: match &end {
                        Ok(_) => format!("stopped: {why}"),
                        Err(e) => format!("stopping failed: {e}"),
                    },
                };
                if let Err(e) = store.upsert_replica(&row).await {
                    tracing::error!(job = %job, error = %e, "cannot record a stopped replica");
                }
            }
            let _ = notes.send(Note::Stopped { job });
        });
    }
}

/// The replicas of a spec in rank order (roles in spec order, indexes ascending), each with a
/// free local port for its peers to reach it.
fn plan(spec: &JobSpec) -> Vec<Replica> {
    let mut replicas = Vec::new();
    let mut rank = 0;
    for task in &spec.tasks {
        for index in 0..task.replicas {
            replicas.push(Replica {
                role: task.role.clone(),
                index,
                rank,
                attempt: 0,
                port: free_port(),
                request: convert::request(task),
                policy: task.restart_policy,
                phase: Phase::Pending,
            });
            rank += 1;
        }
    }
    replicas
}

fn peers(replicas: &[Replica]) -> BTreeMap<String, Vec<String>> {
    let mut peers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in replicas {
        peers
            .entry(r.role.clone())
            .or_default()
            .push(format!("127.0.0.1:{}", r.port));
    }
    peers
}

/// A port no one listens on right now (the replica binds it when it wants to).
fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

pub(crate) fn job_dir(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("jobs").join(id)
}

fn exit_of(row: &ReplicaRecord) -> Exit {
    match (row.state, row.signal, row.exit_code) {
        (ReplicaState::Lost, _, _) => Exit::Lost,
        (_, Some(sig), _) => Exit::Signal(sig),
        (_, None, Some(code)) => Exit::Code(code),
        _ => Exit::Lost,
    }
}

fn describe(exit: Exit) -> String {
    match exit {
        Exit::Code(code) => format!("exited with code {code}"),
        Exit::Signal(sig) => format!("was killed by signal {sig}"),
        Exit::Lost => "was lost".to_string(),
    }
}
