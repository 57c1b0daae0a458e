//! Supervisor behaviour with a scripted connector and paused tokio time: no real sockets, no
//! real sleeps. Socket-level behaviour is tested against lifeline-sim in the websocket crate.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::connector::{ConnEvent, ConnectRequest, Connector};
use crate::model::AccountKind;
use crate::model::NewAccount;
use crate::policy::pacing::PacingConfig;
use crate::secrets::MemorySecretStore;
use crate::state::{Reason, State, StateKind};

#[derive(Debug, Clone)]
enum Step {
    Send(ConnEvent),
    Wait(Duration),
    /// Stay connected, proving liveness every few seconds, until cancelled.
    Healthy,
    /// Stay silent until cancelled.
    Hang,
}

/// An attempt's account and its proxy hops, described.
type Route = (AccountId, Vec<String>);

type Script = Arc<dyn Fn(AccountId, usize) -> Vec<Step> + Send + Sync>;

/// Runs scripted connections and counts what a socket server would see.
#[derive(Clone)]
struct Scripted {
    script: Script,
    attempts: Arc<Mutex<HashMap<AccountId, usize>>>,
    live: Arc<Mutex<HashMap<AccountId, usize>>>,
    max_live: Arc<AtomicUsize>,
    starts: Arc<Mutex<Vec<Instant>>>,
    /// The proxy route each attempt was given, as hop descriptions.
    routes: Arc<Mutex<Vec<Route>>>,
}

impl std::fmt::Debug for Scripted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Scripted")
    }
}

impl Scripted {
    fn new(script: impl Fn(AccountId, usize) -> Vec<Step> + Send + Sync + 'static) -> Self {
        Self {
            script: Arc::new(script),
            attempts: Arc::default(),
            live: Arc::default(),
            max_live: Arc::default(),
            starts: Arc::default(),
            routes: Arc::default(),
        }
    }

    fn attempts(&self, id: AccountId) -> usize {
        self.attempts
            .lock()
            .expect("lock")
            .get(&id)
            .copied()
            .unwrap_or(0)
    }
}

struct LiveGuard(Arc<Mutex<HashMap<AccountId, usize>>>, AccountId);
impl Drop for LiveGuard {
    fn drop(&mut self) {
        if let Ok(mut live) = self.0.lock()
            && let Some(n) = live.get_mut(&self.1)
        {
            *n -= 1;
        }
    }
}

