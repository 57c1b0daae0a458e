//! TikTok creators watched by the supervisor with the real TikTok connector, against the offline
//! fake TikTok in lifeline-sim (room info, alive checks, session page, fetch and the live
//! WebSocket, all on 127.0.0.1). Every live is recorded with the counts the fake delivered,
//! polling stays within its budget, lives survive a restart, and the autorecover rows hold.
//! Real sockets mean real time: tests wait for conditions with generous bounds, never a fixed
//! sleep before asserting.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeline_engine::clock::Clock;
use lifeline_engine::connector::{Connectors, RemoteSession};
use lifeline_engine::export::{ExportFilter, ExportKind, export_csv};
use lifeline_engine::model::{AccountChange, AccountId, AccountKind, NewAccount};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::policy::alerts::Alert;
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::{Reason, State, StateKind};
use lifeline_engine::store::Store;
use lifeline_engine::supervisor::{Supervisor, SupervisorDeps, Update};
use lifeline_sim::tiktok::{FakeTikTok, LiveEvent, RequestKind, Totals};
use lifeline_tiktok::TikTokConnector;
use lifeline_tiktok::api::Endpoints;
use lifeline_tiktok::pace::Budget;

mod common;
use common::{fast_policy, until};

const POLL: Duration = Duration::from_millis(1_000);

/// The shared fast policy, with room for TikTok's heartbeat (the feed's silence limit counts
/// from it) and restores of a whole fleet at once.
fn policy() -> PolicyConfig {
    let mut p = fast_policy();
    p.connection.connect_timeout_ms = 3_000;
    p.connection.keepalive_ms = 300;
    p.connection.pong_timeout_ms = 1_000;
    p.connection.close_timeout_ms = 1_000;
    p.autorecover.concurrency = 200;
    p
}

fn budget(requests_per_minute: u32) -> Budget {
    Budget {
        requests_per_minute,
        poll_interval: POLL,
        backoff: Duration::from_millis(1_500),
        max_backoff: Duration::from_secs(5),
    }
}

struct World {
    tmp: tempfile::TempDir,
    store: Store,
    fake: FakeTikTok,
    budget: Budget,
}

impl World {
    /// A store with one TikTok account per creator (all running unless `stopped` names them),
    /// and the fake knowing every creator.
    async fn new(creators: &[&str], budget: Budget) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fake = FakeTikTok::start().await.expect("fake tiktok");
        let store = Store::open_path(&tmp.path().join("t.db"))
            .await
            .expect("store");
        for user in creators {
            fake.add_creator(user, &format!("Toko {user}"));
            store
                .add_account(
                    NewAccount::new(AccountKind::Tiktok, format!("watch {user}"))
                        .with_url(format!("@{user}")),
                )
                .await
                .expect("add");
        }
        Self {
            tmp,
            store,
            fake,
            budget,
        }
    }

    async fn supervise(&self) -> (Supervisor, TikTokConnector) {
        let connector = TikTokConnector::new(
            Endpoints::at(url::Url::parse(&self.fake.url()).expect("url")),
            self.budget,
        )
        .expect("connector")
        .report_every(Duration::from_millis(200));
        let sup = Supervisor::new(SupervisorDeps {
            store: self.store.clone(),
            connectors: Connectors::new().with(AccountKind::Tiktok, Arc::new(connector.clone())),
            secrets: Arc::new(MemorySecretStore::default()),
            clock: Clock::System,
            policy: policy(),
            jitter_seed: Some(5),
        });
        sup.startup(None, None).await.expect("startup");
        (sup, connector)
    }

    async fn lives(&self, id: AccountId) -> Vec<RemoteSession> {
        self.store.remote_sessions(id, 100).await.expect("lives")
    }
}

fn state(sup: &Supervisor, id: AccountId) -> State {
    sup.view(id).map(|v| v.state).expect("view")
}

