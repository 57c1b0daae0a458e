//! lifeline-bench: every performance figure and the chaos soak in one harness, each figure
//! against a baseline measured in the same run and the target it is held to (docs/BENCHMARKS.md).
//!
//! - `lifeline-bench --quick`: the CI-sized run (about 2 minutes in release; 4.5 with the
//!   WhatsApp soak);
//! - `lifeline-bench all`: the full run (1000 accounts, 1M-row export, 10-minute soaks);
//! - `lifeline-bench supervise|webhooks|export|tiktok|fleet|soak`: one part, with its own sizes.
//!
//! The WhatsApp soak needs a build with the `test-peer` feature (its client accepts the offline
//! peer's certificates): `cargo build --release -p lifeline-bench --features test-peer`, apart
//! from the shipped binaries. Other builds run everything else and say that it was left out.
//! CI runs it from the test build instead (tests/soak_whatsapp.rs).
//!
//! Every form prints one table; the exit status is non-zero when the soak finds any invariant
//! violation (targets are printed beside the figures, not enforced: machines differ).

mod export;
mod fleet;
mod soak;
#[cfg(feature = "wa-soak")]
mod soak_wa;
mod supervise;
mod table;
mod tiktok;
mod webhooks;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::table::Row;

#[derive(Debug, Parser)]
#[command(
    name = "lifeline-bench",
    about = "Lifeline benchmarks and chaos soak",
    version
)]
struct Args {
    /// The quick run of everything (CI): 200 accounts, 200k-row export, a 1-minute soak of 200
    /// WebSocket accounts and a 2-minute soak of 200 WhatsApp accounts.
    #[arg(long)]
    quick: bool,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The full run of everything: 1000 accounts, 1M-row export, 10-minute soaks of 1000
    /// WebSocket and 500 WhatsApp accounts.
    All {
        #[arg(long, default_value_t = 0x11fe_11fe)]
        seed: u64,
    },
    /// Restore time vs bare connects, drop and stall detection, RSS per account.
    Supervise {
        #[arg(long, default_value_t = 1000)]
        accounts: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Single drops sampled for the latency percentiles.
        #[arg(long, default_value_t = 200)]
        drops: usize,
        /// Stalls sampled for the detection error.
        #[arg(long, default_value_t = 100)]
        stalls: usize,
    },
    /// Webhooks: a mass drop acknowledged by 3 endpoints vs bare POSTs; drop -> recorded p99
    /// with webhooks on vs off.
    Webhooks {
        #[arg(long, default_value_t = 1000)]
        accounts: usize,
        /// Single drops measured per side.
        #[arg(long, default_value_t = 200)]
        samples: usize,
    },
    /// TikTok creators: polling vs its budget, live start -> joined vs the poll interval, RSS.
    Tiktok {
        #[arg(long, default_value_t = 1000)]
        creators: usize,
        #[arg(long, default_value_t = 100)]
        lives: usize,
        #[arg(long, default_value_t = 10)]
        poll_seconds: u64,
        #[arg(long, default_value_t = 7200)]
        requests_per_minute: u32,
    },
    /// Fleets on a throwaway PostgreSQL: takeover after a kill and after a graceful stop vs
    /// the lease TTL, database load in steady state.
    Fleet {
        #[arg(long, default_value_t = 3000)]
        accounts: usize,
        #[arg(long, default_value_t = 3)]
        instances: usize,
        #[arg(long, default_value_t = 15)]
        ttl_seconds: u64,
    },
    /// CSV export vs `sqlite3 -csv` over the same query.
    Export {
        #[arg(long, default_value_t = 1_000_000)]
        rows: u64,
    },
    /// Chaos soak with invariant checks; exits non-zero on any violation.
    Soak {
        /// WebSocket accounts (0: none).
        #[arg(long, default_value_t = 1000)]
        accounts: usize,
        /// WhatsApp accounts, linked through the offline protocol peer (needs a test-peer build).
        #[arg(long, default_value_t = 0)]
        whatsapp: usize,
        #[arg(long, default_value_t = 10.0)]
        minutes: f64,
        #[arg(long, default_value_t = 0x11fe_11fe)]
        seed: u64,
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
    #[command(hide = true)]
    Restore {
        addr: String,
        n: usize,
        concurrency: usize,
    },
    /// (child) Export every session of a database to a file.
    #[command(hide = true)]
    ExportChild { db: PathBuf, out: PathBuf },
    /// (child) Create a database with this many sessions.
    #[command(hide = true)]
    ExportFill { db: PathBuf, rows: u64 },
}

/// The sizes of one harness run.
struct Sizes {
    supervise: supervise::Plan,
    /// Accounts and single-drop samples of the webhook benchmark.
    webhooks: (usize, usize),
    tiktok: tiktok::Plan,
    fleet: fleet::Plan,
    export_rows: u64,
    soak: soak::Plan,
    whatsapp: soak::Plan,
}

const QUICK: Sizes = Sizes {
    supervise: supervise::Plan {
        accounts: 200,
        concurrency: 32,
        drops: 50,
        stalls: 50,
    },
    webhooks: (200, 50),
    tiktok: tiktok::Plan {
        creators: 200,
        lives: 20,
        poll_interval: Duration::from_secs(5),
        requests_per_minute: 3000,
        window: Duration::from_secs(15),
    },
    fleet: fleet::Plan {
        accounts: 300,
        instances: 3,
        ttl: Duration::from_secs(3),
        store_accounts: 1000,
    },
    export_rows: 200_000,
    soak: soak::Plan {
        accounts: 200,
        duration: Duration::from_secs(60),
        seed: 0x11fe_11fe,
    },
    whatsapp: soak::Plan {
        accounts: 200,
        duration: Duration::from_secs(120),
        seed: 0x11fe_11fe,
    },
};

fn full(seed: u64) -> Sizes {
    Sizes {
        supervise: supervise::Plan {
            accounts: 1000,
            concurrency: 32,
            drops: 200,
            stalls: 100,
        },
        webhooks: (1000, 200),
        tiktok: tiktok_plan(1000, 100, 10, 7200),
        fleet: fleet::Plan {
            accounts: 3000,
            instances: 3,
            ttl: lifeline_fleet::DEFAULT_TTL,
            store_accounts: 1000,
        },
        export_rows: 1_000_000,
        soak: soak::Plan {
            accounts: 1000,
            duration: Duration::from_secs(600),
            seed,
        },
        whatsapp: soak::Plan {
            accounts: 500,
            duration: Duration::from_secs(600),
            seed,
        },
    }
}

fn tiktok_plan(creators: usize, lives: usize, poll_seconds: u64, rpm: u32) -> tiktok::Plan {
    let poll_interval = Duration::from_secs(poll_seconds.max(1));
    tiktok::Plan {
        creators,
        lives,
        poll_interval,
        requests_per_minute: rpm,
        window: (poll_interval * 3).max(Duration::from_secs(15)),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("lifeline-bench: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(args)) {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("lifeline-bench: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs what was asked; `Ok(false)` when the soak found violations.
async fn run(args: Args) -> anyhow::Result<bool> {
    let sizes = match (args.quick, args.command) {
        (true, None) => QUICK,
        (false, Some(Cmd::All { seed })) => full(seed),
        (true, Some(_)) => anyhow::bail!("--quick runs everything; give it no subcommand"),
        (false, None) => {
            anyhow::bail!(
                "say what to run: --quick, all, supervise, webhooks, export, tiktok, fleet or soak (see --help)"
            )
        }
        (false, Some(Cmd::SimServer)) => return supervise::sim_server().await.map(|()| true),
        (
            false,
            Some(Cmd::Bare {
                addr,
                n,
                concurrency,
            }),
        ) => {
            return supervise::bare(&addr, n, concurrency).await.map(|()| true);
        }
        (
            false,
            Some(Cmd::Restore {
                addr,
                n,
                concurrency,
            }),
        ) => {
            return supervise::restore(&addr, n, concurrency)
                .await
                .map(|()| true);
        }
        (false, Some(Cmd::ExportChild { db, out })) => {
            return export::child(&db, &out).await.map(|()| true);
        }
        (false, Some(Cmd::ExportFill { db, rows })) => {
            return export::fill(&db, rows).await.map(|()| true);
        }
        (
            false,
            Some(Cmd::Supervise {
                accounts,
                concurrency,
                drops,
                stalls,
            }),
        ) => {
            let rows = supervise::run(supervise::Plan {
                accounts,
                concurrency,
                drops,
                stalls,
            })
            .await?;
            print_table("supervision", &rows);
            return Ok(true);
        }
        (false, Some(Cmd::Webhooks { accounts, samples })) => {
            anyhow::ensure!(
                accounts > 0 && samples > 0,
                "give --accounts and --samples at least 1"
            );
            let rows = webhooks::run(accounts, samples).await?;
            print_table("webhooks", &rows);
            return Ok(true);
        }
        (
            false,
            Some(Cmd::Tiktok {
                creators,
                lives,
                poll_seconds,
                requests_per_minute,
            }),
        ) => {
            anyhow::ensure!(
                requests_per_minute > 0,
                "--requests-per-minute must be at least 1"
            );
            let rows = tiktok::run(tiktok_plan(
                creators,
                lives,
                poll_seconds,
                requests_per_minute,
            ))
            .await?;
            print_table("tiktok", &rows);
            return Ok(true);
        }
        (
            false,
            Some(Cmd::Fleet {
                accounts,
                instances,
                ttl_seconds,
            }),
        ) => {
            ensure_ttl(ttl_seconds)?;
            let rows = fleet::run(fleet::Plan {
                accounts,
                instances,
                ttl: Duration::from_secs(ttl_seconds),
                store_accounts: 1000,
            })
            .await?;
            print_table("fleet", &rows);
            return Ok(true);
        }
        (false, Some(Cmd::Export { rows })) => {
            let rows = export::run(rows).await?;
            print_table("export", &rows);
            return Ok(true);
        }
        (
            false,
            Some(Cmd::Soak {
                accounts,
                whatsapp,
                minutes,
                seed,
            }),
        ) => {
            anyhow::ensure!(
                accounts + whatsapp > 0,
                "give --accounts or --whatsapp at least 1"
            );
            anyhow::ensure!(
                minutes.is_finite() && minutes > 0.0,
                "--minutes must be a positive number"
            );
            let duration = Duration::from_secs_f64(minutes * 60.0);
            let plan = |accounts| soak::Plan {
                accounts,
                duration,
                seed,
            };
            let mut outcome = soak::Outcome::default();
            if accounts > 0 {
                outcome.merge(soak::run(plan(accounts)).await?);
            }
            if whatsapp > 0 {
                outcome.merge(whatsapp_soak(plan(whatsapp), true).await?);
            }
            print_table("chaos soak", &outcome.rows);
            return Ok(print_verdict(&outcome));
        }
    };
    let started = std::time::Instant::now();
    // Export first: its peak-RSS figures need a small parent (see export.rs).
    let mut rows = export::run(sizes.export_rows).await?;
    rows.extend(supervise::run(sizes.supervise).await?);
    rows.extend(webhooks::run(sizes.webhooks.0, sizes.webhooks.1).await?);
    rows.extend(tiktok::run(sizes.tiktok).await?);
    rows.extend(fleet::run(sizes.fleet).await?);
    let mut outcome = soak::run(sizes.soak).await?;
    outcome.merge(whatsapp_soak(sizes.whatsapp, false).await?);
    rows.extend(outcome.rows.iter().cloned());
    print_table(
        &format!("all benchmarks ({:.0} s)", started.elapsed().as_secs_f64()),
        &rows,
    );
    Ok(print_verdict(&outcome))
}

fn ensure_ttl(seconds: u64) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=3600).contains(&seconds),
        "--ttl-seconds must be between 1 and 3600"
    );
    Ok(())
}

/// The WhatsApp soak, in a build that has it. Elsewhere: an error when it was asked for by
/// name (`required`), else one line saying it was left out.
async fn whatsapp_soak(plan: soak::Plan, required: bool) -> anyhow::Result<soak::Outcome> {
    #[cfg(feature = "wa-soak")]
    {
        let _ = required;
        soak_wa::run(plan).await
    }
    #[cfg(not(feature = "wa-soak"))]
    {
        let why = "this lifeline-bench has no WhatsApp peer; build it apart with \
                   `cargo build --release -p lifeline-bench --features test-peer`";
        anyhow::ensure!(!required, "--whatsapp {}: {why}", plan.accounts);
        eprintln!("lifeline-bench: WhatsApp soak left out: {why}");
        Ok(soak::Outcome::default())
    }
}

fn print_table(title: &str, rows: &[Row]) {
    println!();
    println!("lifeline-bench: {title}, {}", machine());
    print!("{}", table::render(rows));
}

/// The soak's summary lines and its violations; true when there were none.
fn print_verdict(outcome: &soak::Outcome) -> bool {
    println!("duplicates: {}", outcome.duplicates);
    println!("panics: {}", outcome.panics);
    for v in &outcome.violations {
        println!("violation: {v}");
    }
    outcome.violations.is_empty()
}

/// Cores and CPU model, so a table says where it was measured.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    format!("{cores} cores, {model}")
}
