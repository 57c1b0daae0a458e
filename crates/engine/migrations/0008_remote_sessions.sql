-- no-transaction
-- A third kind of account (TikTok creators), the sessions a connector reports at the remote (a
-- creator's live broadcasts with their counts), and a per-account wish to hear when one starts.
--
-- SQLite cannot change a CHECK constraint in place, so `accounts` is rebuilt: a new table with
-- the wider check, every row copied, the old one dropped and the new one renamed. Foreign keys
-- are off while that happens (the rows keep their ids, so every reference still holds), which
-- SQLite allows only outside a transaction; the rebuild itself is one transaction.
PRAGMA foreign_keys = OFF;
PRAGMA legacy_alter_table = ON;
BEGIN;

CREATE TABLE accounts_rebuilt (
    id              INTEGER PRIMARY KEY,
    kind            TEXT    NOT NULL CHECK (kind IN ('websocket', 'whatsapp', 'tiktok')),
    name            TEXT    NOT NULL,
    url             TEXT,
    priority        INTEGER NOT NULL DEFAULT 100,
    country         TEXT,
    proxy_url       TEXT,
    proxy_secret    TEXT,
    headers         TEXT    NOT NULL DEFAULT '[]',
    muted           INTEGER NOT NULL DEFAULT 0,
    desired_running INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL DEFAULT 'stopped',
    state_json      TEXT    NOT NULL DEFAULT '{"state":"stopped"}',
    state_since     INTEGER NOT NULL,
    created_at      INTEGER NOT NULL,
    removed_at      INTEGER,
    remote_id       TEXT,
    remote_name     TEXT,
    notify_live     INTEGER NOT NULL DEFAULT 0     -- a notification when a live starts
);
INSERT INTO accounts_rebuilt (id, kind, name, url, priority, country, proxy_url, proxy_secret,
                              headers, muted, desired_running, state, state_json, state_since,
                              created_at, removed_at, remote_id, remote_name)
    SELECT id, kind, name, url, priority, country, proxy_url, proxy_secret, headers, muted,
           desired_running, state, state_json, state_since, created_at, removed_at, remote_id,
           remote_name
    FROM accounts;
DROP TABLE accounts;
ALTER TABLE accounts_rebuilt RENAME TO accounts;
CREATE UNIQUE INDEX accounts_live_name ON accounts (name) WHERE removed_at IS NULL;

-- One row per session at the remote, updated as the connector reports it (a live's counts grow
-- while it runs) and closed when it ends. `metrics` is a JSON array of [name, value] pairs in
-- the connector's order; the export writes each name as a column.
CREATE TABLE remote_sessions (
    id         INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL REFERENCES accounts (id),
    key        TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    end_how    TEXT,
    metrics    TEXT    NOT NULL DEFAULT '[]',
    updated_at INTEGER NOT NULL,
    UNIQUE (account_id, key)
);
CREATE INDEX remote_sessions_started ON remote_sessions (started_at);
CREATE INDEX remote_sessions_open ON remote_sessions (account_id) WHERE ended_at IS NULL;

-- Up and waiting for the remote (a creator between lives) is not a drop: going from connected
-- to waiting, or from waiting to stopped, is a plain state change; leaving either for a retry
-- or a pause is a drop.
DROP TRIGGER events_outbox;
CREATE TRIGGER events_outbox AFTER INSERT ON events
WHEN EXISTS (SELECT 1 FROM webhook_endpoints WHERE removed_at IS NULL)
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, account_id, event_id, type, at, next_at)
    SELECT w.id, NEW.account_id, NEW.id, 'account.' || t.category, NEW.at, NEW.at
    FROM webhook_endpoints AS w
    JOIN (SELECT CASE
              WHEN NEW.to_state = 'needs_operator' THEN 'needs_operator'
              WHEN NEW.to_state = 'paused' THEN 'paused'
              WHEN NEW.to_state = 'connected' THEN 'connected'
              WHEN NEW.from_state IN ('connected', 'waiting')
                   AND NEW.to_state NOT IN ('stopped', 'waiting') THEN 'dropped'
              ELSE 'state_changed'
          END AS category) AS t
    WHERE w.removed_at IS NULL
      AND (w.accounts IS NULL
           OR EXISTS (SELECT 1 FROM json_each(w.accounts) WHERE value = NEW.account_id))
      AND (w.events IS NULL
           OR EXISTS (SELECT 1 FROM json_each(w.events) WHERE value IN ('state', t.category)))
    ORDER BY w.id;
END;

COMMIT;
PRAGMA legacy_alter_table = OFF;
PRAGMA foreign_keys = ON;
