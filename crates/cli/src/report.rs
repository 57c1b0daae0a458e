//! Read-only commands: `account list`, `status`, `health`. They read the store (the recorded
//! states), so they work the same with or without a supervisor running.

use std::io::Write;

use lifeline_engine::fleet::{AccountView, Counts};
use lifeline_engine::report;
use lifeline_engine::time::rfc3339;
use lifeline_engine::{DataDir, Error, Store};
use serde_json::json;

use crate::commands::{print_json, stdout_err};
use crate::words;

type Result<T = ()> = std::result::Result<T, Error>;

pub async fn list(store: &Store, as_json: bool) -> Result {
    let accounts = store.accounts().await?;
    if as_json {
        return print_json(&accounts);
    }
    if accounts.is_empty() {
        println!(
            "No accounts yet. Add one with `lifeline account add --kind websocket --name NAME --url ws://…`."
        );
        return Ok(());
    }
    let header = [
        "ID", "NAME", "KIND", "STATE", "DESIRED", "PRIORITY", "ENDPOINT",
    ];
    let rows: Vec<Vec<String>> = accounts
        .iter()
        .map(|a| {
            vec![
                a.id.to_string(),
                a.name.clone(),
                a.kind.to_string(),
                words::state_cell(&a.state),
                if a.desired_running {
                    "running"
                } else {
                    "stopped"
                }
                .into(),
                a.priority.to_string(),
                // A linked WhatsApp number: which phone it is.
                match (&a.url, &a.identity) {
                    (Some(url), _) => url.clone(),
                    (None, Some(who)) => match &who.name {
                        Some(name) => format!("WhatsApp {} · {name}", who.id),
                        None => format!("WhatsApp {}", who.id),
                    },
                    (None, None) => "WhatsApp".into(),
                },
            ]
        })
        .collect();
    table(&header, &rows)
}

/// Prints rows under a header, each column as wide as its widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> Result {
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for row in std::iter::once(&header).chain(rows) {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end()).map_err(stdout_err)?;
    }
    Ok(())
}

pub async fn status(dir: &DataDir, store: &Store, as_json: bool) -> Result {
    let accounts = store.accounts().await?;
    let autorecover = store.autorecover().await?;
    let supervisor = dir.supervisor();
    let last_run = store.last_run().await?;
    let counts = Counts::of_states(accounts.iter().map(|a| (a.state.kind(), a.desired_running)));
    if as_json {
        return print_json(&json!({
            "data_dir": dir.root(),
            "database": store.location(),
            "supervisor": { "running": supervisor.is_some(), "pid": supervisor.filter(|p| *p != 0) },
            "last_run": last_run,
            "autorecover": autorecover,
            "accounts": counts.total,
            "desired_running": counts.desired,
            "needs_operator": counts.needs_operator,
            "by_state": counts.by_state_names(),
        }));
    }
    println!("Data dir:     {}", dir.root().display());
    println!("Database:     {}", store.location());
    let supervisor_line = match (supervisor, last_run) {
        (Some(pid), _) if pid != 0 => format!("running (pid {pid})"),
        (Some(_), _) => "running".to_owned(),
        (None, None) => "not running (never started)".to_owned(),
        (None, Some(run)) if run.clean => format!(
            "not running (last run stopped cleanly at {})",
            run.ended_at.map(rfc3339).unwrap_or_default()
        ),
        (None, Some(run)) => format!(
            "not running (last run, started {}, did not stop cleanly)",
            rfc3339(run.started_at)
        ),
    };
    println!("Supervisor:   {supervisor_line}");
    println!("Autorecover:  {}", if autorecover { "on" } else { "off" });
    println!(
        "Accounts:     {} ({} desired running, {} need you)",
        counts.total, counts.desired, counts.needs_operator
    );
    let by_state: Vec<String> = counts
        .by_state
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if !by_state.is_empty() {
        println!("States:       {}", by_state.join(" · "));
    }
    Ok(())
}

/// Prints fleet health. Exit 1 (as an error) when the verdict is unhealthy: a desired account is
/// not connected, or no supervisor runs to keep it so.
pub async fn health(dir: &DataDir, store: &Store, as_json: bool) -> Result {
    let running = dir.supervisor().is_some();
    let breakers = store.breakers().await?;
    let views: Vec<AccountView> = store
        .accounts()
        .await?
        .iter()
        .map(|a| AccountView::stored(a, &breakers.get(&a.id).cloned().unwrap_or_default()))
        .collect();
    let r = report::fleet_health(store, chrono::Utc::now(), &views).await?;
    let verdict = r.counts.unhealthy(running);
    if as_json {
        let mut v = serde_json::to_value(&r).map_err(|e| Error::Decode(e.to_string()))?;
        v["supervisor_running"] = json!(running);
        print_json(&v)?;
    } else {
        println!(
            "Fleet: {}/{} desired accounts connected · score {} · uptime 24h {:.1}% · {} breaker(s) open · supervisor {}",
            r.desired_connected,
            r.desired_running,
            r.fleet_score,
            r.fleet_uptime_24h_pct,
            r.breakers_open,
            if running { "running" } else { "NOT running" }
        );
        for a in &r.accounts {
            println!(
                "  {:>5}  {:<24}  {:<28}  score {:>3}  uptime {:>5.1}%  breaker {}{}",
                a.id.0,
                a.name,
                words::state_cell(&a.state),
                a.score,
                a.uptime_24h_pct,
                a.breaker,
                if a.desired_running {
                    ""
                } else {
                    "  (not desired)"
                }
            );
        }
    }
    match verdict {
        Some(u) => Err(Error::Unhealthy(words::unhealthy(&u))),
        None => Ok(()),
    }
}
