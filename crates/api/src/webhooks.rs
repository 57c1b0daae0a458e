//! Webhook endpoints, their deliveries and replays: the same operations as `lifeline webhook`.
//! A running sender picks changes up within its poll (about a second).

use axum::extract::State;
use axum::http::StatusCode;
use lifeline_engine::store::DeliveryFilter;
use lifeline_engine::webhook::{Delivery, WebhookEndpoint};
use lifeline_webhooks::ROTATION_OVERLAP;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Errors, Json, Path, Query};
use crate::{Api, ApiError};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, add_webhook))
        .routes(routes!(get_webhook, remove_webhook))
        .routes(routes!(enable_webhook))
        .routes(routes!(disable_webhook))
        .routes(routes!(test_webhook))
        .routes(routes!(rotate_webhook_secret))
        .routes(routes!(list_deliveries))
        .routes(routes!(replay_delivery))
        .routes(routes!(replay_failed))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhookBody {
    /// Where to POST: https://…, or http:// to a loopback or private address.
    pub url: String,
    /// Only these messages: state (every transition), connected, dropped, needs_operator,
    /// paused, alert. Default: all.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// Only messages about these accounts. Default: every account.
    #[serde(default)]
    pub accounts: Option<Vec<i64>>,
}

/// An endpoint just created, with its signing secret: shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedWebhook {
    pub endpoint: WebhookEndpoint,
    /// `whsec_…`: give it to the receiver; it is kept only in the OS keyring.
    pub secret: String,
}

/// A new signing secret: shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RotatedSecret {
    /// `whsec_…`; the previous secret keeps signing beside it for 24 hours.
    pub secret: String,
}

#[utoipa::path(get, path = "/webhooks", tag = "webhooks",
    responses((status = 200, body = Vec<WebhookEndpoint>), Errors))]
pub async fn list_webhooks(
    State(api): State<Api>,
) -> Result<axum::Json<Vec<WebhookEndpoint>>, ApiError> {
    Ok(axum::Json(api.sup.store().webhooks().await?))
}

/// Adds an endpoint (checked as `lifeline webhook add`: scheme, no credentials, no link-local or
/// metadata address, plain http only to loopback or private addresses, the host resolves).
#[utoipa::path(post, path = "/webhooks", tag = "webhooks", request_body = NewWebhookBody,
    responses((status = 201, body = CreatedWebhook), Errors))]
pub async fn add_webhook(
    State(api): State<Api>,
    Json(body): Json<NewWebhookBody>,
) -> Result<(StatusCode, axum::Json<CreatedWebhook>), ApiError> {
    let events = body.events.map(|e| e.join(","));
    let accounts = body.accounts.unwrap_or_default();
    let (endpoint, secret) = lifeline_webhooks::add_endpoint(
        api.sup.store(),
        &api.secrets,
        &body.url,
        events.as_deref(),
        &accounts,
    )
    .await?;
    let secret = secret.expose().to_owned();
    Ok((
        StatusCode::CREATED,
        axum::Json(CreatedWebhook { endpoint, secret }),
    ))
}

#[utoipa::path(get, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "Endpoint id")),
    responses((status = 200, body = WebhookEndpoint), Errors))]
pub async fn get_webhook(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<WebhookEndpoint>, ApiError> {
    Ok(axum::Json(api.sup.store().webhook(id).await?))
}

/// Removes an endpoint and its secret; undelivered messages stay listed as failed.
#[utoipa::path(delete, path = "/webhooks/{id}", tag = "webhooks",
    params(("id" = i64, Path, description = "Endpoint id")),
    responses((status = 200, description = "Removed; the endpoint as it was", body = WebhookEndpoint), Errors))]
pub async fn remove_webhook(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<WebhookEndpoint>, ApiError> {
    Ok(axum::Json(
        lifeline_webhooks::remove_endpoint(api.sup.store(), &api.secrets, id).await?,
    ))
}

/// Sends to the endpoint again, starting with what queued while it was off.
#[utoipa::path(post, path = "/webhooks/{id}/enable", tag = "webhooks",
    params(("id" = i64, Path, description = "Endpoint id")),
    responses((status = 200, body = WebhookEndpoint), Errors))]
