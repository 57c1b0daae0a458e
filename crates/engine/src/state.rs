//! The actual state of an account, the typed reasons behind it and the event recorded for every
//! transition. One enum so every face (cards, CLI, HTTP, CSV) tells the same story about a drop.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::AccountId;
use crate::time::Timestamp;

/// Why an account is where it is. Serialized with a stable kebab-case `kind` (also
/// [`Reason::code`]) that the store, the CSV export and every face use; the faces put codes and
/// their parameters into words (the CLI in English, the desktop in English or Bahasa Indonesia).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Reason {
    /// The connection attempt or a protocol answer took too long.
    Timeout,
    /// The peer refused the connection (TCP refused or an HTTP error on the handshake).
    Refused {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
    },
    /// The peer closed a live connection, with the WebSocket close code when it sent one.
    ClosedByPeer {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
    },
    /// The peer stopped answering keepalives.
    Stalled,
    /// DNS, routing, TLS or other network trouble below the protocol.
    Network,
    /// The health pass found the account shown connected while its connection was dead.
    Stale,
    /// The phone logged this device out; keys are gone and a new link is needed.
    LoggedOut,
    /// Another client took over this number; never fought over.
    Replaced,
    /// The service banned the number temporarily.
    Banned {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>, format = DateTime)]
        until: Option<Timestamp>,
    },
    /// The service refuses this client version.
    Outdated,
    /// A secret the account needs is missing from the keyring.
    CredentialsMissing,
    /// The service asked us to slow down.
    RateLimited,
    /// Too many failures in the breaker window; waiting for the cooldown.
    BreakerOpen,
    /// Linking codes ran out without a scan.
    QrExpired,
    /// Linking by QR or phone code failed.
    PairingFailed,
    /// The operator asked for it (start, stop, retry, reset).
    Operator,
    /// Desired running, but autorecover was off at startup.
    AutorecoverOff,
    /// Lifeline itself was shutting down.
    Shutdown,
    /// The account was removed.
    Removed,
    /// Lifeline stopped unexpectedly (crash, kill, power loss) while this was running.
    Crashed,
    /// This build has no connector for the account's kind.
    Unsupported,
    /// The server asked the client to reconnect (e.g. right after linking); not a failure.
    RestartRequired,
    /// A linking kind (WhatsApp) with no session yet: it must be linked before it can connect.
    NotLinked,
    /// The remote does not know the account (a user name that does not exist).
    NotFound,
    /// The service blocked this device or client; a person must decide what to do.
    Blocked,
}

impl Reason {
    /// The stable code stored in the `reason` column and shown in exports.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Refused { .. } => "refused",
            Reason::ClosedByPeer { .. } => "closed-by-peer",
            Reason::Stalled => "stalled",
            Reason::Network => "network",
            Reason::Stale => "stale",
            Reason::LoggedOut => "logged-out",
            Reason::Replaced => "replaced",
            Reason::Banned { .. } => "banned",
            Reason::Outdated => "outdated",
            Reason::CredentialsMissing => "credentials-missing",
            Reason::RateLimited => "rate-limited",
            Reason::BreakerOpen => "breaker-open",
            Reason::QrExpired => "qr-expired",
            Reason::PairingFailed => "pairing-failed",
            Reason::Operator => "operator",
            Reason::AutorecoverOff => "autorecover-off",
            Reason::Shutdown => "shutdown",
            Reason::Removed => "removed",
            Reason::Crashed => "crashed",
            Reason::Unsupported => "unsupported",
            Reason::RestartRequired => "restart-required",
            Reason::NotLinked => "not-linked",
            Reason::NotFound => "not-found",
            Reason::Blocked => "blocked",
        }
    }
}

/// Actual state of one account: stopped, linking, connecting, connected, waiting for the remote,
/// waiting to retry, paused by rule, or waiting for a person. Every change is recorded as an
/// [`Event`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum State {
    Stopped {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Reason>,
    },
    Linking,
    Connecting,
    Connected,
    /// The connection is up and well, but the remote has nothing to join yet (a creator who is
    /// not live): not a failure. `reason` says when it waits for another cause than the remote,
    /// such as the service rate-limiting every account of the kind.
    Waiting {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<Reason>,
    },
    Backoff {
        attempt: u32,
        #[schema(value_type = String, format = DateTime)]
        retry_at: Timestamp,
        reason: Reason,
    },
    Paused {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>, format = DateTime)]
        until: Option<Timestamp>,
        reason: Reason,
    },
    NeedsOperator {
        reason: Reason,
    },
}

impl State {
    pub const INITIAL: State = State::Stopped { reason: None };

