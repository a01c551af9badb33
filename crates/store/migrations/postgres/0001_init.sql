-- mofang metadata, version 1 (PostgreSQL). Never edit a released migration: add the next number.
CREATE TABLE tokens (
    hash TEXT PRIMARY KEY,          -- SHA-256 of the token, lowercase hex; the token itself is never stored
    user_name TEXT NOT NULL,
    group_name TEXT NOT NULL,
    admin BIGINT NOT NULL,
    created_ms BIGINT NOT NULL
);
CREATE TABLE queues (
    name TEXT PRIMARY KEY,
    group_name TEXT,
    weight BIGINT NOT NULL,
    capability TEXT NOT NULL,       -- JSON {cpu_millis, memory_bytes, gpu}, null = unlimited
    guarantee TEXT NOT NULL,        -- JSON, null = none
    created_ms BIGINT NOT NULL
);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    seq BIGINT NOT NULL UNIQUE,     -- order of acceptance
    name TEXT NOT NULL,
    user_name TEXT NOT NULL,
    group_name TEXT NOT NULL,
    queue TEXT NOT NULL REFERENCES queues (name),
    priority BIGINT NOT NULL,
    spec TEXT NOT NULL,             -- the JobSpec as JSON
    state TEXT NOT NULL,
    restarts BIGINT NOT NULL,
    message TEXT NOT NULL,
    live_name TEXT,                 -- the name while the job is live, NULL once final
    created_ms BIGINT NOT NULL,
    queued_ms BIGINT,
    started_ms BIGINT,
    finished_ms BIGINT
);
CREATE UNIQUE INDEX jobs_live_name ON jobs (user_name, live_name);
CREATE INDEX jobs_state ON jobs (state);
CREATE TABLE conditions (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    n BIGINT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    time_ms BIGINT NOT NULL,
    PRIMARY KEY (job_id, n)
);
CREATE TABLE events (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    n BIGINT NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    message TEXT NOT NULL,
    count BIGINT NOT NULL,
    first_ms BIGINT NOT NULL,
    last_ms BIGINT NOT NULL,
    PRIMARY KEY (job_id, n)
);
CREATE TABLE replicas (
    job_id TEXT NOT NULL REFERENCES jobs (id),
    role TEXT NOT NULL,
    idx BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    state TEXT NOT NULL,
    node TEXT NOT NULL,
    pid BIGINT,
    start_token TEXT,
    log_path TEXT NOT NULL,
    status_path TEXT NOT NULL,
    exit_code BIGINT,
    signal BIGINT,
    started_ms BIGINT,
    finished_ms BIGINT,
    usage TEXT,
    message TEXT NOT NULL,
    PRIMARY KEY (job_id, role, idx, attempt)
);
CREATE SEQUENCE job_seq;
