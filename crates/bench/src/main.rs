//! `lifeline-bench supervise`: restore, drop-detection and memory figures for the supervisor,
//! each against a baseline measured in the same run (DESIGN.md, "Performance baselines").
//!
//! Memory is measured in child processes (this binary re-executed) so the simulator's and the
//! other measurements' allocations never count: the simulator runs in its own child too.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures_util::StreamExt;
use lifeline_engine::clock::Clock;
use lifeline_engine::connector::Connectors;
use lifeline_engine::model::{AccountKind, NewAccount};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::StateKind;
use lifeline_engine::store::Store;
use lifeline_engine::supervisor::{Supervisor, SupervisorDeps, Update};
use lifeline_sim::{Fault, Sim};
use lifeline_websocket::WebSocketConnector;
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(name = "lifeline-bench", about = "Lifeline benchmarks")]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Restore time vs bare connects, drop → recorded latency, RSS per account.
    Supervise {
        #[arg(long, default_value_t = 1000)]
        accounts: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Single drops sampled for the latency percentiles.
        #[arg(long, default_value_t = 200)]
        drops: usize,
    },
    /// (child) Serve lifeline-sim and print its address.
    #[command(hide = true)]
    SimServer,
    /// (child) Open N bare WebSocket connections; print time and RSS.
    #[command(hide = true)]
    Bare {
        addr: String,
        n: usize,
        concurrency: usize,
    },
    /// (child) Restore N persisted accounts with the supervisor; print time and RSS.
    Restore {
        addr: String,
        n: usize,
        concurrency: usize,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct ChildResult {
    secs: f64,
    rss_delta_kb: f64,
    /// Restore only: when the last account was connected in memory (before its record landed).
    #[serde(default)]
    in_memory_secs: f64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.command {
        Cmd::SimServer => rt.block_on(sim_server()),
        Cmd::Bare {
            addr,
            n,
            concurrency,
        } => rt.block_on(bare(&addr, n, concurrency)),
        Cmd::Restore {
            addr,
            n,
            concurrency,
        } => rt.block_on(restore(&addr, n, concurrency)),
        Cmd::Supervise {
            accounts,
            concurrency,
            drops,
        } => rt.block_on(supervise(accounts, concurrency, drops)),
    }
}

/// A child's result, as the one line of JSON its parent reads.
fn report(result: &ChildResult) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string(result)?);
    Ok(())
}

fn rss_kb() -> f64 {
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

async fn sim_server() -> anyhow::Result<()> {
    let sim = Sim::start("127.0.0.1:0").await?;
    println!("{}", sim.addr());
    std::io::stdout().flush()?;
    // Serve until the parent closes our stdin.
    let mut line = String::new();
    let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
    Ok(())
}

async fn bare(addr: &str, n: usize, concurrency: usize) -> anyhow::Result<()> {
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

fn bench_policy(concurrency: usize) -> PolicyConfig {
    let mut p = PolicyConfig::default();
    p.pacing.enabled = false;
    p.autorecover.start_delay_ms = 0;
    p.autorecover.concurrency = concurrency as u32;
    p
}

async fn fleet(
    addr: &str,
    n: usize,
    policy: PolicyConfig,
) -> anyhow::Result<(tempfile::TempDir, Store, Supervisor)> {
    let tmp = tempfile::tempdir()?;
    let store = Store::open_path(&tmp.path().join("bench.db")).await?;
    for i in 0..n {
        store
            .add_account(
                NewAccount::new(AccountKind::Websocket, format!("acct {i}"))
                    .with_url(format!("ws://{addr}/s/{i}")),
            )
            .await?;
    }
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

/// Waits until `n` transitions into `kind` have been recorded; returns when the last one was seen.
async fn await_recorded(
    rx: &mut tokio::sync::broadcast::Receiver<Update>,
    kind: StateKind,
    n: usize,
) -> anyhow::Result<Instant> {
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Err(_) => bail!("only {seen} of {n} transitions to {kind} within 120 s"),
            Ok(Ok(Update::Transitions(ev))) => {
                seen += ev.iter().filter(|e| e.to.kind() == kind).count()
            }
            Ok(Ok(_)) => {}
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(k))) => {
                bail!("subscriber lagged by {k}")
            }
            Ok(Err(e)) => bail!("updates closed: {e}"),
        }
    }
    Ok(Instant::now())
}

