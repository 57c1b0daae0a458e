//! What an operator configures: accounts and the names of the secrets they use. Validation
//! happens here, once, so every face rejects the same inputs with the same message.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::country;
use crate::error::InputError;
use crate::state::State;
use crate::time::Timestamp;

pub const MAX_NAME_CHARS: usize = 120;
pub const MIN_PRIORITY: i64 = 0;
pub const MAX_PRIORITY: i64 = 1000;
pub const DEFAULT_PRIORITY: i64 = 100;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct AccountId(pub i64);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    Websocket,
    Whatsapp,
    /// A TikTok creator whose live broadcasts are watched and recorded.
    Tiktok,
}

impl AccountKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::Websocket => "websocket",
            AccountKind::Whatsapp => "whatsapp",
            AccountKind::Tiktok => "tiktok",
        }
    }

    /// Kinds that must be linked (a QR scan or a pair code) before they can connect.
    pub fn links(self) -> bool {
        matches!(self, AccountKind::Whatsapp)
    }
}

impl FromStr for AccountKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "websocket" => Ok(AccountKind::Websocket),
            "whatsapp" => Ok(AccountKind::Whatsapp),
            "tiktok" => Ok(AccountKind::Tiktok),
            other => Err(format!(
                "unknown account kind '{other}' (use websocket, whatsapp or tiktok)"
            )),
        }
    }
}

impl fmt::Display for AccountKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name under which a secret's value sits in the OS keyring. Only names are ever stored
/// in the database or shown after entry.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(try_from = "String", into = "String")]
pub struct SecretName(String);

impl SecretName {
    pub fn parse(s: &str) -> Result<Self, InputError> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(InputError::InvalidSecretName(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SecretName {
    type Error = InputError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<SecretName> for String {
    fn from(s: SecretName) -> Self {
        s.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An HTTP header sent on connect whose value is the named secret (e.g. `Authorization`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HeaderRef {
    pub name: String,
    pub secret: SecretName,
}

impl HeaderRef {
    /// Parses `Header-Name=secret-name` as typed on the command line.
    pub fn parse(s: &str) -> Result<Self, InputError> {
        let (name, secret) = s
            .split_once('=')
            .ok_or_else(|| InputError::InvalidHeaderName(s.to_owned()))?;
        let name = name.trim();
        let ok = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        if !ok {
            return Err(InputError::InvalidHeaderName(name.to_owned()));
        }
        Ok(Self {
            name: name.to_owned(),
            secret: SecretName::parse(secret.trim())?,
        })
    }
}

/// An account as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Account {
    pub id: AccountId,
    pub kind: AccountKind,
    pub name: String,
    /// Endpoint for websocket accounts; a TikTok account's creator page
    /// (`https://www.tiktok.com/@user/live`); WhatsApp accounts use WhatsApp's servers.
    pub url: Option<String>,
    /// Restore order at startup: higher first.
    pub priority: i64,
    /// ISO 3166-1 alpha-2, used to pick proxies near the number.
    pub country: Option<String>,
    /// Proxy to connect through (socks5:// or http://, no credentials in it).
    pub proxy_url: Option<String>,
    /// Secret holding `user:password` for the proxy.
    pub proxy_secret: Option<SecretName>,
    /// Headers sent on connect, each valued from a secret.
    pub headers: Vec<HeaderRef>,
    /// No desktop notifications for this account.
    pub muted: bool,
    /// A notification when the remote's session starts (a creator going live).
    #[serde(default)]
    pub notify_live: bool,
    /// Should it be running. The supervisor drives actual state towards this.
    pub desired_running: bool,
    /// Last recorded actual state.
    pub state: State,
    #[schema(value_type = String, format = DateTime)]
    pub state_since: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Who it is at the remote, once connected (a WhatsApp number's phone number and profile
    /// name).
    #[serde(default)]
    pub identity: Option<Identity>,
}

/// An account's identity at the remote, as its connector reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Identity {
    /// The remote's own id for it: for WhatsApp the phone number, `+` and digits.
    pub id: String,
    /// The name the remote shows for it (WhatsApp's profile name), when set.
    pub name: Option<String>,
}

/// Everything needed to add an account; [`NewAccount::validate`] normalises and checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAccount {
    pub kind: AccountKind,
    pub name: String,
    pub url: Option<String>,
    pub priority: i64,
    pub country: Option<String>,
    pub proxy_url: Option<String>,
    pub proxy_secret: Option<SecretName>,
    pub headers: Vec<HeaderRef>,
    pub muted: bool,
    pub notify_live: bool,
    pub desired_running: bool,
}

impl NewAccount {
    pub fn new(kind: AccountKind, name: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.into(),
            url: None,
            priority: DEFAULT_PRIORITY,
            country: None,
            proxy_url: None,
            proxy_secret: None,
            headers: Vec::new(),
            muted: false,
            notify_live: false,
            desired_running: true,
        }
    }

    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }

    /// Checks every field and returns the normalised account (trimmed name, canonical URL and
    /// country code). Secret existence is checked by the store, which knows the names.
    pub fn validate(mut self) -> Result<Self, InputError> {
        self.name = validate_name(&self.name)?;
        self.url = match (self.kind, self.url.take()) {
            (AccountKind::Websocket, None) => return Err(InputError::MissingUrl),
            (AccountKind::Websocket, Some(u)) => Some(validate_ws_url(&u)?),
            (AccountKind::Whatsapp, Some(_)) => return Err(InputError::UrlNotAllowed),
            (AccountKind::Whatsapp, None) => None,
            (AccountKind::Tiktok, None) => return Err(InputError::MissingTiktokUser),
            (AccountKind::Tiktok, Some(u)) => Some(tiktok_live_url(tiktok_user(&u)?)),
        };
        if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&self.priority) {
            return Err(InputError::InvalidPriority(self.priority));
        }
        self.country = match self.country.take() {
            None => None,
            Some(c) => {
                Some(country::normalize(&c).ok_or_else(|| InputError::InvalidCountry(c.clone()))?)
            }
        };
        self.proxy_url = self
            .proxy_url
            .take()
            .map(|p| validate_proxy_url(&p))
            .transpose()?;
        if self.kind.links() {
            // The one rule for a new linking account, on every face: it cannot connect before it
            // is linked, so it is added not running and waiting for a person; linking starts it.
            self.desired_running = false;
        }
        Ok(self)
    }

    /// The state a new account starts in: stopped, or — for a kind that must be linked first —
    /// waiting for the operator to link it.
    pub fn initial_state(&self) -> State {
        if self.kind.links() {
            State::NeedsOperator {
                reason: crate::state::Reason::NotLinked,
            }
        } else {
            State::INITIAL
        }
    }

    /// Secret names this account refers to.
    pub fn secret_refs(&self) -> impl Iterator<Item = &SecretName> {
        self.proxy_secret
            .iter()
            .chain(self.headers.iter().map(|h| &h.secret))
    }
}

/// What an operator may change on an existing account; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountChange {
    /// A new name (unique among live accounts).
    #[serde(default)]
    pub name: Option<String>,
    /// Restore order at startup, 0–1000, higher first.
    #[serde(default)]
    pub priority: Option<i64>,
    /// No desktop notifications for this account.
    #[serde(default)]
    pub muted: Option<bool>,
    /// A notification when a live starts (TikTok accounts).
    #[serde(default)]
    pub notify_live: Option<bool>,
}

impl AccountChange {
    /// Checks and normalises every given field.
    pub fn validate(mut self) -> Result<Self, InputError> {
        self.name = self.name.as_deref().map(validate_name).transpose()?;
        if let Some(p) = self.priority
            && !(MIN_PRIORITY..=MAX_PRIORITY).contains(&p)
        {
            return Err(InputError::InvalidPriority(p));
        }
        Ok(self)
    }
}

/// The TikTok user an operator typed (`@tokomawar`, `tokomawar`, or the creator's page
/// `https://www.tiktok.com/@tokomawar/live`), checked and without the `@`: 2–24 letters, digits,
/// `_` and `.`, not ending in a dot.
pub fn tiktok_user(raw: &str) -> Result<&str, InputError> {
    let bad = || InputError::InvalidTiktokUser(raw.to_owned());
    let s = raw.trim();
    let s = match s.split_once("tiktok.com/") {
        Some((_, path)) => path.split(['/', '?', '#']).next().unwrap_or_default(),
        None => s,
    };
    let user = s.strip_prefix('@').unwrap_or(s);
    let ok = (2..=24).contains(&user.len())
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
        && !user.ends_with('.');
    if ok { Ok(user) } else { Err(bad()) }
}

/// The creator's live page, which is what a TikTok account stores as its URL.
pub fn tiktok_live_url(user: &str) -> String {
    format!("https://www.tiktok.com/@{}/live", user.to_ascii_lowercase())
}

/// Normalises an operator-typed phone number to E.164 (`+` and 8–15 digits, no leading zero in
/// the country code). Spaces, dashes, dots and parentheses between digits are accepted.
pub fn normalize_phone(raw: &str) -> Result<String, InputError> {
    let bad = || InputError::InvalidPhone(raw.to_owned());
    let rest = raw.trim().strip_prefix('+').ok_or_else(bad)?;
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return Err(bad()),
        }
    }
    if !(8..=15).contains(&digits.len()) || digits.starts_with('0') {
        return Err(bad());
    }
    Ok(format!("+{digits}"))
}

