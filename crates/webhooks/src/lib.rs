//! Lifeline's webhooks: tell the operator's own systems (a shop backend, a CRM, a support desk)
//! at once when an account drops, needs a person, is banned or recovers.
//!
//! - Messages follow the Standard Webhooks specification ([`sign`]): `webhook-id` (the same on
//!   every retry and replay), `webhook-timestamp`, `webhook-signature`, signed with a `whsec_`
//!   secret Lifeline generates and keeps only in the OS keyring.
//! - Nothing is lost: the store writes each message into its outbox in the transaction that
//!   records the event; [`worker`] sends from there, in order per (endpoint, account), retrying
//!   on a [`schedule`] until a 2xx, and records every attempt.
//! - [`send`] refuses link-local and metadata addresses, follows no redirects and sends plain
//!   http only to loopback and private networks.
//!
//! This module's functions are the operations every face (CLI, HTTP API, desktop) calls.

pub mod schedule;
pub mod send;
pub mod sign;
mod words;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use lifeline_engine::model::{AccountId, SecretName};
use lifeline_engine::secrets::{SecretStore, SecretValue};
use lifeline_engine::state::State;
use lifeline_engine::time::rfc3339;
use lifeline_engine::webhook::{
    AttemptResult, Delivery, NewWebhook, WebhookEndpoint, WebhookUrl, parse_event_filters,
};
use lifeline_engine::{Error, Store};

pub use words::reason_words;
pub use worker::{Notice, WorkerConfig};

/// Version of the message schema, in every message's `data.version`.
pub const SCHEMA_VERSION: u32 = 1;

/// How long a rotated-out secret keeps signing beside the new one.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// The body of a message: `{type, timestamp, data}`. Every attempt sends the same bytes, unless
/// the account was renamed in between (the name is read when the message is sent).
pub fn body(delivery: &Delivery, instance: &str) -> Vec<u8> {
    let mut data = delivery.data.clone();
    if let Some(map) = data.as_object_mut() {
        let reason = map
            .get("state")
            .and_then(|s| serde_json::from_value::<State>(s.clone()).ok())
            .and_then(|s| s.reason().map(reason_words));
        if let Some(words) = reason {
            map.insert("reason_words".into(), words.into());
        }
        map.insert("instance".into(), instance.into());
        map.insert("version".into(), SCHEMA_VERSION.into());
    }
    let message = serde_json::json!({
        "type": delivery.kind,
        "timestamp": rfc3339(delivery.at),
        "data": data,
    });
    // A JSON value always serializes.
    serde_json::to_vec(&message).unwrap_or_default()
}

/// A new secret's keyring name.
fn new_secret_name() -> SecretName {
    let tag: u64 = rand::random();
    // Letters and digits only: always a valid name.
    SecretName::parse(&format!("webhook-{tag:016x}")).unwrap_or_else(|_| unreachable!())
}

async fn keep(
    secrets: &Arc<dyn SecretStore>,
    name: &SecretName,
    value: &SecretValue,
) -> Result<(), Error> {
    let (secrets, name, value) = (secrets.clone(), name.clone(), value.clone());
    tokio::task::spawn_blocking(move || secrets.set(&name, &value))
        .await
        .map_err(|e| Error::Webhook(format!("The keyring task failed: {e}.")))?
}

async fn forget(secrets: &Arc<dyn SecretStore>, name: &SecretName) {
    let (secrets, owned) = (secrets.clone(), name.clone());
    let deleted = tokio::task::spawn_blocking(move || secrets.delete(&owned)).await;
    if !matches!(deleted, Ok(Ok(_))) {
        tracing::warn!(secret = %name, "old webhook secret not deleted from the keyring");
    }
}

/// Adds an endpoint: checks the URL (and where its host resolves), the event filters and the
/// accounts, generates its signing secret into the keyring, then stores the endpoint. Returns
/// the endpoint and its secret, to be shown once.
pub async fn add_endpoint(
    store: &Store,
    secrets: &Arc<dyn SecretStore>,
    url: &str,
    events: Option<&str>,
    accounts: &[i64],
) -> Result<(WebhookEndpoint, SecretValue), Error> {
    let url = WebhookUrl::parse(url)?;
    send::check_resolves(&url).await?;
    let events = events.map(parse_event_filters).transpose()?.flatten();
    for id in accounts {
        store.account(AccountId(*id)).await?;
    }
    let accounts = (!accounts.is_empty()).then(|| accounts.iter().map(|a| AccountId(*a)).collect());
    let (_, value) = sign::SigningKey::generate();
    let secret_name = new_secret_name();
    keep(secrets, &secret_name, &value).await?;
    let added = store
        .add_webhook(NewWebhook {
            url,
            events,
            accounts,
            secret_name: secret_name.clone(),
        })
        .await;
    match added {
        Ok(endpoint) => {
            tracing::info!(endpoint = endpoint.id, "webhook endpoint added");
            Ok((endpoint, value))
        }
        Err(e) => {
            forget(secrets, &secret_name).await;
            Err(e)
        }
    }
}

