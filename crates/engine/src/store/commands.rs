//! The command table, through which operations reach a supervisor running in another process,
//! with each one's outcome; and the link code of a link asked for from the CLI while it waits.

use super::{Store, on_db};
use crate::connector::{LinkCode, LinkMode};
use crate::error::Result;
use crate::model::AccountId;
use crate::ops::Op;
use crate::time::{Timestamp, from_ms, to_ms};

/// A queued command as read back. `op` is `None` for a row this version does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedCommand {
    pub id: i64,
    pub name: String,
    pub op: Option<Op>,
}

/// How the supervisor answered a queued command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    Done,
    Failed {
        message: String,
        /// The operator's input was refused (as opposed to a failure).
        input: bool,
    },
}

impl Store {
    /// Queues an operation for the running supervisor; returns its id.
    pub async fn enqueue(&self, op: &Op, at: Timestamp) -> Result<i64> {
        let (name, account, arg) = op.encode();
        Ok(on_db!(self, pool => sqlx::query_scalar(
            "INSERT INTO commands (account_id, command, arg, created_at) VALUES ($1, $2, $3, $4) \
             RETURNING id",
        )
        .bind(account.map(|a| a.0))
        .bind(name)
        .bind(arg)
        .bind(to_ms(at))
        .fetch_one(pool)
        .await?))
    }

    pub async fn last_command_id(&self) -> Result<i64> {
        Ok(
            on_db!(self, pool => sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM commands")
            .fetch_one(pool)
            .await?),
        )
    }

    /// Commands queued after `cursor` and not answered yet, oldest first.
    pub async fn commands_after(&self, cursor: i64) -> Result<Vec<QueuedCommand>> {
        let rows: Vec<(i64, Option<i64>, String, Option<String>)> = on_db!(self, pool => sqlx::query_as(
            "SELECT id, account_id, command, arg FROM commands WHERE id > $1 AND done_at IS NULL \
             ORDER BY id LIMIT 1000",
        )
        .bind(cursor)
        .fetch_all(pool)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(id, account, name, arg)| QueuedCommand {
                id,
                op: Op::decode(&name, account.map(AccountId), arg.as_deref()),
                name,
            })
            .collect())
    }

    /// Records a command's outcome, unless someone answered it already; true if this did.
    pub async fn answer_command(&self, id: i64, outcome: &CommandOutcome) -> Result<bool> {
        let (error, input) = match outcome {
            CommandOutcome::Done => (None, false),
            CommandOutcome::Failed { message, input } => (Some(message.as_str()), *input),
        };
        let done = on_db!(self, pool => sqlx::query(
            "UPDATE commands SET done_at = $1, error = $2, error_input = $3 \
             WHERE id = $4 AND done_at IS NULL",
        )
        .bind(to_ms(chrono::Utc::now()))
        .bind(error)
        .bind(input)
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected());
        Ok(done == 1)
    }

    /// The outcome of a command, once it was answered.
    pub async fn command_outcome(&self, id: i64) -> Result<Option<CommandOutcome>> {
        let row: Option<(Option<i64>, Option<String>, bool)> = on_db!(self, pool =>
            sqlx::query_as("SELECT done_at, error, error_input FROM commands WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?);
        Ok(match row {
            Some((Some(_), None, _)) => Some(CommandOutcome::Done),
            Some((Some(_), Some(message), input)) => {
                Some(CommandOutcome::Failed { message, input })
            }
            _ => None,
        })
    }

    pub async fn prune_commands(&self, before: Timestamp) -> Result<()> {
        on_db!(self, pool => sqlx::query("DELETE FROM commands WHERE created_at < $1")
            .bind(to_ms(before))
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Keeps the current link code of an account for the CLI that asked for it.
    pub async fn put_link_code(&self, id: AccountId, code: &LinkCode) -> Result<()> {
        let (mode, phone) = match &code.mode {
            LinkMode::Qr => ("qr", None),
            LinkMode::PhoneCode { phone } => ("phone_code", Some(phone.as_str())),
        };
        on_db!(self, pool => sqlx::query(
            "INSERT INTO link_codes (account_id, mode, phone, code, expires_at, issued_at) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (account_id) DO UPDATE SET mode = excluded.mode, phone = excluded.phone, \
             code = excluded.code, expires_at = excluded.expires_at, issued_at = excluded.issued_at",
        )
        .bind(id.0)
        .bind(mode)
        .bind(phone)
        .bind(&code.code)
        .bind(to_ms(code.expires_at))
        .bind(to_ms(chrono::Utc::now()))
        .execute(pool)
        .await?
        .rows_affected());
        Ok(())
    }

    pub async fn link_code(&self, id: AccountId) -> Result<Option<LinkCode>> {
        let row: Option<(String, Option<String>, String, i64)> = on_db!(self, pool => sqlx::query_as(
            "SELECT mode, phone, code, expires_at FROM link_codes WHERE account_id = $1",
        )
        .bind(id.0)
        .fetch_optional(pool)
        .await?);
        Ok(row.map(|(mode, phone, code, expires_at)| LinkCode {
            mode: match (mode.as_str(), phone) {
                ("phone_code", Some(phone)) => LinkMode::PhoneCode { phone },
                _ => LinkMode::Qr,
            },
            code,
            expires_at: from_ms(expires_at),
        }))
    }

    pub async fn clear_link_code(&self, id: AccountId) -> Result<()> {
        on_db!(self, pool => sqlx::query("DELETE FROM link_codes WHERE account_id = $1")
            .bind(id.0)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }
}
