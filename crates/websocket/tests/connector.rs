//! The WebSocket connector against real sockets on 127.0.0.1: lifeline-sim and a few raw TCP
//! misbehaviours. Every way a connection can end must map to the right typed reason.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeline_engine::connector::{ConnEvent, ConnectRequest, Connector};
use lifeline_engine::model::{Account, AccountId, AccountKind, HeaderRef};
use lifeline_engine::policy::config::ConnectionConfig;
use lifeline_engine::proxy::{self, Hop, HopKind, ProxyEntry};
use lifeline_engine::secrets::{MemorySecretStore, SecretStore, SecretValue};
use lifeline_engine::state::{Reason, State};
use lifeline_sim::proxy::{Proxy, ProxyKind};
use lifeline_sim::{Fault, Sim};
use lifeline_websocket::WebSocketConnector;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn account(url: &str) -> Account {
    Account {
        id: AccountId(1),
        kind: AccountKind::Websocket,
        name: "t".into(),
        url: Some(url.into()),
        priority: 100,
        country: None,
        proxy_url: None,
        proxy_secret: None,
        headers: vec![],
        muted: false,
        notify_live: false,
        desired_running: true,
        state: State::INITIAL,
        state_since: Utc::now(),
        created_at: Utc::now(),
        identity: None,
    }
}

fn fast() -> ConnectionConfig {
    ConnectionConfig {
        connect_timeout_ms: 1_000,
        keepalive_ms: 200,
        pong_timeout_ms: 300,
        ..ConnectionConfig::default()
    }
}

struct Running {
    events: mpsc::Receiver<ConnEvent>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(account: Account, secrets: Arc<dyn SecretStore>) -> Running {
    start_routed(account, secrets, Vec::new())
}

fn start_routed(account: Account, secrets: Arc<dyn SecretStore>, route: Vec<Hop>) -> Running {
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let fut = WebSocketConnector.run(
        ConnectRequest {
            account: Arc::new(account),
            config: fast(),
            secrets,
            link: None,
            route,
            resume: None,
        },
        tx,
        cancel.clone(),
    );
    Running {
        events: rx,
        cancel,
        task: tokio::spawn(fut),
    }
}

/// The first non-`Alive` event, within a generous bound.
async fn next(r: &mut Running) -> ConnEvent {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), r.events.recv())
            .await
            .expect("an event in time")
            .expect("channel open");
        if e != ConnEvent::Alive {
            return e;
        }
    }
}

async fn ended(r: &mut Running) -> Reason {
    match next(r).await {
        ConnEvent::Ended { reason, .. } => reason,
        other => panic!("expected Ended, got {other:?}"),
    }
}

fn no_secrets() -> Arc<dyn SecretStore> {
    Arc::new(MemorySecretStore::default())
}

#[tokio::test]
async fn connects_and_maps_a_drop_to_closed_by_peer() {
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let mut r = start(account(&sim.url("a")), no_secrets());
    assert_eq!(next(&mut r).await, ConnEvent::Connected { via: None });
    // Keepalive pongs arrive as liveness.
    let alive = tokio::time::timeout(Duration::from_secs(5), r.events.recv()).await;
    assert_eq!(alive.expect("in time"), Some(ConnEvent::Alive));
    sim.inject(Fault::Drop { path: None });
    assert_eq!(ended(&mut r).await, Reason::ClosedByPeer { code: None });
}

#[tokio::test]
async fn close_codes_are_kept() {
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let mut r = start(account(&sim.url("a")), no_secrets());
    assert_eq!(next(&mut r).await, ConnEvent::Connected { via: None });
    sim.inject(Fault::Close {
        path: None,
        code: 4001,
    });
    assert_eq!(
        ended(&mut r).await,
        Reason::ClosedByPeer { code: Some(4001) }
    );
}

#[tokio::test]
async fn a_stalled_peer_is_detected_by_the_pong_deadline() {
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let mut r = start(account(&sim.url("a")), no_secrets());
    assert_eq!(next(&mut r).await, ConnEvent::Connected { via: None });
    sim.inject(Fault::Stall { path: None });
    assert_eq!(ended(&mut r).await, Reason::Stalled);
}

#[tokio::test]
async fn refused_port_503_and_slow_handshake_are_classified() {
    // Nothing listens on a port we just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut r = start(account(&format!("ws://127.0.0.1:{port}/s/x")), no_secrets());
    assert_eq!(ended(&mut r).await, Reason::Refused { status: None });

    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    sim.refuse_for(Duration::from_secs(60));
    let mut r = start(account(&sim.url("a")), no_secrets());
    assert_eq!(ended(&mut r).await, Reason::Refused { status: Some(503) });
    sim.stop_refusing();

    sim.set_handshake_delay(Duration::from_secs(5));
    let mut r = start(account(&sim.url("a")), no_secrets());
    assert_eq!(ended(&mut r).await, Reason::Timeout);
}

