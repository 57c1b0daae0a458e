//! What crosses the IPC boundary, in both directions. These types are the contract with the UI:
//! `ui/src/generated/api.ts` is generated from them (see `bindings`), never written by hand.
//! Conversions from engine values are pure functions, tested here without a window. One file per
//! concern: the fleet and its cards (here), linking, alerts and the tray, history, settings.

mod alerts;
mod console;
mod history;
mod link;
mod settings;
#[cfg(test)]
mod tests;
mod webhooks;

pub use alerts::*;
pub use console::*;
pub use history::*;
pub use link::*;
pub use settings::*;
pub use webhooks::*;

use lifeline_engine::model::AccountKind;
use lifeline_engine::report::AccountHealth;
use lifeline_engine::state::{Reason, State, StateKind};
use lifeline_engine::supervisor::AccountView;
use lifeline_engine::time::rfc3339;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Stopped,
    Linking,
    Connecting,
    Connected,
    Waiting,
    Backoff,
    Paused,
    NeedsOperator,
}

impl From<StateKind> for StateName {
    fn from(k: StateKind) -> Self {
        match k {
            StateKind::Stopped => Self::Stopped,
            StateKind::Linking => Self::Linking,
            StateKind::Connecting => Self::Connecting,
            StateKind::Connected => Self::Connected,
            StateKind::Waiting => Self::Waiting,
            StateKind::Backoff => Self::Backoff,
            StateKind::Paused => Self::Paused,
            StateKind::NeedsOperator => Self::NeedsOperator,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Websocket,
    Whatsapp,
    Tiktok,
}

impl From<AccountKind> for Kind {
    fn from(k: AccountKind) -> Self {
        match k {
            AccountKind::Websocket => Self::Websocket,
            AccountKind::Whatsapp => Self::Whatsapp,
            AccountKind::Tiktok => Self::Tiktok,
        }
    }
}

impl From<Kind> for AccountKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Websocket => Self::Websocket,
            Kind::Whatsapp => Self::Whatsapp,
            Kind::Tiktok => Self::Tiktok,
        }
    }
}

/// Why an account is where it is: a stable `code` and its parameters; the UI puts them into
/// words (English or Bahasa Indonesia).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct ReasonInfo {
    pub code: String,
    /// HTTP status of a refusal.
    pub status: Option<u16>,
    /// WebSocket close code of a server-side close.
    pub close_code: Option<u16>,
    /// End of a ban (RFC 3339).
    pub until: Option<String>,
}

impl From<&Reason> for ReasonInfo {
    fn from(r: &Reason) -> Self {
        let (status, close_code, until) = match r {
            Reason::Refused { status } => (*status, None, None),
            Reason::ClosedByPeer { code } => (None, *code, None),
            Reason::Banned { until } => (None, None, until.map(rfc3339)),
            _ => (None, None, None),
        };
        Self {
            code: r.code().to_owned(),
            status,
            close_code,
            until,
        }
    }
}

/// One account card: settings, live state and health in one flat value.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
pub struct Card {
    #[ts(type = "number")]
    pub id: i64,
    pub name: String,
    pub kind: Kind,
    /// The endpoint (WebSocket URL), the TikTok creator (`@user`) or "WhatsApp".
    pub target: String,
    pub country: Option<String>,
    #[ts(type = "number")]
    pub priority: i64,
    pub desired: bool,
    pub muted: bool,
    /// A notification says when the creator goes live (TikTok accounts).
    pub notify_live: bool,
    pub state: StateName,
    pub reason: Option<ReasonInfo>,
    /// Backoff: when the next attempt is due, and its number.
    pub retry_at: Option<String>,
    pub attempt: Option<u32>,
    /// Paused: until when, if known.
    pub paused_until: Option<String>,
    /// When the current state began (the card's "last change").
    pub since: String,
    /// Connections restored after a drop, this run.
    #[ts(type = "number")]
    pub reconnects: u64,
    /// closed | open | half_open
    pub breaker: String,
    /// Connected share of the last 24 h, in percent (`null` until the first health pass).
    pub uptime_pct: Option<f64>,
    /// 0–100.
    pub score: Option<u8>,
    pub failures_1h: u32,
    /// Set while the account keeps connecting and dropping: until when it counts as unstable
    /// unless it drops again (RFC 3339; a time already past means it has held since).
    pub unstable_until: Option<String>,
    /// Who it is at the remote once connected: a WhatsApp number's phone number (`+` and
    /// digits) and profile name.
    pub remote_id: Option<String>,
    pub remote_name: Option<String>,
    /// In a fleet's console: the instance supervising it now (`null` there: none holds it).
    pub owner: Option<Owner>,
}

