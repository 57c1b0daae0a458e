//! WhatsApp accounts against the loopback peer: link-to-Connected time, restore time with stored
//! keys, and RSS per idle connected account (`cargo bench -p lifeline-wa-peer --bench whatsapp`).
//!
//! The supervisor runs in a child process (this binary re-executed) so the peer's memory never
//! counts; the baseline is the same child with the same accounts held stopped.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lifeline_engine::clock::Clock;
use lifeline_engine::connector::{Connectors, LinkMode};
use lifeline_engine::model::{AccountId, AccountKind, NewAccount};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::{State, StateKind};
use lifeline_engine::store::Store;
use lifeline_engine::supervisor::{Supervisor, SupervisorDeps, Update};
use lifeline_wa_peer::{Config, Peer};
use lifeline_whatsapp::{Endpoint, WhatsAppConnector};

const CHILD: &str = "LIFELINE_WA_BENCH_CHILD";

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn policy() -> PolicyConfig {
    let mut p = PolicyConfig::default();
    p.autorecover.start_delay_ms = 0;
    p
}

async fn supervisor(dir: &std::path::Path, url: &str) -> anyhow::Result<(Store, Supervisor)> {
    let store = Store::open_path(&dir.join("lifeline.db")).await?;
    let endpoint = Endpoint {
        url: Some(url.to_owned()),
        version: Some((2, 3000, 1_000_000_000)),
    };
    let sup = Supervisor::new(SupervisorDeps {
        store: store.clone(),
        connectors: Connectors::new().with(
            AccountKind::Whatsapp,
            Arc::new(WhatsAppConnector::new(dir, endpoint)),
        ),
        secrets: Arc::new(MemorySecretStore::default()),
        clock: Clock::System,
        policy: policy(),
        jitter_seed: Some(1),
    });
    Ok((store, sup))
}

fn connected(sup: &Supervisor) -> usize {
    sup.views()
        .iter()
        .filter(|v| v.state == State::Connected)
        .count()
}

async fn settle(sup: &Supervisor, n: usize, within: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    while connected(sup) < n {
        if start.elapsed() > within {
            bail!("only {} of {n} connected", connected(sup));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(start.elapsed())
}

/// Child: `link` links every account (codes go to stdout for the parent's peer to scan),
/// `restore` reconnects them with stored keys, `idle` holds them stopped (the baseline).
async fn child(mode: &str, dir: &std::path::Path, url: &str, n: usize) -> anyhow::Result<()> {
    let (_store, sup) = supervisor(dir, url).await?;
    sup.startup(None, None).await?;
    match mode {
        "link" => {
            let mut updates = sup.subscribe();
            for i in 1..=n as i64 {
                let id = AccountId(i);
                let start = Instant::now();
                sup.request_link(id, LinkMode::Qr).await?;
                let code = loop {
                    if let Update::Link { account, code } = updates.recv().await?
                        && account == id
                    {
                        break code.code;
                    }
                };
                println!("CODE {code}");
                while sup
                    .views()
                    .iter()
                    .find(|v| v.id == id)
                    .map(|v| v.state.clone())
                    != Some(State::Connected)
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                println!("LINKED {}", start.elapsed().as_secs_f64() * 1000.0);
            }
        }
        "restore" => {
            // Paced: twice the pacing floor, and a minute more, before it counts as stuck.
            let pacing = policy().pacing;
            let floor = n.saturating_sub(pacing.burst as usize) as f64 / pacing.rate_per_s;
            let t = settle(&sup, n, Duration::from_secs_f64(floor * 2.0 + 60.0)).await?;
            println!("RESTORED {}", t.as_secs_f64());
        }
        _ => {
            for v in sup.views() {
                if v.state.kind() == StateKind::Connected {
                    bail!("baseline must hold accounts stopped");
                }
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    println!("RSS {}", rss_mb());
    sup.shutdown().await;
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if let Ok(spec) = std::env::var(CHILD) {
        let mut parts = spec.splitn(4, ' ');
        let (Some(mode), Some(n), Some(url), Some(dir)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bail!("bad child spec");
        };
        let n: usize = n.parse()?;
        return rt.block_on(child(mode, std::path::Path::new(dir), url, n));
    }
    let n: usize = std::env::var("ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    rt.block_on(async {
        let peer = Peer::start("127.0.0.1:0", Config::default()).await?;
        let tmp = tempfile::tempdir()?;
        let store = Store::open_path(&tmp.path().join("lifeline.db")).await?;
        for i in 0..n {
            let mut new = NewAccount::new(AccountKind::Whatsapp, format!("bench {i}"));
            new.desired_running = false;
            store.add_account(new.validate()?).await?;
        }
        store.close().await;
        let run = |mode: &str| -> anyhow::Result<Vec<String>> {
            let exe = std::env::current_exe()?;
            let mut child = Command::new(exe)
                .env(CHILD, format!("{mode} {n} {} {}", peer.url(), tmp.path().display()))
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .context("child")?;
            let out = child.stdout.take().context("stdout")?;
            let mut lines = Vec::new();
            for line in BufReader::new(out).lines() {
                let line = line?;
                if let Some(code) = line.strip_prefix("CODE ") {
                    peer.scan(code)?;
                } else {
                    lines.push(line);
                }
            }
            if !child.wait()?.success() {
                bail!("{mode} child failed");
            }
            Ok(lines)
        };
        let value = |lines: &[String], key: &str| -> Vec<f64> {
            lines
                .iter()
                .filter_map(|l| l.strip_prefix(key))
                .filter_map(|v| v.trim().parse().ok())
                .collect()
        };
        let base = value(&run("idle")?, "RSS ");
        let linked = run("link")?;
        let mut link_ms = value(&linked, "LINKED ");
        link_ms.sort_by(f64::total_cmp);
        let link_rss = value(&linked, "RSS ");
        // Accounts linked above are now desired-running: a fresh child restores them.
        let restored = run("restore")?;
        let restore_s = value(&restored, "RESTORED ");
        let restore_rss = value(&restored, "RSS ");
        let base = base.first().copied().unwrap_or(0.0);
        let per = |total: &[f64]| (total.first().copied().unwrap_or(0.0) - base) / n as f64;
        let p = policy().pacing;
        let floor = (n as f64 - f64::from(p.burst)).max(0.0) / p.rate_per_s;
        println!();
        println!("WhatsApp accounts against lifeline-wa-peer, N = {n}");
        println!("| measure | value | baseline |");
        println!("| --- | --- | --- |");
        println!("| link (request → Connected), p50 | {:.0} ms | — |", percentile(&link_ms, 0.5));
        println!("| link (request → Connected), p95 | {:.0} ms | — |", percentile(&link_ms, 0.95));
        println!(
            "| restore all with stored keys → Connected | {:.2} s | pacing floor {floor:.2} s ({:.2}x) |",
            restore_s.first().copied().unwrap_or(0.0),
            restore_s.first().copied().unwrap_or(0.0) / floor.max(f64::EPSILON)
        );
        println!("| process RSS, {n} accounts held stopped | {base:.1} MB | (baseline) |");
        let per_restore = per(&restore_rss);
        println!(
            "| RSS per idle connected account (restored) | {per_restore:.2} MB | target 5 MB ({:.2}x) |",
            per_restore / 5.0
        );
        println!("| RSS per connected account (after linking) | {:.2} MB | target 5 MB |", per(&link_rss));
        peer.shutdown();
        Ok(())
    })
}
