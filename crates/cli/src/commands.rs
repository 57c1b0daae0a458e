//! One function per command: parse what the engine needs, call it, print the result.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use lifeline_engine::export::{self, ExportFilter, ExportKind};
use lifeline_engine::model::{Account, HeaderRef, NewAccount, SecretName};
use lifeline_engine::secrets::{self, KeyringSecretStore, SecretValue};
use lifeline_engine::time::{parse_time, rfc3339};
use lifeline_engine::{
    AccountId, DataDir, Error, InputError, StateKind, Store, TimeRange, TriggeredBy,
};
use serde_json::json;

use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::policy::breaker::Breaker;
use lifeline_engine::report;
use lifeline_engine::supervisor::queue::{self, Queued};

use crate::args::{
    AccountCommand, AddArgs, AutorecoverMode, Cli, Command, ExportArgs, PolicyCommand,
    SecretCommand, Target, WhatArg,
};

type Result<T = ()> = std::result::Result<T, Error>;

pub async fn run(cli: Cli) -> Result {
    let dir = DataDir::resolve(cli.data_dir)?;
    let store = Store::open(&dir).await?;
    let db = store.path().to_owned();
    // A damaged page that opening did not read surfaces on a query: name the file all the same.
    dispatch(&dir, store, cli.command)
        .await
        .map_err(|e| e.in_database(&db))
}

async fn dispatch(dir: &DataDir, store: Store, command: Command) -> Result {
    let outcome = match command {
        Command::Account(AccountCommand::Add(a)) => account_add(&store, a).await,
        Command::Account(AccountCommand::List { json }) => account_list(&store, json).await,
        Command::Account(AccountCommand::Remove { id }) => account_remove(&store, id).await,
        Command::Autorecover { mode } => autorecover(&store, mode).await,
        Command::Export(a) => export(&store, a).await,
        Command::Secret(c) => secret(&store, c).await,
        Command::Status { json } => status(dir, &store, json).await,
        Command::Policy(c) => policy(dir, &store, c).await,
        Command::Link { id, phone } => return crate::link::link(dir, store, id, phone).await,
        Command::Serve(a) => return crate::serve::serve(dir, store, a).await,
        Command::Start(t) => start_stop(dir, &store, t, true).await,
        Command::Stop(t) => start_stop(dir, &store, t, false).await,
        Command::Retry { id } => retry(dir, &store, id).await,
        Command::Reset(t) => reset(dir, &store, t).await,
        Command::Health { json } => return health(dir, &store, json).await,
    };
    store.close().await;
    outcome
}

async fn account_add(store: &Store, a: AddArgs) -> Result {
    let mut new = NewAccount::new(a.kind.into(), a.name);
    new.url = a.url;
    new.priority = a.priority;
    new.country = a.country;
    new.proxy_url = a.proxy;
    new.proxy_secret = a
        .proxy_secret
        .as_deref()
        .map(SecretName::parse)
        .transpose()?;
    new.headers = a
        .headers
        .iter()
        .map(|h| HeaderRef::parse(h))
        .collect::<std::result::Result<_, _>>()?;
    new.muted = a.muted;
    new.desired_running = !a.stopped;
    let account = store.add_account(new).await?;
    queue::enqueue(store, Queued::Add, Some(account.id)).await?;
    println!("{}", account.id);
    Ok(())
}

async fn account_list(store: &Store, as_json: bool) -> Result {
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
    let rows: Vec<[String; 7]> = accounts.iter().map(list_row).collect();
    let header = [
        "ID", "NAME", "KIND", "STATE", "DESIRED", "PRIORITY", "ENDPOINT",
    ]
    .map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end()).map_err(stdout_err)?;
    }
    Ok(())
}

fn list_row(a: &Account) -> [String; 7] {
    let state = match a.state.reason() {
        Some(r) => format!("{} ({})", a.state.kind(), r.code()),
        None => a.state.kind().to_string(),
    };
    [
        a.id.to_string(),
        a.name.clone(),
        a.kind.to_string(),
        state,
        if a.desired_running {
            "running"
        } else {
            "stopped"
        }
        .into(),
        a.priority.to_string(),
        a.url.clone().unwrap_or_else(|| "WhatsApp".into()),
    ]
}