impl Connector for Scripted {
    fn run(
        &self,
        request: ConnectRequest,
        events: mpsc::Sender<ConnEvent>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let id = request.account.id;
        let n = {
            let mut a = self.attempts.lock().expect("lock");
            let n = a.entry(id).or_default();
            *n += 1;
            *n
        };
        self.starts.lock().expect("lock").push(Instant::now());
        self.routes
            .lock()
            .expect("lock")
            .push((id, request.route.iter().map(ToString::to_string).collect()));
        let steps = (self.script)(id, n);
        let live = self.live.clone();
        let max_live = self.max_live.clone();
        Box::pin(async move {
            {
                let mut l = live.lock().expect("lock");
                let c = l.entry(id).or_default();
                *c += 1;
                max_live.fetch_max(*c, Ordering::SeqCst);
            }
            let _guard = LiveGuard(live, id);
            for step in steps {
                let done = async {
                    match step {
                        Step::Send(e) => {
                            let _ = events.send(e).await;
                        }
                        Step::Wait(d) => tokio::time::sleep(d).await,
                        Step::Healthy => loop {
                            tokio::time::sleep(Duration::from_secs(5)).await;
                            if events.send(ConnEvent::Alive).await.is_err() {
                                break;
                            }
                        },
                        Step::Hang => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = done => {}
                }
            }
        })
    }
}

fn ended(reason: Reason) -> Step {
    Step::Send(ConnEvent::Ended {
        reason,
        detail: None,
    })
}

/// Awaits a store read in a test, with paused time held still meanwhile (see `Clock::hold`).
async fn db<F: std::future::Future>(f: F) -> F::Output {
    Clock::virtual_now().hold(f).await
}

struct Fixture {
    _tmp: tempfile::TempDir,
    store: Store,
    sup: Supervisor,
    conn: Scripted,
}

async fn fixture(n: usize, policy: PolicyConfig, conn: Scripted) -> Fixture {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Paused time is moved by hand here: a wait for a connection must never time out.
    let store = Store::open_path_with(&tmp.path().join("t.db"), Duration::from_secs(7 * 24 * 3600))
        .await
        .expect("store");
    for i in 0..n {
        store
            .add_account(
                NewAccount::new(AccountKind::Websocket, format!("acct {i}")).with_url("ws://h/"),
            )
            .await
            .expect("add");
    }
    let sup = Supervisor::new(SupervisorDeps {
        store: store.clone(),
        connectors: Connectors::new().with(AccountKind::Websocket, Arc::new(conn.clone())),
        secrets: Arc::new(MemorySecretStore::default()),
        clock: Clock::virtual_now(),
        policy,
        jitter_seed: Some(7),
    });
    Fixture {
        _tmp: tmp,
        store,
        sup,
        conn,
    }
}

fn fast_policy() -> PolicyConfig {
    let mut p = PolicyConfig::default();
    p.autorecover.start_delay_ms = 0;
    p
}

fn state_of(sup: &Supervisor, id: AccountId) -> State {
    sup.views()
        .into_iter()
        .find(|v| v.id == id)
        .map(|v| v.state)
        .expect("view")
}

async fn events_of(store: &Store, id: AccountId) -> Vec<(String, String, Option<String>, String)> {
    db(sqlx::query_as("SELECT from_state, to_state, reason, triggered_by FROM events WHERE account_id = ? ORDER BY id")
        .bind(id.0)
        .fetch_all(store.pool()))
        .await
        .expect("events")
}

/// Advances paused time in small steps so every task gets to run.
async fn advance(total: Duration) {
    let step = Duration::from_millis(100);
    let mut done = Duration::ZERO;
    while done < total {
        tokio::time::advance(step).await;
        tokio::task::yield_now().await;
        done += step;
    }
}

#[tokio::test]
async fn drop_then_reconnect_is_recorded_with_a_session_each() {
    let conn = Scripted::new(|_, n| match n {
        1 => vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Wait(Duration::from_secs(10)),
            ended(Reason::ClosedByPeer { code: Some(1011) }),
        ],
        _ => vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Healthy,
        ],
    });
    let f = fixture(1, fast_policy(), conn).await;
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    advance(Duration::from_secs(20)).await;
    let id = AccountId(1);
    assert_eq!(state_of(&f.sup, id), State::Connected);
    assert_eq!(f.conn.attempts(id), 2);
    f.sup.flush().await;
    let ev = events_of(&f.store, id).await;
    let path: Vec<&str> = ev.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(
        path,
        [
            "connecting",
            "connected",
            "backoff",
            "connecting",
            "connected"
        ]
    );
    assert_eq!(ev[2].2.as_deref(), Some("closed-by-peer"));
    let sessions: i64 =
        db(sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(f.store.pool()))
            .await
            .expect("count");
    assert_eq!(sessions, 2);
    assert_eq!(f.sup.metrics().reconnects.get(), 1);
}

#[tokio::test]
async fn reconcile_catches_a_connected_account_that_went_silent() {
    let conn = Scripted::new(|_, n| match n {
        1 => vec![Step::Send(ConnEvent::Connected { via: None }), Step::Hang],
        _ => vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Healthy,
        ],
    });
    let f = fixture(1, fast_policy(), conn).await;
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    let id = AccountId(1);
    advance(Duration::from_secs(1)).await;
    assert_eq!(state_of(&f.sup, id), State::Connected);
    // stale after 2×keepalive + pong timeout = 40 s; the pass runs every 30 s (+ jitter ≤ 30 s).
    advance(Duration::from_secs(100)).await;
    f.sup.flush().await;
    let ev = events_of(&f.store, id).await;
    let stale = ev
        .iter()
        .find(|e| e.2.as_deref() == Some("stale"))
        .expect("stale recorded");
    assert_eq!(stale.0, "connected");
    assert_eq!(stale.3, "reconcile");
    assert_eq!(state_of(&f.sup, id), State::Connected, "recovered");
    assert_eq!(f.conn.attempts(id), 2);
}

