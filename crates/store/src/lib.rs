//! The control plane's metadata store: API tokens (hashed), queues, jobs with their conditions
//! and events, and one row per attempt of every replica.
//!
//! One set of SQL statements runs on SQLite (the embedded default) and PostgreSQL through sqlx's
//! driver-neutral `Any` pool; only the migrations differ per engine ([`migrate`]). Every write
//! that belongs together is one transaction, so an error or a crash never leaves half a record.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use mofang_job::{Condition, JobSpec, JobState};

mod migrate;
#[cfg(feature = "testing")]
pub mod testing;
mod types;

pub use types::{
    EventKind, EventRecord, JobFilter, JobRecord, NewJob, Principal, QueueRecord, QueueResources,
    ReplicaRecord, ReplicaState,
};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database URL or options are unusable.
    #[error("{0}")]
    Config(String),
    /// A value given to the store is invalid; `field` names it.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A unique name is taken.
    #[error("{0}")]
    Conflict(String),
    /// A referenced record does not exist.
    #[error("{0}")]
    NotFound(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration {version}: {message}")]
    Migrate { version: i64, message: String },
    /// A stored value does not parse; the message names the column.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The two engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Engine {
    Sqlite,
    Postgres,
}

/// A connection pool to the metadata database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    engine: Engine,
}

const JOB_COLUMNS: &str = "id, seq, name, user_name, group_name, queue, priority, spec, state, \
     restarts, message, created_ms, queued_ms, started_ms, finished_ms";
const REPLICA_COLUMNS: &str = "job_id, role, idx, attempt, state, node, pid, start_token, \
     log_path, status_path, exit_code, signal, started_ms, finished_ms, usage, message";