async fn account_remove(store: &Store, id: i64) -> Result {
    let account = store
        .remove_account(AccountId(id), TriggeredBy::Operator)
        .await?;
    // A running supervisor closes the connection (and its connector forgets the account)…
    queue::enqueue(store, Queued::Remove, Some(account.id)).await?;
    // …and with none running, the WhatsApp device keys still go now.
    if account.kind == lifeline_engine::AccountKind::Whatsapp {
        let data_dir = store.path().parent().unwrap_or(std::path::Path::new("."));
        let keys = lifeline_whatsapp::device::path(data_dir, account.id);
        lifeline_whatsapp::device::wipe(&keys)
            .map_err(|source| Error::Write { path: keys, source })?;
    }
    println!(
        "Removed account {} '{}'. Its history stays in exports.",
        account.id, account.name
    );
    Ok(())
}

async fn autorecover(store: &Store, mode: AutorecoverMode) -> Result {
    match mode {
        AutorecoverMode::On => store.set_autorecover(true).await?,
        AutorecoverMode::Off => store.set_autorecover(false).await?,
        AutorecoverMode::Status => {}
    }
    let on = store.autorecover().await?;
    println!("autorecover: {}", if on { "on" } else { "off" });
    Ok(())
}

async fn export(store: &Store, a: ExportArgs) -> Result {
    let since = a.since.as_deref().map(parse_time).transpose()?;
    let until = a.until.as_deref().map(parse_time).transpose()?;
    let filter = ExportFilter {
        account: a.account.map(AccountId),
        range: TimeRange::new(since, until)?,
    };
    let kind = match a.what {
        WhatArg::Sessions => ExportKind::Sessions,
        WhatArg::Events => ExportKind::Events,
    };
    let show_progress = std::io::stderr().is_terminal();
    let progress = move |n: u64| {
        if show_progress {
            eprint!("\r{n} rows…");
        }
    };
    if a.out == Path::new("-") {
        let stdout = std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout());
        export::export_csv(store, kind, filter, stdout, progress).await?;
        return Ok(());
    }
    let rows = export::export_to_path(store, kind, filter, &a.out, progress).await?;
    if show_progress {
        eprint!("\r");
    }
    eprintln!("Exported {rows} rows to {}", a.out.display());
    Ok(())
}

async fn secret(store: &Store, c: SecretCommand) -> Result {
    let keyring = KeyringSecretStore;
    match c {
        SecretCommand::Set { name } => {
            let name = SecretName::parse(&name)?;
            let value = read_secret_value(&name)?;
            secrets::set_secret(store, &keyring, &name, value).await?;
            println!("Secret '{name}' stored in the OS keyring.");
        }
        SecretCommand::Delete { name } => {
            let name = SecretName::parse(&name)?;
            secrets::delete_secret(store, &keyring, &name).await?;
            println!("Secret '{name}' deleted.");
        }
        SecretCommand::List => {
            for name in store.secret_names().await? {
                println!("{name}");
            }
        }
    }
    Ok(())
}

/// Reads the value from a hidden prompt on a terminal, or all of standard input otherwise
/// (one trailing newline removed, so `echo token | lifeline secret set x` works).
fn read_secret_value(name: &SecretName) -> Result<SecretValue> {
    let stdin_err = |source| Error::Read {
        what: "the secret value from standard input".into(),
        source,
    };
    let mut value = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(format!("Value for secret '{name}' (not shown): "))
            .map_err(stdin_err)?
    } else {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(stdin_err)?;
        s
    };
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    if value.is_empty() {
        return Err(InputError::EmptySecret.into());
    }
    Ok(SecretValue::new(value))
}

async fn status(dir: &DataDir, store: &Store, as_json: bool) -> Result {
    let accounts = store.accounts().await?;
    let autorecover = store.autorecover().await?;
    let supervisor = dir.supervisor();
    let last_run = store.last_run().await?;
    let mut by_state: BTreeMap<StateKind, usize> =
        StateKind::ALL.into_iter().map(|k| (k, 0)).collect();
    for a in &accounts {
        *by_state.entry(a.state.kind()).or_default() += 1;
    }
    let desired = accounts.iter().filter(|a| a.desired_running).count();
    if as_json {
        return print_json(&json!({
            "data_dir": dir.root(),
            "database": store.path(),
            "supervisor": { "running": supervisor.is_some(), "pid": supervisor.filter(|p| *p != 0) },
            "last_run": last_run,
            "autorecover": autorecover,
            "accounts": accounts.len(),
            "desired_running": desired,
            "by_state": by_state.iter().map(|(k, n)| (k.as_str(), n)).collect::<BTreeMap<_, _>>(),
        }));
    }
    println!("Data dir:     {}", dir.root().display());
    println!("Database:     {}", store.path().display());
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
        "Accounts:     {} ({desired} desired running)",
        accounts.len()
    );
    let counts: Vec<String> = by_state
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    if !counts.is_empty() {
        println!("States:       {}", counts.join(" · "));
    }
    Ok(())
}

