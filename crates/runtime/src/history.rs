//! One account's recent history for a face to draw: its connected intervals and its transitions
//! (with reasons and who caused them) inside a window. Read-only queries over the store's own
//! tables in portable SQL; the CSV export covers the bulk case.

use lifeline_engine::model::AccountId;
use lifeline_engine::state::{Event, State, StateKind, TriggeredBy};
use lifeline_engine::time::{Timestamp, from_ms, to_ms};
use lifeline_engine::{Error, InputError, Store};
use sqlx::Row;

/// At most this many events are returned (newest first); a busy account's week can be long.
pub const MAX_EVENTS: u32 = 500;

/// A connected interval clipped to nothing: `end = None` is still connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval {
    pub start: Timestamp,
    pub end: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AccountHistory {
    pub since: Timestamp,
    /// Oldest first.
    pub intervals: Vec<Interval>,
    /// Newest first, at most [`MAX_EVENTS`].
    pub events: Vec<Event>,
}

/// Intervals overlapping `[since, now)` and events at or after `since` for one live account.
pub async fn account_history(
    store: &Store,
    id: AccountId,
    since: Timestamp,
) -> Result<AccountHistory, Error> {
    store.account(id).await?;
    let since_ms = to_ms(since);
    let rows = sqlx::query(
        "SELECT started_at, ended_at FROM sessions WHERE account_id = ? \
         AND (ended_at IS NULL OR ended_at > ?) ORDER BY started_at, id",
    )
    .bind(id.0)
    .bind(since_ms)
    .fetch_all(store.pool())
    .await?;
    let mut intervals = Vec::with_capacity(rows.len());
    for r in &rows {
        let end: Option<i64> = r.try_get(1)?;
        intervals.push(Interval {
            start: from_ms(r.try_get(0)?),
            end: end.map(from_ms),
        });
    }
    let rows = sqlx::query(
        "SELECT id, at, from_state, state_json, detail, triggered_by FROM events \
         WHERE account_id = ? AND at >= ? ORDER BY at DESC, id DESC LIMIT ?",
    )
    .bind(id.0)
    .bind(since_ms)
    .bind(i64::from(MAX_EVENTS))
    .fetch_all(store.pool())
    .await?;
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let from: String = r.try_get(2)?;
        let state_json: String = r.try_get(3)?;
        let by: String = r.try_get(5)?;
        events.push(Event {
            id: r.try_get(0)?,
            account_id: id,
            at: from_ms(r.try_get(1)?),
            from: StateKind::parse(&from)
                .ok_or_else(|| Error::Decode(format!("state '{from}'")))?,
            to: serde_json::from_str::<State>(&state_json)
                .map_err(|e| Error::Decode(e.to_string()))?,
            detail: r.try_get(4)?,
            triggered_by: TriggeredBy::parse(&by)
                .ok_or_else(|| Error::Decode(format!("triggered_by '{by}'")))?,
        });
    }
    Ok(AccountHistory {
        since,
        intervals,
        events,
    })
}

/// Parses a history window name as the UI sends it.
pub fn window(name: &str) -> Result<chrono::Duration, InputError> {
    match name {
        "24h" => Ok(chrono::Duration::hours(24)),
        "7d" => Ok(chrono::Duration::days(7)),
        other => Err(InputError::InvalidSetting {
            key: "window".into(),
            value: other.into(),
            why: "use 24h or 7d".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use lifeline_engine::model::{AccountKind, NewAccount};
    use lifeline_engine::state::Reason;

    use super::*;

    #[tokio::test]
    async fn history_holds_the_window_newest_events_first_with_reasons_and_causes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open_path(&tmp.path().join("t.db"))
            .await
            .expect("store");
        let a = store
            .add_account(NewAccount::new(AccountKind::Websocket, "a").with_url("ws://h/"))
            .await
            .expect("add");
        let now = Utc::now();
        let t = |h: i64| now - Duration::hours(h);
        let drop = State::Backoff {
            attempt: 1,
            retry_at: t(29),
            reason: Reason::ClosedByPeer { code: Some(1011) },
        };
        for (to, by, at) in [
            (State::Connected, TriggeredBy::Startup, t(48)),
            (drop.clone(), TriggeredBy::Engine, t(30)),
            (State::Connected, TriggeredBy::Engine, t(2)),
            (
                State::Stopped {
                    reason: Some(Reason::Operator),
                },
                TriggeredBy::Operator,
                t(1),
            ),
        ] {
            store
                .record_transition(a.id, to, None, by, at)
                .await
                .expect("record");
        }
        let h = account_history(&store, a.id, now - Duration::hours(24))
            .await
            .expect("history");
        assert_eq!(
            h.intervals.len(),
            1,
            "the 48h–30h session ended before the window"
        );
        assert_eq!(h.intervals[0].end.map(to_ms), Some(to_ms(t(1))));
        assert_eq!(h.events.len(), 2);
        assert_eq!(h.events[0].triggered_by, TriggeredBy::Operator);
        assert_eq!(h.events[0].to.reason(), Some(&Reason::Operator));
        assert_eq!(h.events[1].from, StateKind::Backoff);

        let week = account_history(&store, a.id, now - Duration::days(7))
            .await
            .expect("history");
        assert_eq!(week.intervals.len(), 2);
        assert_eq!(week.events.len(), 4);
        assert_eq!(week.events[2].to, drop);

        let err = account_history(&store, AccountId(99), now)
            .await
            .expect_err("unknown");
        assert!(err.is_input());
        assert!(window("24h").is_ok() && window("7d").is_ok() && window("1y").is_err());
    }
}
