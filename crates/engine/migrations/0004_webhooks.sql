-- Webhooks: the operator's endpoints and an outbox of messages for them. A message announcing a
-- transition is written by a trigger on `events`, so it is part of the same transaction as the
-- event: a crash between recording and sending loses nothing, and nothing is announced that was
-- not recorded. Such a row stays small (no body: that is read from the event when it is sent), so
-- recording a transition costs little more with endpoints than without.

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
    account_id  INTEGER,                        -- NULL: about no one account (a test, a summary)
    event_id    INTEGER,
    type        TEXT    NOT NULL,
    data        TEXT,                           -- JSON; NULL: read from the event
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
-- Failed deliveries, to list and replay; delivered ones are pruned after a while.
CREATE INDEX webhook_failed ON webhook_deliveries (endpoint_id, id) WHERE status = 'failed';
CREATE INDEX webhook_done ON webhook_deliveries (done_at) WHERE status = 'delivered';

-- The webhook-id of a delivery (the receiver's idempotency key) is `msg_`, this database's
-- random prefix and the delivery's id: the same on every retry and replay, never the same as
-- another database's.
INSERT INTO settings (key, value, updated_at)
VALUES ('webhook.id_prefix', lower(hex(randomblob(8))), 0);

-- One message per recorded transition for each endpoint that wants it. Its type says what
-- happened, most specific first; the filter `state` takes every transition.
CREATE TRIGGER events_outbox AFTER INSERT ON events
WHEN EXISTS (SELECT 1 FROM webhook_endpoints WHERE enabled = 1 AND removed_at IS NULL)
BEGIN
    INSERT INTO webhook_deliveries (endpoint_id, account_id, event_id, type, at, next_at)
    SELECT w.id, NEW.account_id, NEW.id, 'account.' || t.category, NEW.at, NEW.at
    FROM webhook_endpoints AS w
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