pub async fn enable_webhook(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<WebhookEndpoint>, ApiError> {
    api.sup.store().set_webhook_enabled(id, true, None).await?;
    get_webhook(State(api), Path(id)).await
}

/// Stops sending to the endpoint; messages keep queueing for it.
#[utoipa::path(post, path = "/webhooks/{id}/disable", tag = "webhooks",
    params(("id" = i64, Path, description = "Endpoint id")),
    responses((status = 200, body = WebhookEndpoint), Errors))]
pub async fn disable_webhook(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<WebhookEndpoint>, ApiError> {
    api.sup
        .store()
        .set_webhook_enabled(
            id,
            false,
            Some(lifeline_engine::webhook::TURNED_OFF_BY_OPERATOR),
        )
        .await?;
    get_webhook(State(api), Path(id)).await
}

/// Sends a signed `webhook.test` message now and answers with the delivery as recorded
/// (`status`, `last_code`, `last_error`).
#[utoipa::path(post, path = "/webhooks/{id}/test", tag = "webhooks",
    params(("id" = i64, Path, description = "Endpoint id")),
    responses((status = 200, body = Delivery), Errors))]
pub async fn test_webhook(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<Delivery>, ApiError> {
    Ok(axum::Json(
        lifeline_webhooks::send_test(api.sup.store(), &api.secrets, id, &api.instance).await?,
    ))
}

/// A new signing secret; the old one keeps signing beside it for 24 hours.
#[utoipa::path(post, path = "/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = i64, Path, description = "Endpoint id")),
    responses((status = 200, body = RotatedSecret), Errors))]
pub async fn rotate_webhook_secret(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<RotatedSecret>, ApiError> {
    let secret =
        lifeline_webhooks::rotate_secret(api.sup.store(), &api.secrets, id, ROTATION_OVERLAP)
            .await?;
    Ok(axum::Json(RotatedSecret {
        secret: secret.expose().to_owned(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// Only this endpoint's.
    pub endpoint: Option<i64>,
    /// Only deliveries that failed for good.
    #[serde(default)]
    pub failed: bool,
    /// At most this many, 1–10000 (default 50).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<u32>,
}

/// Recent deliveries, newest first.
#[utoipa::path(get, path = "/webhooks/deliveries", tag = "webhooks", params(DeliveriesQuery),
    responses((status = 200, body = Vec<Delivery>), Errors))]
pub async fn list_deliveries(
    State(api): State<Api>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<axum::Json<Vec<Delivery>>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range: use 1 to 10000."
        )));
    }
    if let Some(id) = q.endpoint {
        api.sup.store().webhook(id).await?;
    }
    let filter = DeliveryFilter {
        endpoint: q.endpoint,
        failed_only: q.failed,
        limit,
    };
    Ok(axum::Json(api.sup.store().deliveries(filter).await?))
}

/// Sends a delivery again with the same `webhook-id`.
#[utoipa::path(post, path = "/webhooks/deliveries/{id}/replay", tag = "webhooks",
    params(("id" = i64, Path, description = "Delivery id")),
    responses((status = 200, body = Delivery), Errors))]
pub async fn replay_delivery(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<Delivery>, ApiError> {
    Ok(axum::Json(api.sup.store().replay_delivery(id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ReplayFailedQuery {
    /// Only this endpoint's failed deliveries.
    pub endpoint: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    pub replayed: u64,
}

/// Sends every failed delivery again (of one endpoint, or all).
#[utoipa::path(post, path = "/webhooks/deliveries/replay-failed", tag = "webhooks", params(ReplayFailedQuery),
    responses((status = 200, body = Replayed), Errors))]
pub async fn replay_failed(
    State(api): State<Api>,
    Query(q): Query<ReplayFailedQuery>,
) -> Result<axum::Json<Replayed>, ApiError> {
    if let Some(id) = q.endpoint {
        api.sup.store().webhook(id).await?;
    }
    let replayed = api.sup.store().replay_failed(q.endpoint).await?;
    Ok(axum::Json(Replayed { replayed }))
}
