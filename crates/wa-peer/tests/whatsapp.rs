//! The engine supervising real whatsapp-rust clients against the loopback peer: link by QR end to
//! end, restart without a new QR, and every injected fault ending in the right state. Real
//! sockets and the library's own timers mean real time: tests wait for conditions (bounded),
//! never sleep a fixed time before asserting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeline_engine::clock::Clock;
use lifeline_engine::connector::{Connectors, LinkCode, LinkMode};
use lifeline_engine::model::{AccountId, AccountKind, NewAccount};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::{Reason, State, StateKind};
use lifeline_engine::store::Store;
use lifeline_engine::supervisor::{Supervisor, SupervisorDeps, Update};
use lifeline_wa_peer::{Config, Fault, Peer};
use lifeline_whatsapp::{Endpoint, WhatsAppConnector, device};

fn policy() -> PolicyConfig {
    let mut p = PolicyConfig::default();
    p.autorecover.start_delay_ms = 0;
    p.backoff.base_ms = 100;
    p.backoff.cap_ms = 1_000;
    p.backoff.floor_network_ms = 100;
    p.backoff.floor_closed_ms = 100;
    p.connection.close_timeout_ms = 1_000;
    p
}

struct World {
    dir: tempfile::TempDir,
    store: Store,
    sup: Supervisor,
    peer: Peer,
}

fn supervisor(store: &Store, dir: &std::path::Path, peer: &Peer) -> Supervisor {
    supervisor_with(store, dir, peer, policy())
}

fn supervisor_with(
    store: &Store,
    dir: &std::path::Path,
    peer: &Peer,
    policy: PolicyConfig,
) -> Supervisor {
    let endpoint = Endpoint {
        url: Some(peer.url()),
        version: Some((2, 3000, 1_000_000_000)),
    };
    Supervisor::new(SupervisorDeps {
        store: store.clone(),
        connectors: Connectors::new().with(
            AccountKind::Whatsapp,
            Arc::new(WhatsAppConnector::new(dir, endpoint)),
        ),
        secrets: Arc::new(MemorySecretStore::default()),
        clock: Clock::System,
        policy,
        jitter_seed: Some(5),
    })
}

async fn world(peer: Peer, accounts: usize) -> World {
    world_with(peer, accounts, policy()).await
}

async fn world_with(peer: Peer, accounts: usize, policy: PolicyConfig) -> World {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open_path(&dir.path().join("t.db"))
        .await
        .expect("store");
    for i in 0..accounts {
        let mut new = NewAccount::new(AccountKind::Whatsapp, format!("wa {i}"));
        new.desired_running = false;
        store
            .add_account(new.validate().expect("valid"))
            .await
            .expect("add");
    }
    let sup = supervisor_with(&store, dir.path(), &peer, policy);
    sup.startup(None, None).await.expect("startup");
    World {
        dir,
        store,
        sup,
        peer,
    }
}

fn state(sup: &Supervisor, id: AccountId) -> State {
    sup.views()
        .into_iter()
        .find(|v| v.id == id)
        .map(|v| v.state)
        .expect("view")
}

async fn wait_for(
    sup: &Supervisor,
    id: AccountId,
    within: Duration,
    want: impl Fn(&State) -> bool,
) -> State {
    let start = Instant::now();
    loop {
        let s = state(sup, id);
        if want(&s) {
            return s;
        }
        assert!(start.elapsed() < within, "account {id:?} stuck in {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the account to need the operator and says why.
async fn needs_operator(sup: &Supervisor, id: AccountId, within_s: u64) -> Reason {
    match wait_for(sup, id, Duration::from_secs(within_s), |s| {
        s.kind() == StateKind::NeedsOperator
    })
    .await
    {
        State::NeedsOperator { reason } => reason,
        other => panic!("{other:?}"),
    }
}

/// Asks for a link and returns the first code of that kind the client shows for `id` (a client
/// pairing by phone code shows QR codes too).
async fn requested_code(sup: &Supervisor, id: AccountId, mode: LinkMode) -> LinkCode {
    let mut updates = sup.subscribe();
    let kind = std::mem::discriminant(&mode);
    sup.request_link(id, mode).await.expect("link");
    tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match updates.recv().await {
                Ok(Update::Link { account, code })
                    if account == id && std::mem::discriminant(&code.mode) == kind =>
                {
                    return code;
                }
                Ok(_) => {}
                Err(e) => panic!("updates: {e}"),
            }
        }
    })
    .await
    .expect("a linking code in time")
}