#[tokio::test]
async fn a_server_closing_mid_handshake_is_closed_by_peer() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 64];
            let _ = tcp.read(&mut buf).await; // read part of the request, then hang up
        }
    });
    let mut r = start(account(&format!("ws://{addr}/s/x")), no_secrets());
    assert!(matches!(
        ended(&mut r).await,
        Reason::ClosedByPeer { .. } | Reason::Network
    ));
}

#[tokio::test]
async fn header_secrets_are_required_and_sent() {
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let mut a = account(&sim.url("a"));
    a.headers = vec![HeaderRef::parse("Authorization=tok").expect("header")];
    let secrets = Arc::new(MemorySecretStore::default());
    let mut r = start(a.clone(), secrets.clone());
    assert_eq!(ended(&mut r).await, Reason::CredentialsMissing);
    secrets
        .set(
            &lifeline_engine::SecretName::parse("tok").expect("name"),
            &SecretValue::new("Bearer x"),
        )
        .expect("set");
    let mut r = start(a, secrets);
    assert_eq!(next(&mut r).await, ConnEvent::Connected { via: None });
}

#[tokio::test]
async fn cancel_closes_the_socket_promptly() {
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let mut r = start(account(&sim.url("a")), no_secrets());
    assert_eq!(next(&mut r).await, ConnEvent::Connected { via: None });
    assert_eq!(sim.stats("/s/a").live, 1);
    r.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), r.task)
        .await
        .expect("ends in time")
        .expect("no panic");
    for _ in 0..500 {
        if sim.stats("/s/a").live == 0 {
            return;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the server still sees the socket");
}

#[tokio::test]
async fn a_proxied_account_connects_through_its_proxy_and_names_the_hop() {
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let proxy = Proxy::start(ProxyKind::Socks5, Some(("op", "pw")))
        .await
        .expect("proxy");
    let secrets = MemorySecretStore::default();
    let name = lifeline_engine::SecretName::parse("px").expect("name");
    secrets.set(&name, &SecretValue::new("op:pw")).expect("set");
    let mut a = account(&sim.url("proxied"));
    a.proxy_url = Some(proxy.url());
    a.proxy_secret = Some(name);
    a.country = Some("ID".into());
    let route = proxy::chain(&a, &[], false);
    let mut r = start_routed(a, Arc::new(secrets), route);
    let expected = format!("via own proxy {} (ID)", proxy.url());
    assert_eq!(
        next(&mut r).await,
        ConnEvent::Connected {
            via: Some(expected)
        }
    );
    assert_eq!(proxy.tunnels(), 1);
    assert_eq!(sim.stats("/s/proxied").live, 1);
    // Faults still classify the same through the tunnel.
    sim.inject(Fault::Close {
        path: Some("/s/proxied".into()),
        code: 4000,
    });
    assert_eq!(
        ended(&mut r).await,
        Reason::ClosedByPeer { code: Some(4000) }
    );
    r.cancel.cancel();
}

#[tokio::test]
async fn a_dead_proxy_falls_back_to_a_same_country_one_and_never_goes_direct_unasked() {
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let dead = Proxy::start(ProxyKind::Socks5, None).await.expect("proxy");
    let dead_url = dead.url();
    drop(dead);
    let spare = Proxy::start(ProxyKind::HttpConnect, None)
        .await
        .expect("proxy");
    let mut a = account(&sim.url("fallback"));
    a.proxy_url = Some(dead_url.clone());
    a.country = Some("ID".into());
    let pool = [ProxyEntry {
        url: spare.url(),
        secret: None,
        country: Some("ID".into()),
        owner: AccountId(2),
    }];
    let route = proxy::chain(&a, &pool, false);
    assert_eq!(route[1].kind, HopKind::SameCountry);
    let mut r = start_routed(a.clone(), Arc::new(MemorySecretStore::default()), route);
    let expected = format!("via same-country proxy {} (ID)", spare.url());
    assert_eq!(
        next(&mut r).await,
        ConnEvent::Connected {
            via: Some(expected)
        }
    );
    r.cancel.cancel();

    // Alone with a dead proxy and no direct fallback: a network failure naming the hop.
    let alone = proxy::chain(&a, &[], false);
    let mut r = start_routed(a, Arc::new(MemorySecretStore::default()), alone);
    let ConnEvent::Ended { reason, detail } = next(&mut r).await else {
        panic!("expected the attempt to end");
    };
    assert_eq!(reason, Reason::Network);
    let detail = detail.unwrap_or_default();
    assert!(
        detail.contains(&dead_url) && detail.contains("direct connection not allowed"),
        "{detail}"
    );
    assert_eq!(
        sim.stats("/s/fallback").accepted,
        1,
        "never reached the sim directly"
    );
}
