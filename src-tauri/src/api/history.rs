//! One account's history for the detail view: connected intervals, the event log and the
//! sessions its connector reported at the remote (a TikTok creator's lives).

use lifeline_engine::connector::RemoteSession;
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
    /// The latest lives (remote sessions), newest first; empty for kinds that have none.
    pub lives: Vec<LiveInfo>,
}

/// One session at the remote with its counts, in the connector's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct LiveInfo {
    /// The remote's id for it (a room id).
    pub key: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// How it ended: `ended`, `ended-while-away`; none while it runs.
    pub end: Option<String>,
    pub counts: Vec<CountInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct CountInfo {
    pub name: String,
    #[ts(type = "number")]
    pub value: i64,
}

impl From<&RemoteSession> for LiveInfo {
    fn from(s: &RemoteSession) -> Self {
        Self {
            key: s.key.clone(),
            started_at: rfc3339(s.started_at),
            ended_at: s.ended_at.map(rfc3339),
            end: s.end.clone(),
            counts: s
                .metrics
                .iter()
                .map(|(name, value)| CountInfo {
                    name: name.clone(),
                    value: *value,
                })
                .collect(),
        }
    }
}

pub fn history_info(h: &AccountHistory, lives: &[RemoteSession], now: Timestamp) -> HistoryInfo {
    HistoryInfo {
        lives: lives.iter().map(LiveInfo::from).collect(),
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
