-- Lifeline's first schema. Times are integer milliseconds since the Unix epoch (UTC).
-- SQL kept portable (no SQLite-only types) so a PostgreSQL backend is an addition, not a rewrite.

CREATE TABLE accounts (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL CHECK (kind IN ('websocket', 'whatsapp')),
    name            TEXT    NOT NULL,
    url             TEXT,
    priority        INTEGER NOT NULL DEFAULT 100,
    country         TEXT,
    proxy_url       TEXT,
    proxy_secret    TEXT,
    headers         TEXT    NOT NULL DEFAULT '[]',   -- JSON [{name, secret}]: secret *names* only
    muted           INTEGER NOT NULL DEFAULT 0,
    desired_running INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL DEFAULT 'stopped',
    state_json      TEXT    NOT NULL DEFAULT '{"state":"stopped"}',
    state_since     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    removed_at      INTEGER                          -- soft delete: history stays exportable
);
CREATE UNIQUE INDEX accounts_live_name ON accounts (name) WHERE removed_at IS NULL;

-- Every transition, with who caused it.
CREATE TABLE events (
    id           INTEGER PRIMARY KEY,
    account_id   INTEGER NOT NULL REFERENCES accounts (id),
    at           INTEGER NOT NULL,
    from_state   TEXT    NOT NULL,
    to_state     TEXT    NOT NULL,
    reason       TEXT,
    state_json   TEXT    NOT NULL,
    detail       TEXT,
    triggered_by TEXT    NOT NULL
);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_account_at ON events (account_id, at);

-- Connected intervals, written in the same transaction as the events that open and close them.
CREATE TABLE sessions (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    end_reason TEXT
);
CREATE INDEX sessions_started ON sessions (started_at);
CREATE INDEX sessions_account_started ON sessions (account_id, started_at);
CREATE INDEX sessions_open ON sessions (account_id) WHERE ended_at IS NULL;

-- Circuit breaker per account, persisted so a restart does not forget a storm in progress.
CREATE TABLE breakers (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id),
    state_json TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- Autorecover flag and policy values.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT    NOT NULL,
    updated_at INTEGER NOT NULL
);

-- One row per supervising run; clean = 1 is written last on a graceful stop.
CREATE TABLE runs (
    id         INTEGER PRIMARY KEY,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    clean      INTEGER NOT NULL DEFAULT 0,
    pid        INTEGER NOT NULL,
    version    TEXT    NOT NULL
);

-- Names of secrets kept in the OS keyring. Values never enter this database.
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