impl Store {
    /// Opens (creating if needed) the database and applies the embedded migrations.
    /// URLs: `sqlite:PATH`, `sqlite::memory:`, `postgres://…` or `postgresql://…`.
    pub async fn open(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let (engine, url) = if let Some(rest) = url.strip_prefix("sqlite:") {
            let url = if rest == ":memory:" || rest.contains('?') {
                url.to_string()
            } else {
                let path = rest.trim_start_matches("//");
                if path.is_empty() {
                    return Err(Error::Config("sqlite: URL without a path".into()));
                }
                // The file is created if missing; so is its directory.
                if let Some(parent) = std::path::Path::new(path).parent()
                    && !parent.as_os_str().is_empty()
                {
                    std::fs::create_dir_all(parent).map_err(|e| {
                        Error::Config(format!("cannot create {}: {e}", parent.display()))
                    })?;
                }
                format!("sqlite://{path}?mode=rwc")
            };
            (Engine::Sqlite, url)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Engine::Postgres, url.to_string())
        } else {
            let scheme = url.split(':').next().unwrap_or(url);
            return Err(Error::Config(format!(
                "unsupported database URL scheme `{scheme}`: use sqlite:PATH or postgres://…"
            )));
        };
        let mut options = AnyPoolOptions::new();
        if engine == Engine::Sqlite {
            // One writer at a time is SQLite's model; a single connection that is never
            // recycled also keeps `:memory:` one database for the pool's life. Other processes
            // wait on busy_timeout.
            options = options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA busy_timeout = 10000",
                            "PRAGMA synchronous = NORMAL",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                        Ok(())
                    })
                });
        } else {
            options = options.max_connections(8);
        }
        let pool = options.connect(&url).await?;
        let store = Store { pool, engine };
        migrate::run(&store.pool, engine).await?;
        Ok(store)
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.engine {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }

    /// A write transaction. On SQLite `BEGIN IMMEDIATE` takes the write lock up front, so a
    /// transaction that reads then writes never fails to upgrade.
    async fn write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.engine {
            Engine::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Engine::Postgres => self.pool.begin().await?,
        })
    }

    // ------------------------------------------------------------------ principals

    /// Creates a token for `user` in `group` and returns it; only its SHA-256 is stored.
    pub async fn create_token(
        &self,
        user: &str,
        group: &str,
        admin: bool,
        now_ms: i64,
    ) -> Result<String> {
        types::check_label("user", user)?;
        types::check_label("group", group)?;
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Config(format!("no randomness for a token: {e}")))?;
        use base64::Engine as _;
        let token = format!(
            "mft_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        sqlx::query(
            "INSERT INTO tokens (hash, user_name, group_name, admin, created_ms) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_token(&token))
        .bind(user)
        .bind(group)
        .bind(i64::from(admin))
        .bind(now_ms)
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// The principal a token acts as, or `None` for an unknown token.
    pub async fn authenticate(&self, token: &str) -> Result<Option<Principal>> {
        let row = sqlx::query("SELECT user_name, group_name, admin FROM tokens WHERE hash = $1")
            .bind(hash_token(token))
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Principal {
                user: r.try_get("user_name")?,
                group: r.try_get("group_name")?,
                admin: r.try_get::<i64, _>("admin")? != 0,
            })
        })
        .transpose()
    }

    // ------------------------------------------------------------------ queues

    pub async fn create_queue(&self, q: &QueueRecord) -> Result<()> {
        types::check_label("name", &q.name)?;
        if let Some(g) = &q.group {
            types::check_label("group", g)?;
        }
        let result = sqlx::query(
            "INSERT INTO queues (name, group_name, weight, capability, guarantee, created_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&q.name)
        .bind(q.group.clone())
        .bind(i64::from(q.weight))
        .bind(to_json(&q.capability)?)
        .bind(to_json(&q.guarantee)?)
        .bind(q.created_ms)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => {
                Err(Error::Conflict(format!("queue {} exists", q.name)))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn get_queue(&self, name: &str) -> Result<Option<QueueRecord>> {
        let row = sqlx::query(
            "SELECT name, group_name, weight, capability, guarantee, created_ms FROM queues WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(queue_from_row).transpose()
    }

    /// Every queue, by name.
    pub async fn list_queues(&self) -> Result<Vec<QueueRecord>> {
        let rows = sqlx::query(
            "SELECT name, group_name, weight, capability, guarantee, created_ms FROM queues ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(queue_from_row).collect()
    }

    // ------------------------------------------------------------------ jobs

    /// Stores a new job in state `Created` with its first condition, in one transaction.
    pub async fn insert_job(&self, job: &NewJob) -> Result<JobRecord> {
        let spec = serde_json::to_string(&job.spec)
            .map_err(|e| Error::Config(format!("cannot serialise the spec: {e}")))?;
        let mut tx = self.write().await?;
        let queue = sqlx::query("SELECT name FROM queues WHERE name = $1")
            .bind(&job.queue)
            .fetch_optional(&mut *tx)
            .await?;
        if queue.is_none() {
            return Err(Error::NotFound(format!(
                "queue {} does not exist",
                job.queue
            )));
        }
        let seq: i64 = match self.engine {
            Engine::Sqlite => sqlx::query("SELECT COALESCE(MAX(seq), 0) + 1 AS next FROM jobs")
                .fetch_one(&mut *tx)
                .await?
                .try_get("next")?,
            Engine::Postgres => sqlx::query("SELECT nextval('job_seq') AS next")
                .fetch_one(&mut *tx)
                .await?
                .try_get("next")?,
        };
        let message = "accepted";
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, seq, name, user_name, group_name, queue, priority, spec, state, restarts, message, live_name, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0, $10, $3, $11)",
        )
        .bind(&job.id)
        .bind(seq)
        .bind(&job.name)
        .bind(&job.user)
        .bind(&job.group)
        .bind(&job.queue)
        .bind(i64::from(job.priority))
        .bind(&spec)
        .bind(JobState::Created.as_str())
        .bind(message)
        .bind(job.now_ms)
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(Error::Conflict(format!(
                    "user {} already has a live job named {} (or the id {} is taken)",
                    job.user, job.name, job.id
                )));
            }
            Err(e) => return Err(e.into()),
        }
        sqlx::query(
            "INSERT INTO conditions (job_id, n, state, reason, message, time_ms) VALUES ($1, 1, $2, $3, $4, $5)",
        )
        .bind(&job.id)
        .bind(JobState::Created.as_str())
        .bind("Submitted")
        .bind(message)
        .bind(job.now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(JobRecord {
            id: job.id.clone(),
            name: job.name.clone(),
            user: job.user.clone(),
            group: job.group.clone(),
            queue: job.queue.clone(),
            priority: job.priority,
            seq,
            spec: job.spec.clone(),
            state: JobState::Created,
            restarts: 0,
            message: message.to_string(),
            created_ms: job.now_ms,
            queued_ms: None,
            started_ms: None,
            finished_ms: None,
        })
    }

    pub async fn get_job(&self, id: &str) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Jobs matching the filter, newest first.
    pub async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<JobRecord>> {
        let mut sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let param = |binds: &mut Vec<String>, value: String| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if !f.states.is_empty() {
            let list: Vec<String> = f
                .states
                .iter()
                .map(|s| param(&mut binds, s.as_str().to_string()))
                .collect();
            sql.push_str(&format!(" AND state IN ({})", list.join(", ")));
        }
        for (column, value) in [
            ("user_name", &f.user),
            ("group_name", &f.group),
            ("queue", &f.queue),
        ] {
            if let Some(v) = value {
                let p = param(&mut binds, v.clone());
                sql.push_str(&format!(" AND {column} = {p}"));
            }
        }
        if let Some((user, group)) = &f.visible_to {
            let u = param(&mut binds, user.clone());
            let g = param(&mut binds, group.clone());
            sql.push_str(&format!(" AND (user_name = {u} OR group_name = {g})"));
        }
        sql.push_str(" ORDER BY seq DESC");
        if let Some(limit) = f.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        let mut query = sqlx::query(&sql);
        for b in &binds {
            query = query.bind(b.as_str());
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Every job not in a final state, oldest first.
    pub async fn live_jobs(&self) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE live_name IS NOT NULL ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Moves a job to `to` if it is in one of `from` and the move is legal; appends the
    /// condition and sets the timestamps, in one transaction. `None` when nothing changed.
    pub async fn transition(
        &self,
        id: &str,
        from: &[JobState],
        to: JobState,
        reason: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<Option<JobRecord>> {
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(Error::NotFound(format!("job {id} not found")));
        };
        let mut job = job_from_row(&row)?;
        if !from.contains(&job.state) || !job.state.can_become(to) {
            return Ok(None);
        }
        let old = job.state;
        job.state = to;
        job.message = message.to_string();
        if to == JobState::Queued && job.queued_ms.is_none() {
            job.queued_ms = Some(now_ms);
        }
        if to == JobState::Running && job.started_ms.is_none() {
            job.started_ms = Some(now_ms);
        }
        if to.is_final() {
            job.finished_ms = Some(now_ms);
        }
        let live_name = (!to.is_final()).then(|| job.name.clone());
        let updated = sqlx::query(
            "UPDATE jobs SET state = $1, message = $2, queued_ms = $3, started_ms = $4, finished_ms = $5, live_name = $6 \
             WHERE id = $7 AND state = $8",
        )
        .bind(to.as_str())
        .bind(message)
        .bind(job.queued_ms)
        .bind(job.started_ms)
        .bind(job.finished_ms)
        .bind(live_name)
        .bind(id)
        .bind(old.as_str())
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() != 1 {
            return Ok(None);
        }
        let n: i64 =
            sqlx::query("SELECT COALESCE(MAX(n), 0) + 1 AS next FROM conditions WHERE job_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
                .try_get("next")?;
        sqlx::query(
            "INSERT INTO conditions (job_id, n, state, reason, message, time_ms) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(n)
        .bind(to.as_str())
        .bind(reason)
        .bind(message)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(job))
    }

    /// Counts one more restart of the job; returns the new count.
    pub async fn record_restart(&self, id: &str) -> Result<u32> {
        let mut tx = self.write().await?;
        let updated = sqlx::query("UPDATE jobs SET restarts = restarts + 1 WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if updated.rows_affected() != 1 {
            return Err(Error::NotFound(format!("job {id} not found")));
        }
        let restarts: i64 = sqlx::query("SELECT restarts FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("restarts")?;
        tx.commit().await?;
        u32::try_from(restarts).map_err(|_| Error::Corrupt(format!("jobs.restarts {restarts}")))
    }

    /// The job's conditions, oldest first.
    pub async fn conditions(&self, id: &str) -> Result<Vec<Condition>> {
        let rows = sqlx::query(
            "SELECT state, reason, message, time_ms FROM conditions WHERE job_id = $1 ORDER BY n",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Condition {
                    state: parse_state(&r.try_get::<String, _>("state")?, "conditions.state")?,
                    reason: r.try_get("reason")?,
                    message: r.try_get("message")?,
                    time_ms: r.try_get("time_ms")?,
                })
            })
            .collect()
    }

    /// Records an event; a repeat of the job's latest event only bumps its count and time.
    pub async fn add_event(
        &self,
        id: &str,
        kind: EventKind,
        reason: &str,
        message: &str,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.write().await?;
        // Lock the job's row (portable `SELECT … FOR UPDATE`) so concurrent events number
        // themselves one after the other.
        let locked = sqlx::query("UPDATE jobs SET id = id WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if locked.rows_affected() != 1 {
            return Err(Error::NotFound(format!("job {id} not found")));
        }
        let last = sqlx::query(
            "SELECT n, kind, reason, message FROM events WHERE job_id = $1 ORDER BY n DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let mut next = 1;
        if let Some(last) = last {
            let n: i64 = last.try_get("n")?;
            let same = last.try_get::<String, _>("kind")? == kind.as_str()
                && last.try_get::<String, _>("reason")? == reason
                && last.try_get::<String, _>("message")? == message;
            if same {
                sqlx::query(
                    "UPDATE events SET count = count + 1, last_ms = $1 WHERE job_id = $2 AND n = $3",
                )
                .bind(now_ms)
                .bind(id)
                .bind(n)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                return Ok(());
            }
            next = n + 1;
        }
        sqlx::query(
            "INSERT INTO events (job_id, n, kind, reason, message, count, first_ms, last_ms) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)",
        )
        .bind(id)
        .bind(next)
        .bind(kind.as_str())
        .bind(reason)
        .bind(message)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The job's events, oldest first.
    pub async fn events(&self, id: &str) -> Result<Vec<EventRecord>> {
        let rows = sqlx::query(
            "SELECT kind, reason, message, count, first_ms, last_ms FROM events WHERE job_id = $1 ORDER BY n",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let kind: String = r.try_get("kind")?;
                Ok(EventRecord {
                    kind: EventKind::parse(&kind)
                        .ok_or_else(|| Error::Corrupt(format!("events.kind `{kind}`")))?,
                    reason: r.try_get("reason")?,
                    message: r.try_get("message")?,
                    count: to_u32(r.try_get("count")?, "events.count")?,
                    first_ms: r.try_get("first_ms")?,
                    last_ms: r.try_get("last_ms")?,
                })
            })
            .collect()
    }

    // ------------------------------------------------------------------ replicas

    /// Inserts or replaces the row of one attempt of one replica.
    pub async fn upsert_replica(&self, r: &ReplicaRecord) -> Result<()> {
        let usage = r
            .usage
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| Error::Config(format!("usage: {e}")))?;
        let result = sqlx::query(&format!(
            "INSERT INTO replicas ({REPLICA_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (job_id, role, idx, attempt) DO UPDATE SET state = excluded.state, node = excluded.node, \
             pid = excluded.pid, start_token = excluded.start_token, log_path = excluded.log_path, \
             status_path = excluded.status_path, exit_code = excluded.exit_code, signal = excluded.signal, \
             started_ms = excluded.started_ms, finished_ms = excluded.finished_ms, usage = excluded.usage, \
             message = excluded.message"
        ))
        .bind(&r.job_id)
        .bind(&r.role)
        .bind(i64::from(r.index))
        .bind(i64::from(r.attempt))
        .bind(r.state.as_str())
        .bind(&r.node)
        .bind(r.pid.map(i64::from))
        .bind(r.start_token.clone())
        .bind(&r.log_path)
        .bind(&r.status_path)
        .bind(r.exit_code.map(i64::from))
        .bind(r.signal.map(i64::from))
        .bind(r.started_ms)
        .bind(r.finished_ms)
        .bind(usage)
        .bind(&r.message)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(Error::NotFound(format!("job {} not found", r.job_id)))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Every attempt of every replica of a job, by role, index and attempt.
    pub async fn replicas(&self, job_id: &str) -> Result<Vec<ReplicaRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {REPLICA_COLUMNS} FROM replicas WHERE job_id = $1 ORDER BY role, idx, attempt"
        ))
        .bind(job_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(replica_from_row).collect()
    }
}

/// SHA-256 of a token, lowercase hex.
fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db.code().as_deref() == Some("23505")
                || db.message().contains("UNIQUE constraint failed")
        }
        _ => false,
    }
}

