//! Keepers of several instances sharing one real PostgreSQL: every account supervised by one
//! instance, failover after a kill, hand-over on a graceful stop and to a newcomer, a partition,
//! and a database restart. Lease TTLs are short here (seconds) so the scenarios stay quick; the
//! rules are the same as at the 15 s default.

mod pg;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeline_fleet::{FleetStore, Instance, Keeper, KeeperConfig, Lease, LeaseEvent, StoreUrl};
use pg::{Cluster, PASSWORD};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// One entry of the fleet's log: when an instance started or stopped running an account.
#[derive(Debug, Clone, Copy)]
enum Entry {
    Run(Lease),
    Close(Lease),
}

#[derive(Default)]
struct Log(Mutex<Vec<(Instant, usize, Entry)>>);

impl Log {
    fn push(&self, node: usize, entry: Entry) {
        self.0
            .lock()
            .expect("log")
            .push((Instant::now(), node, entry));
    }

    /// What each instance runs now.
    fn running(&self) -> BTreeMap<usize, BTreeSet<i64>> {
        let mut running: BTreeMap<usize, BTreeSet<i64>> = BTreeMap::new();
        for (_, node, entry) in self.0.lock().expect("log").iter() {
            match entry {
                Entry::Run(l) => running.entry(*node).or_default().insert(l.account),
                Entry::Close(l) => running.entry(*node).or_default().remove(&l.account),
            };
        }
        running
    }

    /// Replays the log in time order and fails if an account ever ran on two instances at once.
    fn assert_never_twice(&self) {
        let mut log = self.0.lock().expect("log").clone();
        log.sort_by_key(|(at, _, _)| *at);
        let mut owner: BTreeMap<i64, usize> = BTreeMap::new();
        for (at, node, entry) in log {
            match entry {
                Entry::Run(l) => {
                    if let Some(other) = owner.insert(l.account, node) {
                        assert_eq!(
                            other, node,
                            "account {} ran on {other} and {node} at {at:?}",
                            l.account
                        );
                    }
                }
                Entry::Close(l) => {
                    if owner.get(&l.account) == Some(&node) {
                        owner.remove(&l.account);
                    }
                }
            }
        }
    }
}

struct Node {
    instance: Instance,
    keeper: Option<Keeper>,
}

struct Fleet {
    log: Arc<Log>,
    nodes: Vec<Node>,
    config: KeeperConfig,
    observer: FleetStore,
}

impl Fleet {
    async fn new(observer: FleetStore, ttl: Duration) -> Self {
        Self {
            log: Arc::default(),
            nodes: Vec::new(),
            config: KeeperConfig {
                ttl,
                handover_step: 10,
            },
            observer,
        }
    }

    /// Registers an instance through `url` (its own pool) without starting its keeper.
    async fn join(&mut self, url: &StoreUrl) -> usize {
        let store = FleetStore::connect_with(url, Some(PASSWORD), 4)
            .await
            .expect("connect");
        let instance = store.register(None).await.expect("register");
        self.nodes.push(Node {
            instance,
            keeper: None,
        });
        self.nodes.len() - 1
    }