#[tokio::test]
async fn refusals_back_off_open_the_breaker_and_reset_recovers() {
    let refusing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let r = refusing.clone();
    let conn = Scripted::new(move |_, _| {
        if r.load(Ordering::SeqCst) {
            vec![ended(Reason::Refused { status: Some(503) })]
        } else {
            vec![
                Step::Send(ConnEvent::Connected { via: None }),
                Step::Healthy,
            ]
        }
    });
    let mut policy = fast_policy();
    // A short backoff cap, so ten failures fit in the five-minute window.
    policy.backoff.cap_ms = 4_000;
    let f = fixture(1, policy, conn).await;
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    let id = AccountId(1);
    advance(Duration::from_secs(120)).await;
    let attempts = f.conn.attempts(id);
    assert!(
        matches!(
            state_of(&f.sup, id),
            State::Paused {
                reason: Reason::BreakerOpen,
                ..
            }
        ),
        "{:?} after {attempts}",
        state_of(&f.sup, id)
    );
    assert_eq!(attempts, 10);
    // While open, nothing is attempted.
    advance(Duration::from_secs(60)).await;
    assert_eq!(f.conn.attempts(id), 10);
    assert_eq!(f.sup.metrics().breaker_opens.get(), 1);
    // The breaker is persisted.
    f.sup.flush().await;
    let stored = db(f.store.breakers()).await.expect("breakers");
    assert!(stored[&id].is_open());
    refusing.store(false, Ordering::SeqCst);
    f.sup.reset_breaker(id).await.expect("reset");
    advance(Duration::from_secs(1)).await;
    assert_eq!(state_of(&f.sup, id), State::Connected);
    f.sup.flush().await;
    assert!(!db(f.store.breakers()).await.expect("breakers")[&id].is_open());
}

#[tokio::test]
async fn logged_out_and_replaced_need_an_operator_and_are_never_retried() {
    let conn = Scripted::new(|id, _| {
        if id.0 == 1 {
            vec![
                Step::Send(ConnEvent::Connected { via: None }),
                Step::Wait(Duration::from_secs(1)),
                ended(Reason::LoggedOut),
            ]
        } else {
            vec![ended(Reason::Replaced)]
        }
    });
    let f = fixture(2, fast_policy(), conn).await;
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    advance(Duration::from_secs(600)).await;
    for (id, reason) in [
        (AccountId(1), Reason::LoggedOut),
        (AccountId(2), Reason::Replaced),
    ] {
        assert_eq!(state_of(&f.sup, id), State::NeedsOperator { reason });
        assert_eq!(f.conn.attempts(id), 1, "never retried");
    }
}

#[tokio::test]
async fn a_temporary_ban_pauses_until_expiry_then_resumes() {
    let clock_probe = Clock::virtual_now();
    let conn = Scripted::new(move |_, n| match n {
        1 => vec![ended(Reason::Banned {
            until: Some(clock_probe.now() + chrono::Duration::seconds(120)),
        })],
        _ => vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Healthy,
        ],
    });
    let f = fixture(1, fast_policy(), conn).await;
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    let id = AccountId(1);
    advance(Duration::from_secs(60)).await;
    assert!(matches!(
        state_of(&f.sup, id),
        State::Paused {
            reason: Reason::Banned { .. },
            ..
        }
    ));
    assert_eq!(f.conn.attempts(id), 1);
    advance(Duration::from_secs(70)).await;
    assert_eq!(state_of(&f.sup, id), State::Connected);
}

#[tokio::test]
async fn autorecover_on_restores_desired_accounts_and_keeps_history() {
    autorecover_case(true).await;
}

#[tokio::test]
async fn autorecover_off_holds_desired_accounts_stopped_and_keeps_history() {
    autorecover_case(false).await;
}

