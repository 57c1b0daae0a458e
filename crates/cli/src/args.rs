//! Command-line grammar. Parsing only: every command is carried out in `commands.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lifeline_engine::model::AccountKind;
use lifeline_engine::policy::Preset;

#[derive(Debug, Parser)]
#[command(
    name = "lifeline",
    version,
    about = "Keep many WhatsApp and WebSocket sessions alive — headless Lifeline",
    long_about = "Keep many WhatsApp and WebSocket sessions alive — headless Lifeline.\n\n\
        Exit codes: 0 ok, 1 failure, 2 bad input or usage."
)]
pub struct Cli {
    /// Data directory (default: the platform data dir, e.g. ~/.local/share/lifeline).
    #[arg(long, global = true, env = "LIFELINE_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Work on a fleet's shared PostgreSQL store instead of this machine's:
    /// postgres://user@host[:port]/database, with no password in it (`serve` joins the fleet).
    #[arg(long, global = true, env = "LIFELINE_STORE", value_name = "URL")]
    pub store: Option<String>,

    /// Name of the secret holding the fleet store's password (`lifeline secret set store-password`).
    #[arg(
        long,
        global = true,
        default_value = "store-password",
        value_name = "SECRET"
    )]
    pub password_secret: String,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add, list or remove accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Turn restoring desired-running accounts at startup on or off, or show it.
    Autorecover {
        #[arg(value_enum)]
        mode: AutorecoverMode,
    },
    /// Export session history or the event log as CSV.
    Export(ExportArgs),
    /// Store secrets (tokens, proxy credentials) in the OS keyring.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Link a WhatsApp account: shows the QR code to scan (refreshed as it rotates), or with
    /// --phone the 8-character code to type on the phone. A running supervisor links it; with
    /// none running, one runs just for the link.
    Link {
        /// Account id.
        id: i64,
        /// Pair by phone number instead of QR, in international form (+62 812 …).
        #[arg(long, value_name = "+CCNUMBER")]
        phone: Option<String>,
    },
    /// Run the supervisor headless until SIGINT/SIGTERM.
    Serve(ServeArgs),
    /// Start an account (or all): marks it desired-running; a running supervisor acts at once.
    Start(Target),
    /// Stop an account (or all).
    Stop(Target),
    /// Retry an account now, skipping its backoff wait and an open breaker.
    Retry {
        /// Account id.
        id: i64,
    },
    /// Reset the circuit breaker of an account (or all).
    Reset(Target),
    /// Fleet health: per-account state, uptime and score. Exits 1 when a desired account is not connected.
    Health {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Show or change recovery policy values (backoff, breaker, pacing, keepalive, …).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Send signed messages (Standard Webhooks) to your own systems when accounts change.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Fleets of hosts sharing one PostgreSQL store: the fleet key, the fleet's state.
    #[command(subcommand)]
    Fleet(FleetCommand),
    /// This machine's store: its move into a fleet.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Show the data dir, the supervisor, autorecover and account counts by state.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve /health, /metrics and the control API on this loopback address, e.g. 127.0.0.1:7700
    /// (port 0 picks a free one).
    #[arg(long, value_name = "127.0.0.1:PORT")]
    pub http: Option<String>,
    /// Name of the secret holding the bearer token that mutating HTTP endpoints require.
    #[arg(long, default_value = "http-token", value_name = "SECRET")]
    pub token_secret: String,
    /// With --store (joining a fleet): at most this many accounts on this instance (default:
    /// its even share of the fleet). Each account runs on exactly one instance; the others take
    /// it over when that one stops or dies.
    #[arg(long, value_name = "N")]
    pub max_accounts: Option<u32>,
    /// With --store: seconds an account's lease lasts without renewal, which is how long the
    /// fleet waits before taking over the accounts of an instance that died (5–300).
    #[arg(long, default_value_t = 15, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(5..=300))]
    pub lease_ttl: u64,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// Account id.
    pub id: Option<i64>,
    /// Every account.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum AccountCommand {
    /// Add an account; prints its id.
    Add(AddArgs),
    /// List accounts, highest priority first.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove an account. Its history stays in exports.
    Remove {
        /// Account id (see `lifeline account list`).
        id: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Websocket,
    Whatsapp,
    /// A TikTok creator whose lives are watched and recorded (needs --user).
    Tiktok,
}

impl From<KindArg> for AccountKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Websocket => AccountKind::Websocket,
            KindArg::Whatsapp => AccountKind::Whatsapp,
            KindArg::Tiktok => AccountKind::Tiktok,
        }
    }
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long, value_enum)]
    pub kind: KindArg,
    /// A name the operator recognises, e.g. "Shop A".
    #[arg(long)]
    pub name: String,
    /// Endpoint of a websocket account (ws:// or wss://).
    #[arg(long, conflicts_with = "user")]
    pub url: Option<String>,
    /// The creator a TikTok account watches: @name (or the creator's tiktok.com page).
    #[arg(long, value_name = "@NAME")]
    pub user: Option<String>,
    /// Restore order at startup, 0–1000, higher first.
    #[arg(long, default_value_t = lifeline_engine::model::DEFAULT_PRIORITY, allow_negative_numbers = true)]
    pub priority: i64,
    /// ISO 3166-1 country code of the number, e.g. ID.
    #[arg(long)]
    pub country: Option<String>,
    /// Proxy to connect through: socks5://host:port or http://host:port.
    #[arg(long)]
    pub proxy: Option<String>,
    /// Name of the secret holding the proxy's user:password.
    #[arg(long, requires = "proxy", value_name = "SECRET")]
    pub proxy_secret: Option<String>,
    /// Header sent on connect, valued from a secret: NAME=SECRET (repeatable).
    #[arg(long = "header", value_name = "NAME=SECRET")]
    pub headers: Vec<String>,
    /// No desktop notifications for this account.
    #[arg(long)]
    pub muted: bool,
    /// A notification when the creator goes live (TikTok accounts).
    #[arg(long)]
    pub notify_live: bool,
    /// Add it without starting it.
    #[arg(long)]
    pub stopped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    Careful,
    Balanced,
    Fast,
}

