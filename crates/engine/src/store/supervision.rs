//! What the supervisor persists beyond transitions: breakers and the run heartbeat.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, decode, encode};
use crate::error::Result;
use crate::model::AccountId;
use crate::policy::breaker::Breaker;
use crate::time::{Timestamp, from_ms, to_ms};

impl Store {
    pub(crate) async fn save_breaker(
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

    /// One account's breaker (closed when none was ever saved).
    pub async fn breaker(&self, id: AccountId) -> Result<Breaker> {
        let json: Option<String> =
            sqlx::query_scalar("SELECT state_json FROM breakers WHERE account_id = ?")
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
        json.map_or_else(|| Ok(Breaker::default()), |j| decode(&j))
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

    /// The last heartbeat of the most recent run, if it had one.
    pub async fn last_heartbeat(&self) -> Result<Option<Timestamp>> {
        let v: Option<Option<i64>> =
            sqlx::query_scalar("SELECT last_seen FROM runs ORDER BY id DESC LIMIT 1")
                .fetch_optional(&self.pool)
                .await?;
        Ok(v.flatten().map(from_ms))
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
}
