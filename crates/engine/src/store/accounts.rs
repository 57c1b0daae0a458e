//! Accounts: add, list, change, remove (soft: history stays exportable).

use chrono::Utc;
use serde::Deserialize;

use super::{Begin, Db, Fenced, Store, decode, encode, on_db};
use crate::error::{Error, InputError, Result};
use crate::model::{
    Account, AccountChange, AccountId, AccountKind, HeaderRef, NewAccount, SecretName,
};
use crate::time::{from_ms, to_ms};

/// An account row as one JSON object, built by SQLite: a fleet's listing then crosses from
/// SQLite's thread as one value (see [`Store::accounts`]) instead of fourteen a row.
const ACCOUNT_JSON: &str = "json_object('id', id, 'kind', kind, 'name', name, 'url', url, \
     'priority', priority, 'country', country, 'proxy_url', proxy_url, \
     'proxy_secret', proxy_secret, 'headers', json(headers), 'muted', muted, 'notify_live', notify_live, \
     'desired_running', desired_running, 'state', json(state_json), \
     'state_since', state_since, 'created_at', created_at, \
     'identity', json(CASE WHEN remote_id IS NULL THEN NULL \
                      ELSE json_object('id', remote_id, 'name', remote_name) END))";

/// [`ACCOUNT_JSON`] as PostgreSQL writes it (its flags come out as true/false).
const ACCOUNT_JSON_PG: &str = "json_build_object('id', id, 'kind', kind, 'name', name, 'url', url, \
     'priority', priority, 'country', country, 'proxy_url', proxy_url, \
     'proxy_secret', proxy_secret, 'headers', headers::json, 'muted', muted, \
     'notify_live', notify_live, 'desired_running', desired_running, 'state', state_json::json, \
     'state_since', state_since, 'created_at', created_at, \
     'identity', CASE WHEN remote_id IS NULL THEN NULL \
                 ELSE json_build_object('id', remote_id, 'name', remote_name) END)";

/// The statement that adds an account and returns its id.
macro_rules! insert_account {
    () => {
        "INSERT INTO accounts (kind, name, url, priority, country, proxy_url, proxy_secret, \
         headers, muted, notify_live, desired_running, state, state_json, state_since, \
         created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14) RETURNING id"
    };
}

impl Store {
    /// Records who an account is at the remote (its connector reported it on connecting).
    pub async fn set_identity(
        &self,
        id: AccountId,
        identity: &crate::model::Identity,
    ) -> Result<()> {
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            tx.fence(self.fence(), &[id.0]).await?;
            sqlx::query("UPDATE accounts SET remote_id = $1, remote_name = $2 WHERE id = $3")
                .bind(&identity.id)
                .bind(&identity.name)
                .bind(id.0)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// Validates and stores a new account. Every secret it names must already be set.
    pub async fn add_account(&self, new: NewAccount) -> Result<Account> {
        let new = new.validate()?;
        for name in new.secret_refs() {
            if !self.secret_exists(name).await? {
                return Err(InputError::UnknownSecret(name.to_string()).into());
            }
        }
        let now = to_ms(Utc::now());
        let headers = encode(&new.headers)?;
        let initial = new.initial_state();
        let state_json = encode(&initial)?;
        // On a fleet store the account gets its (free) lease in the same statement, so an
        // instance with room claims it at its next round.
        let sql = if self.is_fleet() {
            concat!(
                "WITH a AS (",
                insert_account!(),
                "), \
                     l AS (INSERT INTO account_leases (account_id) SELECT id FROM a) \
                     SELECT id FROM a"
            )
        } else {
            insert_account!()
        };
        let result: std::result::Result<i64, sqlx::Error> = on_db!(self, pool => sqlx::query_scalar(sql)
        .bind(new.kind.as_str())
        .bind(&new.name)
        .bind(&new.url)
        .bind(new.priority)
        .bind(&new.country)
        .bind(&new.proxy_url)
        .bind(new.proxy_secret.as_ref().map(SecretName::as_str))
        .bind(headers)
        .bind(new.muted)
        .bind(new.notify_live)
        .bind(new.desired_running)
        .bind(initial.kind().as_str())
        .bind(&state_json)
        .bind(now)
        .fetch_one(pool)
        .await);
        let id: i64 = match result {
            Ok(id) => id,
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(InputError::DuplicateName(new.name).into());
            }
            Err(e) => return Err(e.into()),
        };
        tracing::info!(account = id, kind = %new.kind, "account added");
        self.account(AccountId(id)).await
    }

