//! The WebSocket connector against real sockets on 127.0.0.1: lifeline-sim and a few raw TCP
//! misbehaviours. Every way a connection can end must map to the right typed reason.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeline_engine::connector::{ConnEvent, ConnectRequest, Connector};
use lifeline_engine::model::{Account, AccountId, AccountKind, HeaderRef};
use lifeline_engine::policy::config::ConnectionConfig;
use lifeline_engine::secrets::{MemorySecretStore, SecretStore, SecretValue};
use lifeline_engine::state::{Reason, State};
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
        desired_running: true,
        state: State::INITIAL,
        state_since: Utc::now(),
        created_at: Utc::now(),
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
    let (tx, rx) = mpsc::channel(64);
    let cancel = CancellationToken::new();
    let fut = WebSocketConnector.run(
        ConnectRequest {
            account,
            config: fast(),
            secrets,
            link: None,
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
    assert_eq!(next(&mut r).await, ConnEvent::Connected);
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
    assert_eq!(next(&mut r).await, ConnEvent::Connected);
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
    assert_eq!(next(&mut r).await, ConnEvent::Connected);
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
    assert_eq!(next(&mut r).await, ConnEvent::Connected);
}

#[tokio::test]
async fn cancel_closes_the_socket_promptly() {
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let mut r = start(account(&sim.url("a")), no_secrets());
    assert_eq!(next(&mut r).await, ConnEvent::Connected);
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
