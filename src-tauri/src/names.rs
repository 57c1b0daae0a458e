//! Every command and event name the UI and the shell share, in one place. The UI's copy
//! (`ui/src/generated/names.ts`) and the capability file's command list are generated from or
//! checked against this module, so a rename cannot leave a stale string behind.
//!
//! Kept free of dependencies: `build.rs` includes it to declare the app's commands to Tauri.

/// Commands, as `#[tauri::command]` function names. Card changes do not travel as an event but
/// through the channel `watch_fleet` opens: a mass drop moves hundreds of kilobytes, and channels
/// carry large messages without evaluating them as script in the page.
pub const COMMANDS: &[&str] = &[
    "fleet_snapshot",
    "watch_fleet",
    "add_account",
    "remove_account",
    "start_account",
    "stop_account",
    "retry_account",
    "reset_breaker",
    "set_muted",
    "set_notify_live",
    "relink_account",
    "start_all",
    "stop_all",
    "check_all",
    "set_autorecover",
    "account_history",
    "get_policy",
    "set_policy",
    "policy_presets",
    "list_secrets",
    "set_secret",
    "delete_secret",
    "choose_export_path",
    "export_csv",
    "get_prefs",
    "set_prefs",
    "quit",
    "notify",
    "set_tray_labels",
    "list_webhooks",
    "add_webhook",
    "remove_webhook",
    "set_webhook_enabled",
    "test_webhook",
    "rotate_webhook_secret",
    "webhook_deliveries",
    "replay_delivery",
    "connection",
    "connect_fleet",
    "disconnect_fleet",
    "fleet_status",
];

/// A QR or pair code to show while linking (never logged).
pub const EVENT_LINK: &str = "lifeline://link";
/// An alert the engine decided on; the UI words it and asks for the desktop notification.
pub const EVENT_ALERT: &str = "lifeline://alert";
/// Rows written so far by a running CSV export.
pub const EVENT_EXPORT_PROGRESS: &str = "lifeline://export-progress";
/// Fleet-wide settings changed (autorecover), possibly from the CLI.
pub const EVENT_SETTINGS: &str = "lifeline://settings";

/// The webhook sender turned an endpoint off (it answered 410, or failed for days).
pub const EVENT_WEBHOOK_OFF: &str = "lifeline://webhook-off";

pub const EVENTS: &[(&str, &str)] = &[
    ("link", EVENT_LINK),
    ("alert", EVENT_ALERT),
    ("exportProgress", EVENT_EXPORT_PROGRESS),
    ("settings", EVENT_SETTINGS),
    ("webhookOff", EVENT_WEBHOOK_OFF),
];
