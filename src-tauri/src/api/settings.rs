//! Settings the UI reads and writes: policy values, exports, preferences, secrets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use ts_rs::TS;

/// Policy values by section and key, as `lifeline policy show` prints them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(transparent)]
pub struct PolicyValues(
    #[ts(type = "Record<string, Record<string, number | boolean>>")]
    pub  BTreeMap<String, BTreeMap<String, serde_json::Value>>,
);

/// A preset and the values it sets (only those: the rest of a policy stays as the operator has it).
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
pub struct PresetInfo {
    #[ts(type = "\"careful\" | \"balanced\" | \"fast\"")]
    pub name: lifeline_engine::policy::Preset,
    pub values: PolicyValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ExportWhat {
    Sessions,
    Events,
    /// TikTok creators' lives, with their counts.
    Lives,
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
    /// Serve the HTTP API (the one `lifeline serve --http` serves) on 127.0.0.1:`http_port`.
    pub http_api: bool,
    pub http_port: u16,
    /// Closing the window hides it and keeps supervising (where a tray shows Lifeline);
    /// otherwise closing quits.
    pub close_to_tray: bool,
    /// Started at login: stay in the tray, without a window.
    pub start_hidden: bool,
    /// Read-only, from the desktop: whether a panel shows tray icons. Without one, closing
    /// the window quits whatever `close_to_tray` says.
    pub tray_host: bool,
}

/// The HTTP API's port until the operator picks another.
pub const DEFAULT_HTTP_PORT: u16 = 7700;
/// The keyring secret whose value is the HTTP API's bearer token (as `serve`'s default).
pub const HTTP_TOKEN_SECRET: &str = "http-token";

impl Default for Prefs {
    fn default() -> Self {
        Self {
            language: Language::En,
            theme: Theme::System,
            notifications: true,
            start_at_login: false,
            http_api: false,
            http_port: DEFAULT_HTTP_PORT,
            close_to_tray: true,
            start_hidden: false,
            tray_host: false,
        }
    }
}

pub const PREFS_KEY: &str = "desktop.prefs";
/// Set once the operator has been told that closing keeps Lifeline running in the tray.
pub const TRAY_NOTICE_KEY: &str = "desktop.tray-notice-shown";

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