impl From<PresetArg> for Preset {
    fn from(p: PresetArg) -> Self {
        match p {
            PresetArg::Careful => Preset::Careful,
            PresetArg::Balanced => Preset::Balanced,
            PresetArg::Fast => Preset::Fast,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AutorecoverMode {
    On,
    Off,
    Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WhatArg {
    Sessions,
    Events,
    /// Lives recorded for TikTok accounts: one row each, with their counts.
    Lives,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[arg(long, value_enum)]
    pub what: WhatArg,
    /// Output file, or - for standard output.
    #[arg(long, value_name = "FILE|-")]
    pub out: PathBuf,
    /// Only this account.
    #[arg(long, value_name = "ID")]
    pub account: Option<i64>,
    /// From this time (RFC 3339 or YYYY-MM-DD, UTC), inclusive.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Up to this time, exclusive.
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Print every policy value (JSON).
    Show,
    /// Change one value, e.g. `pacing.rate_per_s=3` or `breaker.threshold=5`.
    Set {
        #[arg(value_name = "KEY=VALUE")]
        assignment: String,
    },
    /// Back to the defaults.
    Reset,
    /// Put in one of three presets' reconnect waits, pacing, breaker and restores at once
    /// (careful: safest for numbers; balanced: the defaults; fast: back quickly after a drop).
    /// Timeouts, keepalive and alert settings are kept.
    Preset {
        #[arg(value_enum)]
        name: PresetArg,
    },
    /// The latest changes of policy values and of autorecover: when, which, old → new.
    Changes {
        /// How many, newest first.
        #[arg(long, default_value_t = 20)]
        last: u32,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// The instances (host, pid, heartbeat, leases) and totals of the fleet store given with --store.
    Status {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// The fleet key that seals WhatsApp device stores in the fleet store (in this host's keyring).
    #[command(subcommand)]
    Key(FleetKeyCommand),
}

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Copy this machine's store into an empty fleet store: accounts, history, settings,
    /// webhooks and each linked WhatsApp number's device store (sealed with the fleet key), in
    /// one transaction, every table's row count checked. This machine's data is left as it is.
    MigrateTo {
        /// The fleet store: postgres://user@host[:port]/database (password from --password-secret).
        url: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum FleetKeyCommand {
    /// Make a new fleet key on this host (the fleet's first); refused when it has one.
    New,
    /// Write this host's fleet key to standard output, for another host:
    /// `lifeline fleet key export | ssh HOST lifeline fleet key import`. Never onto a terminal.
    Export,
    /// Store the fleet key read from standard input; refused when this host has another.
    Import,
    /// Show the key's fingerprint (never the key), or `none`.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a secret; the value is read from standard input, never from arguments.
    Set { name: String },
    /// Delete a secret (refused while an account uses it).
    Delete { name: String },
    /// List secret names (values are never shown).
    List,
}

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add an endpoint; prints its id. Its signing secret is generated into the OS keyring.
    Add {
        /// Where to POST: https://…, or http:// to a loopback or private address.
        url: String,
        /// Only these messages, comma-separated: state (every transition), connected, dropped,
        /// needs_operator, paused, alert. Default: all.
        #[arg(long, value_name = "LIST")]
        events: Option<String>,
        /// Only messages about this account (repeatable). Default: every account.
        #[arg(long = "account", value_name = "ID")]
        accounts: Vec<i64>,
        /// Print the signing secret (whsec_…) once, for the receiver's configuration.
        #[arg(long)]
        show_secret: bool,
    },
    /// List endpoints with their state.
    List {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Remove an endpoint and its secret; undelivered messages stay listed as failed.
    Remove { id: i64 },
    /// Stop sending to an endpoint (messages keep queueing).
    Disable { id: i64 },
    /// Send to an endpoint again, starting with what queued while it was off.
    Enable { id: i64 },
    /// Send a signed test message now and show the answer.
    Test { id: i64 },
    /// A new signing secret; the old one keeps signing beside it for 24 hours.
    RotateSecret {
        id: i64,
        /// Print the new secret once.
        #[arg(long)]
        show_secret: bool,
    },
    /// Recent deliveries, newest first.
    Deliveries {
        /// Only this endpoint.
        id: Option<i64>,
        /// Only deliveries that failed for good.
        #[arg(long)]
        failed: bool,
        /// At most this many rows.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Send a delivery again (same webhook-id), or every failed one.
    Replay {
        /// Delivery id (see `lifeline webhook deliveries`).
        #[arg(required_unless_present = "failed", conflicts_with = "failed")]
        delivery: Option<i64>,
        /// Every failed delivery (of --endpoint, or all).
        #[arg(long)]
        failed: bool,
        /// With --failed: only this endpoint's.
        #[arg(long, requires = "failed", value_name = "ID")]
        endpoint: Option<i64>,
    },
}
