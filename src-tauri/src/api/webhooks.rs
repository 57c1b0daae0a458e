//! Webhook endpoints and their deliveries as Settings → Integrations shows them, and the
//! notice that the sender turned an endpoint off.

use lifeline_engine::time::rfc3339;
use lifeline_engine::webhook::{Delivery, DeliveryStatus, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use ts_rs::TS;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct WebhookInfo {
    #[ts(type = "number")]
    pub id: i64,
    pub url: String,
    /// None: every message.
    pub events: Option<Vec<String>>,
    /// None: every account.
    #[ts(type = "number[] | null")]
    pub accounts: Option<Vec<i64>>,
    pub enabled: bool,
    /// Why it is off (the operator, a 410 answer, days of failures).
    pub disabled_reason: Option<String>,
    /// The first failed attempt since the last success (RFC 3339).
    pub failing_since: Option<String>,
}

impl From<&WebhookEndpoint> for WebhookInfo {
    fn from(e: &WebhookEndpoint) -> Self {
        Self {
            id: e.id,
            url: e.url.clone(),
            events: e.events.clone(),
            accounts: e
                .accounts
                .as_ref()
                .map(|a| a.iter().map(|id| id.0).collect()),
            enabled: e.enabled,
            disabled_reason: e.disabled_reason.clone(),
            failing_since: e.failing_since.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct DeliveryInfo {
    #[ts(type = "number")]
    pub id: i64,
    #[ts(type = "number")]
    pub endpoint_id: i64,
    /// The message type, e.g. `account.dropped`.
    pub kind: String,
    #[ts(type = "number | null")]
    pub account: Option<i64>,
    /// When the message was recorded (RFC 3339).
    pub at: String,
    pub state: DeliveryState,
    pub attempts: u32,
    /// The receiver's last HTTP status, if it answered.
    pub last_code: Option<u16>,
    /// What went wrong on the last attempt (timeout, refused, …).
    pub last_error: Option<String>,
    /// The next attempt, while pending (RFC 3339).
    pub next_at: Option<String>,
}

impl From<&Delivery> for DeliveryInfo {
    fn from(d: &Delivery) -> Self {
        let state = match d.status {
            DeliveryStatus::Pending => DeliveryState::Pending,
            DeliveryStatus::Delivered => DeliveryState::Delivered,
            DeliveryStatus::Failed => DeliveryState::Failed,
        };
        Self {
            id: d.id,
            endpoint_id: d.endpoint_id,
            kind: d.kind.clone(),
            account: d.account_id.map(|a| a.0),
            at: rfc3339(d.at),
            state,
            attempts: d.attempts,
            last_code: d.last_code,
            last_error: d.last_error.clone(),
            next_at: (state == DeliveryState::Pending).then(|| rfc3339(d.next_at)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, TS)]
pub struct NewWebhookInput {
    pub url: String,
    /// Empty: every message.
    pub events: Vec<String>,
}

/// An endpoint just added (or whose secret was just replaced), with the signing secret shown
/// this once.
#[derive(Clone, PartialEq, Eq, Serialize, TS)]
pub struct WebhookSecret {
    pub endpoint: WebhookInfo,
    pub secret: String,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecret")
            .field("endpoint", &self.endpoint)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// The sender turned an endpoint off; the UI words it and asks for the desktop notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct WebhookOff {
    #[ts(type = "number")]
    pub endpoint: i64,
    pub url: String,
    pub reason: String,
}