/// Waits until the store holds the counts the fake delivered to `id`'s open live: everything
/// sent so far has been read off the socket and reported.
async fn reported(w: &World, id: AccountId, room: &str) {
    let start = Instant::now();
    loop {
        let want = w.fake.delivered(room).expect("room");
        let open = w.store.open_remote_sessions().await.expect("open");
        if open
            .get(&id)
            .is_some_and(|s| s.key == room && totals(s) == want)
        {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "counts of {room} never reported: {:?} vs {want:?}",
            open.get(&id)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn totals(s: &RemoteSession) -> Totals {
    let m = |n: &str| s.metric(n).unwrap_or(-1);
    Totals {
        peak_viewers: m("peak_viewers"),
        likes: m("likes"),
        comments: m("comments"),
        gifts: m("gifts"),
        follows: m("follows"),
    }
}

/// A small deterministic generator: the scenario is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// Sends a few of each event to a live whose feed is open.
fn broadcast(fake: &FakeTikTok, user: &str, rng: &mut Lcg) {
    let mut likes = 0;
    for _ in 0..(2 + rng.next(4)) {
        fake.send(user, LiveEvent::Viewers(10 + rng.next(500) as i64));
        likes += 1 + rng.next(30) as i64;
        fake.send(
            user,
            LiveEvent::Likes {
                count: 3,
                total: likes,
            },
        );
        fake.send(user, LiveEvent::Comment("halo kak".into()));
        fake.send(
            user,
            LiveEvent::Gift {
                repeat_count: 1 + rng.next(5) as i64,
                streak: rng.next(2) == 0,
            },
        );
        if rng.next(2) == 0 {
            fake.send(user, LiveEvent::Follow);
        }
        fake.send(user, LiveEvent::Share);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_creators_thirty_lives_each_recorded_with_its_counts_within_the_budget() {
    let users: Vec<String> = (0..100).map(|i| format!("creator{i:03}")).collect();
    let refs: Vec<&str> = users.iter().map(String::as_str).collect();
    // 100 creators every second is 100 requests/s; the budget of 150/s covers them and joins.
    let w = World::new(&refs, budget(9_000)).await;
    let (sup, connector) = w.supervise().await;
    until(Duration::from_secs(20), "every creator waiting", || {
        sup.views()
            .iter()
            .all(|v| v.state == State::Waiting { reason: None })
    })
    .await;
    let mut rng = Lcg(42);
    let mut live: Vec<(usize, String, Instant)> = Vec::new();
    let mut picked = std::collections::BTreeSet::new();
    while picked.len() < 30 {
        picked.insert(rng.next(100) as usize);
    }
    for &i in &picked {
        let room = w.fake.go_live(&users[i]);
        live.push((i, room, Instant::now()));
        tokio::time::sleep(Duration::from_millis(rng.next(100))).await;
    }
    for (i, _, _) in &live {
        let user = users[*i].clone();
        until(Duration::from_secs(20), "joined", || {
            w.fake.open_feeds(&user) == 1
        })
        .await;
        broadcast(&w.fake, &user, &mut rng);
    }
    // The feed is ordered: every event sent above reaches the account before the end does.
    for (i, _, _) in &live {
        w.fake.end_live(&users[*i]);
    }
    for (i, _, _) in &live {
        let id = AccountId(*i as i64 + 1);
        until(Duration::from_secs(20), "back to waiting", || {
            state(&sup, id) == State::Waiting { reason: None }
        })
        .await;
    }
    sup.flush().await;
    for (i, room, _) in &live {
        let id = AccountId(*i as i64 + 1);
        let lives = w.lives(id).await;
        assert_eq!(lives.len(), 1, "{}: {lives:?}", users[*i]);
        let l = &lives[0];
        assert_eq!(&l.key, room);
        assert_eq!(l.end.as_deref(), Some("ended"));
        assert!(l.ended_at.is_some());
        assert_eq!(
            totals(l),
            w.fake.delivered(room).expect("room"),
            "{}: joined {} times",
            users[*i],
            w.fake.joins(&users[*i])
        );
        assert_eq!(w.fake.max_open_feeds(&users[*i]), 1);
    }
    // Creators that never went live have no lives.
    for i in (0..100).filter(|i| !picked.contains(i)) {
        assert!(w.lives(AccountId(i as i64 + 1)).await.is_empty());
    }
    let requests = w.fake.requests();
    // Polling never above its budget: evenly spaced slots, so any second holds at most the
    // budget's share plus the one on its edge.
    let per_second = 9_000 / 60;
    let times: Vec<Instant> = requests.iter().map(|r| r.at).collect();
    for (k, t) in times.iter().enumerate() {
        let in_window = times[k..]
            .iter()
            .take_while(|u| u.duration_since(*t) < Duration::from_secs(1))
            .count();
        assert!(
            in_window <= per_second + 1,
            "{in_window} requests within a second"
        );
    }
    // No start missed for longer than one poll: the first room info that saw each live was
    // asked at most one poll interval (plus its jitter and a scheduling margin) after it began.
    for (i, _, began) in &live {
        let seen = requests
            .iter()
            .filter(|r| r.kind == RequestKind::RoomInfo && r.answered_live)
            .filter(|r| r.user.as_deref() == Some(users[*i].as_str()))
            .map(|r| r.at)
            .min()
            .expect("seen live");
        let after = seen.duration_since(*began);
        assert!(
            after <= POLL + POLL / 10 + Duration::from_millis(500),
            "{} seen {after:?} after it went live",
            users[*i]
        );
    }
    assert!(w.fake.heartbeats() > 0 && w.fake.acks() > 0);
    sup.shutdown().await;
    // The connector's own count agrees with the fake's log. It counts a request as it sends it,
    // so a poll that was on its way when the supervisor stopped may never have been logged.
    let (sent, limited) = connector.request_counts();
    assert_eq!(limited, 0);
    let logged = w.fake.requests().len();
    assert!(
        logged <= sent as usize && sent as usize <= logged + 2,
        "sent {sent}, logged {logged}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_lives_continues_them_and_closes_the_one_that_ended_meanwhile() {
    let users = ["mawar", "melati", "anggrek"];
    let w = World::new(&users, budget(6_000)).await;
    w.store.set_autorecover(true).await.expect("autorecover");
    let (sup, _) = w.supervise().await;
    let rooms: Vec<String> = users.iter().map(|u| w.fake.go_live(u)).collect();
    let mut rng = Lcg(7);
    for (i, u) in users.iter().enumerate() {
        until(Duration::from_secs(15), "joined", || {
            w.fake.open_feeds(u) == 1
        })
        .await;
        broadcast(&w.fake, u, &mut rng);
        reported(&w, AccountId(i as i64 + 1), &rooms[i]).await;
    }
    sup.shutdown().await;
    // While Lifeline is down, one live ends.
    w.fake.end_live("anggrek");
    let open = w.store.open_remote_sessions().await.expect("open");
    assert_eq!(open.len(), 3, "{open:?}");

    let (sup, _) = w.supervise().await;
    for u in ["mawar", "melati"] {
        until(Duration::from_secs(15), "joined again", || {
            w.fake.joins(u) == 2
        })
        .await;
        until(Duration::from_secs(15), "feed open", || {
            w.fake.open_feeds(u) == 1
        })
        .await;
        broadcast(&w.fake, u, &mut rng);
        w.fake.end_live(u);
    }
    until(Duration::from_secs(15), "all waiting", || {
        (1..=3).all(|i| state(&sup, AccountId(i)) == State::Waiting { reason: None })
    })
    .await;
    sup.flush().await;
    for (i, u) in users.iter().enumerate() {
        let lives = w.lives(AccountId(i as i64 + 1)).await;
        assert_eq!(
            lives.len(),
            1,
            "{u}: one live, continued, not two: {lives:?}"
        );
        assert_eq!(lives[0].key, rooms[i]);
        if *u == "anggrek" {
            assert_eq!(lives[0].end.as_deref(), Some("ended-while-away"));
        } else {
            assert_eq!(lives[0].end.as_deref(), Some("ended"));
            assert_eq!(
                totals(&lives[0]),
                w.fake.delivered(&rooms[i]).expect("room"),
                "{u}"
            );
        }
    }
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autorecover_rows_monitoring_off_stays_off_on_without_autorecover_waits_for_a_person_on_with_it_watches()
 {
    let users = ["off", "onheld", "onwatched"];
    let w = World::new(&users, budget(6_000)).await;
    // Monitoring off for the first creator.
    w.store
        .set_desired_running(AccountId(1), false)
        .await
        .expect("off");
    for u in users {
        w.fake.go_live(u);
    }
    // Row 2: monitoring on, autorecover off → after a restart it is stopped, saying why, and
    // TikTok hears nothing from it.
    w.store
        .set_autorecover(false)
        .await
        .expect("autorecover off");
    let (sup, _) = w.supervise().await;
    // Startup hands each account task its decision; the tasks apply them right after.
    let held = State::Stopped {
        reason: Some(Reason::AutorecoverOff),
    };
    until(Duration::from_secs(5), "stopped, saying why", || {
        [2, 3].iter().all(|&id| state(&sup, AccountId(id)) == held)
    })
    .await;
    assert_eq!(state(&sup, AccountId(1)), State::Stopped { reason: None });
    sup.shutdown().await;
    assert!(w.fake.requests().is_empty(), "{:?}", w.fake.requests());

    // Row 3: monitoring on, autorecover on → it checks who is live and joins by itself.
    // The held account was desired all along; the stopped one stays off.
    w.store.set_autorecover(true).await.expect("autorecover on");
    let (sup, _) = w.supervise().await;
    until(Duration::from_secs(15), "joined without anyone", || {
        w.fake.open_feeds("onwatched") == 1 && w.fake.open_feeds("onheld") == 1
    })
    .await;
    assert_eq!(state(&sup, AccountId(1)), State::Stopped { reason: None });
    assert_eq!(w.fake.joins("off"), 0);
    assert!(
        w.fake
            .requests()
            .iter()
            .all(|r| r.user.as_deref() != Some("off")),
        "the account that is off was polled"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_holds_every_tiktok_account_says_so_and_lifts() {
    let users = ["a1", "a2", "a3", "a4"];
    let w = World::new(&users, budget(6_000)).await;
    let (sup, connector) = w.supervise().await;
    until(Duration::from_secs(15), "waiting", || {
        (1..=4).all(|i| state(&sup, AccountId(i)) == State::Waiting { reason: None })
    })
    .await;
    for limit in [
        lifeline_sim::tiktok::Limit::Http429,
        lifeline_sim::tiktok::Limit::Captcha,
    ] {
        w.fake.set_limit(limit);
        let held = State::Waiting {
            reason: Some(Reason::RateLimited),
        };
        until(
            Duration::from_secs(15),
            "every card says rate-limited",
            || (1..=4).all(|i| state(&sup, AccountId(i)) == held),
        )
        .await;
        // Held: no account polls on until the back-off ends (at most the calls in flight).
        let before = w.fake.requests().len();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(w.fake.requests().len() <= before + 4);
        w.fake.set_limit(lifeline_sim::tiktok::Limit::Off);
        until(Duration::from_secs(20), "waiting normally again", || {
            (1..=4).all(|i| state(&sup, AccountId(i)) == State::Waiting { reason: None })
        })
        .await;
    }
    assert!(connector.request_counts().1 >= 2);
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_feed_reconnects_into_the_same_live_and_a_blocked_device_pauses() {
    let w = World::new(&["kopi", "teh"], budget(6_000)).await;
    let (sup, _) = w.supervise().await;
    let room = w.fake.go_live("kopi");
    until(Duration::from_secs(15), "joined", || {
        w.fake.open_feeds("kopi") == 1
    })
    .await;
    let mut rng = Lcg(3);
    broadcast(&w.fake, "kopi", &mut rng);
    // What was read before the feed dropped is kept (what was still in flight is lost, as
    // with TikTok itself).
    reported(&w, AccountId(1), &room).await;
    w.fake.drop_feeds("kopi");
    until(Duration::from_secs(15), "joined again", || {
        w.fake.joins("kopi") == 2 && w.fake.open_feeds("kopi") == 1
    })
    .await;
    broadcast(&w.fake, "kopi", &mut rng);
    w.fake.end_live("kopi");
    until(Duration::from_secs(15), "waiting", || {
        state(&sup, AccountId(1)) == State::Waiting { reason: None }
    })
    .await;
    sup.flush().await;
    let lives = w.lives(AccountId(1)).await;
    assert_eq!(lives.len(), 1, "{lives:?}");
    assert_eq!(totals(&lives[0]), w.fake.delivered(&room).expect("room"));
    assert_eq!(w.fake.max_open_feeds("kopi"), 1);

    w.fake.block_devices(true);
    w.fake.go_live("teh");
    until(Duration::from_secs(15), "paused as blocked", || {
        state(&sup, AccountId(2))
            == State::Paused {
                until: None,
                reason: Reason::Blocked,
            }
    })
    .await;
    let polls = w.fake.requests().len();
    tokio::time::sleep(POLL * 2).await;
    assert!(
        w.fake
            .requests()
            .iter()
            .skip(polls)
            .all(|r| r.user.as_deref() != Some("teh")),
        "a blocked account kept calling"
    );
    sup.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_creator_needs_a_person_a_live_is_told_and_the_lives_csv_parses_back() {
    let w = World::new(&["ada"], budget(6_000)).await;
    w.store
        .add_account(NewAccount::new(AccountKind::Tiktok, "ghost").with_url("@nobody_here"))
        .await
        .expect("add");
    let change = AccountChange {
        notify_live: Some(true),
        ..AccountChange::default()
    };
    w.store
        .update_account(AccountId(1), change)
        .await
        .expect("notify");
    let (sup, _) = w.supervise().await;
    let mut updates = sup.subscribe();
    until(Duration::from_secs(15), "needs a person", || {
        state(&sup, AccountId(2))
            == State::NeedsOperator {
                reason: Reason::NotFound,
            }
    })
    .await;
    until(Duration::from_secs(15), "waiting for a live", || {
        state(&sup, AccountId(1)) == State::Waiting { reason: None }
    })
    .await;
    let room = w.fake.go_live("ada");
    until(Duration::from_secs(15), "joined", || {
        w.fake.open_feeds("ada") == 1
    })
    .await;
    // The account asked to hear of its creator's lives: one alert says so.
    let told = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match updates.recv().await {
                Ok(Update::Alerts(alerts)) => {
                    if let Some(a) = alerts
                        .into_iter()
                        .find(|a| matches!(a, Alert::WentLive { .. }))
                    {
                        return a;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("updates ended: {e}"),
            }
        }
    })
    .await
    .expect("went-live alert");
    assert_eq!(
        told,
        Alert::WentLive {
            account: AccountId(1),
            name: "watch ada".into()
        }
    );
    w.fake.send("ada", LiveEvent::Comment("halo".into()));
    w.fake.send("ada", LiveEvent::Viewers(12));
    w.fake.end_live("ada");
    until(Duration::from_secs(15), "waiting", || {
        state(&sup, AccountId(1)).kind() == StateKind::Waiting
    })
    .await;
    sup.flush().await;
    let (rows, out) = export_csv(
        &w.store,
        ExportKind::Lives,
        ExportFilter::default(),
        Vec::new(),
        |_| {},
    )
    .await
    .expect("export");
    assert_eq!(rows, 1);
    let mut csv = csv::Reader::from_reader(out.as_slice());
    let header: Vec<String> = csv
        .headers()
        .expect("header")
        .iter()
        .map(str::to_owned)
        .collect();
    let records: Vec<HashMap<String, String>> = csv
        .records()
        .map(|r| {
            header
                .iter()
                .cloned()
                .zip(r.expect("row").iter().map(str::to_owned))
                .collect()
        })
        .collect();
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(r["remote_key"], room);
    assert_eq!(r["account_name"], "watch ada");
    // A cell starting with @ is neutralised, as every cell a spreadsheet could run.
    assert_eq!(r["account_handle"], "'@ada");
    assert_eq!(r["ended_how"], "ended");
    assert_eq!(r["comments"], "1");
    assert_eq!(r["peak_viewers"], "12");
    assert!(r["duration_s"].parse::<f64>().is_ok_and(|d| d >= 0.0));
    assert!(!r["ended_at"].is_empty());
    sup.shutdown().await;
    drop(w.tmp);
}
