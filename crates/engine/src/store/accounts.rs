//! Accounts: add, list, change, remove (soft: history stays exportable).

use chrono::Utc;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, decode, encode};
use crate::error::{Error, InputError, Result};
use crate::model::{Account, AccountId, AccountKind, HeaderRef, NewAccount, SecretName};
use crate::time::{from_ms, to_ms};

const ACCOUNT_COLUMNS: &str = "id, kind, name, url, priority, country, proxy_url, proxy_secret, \
     headers, muted, desired_running, state_json, state_since, created_at";

impl Store {
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
        let result = sqlx::query(
            "INSERT INTO accounts (kind, name, url, priority, country, proxy_url, proxy_secret, headers, \
             muted, desired_running, state, state_json, state_since, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(new.kind.as_str())
        .bind(&new.name)
        .bind(&new.url)
        .bind(new.priority)
        .bind(&new.country)
        .bind(&new.proxy_url)
        .bind(new.proxy_secret.as_ref().map(SecretName::as_str))
        .bind(headers)
        .bind(new.muted)
        .bind(new.desired_running)
        .bind(initial.kind().as_str())
        .bind(state_json)
        .bind(now)
        .bind(now)
        .fetch_one(&self.pool)
        .await;
        let id: i64 = match result {
            Ok(row) => row.try_get(0)?,
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
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE removed_at IS NULL ORDER BY priority DESC, id"
        ));
        let rows = sqlx::query(sql).fetch_all(&self.pool).await?;
        rows.iter().map(account_from_row).collect()
    }

    /// One live account, or [`InputError::UnknownAccount`].
    pub async fn account(&self, id: AccountId) -> Result<Account> {
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = ? AND removed_at IS NULL"
        ));
        let row = sqlx::query(sql)
            .bind(id.0)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(InputError::UnknownAccount(id.0))?;
        account_from_row(&row)
    }

    /// Sets whether the account should be running; the supervisor acts on it.
    pub async fn set_desired_running(&self, id: AccountId, desired: bool) -> Result<()> {
        self.update_flag(
            "UPDATE accounts SET desired_running = ? WHERE id = ? AND removed_at IS NULL",
            id,
            desired,
        )
        .await
    }

    /// Silences (or unsilences) desktop notifications for the account.
    pub async fn set_muted(&self, id: AccountId, muted: bool) -> Result<()> {
        self.update_flag(
            "UPDATE accounts SET muted = ? WHERE id = ? AND removed_at IS NULL",
            id,
            muted,
        )
        .await
    }

    async fn update_flag(&self, sql: &'static str, id: AccountId, value: bool) -> Result<()> {
        let done = sqlx::query(sql)
            .bind(value)
            .bind(id.0)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(InputError::UnknownAccount(id.0).into());
        }
        Ok(())
    }

    /// Takes an account out of the fleet (its history stays exportable). The supervisor or the
    /// offline operations record its last transition first.
    pub(crate) async fn mark_removed(&self, id: AccountId) -> Result<()> {
        let done = sqlx::query(
            "UPDATE accounts SET removed_at = ?, desired_running = 0 WHERE id = ? AND removed_at IS NULL",
        )
        .bind(to_ms(Utc::now()))
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(InputError::UnknownAccount(id.0).into());
        }
        tracing::info!(account = id.0, "account removed");
        Ok(())
    }
}

fn account_from_row(row: &SqliteRow) -> Result<Account> {
    let kind: String = row.try_get("kind")?;
    let kind = kind.parse::<AccountKind>().map_err(Error::Decode)?;
    let headers: String = row.try_get("headers")?;
    let proxy_secret: Option<String> = row.try_get("proxy_secret")?;
    let state_json: String = row.try_get("state_json")?;
    Ok(Account {
        id: AccountId(row.try_get("id")?),
        kind,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        priority: row.try_get("priority")?,
        country: row.try_get("country")?,
        proxy_url: row.try_get("proxy_url")?,
        proxy_secret: proxy_secret
            .map(|s| SecretName::parse(&s))
            .transpose()
            .map_err(|e| Error::Decode(e.to_string()))?,
        headers: decode::<Vec<HeaderRef>>(&headers)?,
        muted: row.try_get("muted")?,
        desired_running: row.try_get("desired_running")?,
        state: decode(&state_json)?,
        state_since: from_ms(row.try_get("state_since")?),
        created_at: from_ms(row.try_get("created_at")?),
    })
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
