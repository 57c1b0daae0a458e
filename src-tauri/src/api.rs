//! What crosses the IPC boundary, in both directions. These types are the contract with the UI:
//! `ui/src/generated/api.ts` is generated from them (see `bindings`), never written by hand.
//! Conversions from engine values are pure functions, tested here without a window.

use std::collections::BTreeMap;

use lifeline_engine::connector::{LinkCode, LinkMode};
use lifeline_engine::model::{Account, AccountKind};
use lifeline_engine::policy::alerts::Alert;
use lifeline_engine::report::AccountHealth;
use lifeline_engine::state::{Event, Reason, State, StateKind};
use lifeline_engine::supervisor::AccountView;
use lifeline_engine::time::{Timestamp, rfc3339};
use lifeline_runtime::history::AccountHistory;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum StateName {
    Stopped,
    Linking,
    Connecting,
    Connected,
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
}

impl From<AccountKind> for Kind {
    fn from(k: AccountKind) -> Self {
        match k {
            AccountKind::Websocket => Self::Websocket,
            AccountKind::Whatsapp => Self::Whatsapp,
        }
    }
}

impl From<Kind> for AccountKind {
    fn from(k: Kind) -> Self {
        match k {
            Kind::Websocket => Self::Websocket,
            Kind::Whatsapp => Self::Whatsapp,
        }
    }
}

/// Why an account is where it is: a stable `code` the UI translates, and the engine's English
/// sentence as the fallback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct ReasonInfo {
    pub code: String,
    pub text: String,
}

impl From<&Reason> for ReasonInfo {
    fn from(r: &Reason) -> Self {
        Self {
            code: r.code().to_owned(),
            text: r.describe(),
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
    /// The endpoint (WebSocket URL) or "WhatsApp".
    pub target: String,
    pub country: Option<String>,
    #[ts(type = "number")]
    pub priority: i64,
    pub desired: bool,
    pub muted: bool,
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
}

/// What a card needs from the stored account that the live view does not carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub kind: AccountKind,
    pub target: String,
    pub country: Option<String>,
    pub priority: i64,
}

impl From<&Account> for Info {
    fn from(a: &Account) -> Self {
        Self {
            kind: a.kind,
            target: a.url.clone().unwrap_or_else(|| "WhatsApp".to_owned()),
            country: a.country.clone(),
            priority: a.priority,
        }
    }
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

pub fn card(view: &AccountView, info: &Info, health: Option<&HealthBits>) -> Card {
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
        target: info.target.clone(),
        country: info.country.clone(),
        priority: info.priority,
        desired: view.desired_running,
        muted: view.muted,
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
    }
}

/// Everything the main window needs to paint, in one round trip.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
pub struct Snapshot {
    /// Highest priority first, then by id.
    pub cards: Vec<Card>,
    pub autorecover: bool,
    pub previous_run_crashed: bool,
    pub restoring: u32,
    pub held_stopped: u32,
    pub data_dir: String,
    /// Lifeline's version (the workspace's, the same `lifeline --version` prints), for About.
    pub version: String,
}

/// Sorts cards the way the fleet is restored: highest priority first, then oldest.
pub fn sort_cards(cards: &mut [Card]) {
    cards.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.id.cmp(&b.id)));
}

