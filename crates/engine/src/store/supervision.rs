//! What the supervisor persists beyond transitions: breakers, the run heartbeat, the command
//! queue from admin faces, and the facts health is computed from.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, decode, encode};
use crate::error::Result;
use crate::model::AccountId;
use crate::policy::breaker::Breaker;
use crate::time::{Timestamp, from_ms, to_ms};

/// A command queued by an admin face for the running supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCommand {
    pub id: i64,
    pub account: Option<AccountId>,
    pub command: String,
}

impl Store {
    pub async fn save_breaker(
        &self,
        id: AccountId,
        breaker: &Breaker,
        at: Timestamp,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO breakers (account_id, state_json, updated_at) VALUES (?, ?, ?) \
             ON CONFLICT (account_id) DO UPDATE SET state_json = excluded.state_json, updated_at = excluded.updated_at",
        )
        .bind(id.0)
        .bind(encode(breaker)?)
        .bind(to_ms(at))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn breakers(&self) -> Result<HashMap<AccountId, Breaker>> {
        let rows = sqlx::query("SELECT account_id, state_json FROM breakers")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let json: String = r.try_get(1)?;
                Ok((AccountId(r.try_get(0)?), decode(&json)?))
            })
            .collect()
    }

    /// Records that the run is alive; a crash is dated by its last heartbeat.
    pub async fn heartbeat(&self, run_id: i64, at: Timestamp) -> Result<()> {
        sqlx::query("UPDATE runs SET last_seen = ? WHERE id = ?")
            .bind(to_ms(at))
            .bind(run_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The last heartbeat of the run before `run_id`, if it had one.
    pub async fn previous_last_seen(&self, run_id: i64) -> Result<Option<Timestamp>> {
        let v: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_seen FROM runs WHERE id < ? ORDER BY id DESC LIMIT 1")
                .bind(run_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(v.flatten().map(from_ms))
    }

    pub async fn enqueue_command(
        &self,
        account: Option<AccountId>,
        command: &str,
        at: Timestamp,
    ) -> Result<()> {
        sqlx::query("INSERT INTO commands (account_id, command, created_at) VALUES (?, ?, ?)")
            .bind(account.map(|a| a.0))
            .bind(command)
            .bind(to_ms(at))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn last_command_id(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM commands")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    pub async fn commands_after(&self, cursor: i64) -> Result<Vec<QueuedCommand>> {
        let rows = sqlx::query(
            "SELECT id, account_id, command FROM commands WHERE id > ? ORDER BY id LIMIT 1000",
        )
        .bind(cursor)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedCommand {
                    id: r.try_get(0)?,
                    account: r.try_get::<Option<i64>, _>(1)?.map(AccountId),
                    command: r.try_get(2)?,
                })
            })
            .collect()
    }

    pub async fn prune_commands(&self, before: Timestamp) -> Result<()> {
        sqlx::query("DELETE FROM commands WHERE created_at < ?")
            .bind(to_ms(before))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Connected intervals overlapping `[since, now)`, per live account.
    pub async fn connected_intervals(
        &self,
        since: Timestamp,
    ) -> Result<HashMap<AccountId, Vec<(Timestamp, Option<Timestamp>)>>> {
        let rows = sqlx::query(
            "SELECT s.account_id, s.started_at, s.ended_at FROM sessions s JOIN accounts a ON a.id = s.account_id \
             WHERE a.removed_at IS NULL AND (s.ended_at IS NULL OR s.ended_at > ?)",
        )
        .bind(to_ms(since))
        .fetch_all(&self.pool)
        .await?;
        let mut map: HashMap<AccountId, Vec<_>> = HashMap::new();
        for r in &rows {
            let id = AccountId(r.try_get(0)?);
            let end: Option<i64> = r.try_get(2)?;
            map.entry(id)
                .or_default()
                .push((from_ms(r.try_get(1)?), end.map(from_ms)));
        }
        Ok(map)
    }

    /// Failures (transitions into backoff or paused) since `since`, per account.
    pub async fn failures_since(&self, since: Timestamp) -> Result<HashMap<AccountId, u32>> {
        let rows = sqlx::query(
            "SELECT account_id, COUNT(*) FROM events WHERE at >= ? AND to_state IN ('backoff', 'paused') \
             GROUP BY account_id",
        )
        .bind(to_ms(since))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let n: i64 = r.try_get(1)?;
                Ok((
                    AccountId(r.try_get(0)?),
                    u32::try_from(n).unwrap_or(u32::MAX),
                ))
            })
            .collect()
    }
}
