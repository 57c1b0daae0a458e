//! The real whatsapp-rust connection path, up to the socket, against servers on 127.0.0.1
//! (WhatsApp's own are unreachable here): refused and closed-mid-handshake connections end with
//! a typed reason, the device store is created private, and `forget` deletes it.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lifeline_engine::connector::{ConnEvent, ConnectRequest, Connector};
use lifeline_engine::model::{Account, AccountId, AccountKind};
use lifeline_engine::policy::config::ConnectionConfig;
use lifeline_engine::proxy::{self, Hop};
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::{Reason, State};
use lifeline_sim::proxy::{Proxy, ProxyKind};
use lifeline_sim::{Fault, Sim};
use lifeline_whatsapp::{Endpoint, WhatsAppConnector, device};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn account() -> Account {
    Account {
        id: AccountId(3),
        kind: AccountKind::Whatsapp,
        name: "wa".into(),
        url: None,
        priority: 100,
        country: Some("ID".into()),
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

async fn run_once(connector: &WhatsAppConnector) -> ConnEvent {
    run_routed(connector, account(), Vec::new()).await
}

/// Runs one connection to its end.
async fn run_routed(connector: &WhatsAppConnector, account: Account, route: Vec<Hop>) -> ConnEvent {
    let (tx, mut rx) = mpsc::channel(64);
    let fut = connector.run(
        ConnectRequest {
            account: Arc::new(account),
            config: ConnectionConfig::default(),
            secrets: Arc::new(MemorySecretStore::default()),
            link: None,
            route,
            resume: None,
        },
        tx,
        CancellationToken::new(),
    );
    let task = tokio::spawn(fut);
    let mut last = None;
    while let Ok(Some(e)) = tokio::time::timeout(Duration::from_secs(60), rx.recv()).await {
        if matches!(e, ConnEvent::Ended { .. }) {
            last = Some(e);
            break;
        }
    }
    task.await.expect("connector task");
    last.expect("the connection ends with a reason")
}

fn endpoint(url: String) -> Endpoint {
    Endpoint {
        url: Some(url),
        version: Some((2, 3000, 1_000_000_000)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_ends_with_network_and_keeps_a_private_store() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let c = WhatsAppConnector::new(
        tmp.path(),
        endpoint(format!("ws://127.0.0.1:{port}/ws/chat")),
    );
    match run_once(&c).await {
        ConnEvent::Ended { reason, .. } => assert_eq!(reason, Reason::Network),
        other => panic!("{other:?}"),
    }
    let db = device::path(tmp.path(), AccountId(3));
    assert!(db.exists(), "device store created");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&db).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    c.forget(&account()).expect("forget");
    assert!(!db.exists(), "removed with the account");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_closing_mid_handshake_ends_the_connection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 64];
            let _ = tcp.read(&mut buf).await;
        }
    });
    let c = WhatsAppConnector::new(tmp.path(), endpoint(format!("ws://{addr}/ws/chat")));
    match run_once(&c).await {
        ConnEvent::Ended { reason, .. } => {
            assert!(
                matches!(reason, Reason::Network | Reason::ClosedByPeer { .. }),
                "{reason:?}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxied_account_reaches_the_endpoint_only_through_its_proxy() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let proxy = Proxy::start(ProxyKind::Socks5, None).await.expect("proxy");
    let c = WhatsAppConnector::new(tmp.path(), endpoint(sim.url("wa")));
    let mut a = account();
    a.proxy_url = Some(proxy.url());
    let route = proxy::chain(&a, &[], false);
    // The real client opens its WebSocket through the tunnel; the sim then drops it.
    let watcher = {
        let sim = sim.clone();
        tokio::spawn(async move {
            for _ in 0..500 {
                if sim.stats("/s/wa").live == 1 {
                    sim.inject(Fault::Drop { path: None });
                    return true;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            false
        })
    };
    let ended = run_routed(&c, a, route).await;
    assert!(
        watcher.await.expect("watcher"),
        "the client never reached the sim"
    );
    assert!(matches!(ended, ConnEvent::Ended { .. }), "{ended:?}");
    assert_eq!(proxy.tunnels(), 1, "through the proxy");
    assert_eq!(sim.stats("/s/wa").accepted, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_proxy_without_direct_fallback_never_touches_the_endpoint() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let dead = Proxy::start(ProxyKind::HttpConnect, None)
        .await
        .expect("proxy");
    let dead_url = dead.url();
    drop(dead);
    let c = WhatsAppConnector::new(tmp.path(), endpoint(sim.url("wa")));
    let mut a = account();
    a.proxy_url = Some(dead_url.clone());
    let route = proxy::chain(&a, &[], false);
    match run_routed(&c, a, route).await {
        ConnEvent::Ended { reason, detail } => {
            assert_eq!(reason, Reason::Network);
            let detail = detail.unwrap_or_default();
            assert!(detail.contains(&dead_url), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(sim.stats("/s/wa").accepted, 0);
}