/// Cards that changed and accounts that are gone, coalesced over a short window.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
pub struct FleetDelta {
    pub cards: Vec<Card>,
    #[ts(type = "Array<number>")]
    pub removed: Vec<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct SettingsChanged {
    pub autorecover: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, TS)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LinkRequest {
    Qr,
    PhoneCode { phone: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, TS)]
pub struct NewAccountInput {
    pub kind: Kind,
    pub name: String,
    /// WebSocket only.
    pub url: Option<String>,
    /// WebSocket only: a header sent on connect, valued from a named keyring secret.
    pub header_name: Option<String>,
    pub header_secret: Option<String>,
    #[ts(type = "number | null")]
    pub priority: Option<i64>,
    pub country: Option<String>,
    /// WhatsApp only: how to link right after adding.
    pub link: Option<LinkRequest>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum LinkModeName {
    Qr,
    PhoneCode,
}

/// A code to show while linking. QR codes arrive as a ready SVG drawing; the raw payload is
/// not sent on its own.
#[derive(Clone, PartialEq, Eq, Serialize, TS)]
pub struct LinkInfo {
    #[ts(type = "number")]
    pub account: i64,
    pub mode: LinkModeName,
    pub qr_svg: Option<String>,
    /// The 8-character pair code (phone mode).
    pub code: Option<String>,
    pub phone: Option<String>,
    pub expires_at: String,
}

impl std::fmt::Debug for LinkInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkInfo")
            .field("account", &self.account)
            .field("mode", &self.mode)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Turns a link code into what the modal shows: QR payloads are drawn as SVG here.
pub fn link_info(account: i64, code: &LinkCode) -> Result<LinkInfo, qrcode::types::QrError> {
    Ok(match &code.mode {
        LinkMode::Qr => {
            let qr = qrcode::QrCode::new(code.code.as_bytes())?;
            let svg = qr
                .render::<qrcode::render::svg::Color<'_>>()
                .min_dimensions(256, 256)
                .quiet_zone(true)
                .dark_color(qrcode::render::svg::Color("#000000"))
                .light_color(qrcode::render::svg::Color("#ffffff"))
                .build();
            LinkInfo {
                account,
                mode: LinkModeName::Qr,
                qr_svg: Some(svg),
                code: None,
                phone: None,
                expires_at: rfc3339(code.expires_at),
            }
        }
        LinkMode::PhoneCode { phone } => LinkInfo {
            account,
            mode: LinkModeName::PhoneCode,
            qr_svg: None,
            code: Some(code.code.clone()),
            phone: Some(phone.clone()),
            expires_at: rfc3339(code.expires_at),
        },
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Down,
    NeedsOperator,
    Summary,
}

/// An alert for the in-app banner; the desktop notification carries the same text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct AlertInfo {
    pub kind: AlertKind,
    #[ts(type = "number | null")]
    pub account: Option<i64>,
    pub title: String,
    pub body: String,
}

/// The words of a notification, in the operator's language.
pub fn alert_info(alert: &Alert, lang: Language) -> AlertInfo {
    let id = lang == Language::Id;
    match alert {
        Alert::Down {
            account,
            name,
            reason,
            since,
        } => AlertInfo {
            kind: AlertKind::Down,
            account: Some(account.0),
            title: if id {
                format!("{name} terputus")
            } else {
                format!("{name} is down")
            },
            body: {
                let why = reason
                    .as_ref()
                    .map(|r| r.describe())
                    .unwrap_or_else(|| "unknown".into());
                let at = since.format("%H:%M UTC");
                if id {
                    format!("Belum pulih sejak {at} ({why}). Lifeline terus mencoba.")
                } else {
                    format!("Not recovered since {at} ({why}). Lifeline keeps retrying.")
                }
            },
        },
        Alert::NeedsOperator {
            account,
            name,
            reason,
        } => AlertInfo {
            kind: AlertKind::NeedsOperator,
            account: Some(account.0),
            title: if id {
                format!("{name} perlu tindakan Anda")
            } else {
                format!("{name} needs you")
            },
            body: reason.describe(),
        },
        Alert::Summary {
            down,
            needs_operator,
            examples,
        } => AlertInfo {
            kind: AlertKind::Summary,
            account: None,
            title: if id {
                format!("{} akun bermasalah", down + needs_operator)
            } else {
                format!("{} accounts need attention", down + needs_operator)
            },
            body: {
                let names = examples.join(", ");
                if id {
                    format!("{down} terputus, {needs_operator} perlu tindakan: {names}…")
                } else {
                    format!("{down} down, {needs_operator} need the operator: {names}…")
                }
            },
        },
    }
}

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

/// Policy values by section and key, as `lifeline policy show` prints them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(transparent)]
pub struct PolicyValues(
    #[ts(type = "Record<string, Record<string, number | boolean>>")]
    pub  BTreeMap<String, BTreeMap<String, serde_json::Value>>,
);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ExportWhat {
    Sessions,
    Events,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, TS)]
pub struct ExportRequest {
    pub path: String,
    pub what: ExportWhat,
    #[ts(type = "number | null")]
    pub account: Option<i64>,
    /// RFC 3339 or a date (YYYY-MM-DD), as the CLI accepts.
    pub since: Option<String>,
    pub until: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
pub struct ExportProgress {
    #[ts(type = "number")]
    pub rows: u64,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct ExportDone {
    #[ts(type = "number")]
    pub rows: u64,
    pub path: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    #[default]
    En,
    Id,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum Theme {
    #[default]
    System,
    Light,
    Dark,
}

/// Desktop preferences, stored in the database's settings under [`PREFS_KEY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(default)]
pub struct Prefs {
    pub language: Language,
    pub theme: Theme,
    /// Desktop notifications for alerts (muted accounts never notify either way).
    pub notifications: bool,
    /// Read from and written to the OS autostart entry, not the database.
    pub start_at_login: bool,
}

impl Default for Prefs {
    fn default() -> Self {
        Self {
            language: Language::En,
            theme: Theme::System,
            notifications: true,
            start_at_login: false,
        }
    }
}

pub const PREFS_KEY: &str = "desktop.prefs";

/// A secret value on its way to the keyring. Deserialized from the UI; never serialized,
/// printed or logged.
#[derive(Clone, Deserialize, TS)]
#[serde(transparent)]
#[ts(type = "string")]
pub struct SecretInput(String);

impl SecretInput {
    pub fn into_value(self) -> lifeline_engine::secrets::SecretValue {
        lifeline_engine::secrets::SecretValue::new(self.0)
    }
}

impl std::fmt::Debug for SecretInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretInput(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, Utc};
    use lifeline_engine::AccountId;

    use super::*;

    fn view(state: State) -> AccountView {
        AccountView {
            id: AccountId(3),
            name: "Toko Mawar".into(),
            kind: AccountKind::Websocket,
            desired_running: true,
            muted: false,
            state,
            since: Utc::now(),
            breaker: "closed",
            reconnects: 4,
        }
    }

    fn info() -> Info {
        Info {
            kind: AccountKind::Websocket,
            target: "ws://127.0.0.1:9000/s/a".into(),
            country: Some("ID".into()),
            priority: 900,
        }
    }

    #[test]
    fn a_backoff_card_carries_reason_retry_time_and_health() {
        let retry = Utc::now() + Duration::seconds(5);
        let v = view(State::Backoff {
            attempt: 2,
            retry_at: retry,
            reason: Reason::ClosedByPeer { code: Some(1011) },
        });
        let health = HealthBits {
            uptime_pct: 97.5,
            score: 88,
            failures_1h: 2,
            breaker: "closed",
        };
        let c = card(&v, &info(), Some(&health));
        assert_eq!(c.state, StateName::Backoff);
        let reason = c.reason.clone().expect("reason");
        assert_eq!(reason.code, "closed-by-peer");
        assert!(reason.text.contains("1011"), "{}", reason.text);
        assert_eq!(c.retry_at, Some(rfc3339(retry)));
        assert_eq!(c.attempt, Some(2));
        assert_eq!(
            (c.uptime_pct, c.score, c.failures_1h),
            (Some(97.5), Some(88), 2)
        );
        assert_eq!(c.reconnects, 4);
        let json = serde_json::to_value(&c).expect("json");
        assert_eq!(json["state"], "backoff");
        assert_eq!(json["kind"], "websocket");
    }

    #[test]
    fn a_card_without_a_health_pass_yet_has_no_score() {
        let c = card(&view(State::Connected), &info(), None);
        assert_eq!(c.state, StateName::Connected);
        assert!(c.reason.is_none() && c.score.is_none() && c.uptime_pct.is_none());
    }

    #[test]
    fn cards_sort_by_priority_then_age() {
        let mut cards: Vec<Card> = [(1, 100), (2, 900), (3, 100), (4, 900)]
            .into_iter()
            .map(|(id, priority)| {
                let mut v = view(State::Connected);
                v.id = AccountId(id);
                let mut i = info();
                i.priority = priority;
                card(&v, &i, None)
            })
            .collect();
        sort_cards(&mut cards);
        let ids: Vec<i64> = cards.iter().map(|c| c.id).collect();
        assert_eq!(ids, vec![2, 4, 1, 3]);
    }

    #[test]
    fn qr_codes_travel_as_svg_and_pair_codes_as_text() {
        let at = Utc::now();
        let qr = link_info(
            5,
            &LinkCode {
                mode: LinkMode::Qr,
                code: "2@abc,def,ghi".into(),
                expires_at: at,
            },
        )
        .expect("qr");
        assert_eq!(qr.mode, LinkModeName::Qr);
        let svg = qr.qr_svg.as_deref().expect("svg");
        assert!(svg.contains("<svg") && svg.contains("#000000"), "{svg}");
        assert!(qr.code.is_none(), "the raw payload is not sent separately");
        assert!(!format!("{qr:?}").contains("svg"), "Debug hides the code");
        let pair = link_info(
            5,
            &LinkCode {
                mode: LinkMode::PhoneCode {
                    phone: "+6281234567890".into(),
                },
                code: "ABCD1234".into(),
                expires_at: at,
            },
        )
        .expect("pair");
        assert_eq!(pair.code.as_deref(), Some("ABCD1234"));
        assert_eq!(pair.phone.as_deref(), Some("+6281234567890"));
        assert!(!format!("{pair:?}").contains("ABCD1234"));
    }

    #[test]
    fn alerts_read_in_the_chosen_language() {
        let down = Alert::Down {
            account: AccountId(1),
            name: "Shop A".into(),
            reason: Some(Reason::Network),
            since: Utc::now(),
        };
        let en = alert_info(&down, Language::En);
        assert_eq!(en.title, "Shop A is down");
        assert!(en.body.contains("network error"), "{}", en.body);
        assert_eq!(alert_info(&down, Language::Id).title, "Shop A terputus");
        let summary = alert_info(
            &Alert::Summary {
                down: 7,
                needs_operator: 1,
                examples: vec!["a".into(), "b".into()],
            },
            Language::En,
        );
        assert_eq!(summary.kind, AlertKind::Summary);
        assert_eq!(summary.title, "8 accounts need attention");
        assert!(summary.body.contains("a, b"));
    }

    #[test]
    fn secret_inputs_never_print_their_value() {
        let s: SecretInput = serde_json::from_str("\"hunter2\"").expect("parse");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.into_value().expose(), "hunter2");
    }

    #[test]
    fn prefs_fill_missing_fields_with_defaults() {
        let p: Prefs = serde_json::from_str(r#"{"language":"id"}"#).expect("parse");
        assert_eq!(p.language, Language::Id);
        assert!(p.notifications);
        assert_eq!(p.theme, Theme::System);
    }
}
