-- Operations from other processes: a queued command carries an argument (the phone number of a
-- pair-code link) and its outcome, so the CLI can wait for the running supervisor's answer; the
-- link code of a link asked for from the CLI is kept while it waits, and deleted when linking ends.

ALTER TABLE commands ADD COLUMN arg TEXT;
ALTER TABLE commands ADD COLUMN done_at INTEGER;
ALTER TABLE commands ADD COLUMN error TEXT;
ALTER TABLE commands ADD COLUMN error_input INTEGER NOT NULL DEFAULT 0;

CREATE TABLE link_codes (
    account_id INTEGER PRIMARY KEY REFERENCES accounts (id),
    mode       TEXT    NOT NULL,
    phone      TEXT,
    code       TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    issued_at  INTEGER NOT NULL
);