    /// Live (not removed) accounts, highest priority first.
    pub async fn accounts(&self) -> Result<Vec<Account>> {
        // One row holding every account: a row per account costs a hand-over between SQLite's
        // thread and this task each, which dominated loading a large fleet.
        let sql = sqlx::AssertSqlSafe(match self.db {
            Db::Sqlite { .. } => format!(
                "SELECT json_group_array(json({ACCOUNT_JSON}) ORDER BY priority DESC, id) \
                 FROM accounts WHERE removed_at IS NULL"
            ),
            Db::Postgres { .. } => format!(
                "SELECT COALESCE(json_agg({ACCOUNT_JSON_PG} ORDER BY priority DESC, id), '[]')::text \
                 FROM accounts WHERE removed_at IS NULL"
            ),
        });
        let json: String = on_db!(self, pool => sqlx::query_scalar(sql).fetch_one(pool).await?);
        decode::<Vec<StoredAccount>>(&json)?
            .into_iter()
            .map(Account::try_from)
            .collect()
    }

    /// One live account, or [`InputError::UnknownAccount`].
    pub async fn account(&self, id: AccountId) -> Result<Account> {
        let sql = sqlx::AssertSqlSafe(match self.db {
            Db::Sqlite { .. } => {
                format!("SELECT {ACCOUNT_JSON} FROM accounts WHERE id = $1 AND removed_at IS NULL")
            }
            Db::Postgres { .. } => format!(
                "SELECT {ACCOUNT_JSON_PG}::text FROM accounts WHERE id = $1 AND removed_at IS NULL"
            ),
        });
        let json: Option<String> = on_db!(self, pool => sqlx::query_scalar(sql)
            .bind(id.0)
            .fetch_optional(pool)
            .await?);
        let json = json.ok_or(InputError::UnknownAccount(id.0))?;
        decode::<StoredAccount>(&json)?.try_into()
    }

    /// Sets whether the account should be running; the supervisor acts on it.
    pub async fn set_desired_running(&self, id: AccountId, desired: bool) -> Result<()> {
        self.update_flag(
            "UPDATE accounts SET desired_running = $1 WHERE id = $2 AND removed_at IS NULL",
            id,
            desired,
        )
        .await
    }

    /// Applies an operator's change (validated) to a live account and returns it as stored.
    pub async fn update_account(&self, id: AccountId, change: AccountChange) -> Result<Account> {
        let change = change.validate()?;
        let result = on_db!(self, pool => sqlx::query(
            "UPDATE accounts SET name = COALESCE($1, name), priority = COALESCE($2, priority), \
             muted = COALESCE($3, muted), notify_live = COALESCE($4, notify_live) \
             WHERE id = $5 AND removed_at IS NULL",
        )
        .bind(&change.name)
        .bind(change.priority)
        .bind(change.muted)
        .bind(change.notify_live)
        .bind(id.0)
        .execute(pool)
        .await
        .map(|done| done.rows_affected()));
        match result {
            Ok(0) => {
                return Err(InputError::UnknownAccount(id.0).into());
            }
            Ok(_) => {}
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                return Err(InputError::DuplicateName(change.name.unwrap_or_default()).into());
            }
            Err(e) => return Err(e.into()),
        }
        self.account(id).await
    }

    async fn update_flag(&self, sql: &'static str, id: AccountId, value: bool) -> Result<()> {
        let done = on_db!(self, pool => sqlx::query(sql)
            .bind(value)
            .bind(id.0)
            .execute(pool)
            .await?
            .rows_affected());
        if done == 0 {
            return Err(InputError::UnknownAccount(id.0).into());
        }
        Ok(())
    }

    /// Takes an account out of the fleet (its history stays exportable). The supervisor or the
    /// offline operations record its last transition first.
    pub(crate) async fn mark_removed(&self, id: AccountId) -> Result<()> {
        // On a fleet store its lease goes with it (and the sealed device store under it).
        let sql = if self.is_fleet() {
            "WITH l AS (DELETE FROM account_leases WHERE account_id = $2) \
             UPDATE accounts SET removed_at = $1, desired_running = FALSE \
             WHERE id = $2 AND removed_at IS NULL"
        } else {
            "UPDATE accounts SET removed_at = $1, desired_running = FALSE \
             WHERE id = $2 AND removed_at IS NULL"
        };
        let done = on_db!(self, pool => sqlx::query(sql)
        .bind(to_ms(Utc::now()))
        .bind(id.0)
        .execute(pool)
        .await?
        .rows_affected());
        if done == 0 {
            return Err(InputError::UnknownAccount(id.0).into());
        }
        tracing::info!(account = id.0, "account removed");
        Ok(())
    }
}

