//! Reading history back: one account's connected intervals and transitions inside a window (the
//! desktop's detail view), and the facts the health report is computed from. Bulk reads are the
//! CSV export's job.

use std::collections::HashMap;

use serde::Serialize;

use super::{Store, on_db};
use crate::error::{Error, InputError, Result};
use crate::model::AccountId;
use crate::state::{Event, State, StateKind, TriggeredBy};
use crate::time::{TimeRange, Timestamp, from_ms, to_ms};

/// At most this many events are returned (newest first); a busy account's week can be long.
pub const MAX_HISTORY_EVENTS: u32 = 500;

/// A connected interval; `end = None` is still connected.
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
    /// Newest first, at most [`MAX_HISTORY_EVENTS`].
    pub events: Vec<Event>,
}

impl Store {
    /// Intervals overlapping `[since, now)` and events at or after `since` for one live account.
    pub async fn account_history(&self, id: AccountId, since: Timestamp) -> Result<AccountHistory> {
        self.account(id).await?;
        let since_ms = to_ms(since);
        let rows: Vec<(i64, Option<i64>)> = on_db!(self, pool => sqlx::query_as(
            "SELECT started_at, ended_at FROM sessions WHERE account_id = $1 \
             AND (ended_at IS NULL OR ended_at > $2) ORDER BY started_at, id",
        )
        .bind(id.0)
        .bind(since_ms)
        .fetch_all(pool)
        .await?);
        let intervals = rows
            .into_iter()
            .map(|(start, end)| Interval {
                start: from_ms(start),
                end: end.map(from_ms),
            })
            .collect();
        let rows: Vec<EventRow> = on_db!(self, pool => sqlx::query_as(
            "SELECT id, at, from_state, state_json, detail, triggered_by, account_id FROM events \
             WHERE account_id = $1 AND at >= $2 ORDER BY at DESC, id DESC LIMIT $3",
        )
        .bind(id.0)
        .bind(since_ms)
        .bind(i64::from(MAX_HISTORY_EVENTS))
        .fetch_all(pool)
        .await?);
        let events = rows
            .into_iter()
            .map(event_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(AccountHistory {
            since,
            intervals,
            events,
        })
    }

    /// Connected intervals overlapping `[since, now)`, per live account.
    pub async fn connected_intervals(
        &self,
        since: Timestamp,
    ) -> Result<HashMap<AccountId, Vec<(Timestamp, Option<Timestamp>)>>> {
        let rows: Vec<(i64, i64, Option<i64>)> = on_db!(self, pool => sqlx::query_as(
            "SELECT s.account_id, s.started_at, s.ended_at \
             FROM sessions s JOIN accounts a ON a.id = s.account_id \
             WHERE a.removed_at IS NULL AND (s.ended_at IS NULL OR s.ended_at > $1)",
        )
        .bind(to_ms(since))
        .fetch_all(pool)
        .await?);
        let mut map: HashMap<AccountId, Vec<_>> = HashMap::new();
        for (id, start, end) in rows {
            map.entry(AccountId(id))
                .or_default()
                .push((from_ms(start), end.map(from_ms)));
        }
        Ok(map)
    }

    /// Failures (transitions into backoff or paused) since `since`, per account.
    pub async fn failures_since(&self, since: Timestamp) -> Result<HashMap<AccountId, u32>> {
        let rows: Vec<(i64, i64)> = on_db!(self, pool => sqlx::query_as(
            "SELECT account_id, COUNT(*) FROM events \
             WHERE at >= $1 AND to_state IN ('backoff', 'paused') GROUP BY account_id",
        )
        .bind(to_ms(since))
        .fetch_all(pool)
        .await?);
        Ok(rows
            .into_iter()
            .map(|(id, n)| (AccountId(id), u32::try_from(n).unwrap_or(u32::MAX)))
            .collect())
    }
}

/// An event row: `id, at, from_state, state_json, detail, triggered_by, account_id`.
type EventRow = (i64, i64, String, String, Option<String>, String, i64);

fn event_row((id, at, from, state_json, detail, by, account): EventRow) -> Result<Event> {
    Ok(Event {
        id,
        account_id: AccountId(account),
        at: from_ms(at),
        from: StateKind::parse(&from).ok_or_else(|| Error::Decode(format!("state '{from}'")))?,
        to: serde_json::from_str::<State>(&state_json).map_err(|e| Error::Decode(e.to_string()))?,
        detail,
        triggered_by: TriggeredBy::parse(&by)
            .ok_or_else(|| Error::Decode(format!("triggered_by '{by}'")))?,
    })
}

/// One page of history, filtered as the CSV export is, in id order: `after` is the last id of
/// the previous page (none for the first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPage {
    pub account: Option<AccountId>,
    pub range: TimeRange,
    pub after: Option<i64>,
    pub limit: u32,
}