/// The slow-moving numbers, refreshed by the periodic health pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthBits {
    pub uptime_pct: f64,
    pub score: u8,
    pub failures_1h: u32,
    pub breaker: &'static str,
}

impl From<&AccountHealth> for HealthBits {
    fn from(h: &AccountHealth) -> Self {
        Self {
            uptime_pct: h.uptime_24h_pct,
            score: h.score,
            failures_1h: h.failures_1h,
            breaker: h.breaker,
        }
    }
}

pub fn card(view: &AccountView, health: Option<&HealthBits>) -> Card {
    let (retry_at, attempt, paused_until) = match &view.state {
        State::Backoff {
            attempt, retry_at, ..
        } => (Some(rfc3339(*retry_at)), Some(*attempt), None),
        State::Paused { until, .. } => (None, None, until.map(rfc3339)),
        _ => (None, None, None),
    };
    Card {
        id: view.id.0,
        name: view.name.clone(),
        kind: view.kind.into(),
        target: match (view.kind, view.url.as_deref()) {
            (AccountKind::Tiktok, Some(url)) => lifeline_engine::model::tiktok_user(url)
                .map(|u| format!("@{u}"))
                .unwrap_or_else(|_| url.to_owned()),
            (_, Some(url)) => url.to_owned(),
            (_, None) => "WhatsApp".to_owned(),
        },
        country: view.country.clone(),
        priority: view.priority,
        desired: view.desired_running,
        muted: view.muted,
        notify_live: view.notify_live,
        state: view.state.kind().into(),
        reason: view.state.reason().map(ReasonInfo::from),
        retry_at,
        attempt,
        paused_until,
        since: rfc3339(view.since),
        reconnects: view.reconnects,
        // The live view knows the breaker now; the health pass may be up to a period old.
        breaker: view.breaker.to_owned(),
        uptime_pct: health.map(|h| h.uptime_pct),
        score: health.map(|h| h.score),
        failures_1h: health.map_or(0, |h| h.failures_1h),
        unstable_until: view.unstable_until.map(rfc3339),
        remote_id: view.identity.as_ref().map(|i| i.id.clone()),
        remote_name: view.identity.as_ref().and_then(|i| i.name.clone()),
        owner: None,
    }
}

/// Everything the main window needs to paint, in one round trip.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
pub struct Snapshot {
    /// When its cards were read, in the order of every read of the fleet: a [`FleetDelta`] with
    /// a `seq` at or below this one was read before, and the snapshot already holds it.
    #[ts(type = "number")]
    pub seq: u64,
    /// Highest priority first, then by id.
    pub cards: Vec<Card>,
    pub autorecover: bool,
    pub previous_run_crashed: bool,
    pub restoring: u32,
    pub held_stopped: u32,
    pub data_dir: String,
    /// The fleet store this window is a console of; `null`: this computer supervises its own
    /// accounts.
    pub fleet_store: Option<String>,
    /// Lifeline's version (the workspace's, the same `lifeline --version` prints), for About.
    pub version: String,
}

/// Cards that changed and accounts that are gone, coalesced over a short window.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
pub struct FleetDelta {
    /// When its cards were read (see [`Snapshot::seq`]); rises with every delta.
    #[ts(type = "number")]
    pub seq: u64,
    pub cards: Vec<Card>,
    #[ts(type = "Array<number>")]
    pub removed: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct SettingsChanged {
    pub autorecover: bool,
}
