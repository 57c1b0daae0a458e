-- Supervision: a heartbeat per run (a crash closes open sessions at the last heartbeat, not at
-- the next start) and a command queue through which admin commands reach a running supervisor.

ALTER TABLE runs ADD COLUMN last_seen INTEGER;

CREATE TABLE commands (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER,
    command    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
);
