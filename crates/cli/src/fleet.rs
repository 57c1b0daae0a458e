//! `lifeline fleet`: the fleet key in this host's keyring, and the state of a fleet store (its
//! instances, their leases and heartbeats, the fleet's totals). `lifeline store migrate-to`:
//! this machine's store into a fleet store.

use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;

use lifeline_engine::model::SecretName;
use lifeline_engine::secrets::{self, KeyringSecretStore, SecretValue};
use lifeline_engine::{DataDir, Error, InputError, Store};
use lifeline_fleet::{DEFAULT_TTL, FleetKey, FleetStore, StoreUrl};

use crate::args::{FleetCommand, FleetKeyCommand};

type Result<T = ()> = std::result::Result<T, Error>;

/// The keyring secret holding this host's fleet key.
pub const FLEET_KEY_SECRET: &str = lifeline_fleet::KEY_SECRET;

pub async fn run(store: &Store, c: FleetCommand) -> Result {
    match c {
        FleetCommand::Key(k) => key(store, k).await,
        FleetCommand::Status { json } => status(store, json).await,
    }
}

fn key_name() -> Result<SecretName> {
    Ok(SecretName::parse(FLEET_KEY_SECRET)?)
}

/// This host's fleet key, if it has one.
async fn host_key() -> Result<Option<FleetKey>> {
    let Some(value) = secrets::fetch(Arc::new(KeyringSecretStore), &key_name()?).await? else {
        return Ok(None);
    };
    Ok(Some(
        FleetKey::from_text(value.expose()).map_err(lifeline_fleet::Error::from)?,
    ))
}

fn refused(why: String) -> Error {
    InputError::Refused(why).into()
}

async fn key(store: &Store, c: FleetKeyCommand) -> Result {
    let here = host_key().await?;
    match c {
        FleetKeyCommand::New => {
            if let Some(k) = here {
                return Err(refused(format!(
                    "this host already has a fleet key ({}); a new one would leave every device store sealed with it unreadable",
                    k.fingerprint()
                )));
            }
            let key = FleetKey::generate().map_err(lifeline_fleet::Error::from)?;
            let value = SecretValue::new(key.to_text());
            secrets::set_secret(store, &KeyringSecretStore, &key_name()?, value).await?;
            println!(
                "New fleet key {} stored in the OS keyring (secret '{FLEET_KEY_SECRET}'). Give it to the fleet's other hosts: lifeline fleet key export | ssh HOST lifeline fleet key import",
                key.fingerprint()
            );
        }
        FleetKeyCommand::Export => {
            let key = here.ok_or_else(|| {
                refused(
                    "this host has no fleet key: make one with `lifeline fleet key new`, or import the fleet's".into(),
                )
            })?;
            if std::io::stdout().is_terminal() {
                return Err(refused(
                    "the fleet key is never shown on a terminal: pipe it to the other host, e.g. lifeline fleet key export | ssh HOST lifeline fleet key import".into(),
                ));
            }
            let mut out = std::io::stdout().lock();
            writeln!(out, "{}", key.to_text())
                .and_then(|()| out.flush())
                .map_err(|source| Error::Write {
                    path: "standard output".into(),
                    source,
                })?;
            eprintln!(
                "Fleet key {} written to standard output.",
                key.fingerprint()
            );
        }
        FleetKeyCommand::Import => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| Error::Read {
                    what: "the fleet key from standard input".into(),
                    source,
                })?;
            let key = FleetKey::from_text(&text).map_err(lifeline_fleet::Error::from)?;
            match here {
                Some(k) if k.fingerprint() == key.fingerprint() => {
                    println!("This host already has fleet key {}.", k.fingerprint());
                    return Ok(());
                }
                Some(k) => {
                    return Err(refused(format!(
                        "this host already has another fleet key ({}); nothing was changed",
                        k.fingerprint()
                    )));
                }
                None => {}
            }
            let value = SecretValue::new(key.to_text());
            secrets::set_secret(store, &KeyringSecretStore, &key_name()?, value).await?;
            println!(
                "Fleet key {} stored in the OS keyring (secret '{FLEET_KEY_SECRET}').",
                key.fingerprint()
            );
        }
        FleetKeyCommand::Show => match here {
            Some(k) => println!("{}", k.fingerprint()),
            None => println!("none"),
        },
    }
    Ok(())
}

/// Connects to the fleet store at `url` with the password kept in the keyring secret
/// `password_secret` (none there: connects without one).
pub async fn connect(url: &str, password_secret: &str, connections: u32) -> Result<FleetStore> {
    let url = StoreUrl::parse(url).map_err(Error::from)?;
    let name = SecretName::parse(password_secret)?;
    let password = secrets::fetch(Arc::new(KeyringSecretStore), &name).await?;
    FleetStore::connect_with(
        &url,
        password.as_ref().map(SecretValue::expose),
        connections,
    )
    .await
    .map_err(Error::from)
}

