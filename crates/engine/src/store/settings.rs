//! Settings (autorecover, policy values), the run log that tells a crash from a clean stop,
//! and the names of secrets kept in the OS keyring.

use chrono::Utc;
use serde::Serialize;

use super::{Begin, Store, on_db};
use crate::error::{InputError, Result};
use crate::model::SecretName;
use crate::time::{Timestamp, from_ms, to_ms};

const AUTORECOVER: &str = "autorecover";

/// How the previous supervising run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PreviousRun {
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// False when the run never wrote its clean-stop marker: it crashed or was killed.
    pub clean: bool,
}

/// A run just begun, and what the store knows about the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStart {
    pub id: i64,
    pub previous: Option<PreviousRun>,
}

/// One logged change of a setting: a policy value (`section.key`) or `autorecover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SettingChange {
    pub id: i64,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub key: String,
    /// `None`: unset, or unreadable, before.
    pub old: Option<String>,
    pub new: String,
    pub triggered_by: crate::state::TriggeredBy,
}

/// Writes a setting in the transaction `$tx`.
macro_rules! write_setting {
    ($tx:expr, $key:expr, $value:expr, $at:expr) => {
        sqlx::query(
            "INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        )
        .bind($key)
        .bind($value)
        .bind(to_ms($at))
        .execute(&mut *$tx)
        .await
    };
}

/// Logs a change of a setting in the transaction `$tx`. Settings change only at an operator's
/// word (the CLI, the HTTP API, the desktop app).
macro_rules! log_change {
    ($tx:expr, $at:expr, $key:expr, $old:expr, $new:expr) => {
        sqlx::query(
            "INSERT INTO setting_changes (at, key, old_value, new_value, triggered_by) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(to_ms($at))
        .bind($key)
        .bind($old)
        .bind($new)
        .bind(crate::state::TriggeredBy::Operator.as_str())
        .execute(&mut *$tx)
        .await
    };
}

impl Store {
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(on_db!(self, pool =>
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await?))
    }

    pub async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        on_db!(self, pool => {
            let mut conn = pool.acquire().await?;
            write_setting!(conn, key, value, Utc::now())?;
        });
        Ok(())
    }

    /// Reads a setting about to be changed in the same transaction: on PostgreSQL the row is
    /// locked, so two operators changing it at once log their changes one after the other
    /// (SQLite's write transaction already holds the whole database).
    fn setting_to_change(&self) -> &'static str {
        if self.is_fleet() {
            "SELECT value FROM settings WHERE key = $1 FOR UPDATE"
        } else {
            "SELECT value FROM settings WHERE key = $1"
        }
    }

    /// Whether desired-running accounts are restored at startup. On unless turned off.
    pub async fn autorecover(&self) -> Result<bool> {
        match self.setting(AUTORECOVER).await? {
            None => Ok(true),
            Some(v) if v == "on" => Ok(true),
            Some(v) if v == "off" => Ok(false),
            Some(v) => Err(InputError::InvalidSetting {
                key: AUTORECOVER.into(),
                value: v,
                why: "expected on or off; run `lifeline autorecover on` or `off` to fix it".into(),
            }
            .into()),
        }
    }

    /// Policy values; defaults when never set. Stored values that no longer validate (edited by
    /// hand, or written by a newer Lifeline with keys this one does not know) are reported with
    /// the way out, `lifeline policy reset`, which works without reading them.
    pub async fn policy(&self) -> Result<crate::policy::PolicyConfig> {
        match self.setting(crate::policy::config::SETTING_KEY).await? {
            None => Ok(crate::policy::PolicyConfig::default()),
            Some(json) => crate::policy::PolicyConfig::from_json(&json).map_err(|e| {
                InputError::StoredPolicy(e.to_string().trim_end_matches('.').to_owned()).into()
            }),
        }
    }

    /// Validates and stores policy values an operator chose, logging each value that changed
    /// (old → new) in the same transaction; nothing is stored when any value is invalid.
    /// Returns what changed.
    pub async fn set_policy(
        &self,
        cfg: &crate::policy::PolicyConfig,
    ) -> Result<Vec<crate::policy::config::PolicyChange>> {
        cfg.validate()?;
        let json = serde_json::to_string(cfg).map_err(|e| crate::Error::Decode(e.to_string()))?;
        let key = crate::policy::config::SETTING_KEY;
        let now = Utc::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let stored: Option<String> = sqlx::query_scalar(self.setting_to_change())
            .bind(key)
            .fetch_optional(&mut *tx)
            .await?;
            // Never set: the defaults were in force. Unreadable: what was in force is unknown.
            let old = match stored {
                None => Some(crate::policy::PolicyConfig::default()),
                Some(text) => crate::policy::PolicyConfig::from_json(&text).ok(),
            };
            let changes = cfg.changes_from(old.as_ref());
            if changes.is_empty() {
                return Ok(changes);
            }
            write_setting!(tx, key, &json, now)?;
            for c in &changes {
                log_change!(tx, now, &c.key, c.old.as_deref(), &c.new)?;
            }
            tx.commit().await?;
            Ok(changes)
        })
    }

    /// Turns autorecover on or off as an operator asked, logging the change (old → new).
    pub async fn set_autorecover(&self, on: bool) -> Result<()> {
        let new = if on { "on" } else { "off" };
        let now = Utc::now();
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let old: Option<String> = sqlx::query_scalar(self.setting_to_change())
            .bind(AUTORECOVER)
            .fetch_optional(&mut *tx)
            .await?;
            // Never set: on, the default.
            let old = old.unwrap_or_else(|| "on".into());
            if old != new {
                write_setting!(tx, AUTORECOVER, new, now)?;
                log_change!(tx, now, AUTORECOVER, Some(&old), new)?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The latest setting changes, newest first (at most `limit`).
    pub async fn setting_changes(&self, limit: u32) -> Result<Vec<SettingChange>> {
        let rows: Vec<(i64, i64, String, Option<String>, String, String)> = on_db!(self, pool =>
            sqlx::query_as(
                "SELECT id, at, key, old_value, new_value, triggered_by FROM setting_changes \
                 ORDER BY id DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(id, at, key, old, new, by)| SettingChange {
                id,
                at: from_ms(at),
                key,
                old,
                new,
                triggered_by: crate::state::TriggeredBy::parse(&by)
                    .unwrap_or(crate::state::TriggeredBy::Operator),
            })
            .collect())
    }

    /// Marks the start of a supervising run and reports how the previous one ended.
    pub async fn begin_run(&self, at: Timestamp) -> Result<RunStart> {
        let (id, previous) = on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let previous: Option<(i64, Option<i64>, bool)> = sqlx::query_as(
                "SELECT started_at, ended_at, clean FROM runs ORDER BY id DESC LIMIT 1",
            )
            .fetch_optional(&mut *tx)
            .await?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO runs (started_at, pid, version) VALUES ($1, $2, $3) RETURNING id",
            )
            .bind(to_ms(at))
            .bind(i64::from(std::process::id()))
            .bind(env!("CARGO_PKG_VERSION"))
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            (id, previous)
        });
        Ok(RunStart {
            id,
            previous: previous.map(|(started, ended, clean)| PreviousRun {
                started_at: from_ms(started),
                ended_at: ended.map(from_ms),
                clean,
            }),
        })
    }

    /// Writes the clean-stop marker. Call it last in a graceful shutdown.
    pub async fn end_run(&self, id: i64, at: Timestamp) -> Result<()> {
        on_db!(self, pool =>
            sqlx::query("UPDATE runs SET ended_at = $1, clean = TRUE WHERE id = $2")
                .bind(to_ms(at))
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected());
        Ok(())
    }

    /// The most recent run, if any (for `status`).
    pub async fn last_run(&self) -> Result<Option<PreviousRun>> {
        let row: Option<(i64, Option<i64>, bool)> = on_db!(self, pool =>
            sqlx::query_as("SELECT started_at, ended_at, clean FROM runs ORDER BY id DESC LIMIT 1")
                .fetch_optional(pool)
                .await?);
        Ok(row.map(|(started, ended, clean)| PreviousRun {
            started_at: from_ms(started),
            ended_at: ended.map(from_ms),
            clean,
        }))
    }

    pub async fn add_secret_name(&self, name: &SecretName) -> Result<()> {
        let now = to_ms(Utc::now());
        on_db!(self, pool => sqlx::query(
            "INSERT INTO secrets (name, created_at, updated_at) VALUES ($1, $2, $2) \
             ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at",
        )
        .bind(name.as_str())
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    /// Forgets a secret name; true if it was known.
    pub async fn remove_secret_name(&self, name: &SecretName) -> Result<bool> {
        let done = on_db!(self, pool => sqlx::query("DELETE FROM secrets WHERE name = $1")
            .bind(name.as_str())
            .execute(pool)
            .await?
            .rows_affected());
        Ok(done > 0)
    }

    pub async fn secret_exists(&self, name: &SecretName) -> Result<bool> {
        let n: i64 = on_db!(self, pool =>
            sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE name = $1")
                .bind(name.as_str())
                .fetch_one(pool)
                .await?);
        Ok(n > 0)
    }

    pub async fn secret_names(&self) -> Result<Vec<SecretName>> {
        let names: Vec<String> = on_db!(self, pool =>
            sqlx::query_scalar("SELECT name FROM secrets ORDER BY name")
                .fetch_all(pool)
                .await?);
        names
            .iter()
            .map(|n| SecretName::parse(n).map_err(|e| crate::Error::Decode(e.to_string())))
            .collect()
    }

    /// Names of live accounts that use the secret, so deleting it can be refused with a reason.
    pub async fn accounts_using_secret(&self, name: &SecretName) -> Result<Vec<String>> {
        let accounts = self.accounts().await?;
        Ok(accounts
            .into_iter()
            .filter(|a| {
                a.proxy_secret.as_ref() == Some(name) || a.headers.iter().any(|h| &h.secret == name)
            })
            .map(|a| a.name)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::store::tests::temp_store;

    #[tokio::test]
    async fn crash_and_clean_runs_are_told_apart() {
        let (tmp, store) = temp_store().await;
        let t0 = Utc::now();
        let first = store.begin_run(t0).await.expect("begin");
        assert_eq!(first.previous, None);
        // First run dies without a clean marker.
        let second = store
            .begin_run(t0 + Duration::seconds(5))
            .await
            .expect("begin");
        let prev = second.previous.expect("previous run");
        assert!(!prev.clean);
        assert_eq!(prev.ended_at, None);
        store
            .end_run(second.id, t0 + Duration::seconds(9))
            .await
            .expect("end");
        store.close().await;
        // Survives reopening the database, as it must across process restarts.
        let store = Store::open_path(&tmp.path().join("t.db"))
            .await
            .expect("reopen");
        let third = store
            .begin_run(t0 + Duration::seconds(20))
            .await
            .expect("begin");
        let prev = third.previous.expect("previous run");
        assert!(prev.clean);
        assert_eq!(
            prev.ended_at,
            Some(from_ms(to_ms(t0 + Duration::seconds(9))))
        );
    }

    #[tokio::test]
    async fn unusable_stored_policy_says_how_to_get_back_to_the_defaults() {
        let (_tmp, store) = temp_store().await;
        for stored in [
            r#"{"pacing":{"rate_per_s":0}}"#,
            r#"{"pacing":{"from_a_newer_lifeline":1}}"#,
            "not json",
        ] {
            store.set_setting("policy", stored).await.expect("set");
            let err = store.policy().await.expect_err("unusable");
            assert!(err.is_input(), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains("lifeline policy reset"), "{msg}");
        }
        let msg = store.policy().await.expect_err("bad").to_string();
        assert!(msg.contains("not json"), "says what is wrong: {msg}");
        store
            .set_policy(&crate::policy::PolicyConfig::default())
            .await
            .expect("reset");
        assert_eq!(
            store.policy().await.expect("usable again"),
            crate::policy::PolicyConfig::default()
        );
    }

    #[tokio::test]
    async fn autorecover_defaults_on_and_persists() {
        let (_tmp, store) = temp_store().await;
        assert!(store.autorecover().await.expect("get"));
        store.set_autorecover(false).await.expect("set");
        assert!(!store.autorecover().await.expect("get"));
        // Logged once, old → new; turning it off again changes nothing.
        store.set_autorecover(false).await.expect("set");
        let log = store.setting_changes(10).await.expect("log");
        assert_eq!(log.len(), 1);
        assert_eq!(
            (
                log[0].key.as_str(),
                log[0].old.as_deref(),
                log[0].new.as_str()
            ),
            ("autorecover", Some("on"), "off")
        );
        store
            .set_setting("autorecover", "maybe")
            .await
            .expect("set");
        assert!(store.autorecover().await.expect_err("bad").is_input());
    }
}
