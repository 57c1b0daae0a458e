//! `lifeline serve`: the headless supervisor. Holds the data dir lock, records the run (the next
//! start knows if this one crashed), restores the fleet, applies queued CLI commands, serves
//! loopback HTTP, and on SIGINT/SIGTERM closes every connection and writes the clean-run marker last.

use std::net::SocketAddr;

use lifeline_engine::model::SecretName;
use lifeline_engine::supervisor::{Supervisor, Update};
use lifeline_engine::time::rfc3339;
use lifeline_engine::{DataDir, Error, InputError, Store};
use lifeline_runtime::{FleetConfig, Parts, Runtime};
use tokio_util::sync::CancellationToken;

use crate::args::ServeArgs;

/// A line for the operator on stderr. Serve outlives whoever reads its stderr (`| head`, a log
/// collector that went away): a failed write is dropped rather than panicking (as `eprintln!`
/// does), which would skip closing the connections and the clean-run marker.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

pub async fn serve(dir: &DataDir, store: Store, args: ServeArgs) -> Result<(), Error> {
    let http_addr = args.http.as_deref().map(parse_loopback).transpose()?;
    let token_secret = SecretName::parse(&args.token_secret)?;
    let mut runtime = match store.fleet_store().cloned() {
        None if args.max_accounts.is_some() => {
            return Err(InputError::Refused(
                "--max-accounts applies to an instance of a fleet: give the fleet store with --store".into(),
            )
            .into());
        }
        None => Runtime::open(dir, store, Parts::system(dir)).await?,
        Some(fleet) => {
            let config = FleetConfig {
                ttl: std::time::Duration::from_secs(args.lease_ttl),
                max_accounts: args.max_accounts,
            };
            Runtime::open_fleet(dir, &fleet, config, Parts::system(dir)).await?
        }
    };
    let sup = runtime.supervisor().clone();
    let stop = runtime.stopping();
    let log_task = tokio::spawn(log_updates(sup.clone(), stop.clone()));
    let report = runtime.start().await?;
    let notices_task = runtime
        .take_webhook_notices()
        .map(|rx| tokio::spawn(say_webhook_notices(rx, stop.clone())));
    match runtime.previous_run() {
        Some(p) if !p.clean => say!(
            "lifeline: the previous run (started {}) did not stop cleanly{}; its open sessions were closed as crashed.",
            rfc3339(p.started_at),
            runtime
                .crashed_at()
                .map(|t| format!(", last seen {}", rfc3339(t)))
                .unwrap_or_default()
        ),
        _ => {}
    }
    let held = if report.held_stopped > 0 {
        format!(
            ", {} held stopped because autorecover is off",
            report.held_stopped
        )
    } else {
        String::new()
    };
    match runtime.instance() {
        Some(instance) => say!(
            "lifeline: instance {} of the fleet at {}: running the accounts whose leases it wins. Ctrl-C hands them over.",
            instance.id().as_str(),
            runtime.store().location(),
        ),
        None => say!(
            "lifeline: supervising {} accounts from {} — restoring {}{held}. Ctrl-C stops.",
            sup.views().len(),
            dir.root().display(),
            report.restoring,
        ),
    }
    let http_task = match http_addr {
        Some(addr) => {
            let listen_err = |source| Error::Listen {
                addr: addr.to_string(),
                source,
            };
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    runtime.shutdown().await?;
                    return Err(listen_err(e));
                }
            };
            let bound = listener.local_addr().map_err(listen_err)?;
            say!(
                "lifeline: HTTP on http://{bound} (/health, /metrics, API described at /openapi.json)"
            );
            Some(tokio::spawn(lifeline_api::serve(
                listener,
                runtime.api(token_secret),
                stop.clone(),
            )))
        }
        None => None,
    };

    wait_for_signal().await;
    say!("lifeline: stopping — closing connections…");
    stop.cancel();
    if let Some(t) = http_task {
        let _ = t.await;
    }
    let _ = log_task.await;
    if let Some(t) = notices_task {
        let _ = t.await;
    }
    // Closes every connection, then writes the clean-run marker last.
    runtime.shutdown().await?;
    say!("lifeline: stopped cleanly.");
    Ok(())
}

fn parse_loopback(s: &str) -> Result<SocketAddr, Error> {
    let addr: SocketAddr = s.parse().map_err(|_| InputError::InvalidSetting {
        key: "--http".into(),
        value: s.into(),
        why: "use IP:PORT on loopback, e.g. 127.0.0.1:7700".into(),
    })?;
    if !addr.ip().is_loopback() {
        return Err(InputError::InvalidSetting {
            key: "--http".into(),
            value: s.into(),
            why: "the HTTP API only listens on loopback (127.0.0.1 or [::1]); put a reverse proxy in front for remote access".into(),
        }
        .into());
    }
    Ok(addr)
}

/// Logs transitions and alerts (never link codes: they are secrets for the operator's eyes only).
async fn log_updates(sup: Supervisor, stop: CancellationToken) {
    let mut rx = sup.subscribe();
    loop {
        let update = tokio::select! {
            _ = stop.cancelled() => return,
            u = rx.recv() => u,
        };
        match update {
            Ok(Update::Transitions(events)) => {
                for e in events {
                    tracing::info!(
                        account = e.account_id.0,
                        from = e.from.as_str(),
                        to = e.to.kind().as_str(),
                        reason = e.to.reason().map(|r| r.code()),
                        by = e.triggered_by.as_str(),
                        "transition"
                    );
                }
            }
            Ok(Update::Alerts(alerts)) => {
                for a in alerts {
                    tracing::warn!(alert = ?a, "alert");
                }
            }
            Ok(Update::Link { account, .. }) => {
                tracing::info!(account = account.0, "link code issued")
            }
            // The number itself stays out of the log.
            Ok(Update::Identity { account }) => {
                tracing::info!(account = account.0, "remote identity recorded")
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(skipped = n, "log fell behind")
            }
            Err(_) => return,
        }
    }
}

/// Says when the webhook sender turns an endpoint off (it needs the operator).
async fn say_webhook_notices(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<lifeline_runtime::WebhookNotice>,
    stop: CancellationToken,
) {
    loop {
        let notice = tokio::select! {
            _ = stop.cancelled() => return,
            n = rx.recv() => match n {
                Some(n) => n,
                None => return,
            },
        };
        match notice {
            lifeline_runtime::WebhookNotice::Disabled {
                endpoint,
                url,
                reason,
            } => say!(
                "lifeline: webhook endpoint {endpoint} ({url}) turned off: {reason}. Fix the receiver, then `lifeline webhook enable {endpoint}`."
            ),
        }
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::parse_loopback;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn only_loopback_addresses_are_accepted(
            raw in prop_oneof![
                any::<String>(),
                "[0-9.:\\[\\]a-f]{0,24}",
                (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, port)| {
                    format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3])
                }),
            ],
            port in any::<u16>(),
        ) {
            match parse_loopback(&raw) {
                Ok(addr) => prop_assert!(addr.ip().is_loopback(), "{raw:?} → {addr}"),
                Err(e) => {
                    prop_assert!(e.is_input());
                    prop_assert!(e.to_string().contains("--http"), "{e}");
                }
            }
            prop_assert_eq!(parse_loopback(&format!("127.0.0.1:{port}")).map(|a| a.port()).ok(), Some(port));
            prop_assert_eq!(parse_loopback(&format!("[::1]:{port}")).map(|a| a.port()).ok(), Some(port));
            let any_ip = format!("0.0.0.0:{port}");
            prop_assert!(parse_loopback(&any_ip).is_err());
        }
    }
}
