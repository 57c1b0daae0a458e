//! Restore, drop-detection, stall-detection and memory figures for the supervisor, each against
//! a baseline measured in the same run and the target it is held to (docs/BENCHMARKS.md).
//!
//! Memory is measured in child processes (this binary re-executed) so the simulator's and the
//! other measurements' allocations never count: the simulator runs in its own child too.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use lifeline_engine::clock::Clock;
use lifeline_engine::connector::Connectors;
use lifeline_engine::model::{AccountKind, NewAccount};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::{Reason, StateKind};
use lifeline_engine::store::Store;
use lifeline_engine::supervisor::{Supervisor, SupervisorDeps, Update};
use lifeline_sim::{Fault, Seen, Sim};
use lifeline_websocket::WebSocketConnector;
use serde::{Deserialize, Serialize};

use crate::table::{Row, percentile};

/// How many accounts, at what concurrency, and how many samples of each kind.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub accounts: usize,
    pub concurrency: usize,
    pub drops: usize,
    pub stalls: usize,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ChildResult {
    secs: f64,
    rss_delta_kb: f64,
    /// Restore only: when the last account was connected in memory (before its record landed).
    #[serde(default)]
    in_memory_secs: f64,
}

/// A child's result, as the one line of JSON its parent reads.
fn report(result: &ChildResult) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(result)?);
    Ok(())
}

pub fn rss_kb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// (child) Serves lifeline-sim and prints its address; stops when stdin closes.
pub async fn sim_server() -> anyhow::Result<()> {
    let sim = Sim::start("127.0.0.1:0").await?;
    println!("{}", sim.addr());
    std::io::stdout().flush()?;
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
    Ok(())
}

/// (child) Opens N bare WebSocket connections; prints time and RSS.
pub async fn bare(addr: &str, n: usize, concurrency: usize) -> anyhow::Result<()> {
    let urls: Vec<String> = (0..n).map(|i| format!("ws://{addr}/s/bare{i}")).collect();
    let before = rss_kb();
    let start = Instant::now();
    let conns: Vec<_> = futures_util::stream::iter(urls)
        .map(|u| async move { tokio_tungstenite::connect_async(u).await })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let secs = start.elapsed().as_secs_f64();
    let ok = conns.iter().filter(|c| c.is_ok()).count();
    if ok != n {
        bail!("only {ok} of {n} bare connections succeeded");
    }
    let rss = rss_kb() - before;
    report(&ChildResult {
        secs,
        rss_delta_kb: rss,
        in_memory_secs: secs,
    })?;
    drop(conns);
    Ok(())
}

/// Pacing off (restore speed is what is measured), quick keepalives so stalls show in a second.
pub(crate) fn bench_policy(concurrency: usize) -> PolicyConfig {
    let mut p = PolicyConfig::default();
    p.pacing.enabled = false;
    p.autorecover.start_delay_ms = 0;
    p.autorecover.concurrency = concurrency as u32;
    p.connection.keepalive_ms = 1_000;
    p.connection.pong_timeout_ms = 500;
    p
}

pub(crate) async fn fleet(
    addr: &str,
    n: usize,
    policy: PolicyConfig,
) -> anyhow::Result<(tempfile::TempDir, Store, Supervisor)> {
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("bench.db");
    let store = Store::open_path(&path).await?;
    for i in 0..n {
        store
            .add_account(
                NewAccount::new(AccountKind::Websocket, format!("acct {i}"))
                    .with_url(format!("ws://{addr}/s/{i}")),
            )
            .await?;
    }
    // Closed and opened again, as a restart finds it (the log of writes folded into the file).
    store.close().await;
    let store = Store::open_path(&path).await?;
    let sup = Supervisor::new(SupervisorDeps {
        store: store.clone(),
        connectors: Connectors::new().with(AccountKind::Websocket, Arc::new(WebSocketConnector)),
        secrets: Arc::new(MemorySecretStore::default()),
        clock: Clock::System,
        policy,
        jitter_seed: Some(1),
    });
    Ok((tmp, store, sup))
}

/// Waits until `n` transitions matching `want` have been recorded; returns when the last one
/// was seen and the events themselves.
pub(crate) async fn await_recorded(
    rx: &mut tokio::sync::broadcast::Receiver<Update>,
    want: impl Fn(&lifeline_engine::state::Event) -> bool,
    n: usize,
) -> anyhow::Result<(Instant, Vec<(Instant, lifeline_engine::state::Event)>)> {
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Err(_) => bail!(
                "only {} of {n} awaited transitions within 120 s",
                seen.len()
            ),
            Ok(Ok(Update::Transitions(ev))) => {
                let now = Instant::now();
                seen.extend(ev.into_iter().filter(|e| want(e)).map(|e| (now, e)));
            }
            Ok(Ok(_)) => {}
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(k))) => {
                bail!("subscriber lagged by {k}")
            }
            Ok(Err(e)) => bail!("updates closed: {e}"),
        }
    }
    Ok((Instant::now(), seen))
}

