//! One function per command: turn the arguments into an engine value or operation, call the
//! operations layer (`ops::Queued`: through the running supervisor, or offline), print the result.

use std::io::{IsTerminal, Read, Write};
use std::path::Path;

use lifeline_engine::export::{self, ExportFilter, ExportKind};
use lifeline_engine::model::{AccountKind, HeaderRef, NewAccount, SecretName};
use lifeline_engine::ops::{Action, Control, Delivery, Queued, Target};
use lifeline_engine::policy::{PolicyConfig, Preset};
use lifeline_engine::secrets::{self, KeyringSecretStore, SecretValue};
use lifeline_engine::{AccountId, DataDir, Error, InputError, Store, TimeRange};
use lifeline_runtime::Parts;

use crate::args::{
    AccountCommand, AddArgs, AutorecoverMode, Cli, Command, ExportArgs, PolicyCommand,
    SecretCommand, StoreCommand, Target as TargetArg, WhatArg,
};
use crate::report;

type Result<T = ()> = std::result::Result<T, Error>;

pub async fn run(cli: Cli) -> Result {
    let dir = DataDir::resolve(cli.data_dir)?;
    let store = match &cli.store {
        None => Store::open(&dir).await?,
        Some(url) => Store::fleet(&crate::fleet::connect(url, &cli.password_secret, 16).await?),
    };
    let db = store.path().map(std::path::Path::to_owned);
    // A damaged page that opening did not read surfaces on a query: name the file all the same.
    dispatch(&dir, store, cli.command, &cli.password_secret)
        .await
        .map_err(|e| match &db {
            Some(db) => e.in_database(db),
            None => e,
        })
}

async fn dispatch(dir: &DataDir, store: Store, command: Command, password_secret: &str) -> Result {
    let ops = || Queued::new(dir.clone(), store.clone(), Parts::system(dir).connectors);
    let outcome = match command {
        Command::Account(AccountCommand::Add(a)) => account_add(&ops(), a).await,
        Command::Account(AccountCommand::List { json }) => report::list(&store, json).await,
        Command::Account(AccountCommand::Remove { id }) => account_remove(&ops(), id).await,
        Command::Autorecover { mode } => autorecover(&store, mode).await,
        Command::Export(a) => export(&store, a).await,
        Command::Secret(c) => secret(&store, c).await,
        Command::Fleet(c) => crate::fleet::run(&store, c).await,
        Command::Store(StoreCommand::MigrateTo { url }) => {
            crate::fleet::migrate_to(dir, &store, &url, password_secret).await
        }
        Command::Status { json } => report::status(dir, &store, json).await,
        Command::Policy(c) => policy(&ops(), &store, c).await,
        Command::Link { id, phone } => return crate::link::link(dir, store, id, phone).await,
        Command::Serve(a) => return crate::serve::serve(dir, store, a).await,
        Command::Start(t) => act(&ops(), Action::Start, &t).await,
        Command::Stop(t) => act(&ops(), Action::Stop, &t).await,
        Command::Retry { id } => {
            let t = TargetArg {
                id: Some(id),
                all: false,
            };
            act(&ops(), Action::Retry, &t).await
        }
        Command::Reset(t) => act(&ops(), Action::Reset, &t).await,
        Command::Health { json } => report::health(dir, &store, json).await,
        Command::Webhook(c) => crate::webhook::run(dir, &store, c).await,
    };
    store.close().await;
    outcome
}

async fn account_add(ops: &Queued, a: AddArgs) -> Result {
    let mut new = NewAccount::new(a.kind.into(), a.name);
    new.url = match (new.kind, a.user) {
        // A TikTok account keeps its creator's page as its URL (`--url` may give that page).
        (AccountKind::Tiktok, user) => user.or(a.url),
        (_, None) => a.url,
        (_, Some(_)) => return Err(InputError::UserNotAllowed.into()),
    };
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
    new.notify_live = a.notify_live;
    new.desired_running = !a.stopped;
    let account = ops.add(new).await?;
    println!("{}", account.id);
    if account.kind.links() {
        eprintln!(
            "Account {} '{}' waits to be linked: run `lifeline link {}` (or `--phone +…`) to scan its QR code; linking starts it.",
            account.id, account.name, account.id
        );
    }
    Ok(())
}