async fn autorecover_case(autorecover: bool) {
    {
        let conn = Scripted::new(|_, _| {
            vec![
                Step::Send(ConnEvent::Connected { via: None }),
                Step::Healthy,
            ]
        });
        let f = fixture(2, fast_policy(), conn).await;
        f.store.set_autorecover(autorecover).await.expect("set");
        f.store
            .set_desired_running(AccountId(2), false)
            .await
            .expect("desired off");
        // History from an earlier run.
        f.store
            .record_transition(
                AccountId(1),
                State::Connected,
                None,
                TriggeredBy::Engine,
                Clock::virtual_now().now(),
            )
            .await
            .expect("old");
        tokio::time::pause();
        let report = f
            .sup
            .startup(
                Some(crate::store::PreviousRun {
                    started_at: Clock::virtual_now().now(),
                    ended_at: None,
                    clean: false,
                }),
                None,
            )
            .await
            .expect("startup");
        assert!(report.previous_run_crashed);
        advance(Duration::from_secs(5)).await;
        f.sup.flush().await;
        // Desired off stays off either way.
        assert!(matches!(
            state_of(&f.sup, AccountId(2)),
            State::Stopped { .. }
        ));
        assert_eq!(f.conn.attempts(AccountId(2)), 0);
        let one = state_of(&f.sup, AccountId(1));
        if autorecover {
            assert_eq!(one, State::Connected);
        } else {
            assert_eq!(
                one,
                State::Stopped {
                    reason: Some(Reason::AutorecoverOff)
                }
            );
            assert_eq!(f.conn.attempts(AccountId(1)), 0);
        }
        // The crashed session was closed as crashed, not lost.
        let reasons: Vec<Option<String>> = db(sqlx::query_scalar(
            "SELECT end_reason FROM sessions WHERE account_id = 1 ORDER BY id",
        )
        .fetch_all(f.store.pool()))
        .await
        .expect("sessions");
        assert_eq!(
            reasons[0].as_deref(),
            Some("crashed"),
            "autorecover={autorecover}"
        );
    }
}

#[tokio::test]
async fn pacing_holds_under_a_1000_account_mass_restore() {
    let conn = Scripted::new(|_, _| {
        vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Healthy,
        ]
    });
    let mut policy = fast_policy();
    policy.autorecover.concurrency = 1000;
    let f = fixture(1000, policy, conn).await;
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    advance(Duration::from_secs(60)).await;
    let starts = f.conn.starts.lock().expect("lock").clone();
    // The burst, then 2/s for the ~60 s that passed (startup takes a few steps of its own).
    assert!(
        (115..=5 + 2 * 60).contains(&starts.len()),
        "{} attempts",
        starts.len()
    );
    let cfg = PacingConfig::default();
    let limit = cfg.burst as usize + cfg.rate_per_s as usize;
    for (i, s) in starts.iter().enumerate() {
        let in_window = starts[i..]
            .iter()
            .take_while(|t| **t - *s < Duration::from_secs(1))
            .count();
        assert!(in_window <= limit, "{in_window} attempts within 1 s");
    }
}

#[tokio::test]
async fn a_mass_drop_is_coalesced_for_subscribers_and_never_doubles_a_connection() {
    let conn = Scripted::new(|_, n| match n {
        1 => vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Wait(Duration::from_secs(5)),
            ended(Reason::ClosedByPeer { code: None }),
        ],
        _ => vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Healthy,
        ],
    });
    let mut policy = fast_policy();
    policy.pacing.enabled = false;
    policy.autorecover.concurrency = 1000;
    let f = fixture(1000, policy, conn).await;
    tokio::time::pause();
    let mut updates = f.sup.subscribe();
    f.sup.startup(None, None).await.expect("startup");
    advance(Duration::from_secs(2)).await;
    // A thousand accounts take more turns of the runtime than the steps above gave them; time
    // stands still while this task keeps yielding, so none of them reaches its drop meanwhile.
    for _ in 0..100_000 {
        if f.sup.counts().desired_connected == 1000 {
            break;
        }
        tokio::task::yield_now().await;
    }
    f.sup.flush().await;
    assert!(f.sup.views().iter().all(|v| v.state == State::Connected));
    while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) =
        updates.try_recv()
    {}
    // All 1000 drop together 5 s after connecting.
    let mut messages_with_drops = 0;
    let mut drops = 0;
    for _ in 0..100 {
        advance(Duration::from_millis(100)).await;
        f.sup.flush().await;
        loop {
            match updates.try_recv() {
                Ok(Update::Transitions(ev)) => {
                    let n = ev
                        .iter()
                        .filter(|e| e.to.kind() == StateKind::Backoff)
                        .count();
                    if n > 0 {
                        messages_with_drops += 1;
                        drops += n;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    assert!(
                        !matches!(e, tokio::sync::broadcast::error::TryRecvError::Lagged(_)),
                        "subscriber lagged: {e}"
                    );
                    break;
                }
            }
        }
        if drops >= 1000 {
            break;
        }
    }
    assert_eq!(drops, 1000, "counts now: {:?}", f.sup.counts());
    assert!(
        messages_with_drops < 50,
        "{messages_with_drops} messages for 1000 drops"
    );
    advance(Duration::from_secs(300)).await;
    assert_eq!(
        f.conn.max_live.load(Ordering::SeqCst),
        1,
        "never two connections for one account"
    );
    assert!(f.sup.views().iter().all(|v| v.state == State::Connected));
}