/// A session row: `id, account_id, account name, started_at, ended_at, end_reason`.
type SessionRow = (i64, i64, String, i64, Option<i64>, Option<String>);

/// Most rows one page may hold.
pub const MAX_PAGE: u32 = 1000;

/// A connected interval as listed: one row of the sessions export.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct SessionRecord {
    pub id: i64,
    pub account_id: AccountId,
    pub account_name: String,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    /// None while still connected.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    /// Seconds connected (until now for an open session).
    pub duration_s: f64,
    pub end_reason: Option<String>,
}

impl Store {
    /// The newest event's id (0 with none yet): where a reader of what happens next starts.
    pub async fn last_event_id(&self) -> Result<i64> {
        Ok(on_db!(self, pool =>
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM events")
                .fetch_one(pool)
                .await?))
    }

    /// Events inside the page's range (`at` in `[since, until)`).
    pub async fn events_page(&self, page: HistoryPage) -> Result<Vec<Event>> {
        self.known_account(page.account).await?;
        let rows: Vec<EventRow> = on_db!(self, pool => sqlx::query_as(
            "SELECT id, at, from_state, state_json, detail, triggered_by, account_id FROM events \
             WHERE ($1 IS NULL OR account_id = $1) AND ($2 IS NULL OR at >= $2) \
               AND ($3 IS NULL OR at < $3) AND id > $4 ORDER BY id LIMIT $5",
        )
        .bind(page.account.map(|a| a.0))
        .bind(page.range.since.map(to_ms))
        .bind(page.range.until.map(to_ms))
        .bind(page.after.unwrap_or(0))
        .bind(i64::from(page.limit.min(MAX_PAGE)))
        .fetch_all(pool)
        .await?);
        rows.into_iter().map(event_row).collect()
    }

    /// Sessions overlapping the page's range (an open one runs until now).
    pub async fn sessions_page(
        &self,
        page: HistoryPage,
        now: Timestamp,
    ) -> Result<Vec<SessionRecord>> {
        self.known_account(page.account).await?;
        let now = to_ms(now);
        let rows: Vec<SessionRow> = on_db!(self, pool =>
            sqlx::query_as(
            "SELECT s.id, s.account_id, a.name, s.started_at, s.ended_at, s.end_reason \
             FROM sessions s JOIN accounts a ON a.id = s.account_id \
             WHERE ($1 IS NULL OR s.account_id = $1) \
               AND ($2 IS NULL OR COALESCE(s.ended_at, $4) > $2) \
               AND ($3 IS NULL OR s.started_at < $3) AND s.id > $5 ORDER BY s.id LIMIT $6",
        )
        .bind(page.account.map(|a| a.0))
        .bind(page.range.since.map(to_ms))
        .bind(page.range.until.map(to_ms))
        .bind(now)
        .bind(page.after.unwrap_or(0))
        .bind(i64::from(page.limit.min(MAX_PAGE)))
        .fetch_all(pool)
        .await?);
        Ok(rows
            .into_iter()
            .map(
                |(id, account, name, started, ended, end_reason)| SessionRecord {
                    id,
                    account_id: AccountId(account),
                    account_name: name,
                    started_at: from_ms(started),
                    ended_at: ended.map(from_ms),
                    duration_s: (ended.unwrap_or(now) - started).max(0) as f64 / 1000.0,
                    end_reason,
                },
            )
            .collect())
    }

    /// An account filter names an account that exists or once existed (removed accounts keep
    /// their history).
    pub async fn known_account(&self, id: Option<AccountId>) -> Result<()> {
        let Some(id) = id else { return Ok(()) };
        let known: Option<i64> = on_db!(self, pool =>
            sqlx::query_scalar("SELECT id FROM accounts WHERE id = $1")
                .bind(id.0)
                .fetch_optional(pool)
                .await?);
        match known {
            Some(_) => Ok(()),
            None => Err(InputError::UnknownAccount(id.0).into()),
        }
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
    async fn history_holds_the_window_newest_events_first_with_reasons_and_causes() {
        let (_tmp, store) = temp_store().await;
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
        let h = store
            .account_history(a.id, now - Duration::hours(24))
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

        let week = store
            .account_history(a.id, now - Duration::days(7))
            .await
            .expect("history");
        assert_eq!(week.intervals.len(), 2);
        assert_eq!(week.events.len(), 4);
        assert_eq!(week.events[2].to, drop);

        let err = store
            .account_history(AccountId(99), now)
            .await
            .expect_err("unknown");
        assert!(err.is_input());
    }
}
