//! The sender against a receiver on 127.0.0.1 that keeps failing: an endpoint that fails for
//! longer than the give-up time is turned off and the faces are told once; one that answers
//! 410 at once is turned off at its first answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use lifeline_engine::Store;
use lifeline_engine::clock::Clock;
use lifeline_engine::model::{AccountKind, NewAccount, SecretName};
use lifeline_engine::secrets::{MemorySecretStore, SecretStore};
use lifeline_engine::webhook::{NewWebhook, WebhookUrl};
use lifeline_webhooks::schedule::Schedule;
use lifeline_webhooks::worker::{Outbox, run};
use lifeline_webhooks::{Notice, WorkerConfig};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// A receiver answering `status` to everything; counts the requests.
async fn receiver(status: Arc<AtomicU16>, hits: Arc<AtomicU64>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move || {
            let (status, hits) = (status.clone(), hits.clone());
            async move {
                hits.fetch_add(1, Ordering::Relaxed);
                axum::http::StatusCode::from_u16(status.load(Ordering::Relaxed))
                    .unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR)
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}

async fn setup(url: &str) -> (tempfile::TempDir, Store, Arc<dyn SecretStore>, i64) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open_path(&tmp.path().join("t.db"))
        .await
        .expect("store");
    let secrets: Arc<dyn SecretStore> = Arc::new(MemorySecretStore::default());
    let (_, value) = lifeline_webhooks::sign::SigningKey::generate();
    let name = SecretName::parse("webhook-t").expect("name");
    secrets.set(&name, &value).expect("secret");
    let endpoint = store
        .add_webhook(NewWebhook {
            url: WebhookUrl::parse(url).expect("url"),
            events: None,
            accounts: None,
            secret_name: name,
        })
        .await
        .expect("endpoint")
        .id;
    let account = store
        .add_account(NewAccount::new(AccountKind::Websocket, "a").with_url("ws://h/"))
        .await
        .expect("account");
    let queued = store
        .enqueue_webhook_message(
            "alert",
            "alert.down",
            Some(account.id),
            &serde_json::json!({"kind": "down", "account": account.id}),
            chrono::Utc::now(),
        )
        .await
        .expect("message");
    assert_eq!(queued, 1);
    (tmp, store, secrets, endpoint)
}

async fn next_notice(rx: &mut mpsc::UnboundedReceiver<Notice>) -> Notice {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a notice within 20 s")
        .expect("sender alive")
}

fn start(
    store: &Store,
    secrets: &Arc<dyn SecretStore>,
    cfg: WorkerConfig,
) -> (mpsc::UnboundedReceiver<Notice>, CancellationToken) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    tokio::spawn(run(
        Outbox {
            store: store.clone(),
            secrets: secrets.clone(),
            clock: Clock::System,
            metrics: None,
            writer: None,
        },
        cfg,
        tx,
        stop.clone(),
    ));
    (rx, stop)
}

#[tokio::test]
async fn an_endpoint_failing_past_the_give_up_time_is_turned_off_once() {
    let (status, hits) = (Arc::new(AtomicU16::new(500)), Arc::new(AtomicU64::new(0)));
    let url = receiver(status, hits.clone()).await;
    let (_tmp, store, secrets, id) = setup(&url).await;
    let cfg = WorkerConfig {
        schedule: Schedule::parse("0,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms").expect("schedule"),
        give_up_after: Duration::from_millis(700),
        poll: Duration::from_millis(50),
        ..WorkerConfig::default()
    };
    let (mut notices, stop) = start(&store, &secrets, cfg);
    let Notice::Disabled {
        endpoint, reason, ..
    } = next_notice(&mut notices).await;
    assert_eq!(endpoint, id);
    assert!(reason.contains("failed every delivery"), "{reason}");
    let e = store.webhook(id).await.expect("endpoint");
    assert!(!e.enabled);
    assert!(e.failing_since.is_some());
    // Tried several times first, and nothing more once turned off.
    let tried = hits.load(Ordering::Relaxed);
    assert!(tried >= 3, "{tried} attempts");
    let stats = store.outbox_stats().await.expect("stats");
    assert_eq!(
        stats.pending, 1,
        "the message waits for the endpoint to be turned on"
    );
    let due = store
        .due_deliveries(chrono::Utc::now(), &Default::default(), 10)
        .await
        .expect("due");
    assert!(
        due.is_empty(),
        "nothing is handed out for an endpoint turned off"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_410_turns_the_endpoint_off_at_its_first_answer() {
    let (status, hits) = (Arc::new(AtomicU16::new(410)), Arc::new(AtomicU64::new(0)));
    let url = receiver(status, hits.clone()).await;
    let (_tmp, store, secrets, id) = setup(&url).await;
    let (mut notices, stop) = start(&store, &secrets, WorkerConfig::default());
    let Notice::Disabled {
        endpoint, reason, ..
    } = next_notice(&mut notices).await;
    assert_eq!((endpoint, hits.load(Ordering::Relaxed)), (id, 1));
    assert!(reason.contains("410"), "{reason}");
    assert_eq!(store.outbox_stats().await.expect("stats").failed, 1);
    stop.cancel();
}