#[tokio::test]
async fn force_retry_spam_never_opens_two_connections() {
    let conn = Scripted::new(|_, _| {
        vec![
            Step::Wait(Duration::from_millis(300)),
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Hang,
        ]
    });
    let mut policy = fast_policy();
    policy.pacing.enabled = false;
    let f = fixture(3, policy, conn).await;
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    for i in 0..200 {
        let id = AccountId(1 + (i % 3));
        f.sup.force_retry(id).await.expect("retry");
        if i % 7 == 0 {
            f.sup.stop(id).await.expect("stop");
            f.sup.start(id).await.expect("start");
        }
        advance(Duration::from_millis(100)).await;
    }
    assert_eq!(f.conn.max_live.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn shutdown_records_every_active_account_as_stopped_and_keeps_desired() {
    let conn = Scripted::new(|_, _| {
        vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Healthy,
        ]
    });
    let f = fixture(3, fast_policy(), conn).await;
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    advance(Duration::from_secs(2)).await;
    f.sup.shutdown().await;
    for a in db(f.store.accounts()).await.expect("accounts") {
        assert_eq!(
            a.state,
            State::Stopped {
                reason: Some(Reason::Shutdown)
            }
        );
        assert!(a.desired_running);
    }
    let open: i64 = db(
        sqlx::query_scalar("SELECT COUNT(*) FROM sessions WHERE ended_at IS NULL")
            .fetch_one(f.store.pool()),
    )
    .await
    .expect("count");
    assert_eq!(open, 0);
}

#[tokio::test]
async fn a_restart_keeps_needs_operator_and_honours_a_running_ban() {
    let conn = Scripted::new(|_, _| {
        vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Healthy,
        ]
    });
    let f = fixture(3, fast_policy(), conn).await;
    let now = Clock::virtual_now().now();
    // As a previous run left them.
    let until = now + chrono::Duration::seconds(120);
    for (id, state) in [
        (
            AccountId(1),
            State::NeedsOperator {
                reason: Reason::LoggedOut,
            },
        ),
        (
            AccountId(2),
            State::Paused {
                until: Some(until),
                reason: Reason::Banned { until: Some(until) },
            },
        ),
    ] {
        f.store
            .record_transition(id, state, None, TriggeredBy::Engine, now)
            .await
            .expect("seed");
    }
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    advance(Duration::from_secs(60)).await;
    assert_eq!(
        f.conn.attempts(AccountId(1)),
        0,
        "logged out stays with the operator"
    );
    assert_eq!(f.conn.attempts(AccountId(2)), 0, "ban still running");
    assert_eq!(state_of(&f.sup, AccountId(3)), State::Connected);
    advance(Duration::from_secs(70)).await;
    assert_eq!(
        state_of(&f.sup, AccountId(2)),
        State::Connected,
        "resumed after the ban"
    );
    assert_eq!(f.conn.attempts(AccountId(1)), 0);
    // The operator can still start it by hand.
    f.sup.start(AccountId(1)).await.expect("start");
    advance(Duration::from_secs(1)).await;
    assert_eq!(state_of(&f.sup, AccountId(1)), State::Connected);
}

#[tokio::test]
async fn restart_required_reconnects_at_once_without_touching_the_breaker() {
    let conn = Scripted::new(|_, n| match n {
        1 => vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Wait(Duration::from_secs(1)),
            ended(Reason::RestartRequired),
        ],
        _ => vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Healthy,
        ],
    });
    let f = fixture(1, fast_policy(), conn).await;
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    advance(Duration::from_secs(3)).await;
    assert_eq!(f.conn.attempts(AccountId(1)), 2);
    // The connection lived 1 s; the next started right after, with no backoff floor (≥ 0.5 s).
    let starts = f.conn.starts.lock().expect("lock").clone();
    let gap = starts[1] - starts[0];
    assert!(
        gap < Duration::from_millis(1300),
        "reconnected after {gap:?}"
    );
    assert_eq!(state_of(&f.sup, AccountId(1)), State::Connected);
    f.sup.flush().await;
    let b = db(f.store.breakers()).await.expect("breakers");
    assert!(
        b.get(&AccountId(1))
            .is_none_or(|b| *b == crate::policy::breaker::Breaker::default())
    );
}

