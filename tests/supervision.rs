//! The supervisor with the real WebSocket connector against lifeline-sim on 127.0.0.1: drops are
//! recovered, stalls detected, refusals open the breaker, and no path ever sees two sockets.
//! Real sockets mean real time; tests wait for conditions (with generous bounds), never sleep
//! a fixed time before asserting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeline_engine::clock::Clock;
use lifeline_engine::connector::Connectors;
use lifeline_engine::model::{AccountId, AccountKind, NewAccount};
use lifeline_engine::ops::{Action, Control, Target};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::{Reason, State, StateKind};
use lifeline_engine::store::Store;
use lifeline_engine::supervisor::{Supervisor, SupervisorDeps};
use lifeline_sim::{Fault, Sim};
use lifeline_websocket::WebSocketConnector;

mod common;
use common::{fast_policy, until};

struct World {
    _tmp: tempfile::TempDir,
    store: Store,
    sup: Supervisor,
    sim: Sim,
}

async fn world(n: usize, policy: PolicyConfig) -> World {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sim = Sim::start("127.0.0.1:0").await.expect("sim");
    let store = Store::open_path(&tmp.path().join("t.db"))
        .await
        .expect("store");
    for i in 0..n {
        store
            .add_account(
                NewAccount::new(AccountKind::Websocket, format!("acct {i}"))
                    .with_url(sim.url(&i.to_string())),
            )
            .await
            .expect("add");
    }
    let sup = Supervisor::new(SupervisorDeps {
        store: store.clone(),
        connectors: Connectors::new().with(AccountKind::Websocket, Arc::new(WebSocketConnector)),
        secrets: Arc::new(MemorySecretStore::default()),
        clock: Clock::System,
        policy,
        jitter_seed: Some(11),
    });
    sup.startup(None, None).await.expect("startup");
    World {
        _tmp: tmp,
        store,
        sup,
        sim,
    }
}

fn state(w: &World, id: AccountId) -> State {
    w.sup
        .views()
        .into_iter()
        .find(|v| v.id == id)
        .map(|v| v.state)
        .expect("view")
}

fn all_connected(w: &World) -> bool {
    w.sup.views().iter().all(|v| v.state == State::Connected)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_session_reconnects_and_the_drop_is_recorded() {
    let w = world(1, fast_policy()).await;
    until(Duration::from_secs(10), "connected", || all_connected(&w)).await;
    w.sim.inject(Fault::Drop { path: None });
    until(Duration::from_secs(10), "reconnected", || {
        w.sim.stats("/s/0").accepted == 2 && all_connected(&w)
    })
    .await;
    w.sup.flush().await;
    let reasons: Vec<Option<String>> = recorded_reasons(&w.store).await;
    assert!(
        reasons
            .iter()
            .any(|r| r.as_deref() == Some("closed-by-peer")),
        "{reasons:?}"
    );
    assert_eq!(w.sim.stats("/s/0").max_live, 1);
    w.sup.shutdown().await;
}

async fn recorded_reasons(store: &Store) -> Vec<Option<String>> {
    let rows = lifeline_engine::export::export_csv(
        store,
        lifeline_engine::export::ExportKind::Events,
        Default::default(),
        Vec::new(),
        |_| {},
    )
    .await
    .expect("export")
    .1;
    String::from_utf8(rows)
        .expect("utf-8")
        .lines()
        .skip(1)
        .map(|l| {
            l.split(',')
                .nth(6)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_is_detected_within_keepalive_plus_timeout() {
    let policy = fast_policy();
    let w = world(1, policy).await;
    until(Duration::from_secs(10), "connected", || all_connected(&w)).await;
    let injected = Instant::now();
    w.sim.inject(Fault::Stall { path: None });
    until(Duration::from_secs(10), "stall noticed", || {
        state(&w, AccountId(1)) != State::Connected
    })
    .await;
    let took = injected.elapsed();
    let bound =
        Duration::from_millis(policy.connection.keepalive_ms + policy.connection.pong_timeout_ms);
    assert!(
        matches!(
            state(&w, AccountId(1)),
            State::Backoff {
                reason: Reason::Stalled,
                ..
            } | State::Connecting
        ),
        "{:?}",
        state(&w, AccountId(1))
    );
    // Scheduling slack on a loaded 2-core machine on top of keepalive + pong timeout.
    assert!(
        took < bound + Duration::from_secs(1),
        "took {took:?}, bound {bound:?}"
    );
    until(Duration::from_secs(10), "recovered", || all_connected(&w)).await;
    w.sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_back_off_open_the_breaker_and_a_reset_recovers() {
    let mut policy = fast_policy();
    policy.breaker.threshold = 4;
    let w = world(1, policy).await;
    until(Duration::from_secs(10), "connected", || all_connected(&w)).await;
    w.sim.refuse_for(Duration::from_secs(3600));
    w.sim.inject(Fault::Drop { path: None });
    until(Duration::from_secs(15), "breaker open", || {
        matches!(
            state(&w, AccountId(1)),
            State::Paused {
                reason: Reason::BreakerOpen,
                ..
            }
        )
    })
    .await;
    let refused = w.sim.refused();
    assert_eq!(refused, 3, "three refusals + the drop = four failures");
    w.sim.stop_refusing();
    w.sup.reset_breaker(AccountId(1)).await.expect("reset");
    until(Duration::from_secs(10), "recovered after reset", || {
        all_connected(&w)
    })
    .await;
    w.sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_accounts_under_random_faults_never_hold_two_sockets_on_a_path() {
    let w = world(200, fast_policy()).await;
    until(Duration::from_secs(30), "all connected", || {
        all_connected(&w)
    })
    .await;
    let mut seed: u64 = 0x5eed;
    let mut rand = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    for _ in 0..40 {
        let path = Some(format!("/s/{}", rand(200)));
        match rand(6) {
            0 => w.sim.inject(Fault::DropFraction(0.3)),
            1 => w.sim.inject(Fault::Stall { path }),
            2 => w.sim.inject(Fault::Close {
                path,
                code: 4000 + rand(100) as u16,
            }),
            3 => w.sim.refuse_for(Duration::from_millis(150)),
            4 => w.sim.set_handshake_delay(Duration::from_millis(rand(100))),
            _ => w.sim.inject(Fault::Drop { path }),
        }
        w.sup
            .force_retry(AccountId(1 + rand(200) as i64))
            .await
            .expect("retry");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    w.sim.stop_refusing();
    w.sim.set_handshake_delay(Duration::ZERO);
    w.sup.act(Action::Reset, Target::All).await.expect("reset");
    until(Duration::from_secs(60), "all recovered", || {
        all_connected(&w)
    })
    .await;
    let stats = w.sim.all_stats();
    assert_eq!(stats.len(), 200);
    let doubled: Vec<_> = stats
        .iter()
        .filter(|(_, s)| s.max_live > 1)
        .map(|(path, s)| format!("{path} {s:?}"))
        .collect();
    assert!(
        doubled.is_empty(),
        "paths that saw two live sockets at once: {doubled:?}"
    );
    assert!(
        stats.values().map(|s| s.accepted).sum::<u64>() > 200,
        "faults caused reconnects"
    );
    let counts = w.sup.counts();
    assert_eq!(counts.by_state[&StateKind::Connected], 200, "{counts:?}");
    w.sup.shutdown().await;
}