/// `lifeline store migrate-to URL`: this machine's store into an empty fleet store.
pub async fn migrate_to(dir: &DataDir, store: &Store, url: &str, password_secret: &str) -> Result {
    use lifeline_engine::store::migrate::{Progress, migrate_to_fleet};
    if store.is_fleet() {
        return Err(refused(
            "migrate-to copies this machine's own store: give the fleet store as its argument, not with --store".into(),
        ));
    }
    if let Some(pid) = dir.supervisor() {
        return Err(refused(format!(
            "a Lifeline supervisor (pid {pid}) runs on this data dir: quit the desktop app or stop `lifeline serve` first, so nothing changes during the copy; nothing was copied"
        )));
    }
    let fleet = connect(url, password_secret, 2).await?;
    let key = host_key().await?;
    let connectors = lifeline_runtime::Parts::system(dir).connectors;
    let terminal = std::io::stderr().is_terminal();
    let progress = move |p: Progress| match p {
        Progress::DeviceStore { account } if terminal => {
            eprint!("\raccount {account}: device store sealed\x1b[K");
        }
        Progress::Rows { table, rows } if terminal => {
            eprint!("\r{table}: {rows} rows\x1b[K");
        }
        _ => {}
    };
    let migrated = migrate_to_fleet(store, &fleet, &connectors, key.as_ref(), progress).await;
    if terminal {
        eprint!("\r\x1b[K");
    }
    let migrated = migrated?;
    println!("Copied {} into {}:", store.location(), fleet.url());
    for (table, rows) in &migrated.tables {
        println!("  {table:<20} {rows:>10} rows (the same count on both sides)");
    }
    println!(
        "  {:<20} {:>10} sealed with the fleet key",
        "device stores", migrated.device_stores
    );
    println!(
        "This machine's store is unchanged. Run the fleet with --store {} (or LIFELINE_STORE); \
         secrets the accounts and webhooks name stay in this host's keyring: set them on each fleet host.",
        fleet.url()
    );
    fleet.close().await;
    Ok(())
}

async fn status(store: &Store, json: bool) -> Result {
    let Some(fleet) = store.fleet_store() else {
        return Err(refused(
            "`fleet status` reads a fleet store: give it with --store postgres://user@host/database (or LIFELINE_STORE)".into(),
        ));
    };
    let url = fleet.url().clone();
    let read = async {
        Ok::<_, lifeline_fleet::Error>((
            fleet.instances(DEFAULT_TTL).await?,
            fleet.totals(DEFAULT_TTL).await?,
            fleet.key_fingerprint().await?,
        ))
    };
    let (instances, totals, fleet_key) = read.await.map_err(Error::from)?;
    let here = host_key().await?.map(|k| k.fingerprint());
    if json {
        let value = serde_json::json!({
            "store": url.to_string(),
            "fleet_key": fleet_key,
            "host_key": here,
            "accounts": totals.accounts,
            "leases_held": totals.leases_held,
            "live_instances": totals.live_instances,
            "takeovers": totals.takeovers,
            "renew_failures": totals.renew_failures,
            "stale_writes_refused": totals.stale_writes_refused,
            "instances": instances.iter().map(|i| serde_json::json!({
                "id": i.id,
                "host": i.host,
                "pid": i.pid,
                "alive": i.alive,
                "heartbeat_age_s": i.heartbeat_age_s,
                "leases": i.leases,
                "max_accounts": i.max_accounts,
                "takeovers": i.takeovers,
                "renew_failures": i.renew_failures,
                "stale_writes_refused": i.stale_writes_refused,
            })).collect::<Vec<_>>(),
        });
        println!("{value:#}");
        return Ok(());
    }
    println!("Fleet store   {url}");
    println!(
        "Accounts      {} ({} supervised under a lease)",
        totals.accounts, totals.leases_held
    );
    println!(
        "Instances     {} live of {}",
        totals.live_instances,
        instances.len()
    );
    println!(
        "Counters      {} takeovers, {} failed renewals, {} stale writes refused",
        totals.takeovers, totals.renew_failures, totals.stale_writes_refused
    );
    let key_line = match (&fleet_key, &here) {
        (None, _) => "none set yet".to_owned(),
        (Some(f), Some(h)) if f == h => format!("{f} (this host has it)"),
        (Some(f), Some(h)) => format!("{f} — this host has another ({h}): it cannot join"),
        (Some(f), None) => format!("{f} — this host has none (lifeline fleet key import)"),
    };
    println!("Fleet key     {key_line}");
    if !instances.is_empty() {
        println!();
        println!(
            "{:<10} {:<24} {:>8} {:>6} {:>8} {:>10}",
            "INSTANCE", "HOST", "PID", "ALIVE", "LEASES", "HEARTBEAT"
        );
        for i in &instances {
            println!(
                "{:<10} {:<24} {:>8} {:>6} {:>8} {:>8.1} s",
                &i.id[..8.min(i.id.len())],
                i.host,
                i.pid,
                if i.alive { "yes" } else { "no" },
                i.leases,
                i.heartbeat_age_s
            );
        }
    }
    Ok(())
}
