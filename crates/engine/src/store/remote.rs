//! Sessions at the remote that connectors report (a creator's live broadcasts): kept per account
//! and key, their counts updated while they run, closed when they end. The engine stores them
//! without knowing what they count.

use std::collections::HashMap;

use super::{Begin, Fenced, Store, decode, encode, on_db};
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
        on_db!(self, pool => {
        let mut tx = pool.begin_write().await?;
        let accounts: Vec<i64> = sessions.iter().map(|(a, _)| a.0).collect();
        tx.fence(self.fence(), &accounts).await?;
        for (account, s) in sessions {
            let metrics = encode(&s.metrics)?;
            sqlx::query(
                "INSERT INTO remote_sessions \
                     (account_id, key, started_at, ended_at, end_how, metrics, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
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
        });
        Ok(())
    }

    /// Each account's session still open (at most one per account: the latest), to continue
    /// after a restart.
    pub async fn open_remote_sessions(&self) -> Result<HashMap<AccountId, RemoteSession>> {
        let rows: Vec<SessionRow> = on_db!(self, pool => sqlx::query_as(
            "SELECT account_id, key, started_at, ended_at, end_how, metrics \
             FROM remote_sessions WHERE ended_at IS NULL ORDER BY started_at, id",
        )
        .fetch_all(pool)
        .await?);
        let mut open = HashMap::new();
        for row in rows {
            open.insert(AccountId(row.0), session(row)?);
        }
        Ok(open)
    }

    /// An account's sessions, newest first, at most `limit`.
    pub async fn remote_sessions(&self, id: AccountId, limit: u32) -> Result<Vec<RemoteSession>> {
        let rows: Vec<SessionRow> = on_db!(self, pool => sqlx::query_as(
            "SELECT account_id, key, started_at, ended_at, end_how, metrics \
             FROM remote_sessions WHERE account_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(id.0)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(session).collect()
    }
}

/// `account_id, key, started_at, ended_at, end_how, metrics`.
type SessionRow = (i64, String, i64, Option<i64>, Option<String>, String);

fn session((_, key, started_at, ended_at, end, metrics): SessionRow) -> Result<RemoteSession> {
    Ok(RemoteSession {
        key,
        started_at: from_ms(started_at),
        ended_at: ended_at.map(from_ms),
        end,
        metrics: decode(&metrics)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AccountKind, NewAccount};
    use crate::store::tests::temp_store;
    use crate::time::parse_time;

    fn at(s: &str) -> crate::time::Timestamp {
        parse_time(s).expect("time")
    }

    fn live(key: &str, likes: i64, end: Option<&str>) -> RemoteSession {
        RemoteSession {
            key: key.into(),
            started_at: at("2026-12-01T10:00:00Z"),
            ended_at: end.map(|_| at("2026-12-01T11:00:00Z")),
            end: end.map(str::to_owned),
            metrics: vec![("likes".into(), likes), ("gifts".into(), 2)],
        }
    }

    #[tokio::test]
    async fn a_live_is_updated_in_place_ended_once_and_never_reopened() {
        let (_tmp, store) = temp_store().await;
        let a = store
            .add_account(NewAccount::new(AccountKind::Tiktok, "watch").with_url("@mawar"))
            .await
            .expect("add")
            .id;
        let now = at("2026-12-01T10:30:00Z");
        store
            .save_remote_sessions(&[(a, live("7", 10, None))], now)
            .await
            .expect("save");
        store
            .save_remote_sessions(&[(a, live("7", 25, None))], now)
            .await
            .expect("update");
        let open = store.open_remote_sessions().await.expect("open");
        assert_eq!(open[&a], live("7", 25, None));
        store
            .save_remote_sessions(&[(a, live("7", 30, Some("ended")))], now)
            .await
            .expect("end");
        // A late report from a connection that was closed cannot reopen it or change its counts.
        store
            .save_remote_sessions(&[(a, live("7", 99, None))], now)
            .await
            .expect("late");
        assert!(store.open_remote_sessions().await.expect("open").is_empty());
        assert_eq!(
            store.remote_sessions(a, 10).await.expect("lives"),
            vec![live("7", 30, Some("ended"))]
        );
    }

    /// The accounts table is rebuilt to take the new kind: a database written by the previous
    /// schema keeps every account, event, session and breaker, and its references hold.
    #[tokio::test]
    async fn the_rebuild_for_the_new_kind_keeps_every_row_and_reference() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("old.db");
        {
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = sqlx::sqlite::SqlitePool::connect_with(options)
                .await
                .expect("pool");
            super::super::MIGRATOR
                .run_to(7, &pool)
                .await
                .expect("old schema");
            for sql in [
                "INSERT INTO accounts (id, kind, name, url, state_since, created_at, remote_id) \
                 VALUES (1, 'websocket', 'feed', 'ws://h/x', 5, 5, NULL), \
                        (2, 'whatsapp', 'toko', NULL, 6, 6, '+6281234567890')",
                "INSERT INTO events (account_id, at, from_state, to_state, state_json, triggered_by) \
                 VALUES (2, 7, 'stopped', 'connecting', '{\"state\":\"connecting\"}', 'operator')",
                "INSERT INTO sessions (account_id, started_at) VALUES (1, 8)",
                "INSERT INTO breakers (account_id, state_json, updated_at) VALUES (1, '{}', 9)",
            ] {
                sqlx::query(sql).execute(&pool).await.expect("old rows");
            }
            pool.close().await;
        }
        let store = Store::open_path(&path).await.expect("upgrade");
        let accounts = store.accounts().await.expect("accounts");
        assert_eq!(accounts.len(), 2);
        assert_eq!(
            accounts
                .iter()
                .find(|a| a.id == AccountId(2))
                .and_then(|a| a.identity.as_ref())
                .map(|i| i.id.as_str()),
            Some("+6281234567890")
        );
        let count = |sql: &'static str| {
            let pool = store.pool().clone();
            async move {
                sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&pool)
                    .await
                    .expect("count")
            }
        };
        assert_eq!(count("SELECT COUNT(*) FROM events").await, 1);
        assert_eq!(count("SELECT COUNT(*) FROM sessions").await, 1);
        assert_eq!(count("SELECT COUNT(*) FROM breakers").await, 1);
        assert_eq!(
            count("SELECT COUNT(*) FROM pragma_foreign_key_check").await,
            0
        );
        assert_eq!(
            count("SELECT foreign_keys FROM pragma_foreign_keys").await,
            1
        );
        // The new kind is accepted, anything else still refused by the table itself.
        store
            .add_account(NewAccount::new(AccountKind::Tiktok, "live").with_url("@melati"))
            .await
            .expect("tiktok");
        let bad = sqlx::query(
            "INSERT INTO accounts (kind, name, state_since, created_at) VALUES ('fax', 'x', 1, 1)",
        )
        .execute(store.pool())
        .await;
        assert!(bad.is_err());
    }
}
