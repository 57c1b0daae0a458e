//! Fleets: how long the others take to supervise a killed instance's accounts, against the lease
//! TTL; how long a graceful stop takes to hand over; and the load the keepers put on the
//! database in steady state. The keepers run in this process against a throwaway PostgreSQL
//! cluster on 127.0.0.1 (the one the fleet's tests use); a killed instance is one whose keeper
//! stops without releasing anything, which is all a kill -9 leaves behind in the store.
//!
//! The store itself is compared with SQLite's in the same run: the same supervisor restores the
//! same accounts (on lifeline-sim) from each, then records a mass drop of all of them.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use lifeline_engine::clock::Clock;
use lifeline_engine::connector::Connectors;
use lifeline_engine::model::{AccountKind, NewAccount};
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::StateKind;
use lifeline_engine::store::Store;
use lifeline_engine::supervisor::{Supervisor, SupervisorDeps};
use lifeline_fleet::cluster::{self, Cluster, PASSWORD};
use lifeline_fleet::{FleetStore, Instance, Keeper, KeeperConfig, LeaseEvent, StoreUrl};
use lifeline_sim::{Fault, Sim};
use lifeline_websocket::WebSocketConnector;
use tokio::sync::mpsc;

use crate::supervise::{await_recorded, bench_policy, into};
use crate::table::Row;

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub accounts: usize,
    pub instances: usize,
    pub ttl: Duration,
    /// Accounts restored and dropped from each store in the store comparison.
    pub store_accounts: usize,
}

struct Node {
    instance: Instance,
    keeper: Option<Keeper>,
    /// Accounts this instance supervises now, from its keeper's events.
    held: Arc<AtomicI64>,
}

/// Registers an instance; its keeper starts with [`start`].
async fn node(url: &StoreUrl) -> anyhow::Result<Node> {
    let store = FleetStore::connect_with(url, Some(PASSWORD), 4).await?;
    Ok(Node {
        instance: store.register(None).await?,
        keeper: None,
        held: Arc::new(AtomicI64::new(0)),
    })
}

fn start(node: &mut Node, config: KeeperConfig) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let count = node.held.clone();
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let delta = match event {
                LeaseEvent::Acquired { .. } => 1,
                LeaseEvent::Lost(_) | LeaseEvent::HandedOver(_) => -1,
            };
            count.fetch_add(delta, Ordering::Relaxed);
        }
    });
    node.keeper = Some(Keeper::start(node.instance.clone(), config, tx));
}

fn held(nodes: &[Node], which: impl Fn(usize) -> bool) -> i64 {
    nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| which(*i))
        .map(|(_, n)| n.held.load(Ordering::Relaxed))
        .sum()
}

