//! Opening a TCP tunnel to an endpoint through one hop (SOCKS5 or HTTP CONNECT), and walking a
//! chain of hops until one works. Connectors put TLS and their protocol on top of the stream.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Hop, ProxyEntry};
use crate::secrets::{SecretStore, SecretValue, fetch};
use crate::state::Reason;

/// Where the tunnel should lead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or IP literal, without IPv6 brackets.
    pub host: String,
    pub port: u16,
}

impl Target {
    /// The host and port of a `ws://`, `wss://`, `http://` or `https://` URL.
    pub fn of_url(raw: &str) -> Option<Self> {
        let url = url::Url::parse(raw).ok()?;
        let port = url.port_or_known_default().or(match url.scheme() {
            "ws" => Some(80),
            "wss" => Some(443),
            _ => None,
        })?;
        let host = match url.host()? {
            url::Host::Domain(d) => d.to_owned(),
            url::Host::Ipv4(ip) => ip.to_string(),
            url::Host::Ipv6(ip) => ip.to_string(),
        };
        Some(Self { host, port })
    }

    /// `host:port` with IPv6 literals bracketed, as HTTP CONNECT wants it.
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why one hop did not give a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    #[error("no answer from the proxy ({0})")]
    Unreachable(String),
    #[error("the proxy refused the credentials{}", secret_hint(.0))]
    Auth(Option<String>),
    #[error("secret '{0}' is not in the keyring; run `lifeline secret set {0}`")]
    MissingSecret(String),
    #[error("secret '{0}' must hold user:password")]
    BadSecret(String),
    #[error("the proxy could not reach the endpoint ({0})")]
    Target(String),
    #[error("the endpoint refused the connection")]
    Refused,
    #[error("timed out")]
    Timeout,
    #[error("the proxy answered in a way we do not understand ({0})")]
    Protocol(String),
}

fn secret_hint(secret: &Option<String>) -> String {
    match secret {
        Some(s) => format!(" in secret '{s}'"),
        None => " (it wants some: add --proxy-secret)".into(),
    }
}

impl Failure {
    fn is_credentials(&self) -> bool {
        matches!(
            self,
            Failure::Auth(_) | Failure::MissingSecret(_) | Failure::BadSecret(_)
        )
    }

    fn reason(&self) -> Reason {
        match self {
            Failure::Auth(_) | Failure::MissingSecret(_) | Failure::BadSecret(_) => {
                Reason::CredentialsMissing
            }
            Failure::Refused => Reason::Refused { status: None },
            Failure::Timeout => Reason::Timeout,
            Failure::Unreachable(_) | Failure::Target(_) | Failure::Protocol(_) => Reason::Network,
        }
    }
}

/// Every hop failed; each failure is kept for the event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteError {
    pub failures: Vec<(String, Failure)>,
    /// True when the chain ended without trying direct because the operator did not allow it.
    pub direct_refused: bool,
}

impl RouteError {
    /// Credentials only when every hop failed on them (fixing the secret is then what helps);
    /// otherwise the last hop's failure.
    pub fn reason(&self) -> Reason {
        if !self.failures.is_empty() && self.failures.iter().all(|(_, f)| f.is_credentials()) {
            return Reason::CredentialsMissing;
        }
        self.failures
            .last()
            .map_or(Reason::Network, |(_, f)| f.reason())
    }
}

impl fmt::Display for RouteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no route worked: ")?;
        for (i, (hop, failure)) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{hop}: {failure}")?;
        }
        if self.direct_refused {
            f.write_str("; direct connection not allowed (policy connection.direct_fallback)")?;
        }
        Ok(())
    }
}

/// Walks `hops` in order, each bounded by `per_hop`, and returns the first tunnel with the index
/// of the hop that gave it.
pub async fn connect(
    hops: &[Hop],
    secrets: Arc<dyn SecretStore>,
    target: &Target,
    per_hop: Duration,
) -> Result<(TcpStream, usize), RouteError> {
    let mut failures = Vec::new();
    for (i, hop) in hops.iter().enumerate() {
        let attempt = async {
            match &hop.proxy {
                None => direct(target).await,
                Some(proxy) => {
                    let creds = credentials(proxy, secrets.clone()).await?;
                    open(proxy, creds.as_ref(), target).await
                }
            }
        };
        let outcome = tokio::time::timeout(per_hop, attempt)
            .await
            .unwrap_or(Err(Failure::Timeout));
        match outcome {
            Ok(stream) => {
                if i > 0 {
                    tracing::info!(hop = %hop, failed = failures.len(), "connected through a fallback hop");
                }
                return Ok((stream, i));
            }
            Err(f) => {
                tracing::debug!(hop = %hop, failure = %f, "hop failed");
                failures.push((hop.to_string(), f));
            }
        }
    }
    let direct_refused = hops.last().is_some_and(|h| h.proxy.is_some());
    Err(RouteError {
        failures,
        direct_refused,
    })
}

