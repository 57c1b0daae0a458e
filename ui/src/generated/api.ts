// Generated from src-tauri (api.rs, error.rs, names.rs) by
// `UPDATE_BINDINGS=1 cargo test -p lifeline-desktop bindings`. Do not edit.

export type StateName = "stopped" | "linking" | "connecting" | "connected" | "waiting" | "backoff" | "paused" | "needs_operator";

export type Kind = "websocket" | "whatsapp" | "tiktok";

export type ReasonInfo = { code: string, 
/**
 * HTTP status of a refusal.
 */
status: number | null, 
/**
 * WebSocket close code of a server-side close.
 */
close_code: number | null, 
/**
 * End of a ban (RFC 3339).
 */
until: string | null, };

export type Owner = { 
/**
 * The instance's id, shortened as `lifeline fleet status` prints it.
 */
instance: string, host: string, pid: number, };

export type Card = { id: number, name: string, kind: Kind, 
/**
 * The endpoint (WebSocket URL), the TikTok creator (`@user`) or "WhatsApp".
 */
target: string, country: string | null, priority: number, desired: boolean, muted: boolean, 
/**
 * A notification says when the creator goes live (TikTok accounts).
 */
notify_live: boolean, state: StateName, reason: ReasonInfo | null, 
/**
 * Backoff: when the next attempt is due, and its number.
 */
retry_at: string | null, attempt: number | null, 
/**
 * Paused: until when, if known.
 */
paused_until: string | null, 
/**
 * When the current state began (the card's "last change").
 */
since: string, 
/**
 * Connections restored after a drop, this run.
 */
reconnects: number, 
/**
 * closed | open | half_open
 */
breaker: string, 
/**
 * Connected share of the last 24 h, in percent (`null` until the first health pass).
 */
uptime_pct: number | null, 
/**
 * 0–100.
 */
score: number | null, failures_1h: number, 
/**
 * Set while the account keeps connecting and dropping: until when it counts as unstable
 * unless it drops again (RFC 3339; a time already past means it has held since).
 */
unstable_until: string | null, 
/**
 * Who it is at the remote once connected: a WhatsApp number's phone number (`+` and
 * digits) and profile name.
 */
remote_id: string | null, remote_name: string | null, 
/**
 * In a fleet's console: the instance supervising it now (`null` there: none holds it).
 */
owner: Owner | null, };

export type Snapshot = { 
/**
 * When its cards were read, in the order of every read of the fleet: a [`FleetDelta`] with
 * a `seq` at or below this one was read before, and the snapshot already holds it.
 */
seq: number, 
/**
 * Highest priority first, then by id.
 */
cards: Array<Card>, autorecover: boolean, previous_run_crashed: boolean, restoring: number, held_stopped: number, data_dir: string, 
/**
 * The fleet store this window is a console of; `null`: this computer supervises its own
 * accounts.
 */
fleet_store: string | null, 
/**
 * Lifeline's version (the workspace's, the same `lifeline --version` prints), for About.
 */
version: string, };

export type FleetDelta = { 
/**
 * When its cards were read (see [`Snapshot::seq`]); rises with every delta.
 */
seq: number, cards: Array<Card>, removed: Array<number>, };

export type SettingsChanged = { autorecover: boolean, };

export type LinkRequest = { "mode": "qr" } | { "mode": "phone_code", phone: string, };

export type NewAccountInput = { kind: Kind, name: string, 
/**
 * A WebSocket account's URL, or the creator a TikTok account watches (`@name`).
 */
url: string | null, 
/**
 * WebSocket only: a header sent on connect, valued from a named keyring secret.
 */
header_name: string | null, header_secret: string | null, priority: number | null, country: string | null, 
/**
 * WhatsApp only: how to link right after adding.
 */
link: LinkRequest | null, };

export type LinkModeName = "qr" | "phone_code";

export type LinkInfo = { account: number, mode: LinkModeName, qr_svg: string | null, 
/**
 * The 8-character pair code (phone mode).
 */
code: string | null, phone: string | null, expires_at: string, };

export type AlertKind = "down" | "needs_operator" | "unstable" | "went_live" | "summary";

export type AlertInfo = { kind: AlertKind, account: number | null, 
/**
 * The account's name (one-account alerts).
 */
name: string | null, reason: ReasonInfo | null, 
/**
 * Down since (RFC 3339), for a drop not recovered within the grace period.
 */
since: string | null, 
/**
 * An unstable account's drops within `window_s` seconds.
 */
drops: number, window_s: number, 
/**
 * A summary's counts and a few names.
 */
down: number, needs_operator: number, unstable: number, examples: Array<string>, };

export type NotificationText = { title: string, body: string, };

export type TrayLabels = { show_hide: string, start_all: string, stop_all: string, quit: string, summary: string, 
/**
 * The one-time notice when closing the window first leaves Lifeline in the tray.
 */
kept_running: NotificationText, 
/**
 * The window's title while accounts need a person; slot `{needs}`.
 */
title_needs: string, };

