//! What the supervisor persists beyond transitions: breakers and the run heartbeat.

use std::collections::HashMap;

use super::{Begin, Fenced, Store, decode, encode, on_db};
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
        let json = encode(breaker)?;
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            tx.fence(self.fence(), &[id.0]).await?;
            sqlx::query(
                "INSERT INTO breakers (account_id, state_json, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (account_id) DO UPDATE SET state_json = excluded.state_json, \
                 updated_at = excluded.updated_at",
            )
            .bind(id.0)
            .bind(&json)
            .bind(to_ms(at))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// One account's breaker (closed when none was ever saved).
    pub async fn breaker(&self, id: AccountId) -> Result<Breaker> {
        let json: Option<String> = on_db!(self, pool =>
            sqlx::query_scalar("SELECT state_json FROM breakers WHERE account_id = $1")
                .bind(id.0)
                .fetch_optional(pool)
                .await?);
        json.map_or_else(|| Ok(Breaker::default()), |j| decode(&j))
    }

    pub async fn breakers(&self) -> Result<HashMap<AccountId, Breaker>> {
        let rows: Vec<(i64, String)> = on_db!(self, pool =>
            sqlx::query_as("SELECT account_id, state_json FROM breakers")
                .fetch_all(pool)
                .await?);
        rows.iter()
            .map(|(id, json)| Ok((AccountId(*id), decode(json)?)))
            .collect()
    }

    /// Records that the run is alive; a crash is dated by its last heartbeat.
    pub async fn heartbeat(&self, run_id: i64, at: Timestamp) -> Result<()> {
        on_db!(self, pool => sqlx::query("UPDATE runs SET last_seen = $1 WHERE id = $2")
            .bind(to_ms(at))
            .bind(run_id)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// The last heartbeat of the most recent run, if it had one.
    pub async fn last_heartbeat(&self) -> Result<Option<Timestamp>> {
        let v: Option<Option<i64>> = on_db!(self, pool =>
            sqlx::query_scalar("SELECT last_seen FROM runs ORDER BY id DESC LIMIT 1")
                .fetch_optional(pool)
                .await?);
        Ok(v.flatten().map(from_ms))
    }

    /// The last heartbeat of the run before `run_id`, if it had one.
    pub async fn previous_last_seen(&self, run_id: i64) -> Result<Option<Timestamp>> {
        let v: Option<Option<i64>> = on_db!(self, pool =>
            sqlx::query_scalar("SELECT last_seen FROM runs WHERE id < $1 ORDER BY id DESC LIMIT 1")
                .bind(run_id)
                .fetch_optional(pool)
                .await?);
        Ok(v.flatten().map(from_ms))
    }
}
