//! Alerts as values for the UI to word, the notification text it words, and the tray's words.

use lifeline_engine::policy::alerts::Alert;
use lifeline_engine::time::rfc3339;
use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::ReasonInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Down,
    NeedsOperator,
    /// Keeps connecting and dropping.
    Unstable,
    /// A creator went live (accounts that asked for it).
    WentLive,
    Summary,
}

/// An alert (the engine's decision) for the UI, which words it for the in-app banner and the
/// desktop notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct AlertInfo {
    pub kind: AlertKind,
    #[ts(type = "number | null")]
    pub account: Option<i64>,
    /// The account's name (one-account alerts).
    pub name: Option<String>,
    pub reason: Option<ReasonInfo>,
    /// Down since (RFC 3339), for a drop not recovered within the grace period.
    pub since: Option<String>,
    /// An unstable account's drops within `window_s` seconds.
    pub drops: u32,
    pub window_s: u32,
    /// A summary's counts and a few names.
    pub down: u32,
    pub needs_operator: u32,
    pub unstable: u32,
    pub examples: Vec<String>,
}

impl From<&Alert> for AlertInfo {
    fn from(alert: &Alert) -> Self {
        let empty = Self {
            kind: AlertKind::Summary,
            account: None,
            name: None,
            reason: None,
            since: None,
            drops: 0,
            window_s: 0,
            down: 0,
            needs_operator: 0,
            unstable: 0,
            examples: Vec::new(),
        };
        match alert {
            Alert::Down {
                account,
                name,
                reason,
                since,
            } => Self {
                kind: AlertKind::Down,
                account: Some(account.0),
                name: Some(name.clone()),
                reason: reason.as_ref().map(ReasonInfo::from),
                since: Some(rfc3339(*since)),
                ..empty
            },
            Alert::NeedsOperator {
                account,
                name,
                reason,
            } => Self {
                kind: AlertKind::NeedsOperator,
                account: Some(account.0),
                name: Some(name.clone()),
                reason: Some(reason.into()),
                ..empty
            },
            Alert::Unstable {
                account,
                name,
                drops,
                window_s,
            } => Self {
                kind: AlertKind::Unstable,
                account: Some(account.0),
                name: Some(name.clone()),
                drops: *drops,
                window_s: u32::try_from(*window_s).unwrap_or(u32::MAX),
                ..empty
            },
            Alert::WentLive { account, name } => Self {
                kind: AlertKind::WentLive,
                account: Some(account.0),
                name: Some(name.clone()),
                ..empty
            },
            Alert::Summary {
                down,
                needs_operator,
                unstable,
                examples,
            } => Self {
                down: *down as u32,
                needs_operator: *needs_operator as u32,
                unstable: *unstable as u32,
                examples: examples.clone(),
                ..empty
            },
        }
    }
}

/// A desktop notification as the UI worded it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, TS)]
pub struct NotificationText {
    pub title: String,
    pub body: String,
}

/// The tray's words in the operator's language. `summary` has the slots `{connected}`,
/// `{recovering}`, `{needs}` and `{total}`, filled in by the shell as the counts change.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, TS)]
pub struct TrayLabels {
    pub show_hide: String,
    pub start_all: String,
    pub stop_all: String,
    pub quit: String,
    pub summary: String,
    /// The one-time notice when closing the window first leaves Lifeline in the tray.
    pub kept_running: NotificationText,
    /// The window's title while accounts need a person; slot `{needs}`.
    pub title_needs: String,
}
