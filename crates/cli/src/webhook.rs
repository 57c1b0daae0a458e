//! `lifeline webhook …`: endpoints, their deliveries and replays. They work on the store, so a
//! running supervisor's sender picks changes up within its poll (a second); `test` sends at once
//! from here.

use std::sync::Arc;

use lifeline_engine::secrets::{KeyringSecretStore, SecretStore};
use lifeline_engine::store::DeliveryFilter;
use lifeline_engine::time::rfc3339;
use lifeline_engine::webhook::{Delivery, WebhookEndpoint};
use lifeline_engine::{DataDir, Error, Store};
use lifeline_webhooks::ROTATION_OVERLAP;

use crate::args::WebhookCommand;
use crate::commands::print_json;
use crate::report::table;

type Result<T = ()> = std::result::Result<T, Error>;

pub async fn run(dir: &DataDir, store: &Store, c: WebhookCommand) -> Result {
    let secrets: Arc<dyn SecretStore> = Arc::new(KeyringSecretStore);
    match c {
        WebhookCommand::Add {
            url,
            events,
            accounts,
            show_secret,
        } => {
            let (endpoint, secret) = lifeline_webhooks::add_endpoint(
                store,
                &secrets,
                &url,
                events.as_deref(),
                &accounts,
            )
            .await?;
            println!("{}", endpoint.id);
            if show_secret {
                println!("{}", secret.expose());
                eprintln!(
                    "Endpoint {} added. The line above is its signing secret, shown this once: give it to the receiver.",
                    endpoint.id
                );
            } else {
                eprintln!(
                    "Endpoint {} added; its signing secret is in the OS keyring. To see a secret, run `lifeline webhook rotate-secret {} --show-secret`.",
                    endpoint.id, endpoint.id
                );
            }
            note_supervisor(dir);
        }
        WebhookCommand::List { json } => {
            let endpoints = store.webhooks().await?;
            if json {
                return print_json(&endpoints);
            }
            if endpoints.is_empty() {
                println!("No webhook endpoints. Add one with `lifeline webhook add https://…`.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = endpoints.iter().map(endpoint_row).collect();
            table(&["ID", "URL", "EVENTS", "ACCOUNTS", "STATE"], &rows)?;
        }
        WebhookCommand::Remove { id } => {
            let e = lifeline_webhooks::remove_endpoint(store, &secrets, id).await?;
            println!("Removed endpoint {} ({}) and its secret.", e.id, e.url);
        }
        WebhookCommand::Disable { id } => {
            store
                .set_webhook_enabled(
                    id,
                    false,
                    Some(lifeline_engine::webhook::TURNED_OFF_BY_OPERATOR),
                )
                .await?;
            println!("Endpoint {id} turned off; messages keep queueing for it.");
        }
        WebhookCommand::Enable { id } => {
            store.set_webhook_enabled(id, true, None).await?;
            println!("Endpoint {id} turned on.");
            note_supervisor(dir);
        }
        WebhookCommand::Test { id } => {
            let instance = lifeline_runtime::webhook_config().instance;
            let d = lifeline_webhooks::send_test(store, &secrets, id, &instance).await?;
            match (d.status, d.last_code) {
                (lifeline_engine::webhook::DeliveryStatus::Delivered, Some(code)) => {
                    println!(
                        "Delivered: the endpoint answered {code} (webhook-id {}).",
                        d.msg_id
                    )
                }
                _ => {
                    return Err(Error::Webhook(format!(
                        "Endpoint {id} did not accept the test message: {}. It is listed in `lifeline webhook deliveries {id}`.",
                        d.last_error.unwrap_or_else(|| "no answer".into())
                    )));
                }
            }
        }
        WebhookCommand::RotateSecret { id, show_secret } => {
            let secret =
                lifeline_webhooks::rotate_secret(store, &secrets, id, ROTATION_OVERLAP).await?;
            if show_secret {
                println!("{}", secret.expose());
            }
            eprintln!(
                "Endpoint {id} signs with a new secret{}; the old one keeps signing beside it for 24 hours, so switch the receiver within that time.",
                if show_secret {
                    " (above, shown this once)"
                } else {
                    " (in the OS keyring)"
                }
            );
        }
        WebhookCommand::Deliveries {
            id,
            failed,
            limit,
            json,
        } => {
            if let Some(id) = id {
                store.webhook(id).await?;
            }
            let list = store
                .deliveries(DeliveryFilter {
                    endpoint: id,
                    failed_only: failed,
                    limit,
                })
                .await?;
            if json {
                return print_json(&list);
            }
            if list.is_empty() {
                println!("No deliveries.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list.iter().map(delivery_row).collect();
            table(
                &[
                    "ID", "ENDPOINT", "TYPE", "ACCOUNT", "AT", "STATUS", "ATTEMPTS", "LAST",
                ],
                &rows,
            )?;
        }
        WebhookCommand::Replay {
            delivery,
            failed,
            endpoint,
        } => {
            if failed {
                let n = store.replay_failed(endpoint).await?;
                println!("{n} failed deliveries queued again.");
            } else if let Some(id) = delivery {
                let d = store.replay_delivery(id).await?;
                println!("Delivery {} queued again (webhook-id {}).", d.id, d.msg_id);
            }
            note_supervisor(dir);
        }
    }
    Ok(())
}

/// Says who sends what was just queued.
fn note_supervisor(dir: &DataDir) {
    if dir.supervisor().is_none() {
        eprintln!(
            "No supervisor is running: messages are sent once `lifeline serve` (or the desktop app) runs."
        );
    }
}

fn endpoint_row(e: &WebhookEndpoint) -> Vec<String> {
    let state = if e.enabled {
        match e.failing_since {
            Some(t) => format!("failing since {}", rfc3339(t)),
            None => "on".into(),
        }
    } else {
        format!(
            "off: {}",
            e.disabled_reason.as_deref().unwrap_or("turned off")
        )
    };
    vec![
        e.id.to_string(),
        e.url.clone(),
        e.events
            .as_ref()
            .map(|v| v.join(","))
            .unwrap_or_else(|| "all".into()),
        e.accounts
            .as_ref()
            .map(|v| {
                v.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_else(|| "all".into()),
        state,
    ]
}

fn delivery_row(d: &Delivery) -> Vec<String> {
    let last = match (d.last_code, &d.last_error) {
        (Some(code), None) => format!("HTTP {code}"),
        (_, Some(e)) => e.clone(),
        (None, None) => "-".into(),
    };
    vec![
        d.id.to_string(),
        d.endpoint_id.to_string(),
        d.kind.clone(),
        d.account_id
            .map(|a| a.to_string())
            .unwrap_or_else(|| "-".into()),
        rfc3339(d.at),
        d.status.as_str().into(),
        d.attempts.to_string(),
        last,
    ]
}