async fn account_remove(ops: &Queued, id: i64) -> Result {
    let account = ops.remove(AccountId(id)).await?;
    println!(
        "Removed account {} '{}'. Its history stays in exports.",
        account.id, account.name
    );
    Ok(())
}

/// Says where an operation took effect.
fn delivered(ops: &Queued) -> String {
    match ops.last_delivery() {
        Some(Delivery::Supervisor(Some(pid))) if pid != 0 => {
            format!("applied by the running supervisor (pid {pid})")
        }
        Some(Delivery::Supervisor(_)) => "applied by the running supervisor".into(),
        Some(Delivery::Offline) | None => {
            "no supervisor is running: it takes effect when `lifeline serve` starts".into()
        }
    }
}

async fn act(ops: &Queued, action: Action, t: &TargetArg) -> Result {
    let target = match (t.all, t.id) {
        (true, _) | (false, None) => Target::All,
        (false, Some(id)) => Target::One(AccountId(id)),
    };
    let n = ops.act(action, target).await?;
    let done = match action {
        Action::Start => "start",
        Action::Stop => "stop",
        Action::Retry => "retry",
        Action::Reset => "breaker reset",
        Action::Check => "check",
    };
    match target {
        Target::One(id) => println!("Account {id}: {done}; {}.", delivered(ops)),
        Target::All => println!("{n} accounts: {done}; {}.", delivered(ops)),
    }
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
    let filter = ExportFilter {
        account: a.account.map(AccountId),
        range: TimeRange::parse(a.since.as_deref(), a.until.as_deref())?,
    };
    let kind = match a.what {
        WhatArg::Sessions => ExportKind::Sessions,
        WhatArg::Events => ExportKind::Events,
        WhatArg::Lives => ExportKind::Lives,
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

async fn policy(ops: &Queued, store: &Store, c: PolicyCommand) -> Result {
    let cfg = match c {
        PolicyCommand::Show => return print_json(&store.policy().await?),
        // Never reads the stored values: reset is the way out when they are unusable.
        PolicyCommand::Reset => PolicyConfig::default(),
        PolicyCommand::Set { assignment } => store.policy().await?.assign(&assignment)?,
        PolicyCommand::Preset { name } => Preset::from(name).apply(&store.policy().await?),
        PolicyCommand::Changes { last } => {
            let mut out = String::new();
            for c in store.setting_changes(last).await? {
                let at =
                    c.at.with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S");
                let old = c.old.as_deref().unwrap_or("(unset)");
                out.push_str(&format!(
                    "{at}  {}: {old} → {}  by {}\n",
                    c.key,
                    c.new,
                    c.triggered_by.as_str()
                ));
            }
            if out.is_empty() {
                out.push_str("No setting has been changed yet.\n");
            }
            return std::io::stdout()
                .lock()
                .write_all(out.as_bytes())
                .map_err(stdout_err);
        }
    };
    let changes = ops.set_policy(cfg).await?;
    let mut out = String::new();
    for c in &changes {
        let old = c.old.as_deref().unwrap_or("(unreadable)");
        out.push_str(&format!("{}: {old} → {}\n", c.key, c.new));
    }
    out.push_str(match (changes.is_empty(), ops.last_delivery()) {
        (true, _) => "Nothing changed.\n",
        (false, Some(Delivery::Supervisor(_))) => {
            "Policy saved and in force in the running supervisor.\n"
        }
        (false, _) => "Policy saved; it is in force whenever Lifeline supervises.\n",
    });
    std::io::stdout()
        .lock()
        .write_all(out.as_bytes())
        .map_err(stdout_err)
}

pub fn print_json<T: serde::Serialize>(value: &T) -> Result {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Decode(e.to_string()))?;
    writeln!(std::io::stdout().lock(), "{text}").map_err(stdout_err)
}

pub fn stdout_err(e: std::io::Error) -> Error {
    Error::Write {
        path: "standard output".into(),
        source: e,
    }
}
