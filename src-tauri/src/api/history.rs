//! One account's history for the detail view: connected intervals and the event log.

use lifeline_engine::state::Event;
use lifeline_engine::store::AccountHistory;
use lifeline_engine::time::{Timestamp, rfc3339};
use serde::Serialize;
use ts_rs::TS;

use super::{ReasonInfo, StateName};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct IntervalInfo {
    pub start: String,
    pub end: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct EventInfo {
    #[ts(type = "number")]
    pub id: i64,
    pub at: String,
    pub from: StateName,
    pub to: StateName,
    pub reason: Option<ReasonInfo>,
    pub detail: Option<String>,
    /// engine | operator | reconcile | startup
    pub by: String,
}

impl From<&Event> for EventInfo {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id,
            at: rfc3339(e.at),
            from: e.from.into(),
            to: e.to.kind().into(),
            reason: e.to.reason().map(ReasonInfo::from),
            detail: e.detail.clone(),
            by: e.triggered_by.as_str().to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct HistoryInfo {
    pub since: String,
    pub now: String,
    pub intervals: Vec<IntervalInfo>,
    /// Newest first.
    pub events: Vec<EventInfo>,
}

pub fn history_info(h: &AccountHistory, now: Timestamp) -> HistoryInfo {
    HistoryInfo {
        since: rfc3339(h.since),
        now: rfc3339(now),
        intervals: h
            .intervals
            .iter()
            .map(|i| IntervalInfo {
                start: rfc3339(i.start.max(h.since)),
                end: i.end.map(rfc3339),
            })
            .collect(),
        events: h.events.iter().map(EventInfo::from).collect(),
    }
}
