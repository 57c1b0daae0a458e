-- A fleet: Lifeline instances sharing this database, and one lease per account naming the
-- instance that supervises it. Every time is the database's own (now()), never a host's.

-- Marks the database as Lifeline's fleet store: a database holding other tables but not this
-- one belongs to another program and is refused before anything is written.
-- It also keeps the fingerprint of the fleet key (never the key): the first host that seals
-- with a key sets it, and a host with another key is refused.
CREATE TABLE lifeline_fleet (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    key_fingerprint TEXT CHECK (key_fingerprint ~ '^[0-9a-f]{16}$')
);
INSERT INTO lifeline_fleet DEFAULT VALUES;

-- One row per running process (a new random id each start). The host name and pid are for
-- people; the heartbeat says whether it still runs. The counters are the instance's own,
-- written with each heartbeat, so the fleet's totals are their sums.
CREATE TABLE fleet_instances (
    id TEXT PRIMARY KEY CHECK (id ~ '^[0-9a-f]{32}$'),
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    max_accounts INTEGER CHECK (max_accounts IS NULL OR max_accounts >= 0),
    started_at TIMESTAMPTZ NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL,
    stopped_at TIMESTAMPTZ,
    takeovers BIGINT NOT NULL DEFAULT 0,
    renew_failures BIGINT NOT NULL DEFAULT 0,
    stale_writes_refused BIGINT NOT NULL DEFAULT 0
);

-- The lease of an account. `epoch` is the fencing token: it grows by one each time the account
-- changes owner, and a write made under an older epoch is refused. A released or never-owned
-- lease has no owner; an expired one may still name its last owner until someone claims it.
CREATE TABLE account_leases (
    account_id BIGINT PRIMARY KEY CHECK (account_id > 0),
    owner TEXT REFERENCES fleet_instances (id) ON DELETE SET NULL,
    epoch BIGINT NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    expires_at TIMESTAMPTZ NOT NULL DEFAULT '-infinity',
    acquired_at TIMESTAMPTZ
);
CREATE INDEX account_leases_by_owner ON account_leases (owner);
CREATE INDEX account_leases_by_expiry ON account_leases (expires_at);

-- Each WhatsApp account's device store, sealed with the fleet key (AES-256-GCM), written under
-- the writer's lease epoch, so any instance that takes the account over resumes it without a
-- new QR scan.
CREATE TABLE device_stores (
    account_id BIGINT PRIMARY KEY REFERENCES account_leases (account_id) ON DELETE CASCADE,
    sealed BYTEA NOT NULL,
    epoch BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
