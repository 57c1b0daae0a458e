//! Transitions: each one is an event row, the account's current state, and the opening or
//! closing of a connected interval — all in one transaction, so history never disagrees with state.
//! Only the single writer (`supervisor::recorder`) calls these: nothing else writes state.

use super::{Store, encode};
use crate::error::{InputError, Result};
use crate::model::AccountId;
use crate::state::{Event, State, StateKind, TriggeredBy};
use crate::time::{Timestamp, to_ms};

/// One transition to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionRecord {
    pub account_id: AccountId,
    /// The state being left, when the caller knows it (the account's own task always does);
    /// `None` reads it from the store first.
    pub from: Option<StateKind>,
    pub to: State,
    pub detail: Option<String>,
    pub triggered_by: TriggeredBy,
    pub at: Timestamp,
}

impl Store {
    /// Records one transition of `id` to `to` (tests set up histories with it).
    #[cfg(test)]
    pub(crate) async fn record_transition(
        &self,
        id: AccountId,
        to: State,
        detail: Option<String>,
        triggered_by: TriggeredBy,
        at: Timestamp,
    ) -> Result<Event> {
        let mut events = self
            .record_transitions(vec![TransitionRecord {
                account_id: id,
                from: None,
                to,
                detail,
                triggered_by,
                at,
            }])
            .await?;
        Ok(events.remove(0))
    }

    /// Records many transitions in one transaction (a mass drop is one commit, not a thousand).
    /// Either all are recorded or none is. Records for the same account apply in order.
    pub(crate) async fn record_transitions(
        &self,
        records: Vec<TransitionRecord>,
    ) -> Result<Vec<Event>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let mut events = Vec::with_capacity(records.len());
        for r in records {
            let from = match r.from {
                Some(from) => from,
                None => {
                    let from: Option<String> = sqlx::query_scalar(
                        "SELECT state FROM accounts WHERE id = ? AND removed_at IS NULL",
                    )
                    .bind(r.account_id.0)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let from = from.ok_or(InputError::UnknownAccount(r.account_id.0))?;
                    StateKind::parse(&from).unwrap_or(StateKind::Stopped)
                }
            };
            let to_kind = r.to.kind();
            let reason = r.to.reason().map(|r| r.code());
            let state_json = encode(&r.to)?;
            let at = to_ms(r.at);
            // The account row first: it also proves the account is still there.
            let updated = sqlx::query(
                "UPDATE accounts SET state = ?, state_json = ?, state_since = ? WHERE id = ? AND removed_at IS NULL",
            )
            .bind(to_kind.as_str())
            .bind(&state_json)
            .bind(at)
            .bind(r.account_id.0)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                return Err(InputError::UnknownAccount(r.account_id.0).into());
            }
            let event_id = sqlx::query(
                "INSERT INTO events (account_id, at, from_state, to_state, reason, state_json, detail, triggered_by) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(r.account_id.0)
            .bind(at)
            .bind(from.as_str())
            .bind(to_kind.as_str())
            .bind(reason)
            .bind(&state_json)
            .bind(&r.detail)
            .bind(r.triggered_by.as_str())
            .execute(&mut *tx)
            .await?
            .last_insert_rowid();
            let was_connected = from == StateKind::Connected;
            let is_connected = to_kind == StateKind::Connected;
            if was_connected && !is_connected {
                sqlx::query(
                    "UPDATE sessions SET ended_at = ?, end_reason = ? WHERE account_id = ? AND ended_at IS NULL",
                )
                .bind(at)
                .bind(reason.unwrap_or(to_kind.as_str()))
                .bind(r.account_id.0)
                .execute(&mut *tx)
                .await?;
            } else if is_connected && !was_connected {
                sqlx::query("INSERT INTO sessions (account_id, started_at) VALUES (?, ?)")
                    .bind(r.account_id.0)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
            }
            events.push(Event {
                id: event_id,
                account_id: r.account_id,
                at: r.at,
                from,
                to: r.to,
                detail: r.detail,
                triggered_by: r.triggered_by,
            });
        }
        tx.commit().await?;
        Ok(events)
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};

    use super::*;
    use crate::model::{AccountKind, NewAccount};
    use crate::state::Reason;
    use crate::store::tests::temp_store;

    #[tokio::test]
    async fn transitions_write_event_state_and_session_together() {
        let (_tmp, store) = temp_store().await;
        let a = store
            .add_account(NewAccount::new(AccountKind::Websocket, "a").with_url("ws://h/"))
            .await
            .expect("add");
        let t0 = Utc::now();
        let drop = State::Backoff {
            attempt: 1,
            retry_at: t0 + Duration::seconds(3),
            reason: Reason::ClosedByPeer { code: Some(1011) },
        };
        store
            .record_transition(a.id, State::Connecting, None, TriggeredBy::Startup, t0)
            .await
            .expect("connecting");
        store
            .record_transition(
                a.id,
                State::Connected,
                None,
                TriggeredBy::Engine,
                t0 + Duration::seconds(1),
            )
            .await
            .expect("connected");
        let ev = store
            .record_transition(
                a.id,
                drop.clone(),
                Some("peer went away".into()),
                TriggeredBy::Engine,
                t0 + Duration::seconds(61),
            )
            .await
            .expect("drop");
        assert_eq!(ev.from, StateKind::Connected);
        assert_eq!(store.account(a.id).await.expect("get").state, drop);
        let (started, ended, reason): (i64, Option<i64>, Option<String>) = sqlx::query_as(
            "SELECT started_at, ended_at, end_reason FROM sessions WHERE account_id = ?",
        )
        .bind(a.id.0)
        .fetch_one(store.pool())
        .await
        .expect("session");
        assert_eq!(ended.map(|e| e - started), Some(60_000));
        assert_eq!(reason.as_deref(), Some("closed-by-peer"));
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE account_id = ?")
            .bind(a.id.0)
            .fetch_one(store.pool())
            .await
            .expect("count");
        assert_eq!(n, 3);
    }

    #[tokio::test]
    async fn a_batch_with_an_unknown_account_records_nothing() {
        let (_tmp, store) = temp_store().await;
        let a = store
            .add_account(NewAccount::new(AccountKind::Websocket, "a").with_url("ws://h/"))
            .await
            .expect("add");
        let rec = |id| TransitionRecord {
            account_id: id,
            from: None,
            to: State::Connected,
            detail: None,
            triggered_by: TriggeredBy::Engine,
            at: Utc::now(),
        };
        let err = store
            .record_transitions(vec![rec(a.id), rec(AccountId(999))])
            .await
            .expect_err("unknown");
        assert!(err.is_input());
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM events")
            .fetch_one(store.pool())
            .await
            .expect("count");
        assert_eq!(n, 0);
        assert_eq!(
            store.account(a.id).await.expect("get").state,
            State::INITIAL
        );
    }
}