async fn policy(dir: &DataDir, store: &Store, c: PolicyCommand) -> Result {
    let cfg = match c {
        PolicyCommand::Show => return print_json(&store.policy().await?),
        // Never reads the stored values: reset is the way out when they are unusable.
        PolicyCommand::Reset => PolicyConfig::default(),
        PolicyCommand::Set { assignment } => assign(&store.policy().await?, &assignment)?,
    };
    store.set_policy(&cfg).await?;
    let note = if dir.supervisor().is_some() {
        " Restart the running supervisor to apply it."
    } else {
        ""
    };
    println!("Policy saved.{note}");
    Ok(())
}

/// Applies `section.key=value` to a policy, refusing unknown keys and invalid values.
fn assign(cfg: &PolicyConfig, assignment: &str) -> Result<PolicyConfig> {
    let bad = |why: String| InputError::InvalidSetting {
        key: "policy".into(),
        value: assignment.to_owned(),
        why,
    };
    let (key, value) = assignment
        .split_once('=')
        .ok_or_else(|| bad("write it as section.key=value, e.g. pacing.rate_per_s=3".into()))?;
    let mut json = serde_json::to_value(cfg).map_err(|e| Error::Decode(e.to_string()))?;
    let mut slot = &mut json;
    let mut path: Vec<&str> = Vec::new();
    for part in key.trim().split('.') {
        let Some(keys) = slot
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
        else {
            return Err(bad(format!(
                "'{}' is a value, not a section; write {}=VALUE",
                path.join("."),
                path.join(".")
            ))
            .into());
        };
        slot = slot.get_mut(part).ok_or_else(|| {
            bad(format!(
                "unknown key '{part}'; known here: {}",
                keys.join(", ")
            ))
        })?;
        path.push(part);
    }
    if slot.is_object() {
        return Err(bad(format!("'{key}' is a section; name one of its values")).into());
    }
    *slot = serde_json::from_str(value.trim())
        .map_err(|_| bad(format!("'{}' is not a number or true/false", value.trim())))?;
    let cfg: PolicyConfig = serde_json::from_value(json).map_err(|e| bad(e.to_string()))?;
    cfg.validate()?;
    Ok(cfg)
}

/// Says whether a running supervisor will act on what was just queued.
fn supervisor_note(dir: &DataDir, when_absent: &str) -> String {
    match dir.supervisor() {
        Some(pid) if pid != 0 => {
            format!("the running supervisor (pid {pid}) applies it within a second")
        }
        Some(_) => "the running supervisor applies it within a second".into(),
        None => when_absent.into(),
    }
}

fn targets(t: &Target) -> Option<AccountId> {
    if t.all { None } else { t.id.map(AccountId) }
}

async fn start_stop(dir: &DataDir, store: &Store, t: Target, start: bool) -> Result {
    let verb = if start { "start" } else { "stop" };
    match targets(&t) {
        Some(id) => {
            store.set_desired_running(id, start).await?;
            queue::enqueue(
                store,
                if start { Queued::Start } else { Queued::Stop },
                Some(id),
            )
            .await?;
            println!(
                "Account {id}: {verb} requested; {}.",
                supervisor_note(
                    dir,
                    "no supervisor is running, so it takes effect when `lifeline serve` starts"
                )
            );
        }
        None => {
            let accounts = store.accounts().await?;
            for a in &accounts {
                store.set_desired_running(a.id, start).await?;
            }
            queue::enqueue(
                store,
                if start {
                    Queued::StartAll
                } else {
                    Queued::StopAll
                },
                None,
            )
            .await?;
            println!(
                "{} accounts: {verb} requested; {}.",
                accounts.len(),
                supervisor_note(
                    dir,
                    "no supervisor is running, so it takes effect when `lifeline serve` starts"
                )
            );
        }
    }
    Ok(())
}

async fn retry(dir: &DataDir, store: &Store, id: i64) -> Result {
    let id = AccountId(id);
    store.account(id).await?;
    store.set_desired_running(id, true).await?;
    queue::enqueue(store, Queued::Retry, Some(id)).await?;
    println!(
        "Account {id}: retry requested; {}.",
        supervisor_note(
            dir,
            "no supervisor is running, so it connects when `lifeline serve` starts"
        )
    );
    Ok(())
}