/// Links account `id` by QR: asks for a link, takes the first code the client shows, lets the
/// peer "scan" it, waits for Connected. Returns the new number.
async fn link(w: &World, id: AccountId) -> String {
    let code = requested_code(&w.sup, id, LinkMode::Qr).await;
    assert_eq!(state(&w.sup, id).kind(), StateKind::Linking);
    assert!(code.code.starts_with("2@"), "a pairing ref leads the code");
    let number = w.peer.scan(&code.code).expect("scan");
    wait_for(&w.sup, id, Duration::from_secs(60), |s| {
        *s == State::Connected
    })
    .await;
    number
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_by_qr_then_a_restart_reconnects_with_no_new_qr() {
    let peer = Peer::start("127.0.0.1:0", Config::default())
        .await
        .expect("peer");
    let w = world(peer.clone(), 1).await;
    let id = AccountId(1);
    let number = link(&w, id).await;
    assert_eq!(peer.live_sessions(&number), 1);
    let s = peer.stats();
    assert_eq!((s.registrations, s.pairings), (1, 1));
    let db = device::path(w.dir.path(), id);
    assert!(db.exists(), "credentials stored");

    // Restart Lifeline: a new supervisor over the same data dir logs in with the stored keys.
    w.sup.shutdown().await;
    let sup = supervisor(&w.store, w.dir.path(), &peer);
    let mut updates = sup.subscribe();
    sup.startup(None, None).await.expect("startup");
    wait_for(&sup, id, Duration::from_secs(30), |s| {
        *s == State::Connected
    })
    .await;
    while let Ok(u) = updates.try_recv() {
        assert!(
            !matches!(u, Update::Link { .. }),
            "no new QR after a restart"
        );
    }
    let s = peer.stats();
    assert_eq!(s.registrations, 1, "no second registration");
    assert!(
        s.ik >= 1,
        "the reconnect used IK with the cached server key: {s:?}"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_and_logged_out_wait_for_the_operator_and_logout_wipes_the_keys() {
    let peer = Peer::start("127.0.0.1:0", Config::default())
        .await
        .expect("peer");
    let w = world(peer.clone(), 2).await;
    let (a, b) = (AccountId(1), AccountId(2));
    let na = link(&w, a).await;
    let nb = link(&w, b).await;

    assert_eq!(peer.inject(&na, Fault::Replaced), 1);
    assert_eq!(needs_operator(&w.sup, a, 20).await, Reason::Replaced);

    assert_eq!(peer.inject(&nb, Fault::LoggedOut), 1);
    assert_eq!(needs_operator(&w.sup, b, 20).await, Reason::LoggedOut);
    assert!(
        !device::path(w.dir.path(), b).exists(),
        "keys deleted after logout"
    );

    // Never retried: no new session shows up while we watch a few backoff periods.
    let logins = peer.stats().logins;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(peer.stats().logins, logins);
    assert_eq!(peer.live_sessions(&na) + peer.live_sessions(&nb), 0);
    w.sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_pauses_until_expiry_restart_required_reconnects_and_outdated_needs_an_update() {
    let peer = Peer::start("127.0.0.1:0", Config::default())
        .await
        .expect("peer");
    let w = world(peer.clone(), 1).await;
    let id = AccountId(1);
    let number = link(&w, id).await;

    // Restart required: reconnects at once (IK), no operator needed.
    let logins = peer.stats().logins;
    assert_eq!(peer.inject(&number, Fault::RestartRequired), 1);
    let start = Instant::now();
    wait_for(&w.sup, id, Duration::from_secs(20), |_| {
        peer.stats().logins > logins
    })
    .await;
    wait_for(&w.sup, id, Duration::from_secs(20), |s| {
        *s == State::Connected
    })
    .await;
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "reconnected promptly"
    );

    // Temporary ban: paused until the expiry the server gave, then back.
    assert_eq!(
        peer.inject(
            &number,
            Fault::Banned {
                code: 101,
                expire_secs: 3
            }
        ),
        1
    );
    let s = wait_for(&w.sup, id, Duration::from_secs(20), |s| {
        s.kind() == StateKind::Paused
    })
    .await;
    let State::Paused { until, .. } = s else {
        panic!("{s:?}")
    };
    let left = until.expect("a ban with an expiry") - chrono::Utc::now();
    assert!(
        left <= chrono::Duration::seconds(4),
        "paused until the ban's expiry: {left}"
    );
    wait_for(&w.sup, id, Duration::from_secs(30), |s| {
        *s == State::Connected
    })
    .await;

    // Outdated: waits for the operator.
    assert_eq!(peer.inject(&number, Fault::Outdated), 1);
    assert_eq!(needs_operator(&w.sup, id, 20).await, Reason::Outdated);
    w.sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_codes_running_out_leave_linking_with_qr_expired() {
    let peer = Peer::start("127.0.0.1:0", Config { qr_refs: 0 })
        .await
        .expect("peer");
    let w = world(peer, 1).await;
    let id = AccountId(1);
    // A new account waits to be linked (not-linked) until the link is asked for.
    assert_eq!(
        state(&w.sup, id),
        State::NeedsOperator {
            reason: Reason::NotLinked
        }
    );
    w.sup.request_link(id, LinkMode::Qr).await.expect("link");
    let expired = State::NeedsOperator {
        reason: Reason::QrExpired,
    };
    wait_for(&w.sup, id, Duration::from_secs(30), |s| *s == expired).await;
    w.sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_accounts_dropped_together_all_reconnect_within_the_pacing_limit() {
    const N: usize = 50;
    let peer = Peer::start("127.0.0.1:0", Config::default())
        .await
        .expect("peer");
    let started_linking = Instant::now();
    // Pacing of 10/s (burst 5) rather than the default 2/s: the same rule, a shorter wait.
    let mut paced = policy();
    paced.pacing.rate_per_s = 10.0;
    paced.pacing.burst = 5;
    let w = world_with(peer.clone(), N, paced).await;
    for i in 1..=N as i64 {
        link(&w, AccountId(i)).await;
    }
    let linked_in = started_linking.elapsed();
    let before = peer.login_times().len();
    let started = Instant::now();
    assert_eq!(peer.inject_all(Fault::Close), N);
    while peer.login_times().len() < before + N {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "not all accounts logged in again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for i in 1..=N as i64 {
        wait_for(&w.sup, AccountId(i), Duration::from_secs(90), |s| {
            *s == State::Connected
        })
        .await;
    }
    let recovered_in = started.elapsed();
    let logins: Vec<Instant> = peer.login_times()[before..].to_vec();
    assert_eq!(logins.len(), N, "exactly one new login per account");
    // No 1-second window holds more than burst + rate logins. The peer stamps a login when its
    // handshake ends, and handshakes run side by side on two loaded cores, so two logins the pacer
    // let go a second apart can reach the peer closer together: the window allows that skew
    // (up to half a second), still far below the fifty an unpaced reconnect would bring.
    let p = paced.pacing;
    const SKEW_S: f64 = 0.5;
    let limit = p.burst as usize + (p.rate_per_s * (1.0 + SKEW_S)).ceil() as usize;
    for (i, t) in logins.iter().enumerate() {
        let in_window = logins[i..]
            .iter()
            .filter(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= limit,
            "{in_window} logins within 1 s (limit {limit})"
        );
    }
    // And pacing, not anything else, set the pace: (N - burst) / rate seconds at least.
    let floor = Duration::from_secs_f64((N as f64 - f64::from(p.burst)) / p.rate_per_s);
    assert!(
        recovered_in >= floor.mul_f64(0.9),
        "{recovered_in:?} < {floor:?}"
    );
    println!(
        "{N} accounts linked in {linked_in:?}, recovered in {recovered_in:?} (pacing floor {floor:?})"
    );
    w.sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_by_phone_code_end_to_end() {
    let peer = Peer::start("127.0.0.1:0", Config::default())
        .await
        .expect("peer");
    let w = world(peer.clone(), 1).await;
    let id = AccountId(1);
    let phone = "+62 812 3456 7890";
    let normalized = lifeline_engine::model::normalize_phone(phone).expect("phone");
    let mode = LinkMode::PhoneCode {
        phone: normalized.clone(),
    };
    let code = requested_code(&w.sup, id, mode).await;
    assert_eq!(code.code.len(), 8, "an 8-character code");
    assert_eq!(code.mode, LinkMode::PhoneCode { phone: normalized });
    peer.enter_code(phone, &code.code)
        .expect("typed on the phone");
    wait_for(&w.sup, id, Duration::from_secs(60), |s| {
        *s == State::Connected
    })
    .await;
    assert_eq!(
        peer.live_sessions("6281234567890"),
        1,
        "linked as the phone's own number"
    );
    assert_eq!(peer.stats().pairings, 1);
    // The card can say which phone this is: the number as WhatsApp paired it, kept in the store.
    let deadline = Instant::now() + Duration::from_secs(10);
    while w.sup.view(id).and_then(|v| v.identity).is_none() {
        assert!(Instant::now() < deadline, "no identity reported");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let identity = w.sup.view(id).and_then(|v| v.identity).expect("identity");
    assert_eq!(identity.id, "+6281234567890");
    w.sup.flush().await;
    assert_eq!(
        w.sup.store().account(id).await.expect("stored").identity,
        Some(identity)
    );
    w.sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_that_stops_answering_is_found_within_keepalive_and_pong_timeout() {
    let peer = Peer::start("127.0.0.1:0", Config::default())
        .await
        .expect("peer");
    let mut p = policy();
    p.connection.keepalive_ms = 1_000;
    p.connection.pong_timeout_ms = 1_000;
    let w = world_with(peer.clone(), 1, p).await;
    let id = AccountId(1);
    let number = link(&w, id).await;
    // Looks connected (the socket is open) but the server answers nothing, pings included.
    assert_eq!(peer.inject(&number, Fault::Stall), 1);
    let started = Instant::now();
    let s = wait_for(&w.sup, id, Duration::from_secs(30), |s| {
        s.kind() != StateKind::Connected
    })
    .await;
    let found = started.elapsed();
    assert!(
        matches!(
            s,
            State::Backoff {
                reason: Reason::Stalled,
                ..
            }
        ),
        "{s:?}"
    );
    // The next tick, the pong timeout, the client's bounded stop (3/4 of the close timeout),
    // and half a second for a test build on a busy machine.
    let bound = Duration::from_millis(p.connection.keepalive_ms + p.connection.pong_timeout_ms)
        + Duration::from_millis(p.connection.close_timeout_ms + 500);
    assert!(found <= bound, "found after {found:?}, bound {bound:?}");
    // And back on a fresh session.
    wait_for(&w.sup, id, Duration::from_secs(30), |s| {
        *s == State::Connected
    })
    .await;
    assert_eq!(peer.live_sessions(&number), 1);
    w.sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_short_waits_for_the_operator_and_leaves_no_device_store() {
    let peer = Peer::start("127.0.0.1:0", Config::default())
        .await
        .expect("peer");
    let w = world(peer.clone(), 1).await;
    let id = AccountId(1);
    let db = device::path(w.dir.path(), id);

    // The service goes away while the QR is on screen: no new registration by itself.
    requested_code(&w.sup, id, LinkMode::Qr).await;
    assert!(db.exists(), "the linking client has its store");
    assert_eq!(peer.drop_linking(), 1);
    assert_eq!(needs_operator(&w.sup, id, 20).await, Reason::PairingFailed);
    assert!(!db.exists(), "an unfinished link leaves no device store");
    let registrations = peer.stats().registrations;
    assert_eq!(registrations, 1);

    // The phone scans, but the first login is refused (401): the keys it just got are useless
    // and deleted; the account waits for a new link, never registering again by itself.
    let code = requested_code(&w.sup, id, LinkMode::Qr).await;
    let number = peer.scan(&code.code).expect("scan");
    // The linking connection finishes; the login that follows it is refused.
    peer.remove_device(&number);
    assert_eq!(needs_operator(&w.sup, id, 30).await, Reason::LoggedOut);
    assert_eq!(peer.stats().pairings, 1, "the link itself went through");
    assert!(!db.exists(), "keys refused on the first login are deleted");
    // Watch a few backoff periods: nothing dials, nothing registers.
    let before = peer.stats();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = peer.stats();
    assert_eq!(
        after.registrations, 2,
        "one registration per operator's link"
    );
    assert_eq!(
        (after.connections, after.logins),
        (before.connections, before.logins)
    );
    assert_eq!(
        state(&w.sup, id),
        State::NeedsOperator {
            reason: Reason::LoggedOut
        }
    );
    w.sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_login_is_waited_for_within_the_connect_timeout_and_no_longer() {
    let peer = Peer::start("127.0.0.1:0", Config::default())
        .await
        .expect("peer");
    let mut p = policy();
    p.connection.keepalive_ms = 500;
    p.connection.pong_timeout_ms = 500;
    p.connection.connect_timeout_ms = 3_000;
    let w = world_with(peer.clone(), 1, p).await;
    let id = AccountId(1);
    let number = link(&w, id).await;

    // The login's answer takes longer than keepalive + pong timeout but less than the connect
    // timeout: a slow login, not a dead session.
    peer.set_login_delay(Duration::from_millis(1_500));
    let logins = peer.stats().logins;
    assert_eq!(peer.inject(&number, Fault::Close), 1);
    wait_for(&w.sup, id, Duration::from_secs(30), |_| {
        peer.stats().logins > logins
    })
    .await;
    wait_for(&w.sup, id, Duration::from_secs(30), |s| {
        *s == State::Connected
    })
    .await;
    w.sup.flush().await;
    let events = w
        .store
        .account_history(id, chrono::Utc::now() - chrono::Duration::hours(1))
        .await
        .expect("history")
        .events;
    assert!(events.len() >= 4, "the drop and the reconnect: {events:?}");
    assert!(
        !events.iter().any(|e| matches!(
            e.to,
            State::Backoff {
                reason: Reason::Stalled | Reason::Timeout,
                ..
            }
        )),
        "{events:?}"
    );

    // A handshake that never comes within the connect timeout ends the attempt as a timeout
    // (the library alone would wait far longer).
    peer.set_login_delay(Duration::ZERO);
    peer.set_handshake_delay(Duration::from_secs(30));
    assert_eq!(peer.inject(&number, Fault::Close), 1);
    let started = Instant::now();
    let s = wait_for(&w.sup, id, Duration::from_secs(30), |s| {
        matches!(
            s,
            State::Backoff {
                reason: Reason::Timeout,
                ..
            }
        )
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{s:?} after {:?}",
        started.elapsed()
    );
    peer.calm();
    wait_for(&w.sup, id, Duration::from_secs(30), |s| {
        *s == State::Connected
    })
    .await;
    w.sup.shutdown().await;
}

/// Waits until `sup` runs `id` (its instance won the account's lease).
async fn until_supervised(sup: &Supervisor, id: AccountId, within: Duration, what: &str) {
    let start = Instant::now();
    while !sup.supervised().contains(&id) {
        assert!(start.elapsed() < within, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A linked number moves between two instances of a fleet with no new QR scan. Each instance
/// runs the real fleet path: its keeper, the supervisor following its leases, writes fenced by
/// epoch, and the device store copied into the fleet store (sealed with the fleet key) when the
/// number connects. Instance a links the number and dies; once a's lease has expired, b takes
/// it over, puts the copy in place in its own (empty) data dir and logs in. The peer sees a
/// second login and no second registration, and no QR code is shown on b. The dead owner can
/// no longer overwrite the stored keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linked_number_fails_over_to_another_instance_with_no_new_registration() {
    use lifeline_engine::store::Fence;
    use lifeline_fleet::cluster::{self, PASSWORD};
    use lifeline_fleet::{Error as FleetError, FleetKey, FleetStore, Keeper, KeeperConfig};

    let Some(pg) = cluster::for_test() else {
        return;
    };
    let fleet = FleetStore::connect(&pg.database("fleet").expect("db"), Some(PASSWORD))
        .await
        .expect("fleet store");
    let key = FleetKey::generate().expect("key");
    fleet.check_key(&key).await.expect("the fleet's key");
    let shared = Store::fleet(&fleet);
    let mut new = NewAccount::new(AccountKind::Whatsapp, "wa 0");
    new.desired_running = false;
    let id = shared.add_account(new).await.expect("account").id;
    let ttl = Duration::from_secs(2);
    let peer = Peer::start("127.0.0.1:0", Config::default())
        .await
        .expect("peer");
    // One instance: its own data dir, its keeper, its supervisor following the leases.
    let join = |dir: tempfile::TempDir| {
        let (fleet, shared, key, peer) = (fleet.clone(), shared.clone(), key.clone(), peer.clone());
        async move {
            let instance = fleet.register(None).await.expect("register");
            let fence = Arc::new(Fence::new(instance.clone()).with_key(Some(key)));
            let store = shared.fenced(fence.clone());
            let sup = supervisor(&store, dir.path(), &peer);
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let keeper = Keeper::start(
                instance.clone(),
                KeeperConfig {
                    ttl,
                    ..KeeperConfig::default()
                },
                tx,
            );
            tokio::spawn({
                let sup = sup.clone();
                async move { sup.follow_leases(rx).await }
            });
            let w = World {
                dir,
                store,
                sup,
                peer,
            };
            (w, keeper, fence)
        }
    };
    let (a, a_keeper, a_fence) = join(tempfile::tempdir().expect("tempdir")).await;
    until_supervised(
        &a.sup,
        id,
        Duration::from_secs(10),
        "a never took the account",
    )
    .await;
    let number = link(&a, id).await;
    // Connected: the device store goes to the fleet store, sealed, under a's lease.
    let start = Instant::now();
    while fleet
        .device_store(id.0, &key)
        .await
        .expect("read")
        .is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no device store copied"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let a_lease = a_fence.lease(id).expect("a's lease");
    let before = peer.stats();
    assert_eq!(before.registrations, 1);

    // Instance a dies: its keeper stops renewing, its connection goes with it.
    a_keeper.abort();
    a.sup.shutdown().await;

    // Instance b, with an empty data dir, takes the account over once a's lease has expired.
    let (b, b_keeper, b_fence) = join(tempfile::tempdir().expect("tempdir")).await;
    assert!(!device::path(b.dir.path(), id).exists());
    let mut updates = b.sup.subscribe();
    until_supervised(
        &b.sup,
        id,
        Duration::from_secs(15),
        "b never took the account",
    )
    .await;
    let b_lease = b_fence.lease(id).expect("b's lease");
    assert_eq!(b_lease.epoch, a_lease.epoch + 1);
    wait_for(&b.sup, id, Duration::from_secs(30), |s| {
        *s == State::Connected
    })
    .await;
    assert!(device::path(b.dir.path(), id).exists());
    while let Ok(u) = updates.try_recv() {
        assert!(
            !matches!(u, Update::Link { .. }),
            "no QR on the other instance"
        );
    }
    let after = peer.stats();
    assert_eq!(after.registrations, 1, "no second registration");
    assert!(after.logins > before.logins, "{after:?}");
    assert_eq!(peer.live_sessions(&number), 1);
    // The shared store says so too, once b's writer has recorded it.
    let start = Instant::now();
    while b.store.account(id).await.expect("account").state != State::Connected {
        assert!(start.elapsed() < Duration::from_secs(5), "not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The dead owner's lease is stale: it cannot overwrite the keys b now resumes from.
    let e = a_fence
        .instance()
        .put_device_store(a_lease, &key, b"SQLite format 3\0stale")
        .await
        .expect_err("stale");
    assert!(matches!(e, FleetError::Stale { .. }), "{e}");
    drop(b_keeper);
    b.sup.shutdown().await;
}
