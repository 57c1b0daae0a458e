//! CSV export against `sqlite3 -csv` running the same query on the same database, in the same
//! run: wall time ratio (target <= 1.5x) and the peak RSS of each process (flat memory).
//! Lifeline's side runs in a child process (this binary re-executed) through the engine's
//! `export_to_path`, the code behind `lifeline export`.
//!
//! Peak RSS comes from wait4(2), and Linux carries a parent's high-water mark into a child it
//! spawns (exec records the replaced memory map's peak). So this part runs first, while the
//! harness is still small, and the database is filled in a child too.
#![allow(unsafe_code)] // wait4(2) is the only way to read a child's peak RSS.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use lifeline_engine::Store;
use lifeline_engine::export::{ExportFilter, ExportKind, SESSIONS_SQL, export_to_path};

use crate::table::Row;

const RUNS: usize = 3;

struct Measured {
    wall: Duration,
    max_rss_kb: i64,
}

/// (child) Exports every session of `db` to `out`.
pub async fn child(db: &Path, out: &Path) -> anyhow::Result<()> {
    let store = Store::open_path(db).await?;
    export_to_path(
        &store,
        ExportKind::Sessions,
        ExportFilter::default(),
        out,
        |_| {},
    )
    .await?;
    store.close().await;
    Ok(())
}

pub async fn run(rows: u64) -> anyhow::Result<Vec<Row>> {
    Command::new("sqlite3")
        .arg("-version")
        .stdout(Stdio::null())
        .status()
        .context("the export benchmark compares against the sqlite3 command: install it (Debian package sqlite3)")?;
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    let db = dir.join("lifeline.db");
    let setup = Instant::now();
    let exe = std::env::current_exe()?;
    measure(
        Command::new(&exe)
            .arg("export-fill")
            .arg(&db)
            .arg(rows.to_string())
            .stdout(Stdio::null()),
    )?;
    eprintln!("export: filled {rows} sessions in {:.1?}", setup.elapsed());

    let now_ms = chrono::Utc::now().timestamp_millis();
    let script = dir.join("query.sql");
    std::fs::write(
        &script,
        format!(".parameter init\n.parameter set ?4 {now_ms}\n{SESSIONS_SQL};\n"),
    )?;
    let ours_out = dir.join("ours.csv");
    let theirs_out = dir.join("sqlite3.csv");
    let mut ours = Vec::new();
    let mut theirs = Vec::new();
    for _ in 0..RUNS {
        theirs.push(measure(
            Command::new("sqlite3")
                .args(["-csv", "-header"])
                .arg(&db)
                .stdin(File::open(&script)?)
                .stdout(File::create(&theirs_out)?),
        )?);
        ours.push(measure(
            Command::new(&exe)
                .arg("export-child")
                .arg(&db)
                .arg(&ours_out)
                .stdout(Stdio::null()),
        )?);
    }
    let lines = |p: &Path| -> anyhow::Result<usize> {
        Ok(std::fs::read(p)?.iter().filter(|b| **b == b'\n').count())
    };
    let (ours_lines, theirs_lines) = (lines(&ours_out)?, lines(&theirs_out)?);
    anyhow::ensure!(
        ours_lines == theirs_lines && ours_lines as u64 == rows + 1,
        "row counts differ: lifeline {ours_lines}, sqlite3 {theirs_lines}, expected {}",
        rows + 1
    );
    let median = |v: &mut Vec<Measured>| {
        v.sort_by_key(|m| m.wall);
        (
            v[v.len() / 2].wall.as_secs_f64(),
            v.iter().map(|m| m.max_rss_kb).max().unwrap_or(0) as f64 / 1024.0,
        )
    };
    let (theirs_wall, theirs_rss) = median(&mut theirs);
    let (ours_wall, ours_rss) = median(&mut ours);
    Ok(vec![
        Row::ratio(
            format!("CSV export of {rows} sessions (vs sqlite3 -csv)"),
            ours_wall,
            theirs_wall,
            "s",
            "<= 1.0x",
        ),
        Row::ratio(
            "CSV export peak RSS (vs sqlite3 -csv)",
            ours_rss,
            theirs_rss,
            "MB",
            "flat, < 50 MB",
        ),
    ])
}

/// (child) Creates the schema through the engine, then bulk-inserts sessions spread over 1000
/// accounts.
pub async fn fill(db: &Path, rows: u64) -> anyhow::Result<()> {
    let store = Store::open_path(db).await?;
    let pool = store.sqlite_pool().context("an SQLite store")?;
    let base: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
         INSERT INTO accounts (kind, name, url, state_since, created_at) \
         SELECT 'websocket', 'Toko ' || i || ' 🍜', 'ws://127.0.0.1:9000/s/' || i, ?1, ?1 FROM n",
    )
    .bind(base)
    .execute(pool)
    .await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?2) \
         INSERT INTO sessions (account_id, started_at, ended_at, end_reason) \
         SELECT (i % 1000) + 1, ?1 + i * 1000, ?1 + i * 1000 + 500 + (i % 7) * 97, \
                CASE i % 3 WHEN 0 THEN 'stalled' WHEN 1 THEN 'closed-by-peer' ELSE 'timeout' END FROM n",
    )
    .bind(base)
    .bind(rows as i64)
    .execute(pool)
    .await?;
    store.close().await;
    Ok(())
}

/// Runs a command to completion and reads its wall time and peak RSS (ru_maxrss, KiB).
fn measure(cmd: &mut Command) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let child = cmd.stderr(Stdio::inherit()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: zeroed rusage is a valid value; wait4 writes it for our own child pid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    anyhow::ensure!(
        reaped == pid,
        "wait4 failed: {}",
        std::io::Error::last_os_error()
    );
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed with status {status}"
    );
    Ok(Measured {
        wall,
        max_rss_kb: usage.ru_maxrss,
    })
}