/// Gives an endpoint a new secret; the current one keeps signing beside it for `overlap`, so
/// receivers can switch without missing a message. Returns the new secret, to be shown once.
pub async fn rotate_secret(
    store: &Store,
    secrets: &Arc<dyn SecretStore>,
    id: i64,
    overlap: Duration,
) -> Result<SecretValue, Error> {
    store.webhook(id).await?;
    let (_, value) = sign::SigningKey::generate();
    let name = new_secret_name();
    keep(secrets, &name, &value).await?;
    let until = chrono::Utc::now() + chrono::Duration::from_std(overlap).unwrap_or_default();
    match store.rotate_webhook_secret(id, &name, until).await {
        Ok(ended) => {
            if let Some(old) = ended {
                forget(secrets, &old).await;
            }
            Ok(value)
        }
        Err(e) => {
            forget(secrets, &name).await;
            Err(e)
        }
    }
}

/// Ends a rotation whose overlap has passed: the old secret stops signing and leaves the keyring.
pub(crate) async fn end_rotation(
    store: &Store,
    secrets: &Arc<dyn SecretStore>,
    id: i64,
    old: &SecretName,
) {
    match store.end_webhook_rotation(id).await {
        Ok(()) => forget(secrets, old).await,
        Err(e) => tracing::warn!(error = %e, endpoint = id, "webhook rotation not ended"),
    }
}

/// Removes an endpoint and its secrets from the keyring; its undelivered messages are kept as
/// failed.
pub async fn remove_endpoint(
    store: &Store,
    secrets: &Arc<dyn SecretStore>,
    id: i64,
) -> Result<WebhookEndpoint, Error> {
    let endpoint = store.remove_webhook(id).await?;
    forget(secrets, &endpoint.secret_name).await;
    if let Some((old, _)) = &endpoint.old_secret {
        forget(secrets, old).await;
    }
    Ok(endpoint)
}

/// Builds a message's body, signs it with `keys` for this attempt (stamped `now`) and sends it.
pub(crate) async fn send_signed(
    http: &send::HttpSender,
    url: &WebhookUrl,
    keys: &[sign::SigningKey],
    delivery: &Delivery,
    instance: &str,
    now: lifeline_engine::Timestamp,
) -> send::Answer {
    let body = body(delivery, instance);
    let timestamp = now.timestamp();
    let signature = sign::signature_header(keys, &delivery.msg_id, timestamp, &body);
    let signed = send::Signed {
        msg_id: &delivery.msg_id,
        timestamp,
        signature,
        body,
    };
    http.send(url, signed).await
}

/// Sends a `webhook.test` message to one endpoint now, once, and records the attempt. The
/// answer is in the returned delivery (`status`, `last_code`, `last_error`).
pub async fn send_test(
    store: &Store,
    secrets: &Arc<dyn SecretStore>,
    id: i64,
    instance: &str,
) -> Result<Delivery, Error> {
    let endpoint = store.webhook(id).await?;
    let now = chrono::Utc::now();
    // Queued an hour ahead: a running sender leaves it to this attempt.
    let delivery = store
        .enqueue_webhook_test(id, now, now + chrono::Duration::hours(1))
        .await?;
    let url = WebhookUrl::parse(&endpoint.url)?;
    // Signed as the sender signs: with both secrets while a rotation lasts.
    let mut names = vec![&endpoint.secret_name];
    if let Some((old, until)) = &endpoint.old_secret
        && *until > now
    {
        names.push(old);
    }
    let mut keys = Vec::with_capacity(names.len());
    for name in names {
        let value = lifeline_engine::secrets::fetch(secrets.clone(), name).await?;
        let key = value.as_ref().and_then(sign::SigningKey::parse).ok_or_else(|| {
            Error::Webhook(format!(
                "endpoint {id}'s signing secret '{name}' is missing from the keyring or damaged: `lifeline webhook rotate-secret {id}` makes a new one"
            ))
        })?;
        keys.push(key);
    }
    let http = send::HttpSender::new(send::TIMEOUT)?;
    let answer = send_signed(&http, &url, &keys, &delivery, instance, chrono::Utc::now()).await;
    let result = match answer.code {
        Some(code) if answer.is_success() => AttemptResult::Delivered { code },
        code => AttemptResult::Exhausted {
            code,
            error: answer.error.unwrap_or_default(),
        },
    };
    store
        .record_attempt(delivery.id, &result, chrono::Utc::now())
        .await?;
    store.delivery(delivery.id).await
}