    pub fn kind(&self) -> StateKind {
        match self {
            State::Stopped { .. } => StateKind::Stopped,
            State::Linking => StateKind::Linking,
            State::Connecting => StateKind::Connecting,
            State::Connected => StateKind::Connected,
            State::Waiting { .. } => StateKind::Waiting,
            State::Backoff { .. } => StateKind::Backoff,
            State::Paused { .. } => StateKind::Paused,
            State::NeedsOperator { .. } => StateKind::NeedsOperator,
        }
    }

    pub fn reason(&self) -> Option<&Reason> {
        match self {
            State::Stopped { reason } | State::Waiting { reason } => reason.as_ref(),
            State::Backoff { reason, .. }
            | State::Paused { reason, .. }
            | State::NeedsOperator { reason } => Some(reason),
            State::Linking | State::Connecting | State::Connected => None,
        }
    }
}

/// The state without its data: what counts, filters and columns use.
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
#[serde(rename_all = "snake_case")]
pub enum StateKind {
    Stopped,
    Linking,
    Connecting,
    Connected,
    Waiting,
    Backoff,
    Paused,
    NeedsOperator,
}

impl StateKind {
    pub const ALL: [StateKind; 8] = [
        StateKind::Stopped,
        StateKind::Linking,
        StateKind::Connecting,
        StateKind::Connected,
        StateKind::Waiting,
        StateKind::Backoff,
        StateKind::Paused,
        StateKind::NeedsOperator,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StateKind::Stopped => "stopped",
            StateKind::Linking => "linking",
            StateKind::Connecting => "connecting",
            StateKind::Connected => "connected",
            StateKind::Waiting => "waiting",
            StateKind::Backoff => "backoff",
            StateKind::Paused => "paused",
            StateKind::NeedsOperator => "needs_operator",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The connection is up and doing its job: connected, or connected and waiting for the
    /// remote. Uptime, sessions, drops and alerts count both alike.
    pub fn is_up(self) -> bool {
        matches!(self, StateKind::Connected | StateKind::Waiting)
    }
}

impl fmt::Display for StateKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who caused a transition; kept on every event for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TriggeredBy {
    /// The supervisor reacting to the connector or a policy.
    Engine,
    /// A person, through the CLI, the desktop app or the HTTP API.
    Operator,
    /// The periodic health pass fixing a mismatch.
    Reconcile,
    /// The autorecover start sequence.
    Startup,
}

impl TriggeredBy {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggeredBy::Engine => "engine",
            TriggeredBy::Operator => "operator",
            TriggeredBy::Reconcile => "reconcile",
            TriggeredBy::Startup => "startup",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Engine, Self::Operator, Self::Reconcile, Self::Startup]
            .into_iter()
            .find(|t| t.as_str() == s)
    }
}

/// One recorded transition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    pub id: i64,
    pub account_id: AccountId,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub from: StateKind,
    pub to: State,
    pub detail: Option<String>,
    pub triggered_by: TriggeredBy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_json_is_tagged_and_round_trips() {
        let s = State::Paused {
            until: None,
            reason: Reason::Banned { until: None },
        };
        let json = serde_json::to_string(&s).expect("serializes");
        assert_eq!(json, r#"{"state":"paused","reason":{"kind":"banned"}}"#);
        assert_eq!(serde_json::from_str::<State>(&json).expect("parses"), s);
    }

    #[test]
    fn reason_code_matches_serde_tag() {
        let reasons = [
            Reason::Timeout,
            Reason::Refused { status: Some(503) },
            Reason::ClosedByPeer { code: Some(1011) },
            Reason::Stalled,
            Reason::Network,
            Reason::Stale,
            Reason::LoggedOut,
            Reason::Replaced,
            Reason::Banned { until: None },
            Reason::Outdated,
            Reason::CredentialsMissing,
            Reason::RateLimited,
            Reason::BreakerOpen,
            Reason::QrExpired,
            Reason::PairingFailed,
            Reason::Operator,
            Reason::AutorecoverOff,
            Reason::Shutdown,
            Reason::Removed,
            Reason::Crashed,
            Reason::Unsupported,
            Reason::RestartRequired,
            Reason::NotLinked,
            Reason::NotFound,
            Reason::Blocked,
        ];
        for r in reasons {
            let v = serde_json::to_value(&r).expect("serializes");
            assert_eq!(v["kind"], r.code(), "{r:?}");
        }
    }

    #[test]
    fn kind_names_parse_back() {
        for k in StateKind::ALL {
            assert_eq!(StateKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).expect("serializes");
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
    }
}