    fn start(&mut self, node: usize) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let log = self.log.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                match event {
                    LeaseEvent::Acquired { lease, .. } => log.push(node, Entry::Run(lease)),
                    LeaseEvent::Lost(lease) | LeaseEvent::HandedOver(lease) => {
                        log.push(node, Entry::Close(lease))
                    }
                }
            }
        });
        let n = &mut self.nodes[node];
        n.keeper = Some(Keeper::start(n.instance.clone(), self.config, tx));
    }

    /// As kill -9: the keeper ends, nothing is released, its connections are gone.
    fn kill(&mut self, node: usize) {
        if let Some(keeper) = self.nodes[node].keeper.take() {
            keeper.abort();
        }
        for account in self.log.running().get(&node).cloned().unwrap_or_default() {
            self.log
                .push(node, Entry::Close(Lease { account, epoch: 0 }));
        }
    }

    /// A graceful stop: the keeper ends, its connections close, then it leaves the fleet.
    async fn stop(&mut self, node: usize) {
        let keeper = self.nodes[node].keeper.take().expect("running");
        for lease in keeper.stop().await {
            self.log.push(node, Entry::Close(lease));
        }
        self.nodes[node].instance.leave().await.expect("leave");
    }

    fn held(&self) -> Vec<usize> {
        let running = self.log.running();
        (0..self.nodes.len())
            .map(|n| running.get(&n).map_or(0, BTreeSet::len))
            .collect()
    }

    /// Waits until `check` holds for the instances' counts of running accounts.
    async fn until(
        &self,
        within: Duration,
        what: &str,
        check: impl Fn(&[usize]) -> bool,
    ) -> Duration {
        let started = Instant::now();
        loop {
            let held = self.held();
            if check(&held) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < within,
                "{what}: not within {within:?}, held {held:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn fleet_store(cluster: &Cluster, accounts: i64) -> (StoreUrl, FleetStore) {
    let url = cluster.database("fleet");
    let store = FleetStore::connect_with(&url, Some(PASSWORD), 4)
        .await
        .expect("connect");
    let ids: Vec<i64> = (1..=accounts).collect();
    store.add_accounts(&ids).await.expect("accounts");
    (url, store)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_300_accounts_and_take_over_after_a_kill_and_a_stop() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let (url, observer) = fleet_store(&cluster, 300).await;
    let mut fleet = Fleet::new(observer, ttl).await;
    for _ in 0..3 {
        fleet.join(&url).await;
    }
    for n in 0..3 {
        fleet.start(n);
    }
    fleet
        .until(ttl * 3, "an even split", |h| h == [100, 100, 100])
        .await;

    // kill -9: the others hold everything within the TTL plus a round.
    fleet.kill(0);
    let took = fleet
        .until(ttl * 3, "takeover after a kill", |h| h[1] + h[2] == 300)
        .await;
    assert!(
        took <= ttl + ttl / 3 + Duration::from_millis(700),
        "took {took:?}"
    );
    assert_eq!(fleet.held(), vec![0, 150, 150]);

    // A graceful stop hands over at once: the release wakes the last one (no round, no expiry).
    let stopped = Instant::now();
    fleet.stop(1).await;
    fleet
        .until(ttl * 2, "takeover after a stop", |h| h[2] == 300)
        .await;
    let took = stopped.elapsed();
    assert!(took < Duration::from_secs(1), "took {took:?}");
    fleet.log.assert_never_twice();

    let totals = fleet.observer.totals(ttl).await.expect("totals");
    assert_eq!(totals.leases_held, 300);
    assert_eq!(totals.live_instances, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_takes_its_share_a_few_accounts_at_a_time() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let ttl = Duration::from_secs(2);
    let (url, observer) = fleet_store(&cluster, 300).await;
    let mut fleet = Fleet::new(observer, ttl).await;
    for _ in 0..2 {
        fleet.join(&url).await;
    }
    for n in 0..2 {
        fleet.start(n);
    }
    fleet
        .until(ttl * 3, "two instances", |h| h == [150, 150])
        .await;
    let newcomer = fleet.join(&url).await;
    fleet.start(newcomer);
    fleet
        .until(ttl * 10, "an even split", |h| h == [100, 100, 100])
        .await;
    fleet.log.assert_never_twice();
    // No storm: the newcomer's accounts arrived in steps of at most 10 per instance per round.
    let log = fleet.log.0.lock().expect("log").clone();
    let runs: Vec<Instant> = log
        .iter()
        .filter(|(_, n, e)| *n == newcomer && matches!(e, Entry::Run(_)))
        .map(|(at, _, _)| *at)
        .collect();
    assert_eq!(runs.len(), 100);
    let round = ttl / 3;
    for (i, at) in runs.iter().enumerate() {
        let burst = runs[i..]
            .iter()
            .filter(|t| t.duration_since(*at) < round / 2)
            .count();
        assert!(burst <= 20, "{burst} accounts arrived at once");
    }
}

/// A TCP relay between an instance and PostgreSQL that can be cut (a partition: bytes stop
/// flowing both ways, the sockets stay open) and healed.
struct Relay {
    port: u16,
    cut: watch::Sender<bool>,
}

impl Relay {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (cut, watch) = watch::channel(false);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let watch = watch.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pipe(cr, sw, watch.clone()), pipe(sr, cw, watch));
                });
            }
        });
        Self { port, cut }
    }

    fn url(&self) -> StoreUrl {
        StoreUrl::parse(&format!(
            "postgres://postgres@127.0.0.1:{}/fleet",
            self.port
        ))
        .expect("url")
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut cut: watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        // While cut, nothing is read or written; the bytes wait in the kernel's buffers.
        if cut.wait_for(|c| !c).await.is_err() {
            return;
        }
        tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if cut.wait_for(|c| !c).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            _ = cut.changed() => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitioned_instance_closes_before_its_leases_expire_and_cannot_write_after() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let ttl = Duration::from_secs(3);
    let (url, observer) = fleet_store(&cluster, 60).await;
    let relay = Relay::start(cluster.port()).await;
    let mut fleet = Fleet::new(observer, ttl).await;
    fleet.join(&url).await;
    let cut_off = fleet.join(&relay.url()).await;
    fleet.start(0);
    fleet.start(cut_off);
    fleet
        .until(ttl * 3, "an even split", |h| h == [30, 30])
        .await;
    let held_before: BTreeSet<i64> = fleet.log.running()[&cut_off].clone();
    let stale = {
        let log = fleet.log.0.lock().expect("log");
        log.iter()
            .rev()
            .find_map(|(_, n, e)| match e {
                Entry::Run(l) if *n == cut_off => Some(*l),
                _ => None,
            })
            .expect("a lease")
    };

    let cut_at = Instant::now();
    relay.cut.send_replace(true);
    // The cut-off instance gives its leases up on its own clock, before they expire...
    let closed = fleet
        .until(ttl * 2, "the cut-off instance closes", |h| h[cut_off] == 0)
        .await;
    assert!(closed < ttl, "closed after {closed:?}, the TTL is {ttl:?}");
    // ...and the other takes them over once they expired in the database.
    fleet.until(ttl * 3, "takeover", |h| h[0] == 60).await;
    fleet.log.assert_never_twice();
    assert!(
        cut_at.elapsed() >= ttl - ttl / 3,
        "taken over before the lease could expire"
    );
    assert!(
        held_before
            .iter()
            .all(|a| fleet.log.running()[&0].contains(a))
    );

    // Healed: its writes under the old epoch are refused, and it gets a share back.
    relay.cut.send_replace(false);
    let e = fleet.nodes[cut_off]
        .instance
        .begin_fenced(stale)
        .await
        .expect_err("stale");
    assert!(matches!(e, lifeline_fleet::Error::Stale { .. }), "{e}");
    fleet.until(ttl * 15, "rebalanced", |h| h == [30, 30]).await;
    fleet.log.assert_never_twice();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_restart_shorter_than_the_lease_keeps_every_account_where_it_runs() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let ttl = Duration::from_secs(8);
    let (url, observer) = fleet_store(&cluster, 40).await;
    let mut fleet = Fleet::new(observer, ttl).await;
    for n in 0..2 {
        fleet.join(&url).await;
        fleet.start(n);
    }
    fleet
        .until(ttl * 2, "an even split", |h| h == [20, 20])
        .await;
    cluster.psql("fleet", "CREATE TABLE notes (n int8)");
    cluster.psql("fleet", "INSERT INTO notes SELECT generate_series(1, 100)");
    let before = fleet.log.0.lock().expect("log").len();
    cluster.stop_server();
    cluster.start_server();
    // Two more rounds after the restart: the keepers reconnected and renewed.
    tokio::time::sleep(ttl).await;
    let totals = fleet
        .observer
        .totals(ttl)
        .await
        .expect("the observer reconnects too");
    assert_eq!(totals.leases_held, 40);
    assert_eq!(fleet.held(), vec![20, 20]);
    assert_eq!(
        fleet.log.0.lock().expect("log").len(),
        before,
        "no account stopped or moved"
    );
    assert_eq!(cluster.psql("fleet", "SELECT count(*) FROM notes"), "100");
}