export type IntervalInfo = { start: string, end: string | null, };

export type EventInfo = { id: number, at: string, from: StateName, to: StateName, reason: ReasonInfo | null, detail: string | null, 
/**
 * engine | operator | reconcile | startup
 */
by: string, };

export type HistoryInfo = { since: string, now: string, intervals: Array<IntervalInfo>, 
/**
 * Newest first.
 */
events: Array<EventInfo>, 
/**
 * The latest lives (remote sessions), newest first; empty for kinds that have none.
 */
lives: Array<LiveInfo>, };

export type LiveInfo = { 
/**
 * The remote's id for it (a room id).
 */
key: string, started_at: string, ended_at: string | null, 
/**
 * How it ended: `ended`, `ended-while-away`; none while it runs.
 */
end: string | null, counts: Array<CountInfo>, };

export type CountInfo = { name: string, value: number, };

export type PolicyValues = Record<string, Record<string, number | boolean>>;

export type PresetInfo = { name: "careful" | "balanced" | "fast", values: PolicyValues, };

export type ExportWhat = "sessions" | "events" | "lives";

export type ExportRequest = { path: string, what: ExportWhat, account: number | null, 
/**
 * RFC 3339 or a date (YYYY-MM-DD), as the CLI accepts.
 */
since: string | null, until: string | null, };

export type ExportProgress = { rows: number, done: boolean, };

export type ExportDone = { rows: number, path: string, };

export type Language = "en" | "id";

export type Theme = "system" | "light" | "dark";

export type Prefs = { language: Language, theme: Theme, 
/**
 * Desktop notifications for alerts (muted accounts never notify either way).
 */
notifications: boolean, 
/**
 * Read from and written to the OS autostart entry, not the database.
 */
start_at_login: boolean, 
/**
 * Serve the HTTP API (the one `lifeline serve --http` serves) on 127.0.0.1:`http_port`.
 */
http_api: boolean, http_port: number, 
/**
 * Closing the window hides it and keeps supervising (where a tray shows Lifeline);
 * otherwise closing quits.
 */
close_to_tray: boolean, 
/**
 * Started at login: stay in the tray, without a window.
 */
start_hidden: boolean, 
/**
 * Read-only, from the desktop: whether a panel shows tray icons. Without one, closing
 * the window quits whatever `close_to_tray` says.
 */
tray_host: boolean, };

export type WebhookInfo = { id: number, url: string, 
/**
 * None: every message.
 */
events: Array<string> | null, 
/**
 * None: every account.
 */
accounts: number[] | null, enabled: boolean, 
/**
 * Why it is off (the operator, a 410 answer, days of failures).
 */
disabled_reason: string | null, 
/**
 * The first failed attempt since the last success (RFC 3339).
 */
failing_since: string | null, };

export type DeliveryState = "pending" | "delivered" | "failed";

export type DeliveryInfo = { id: number, endpoint_id: number, 
/**
 * The message type, e.g. `account.dropped`.
 */
kind: string, account: number | null, 
/**
 * When the message was recorded (RFC 3339).
 */
at: string, state: DeliveryState, attempts: number, 
/**
 * The receiver's last HTTP status, if it answered.
 */
last_code: number | null, 
/**
 * What went wrong on the last attempt (timeout, refused, …).
 */
last_error: string | null, 
/**
 * The next attempt, while pending (RFC 3339).
 */
next_at: string | null, };

export type NewWebhookInput = { url: string, 
/**
 * Empty: every message.
 */
events: Array<string>, };

export type WebhookSecret = { endpoint: WebhookInfo, secret: string, };

export type WebhookOff = { endpoint: number, url: string, reason: string, };

export type FleetInstance = { instance: string, host: string, pid: number, alive: boolean, 
/**
 * Seconds since its last heartbeat (the database's clock).
 */
heartbeat_age_s: number, 
/**
 * Accounts it supervises now.
 */
leases: number, max_accounts: number | null, takeovers: number, renew_failures: number, stale_writes_refused: number, };

export type FleetStatus = { url: string, accounts: number, leases_held: number, live_instances: number, takeovers: number, renew_failures: number, stale_writes_refused: number, instances: Array<FleetInstance>, };

export type FleetConnectInput = { 
/**
 * postgres://user@host[:port]/database, without a password.
 */
url: string, 
/**
 * Kept in the OS keyring once the connection works; empty uses the one kept there already
 * (or none).
 */
password: string, };

export type Connection = { 
/**
 * The fleet store this computer is a console of; `null`: its own accounts.
 */
fleet_store: string | null, 
/**
 * Set by `LIFELINE_STORE` (Settings cannot change it).
 */
from_environment: boolean, };

export type ErrorCode = "invalid_input" | "not_found" | "already_running" | "keyring" | "storage" | "io" | "cancelled" | "unavailable" | "internal";

export type CommandError = { code: ErrorCode, message: string, };