fn is_foreign_key_violation(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.is_foreign_key_violation()
                || db.code().as_deref() == Some("23503")
                || db.message().contains("FOREIGN KEY constraint failed")
        }
        _ => false,
    }
}

fn to_json<T: Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Config(e.to_string()))
}

fn from_json<T: for<'de> Deserialize<'de>>(text: &str, column: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| Error::Corrupt(format!("{column}: {e}")))
}

fn to_u32(v: i64, column: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::Corrupt(format!("{column} {v}")))
}

fn parse_state(text: &str, column: &str) -> Result<JobState> {
    JobState::parse(text).ok_or_else(|| Error::Corrupt(format!("{column} `{text}`")))
}

fn queue_from_row(r: &AnyRow) -> Result<QueueRecord> {
    Ok(QueueRecord {
        name: r.try_get("name")?,
        group: r.try_get("group_name")?,
        weight: to_u32(r.try_get("weight")?, "queues.weight")?,
        capability: from_json(&r.try_get::<String, _>("capability")?, "queues.capability")?,
        guarantee: from_json(&r.try_get::<String, _>("guarantee")?, "queues.guarantee")?,
        created_ms: r.try_get("created_ms")?,
    })
}

fn job_from_row(r: &AnyRow) -> Result<JobRecord> {
    let priority: i64 = r.try_get("priority")?;
    Ok(JobRecord {
        id: r.try_get("id")?,
        seq: r.try_get("seq")?,
        name: r.try_get("name")?,
        user: r.try_get("user_name")?,
        group: r.try_get("group_name")?,
        queue: r.try_get("queue")?,
        priority: i32::try_from(priority)
            .map_err(|_| Error::Corrupt(format!("jobs.priority {priority}")))?,
        spec: from_json(&r.try_get::<String, _>("spec")?, "jobs.spec")?,
        state: parse_state(&r.try_get::<String, _>("state")?, "jobs.state")?,
        restarts: to_u32(r.try_get("restarts")?, "jobs.restarts")?,
        message: r.try_get("message")?,
        created_ms: r.try_get("created_ms")?,
        queued_ms: r.try_get("queued_ms")?,
        started_ms: r.try_get("started_ms")?,
        finished_ms: r.try_get("finished_ms")?,
    })
}

