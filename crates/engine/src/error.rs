//! One error type for the engine. Every message says what happened and what to do, because faces
//! (CLI, desktop, HTTP) show these strings to operators verbatim.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Something the operator typed that cannot be accepted. Faces map these to "bad input"
/// (exit code 2 in the CLI, a validation message in the UI). Nothing is stored when one occurs.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum InputError {
    #[error("Account name is empty. Give the account a name, e.g. --name \"Shop A\".")]
    EmptyName,
    #[error(
        "Account name is too long ({chars} characters). Use at most {max} characters.",
        max = crate::model::MAX_NAME_CHARS
    )]
    NameTooLong { chars: usize },
    #[error(
        "Account name contains control characters (line breaks, NUL, terminal escapes or text-direction overrides). Use printable text only."
    )]
    NameHasControlChars,
    #[error(
        "An account named '{0}' already exists. Pick another name or remove the old account first."
    )]
    DuplicateName(String),
    #[error(
        "'{url}' is not a usable WebSocket URL: {why}. Use ws://host:port/path or wss://host/path."
    )]
    InvalidUrl { url: String, why: String },
    #[error("A websocket account needs --url ws://… or wss://….")]
    MissingUrl,
    #[error("WhatsApp accounts connect to WhatsApp's own servers; leave out --url.")]
    UrlNotAllowed,
    #[error("--user names the creator of a TikTok account; use it with --kind tiktok.")]
    UserNotAllowed,
    #[error("A TikTok account needs the creator's user name: --user @name.")]
    MissingTiktokUser,
    #[error(
        "'{0}' is not a TikTok user name. Use @ and 2–24 letters, digits, '_' or '.', as in @tokomawar."
    )]
    InvalidTiktokUser(String),
    #[error(
        "Priority {0} is out of range. Use a whole number from 0 to 1000 (higher restores first)."
    )]
    InvalidPriority(i64),
    #[error("'{0}' is not an ISO 3166-1 country code. Use two letters such as ID, SG or US.")]
    InvalidCountry(String),
    #[error("'{0}' is not a valid secret name. Use 1–64 letters, digits, '.', '_' or '-'.")]
    InvalidSecretName(String),
    #[error("Secret '{0}' is not set. Run `lifeline secret set {0}` first.")]
    UnknownSecret(String),
    #[error("Secret '{name}' is still used by {accounts}. Remove or change those accounts first.")]
    SecretInUse { name: String, accounts: String },
    #[error("The secret value is empty. Provide the value on standard input.")]
    EmptySecret,
    #[error("'{0}' is not a valid header name. Use letters, digits and '-' only.")]
    InvalidHeaderName(String),
    #[error("'{0}' is not a valid proxy URL. Use socks5://host:port or http://host:port.")]
    InvalidProxy(String),
    #[error(
        "'{0}' is not a phone number in international form. Use + and the country code, e.g. +62 812 3456 7890."
    )]
    InvalidPhone(String),
    #[error("Account {0} is not a WhatsApp account; only WhatsApp accounts are linked.")]
    NotLinkable(i64),
    #[error("No account with id {0}. Run `lifeline account list` to see the ids.")]
    UnknownAccount(i64),
    #[error(
        "'{0}' is not a time. Use RFC 3339 (2026-11-01T08:00:00Z, 2026-11-01T15:00:00+07:00) or a date (2026-11-01)."
    )]
    InvalidTime(String),
    #[error(
        "The time range is inverted: --since {since} is not before --until {until}. Swap them."
    )]
    InvertedRange { since: String, until: String },
    #[error("Invalid policy value: {0}.")]
    InvalidPolicy(String),
    #[error(
        "The stored policy values cannot be used ({0}). Run `lifeline policy reset` to go back to the defaults, then set your values again."
    )]
    StoredPolicy(String),
    /// The running supervisor refused what was asked, in its own words.
    #[error("{0}")]
    Refused(String),
    #[error("'{url}' cannot receive webhooks: {why}.")]
    InvalidWebhookUrl { url: String, why: String },
    #[error(
        "'{0}' is not a webhook event. Use a comma-separated list of: {list}.",
        list = crate::webhook::EVENT_FILTERS.join(", ")
    )]
    UnknownWebhookEvent(String),
    #[error("No webhook endpoint with id {0}. Run `lifeline webhook list` to see the ids.")]
    UnknownWebhook(i64),
    #[error("No webhook delivery with id {0}. Run `lifeline webhook deliveries` to see the ids.")]
    UnknownDelivery(i64),
    #[error("Setting '{key}' has an invalid value '{value}': {why}")]
    InvalidSetting {
        key: String,
        value: String,
        why: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Input(#[from] InputError),

    #[error(
        "The database {path} is damaged or is not a Lifeline database ({detail}). It was left untouched: \
         move it aside (or restore a backup) and start again to create a fresh one."
    )]
    DatabaseCorrupt { path: PathBuf, detail: String },

    #[error(
        "The database {path} was written by a newer Lifeline (schema version {version}; this one \
         knows up to {known}). Upgrade Lifeline to open it, or use another --data-dir. The file was \
         left untouched."
    )]
    DatabaseTooNew {
        path: PathBuf,
        version: i64,
        known: i64,
    },

    #[error(
        "Cannot open the database {path}: {detail}. Check that the file and its folder are readable and writable."
    )]
    DatabaseOpen { path: PathBuf, detail: String },

    #[error("Database error: {0}")]
    Database(#[from] sqlx::Error),

    #[error(
        "Another Lifeline{pid} is already supervising {path}. Stop it first, or point this one at another data dir with --data-dir.",
        pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    DataDirLocked { path: PathBuf, pid: Option<u32> },

    #[error(
        "Cannot use the data dir {path}: {source}. Check that it exists and is writable, or choose another with --data-dir."
    )]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error(
        "No data dir could be determined (no home directory). Pass --data-dir DIR or set LIFELINE_DATA_DIR."
    )]
    NoDataDir,

    #[error("Cannot listen on {addr}: {source}. Pick another port.")]
    Listen {
        addr: String,
        source: std::io::Error,
    },

    /// A fleet store (PostgreSQL) refused, or could not be reached.
    #[error("{0}")]
    Fleet(#[from] lifeline_fleet::Error),

    #[error("Cannot read {what}: {source}")]
    Read {
        what: String,
        source: std::io::Error,
    },

    #[error("Cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("Reading history for the export failed: {0}")]
    Export(String),

    #[error("Writing CSV failed: {0}")]
    Csv(#[from] csv::Error),

    #[error(
        "The OS keyring refused the request for secret '{name}': {detail}. Unlock the keyring (or start a Secret Service such as gnome-keyring) and try again."
    )]
    Keyring { name: String, detail: String },

    #[error("Linking did not complete: {0}.")]
    LinkFailed(String),

    #[error("The running supervisor could not do it: {0}")]
    Supervisor(String),

    #[error(
        "The running supervisor{pid} did not answer within {waited_s} s; it applies queued commands as soon as it can. Check it with `lifeline status`.",
        pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    SupervisorSilent { pid: Option<u32>, waited_s: u64 },

    #[error(
        "This needs a running supervisor on the data dir: start `lifeline serve` (or the desktop app) first."
    )]
    NeedsSupervisor,

    /// A webhook could not be sent; the words say why.
    #[error("{0}")]
    Webhook(String),

    #[error("Unhealthy: {0}.")]
    Unhealthy(String),

    #[error("A stored value is unreadable ({0}). The database may have been edited by hand.")]
    Decode(String),
}

impl Error {
    /// True when the operator can fix the problem by changing what they typed.
    pub fn is_input(&self) -> bool {
        match self {
            Error::Input(_) => true,
            Error::Fleet(e) => e.is_input(),
            _ => false,
        }
    }

    /// True when the store could not be reached or went away mid-write (a fleet store's
    /// PostgreSQL restarting): the same write may succeed once it is back.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(e) => lifeline_fleet::transient(e),
            Error::Fleet(e) => e.is_transient(),
            _ => false,
        }
    }

    /// Names the database file in a damage report that surfaced only on a query (a damaged page
    /// that opening did not touch), so it reads like one found on open: which file, what to do.
    pub fn in_database(self, path: &std::path::Path) -> Self {
        match self {
            Error::Database(e) => crate::store::damaged(path, &e).unwrap_or(Error::Database(e)),
            other => other,
        }
    }
}