async fn restore(addr: &str, n: usize, concurrency: usize) -> anyhow::Result<()> {
    let (_tmp, _store, sup) = fleet(addr, n, bench_policy(concurrency)).await?;
    let mut rx = sup.subscribe();
    let before = rss_kb();
    let start = Instant::now();
    sup.startup(None, None).await?;
    let watcher = sup.clone();
    let in_memory = tokio::spawn(async move {
        while watcher
            .views()
            .iter()
            .any(|v| v.state.kind() != StateKind::Connected)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Instant::now()
    });
    let done = await_recorded(&mut rx, StateKind::Connected, n).await?;
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn supervise(n: usize, concurrency: usize, drops: usize) -> anyhow::Result<()> {
    // Simulator in its own process.
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

    let bare = child(&[
        "bare".into(),
        addr.clone(),
        n.to_string(),
        concurrency.to_string(),
    ])?;
    let restore = child(&[
        "restore".into(),
        addr.clone(),
        n.to_string(),
        concurrency.to_string(),
    ])?;
    drop(sim);

    // Drop → recorded: single drops one at a time, then one mass drop of the whole fleet.
    let sim = Sim::start("127.0.0.1:0").await?;
    let local = sim.addr().to_string();
    let (_tmp, _store, sup) = fleet(&local, n, bench_policy(concurrency)).await?;
    let mut rx = sup.subscribe();
    sup.startup(None, None).await?;
    await_recorded(&mut rx, StateKind::Connected, n).await?;
    // Baseline: the same fault noticed by a bare client on the same loaded simulator.
    let mut floor = Vec::with_capacity(drops);
    for i in 0..drops.min(n) {
        let (mut ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{local}/s/probe{i}")).await?;
        let t0 = Instant::now();
        sim.inject(Fault::Drop {
            path: Some(format!("/s/probe{i}")),
        });
        while let Some(Ok(_)) = ws.next().await {}
        floor.push(t0.elapsed());
    }
    floor.sort();
    let mut latencies = Vec::with_capacity(drops);
    for i in 0..drops.min(n) {
        let path = format!("/s/{i}");
        let t0 = Instant::now();
        sim.inject(Fault::Drop { path: Some(path) });
        let t1 = await_recorded(&mut rx, StateKind::Backoff, 1).await?;
        latencies.push(t1 - t0);
    }
    // Everyone back before the mass drop (reconnects were recorded while we waited above).
    let deadline = Instant::now() + Duration::from_secs(60);
    while sup
        .views()
        .iter()
        .any(|v| v.state.kind() != StateKind::Connected)
    {
        if Instant::now() > deadline {
            bail!("the fleet did not reconnect after the single drops");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while rx.try_recv().is_ok() {}
    latencies.sort();
    // Mass drop: everything at once.
    let t0 = Instant::now();
    sim.inject(Fault::Drop { path: None });
    let t_all = await_recorded(&mut rx, StateKind::Backoff, n).await? - t0;
    sup.shutdown().await;

    let ideal = bare.secs;
    println!();
    println!(
        "supervision benchmark: {n} WebSocket accounts against lifeline-sim on 127.0.0.1, concurrency {concurrency}, pacing off"
    );
    println!(
        "{:<44} {:>12} {:>14} {:>8}",
        "measure", "lifeline", "baseline", "ratio"
    );
    println!(
        "{:<44} {:>11.3}s {:>13.3}s {:>7.2}x",
        "restore all (startup → all connected, recorded)",
        restore.secs,
        ideal,
        restore.secs / ideal
    );
    println!(
        "{:<44} {:>11.3}s {:>13.3}s {:>7.2}x",
        "restore all (… connected in memory)",
        restore.in_memory_secs,
        ideal,
        restore.in_memory_secs / ideal
    );
    let per_acct = restore.rss_delta_kb / n as f64;
    let per_bare = bare.rss_delta_kb / n as f64;
    println!(
        "{:<44} {:>10.1}KB {:>12.1}KB {:>7.2}x",
        "RSS per connected account (bare connection)",
        per_acct,
        per_bare,
        per_acct / per_bare.max(0.001)
    );
    for (label, p) in [("p50", 0.50), ("p99", 0.99)] {
        let ours = percentile(&latencies, p);
        let base = percentile(&floor, p);
        println!(
            "{:<44} {:>10.2}ms {:>12.2}ms {:>7.2}x",
            format!(
                "single drop → recorded, {label} ({} samples)",
                latencies.len()
            ),
            ours.as_secs_f64() * 1000.0,
            base.as_secs_f64() * 1000.0,
            ours.as_secs_f64() / base.as_secs_f64().max(1e-9)
        );
    }
    println!(
        "{:<44} {:>10.2}ms",
        format!("mass drop of {n} → all recorded"),
        t_all.as_secs_f64() * 1000.0
    );
    println!();
    println!(
        "baselines: bare tokio-tungstenite connects at the same concurrency; a bare client noticing the"
    );
    println!(
        "           same drop on the same simulator (which fans every fault out to all live sockets)."
    );
    println!(
        "targets: restore <= 1.2x bare (issue) / <= 2x (design); p99 <= 100 ms (issue) / 5 ms (design);"
    );
    println!(
        "         mass drop recorded <= 1 s; RSS per account <= 1 MB (issue) / 64 KB (design)"
    );
    Ok(())
}