pub(crate) fn into(kind: StateKind) -> impl Fn(&lifeline_engine::state::Event) -> bool {
    move |e| e.to.kind() == kind
}

/// (child) Restores N persisted accounts with the supervisor; prints time and RSS.
pub async fn restore(addr: &str, n: usize, concurrency: usize) -> anyhow::Result<()> {
    let (_tmp, _store, sup) = fleet(addr, n, bench_policy(concurrency)).await?;
    let mut rx = sup.subscribe();
    let before = rss_kb();
    let start = Instant::now();
    sup.startup(None, None).await?;
    let watcher = sup.clone();
    // Counts, not views: cloning every view each millisecond would add its own garbage to the
    // memory measured below.
    let in_memory = tokio::spawn(async move {
        while watcher.counts().desired_connected < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Instant::now()
    });
    let (done, _) = await_recorded(&mut rx, into(StateKind::Connected), n).await?;
    let secs = (done - start).as_secs_f64();
    let in_memory_secs = (in_memory.await? - start).as_secs_f64();
    // Let the fleet settle into steady state (keepalives running) before reading memory.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_kb() - before;
    report(&ChildResult {
        secs,
        rss_delta_kb: rss,
        in_memory_secs,
    })?;
    sup.shutdown().await;
    Ok(())
}

