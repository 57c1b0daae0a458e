//! Webhook endpoints and their deliveries, as the store keeps them: what an endpoint wants, which
//! URLs are acceptable, and where each delivery stands. Sending and signing live in the
//! `lifeline-webhooks` crate; messages about transitions are written into the outbox by the store
//! in the same transaction as the event they announce.

use std::net::IpAddr;

use serde::Serialize;

use crate::error::InputError;
use crate::model::{AccountId, SecretName};
use crate::time::Timestamp;

/// What an endpoint can ask for. `state` is every transition; the others are one kind each.
pub const EVENT_FILTERS: &[&str] = &[
    "state",
    "connected",
    "dropped",
    "needs_operator",
    "paused",
    "alert",
];

/// Parses a comma-separated filter list (`state,alert`); an empty list means every message.
pub fn parse_event_filters(list: &str) -> Result<Option<Vec<String>>, InputError> {
    let mut out: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !EVENT_FILTERS.contains(&name) {
            return Err(InputError::UnknownWebhookEvent(name.to_owned()));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Why an endpoint is off when the operator turned it off (every face says the same).
pub const TURNED_OFF_BY_OPERATOR: &str = "turned off by the operator";

/// One of the operator's endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct WebhookEndpoint {
    pub id: i64,
    pub url: String,
    /// `None`: every message.
    pub events: Option<Vec<String>>,
    /// `None`: every account.
    pub accounts: Option<Vec<AccountId>>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    #[serde(skip)]
    pub secret_name: SecretName,
    /// The previous secret, still signing until `old_secret_until` (a rotation in progress).
    #[serde(skip)]
    pub old_secret: Option<(SecretName, Timestamp)>,
    /// The first failed attempt since the last success.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failing_since: Option<Timestamp>,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
}

/// An endpoint to add. The secret is made and stored by the caller before the row is written.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub url: WebhookUrl,
    pub events: Option<Vec<String>>,
    pub accounts: Option<Vec<AccountId>>,
    pub secret_name: SecretName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "delivered" => DeliveryStatus::Delivered,
            "failed" => DeliveryStatus::Failed,
            _ => DeliveryStatus::Pending,
        }
    }
}

/// One message for one endpoint, with where its delivery stands.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Delivery {
    pub id: i64,
    pub endpoint_id: i64,
    /// The `webhook-id` header: the same on every attempt and replay.
    pub msg_id: String,
    pub account_id: Option<AccountId>,
    pub event_id: Option<i64>,
    #[serde(rename = "type")]
    pub kind: String,
    pub data: serde_json::Value,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub status: DeliveryStatus,
    pub attempts: u32,
    #[schema(value_type = String, format = DateTime)]
    pub next_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_at: Option<Timestamp>,
    pub last_code: Option<u16>,
    pub last_error: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub done_at: Option<Timestamp>,
}

/// The deliveries of one endpoint about one account (or about none): they leave in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeliveryQueue {
    pub endpoint: i64,
    pub account: Option<AccountId>,
}

impl Delivery {
    pub fn queue(&self) -> DeliveryQueue {
        DeliveryQueue {
            endpoint: self.endpoint_id,
            account: self.account_id,
        }
    }
}

/// What one attempt came to, as the store records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptResult {
    Delivered {
        code: u16,
    },
    /// Failed; tried again at `retry_at`.
    Retry {
        code: Option<u16>,
        error: String,
        retry_at: Timestamp,
    },
    /// Failed for good (schedule exhausted).
    Exhausted {
        code: Option<u16>,
        error: String,
    },
    /// The endpoint said it is gone (410): the delivery fails and the endpoint is disabled.
    Gone {
        code: u16,
    },
}

/// One attempt to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub delivery: i64,
    pub result: AttemptResult,
    pub at: Timestamp,
}

/// Counts for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct OutboxStats {
    pub pending: u64,
    pub failed: u64,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub oldest_pending_at: Option<Timestamp>,
}

/// A URL an endpoint may have: http(s), no credentials in it, not a link-local or metadata
/// address; plain http only to loopback or private addresses. Names are resolved and checked
/// when the endpoint is added and again at every connection (see `lifeline-webhooks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(url::Url);

