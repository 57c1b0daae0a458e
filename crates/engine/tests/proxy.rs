//! Proxy tunnels and fallback chains against loopback proxies (lifeline-sim) and a loopback echo
//! endpoint: which hop was taken, what each failure is called, and that bytes really flow.

use std::sync::Arc;
use std::time::Duration;

use lifeline_engine::model::{AccountId, SecretName};
use lifeline_engine::proxy::{Failure, Hop, HopKind, ProxyEntry, Target, connect};
use lifeline_engine::secrets::{MemorySecretStore, SecretStore, SecretValue};
use lifeline_engine::state::Reason;
use lifeline_sim::proxy::{Proxy, ProxyKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An endpoint that echoes what it reads.
async fn echo() -> Target {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Target {
        host: "127.0.0.1".into(),
        port,
    }
}

fn hop(kind: HopKind, url: &str, secret: Option<&str>) -> Hop {
    Hop {
        kind,
        proxy: Some(ProxyEntry {
            url: url.into(),
            secret: secret.map(|s| SecretName::parse(s).expect("name")),
            country: Some("ID".into()),
            owner: AccountId(1),
        }),
    }
}

fn secrets(pairs: &[(&str, &str)]) -> Arc<dyn SecretStore> {
    let store = MemorySecretStore::default();
    for (name, value) in pairs {
        store
            .set(
                &SecretName::parse(name).expect("name"),
                &SecretValue::new(*value),
            )
            .expect("set");
    }
    Arc::new(store)
}

const HOP_TIMEOUT: Duration = Duration::from_secs(5);

async fn round_trip(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    stream.write_all(b"ping").await.expect("write");
    let mut buf = [0u8; 4];
    stream.read_exact(&mut buf).await.expect("read");
    buf.to_vec()
}

#[tokio::test]
async fn socks5_and_http_connect_tunnels_carry_bytes_with_credentials_from_the_keyring() {
    let target = echo().await;
    let store = secrets(&[("px", "alice:s3cret:with-colon")]);
    for kind in [ProxyKind::Socks5, ProxyKind::HttpConnect] {
        let proxy = Proxy::start(kind, Some(("alice", "s3cret:with-colon")))
            .await
            .expect("proxy");
        let hops = [hop(HopKind::Own, &proxy.url(), Some("px"))];
        let (mut stream, used) = connect(&hops, store.clone(), &target, HOP_TIMEOUT)
            .await
            .expect("tunnel");
        assert_eq!(used, 0);
        assert_eq!(round_trip(&mut stream).await, b"ping");
        assert_eq!(proxy.tunnels(), 1, "{kind:?}");
    }
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_named_and_blamed_on_the_secret() {
    let target = echo().await;
    for kind in [ProxyKind::Socks5, ProxyKind::HttpConnect] {
        let proxy = Proxy::start(kind, Some(("alice", "right")))
            .await
            .expect("proxy");
        let store = secrets(&[("px", "alice:wrong")]);
        let wrong = [hop(HopKind::Own, &proxy.url(), Some("px"))];
        let err = connect(&wrong, store.clone(), &target, HOP_TIMEOUT)
            .await
            .expect_err("refused login");
        assert_eq!(
            err.failures[0].1,
            Failure::Auth(Some("px".into())),
            "{kind:?}"
        );
        assert_eq!(err.reason(), Reason::CredentialsMissing);
        assert_eq!(proxy.auth_failures(), 1);

        let missing = [hop(HopKind::Own, &proxy.url(), Some("nope"))];
        let err = connect(&missing, store.clone(), &target, HOP_TIMEOUT)
            .await
            .expect_err("no secret");
        assert_eq!(err.failures[0].1, Failure::MissingSecret("nope".into()));
        assert!(
            err.to_string().contains("lifeline secret set nope"),
            "{err}"
        );

        let none = [hop(HopKind::Own, &proxy.url(), None)];
        let err = connect(&none, store, &target, HOP_TIMEOUT)
            .await
            .expect_err("login required");
        assert_eq!(err.failures[0].1, Failure::Auth(None), "{kind:?}");
    }
}

#[tokio::test]
async fn a_dead_own_proxy_falls_back_to_the_next_hop_and_says_which() {
    let target = echo().await;
    let dead = Proxy::start(ProxyKind::Socks5, None).await.expect("proxy");
    let dead_url = dead.url();
    drop(dead);
    let spare = Proxy::start(ProxyKind::HttpConnect, None)
        .await
        .expect("proxy");
    let hops = [
        hop(HopKind::Own, &dead_url, None),
        hop(HopKind::SameCountry, &spare.url(), None),
    ];
    let (mut stream, used) = connect(&hops, secrets(&[]), &target, HOP_TIMEOUT)
        .await
        .expect("fallback");
    assert_eq!(used, 1);
    assert_eq!(hops[used].kind, HopKind::SameCountry);
    assert_eq!(round_trip(&mut stream).await, b"ping");
    assert_eq!(spare.tunnels(), 1);
}

#[tokio::test]
async fn direct_is_used_only_when_allowed_and_every_failure_is_reported() {
    let target = echo().await;
    let dead = Proxy::start(ProxyKind::Socks5, None).await.expect("proxy");
    let dead_url = dead.url();
    drop(dead);
    let only_proxy = [hop(HopKind::Own, &dead_url, None)];
    let err = connect(&only_proxy, secrets(&[]), &target, HOP_TIMEOUT)
        .await
        .expect_err("no direct");
    assert!(err.direct_refused);
    assert_eq!(err.reason(), Reason::Network);
    let text = err.to_string();
    assert!(text.contains(&format!("own proxy {dead_url}")), "{text}");
    assert!(text.contains("direct connection not allowed"), "{text}");

    let with_direct = [
        hop(HopKind::Own, &dead_url, None),
        Hop {
            kind: HopKind::Direct,
            proxy: None,
        },
    ];
    let (mut stream, used) = connect(&with_direct, secrets(&[]), &target, HOP_TIMEOUT)
        .await
        .expect("direct");
    assert_eq!(used, 1);
    assert_eq!(round_trip(&mut stream).await, b"ping");
}

#[tokio::test]
async fn an_endpoint_refusing_behind_a_socks5_proxy_is_refused_not_a_proxy_failure() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let proxy = Proxy::start(ProxyKind::Socks5, None).await.expect("proxy");
    let hops = [hop(HopKind::Own, &proxy.url(), None)];
    let target = Target {
        host: "127.0.0.1".into(),
        port,
    };
    let err = connect(&hops, secrets(&[]), &target, HOP_TIMEOUT)
        .await
        .expect_err("refused");
    assert_eq!(err.failures[0].1, Failure::Refused);
    assert_eq!(err.reason(), Reason::Refused { status: None });
}
