//! Sessions at the remote that connectors report (a creator's live broadcasts): kept per account
//! and key, their counts updated while they run, closed when they end. The engine stores them
//! without knowing what they count.

use std::collections::HashMap;

use sqlx::Row;

use super::{Store, decode, encode};
use crate::connector::RemoteSession;
use crate::error::Result;
use crate::model::AccountId;
use crate::time::{from_ms, to_ms};

impl Store {
    /// Inserts or updates sessions by (account, key), in one transaction. A session already
    /// ended keeps its end: a late update from a connection that was closed cannot reopen it.
    pub async fn save_remote_sessions(
        &self,
        sessions: &[(AccountId, RemoteSession)],
        at: crate::time::Timestamp,
    ) -> Result<()> {
        if sessions.is_empty() {
            return Ok(());
        }
        let now = to_ms(at);
        let mut tx = self.pool.begin().await?;
        for (account, s) in sessions {
            let metrics = encode(&s.metrics)?;
            sqlx::query(
                "INSERT INTO remote_sessions \
                     (account_id, key, started_at, ended_at, end_how, metrics, updated_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (account_id, key) DO UPDATE SET \
                     ended_at = COALESCE(remote_sessions.ended_at, excluded.ended_at), \
                     end_how = COALESCE(remote_sessions.end_how, excluded.end_how), \
                     metrics = CASE WHEN remote_sessions.ended_at IS NULL \
                                    THEN excluded.metrics ELSE remote_sessions.metrics END, \
                     updated_at = excluded.updated_at",
            )
            .bind(account.0)
            .bind(&s.key)
            .bind(to_ms(s.started_at))
            .bind(s.ended_at.map(to_ms))
            .bind(&s.end)
            .bind(metrics)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Each account's session still open (at most one per account: the latest), to continue
    /// after a restart.
    pub async fn open_remote_sessions(&self) -> Result<HashMap<AccountId, RemoteSession>> {
        let rows = sqlx::query(
            "SELECT account_id, key, started_at, ended_at, end_how, metrics \
             FROM remote_sessions WHERE ended_at IS NULL ORDER BY started_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut open = HashMap::new();
        for row in rows {
            open.insert(AccountId(row.try_get("account_id")?), session(&row)?);
        }
        Ok(open)
    }

    /// An account's sessions, newest first, at most `limit`.
    pub async fn remote_sessions(&self, id: AccountId, limit: u32) -> Result<Vec<RemoteSession>> {
        let rows = sqlx::query(
            "SELECT account_id, key, started_at, ended_at, end_how, metrics \
             FROM remote_sessions WHERE account_id = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2",
        )
        .bind(id.0)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session).collect()
    }
}

fn session(row: &sqlx::sqlite::SqliteRow) -> Result<RemoteSession> {
    let metrics: String = row.try_get("metrics")?;
    Ok(RemoteSession {
        key: row.try_get("key")?,
        started_at: from_ms(row.try_get("started_at")?),
        ended_at: row.try_get::<Option<i64>, _>("ended_at")?.map(from_ms),
        end: row.try_get("end_how")?,
        metrics: decode(&metrics)?,
    })
}