#[tokio::test]
async fn an_operator_start_during_backoff_does_not_leave_a_stale_retry_behind() {
    let conn = Scripted::new(|_, n| match n {
        1 => vec![ended(Reason::Refused { status: None })],
        _ => vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Healthy,
        ],
    });
    let mut policy = fast_policy();
    policy.backoff.floor_refused_ms = 30_000;
    let f = fixture(1, policy, conn).await;
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    advance(Duration::from_secs(1)).await;
    assert!(matches!(
        state_of(&f.sup, AccountId(1)),
        State::Backoff { .. }
    ));
    f.sup.start(AccountId(1)).await.expect("start");
    advance(Duration::from_secs(1)).await;
    assert_eq!(state_of(&f.sup, AccountId(1)), State::Connected);
    // Past the old retry time: still the same single connection.
    advance(Duration::from_secs(60)).await;
    assert_eq!(f.conn.attempts(AccountId(1)), 2);
    assert_eq!(state_of(&f.sup, AccountId(1)), State::Connected);
}

#[tokio::test]
async fn connections_get_the_fleet_proxy_chain_and_the_hop_taken_is_recorded() {
    let conn = Scripted::new(|_, _| {
        vec![
            Step::Send(ConnEvent::Connected {
                via: Some("via same-country proxy socks5://b:1080 (ID)".into()),
            }),
            Step::Healthy,
        ]
    });
    let f = fixture(0, fast_policy(), conn).await;
    for (name, proxy) in [
        ("a", Some("socks5://a:1080")),
        ("b", Some("socks5://b:1080")),
        ("c", None),
    ] {
        let mut new = NewAccount::new(AccountKind::Websocket, name).with_url("ws://h/");
        new.country = Some("ID".into());
        new.proxy_url = proxy.map(str::to_owned);
        f.store
            .add_account(new.validate().expect("valid"))
            .await
            .expect("add");
    }
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    advance(Duration::from_secs(5)).await;
    let routes = f.conn.routes.lock().expect("lock").clone();
    let of = |id: i64| {
        routes
            .iter()
            .find(|(a, _)| a.0 == id)
            .map(|(_, r)| r.clone())
            .expect("an attempt")
    };
    assert_eq!(
        of(1),
        [
            "own proxy socks5://a:1080 (ID)",
            "same-country proxy socks5://b:1080 (ID)"
        ]
    );
    assert!(of(3).is_empty(), "no proxy: direct");
    f.sup.flush().await;
    let detail: Option<String> = db(sqlx::query_scalar(
        "SELECT detail FROM events WHERE account_id = 1 AND to_state = 'connected'",
    )
    .fetch_one(f.store.pool()))
    .await
    .expect("event");
    assert_eq!(
        detail.as_deref(),
        Some("via same-country proxy socks5://b:1080 (ID)")
    );

    // A removed account's proxy leaves the pool: the next attempt of account 1 has only its own.
    f.sup.remove_account(AccountId(2)).await.expect("remove");
    f.sup.force_retry(AccountId(1)).await.expect("retry");
    advance(Duration::from_secs(5)).await;
    let last = f
        .conn
        .routes
        .lock()
        .expect("lock")
        .iter()
        .rev()
        .find(|(a, _)| a.0 == 1)
        .map(|(_, r)| r.clone())
        .expect("a retry");
    assert_eq!(last, ["own proxy socks5://a:1080 (ID)"]);
}

#[test]
fn an_account_s_command_slot_stays_small() {
    // Every supervised account's command channel holds 32 slots from the start: a command that
    // grew with the lifecycle's largest input would cost each account kilobytes.
    assert!(
        std::mem::size_of::<account::AccountCommand>() <= 16,
        "{} bytes",
        std::mem::size_of::<account::AccountCommand>()
    );
}