/// An account as [`ACCOUNT_JSON`] renders its row.
#[derive(Deserialize)]
struct StoredAccount {
    id: i64,
    kind: String,
    name: String,
    url: Option<String>,
    priority: i64,
    country: Option<String>,
    proxy_url: Option<String>,
    proxy_secret: Option<String>,
    headers: Vec<HeaderRef>,
    #[serde(deserialize_with = "flag")]
    muted: bool,
    #[serde(default, deserialize_with = "flag")]
    notify_live: bool,
    #[serde(deserialize_with = "flag")]
    desired_running: bool,
    state: crate::state::State,
    state_since: i64,
    created_at: i64,
    identity: Option<crate::model::Identity>,
}

/// A flag as either database writes it in JSON: SQLite's 0/1, PostgreSQL's false/true.
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Flag {
        Bool(bool),
        Int(i64),
    }
    Ok(match Flag::deserialize(d)? {
        Flag::Bool(b) => b,
        Flag::Int(n) => n != 0,
    })
}

impl TryFrom<StoredAccount> for Account {
    type Error = Error;

    fn try_from(a: StoredAccount) -> Result<Self> {
        Ok(Account {
            id: AccountId(a.id),
            kind: a.kind.parse::<AccountKind>().map_err(Error::Decode)?,
            name: a.name,
            url: a.url,
            priority: a.priority,
            country: a.country,
            proxy_url: a.proxy_url,
            proxy_secret: a
                .proxy_secret
                .map(|s| SecretName::parse(&s))
                .transpose()
                .map_err(|e| Error::Decode(e.to_string()))?,
            headers: a.headers,
            muted: a.muted,
            notify_live: a.notify_live,
            desired_running: a.desired_running,
            state: a.state,
            state_since: from_ms(a.state_since),
            created_at: from_ms(a.created_at),
            identity: a.identity,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;
    use crate::store::tests::temp_store;

    fn ws(name: &str) -> NewAccount {
        NewAccount::new(AccountKind::Websocket, name).with_url("ws://127.0.0.1:9/a")
    }

    #[tokio::test]
    async fn accounts_round_trip_with_emoji_quotes_and_rtl_names() {
        let (_tmp, store) = temp_store().await;
        let names = [
            "Toko 🍜 \"Mawar\"",
            "O'Brien's; DROP TABLE accounts;--",
            "متجر الورد ‏٣",
        ];
        let mut ids = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let mut n = ws(name);
            n.priority = 10 * i as i64;
            n.country = Some("id".into());
            ids.push(store.add_account(n).await.expect("add").id);
        }
        let listed = store.accounts().await.expect("list");
        assert_eq!(listed.len(), 3);
        // Highest priority first.
        assert_eq!(listed[0].name, names[2]);
        for (id, name) in ids.iter().zip(names) {
            let a = store.account(*id).await.expect("get");
            assert_eq!(a.name, name);
            assert_eq!(a.country.as_deref(), Some("ID"));
            assert_eq!(a.state, State::INITIAL);
            assert!(a.desired_running);
        }
    }

    #[tokio::test]
    async fn duplicate_live_names_are_refused_but_removed_names_can_be_reused() {
        let (_tmp, store) = temp_store().await;
        let a = store.add_account(ws("Shop A")).await.expect("add");
        let err = store.add_account(ws("Shop A")).await.expect_err("dup");
        assert!(
            matches!(err, Error::Input(InputError::DuplicateName(_))),
            "{err:?}"
        );
        store.mark_removed(a.id).await.expect("remove");
        store
            .add_account(ws("Shop A"))
            .await
            .expect("reuse after removal");
    }

    #[tokio::test]
    async fn unknown_ids_are_input_errors() {
        let (_tmp, store) = temp_store().await;
        for err in [
            store.account(AccountId(42)).await.expect_err("get"),
            store.mark_removed(AccountId(42)).await.expect_err("remove"),
            store
                .set_desired_running(AccountId(42), true)
                .await
                .expect_err("desired"),
        ] {
            assert!(
                matches!(err, Error::Input(InputError::UnknownAccount(42))),
                "{err:?}"
            );
        }
    }

    #[tokio::test]
    async fn referenced_secrets_must_exist() {
        let (_tmp, store) = temp_store().await;
        let mut n = ws("a");
        n.headers = vec![HeaderRef::parse("Authorization=tok").expect("header")];
        let err = store
            .add_account(n.clone())
            .await
            .expect_err("missing secret");
        assert!(
            matches!(err, Error::Input(InputError::UnknownSecret(_))),
            "{err:?}"
        );
        store
            .add_secret_name(&SecretName::parse("tok").expect("name"))
            .await
            .expect("name");
        let a = store.add_account(n).await.expect("add");
        assert_eq!(a.headers[0].secret.as_str(), "tok");
    }
}
