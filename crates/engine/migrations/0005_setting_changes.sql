-- Who changed which setting, when, from what to what: policy values (one row per value that
-- changed, as `section.key`) and the autorecover switch. Written in the same transaction as the
-- setting itself, so the log and the values never disagree.
CREATE TABLE setting_changes (
    id           INTEGER PRIMARY KEY,
    at           INTEGER NOT NULL,
    key          TEXT    NOT NULL,
    old_value    TEXT,                          -- NULL: unset (or unreadable) before
    new_value    TEXT    NOT NULL,
    triggered_by TEXT    NOT NULL
);
CREATE INDEX setting_changes_at ON setting_changes (at);
