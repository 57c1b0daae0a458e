-- An endpoint that is turned off (by the operator, a 410, or days of failures) still gets its
-- messages queued: they wait, in order, and go out when it is turned on again. Only a removed
-- endpoint gets nothing. (The trigger of 0004 skipped endpoints that were off, so what happened
-- meanwhile was never announced.)
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
              WHEN NEW.from_state = 'connected' AND NEW.to_state <> 'stopped' THEN 'dropped'
              ELSE 'state_changed'
          END AS category) AS t
    WHERE w.removed_at IS NULL
      AND (w.accounts IS NULL
           OR EXISTS (SELECT 1 FROM json_each(w.accounts) WHERE value = NEW.account_id))
      AND (w.events IS NULL
           OR EXISTS (SELECT 1 FROM json_each(w.events) WHERE value IN ('state', t.category)))
    ORDER BY w.id;
END;
