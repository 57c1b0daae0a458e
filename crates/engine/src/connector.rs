//! The connector boundary: how the supervisor talks to any kind of session (WebSocket endpoint,
//! WhatsApp number, …). A connector runs one connection as a future that reports typed events and
//! ends when the connection ends or its cancellation token fires.
//!
//! Object-safe by design: a fleet mixes kinds, so the supervisor holds `Arc<dyn Connector>` per
//! kind and picks at runtime. The price is one boxed future per connection attempt, nothing next
//! to a network handshake; generics would instead make the supervisor generic over every kind.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::model::{Account, AccountKind};
use crate::policy::config::ConnectionConfig;
use crate::secrets::SecretStore;
use crate::state::Reason;
use crate::time::Timestamp;

/// How a linking kind should link when it has no session yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum LinkMode {
    Qr,
    /// Pair by phone code; E.164 number.
    PhoneCode {
        phone: String,
    },
}

/// A code to show the operator. `code` is sensitive: shown, never logged.
#[derive(Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct LinkCode {
    pub mode: LinkMode,
    pub code: String,
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: Timestamp,
}

impl fmt::Debug for LinkCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkCode")
            .field("mode", &self.mode)
            .field("code", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// What a connection reports.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnEvent {
    /// Live and usable. `via` names the proxy hop taken when the account has a proxy chain.
    Connected { via: Option<String> },
    /// Liveness proven again (pong, protocol ping, any inbound frame).
    Alive,
    /// Who the account is at the remote, learnt on connecting (a WhatsApp number's phone
    /// number and profile name).
    Identity(crate::model::Identity),
    /// A code to scan or type (linking kinds only). Boxed, being rare and the largest: every
    /// connection's event channel allocates its slots at this type's size.
    Link(Box<LinkCode>),
    /// The connection is up, but the remote has nothing to join yet (a creator who is not
    /// live); `reason` when something else holds it back (the kind is rate-limited). A
    /// `Connected` follows when the remote becomes available.
    Waiting { reason: Option<Reason> },
    /// A session at the remote began, changed or ended (a live broadcast with its counts).
    /// Boxed for the same reason as `Link`.
    Session(Box<RemoteSession>),
    /// The connection is over. `reason` says why: a network failure (retried by policy), or
    /// logged out / replaced / banned until / outdated (the supervisor maps those to states).
    Ended {
        reason: Reason,
        detail: Option<String>,
    },
}

/// Everything a connection attempt needs.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The account's settings (shared with its supervising task; its state fields are stale).
    pub account: Arc<Account>,
    pub config: ConnectionConfig,
    pub secrets: Arc<dyn SecretStore>,
    /// Set when the operator asked to (re)link this account.
    pub link: Option<LinkMode>,
    /// Proxy hops to try in order (see [`crate::proxy::chain`]); empty means connect directly.
    pub route: Vec<crate::proxy::Hop>,
    /// The account's remote session still open when this connection starts (a live that was
    /// in progress before a drop or a restart): the connector continues it when the remote's
    /// key is unchanged, and ends it otherwise.
    pub resume: Option<RemoteSession>,
}

/// One session at the remote, as a connector reports it: a TikTok creator's live broadcast, say.
/// The engine stores and exports these without knowing what they are; `metrics` are the
/// connector's own counts, each exported as a column.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct RemoteSession {
    /// The remote's id for the session (a room id); unique per account.
    pub key: String,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// How it ended, as a short code (`ended`, `ended-while-stopped`, …).
    pub end: Option<String>,
    /// Named counts, in the connector's order (`peak_viewers`, `likes`, …).
    pub metrics: Vec<(String, i64)>,
}

impl RemoteSession {
    pub fn metric(&self, name: &str) -> Option<i64> {
        self.metrics
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }
}

pub trait Connector: Send + Sync + fmt::Debug + 'static {
    /// Runs one connection. Must send exactly one `Ended` last (unless cancelled), must stop
    /// promptly once `cancel` fires, and must own its socket so that dropping the future closes it.
    fn run(
        &self,
        request: ConnectRequest,
        events: mpsc::Sender<ConnEvent>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()>;

    /// True when the connector keeps no session for the account yet, so connecting without a
    /// link request cannot succeed (an unlinked WhatsApp number). The engine then asks the
    /// operator to link it instead of dialling.
    fn needs_link(&self, _account: &Account) -> bool {
        false
    }

    /// Called when an account is removed, to delete whatever the connector keeps for it
    /// (e.g. a WhatsApp device store).
    fn forget(&self, _account: &Account) -> crate::Result<()> {
        Ok(())
    }

    /// A consistent copy of what the connector keeps for the account and another host needs to
    /// resume it without the operator (a WhatsApp number's device keys), taken while it runs;
    /// `None` when it keeps nothing (yet). Blocking: call it off the async threads.
    fn snapshot(&self, _account: &Account) -> crate::Result<Option<Vec<u8>>> {
        Ok(None)
    }

    /// Puts a [`Connector::snapshot`] from another host in place, before the account connects
    /// here. Blocking: call it off the async threads.
    fn restore(&self, _account: &Account, _snapshot: &[u8]) -> crate::Result<()> {
        Ok(())
    }
}

/// Connectors by account kind.
#[derive(Debug, Clone, Default)]
pub struct Connectors {
    by_kind: HashMap<AccountKind, Arc<dyn Connector>>,
}

impl Connectors {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with(mut self, kind: AccountKind, connector: Arc<dyn Connector>) -> Self {
        self.by_kind.insert(kind, connector);
        self
    }

    pub fn get(&self, kind: AccountKind) -> Option<&Arc<dyn Connector>> {
        self.by_kind.get(&kind)
    }
}