fn child(args: &[String]) -> anyhow::Result<ChildResult> {
    let exe = std::env::current_exe()?;
    let out = Command::new(exe)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        bail!("child {args:?} failed");
    }
    let text = String::from_utf8(out.stdout)?;
    let line = text.lines().last().context("child printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

struct SimChild(Child);
impl Drop for SimChild {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs of each side of the restore and memory figures.
const RUNS: usize = 3;

/// Each figure's median over runs of one side.
fn medians(runs: &[ChildResult]) -> ChildResult {
    let median = |figure: fn(&ChildResult) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(figure).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    ChildResult {
        secs: median(|r| r.secs),
        rss_delta_kb: median(|r| r.rss_delta_kb),
        in_memory_secs: median(|r| r.in_memory_secs),
    }
}

/// Runs every supervision measurement and returns its table rows.
pub async fn run(plan: Plan) -> anyhow::Result<Vec<Row>> {
    let Plan {
        accounts: n,
        concurrency,
        drops,
        stalls,
    } = plan;
    // Simulator in its own process for the restore and memory figures.
    let mut sim = SimChild(
        Command::new(std::env::current_exe()?)
            .arg("sim-server")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?,
    );
    let stdout = sim.0.stdout.take().context("sim stdout")?;
    let mut addr = String::new();
    BufReader::new(stdout).read_line(&mut addr)?;
    let addr = addr.trim().to_owned();
    let args = |what: &str| {
        vec![
            what.to_owned(),
            addr.clone(),
            n.to_string(),
            concurrency.to_string(),
        ]
    };
    // Three runs of each side, alternating, and each figure the median of its three: one run
    // of 0.1 s on two shared cores moves by ±10 % on its own.
    let (mut bares, mut restores) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        bares.push(child(&args("bare"))?);
        restores.push(child(&args("restore"))?);
    }
    drop(sim);
    let (bare, restore) = (medians(&bares), medians(&restores));

    // Drop → recorded: single drops one at a time, then one mass drop of the whole fleet.
    let sim = Sim::start("127.0.0.1:0").await?;
    let local = sim.addr().to_string();
    let policy = bench_policy(concurrency);
    let (_tmp, _store, sup) = fleet(&local, n, policy).await?;
    let mut rx = sup.subscribe();
    sup.startup(None, None).await?;
    await_recorded(&mut rx, into(StateKind::Connected), n).await?;
    // Baseline: the same fault noticed by a bare client on the same loaded simulator (a fault
    // reaches only its own path's socket, so neither side pays for the fleet's size).
    let samples = drops.min(n);
    let mut floor = Vec::with_capacity(samples);
    for i in 0..samples {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{local}/s/probe{i}")).await?;
        let t0 = Instant::now();
        sim.inject(Fault::Drop {
            path: Some(format!("/s/probe{i}")),
        });
        let ended = tokio::time::timeout(Duration::from_secs(10), async {
            while let Some(Ok(_)) = ws.next().await {}
        });
        if ended.await.is_err() {
            bail!("the simulator did not drop the bare client's socket within 10 s");
        }
        floor.push(t0.elapsed());
    }
    floor.sort();
    let floor: Vec<f64> = floor.into_iter().map(ms).collect();
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let t0 = Instant::now();
        sim.inject(Fault::Drop {
            path: Some(format!("/s/{i}")),
        });
        let (t1, _) = await_recorded(&mut rx, into(StateKind::Backoff), 1).await?;
        latencies.push(t1 - t0);
    }
    latencies.sort();
    let latencies: Vec<f64> = latencies.into_iter().map(ms).collect();
    settle(&sup, "the single drops").await?;

    // Stall → recorded: stalled sockets stop answering; the error is how late detection comes
    // after the first unanswered ping (seen by the simulator) plus the pong timeout.
    let stalls = stalls.min(n);
    while rx.try_recv().is_ok() {}
    sim.journal_on();
    for i in 0..stalls {
        sim.inject(Fault::Stall {
            path: Some(format!("/s/{i}")),
        });
    }
    let (_, stalled) = await_recorded(
        &mut rx,
        |e| matches!(e.to.reason(), Some(Reason::Stalled)),
        stalls,
    )
    .await?;
    let journal = sim.take_journal();
    let names: std::collections::HashMap<_, _> = sup
        .views()
        .into_iter()
        .map(|v| (v.id, v.name.trim_start_matches("acct ").to_owned()))
        .collect();
    let pong = Duration::from_millis(policy.connection.pong_timeout_ms);
    // Signed: a detection before the pong timeout ran out would be a bug too.
    let mut stall_errors = Vec::with_capacity(stalls);
    for (at, e) in &stalled {
        let path = format!("/s/{}", names.get(&e.account_id).map_or("?", |s| s));
        let ping = journal
            .iter()
            .find(|j| j.path == path && j.seen == Seen::StallRead)
            .with_context(|| format!("no unanswered ping seen on {path}"))?;
        let expected = ping.at + pong;
        stall_errors.push(if *at >= expected {
            ms(*at - expected)
        } else {
            -ms(expected - *at)
        });
    }
    stall_errors.sort_by(f64::total_cmp);
    settle(&sup, "the stalls").await?;

    // Mass drop: everything at once.
    while rx.try_recv().is_ok() {}
    let t0 = Instant::now();
    sim.inject(Fault::Drop { path: None });
    let (t_all, _) = await_recorded(&mut rx, into(StateKind::Backoff), n).await?;
    let t_all = t_all - t0;
    sup.shutdown().await;

    let ideal = bare.secs;
    let per_acct = restore.rss_delta_kb / n as f64;
    let per_bare = bare.rss_delta_kb / n as f64;
    let mut rows = vec![
        Row::ratio(
            format!("restore {n} accounts, recorded (vs bare connects), median of {RUNS}"),
            restore.secs,
            ideal,
            "s",
            "<= 1.2x",
        ),
        Row::ratio(
            "restore, connected in memory (vs bare connects)",
            restore.in_memory_secs,
            ideal,
            "s",
            "",
        ),
        Row::ratio(
            "RSS per connected account (vs bare connection)",
            per_acct,
            per_bare,
            "KB",
            "<= 1.25x",
        ),
    ];
    for (label, p, target) in [("p50", 0.50, ""), ("p99", 0.99, "<= 5 ms")] {
        rows.push(Row::ratio(
            format!("single drop -> recorded, {label} (vs bare client)"),
            percentile(&latencies, p),
            percentile(&floor, p),
            "ms",
            target,
        ));
    }
    // What the engine adds to noticing a drop: its p99 minus the bare client's.
    rows.push(Row::value(
        "single drop -> recorded, engine's own p99 (lifeline - bare)",
        percentile(&latencies, 0.99) - percentile(&floor, 0.99),
        "ms",
        "<= 1 ms",
    ));
    for (label, p) in [("p50", 0.50), ("p99", 0.99)] {
        rows.push(Row::value(
            format!("stall detection error, {label} ({stalls} stalls)"),
            percentile(&stall_errors, p),
            "ms",
            "",
        ));
    }
    rows.push(Row::value(
        format!("mass drop of {n} -> all recorded"),
        ms(t_all),
        "ms",
        "<= 1000 ms",
    ));
    Ok(rows)
}

/// Waits until every account is connected again.
pub(crate) async fn settle(sup: &Supervisor, after: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while sup
        .views()
        .iter()
        .any(|v| v.state.kind() != StateKind::Connected)
    {
        if Instant::now() > deadline {
            bail!("the fleet did not reconnect after {after}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
