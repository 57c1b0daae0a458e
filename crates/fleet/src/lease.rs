//! The lease rules, each one statement (or one short transaction) against the fleet store.
//!
//! A lease names the instance supervising an account, until an expiry on the database's clock.
//! Its epoch grows by one whenever the owner changes; a write is made under an epoch and is
//! refused once that epoch is no longer the account's current, unexpired lease of the writer
//! ([`Instance::begin_fenced`]). A renewal that updates nothing means the lease is gone: the
//! caller stops that account's connection at once and writes nothing for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{AssertSqlSafe, Postgres, Transaction};

use crate::store::{FleetStore, Instance};
use crate::{AccountId, Error, Result};

/// The database's clock as this handle's queries see it: `now()` plus the handle's offset
/// (zero outside tests). `$1` is always the offset in seconds.
pub(crate) const NOW: &str = "(now() + make_interval(secs => $1))";

/// A lease held by this instance: the account and the epoch its writes carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lease {
    pub account: AccountId,
    pub epoch: i64,
}

/// A lease won by a claim. `takeover` says it had another owner before (one that died, was
/// partitioned, or handed it over), not a free account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    pub lease: Lease,
    pub takeover: bool,
}

/// An instance's counters, as read for its metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceCounts {
    /// Leases won from an owner that stopped renewing (not free ones).
    pub takeovers: u64,
    /// Renewals that did not get through (the database unreachable or slow).
    pub renew_failures: u64,
    /// Writes refused because their lease was no longer this instance's.
    pub stale_writes_refused: u64,
}

/// The counters an instance keeps and writes with its heartbeat.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub takeovers: AtomicU64,
    pub renew_failures: AtomicU64,
    pub stale_writes_refused: AtomicU64,
}

fn count(counter: &AtomicU64) -> i64 {
    i64::try_from(counter.load(Ordering::Relaxed)).unwrap_or(i64::MAX)
}

/// What the fleet looks like to an instance deciding how many accounts it should hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Census {
    pub accounts: i64,
    pub live_instances: i64,
    pub held: i64,
    /// How many more accounts the other live instances could take before reaching their share.
    pub room_elsewhere: i64,
}

impl Census {
    /// The share of accounts this instance should hold: an even split over the live instances
    /// (rounded up), at most `max_accounts`.
    pub fn fair_share(&self, max_accounts: Option<u32>) -> i64 {
        let live = self.live_instances.max(1);
        let even = (self.accounts + live - 1) / live;
        max_accounts.map_or(even, |m| even.min(i64::from(m)))
    }
}

/// One instance as the registry shows it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct InstanceRow {
    pub id: String,
    pub host: String,
    pub pid: i32,
    pub max_accounts: Option<i32>,
    /// Seconds since its last heartbeat, on the database's clock.
    pub heartbeat_age_s: f64,
    pub alive: bool,
    pub leases: i64,
    pub takeovers: i64,
    pub renew_failures: i64,
    pub stale_writes_refused: i64,
}

/// Who supervises one account now: the instance holding its unexpired lease.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Holder {
    pub account_id: i64,
    pub instance: String,
    pub host: String,
    pub pid: i32,
    pub epoch: i64,
}

/// The fleet's totals, for `/metrics` and the fleet view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FleetTotals {
    pub accounts: i64,
    pub leases_held: i64,
    pub live_instances: i64,
    pub takeovers: i64,
    pub renew_failures: i64,
    pub stale_writes_refused: i64,
}