async fn reset(dir: &DataDir, store: &Store, t: Target) -> Result {
    let now = chrono::Utc::now();
    let ids: Vec<AccountId> = match targets(&t) {
        Some(id) => {
            store.account(id).await?;
            vec![id]
        }
        None => store.accounts().await?.iter().map(|a| a.id).collect(),
    };
    // Reset in the store too, so it holds even with no supervisor running.
    for id in &ids {
        store.save_breaker(*id, &Breaker::default(), now).await?;
    }
    match targets(&t) {
        Some(id) => queue::enqueue(store, Queued::Reset, Some(id)).await?,
        None => queue::enqueue(store, Queued::ResetAll, None).await?,
    }
    println!(
        "Breaker reset for {} account(s); {}.",
        ids.len(),
        supervisor_note(dir, "no supervisor is running")
    );
    Ok(())
}

/// Prints fleet health. Exit 1 (as an error) when a desired account is not connected or no
/// supervisor is running to keep it so.
async fn health(dir: &DataDir, store: &Store, as_json: bool) -> Result {
    let running = dir.supervisor().is_some();
    let r = report::fleet_health(store, chrono::Utc::now(), None).await?;
    store.close().await;
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
            let state = match a.state.reason() {
                Some(reason) => format!("{} ({})", a.state.kind(), reason.code()),
                None => a.state.kind().to_string(),
            };
            println!(
                "  {:>5}  {:<24}  {:<28}  score {:>3}  uptime {:>5.1}%  breaker {}{}",
                a.id.0,
                a.name,
                state,
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
    if !running && r.desired_running > 0 {
        return Err(Error::Unhealthy(
            "no supervisor is running on this data dir: start `lifeline serve`".into(),
        ));
    }
    if !r.healthy {
        return Err(Error::Unhealthy(format!(
            "{} of {} desired accounts are not connected",
            r.desired_running - r.desired_connected,
            r.desired_running
        )));
    }
    Ok(())
}

fn print_json<T: serde::Serialize>(value: &T) -> Result {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Decode(e.to_string()))?;
    writeln!(std::io::stdout().lock(), "{text}").map_err(stdout_err)
}

fn stdout_err(e: std::io::Error) -> Error {
    Error::Write {
        path: "standard output".into(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every `section.key` of the policy, as `policy show` prints them.
    fn leaves() -> Vec<(String, serde_json::Value)> {
        let json = serde_json::to_value(PolicyConfig::default()).expect("json");
        let mut out = Vec::new();
        for (section, values) in json.as_object().expect("sections") {
            for (key, value) in values.as_object().expect("values") {
                out.push((format!("{section}.{key}"), value.clone()));
            }
        }
        out
    }

    #[test]
    fn a_value_is_not_a_section() {
        let err = assign(&PolicyConfig::default(), "pacing.rate_per_s.x=1").expect_err("bad");
        assert!(
            err.to_string().contains("'pacing.rate_per_s' is a value"),
            "{err}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever is typed: a validated policy or an input error, never a panic.
        #[test]
        fn any_assignment_gives_a_valid_policy_or_an_input_error(
            key in prop_oneof![
                prop::sample::select(leaves()).prop_map(|(k, _)| k),
                "[a-z_.]{0,24}",
                any::<String>(),
            ],
            value in prop_oneof![
                any::<i64>().prop_map(|v| v.to_string()),
                any::<f64>().prop_map(|v| v.to_string()),
                Just("true".to_owned()),
                "[ -~]{0,12}",
                any::<String>(),
            ],
            sep in prop::sample::select(vec!["=", " = ", "==", ""]),
        ) {
            match assign(&PolicyConfig::default(), &format!("{key}{sep}{value}")) {
                Ok(cfg) => prop_assert!(cfg.validate().is_ok()),
                Err(e) => prop_assert!(e.is_input(), "{e}"),
            }
        }

        /// Writing back what `policy show` prints changes nothing, for every key.
        #[test]
        fn shown_values_assign_back_unchanged(leaf in prop::sample::select(leaves())) {
            let (key, value) = leaf;
            let cfg = PolicyConfig::default();
            prop_assert_eq!(assign(&cfg, &format!("{key}={value}")).ok(), Some(cfg));
        }
    }
}