async fn direct(target: &Target) -> Result<TcpStream, Failure> {
    TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => Failure::Refused,
            _ => Failure::Unreachable(e.to_string()),
        })
}

/// `user:password` from the proxy's secret, if it has one.
struct Credentials {
    user: String,
    password: SecretValue,
}

async fn credentials(
    proxy: &ProxyEntry,
    secrets: Arc<dyn SecretStore>,
) -> Result<Option<Credentials>, Failure> {
    let Some(name) = &proxy.secret else {
        return Ok(None);
    };
    let value = fetch(secrets, name)
        .await
        .map_err(|e| Failure::Unreachable(e.to_string()))?
        .ok_or_else(|| Failure::MissingSecret(name.to_string()))?;
    let (user, password) = value
        .expose()
        .split_once(':')
        .ok_or_else(|| Failure::BadSecret(name.to_string()))?;
    Ok(Some(Credentials {
        user: user.to_owned(),
        password: SecretValue::new(password),
    }))
}

/// The proxy's URL with its credentials in it, for HTTP clients configured by URL.
pub async fn url_with_credentials(
    proxy: &ProxyEntry,
    secrets: Arc<dyn SecretStore>,
) -> Result<SecretValue, Failure> {
    let mut url = url::Url::parse(&proxy.url).map_err(|e| Failure::Protocol(e.to_string()))?;
    if let Some(c) = credentials(proxy, secrets).await? {
        let bad = |_| {
            Failure::BadSecret(
                proxy
                    .secret
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string),
            )
        };
        url.set_username(&c.user).map_err(bad)?;
        url.set_password(Some(c.password.expose())).map_err(bad)?;
    }
    Ok(SecretValue::new(url.to_string()))
}

/// Opens a tunnel to `target` through one proxy. The proxy resolves the target's name, so the
/// endpoint's DNS lookups leave from the proxy's exit, not from the operator's network.
async fn open(
    proxy: &ProxyEntry,
    creds: Option<&Credentials>,
    target: &Target,
) -> Result<TcpStream, Failure> {
    let url = url::Url::parse(&proxy.url).map_err(|e| Failure::Protocol(e.to_string()))?;
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err(Failure::Protocol("the proxy URL has no host".into())),
    };
    let port = url
        .port_or_known_default()
        .or(match url.scheme() {
            "socks5" | "socks5h" => Some(1080),
            _ => None,
        })
        .ok_or_else(|| Failure::Protocol("the proxy URL has no port".into()))?;
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| Failure::Unreachable(e.to_string()))?;
    let secret = proxy.secret.as_ref().map(ToString::to_string);
    match url.scheme() {
        "socks5" | "socks5h" => socks5(stream, creds, target, secret).await,
        "http" => http_connect(stream, creds, target, secret).await,
        other => Err(Failure::Protocol(format!(
            "unsupported proxy scheme {other}"
        ))),
    }
}

async fn socks5(
    stream: TcpStream,
    creds: Option<&Credentials>,
    target: &Target,
    secret: Option<String>,
) -> Result<TcpStream, Failure> {
    use tokio_socks::Error as S;
    use tokio_socks::tcp::Socks5Stream;
    let to = (target.host.as_str(), target.port);
    let result = match creds {
        Some(c) => {
            Socks5Stream::connect_with_password_and_socket(stream, to, &c.user, c.password.expose())
                .await
        }
        None => Socks5Stream::connect_with_socket(stream, to).await,
    };
    result.map(Socks5Stream::into_inner).map_err(|e| match e {
        S::PasswordAuthFailure(_) | S::NoAcceptableAuthMethods => Failure::Auth(secret),
        S::ConnectionRefused => Failure::Refused,
        S::NetworkUnreachable
        | S::HostUnreachable
        | S::TtlExpired
        | S::ConnectionNotAllowedByRuleset
        | S::GeneralSocksServerFailure => Failure::Target(e.to_string()),
        S::Io(io) => Failure::Unreachable(io.to_string()),
        other => Failure::Protocol(other.to_string()),
    })
}

