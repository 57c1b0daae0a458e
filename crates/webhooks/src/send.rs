//! One HTTP attempt. Redirects are not followed (a 3xx is a failed attempt), every attempt ends
//! within the timeout, and names are resolved through a guard that drops link-local and metadata
//! addresses — and, for plain http, public ones — at every connection, so a name that later
//! resolves somewhere else (DNS rebinding) cannot steer a delivery there.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lifeline_engine::webhook::{AddressClass, WebhookUrl, classify};
use lifeline_engine::{Error, InputError};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// How long one attempt may take, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// What a receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status, when one came.
    pub code: Option<u16>,
    /// Its `Retry-After`, on 429 and 503.
    pub retry_after: Option<Duration>,
    /// Why it failed, in words (`None` on 2xx).
    pub error: Option<String>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.code.is_some_and(|c| (200..300).contains(&c))
    }
}

/// The message headers of one attempt.
#[derive(Debug, Clone)]
pub struct Signed<'a> {
    pub msg_id: &'a str,
    pub timestamp: i64,
    pub signature: String,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct HttpSender {
    /// For https URLs: every address but the forbidden ones.
    https: reqwest::Client,
    /// For http URLs: loopback and private addresses only.
    http: reqwest::Client,
}

impl HttpSender {
    pub fn new(timeout: Duration) -> Result<Self, Error> {
        let build = |public: bool| {
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(timeout)
                .connect_timeout(timeout)
                .no_proxy()
                .user_agent(concat!("Lifeline-Webhooks/", env!("CARGO_PKG_VERSION")))
                .dns_resolver(Arc::new(Guard { public }))
                .build()
                .map_err(|e| Error::Webhook(format!("Cannot set up the webhook client: {e}.")))
        };
        Ok(Self {
            https: build(true)?,
            http: build(false)?,
        })
    }

    pub async fn send(&self, url: &WebhookUrl, msg: Signed<'_>) -> Answer {
        let client = if url.is_https() {
            &self.https
        } else {
            &self.http
        };
        let sent = client
            .post(url.url().clone())
            .header("content-type", "application/json")
            .header("webhook-id", msg.msg_id)
            .header("webhook-timestamp", msg.timestamp.to_string())
            .header("webhook-signature", msg.signature)
            .body(msg.body)
            .send()
            .await;
        match sent {
            Ok(response) => {
                let status = response.status();
                let code = status.as_u16();
                let retry_after = if code == 429 || code == 503 {
                    response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| parse_retry_after(v, chrono::Utc::now()))
                } else {
                    None
                };
                let error = (!status.is_success()).then(|| {
                    format!(
                        "HTTP {code}{}",
                        status
                            .canonical_reason()
                            .map(|r| format!(" {r}"))
                            .unwrap_or_default()
                    )
                });
                Answer {
                    code: Some(code),
                    retry_after,
                    error,
                }
            }
            Err(e) => Answer {
                code: None,
                retry_after: None,
                error: Some(describe(&e)),
            },
        }
    }
}

/// A failed request in one line: the innermost cause says most (refused, timed out, refused
/// address).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timed out".into();
    }
    let mut source: &dyn std::error::Error = e;
    while let Some(inner) = source.source() {
        source = inner;
    }
    let why = source.to_string();
    if e.is_connect() {
        format!("could not connect: {why}")
    } else {
        why
    }
}

/// `Retry-After` as seconds or as an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Resolves names and keeps only the addresses a webhook may go to.
#[derive(Debug)]
struct Guard {
    public: bool,
}

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        let public = self.public;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allowed(a.ip(), public))
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(InputError::InvalidWebhookUrl {
                    url: host,
                    why: if public {
                        "it resolves only to link-local, metadata or unroutable addresses".into()
                    } else {
                        "plain http goes only to loopback and private addresses; use https://"
                            .into()
                    },
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

fn allowed(ip: std::net::IpAddr, public: bool) -> bool {
    match classify(ip) {
        AddressClass::Forbidden => false,
        AddressClass::Public => public,
        AddressClass::Loopback | AddressClass::Private => true,
    }
}

/// Checks where a URL's host resolves now, when an endpoint is added: a name that resolves to a
/// refused address (or to nothing) is refused with the reason.
pub async fn check_resolves(url: &WebhookUrl) -> Result<(), InputError> {
    let Some(url::Host::Domain(host)) = url.url().host() else {
        return Ok(());
    };
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| InputError::InvalidWebhookUrl {
            url: url.as_str().to_owned(),
            why: format!("its host '{host}' does not resolve ({e}); check the name"),
        })?
        .collect();
    for addr in addrs {
        url.check_address(addr.ip())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 12, 3, 8, 0, 0)
            .single()
            .expect("now");
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 03 Dec 2026 08:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Thu, 03 Dec 2026 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[tokio::test]
    async fn names_that_resolve_to_refused_addresses_are_refused() {
        let local = WebhookUrl::parse("http://localhost:9/hook").expect("url");
        check_resolves(&local).await.expect("localhost is loopback");
        let nowhere = WebhookUrl::parse("https://no-such-host.invalid/hook").expect("url");
        let err = check_resolves(&nowhere).await.expect_err("invalid");
        assert!(err.to_string().contains("does not resolve"), "{err}");
        assert!(!allowed("169.254.169.254".parse().expect("ip"), true));
        assert!(!allowed("93.184.216.34".parse().expect("ip"), false));
        assert!(allowed("93.184.216.34".parse().expect("ip"), true));
        assert!(allowed("192.168.0.2".parse().expect("ip"), false));
    }
}