impl FleetStore {
    /// Puts accounts in the fleet (an unowned lease each); ones already there are untouched.
    pub async fn add_accounts(&self, accounts: &[AccountId]) -> Result<u64> {
        let done = sqlx::query(
            "INSERT INTO account_leases (account_id) SELECT unnest($1::int8[])
             ON CONFLICT (account_id) DO NOTHING",
        )
        .bind(accounts)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Takes an account out of the fleet (it was removed).
    pub async fn remove_account(&self, account: AccountId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM account_leases WHERE account_id = $1")
            .bind(account)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The registry: live instances first, then the ones that stopped or went silent.
    pub async fn instances(&self, ttl: Duration) -> Result<Vec<InstanceRow>> {
        Ok(sqlx::query_as::<_, InstanceRow>(AssertSqlSafe(format!(
            "SELECT i.id, i.host, i.pid, i.max_accounts,
                    extract(epoch FROM {NOW} - i.heartbeat_at)::float8 AS heartbeat_age_s,
                    i.stopped_at IS NULL
                        AND i.heartbeat_at > {NOW} - make_interval(secs => $2) AS alive,
                    (SELECT count(*) FROM account_leases l
                      WHERE l.owner = i.id AND l.expires_at > {NOW}) AS leases,
                    i.takeovers, i.renew_failures, i.stale_writes_refused
               FROM fleet_instances i
              ORDER BY alive DESC, i.started_at"
        )))
        .bind(self.clock_offset_s)
        .bind(ttl.as_secs_f64())
        .fetch_all(&self.pool)
        .await?)
    }

    /// The fleet's totals: the counters summed over the instances in the registry (those that
    /// ran in the last week, or still hold leases).
    pub async fn totals(&self, ttl: Duration) -> Result<FleetTotals> {
        let (accounts, leases_held, live, t, r, s): (i64, i64, i64, i64, i64, i64) =
            sqlx::query_as(AssertSqlSafe(format!(
                "SELECT (SELECT count(*) FROM account_leases),
                        (SELECT count(*) FROM account_leases
                          WHERE owner IS NOT NULL AND expires_at > {NOW}),
                        (SELECT count(*) FROM fleet_instances
                          WHERE stopped_at IS NULL
                            AND heartbeat_at > {NOW} - make_interval(secs => $2)),
                        coalesce(sum(takeovers), 0)::int8,
                        coalesce(sum(renew_failures), 0)::int8,
                        coalesce(sum(stale_writes_refused), 0)::int8
                   FROM fleet_instances"
            )))
            .bind(self.clock_offset_s)
            .bind(ttl.as_secs_f64())
            .fetch_one(&self.pool)
            .await?;
        Ok(FleetTotals {
            accounts,
            leases_held,
            live_instances: live,
            takeovers: t,
            renew_failures: r,
            stale_writes_refused: s,
        })
    }

    /// Every account's current holder (accounts nobody holds, or whose lease expired, are
    /// left out), for a console that shows who supervises what.
    pub async fn holders(&self) -> Result<Vec<Holder>> {
        Ok(sqlx::query_as::<_, Holder>(AssertSqlSafe(format!(
            "SELECT l.account_id, i.id AS instance, i.host, i.pid, l.epoch
               FROM account_leases l JOIN fleet_instances i ON i.id = l.owner
              WHERE l.expires_at > {NOW}
              ORDER BY l.account_id"
        )))
        .bind(self.clock_offset_s)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Who holds an account's lease now, with its epoch (`None`: nobody, or it expired).
    pub async fn holder(&self, account: AccountId) -> Result<Option<(String, i64)>> {
        Ok(sqlx::query_as(AssertSqlSafe(format!(
            "SELECT owner, epoch FROM account_leases
              WHERE account_id = $2 AND owner IS NOT NULL AND expires_at > {NOW}"
        )))
        .bind(self.clock_offset_s)
        .bind(account)
        .fetch_optional(&self.pool)
        .await?)
    }
}

impl Instance {
    fn offset(&self) -> f64 {
        self.store.clock_offset_s
    }

    /// Acquires one account's lease with a single conditional upsert: won when nobody holds it,
    /// its lease expired, or this instance already holds it (then it is only renewed, and the
    /// epoch stays). `None`: another instance holds it.
    pub async fn acquire(&self, account: AccountId, ttl: Duration) -> Result<Option<Claimed>> {
        // The previous owner is read in the same statement, before the upsert changes it.
        let row: Option<(i64, Option<String>)> = sqlx::query_as(AssertSqlSafe(format!(
            "WITH before AS (
                SELECT owner, expires_at > {NOW} AS valid FROM account_leases WHERE account_id = $2
             )
             INSERT INTO account_leases AS l (account_id, owner, epoch, expires_at, acquired_at)
             VALUES ($2, $3, 1, {NOW} + make_interval(secs => $4), {NOW})
             ON CONFLICT (account_id) DO UPDATE SET
                 owner = EXCLUDED.owner,
                 epoch = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_at > {NOW}
                              THEN l.epoch ELSE l.epoch + 1 END,
                 acquired_at = CASE WHEN l.owner = EXCLUDED.owner AND l.expires_at > {NOW}
                                    THEN l.acquired_at ELSE EXCLUDED.acquired_at END,
                 expires_at = EXCLUDED.expires_at
             WHERE l.owner IS NULL OR l.expires_at <= {NOW} OR l.owner = EXCLUDED.owner
             RETURNING l.epoch,
                       (SELECT owner FROM before WHERE owner IS DISTINCT FROM $3 AND NOT valid)"
        )))
        .bind(self.offset())
        .bind(account)
        .bind(self.id.as_str())
        .bind(ttl.as_secs_f64())
        .fetch_optional(&self.store.pool)
        .await?;
        Ok(row.map(|(epoch, previous)| {
            let takeover = previous.is_some();
            if takeover {
                self.counters.takeovers.fetch_add(1, Ordering::Relaxed);
            }
            Claimed {
                lease: Lease { account, epoch },
                takeover,
            }
        }))
    }

    /// Renews the given leases in one statement and returns the accounts whose lease it renewed.
    /// A lease left out of the answer is lost (expired, or another instance holds it under a
    /// newer epoch): stop that account at once and write nothing for it.
    pub async fn renew(&self, held: &[Lease], ttl: Duration) -> Result<Vec<AccountId>> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let accounts: Vec<AccountId> = held.iter().map(|l| l.account).collect();
        let epochs: Vec<i64> = held.iter().map(|l| l.epoch).collect();
        let renewed = sqlx::query_scalar(AssertSqlSafe(format!(
            "UPDATE account_leases l SET expires_at = {NOW} + make_interval(secs => $4)
               FROM unnest($2::int8[], $3::int8[]) AS h(account_id, epoch)
              WHERE l.account_id = h.account_id AND l.epoch = h.epoch
                AND l.owner = $5 AND l.expires_at > {NOW}
             RETURNING l.account_id"
        )))
        .bind(self.offset())
        .bind(&accounts)
        .bind(&epochs)
        .bind(ttl.as_secs_f64())
        .bind(self.id.as_str())
        .fetch_all(&self.store.pool)
        .await;
        if renewed.is_err() {
            self.counters.renew_failures.fetch_add(1, Ordering::Relaxed);
        }
        Ok(renewed?)
    }

    /// Claims up to `limit` leases that nobody holds or that expired, skipping rows another
    /// instance is claiming at this moment (`FOR UPDATE SKIP LOCKED`), so instances claiming
    /// together split them without waiting on each other. The longest-expired go first.
    pub async fn claim(&self, limit: i64, ttl: Duration) -> Result<Vec<Claimed>> {
        if limit <= 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<(AccountId, i64, Option<String>)> = sqlx::query_as(AssertSqlSafe(format!(
            "WITH free AS (
                SELECT account_id, owner FROM account_leases
                 WHERE owner IS NULL OR expires_at <= {NOW}
                 ORDER BY expires_at, account_id
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE account_leases l
                SET owner = $3, epoch = l.epoch + 1,
                    expires_at = {NOW} + make_interval(secs => $4), acquired_at = {NOW}
               FROM free
              WHERE l.account_id = free.account_id
             RETURNING l.account_id, l.epoch, free.owner"
        )))
        .bind(self.offset())
        .bind(limit)
        .bind(self.id.as_str())
        .bind(ttl.as_secs_f64())
        .fetch_all(&self.store.pool)
        .await?;
        let claimed: Vec<Claimed> = rows
            .into_iter()
            .map(|(account, epoch, previous)| Claimed {
                lease: Lease { account, epoch },
                takeover: previous.is_some(),
            })
            .collect();
        let takeovers = claimed.iter().filter(|c| c.takeover).count() as u64;
        self.counters
            .takeovers
            .fetch_add(takeovers, Ordering::Relaxed);
        Ok(claimed)
    }

    /// Gives leases up at once (after their connections were closed), so another instance can
    /// claim them without waiting for the expiry, and wakes the fleet's keepers to do so.
    pub async fn release(&self, accounts: &[AccountId]) -> Result<u64> {
        if accounts.is_empty() {
            return Ok(0);
        }
        let mut tx = self.store.pool.begin().await?;
        let released = self.release_in(&mut tx, Some(accounts)).await?;
        tx.commit().await?;
        Ok(released)
    }

    /// Leaves the fleet: every lease released, the instance marked stopped.
    pub async fn leave(&self) -> Result<()> {
        let mut tx = self.store.pool.begin().await?;
        self.release_in(&mut tx, None).await?;
        self.write_heartbeat(&mut tx, true).await?;
        tx.commit().await?;
        tracing::info!(instance = %self.id, "left the fleet");
        Ok(())
    }

    /// Releases these leases of this instance (`None`: all of them) and announces it, in `tx`.
    async fn release_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        accounts: Option<&[AccountId]>,
    ) -> Result<u64> {
        let done = sqlx::query(AssertSqlSafe(format!(
            "UPDATE account_leases SET owner = NULL, acquired_at = NULL, expires_at = {NOW}
              WHERE owner = $2 AND ($3::int8[] IS NULL OR account_id = ANY($3))"
        )))
        .bind(self.offset())
        .bind(self.id.as_str())
        .bind(accounts)
        .execute(&mut **tx)
        .await?;
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(crate::keeper::CHANNEL)
            .bind(self.id.as_str())
            .execute(&mut **tx)
            .await?;
        Ok(done.rows_affected())
    }

    /// The latest expiry (Unix seconds, on the database's clock) of the leases other instances
    /// hold that have expired after `after`: a lease another instance stopped renewing.
    pub async fn latest_expiry_after(&self, after: f64) -> Result<Option<f64>> {
        Ok(sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT extract(epoch FROM max(expires_at))::float8 FROM account_leases
              WHERE owner IS NOT NULL AND owner <> $2 AND expires_at <= {NOW}
                AND expires_at > to_timestamp($3)"
        )))
        .bind(self.offset())
        .bind(self.id.as_str())
        .bind(after.max(0.0))
        .fetch_one(&self.store.pool)
        .await?)
    }

    /// Says this instance still runs, with its counters.
    pub async fn heartbeat(&self) -> Result<()> {
        let mut tx = self.store.pool.begin().await?;
        self.write_heartbeat(&mut tx, false).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn write_heartbeat(&self, tx: &mut Transaction<'_, Postgres>, stop: bool) -> Result<()> {
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE fleet_instances
                SET heartbeat_at = {NOW},
                    stopped_at = CASE WHEN $3 THEN {NOW} END,
                    takeovers = $4, renew_failures = $5, stale_writes_refused = $6
              WHERE id = $2"
        )))
        .bind(self.offset())
        .bind(self.id.as_str())
        .bind(stop)
        .bind(count(&self.counters.takeovers))
        .bind(count(&self.counters.renew_failures))
        .bind(count(&self.counters.stale_writes_refused))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// How many accounts there are, how many instances are alive (a heartbeat within `ttl`),
    /// how many leases this instance holds, and how much room the others have below their share.
    pub async fn census(&self, ttl: Duration) -> Result<Census> {
        let (accounts, live_instances, held, room_elsewhere): (i64, i64, i64, i64) =
            sqlx::query_as(AssertSqlSafe(format!(
                "WITH live AS (
                    SELECT id, max_accounts FROM fleet_instances
                     WHERE stopped_at IS NULL
                       AND heartbeat_at > {NOW} - make_interval(secs => $2)
                 ), held AS (
                    SELECT owner, count(*) AS c FROM account_leases
                     WHERE owner IS NOT NULL AND expires_at > {NOW}
                     GROUP BY owner
                 ), n AS (
                    SELECT (SELECT count(*) FROM account_leases) AS accounts,
                           (SELECT count(*) FROM live) AS live
                 )
                 SELECT n.accounts, n.live,
                        coalesce((SELECT c FROM held WHERE owner = $3), 0),
                        coalesce((
                            SELECT sum(greatest(
                                least((n.accounts + greatest(n.live, 1) - 1) / greatest(n.live, 1),
                                      coalesce(live.max_accounts, 2147483647))
                                - coalesce(held.c, 0), 0))
                              FROM live LEFT JOIN held ON held.owner = live.id
                             WHERE live.id <> $3), 0)::int8
                   FROM n"
            )))
            .bind(self.offset())
            .bind(ttl.as_secs_f64())
            .bind(self.id.as_str())
            .fetch_one(&self.store.pool)
            .await?;
        Ok(Census {
            accounts,
            live_instances,
            held,
            room_elsewhere,
        })
    }

    /// Opens a transaction for writing about an account under `lease`. The lease row is checked
    /// (this owner, this epoch, not expired) and locked against a change of owner until the
    /// transaction ends, so a commit made through it can never land after the account changed
    /// hands. A stale lease is refused with [`Error::Stale`], counted, and nothing is written.
    pub async fn begin_fenced(&self, lease: Lease) -> Result<Transaction<'static, Postgres>> {
        let mut tx = self.store.pool.begin().await?;
        let held: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT epoch FROM account_leases
              WHERE account_id = $2 AND owner = $3 AND epoch = $4 AND expires_at > {NOW}
              FOR SHARE"
        )))
        .bind(self.offset())
        .bind(lease.account)
        .bind(self.id.as_str())
        .bind(lease.epoch)
        .fetch_optional(&mut *tx)
        .await?;
        if held.is_none() {
            tx.rollback().await?;
            self.counters
                .stale_writes_refused
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                account = lease.account,
                epoch = lease.epoch,
                "write refused: the lease is stale"
            );
            return Err(Error::Stale {
                account: lease.account,
                epoch: lease.epoch,
            });
        }
        Ok(tx)
    }

    /// Checks, inside the write transaction `conn` is in, that each of `leases` is still this
    /// instance's current, unexpired lease, and locks those rows against a change of owner
    /// until the transaction ends (as [`Instance::begin_fenced`] does for one). Returns the
    /// stale ones (counted and logged): nothing should be written for them.
    pub async fn stale_leases(
        &self,
        conn: &mut sqlx::PgConnection,
        leases: &[Lease],
    ) -> Result<Vec<Lease>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let (accounts, epochs): (Vec<AccountId>, Vec<i64>) =
            leases.iter().map(|l| (l.account, l.epoch)).unzip();
        let current: Vec<AccountId> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT l.account_id FROM account_leases AS l
               JOIN unnest($2::int8[], $3::int8[]) AS f (account_id, epoch)
                 ON l.account_id = f.account_id AND l.epoch = f.epoch
              WHERE l.owner = $4 AND l.expires_at > {NOW}
              FOR SHARE OF l"
        )))
        .bind(self.offset())
        .bind(&accounts)
        .bind(&epochs)
        .bind(self.id.as_str())
        .fetch_all(&mut *conn)
        .await?;
        let current: std::collections::HashSet<AccountId> = current.into_iter().collect();
        let stale: Vec<Lease> = leases
            .iter()
            .filter(|l| !current.contains(&l.account))
            .copied()
            .collect();
        if !stale.is_empty() {
            self.counters
                .stale_writes_refused
                .fetch_add(stale.len() as u64, Ordering::Relaxed);
            tracing::warn!(
                accounts = stale.len(),
                first = stale[0].account,
                "writes refused: the leases are stale"
            );
        }
        Ok(stale)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fair_share_splits_evenly_rounding_up_and_honours_the_cap() {
        let c = |accounts, live_instances| Census {
            accounts,
            live_instances,
            held: 0,
            room_elsewhere: 0,
        };
        assert_eq!(c(300, 3).fair_share(None), 100);
        assert_eq!(c(300, 2).fair_share(None), 150);
        assert_eq!(c(301, 3).fair_share(None), 101);
        assert_eq!(c(300, 3).fair_share(Some(40)), 40);
        // An instance that does not see itself alive yet still takes a share.
        assert_eq!(c(10, 0).fair_share(None), 10);
        assert_eq!(c(0, 3).fair_share(None), 0);
    }
}
