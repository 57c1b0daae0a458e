-- Webhooks: the operator's endpoints and an outbox of messages for them. A message announcing a
-- transition is written by a trigger on `events`, so it is part of the same transaction as the
-- event: a crash between recording and sending loses nothing, and nothing is announced that was
-- not recorded.

CREATE TABLE webhook_endpoints (
    id               INTEGER PRIMARY KEY,
    url              TEXT    NOT NULL,
    events           TEXT,                      -- JSON array of filters; NULL: every message
    accounts         TEXT,                      -- JSON array of account ids; NULL: every account
    enabled          INTEGER NOT NULL DEFAULT 1,
    disabled_reason  TEXT,
    secret_name      TEXT    NOT NULL,          -- keyring name of the signing secret
    old_secret_name  TEXT,                      -- the previous secret while a rotation lasts
    old_secret_until INTEGER,
    failing_since    INTEGER,                   -- first failed attempt since the last success
    created_at       INTEGER NOT NULL,
    removed_at       INTEGER
);

CREATE TABLE webhook_deliveries (
    id          INTEGER PRIMARY KEY,
    endpoint_id INTEGER NOT NULL REFERENCES webhook_endpoints (id),
    msg_id      TEXT    NOT NULL UNIQUE,        -- webhook-id: the receiver's idempotency key
    account_id  INTEGER,                        -- NULL: about no one account (a test, a summary)
    event_id    INTEGER,
    type        TEXT    NOT NULL,
    data        TEXT    NOT NULL,               -- JSON
    at          INTEGER NOT NULL,               -- when what it announces happened
    status      TEXT    NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_at     INTEGER NOT NULL,
    last_at     INTEGER,
    last_code   INTEGER,
    last_error  TEXT,
    done_at     INTEGER
);
-- The head of each (endpoint, account) queue: deliveries go out in order per pair.
CREATE INDEX webhook_pending ON webhook_deliveries (endpoint_id, account_id, id)
    WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, id);

-- One message per recorded transition for each endpoint that wants it. Its type says what
-- happened, most specific first; the filter `state` takes every transition.
CREATE TRIGGER events_outbox AFTER INSERT ON events
WHEN EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled = 1 AND removed_at IS NULL)
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, msg_id, account_id, event_id, type, data, at, next_at)
    SELECT w.id, 'msg_' || lower(hex(randomblob(12))), NEW.account_id, NEW.id,
           'account.' || t.category,
           json_object(
               'event_id', NEW.id,
               'account_id', NEW.account_id,
               'account_name', a.name,
               'account_kind', a.kind,
               'from', NEW.from_state,
               'to', NEW.to_state,
               'reason', NEW.reason,
               'state', json(NEW.state_json),
               'detail', NEW.detail,
               'triggered_by', NEW.triggered_by,
               'connected_for_s', CASE WHEN NEW.from_state = 'connected' THEN
                   (SELECT (NEW.at - s.started_at) / 1000.0 FROM sessions AS s
                    WHERE s.account_id = NEW.account_id AND s.ended_at IS NULL) END),
           NEW.at, NEW.at
    FROM webhook_endpoints AS w
    JOIN accounts AS a ON a.id = NEW.account_id
    JOIN (SELECT CASE
              WHEN NEW.to_state = 'needs_operator' THEN 'needs_operator'
              WHEN NEW.to_state = 'paused' THEN 'paused'
              WHEN NEW.to_state = 'connected' THEN 'connected'
              WHEN NEW.from_state = 'connected' AND NEW.to_state <> 'stopped' THEN 'dropped'
              ELSE 'state_changed'
          END AS category) AS t
    WHERE w.enabled = 1 AND w.removed_at IS NULL
      AND (w.accounts IS NULL
           OR EXISTS (SELECT 1 FROM json_each(w.accounts) WHERE value = NEW.account_id))
      AND (w.events IS NULL
           OR EXISTS (SELECT 1 FROM json_each(w.events) WHERE value IN ('state', t.category)))
    ORDER BY w.id;
END;