/// Longest CONNECT answer we read: status line and headers only.
const MAX_CONNECT_RESPONSE: usize = 8 * 1024;

async fn http_connect(
    mut stream: TcpStream,
    creds: Option<&Credentials>,
    target: &Target,
    secret: Option<String>,
) -> Result<TcpStream, Failure> {
    let authority = target.authority();
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(c) = creds {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            c.user,
            c.password.expose()
        ));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    let io = |e: std::io::Error| Failure::Unreachable(e.to_string());
    stream.write_all(request.as_bytes()).await.map_err(io)?;
    // Byte by byte up to the blank line: anything after it belongs to the tunnel, not to us.
    let mut head = Vec::with_capacity(128);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_RESPONSE {
            return Err(Failure::Protocol("answer too long".into()));
        }
        if stream.read(&mut byte).await.map_err(io)? == 0 {
            return Err(Failure::Unreachable("closed during CONNECT".into()));
        }
        head.push(byte[0]);
    }
    connect_answer(&head, secret).map(|()| stream)
}

/// What the head of a CONNECT answer (status line and headers) means for the tunnel: any 2xx
/// opens it; anything else, including bytes that are not HTTP, is a typed failure.
fn connect_answer(head: &[u8], secret: Option<String>) -> Result<(), Failure> {
    let status_line = String::from_utf8_lossy(head);
    let status_line = status_line.lines().next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| Failure::Protocol(status_line.chars().take(80).collect()))?;
    match status {
        200..=299 => Ok(()),
        407 => Err(Failure::Auth(secret)),
        502..=504 => Err(Failure::Target(format!("HTTP {status}"))),
        _ => Err(Failure::Target(status_line.chars().take(80).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever a proxy sends back, the answer is read without panicking and short.
        #[test]
        fn any_connect_answer_is_a_tunnel_or_a_typed_failure(
            head in prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                "[ -~\r\n]{0,120}".prop_map(String::into_bytes),
            ],
        ) {
            match connect_answer(&head, None) {
                Ok(()) => {}
                Err(Failure::Protocol(s) | Failure::Target(s)) => prop_assert!(s.chars().count() <= 80),
                Err(Failure::Auth(None)) => {}
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn connect_status_codes_decide_the_tunnel(
            code in 100u16..1000,
            version in prop::sample::select(vec!["HTTP/1.1", "HTTP/1.0"]),
            reason in "[A-Za-z ]{0,30}",
            headers in "([A-Za-z-]{1,12}: [ -~]{0,20}\r\n){0,4}",
        ) {
            let head = format!("{version} {code} {reason}\r\n{headers}\r\n");
            let got = connect_answer(head.as_bytes(), Some("p".into()));
            match code {
                200..=299 => prop_assert_eq!(got, Ok(())),
                407 => prop_assert_eq!(got, Err(Failure::Auth(Some("p".into())))),
                502..=504 => prop_assert_eq!(got, Err(Failure::Target(format!("HTTP {code}")))),
                _ => prop_assert!(matches!(got, Err(Failure::Target(ref s)) if s.contains(&code.to_string()))),
            }
        }
    }

    #[test]
    fn targets_come_from_urls_with_default_ports_and_bare_ipv6() {
        let t = Target::of_url("wss://web.whatsapp.com/ws/chat").expect("target");
        assert_eq!((t.host.as_str(), t.port), ("web.whatsapp.com", 443));
        let t = Target::of_url("ws://[::1]:9000/x").expect("target");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9000));
        assert_eq!(t.authority(), "[::1]:9000");
        assert_eq!(Target::of_url("ws://h/x").map(|t| t.port), Some(80));
        assert!(Target::of_url("not a url").is_none());
    }

    #[test]
    fn route_errors_blame_credentials_only_when_every_hop_did() {
        let creds = RouteError {
            failures: vec![
                ("a".into(), Failure::Auth(Some("p".into()))),
                ("b".into(), Failure::MissingSecret("q".into())),
            ],
            direct_refused: true,
        };
        assert_eq!(creds.reason(), Reason::CredentialsMissing);
        let mixed = RouteError {
            failures: vec![
                ("a".into(), Failure::Auth(None)),
                ("b".into(), Failure::Timeout),
            ],
            direct_refused: false,
        };
        assert_eq!(mixed.reason(), Reason::Timeout);
        let text = creds.to_string();
        assert!(
            text.contains("a: the proxy refused the credentials in secret 'p'"),
            "{text}"
        );
        assert!(text.contains("connection.direct_fallback"), "{text}");
    }
}
