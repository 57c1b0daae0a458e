//! The runtime against a real data dir and lifeline-sim on 127.0.0.1. Tests wait for conditions
//! (updates from the supervisor, bounded by generous deadlines), never for a fixed time.

use std::sync::Arc;
use std::time::Duration;

use lifeline_engine::connector::Connectors;
use lifeline_engine::model::{AccountKind, NewAccount};
use lifeline_engine::ops::{Action, Control, Queued, Target};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::{Reason, State, StateKind};
use lifeline_engine::supervisor::Update;
use lifeline_engine::{AccountId, DataDir, Error, Store};
use lifeline_sim::Sim;
use lifeline_websocket::WebSocketConnector;

use super::{Parts, Runtime};

fn parts() -> Parts {
    Parts {
        connectors: Connectors::new().with(AccountKind::Websocket, Arc::new(WebSocketConnector)),
        secrets: Arc::new(MemorySecretStore::default()),
        webhooks: Default::default(),
    }
}

async fn fast_policy(store: &Store) {
    let mut p = PolicyConfig::default();
    p.autorecover.start_delay_ms = 0;
    p.backoff.base_ms = 20;
    p.backoff.cap_ms = 200;
    p.backoff.floor_closed_ms = 20;
    p.backoff.floor_network_ms = 20;
    p.backoff.floor_refused_ms = 20;
    store.set_policy(&p).await.expect("policy");
}

async fn dir_and_store(tmp: &tempfile::TempDir) -> (DataDir, Store) {
    let dir = DataDir::resolve(Some(tmp.path().join("data"))).expect("dir");
    let store = Store::open(&dir).await.expect("store");
    fast_policy(&store).await;
    (dir, store)
}

/// Waits for `id` to be recorded in state `kind`, reading the supervisor's updates.
async fn until_state(
    updates: &mut tokio::sync::broadcast::Receiver<Update>,
    id: AccountId,
    kind: StateKind,
) {
    let wait = async {
        loop {
            match updates.recv().await {
                Ok(Update::Transitions(events)) => {
                    if events
                        .iter()
                        .any(|e| e.account_id == id && e.to.kind() == kind)
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("updates ended: {e}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(20), wait)
        .await
        .unwrap_or_else(|_| panic!("account {id} never reached {kind}"));
}

#[tokio::test]
async fn a_second_runtime_on_the_same_data_dir_is_refused_until_the_first_stops() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, store) = dir_and_store(&tmp).await;
    let mut first = Runtime::open(&dir, store.clone(), parts())
        .await
        .expect("first");
    first.start().await.expect("start");
    let err = Runtime::open(&dir, store.clone(), parts())
        .await
        .expect_err("second must be refused");
    assert!(matches!(err, Error::DataDirLocked { .. }), "{err:?}");
    first.shutdown().await.expect("shutdown");
    let store = Store::open(&dir).await.expect("reopen");
    let again = Runtime::open(&dir, store, parts())
        .await
        .expect("free again");
    again.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn graceful_shutdown_marks_the_run_clean_and_a_dropped_runtime_does_not() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, store) = dir_and_store(&tmp).await;
    let mut rt = Runtime::open(&dir, store, parts()).await.expect("open");
    assert!(rt.previous_run().is_none(), "first run ever");
    rt.start().await.expect("start");
    rt.shutdown().await.expect("shutdown");

    let store = Store::open(&dir).await.expect("reopen");
    let mut rt = Runtime::open(&dir, store, parts()).await.expect("open");
    let previous = rt.previous_run().expect("previous run");
    assert!(previous.clean, "shutdown wrote the clean-run marker");
    rt.start().await.expect("start");
    // A crash: the runtime goes away without shutdown.
    drop(rt);

    let store = Store::open(&dir).await.expect("reopen");
    let mut rt = Runtime::open(&dir, store, parts()).await.expect("open");
    let previous = rt.previous_run().expect("previous run");
    assert!(!previous.clean, "no marker after a crash");
    let report = rt.start().await.expect("start");
    assert!(report.previous_run_crashed);
    rt.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn accounts_restore_on_start_and_queued_commands_reach_the_supervisor() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let (dir, store) = dir_and_store(&tmp).await;
    let restored = store
        .add_account(NewAccount::new(AccountKind::Websocket, "restored").with_url(sim.url("a")))
        .await
        .expect("add");
    let mut rt = Runtime::open(&dir, store.clone(), parts())
        .await
        .expect("open");
    let mut updates = rt.supervisor().subscribe();
    let report = rt.start().await.expect("start");
    assert_eq!(report.restoring, 1);
    until_state(&mut updates, restored.id, StateKind::Connected).await;

    // Admin commands from another process: add an account, then stop it. Each call returns
    // once the running supervisor has answered.
    let other = Store::open(&dir).await.expect("second handle");
    let admin = Queued::new(dir.clone(), other.clone(), parts().connectors);
    let added = admin
        .add(NewAccount::new(AccountKind::Websocket, "added").with_url(sim.url("b")))
        .await
        .expect("add");
    until_state(&mut updates, added.id, StateKind::Connected).await;
    admin
        .act(Action::Stop, Target::One(added.id))
        .await
        .expect("stop");
    until_state(&mut updates, added.id, StateKind::Stopped).await;
    assert!(
        !other
            .account(added.id)
            .await
            .expect("account")
            .desired_running
    );
    other.close().await;

    rt.shutdown().await.expect("shutdown");
    let store = Store::open(&dir).await.expect("reopen");
    let a = store.account(restored.id).await.expect("account");
    assert_eq!(
        a.state,
        State::Stopped {
            reason: Some(Reason::Shutdown)
        },
        "shutdown closes connections as stopped by shutdown"
    );
    assert!(
        a.desired_running,
        "and keeps them desired for the next start"
    );
}