#[tokio::test]
async fn an_account_that_keeps_dropping_is_marked_unstable_until_it_holds() {
    // Account 1 connects and drops five times, then holds; account 2 holds from the start.
    let conn = Scripted::new(|id, n| match (id.0, n) {
        (1, 1..=5) => vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Wait(Duration::from_secs(1)),
            ended(Reason::ClosedByPeer { code: Some(1011) }),
        ],
        _ => vec![
            Step::Send(ConnEvent::Connected { via: None }),
            Step::Healthy,
        ],
    });
    let policy = fast_policy();
    let window_s = policy.alerts.flap_window_s;
    let window = chrono::Duration::seconds(window_s as i64);
    let f = fixture(2, policy, conn).await;
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    advance(Duration::from_secs(300)).await;
    f.sup.flush().await;
    let (flapping, steady) = (AccountId(1), AccountId(2));
    assert_eq!(f.conn.attempts(flapping), 6);
    assert_eq!(state_of(&f.sup, flapping), State::Connected);
    let now = f.sup.clock().now();
    let until = f
        .sup
        .view(flapping)
        .and_then(|v| v.unstable_until)
        .expect("marked unstable");
    assert!(until > now && until <= now + window, "{until} vs {now}");
    assert_eq!(f.sup.view(steady).and_then(|v| v.unstable_until), None);
    // Held for a whole window since its last drop: no longer unstable.
    advance(Duration::from_secs(window_s + 1)).await;
    let now = f.sup.clock().now();
    assert!(f.sup.view(flapping).and_then(|v| v.unstable_until) <= Some(now));
}

#[tokio::test]
async fn a_policy_change_is_in_force_at_once_and_cuts_no_connection() {
    let conn = Scripted::new(|id, _| {
        if id.0 == 1 {
            vec![
                Step::Send(ConnEvent::Connected { via: None }),
                Step::Healthy,
            ]
        } else {
            vec![ended(Reason::Refused { status: Some(503) })]
        }
    });
    let mut policy = fast_policy();
    policy.backoff.cap_ms = 4_000;
    policy.breaker.threshold = 1000;
    let f = fixture(2, policy, conn).await;
    // Stored as a running supervisor's policy is: what it started with.
    let logged = f.store.set_policy(&policy).await.expect("store").len();
    tokio::time::pause();
    f.sup.startup(None, None).await.expect("startup");
    let (steady, refused) = (AccountId(1), AccountId(2));
    advance(Duration::from_secs(60)).await;
    assert_eq!(state_of(&f.sup, refused).kind(), StateKind::Backoff);
    let failures = f.conn.attempts(refused);
    assert!(failures >= 10, "{failures} attempts");

    let lowered = policy.assign("breaker.threshold=3").expect("valid");
    let changes = db(crate::ops::Control::set_policy(&f.sup, lowered))
        .await
        .expect("set");
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (
            changes[0].key.as_str(),
            changes[0].old.as_deref(),
            changes[0].new.as_str()
        ),
        ("breaker.threshold", Some("1000"), "3")
    );
    assert_eq!(f.sup.policy().breaker.threshold, 3);
    // The next failure decides with the new threshold: the breaker opens, no restart needed.
    advance(Duration::from_secs(10)).await;
    assert!(
        matches!(
            state_of(&f.sup, refused),
            State::Paused {
                reason: Reason::BreakerOpen,
                ..
            }
        ),
        "{:?}",
        state_of(&f.sup, refused)
    );
    // The connection that was up stayed up: never cut, never reopened.
    assert_eq!(state_of(&f.sup, steady), State::Connected);
    assert_eq!(f.conn.attempts(steady), 1);
    // Logged as an operator's change, old → new.
    let log = db(f.store.setting_changes(10)).await.expect("log");
    assert_eq!(log.len(), logged + 1);
    assert_eq!(
        (
            log[0].key.as_str(),
            log[0].old.as_deref(),
            log[0].new.as_str()
        ),
        ("breaker.threshold", Some("1000"), "3")
    );
    assert_eq!(log[0].triggered_by, TriggeredBy::Operator);
    // Setting the same values again changes and logs nothing.
    let again = db(crate::ops::Control::set_policy(&f.sup, lowered))
        .await
        .expect("set");
    assert!(again.is_empty());
    assert_eq!(
        db(f.store.setting_changes(10)).await.expect("log").len(),
        logged + 1
    );
}