impl WebhookUrl {
    /// Checks what can be checked without resolving the host.
    pub fn parse(raw: &str) -> Result<Self, InputError> {
        let bad = |why: &str| InputError::InvalidWebhookUrl {
            url: raw.to_owned(),
            why: why.to_owned(),
        };
        let url = url::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad("only http:// and https:// URLs can receive webhooks"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(bad(
                "credentials do not belong in the URL (they would be logged and shown); the signature proves the sender",
            ));
        }
        let Some(host) = url.host() else {
            return Err(bad("it has no host"));
        };
        let parsed = Self(url.clone());
        let ip = match host {
            url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = ip {
            parsed.check_address(ip)?;
        }
        Ok(parsed)
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    pub fn url(&self) -> &url::Url {
        &self.0
    }

    pub fn is_https(&self) -> bool {
        self.0.scheme() == "https"
    }

    /// Whether this URL may be sent to at `ip` (one address its host resolves to).
    pub fn check_address(&self, ip: IpAddr) -> Result<(), InputError> {
        let bad = |why: String| InputError::InvalidWebhookUrl {
            url: self.0.to_string(),
            why,
        };
        match classify(ip) {
            AddressClass::Forbidden => Err(bad(format!(
                "{ip} is a link-local, metadata or unroutable address; webhooks are never sent there"
            ))),
            AddressClass::Public if !self.is_https() => Err(bad(format!(
                "{ip} is a public address: use https:// (plain http is only for loopback and private networks)"
            ))),
            _ => Ok(()),
        }
    }
}

/// How an address is treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Loopback,
    /// A private network (RFC 1918, unique local, carrier-grade NAT): an operator's own LAN.
    Private,
    Public,
    /// Link-local (cloud metadata lives there), unspecified, multicast, broadcast, documentation.
    Forbidden,
}

/// Cloud metadata services outside the link-local ranges.
const METADATA: &[IpAddr] = &[
    // Alibaba Cloud.
    IpAddr::V4(std::net::Ipv4Addr::new(100, 100, 100, 200)),
    // AWS over IPv6.
    IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)),
];

pub fn classify(ip: IpAddr) -> AddressClass {
    if METADATA.contains(&ip) {
        return AddressClass::Forbidden;
    }
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                AddressClass::Loopback
            } else if v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || o[0] == 0
                || o[0] >= 240
            {
                AddressClass::Forbidden
            } else if v4.is_private() || (o[0] == 100 && (o[1] & 0xc0) == 64) {
                AddressClass::Private
            } else {
                AddressClass::Public
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return classify(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            if v6.is_loopback() {
                AddressClass::Loopback
            } else if v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xffc0) == 0xfe80
                || (seg[0] == 0x2001 && seg[1] == 0x0db8)
            {
                AddressClass::Forbidden
            } else if (seg[0] & 0xfe00) == 0xfc00 {
                AddressClass::Private
            } else {
                AddressClass::Public
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> String {
        WebhookUrl::parse(url).expect_err(url).to_string()
    }

    #[test]
    fn urls_are_checked_before_anything_is_stored() {
        assert!(refused("ftp://example.com/x").contains("only http"));
        assert!(refused("https://user:pw@example.com/hook").contains("credentials"));
        assert!(refused("http://169.254.169.254/latest/meta-data").contains("link-local"));
        assert!(refused("http://[fe80::1]/x").contains("link-local"));
        assert!(refused("http://[fd00:ec2::254]/").contains("metadata"));
        assert!(refused("http://100.100.100.200/").contains("metadata"));
        assert!(refused("http://0.0.0.0:80/").contains("unroutable"));
        assert!(refused("http://8.8.8.8/hook").contains("https://"));
        assert!(refused("not a url").contains("not a url"));
        for ok in [
            "http://127.0.0.1:9000/hook",
            "http://[::1]:9000/",
            "http://192.168.1.20/hook",
            "http://10.0.0.5/",
            "http://100.64.0.1/",
            "https://8.8.8.8/hook",
            "https://hooks.example.com/lifeline",
            "http://receiver.lan/hook",
        ] {
            assert!(WebhookUrl::parse(ok).is_ok(), "{ok}");
        }
        let named = WebhookUrl::parse("http://receiver.lan/hook").expect("named");
        assert!(named.check_address("10.1.2.3".parse().expect("ip")).is_ok());
        assert!(
            named
                .check_address("93.184.216.34".parse().expect("ip"))
                .is_err()
        );
        assert!(
            named
                .check_address("::ffff:169.254.169.254".parse().expect("ip"))
                .is_err()
        );
    }

    #[test]
    fn event_filters_are_known_names() {
        assert_eq!(parse_event_filters(" ").expect("empty"), None);
        assert_eq!(
            parse_event_filters("state, alert,state").expect("list"),
            Some(vec!["state".to_owned(), "alert".to_owned()])
        );
        let err = parse_event_filters("state,bogus").expect_err("unknown");
        assert!(err.to_string().contains("bogus"), "{err}");
        assert!(err.to_string().contains("needs_operator"), "{err}");
    }
}