fn replica_from_row(r: &AnyRow) -> Result<ReplicaRecord> {
    let state: String = r.try_get("state")?;
    let usage: Option<String> = r.try_get("usage")?;
    let small = |v: Option<i64>, column: &str| -> Result<Option<i32>> {
        v.map(|v| i32::try_from(v).map_err(|_| Error::Corrupt(format!("{column} {v}"))))
            .transpose()
    };
    Ok(ReplicaRecord {
        job_id: r.try_get("job_id")?,
        role: r.try_get("role")?,
        index: to_u32(r.try_get("idx")?, "replicas.idx")?,
        attempt: to_u32(r.try_get("attempt")?, "replicas.attempt")?,
        state: ReplicaState::parse(&state)
            .ok_or_else(|| Error::Corrupt(format!("replicas.state `{state}`")))?,
        node: r.try_get("node")?,
        pid: r
            .try_get::<Option<i64>, _>("pid")?
            .map(|p| to_u32(p, "replicas.pid"))
            .transpose()?,
        start_token: r.try_get("start_token")?,
        log_path: r.try_get("log_path")?,
        status_path: r.try_get("status_path")?,
        exit_code: small(r.try_get("exit_code")?, "replicas.exit_code")?,
        signal: small(r.try_get("signal")?, "replicas.signal")?,
        started_ms: r.try_get("started_ms")?,
        finished_ms: r.try_get("finished_ms")?,
        usage: usage.map(|u| from_json(&u, "replicas.usage")).transpose()?,
        message: r.try_get("message")?,
    })
}