/// Waits until `done` holds; the time it took.
async fn until(within: Duration, what: &str, done: impl Fn() -> bool) -> anyhow::Result<Duration> {
    let started = Instant::now();
    while !done() {
        ensure!(started.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(started.elapsed())
}

/// Transactions the database committed so far (every statement outside a transaction is one).
fn commits(cluster: &Cluster) -> anyhow::Result<f64> {
    Ok(cluster
        .psql(
            "postgres",
            "SELECT xact_commit FROM pg_stat_database WHERE datname = 'bench'",
        )?
        .parse()?)
}

pub async fn run(plan: Plan) -> anyhow::Result<Vec<Row>> {
    ensure!(
        plan.instances >= 3 && plan.accounts > 0,
        "the fleet benchmark needs at least 3 instances and 1 account"
    );
    let bin = cluster::installed().context(
        "the fleet benchmark needs PostgreSQL (Debian: apt install postgresql); none is installed",
    )?;
    let cluster = Cluster::start(bin).context("a throwaway PostgreSQL cluster")?;
    let url = cluster.database("bench")?;
    let admin = FleetStore::connect_with(&url, Some(PASSWORD), 2).await?;
    let ids: Vec<i64> = (1..=plan.accounts as i64).collect();
    admin.add_accounts(&ids).await?;
    let config = KeeperConfig {
        ttl: plan.ttl,
        ..KeeperConfig::default()
    };
    let n = plan.accounts as i64;
    let mut nodes = Vec::new();
    for _ in 0..plan.instances {
        nodes.push(node(&url).await?);
    }
    let started = Instant::now();
    for node in &mut nodes {
        start(node, config);
    }
    let share = (n + plan.instances as i64 - 1) / plan.instances as i64;
    until(plan.ttl * 3, "every account supervised", || {
        held(&nodes, |_| true) == n
            && nodes
                .iter()
                .all(|x| x.held.load(Ordering::Relaxed) <= share)
    })
    .await?;
    let spread = started.elapsed();

    // Steady state: three TTLs of renewals, heartbeats and censuses.
    let window = plan.ttl * 3;
    let before = commits(&cluster)?;
    tokio::time::sleep(window).await;
    // The statistics reach pg_stat_database within a second of a backend going idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let load = (commits(&cluster)? - before) / (window.as_secs_f64() + 1.0);

    // kill -9 of instance 0: nothing released; the others wait for its leases to expire.
    let killed = held(&nodes, |i| i == 0);
    if let Some(keeper) = nodes[0].keeper.take() {
        keeper.abort();
    }
    nodes[0].held.store(0, Ordering::Relaxed);
    let takeover = until(plan.ttl * 4, "takeover after a kill", || {
        held(&nodes, |i| i != 0) == n
    })
    .await?;

    // A graceful stop of instance 1: close, release, and the rest claim at once.
    let stopped = Instant::now();
    if let Some(keeper) = nodes[1].keeper.take() {
        keeper.stop().await;
    }
    nodes[1].held.store(0, Ordering::Relaxed);
    nodes[1].instance.leave().await?;
    until(plan.ttl * 2, "takeover after a graceful stop", || {
        held(&nodes, |i| i > 1) == n
    })
    .await?;
    let handover = stopped.elapsed();
    let totals = admin.totals(plan.ttl).await?;
    for node in &mut nodes {
        if let Some(keeper) = node.keeper.take() {
            keeper.stop().await;
        }
    }
    let store_rows = stores(&cluster, plan.store_accounts).await?;
    let ttl = plan.ttl.as_secs_f64();
    let label = format!("{} accounts, {} instances", plan.accounts, plan.instances);
    Ok(vec![
        Row::value(
            format!("fleet: first spread of {label}"),
            spread.as_secs_f64() * 1000.0,
            "ms",
            "",
        ),
        Row::ratio(
            format!("fleet: takeover of {killed} accounts after a kill vs the TTL"),
            takeover.as_secs_f64(),
            ttl,
            "s",
            format!("<= TTL + 2 s ({:.2}x)", (ttl + 2.0) / ttl),
        ),
        Row::ratio(
            "fleet: takeover after a graceful stop vs the TTL",
            handover.as_secs_f64(),
            ttl,
            "s",
            "< 1 s",
        ),
        Row::value(
            format!("fleet: database load in steady state, {label}"),
            load,
            "tx/s",
            "",
        ),
        Row::value("fleet: takeovers counted", totals.takeovers as f64, "", ""),
    ]
    .into_iter()
    .chain(store_rows)
    .collect())
}

/// What one store took: the restore (startup to every account's connection recorded), and the
/// mass drop (every connection dropped at once to every drop recorded).
struct StoreRun {
    restore: Duration,
    drop: Duration,
}

/// Restores `n` WebSocket accounts on lifeline-sim from `store`, then drops them all.
async fn store_run(store: Store, sim: &Sim, n: usize, prefix: &str) -> anyhow::Result<StoreRun> {
    for i in 0..n {
        store
            .add_account(
                NewAccount::new(AccountKind::Websocket, format!("{prefix} {i}"))
                    .with_url(sim.url(&format!("{prefix}-{i}"))),
            )
            .await?;
    }
    let sup = Supervisor::new(SupervisorDeps {
        store: store.clone(),
        connectors: Connectors::new().with(AccountKind::Websocket, Arc::new(WebSocketConnector)),
        secrets: Arc::new(MemorySecretStore::default()),
        clock: Clock::System,
        policy: bench_policy(32),
        jitter_seed: Some(1),
    });
    let mut rx = sup.subscribe();
    let start = Instant::now();
    sup.startup(None, None).await?;
    let (done, _) = await_recorded(&mut rx, into(StateKind::Connected), n).await?;
    let restore = done - start;
    let dropped = Instant::now();
    sim.inject(Fault::Drop { path: None });
    let (done, _) = await_recorded(&mut rx, |e| e.from == StateKind::Connected, n).await?;
    let drop = done - dropped;
    sup.shutdown().await;
    store.close().await;
    Ok(StoreRun { restore, drop })
}

/// The fleet store against the SQLite store, same accounts, same run.
async fn stores(cluster: &Cluster, n: usize) -> anyhow::Result<Vec<Row>> {
    let sim = Sim::start("127.0.0.1:0").await?;
    let tmp = tempfile::tempdir()?;
    let sqlite = store_run(
        Store::open_path(&tmp.path().join("bench.db")).await?,
        &sim,
        n,
        "lite",
    )
    .await?;
    let url = cluster.database("store")?;
    let fleet = FleetStore::connect(&url, Some(PASSWORD)).await?;
    let postgres = store_run(Store::fleet(&fleet), &sim, n, "pg").await?;
    sim.shutdown();
    let per_s = |d: Duration| n as f64 / d.as_secs_f64();
    let moved = migration(
        cluster,
        &tmp.path().join("bench.db"),
        n * MIGRATED_EVENTS_PER_ACCOUNT,
    )
    .await?;
    Ok(vec![
        Row::ratio(
            format!(
                "fleet store: migrate-to of {n} accounts and {} events, vs a CSV export of those events",
                moved.events
            ),
            moved.migrate.as_secs_f64(),
            moved.export.as_secs_f64(),
            "s",
            "",
        ),
        Row::ratio(
            format!("fleet store: restore of {n} accounts, PostgreSQL vs SQLite"),
            postgres.restore.as_secs_f64(),
            sqlite.restore.as_secs_f64(),
            "s",
            "",
        ),
        Row::ratio(
            format!(
                "fleet store: drops recorded per second in a {n}-account mass drop, PostgreSQL vs SQLite"
            ),
            per_s(postgres.drop),
            per_s(sqlite.drop),
            "/s",
            "",
        ),
    ])
}

/// Events of history per account in the migration measure.
const MIGRATED_EVENTS_PER_ACCOUNT: usize = 200;

/// What moving a machine's store into a fleet store took, beside exporting its events.
struct Migration {
    events: u64,
    migrate: Duration,
    export: Duration,
}

/// Gives the SQLite store at `db` (the comparison's accounts) `events` rows of history, then
/// times `lifeline store migrate-to` into a fresh fleet store, and a CSV export of the same
/// events as the baseline: both read every row, one writes them to PostgreSQL.
async fn migration(
    cluster: &Cluster,
    db: &std::path::Path,
    events: usize,
) -> anyhow::Result<Migration> {
    let source = Store::open_path(db).await?;
    let pool = source.sqlite_pool().context("an SQLite store")?;
    sqlx::query(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < $1) \
         INSERT INTO events (account_id, at, from_state, to_state, reason, state_json, detail, triggered_by) \
         SELECT a.id, 1700000000000 + x, 'connected', 'backoff', 'network', \
                '{\"state\":\"backoff\",\"reason\":\"network\"}', 'connection reset by peer', 'system' \
         FROM c JOIN accounts a ON a.id = 1 + (x % (SELECT count(*) FROM accounts))",
    )
    .bind(events as i64)
    .execute(pool)
    .await?;
    let start = Instant::now();
    let (exported, _) = lifeline_engine::export::export_csv(
        &source,
        lifeline_engine::export::ExportKind::Events,
        Default::default(),
        std::io::sink(),
        |_| {},
    )
    .await?;
    let export = start.elapsed();
    let url = cluster.database("migrate")?;
    let fleet = FleetStore::connect(&url, Some(PASSWORD)).await?;
    let start = Instant::now();
    let moved = lifeline_engine::store::migrate::migrate_to_fleet(
        &source,
        &fleet,
        &Connectors::new(),
        None,
        |_| {},
    )
    .await?;
    let migrate = start.elapsed();
    let copied = moved
        .tables
        .iter()
        .find(|(t, _)| *t == "events")
        .map_or(0, |(_, rows)| *rows);
    ensure!(
        copied == exported,
        "{copied} events copied, {exported} exported"
    );
    source.close().await;
    fleet.close().await;
    Ok(Migration {
        events: copied,
        migrate,
        export,
    })
}