/// Trims and checks an account name: something visible, at most [`MAX_NAME_CHARS`] characters,
/// no control characters (NUL, newlines, terminal escapes) and no bidi embedding, override or
/// isolate controls, which would reorder the name — and the columns after it — wherever it is
/// shown. Right-to-left text itself, emoji and the plain LRM/RLM marks are fine.
pub fn validate_name(raw: &str) -> Result<String, InputError> {
    let name = raw.trim();
    if name.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err(InputError::EmptyName);
    }
    let chars = name.chars().count();
    if chars > MAX_NAME_CHARS {
        return Err(InputError::NameTooLong { chars });
    }
    if name.chars().any(|c| c.is_control() || is_bidi_control(c)) {
        return Err(InputError::NameHasControlChars);
    }
    Ok(name.to_owned())
}

/// Explicit directional embeddings, overrides and isolates (LRE, RLE, PDF, LRO, RLO, LRI, RLI,
/// FSI, PDI).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Format characters that draw nothing: a name made only of these looks empty in every list.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
    )
}

fn validate_ws_url(raw: &str) -> Result<String, InputError> {
    let bad = |why: &str| InputError::InvalidUrl {
        url: raw.to_owned(),
        why: why.to_owned(),
    };
    let url = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(bad(&format!("scheme '{}' is not ws or wss", url.scheme())));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials in the URL would be stored in plain text; put them in a secret and use --header",
        ));
    }
    Ok(url.to_string())
}

fn validate_proxy_url(raw: &str) -> Result<String, InputError> {
    let bad = || InputError::InvalidProxy(raw.to_owned());
    let url = url::Url::parse(raw.trim()).map_err(|_| bad())?;
    let scheme_ok = matches!(url.scheme(), "socks5" | "socks5h" | "http");
    if !scheme_ok
        || url.host_str().is_none_or(str::is_empty)
        || url.port_or_known_default().is_none()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(bad());
    }
    Ok(url.to_string())
}

#[cfg(test)]
mod tests;
