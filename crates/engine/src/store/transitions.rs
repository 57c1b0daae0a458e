//! Transitions: each one is an event row, the account's current state, and the opening or
//! closing of a connected interval — all in one transaction, so history never disagrees with state.
//! Only the single writer (`supervisor::recorder`) calls these: nothing else writes state.

use std::collections::{HashMap, HashSet};

use serde_json::json;

use super::{Begin, Fenced, Store, encode, on_db};
use crate::error::{InputError, Result};
use crate::model::AccountId;
use crate::state::{Event, State, StateKind, TriggeredBy};
use crate::time::{Timestamp, to_ms};

/// A session a batch opens: account, start, and its end when the batch ends it too.
type SessionOpened = (AccountId, i64, Option<(i64, &'static str)>);

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
    ///
    /// A batch is one round trip between its BEGIN and COMMIT on SQLite, whatever its size: one
    /// fixed script writes the events, the accounts' current state, the sessions closed and the
    /// sessions opened, each statement taking its rows as one JSON array. On PostgreSQL the same
    /// four statements take the same arrays, pipelined in one transaction. Only records whose
    /// starting state the caller did not give cost one read first.
    pub(crate) async fn record_transitions(
        &self,
        records: Vec<TransitionRecord>,
    ) -> Result<Vec<Event>> {
        on_db!(self, pool => {
            let mut tx = pool.begin_write().await?;
            let accounts: Vec<i64> = records.iter().map(|r| r.account_id.0).collect();
            tx.fence(self.fence(), &accounts).await?;
            let mut current = HashMap::new();
            if records.iter().any(|r| r.from.is_none()) {
                let ids: Vec<i64> = records.iter().map(|r| r.account_id.0).collect();
                current = tx.states(&ids).await?;
            }
            let (mut events, batch) = Batch::build(records, current)?;
            // An event row is written only for an account that is still there: fewer ids back
            // than records (or a session refused for want of its account) means one was
            // removed or never was, and the batch is not committed.
            let mut event_ids = match tx.write(&batch).await {
                Ok(ids) if ids.len() == events.len() => ids,
                other => {
                    let ids: Vec<i64> = events.iter().map(|e| e.account_id.0).collect();
                    let found = tx.states(&ids).await?;
                    if let Some(id) = ids
                        .into_iter()
                        .find(|id| !found.contains_key(&AccountId(*id)))
                    {
                        return Err(InputError::UnknownAccount(id).into());
                    }
                    return Err(match other {
                        Err(e) => e.into(),
                        Ok(ids) => sqlx::Error::Protocol(format!(
                            "{} events written for {} transitions",
                            ids.len(),
                            events.len()
                        ))
                        .into(),
                    });
                }
            };
            // Rows get increasing ids in the order they are inserted; RETURNING's own order is
            // not promised.
            event_ids.sort_unstable();
            for (event, id) in events.iter_mut().zip(event_ids) {
                event.id = id;
            }
            tx.commit().await?;
            Ok(events)
        })
    }
}

/// A batch's rows, each set one JSON array: the events, each account's final state, the
/// sessions open before the batch that it closes, the sessions it opens.
struct Batch {
    events: String,
    finals: String,
    closes: String,
    opens: String,
}

impl Batch {
    /// The events to return (ids still 0) and the rows that record them, from `current`, the
    /// stored state of accounts whose records do not say what they leave.
    fn build(
        records: Vec<TransitionRecord>,
        mut current: HashMap<AccountId, StateKind>,
    ) -> Result<(Vec<Event>, Self)> {
        let mut events = Vec::with_capacity(records.len());
        let mut event_rows = Vec::with_capacity(records.len());
        // Per account: its last state (the accounts row), the end of the session open before
        // this batch, and the sessions this batch opens (each possibly ended within it too).
        let mut last: HashMap<AccountId, (&'static str, String, i64)> = HashMap::new();
        let mut closes = Vec::new();
        let mut opens: Vec<SessionOpened> = Vec::new();
        let mut open_in_batch: HashMap<AccountId, usize> = HashMap::new();
        let mut closed_before: HashSet<AccountId> = HashSet::new();
        for r in records {
            let id = r.account_id;
            let from = match r.from {
                Some(from) => from,
                None => current.get(&id).copied().unwrap_or(StateKind::Stopped),
            };
            let to_kind = r.to.kind();
            let reason = r.to.reason().map(|r| r.code());
            let state_json = encode(&r.to)?;
            let at = to_ms(r.at);
            // A session is the connection up: connected, or up and waiting for the remote.
            let was_connected = from.is_up();
            let is_connected = to_kind.is_up();
            let end_reason = reason.unwrap_or(to_kind.as_str());
            if was_connected && !is_connected {
                match open_in_batch.remove(&id) {
                    Some(i) => opens[i].2 = Some((at, end_reason)),
                    // Only the session open before the batch is left to close, and only once.
                    None if closed_before.insert(id) => closes.push(json!([id.0, at, end_reason])),
                    None => {}
                }
            } else if is_connected && !was_connected {
                open_in_batch.insert(id, opens.len());
                opens.push((id, at, None));
            }
            event_rows.push(json!([
                id.0,
                at,
                from.as_str(),
                to_kind.as_str(),
                reason,
                state_json,
                r.detail,
                r.triggered_by.as_str(),
            ]));
            last.insert(id, (to_kind.as_str(), state_json, at));
            current.insert(id, to_kind);
            events.push(Event {
                id: 0,
                account_id: id,
                at: r.at,
                from,
                to: r.to,
                detail: r.detail,
                triggered_by: r.triggered_by,
            });
        }
        let finals: Vec<_> = last
            .into_iter()
            .map(|(id, (state, json, at))| json!([id.0, state, json, at]))
            .collect();
        let opens: Vec<_> = opens
            .into_iter()
            .map(|(id, at, end)| json!([id.0, at, end.map(|e| e.0), end.map(|e| e.1)]))
            .collect();
        let batch = Self {
            events: encode(&event_rows)?,
            finals: encode(&finals)?,
            closes: encode(&closes)?,
            opens: encode(&opens)?,
        };
        Ok((events, batch))
    }
}

/// What the recorder's transaction does, in each database's dialect.
trait Recorder {
    /// The state stored for each of `ids` that is still there.
    async fn states(&mut self, ids: &[i64]) -> Result<HashMap<AccountId, StateKind>>;

    /// Writes a batch; returns the new events' ids.
    async fn write(&mut self, batch: &Batch) -> sqlx::Result<Vec<i64>>;
}

fn state_map(rows: Vec<(i64, String)>) -> HashMap<AccountId, StateKind> {
    rows.into_iter()
        .map(|(id, state)| {
            let kind = StateKind::parse(&state).unwrap_or(StateKind::Stopped);
            (AccountId(id), kind)
        })
        .collect()
}

impl Recorder for sqlx::SqliteConnection {
    async fn states(&mut self, ids: &[i64]) -> Result<HashMap<AccountId, StateKind>> {
        let rows = sqlx::query_as(
            "SELECT id, state FROM accounts \
             WHERE removed_at IS NULL AND id IN (SELECT value FROM json_each($1))",
        )
        .bind(encode(&ids)?)
        .fetch_all(self)
        .await?;
        Ok(state_map(rows))
    }

    async fn write(&mut self, batch: &Batch) -> sqlx::Result<Vec<i64>> {
        sqlx::query_scalar(RECORD_SCRIPT)
            .bind(&batch.events)
            .bind(&batch.finals)
            .bind(&batch.closes)
            .bind(&batch.opens)
            .fetch_all(self)
            .await
    }
}

impl Recorder for sqlx::PgConnection {
    async fn states(&mut self, ids: &[i64]) -> Result<HashMap<AccountId, StateKind>> {
        let rows = sqlx::query_as(
            "SELECT id, state FROM accounts WHERE removed_at IS NULL AND id = ANY($1)",
        )
        .bind(ids)
        .fetch_all(self)
        .await?;
        Ok(state_map(rows))
    }

    async fn write(&mut self, batch: &Batch) -> sqlx::Result<Vec<i64>> {
        let ids = sqlx::query_scalar(PG_RECORD_EVENTS)
            .bind(&batch.events)
            .fetch_all(&mut *self)
            .await?;
        sqlx::query(PG_RECORD_FINALS)
            .bind(&batch.finals)
            .execute(&mut *self)
            .await?;
        sqlx::query(PG_RECORD_CLOSES)
            .bind(&batch.closes)
            .execute(&mut *self)
            .await?;
        sqlx::query(PG_RECORD_OPENS)
            .bind(&batch.opens)
            .execute(&mut *self)
            .await?;
        Ok(ids)
    }
}

/// A batch's writes on SQLite. Its four parameters, bound in this order (one per statement:
/// numbered parameters would not bind across statements): the events, each account's final
/// state, the sessions open before the batch that it closes, the sessions it opens. Only the
/// first statement returns rows.
const RECORD_SCRIPT: &str = "\
INSERT INTO events (account_id, at, from_state, to_state, reason, state_json, detail, triggered_by) \
  SELECT j.value->>0, j.value->>1, j.value->>2, j.value->>3, j.value->>4, j.value->>5, \
         j.value->>6, j.value->>7 \
  FROM json_each(?) AS j JOIN accounts AS a ON a.id = j.value->>0 AND a.removed_at IS NULL \
  ORDER BY j.key RETURNING id; \
WITH v AS (SELECT value->>0 AS id, value->>1 AS state, value->>2 AS state_json, \
                  value->>3 AS since FROM json_each(?)) \
  UPDATE accounts SET state = v.state, state_json = v.state_json, state_since = v.since \
  FROM v WHERE accounts.id = v.id; \
WITH v AS (SELECT value->>0 AS account_id, value->>1 AS ended_at, value->>2 AS reason \
           FROM json_each(?)) \
  UPDATE sessions SET ended_at = v.ended_at, end_reason = v.reason \
  FROM v WHERE sessions.account_id = v.account_id AND sessions.ended_at IS NULL; \
INSERT INTO sessions (account_id, started_at, ended_at, end_reason) \
  SELECT value->>0, value->>1, value->>2, value->>3 FROM json_each(?) ORDER BY key;";

/// The same four statements on PostgreSQL, one at a time (it prepares one statement per
/// query), over the same arrays.
const PG_RECORD_EVENTS: &str = "\
INSERT INTO events (account_id, at, from_state, to_state, reason, state_json, detail, triggered_by) \
  SELECT (j.value->>0)::bigint, (j.value->>1)::bigint, j.value->>2, j.value->>3, j.value->>4, \
         j.value->>5, j.value->>6, j.value->>7 \
  FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS j (value, n) \
  JOIN accounts AS a ON a.id = (j.value->>0)::bigint AND a.removed_at IS NULL \
  ORDER BY j.n RETURNING id";
const PG_RECORD_FINALS: &str = "\
WITH v AS (SELECT (value->>0)::bigint AS id, value->>1 AS state, value->>2 AS state_json, \
                  (value->>3)::bigint AS since FROM jsonb_array_elements($1::jsonb)) \
  UPDATE accounts SET state = v.state, state_json = v.state_json, state_since = v.since \
  FROM v WHERE accounts.id = v.id";
const PG_RECORD_CLOSES: &str = "\
WITH v AS (SELECT (value->>0)::bigint AS account_id, (value->>1)::bigint AS ended_at, \
                  value->>2 AS reason FROM jsonb_array_elements($1::jsonb)) \
  UPDATE sessions SET ended_at = v.ended_at, end_reason = v.reason \
  FROM v WHERE sessions.account_id = v.account_id AND sessions.ended_at IS NULL";
const PG_RECORD_OPENS: &str = "\
INSERT INTO sessions (account_id, started_at, ended_at, end_reason) \
  SELECT (value->>0)::bigint, (value->>1)::bigint, (value->>2)::bigint, value->>3 \
  FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS j (value, n) ORDER BY n";

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
    async fn one_batch_records_each_account_s_transitions_in_order() {
        let (_tmp, store) = temp_store().await;
        let add = |name: &'static str| {
            let store = store.clone();
            async move {
                store
                    .add_account(NewAccount::new(AccountKind::Websocket, name).with_url("ws://h/"))
                    .await
                    .expect("add")
                    .id
            }
        };
        let (a, b) = (add("a").await, add("b").await);
        let t0 = Utc::now();
        let at = |s: i64| t0 + Duration::seconds(s);
        let drop = |s: i64| State::Backoff {
            attempt: 1,
            retry_at: at(s + 3),
            reason: Reason::ClosedByPeer { code: Some(1011) },
        };
        let rec = |id, from, to: State, s: i64| TransitionRecord {
            account_id: id,
            from,
            to,
            detail: Some(format!("at {s}")),
            triggered_by: TriggeredBy::Engine,
            at: at(s),
        };
        // b is connected before the batch; a connects, drops, reconnects within it.
        store
            .record_transitions(vec![
                rec(b, None, State::Connecting, 0),
                rec(b, None, State::Connected, 1),
            ])
            .await
            .expect("b connected");
        let events = store
            .record_transitions(vec![
                rec(a, None, State::Connecting, 10),
                rec(b, Some(StateKind::Connected), drop(11), 11),
                rec(a, None, State::Connected, 12),
                rec(a, Some(StateKind::Connected), drop(13), 13),
                rec(a, None, State::Connecting, 16),
                rec(a, None, State::Connected, 17),
            ])
            .await
            .expect("batch");
        let froms: Vec<_> = events.iter().map(|e| (e.account_id, e.from)).collect();
        assert_eq!(
            froms,
            [
                (a, StateKind::Stopped),
                (b, StateKind::Connected),
                (a, StateKind::Connecting),
                (a, StateKind::Connected),
                (a, StateKind::Backoff),
                (a, StateKind::Connecting),
            ]
        );
        // The ids handed back are the rows written, in the batch's order.
        for e in &events {
            let (account, detail): (i64, Option<String>) =
                sqlx::query_as("SELECT account_id, detail FROM events WHERE id = ?")
                    .bind(e.id)
                    .fetch_one(store.pool())
                    .await
                    .expect("event row");
            assert_eq!(
                (AccountId(account), detail),
                (e.account_id, e.detail.clone())
            );
        }
        assert!(events.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(store.account(a).await.expect("a").state, State::Connected);
        assert_eq!(store.account(b).await.expect("b").state, drop(11));
        let sessions: Vec<(i64, i64, Option<i64>, Option<String>)> = sqlx::query_as(
            "SELECT account_id, started_at, ended_at, end_reason FROM sessions ORDER BY started_at",
        )
        .fetch_all(store.pool())
        .await
        .expect("sessions");
        let ms = |s: i64| to_ms(at(s));
        let closed = Some("closed-by-peer".to_owned());
        assert_eq!(
            sessions,
            [
                (b.0, ms(1), Some(ms(11)), closed.clone()),
                (a.0, ms(12), Some(ms(13)), closed),
                (a.0, ms(17), None, None),
            ]
        );
    }

    #[tokio::test]
    async fn a_batch_with_an_unknown_account_records_nothing() {
        let (_tmp, store) = temp_store().await;
        let a = store
            .add_account(NewAccount::new(AccountKind::Websocket, "a").with_url("ws://h/"))
            .await
            .expect("add");
        let rec = |id, from| TransitionRecord {
            account_id: id,
            from,
            to: State::Connected,
            detail: None,
            triggered_by: TriggeredBy::Engine,
            at: Utc::now(),
        };
        // Whether the store reads where each record starts or the caller says it.
        for from in [None, Some(StateKind::Connecting)] {
            let err = store
                .record_transitions(vec![rec(a.id, from), rec(AccountId(999), from)])
                .await
                .expect_err("unknown");
            assert!(err.is_input(), "{err}");
        }
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
