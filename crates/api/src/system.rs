//! Health, metrics, status, autorecover, the recovery policy and fleet-wide actions.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lifeline_engine::fleet::Counts;
use lifeline_engine::ops::{Action, Control, Target};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::report::{self, FleetHealth};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Errors, Json, NoBody};
use crate::{Api, ApiError};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(get_autorecover, set_autorecover))
        .routes(routes!(get_policy, put_policy, patch_policy))
        .routes(routes!(setting_changes))
        .routes(routes!(start_all))
        .routes(routes!(stop_all))
        .routes(routes!(reset_all))
        .routes(routes!(check_all))
}

/// Fleet health: the verdict, counts, and each account's state, 24-hour uptime and score.
#[utoipa::path(get, path = "/health", tag = "monitoring",
    responses(
        (status = 200, description = "Every desired-running account is connected", body = FleetHealth),
        (status = 503, description = "A desired-running account is not connected (same body)", body = FleetHealth),
        (status = 500, description = "The store could not be read", body = crate::ErrorBody),
    ))]
pub async fn health(State(api): State<Api>) -> Result<Response, ApiError> {
    let views = api.sup.views();
    let r = report::fleet_health(api.sup.store(), api.sup.clock().now(), &views).await?;
    let status = if r.healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, axum::Json(r)).into_response())
}

/// How long `/metrics` waits for the outbox's figures before answering without them.
const METRICS_STORE_WAIT: std::time::Duration = report::STORE_WAIT;

/// Prometheus metrics: OpenMetrics when the scraper asks for it, the classic text format otherwise.
#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "Prometheus text exposition (OpenMetrics when asked for with `Accept`)",
        content((String = "text/plain"), (String = "application/openmetrics-text")))))]
pub async fn metrics(State(api): State<Api>, headers: HeaderMap) -> Response {
    // A scrape answers promptly even while the store is unreachable (a fleet store's
    // PostgreSQL restarting): what needs the database keeps its last values.
    let store = api.sup.store();
    let (outbox, fleet) = tokio::join!(
        tokio::time::timeout(METRICS_STORE_WAIT, store.outbox_stats()),
        report::fleet_part(store),
    );
    match outbox {
        Ok(Ok(stats)) => api.sup.metrics().set_outbox(&stats, chrono::Utc::now()),
        Ok(Err(e)) => tracing::warn!(error = %e, "webhook outbox not readable for /metrics"),
        Err(_) => tracing::warn!("webhook outbox not readable for /metrics in time"),
    }
    if let Some(part) = fleet {
        api.sup.metrics().set_fleet(&part);
    }
    let body = api.sup.metrics().render(&api.sup.counts());
    let wants_openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/openmetrics-text"));
    if wants_openmetrics {
        let ct = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        ([(header::CONTENT_TYPE, ct)], body).into_response()
    } else {
        let ct = "text/plain; version=0.0.4; charset=utf-8";
        let text = lifeline_engine::metrics::classic_text(&body);
        ([(header::CONTENT_TYPE, ct)], text).into_response()
    }
}

/// The supervisor and the fleet in numbers (`lifeline status`).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Status {
    /// Process id of the supervisor answering.
    pub pid: u32,
    pub autorecover: bool,
    pub accounts: usize,
    pub desired_running: usize,
    /// Accounts waiting for a person (a new scan, logged out, replaced, banned).
    pub needs_operator: usize,
    pub by_state: BTreeMap<&'static str, usize>,
}

#[utoipa::path(get, path = "/status", tag = "monitoring",
    responses((status = 200, body = Status), Errors))]
pub async fn status(State(api): State<Api>) -> Result<axum::Json<Status>, ApiError> {
    let counts: Counts = api.sup.counts();
    Ok(axum::Json(Status {
        pid: std::process::id(),
        autorecover: api.sup.store().autorecover().await?,
        accounts: counts.total,
        desired_running: counts.desired,
        needs_operator: counts.needs_operator,
        by_state: counts.by_state_names(),
    }))
}

/// Whether accounts that were running are restored when the supervisor starts.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Autorecover {
    pub on: bool,
}

#[utoipa::path(get, path = "/autorecover", tag = "policy",
    responses((status = 200, body = Autorecover), Errors))]
pub async fn get_autorecover(State(api): State<Api>) -> Result<axum::Json<Autorecover>, ApiError> {
    let on = api.sup.store().autorecover().await?;
    Ok(axum::Json(Autorecover { on }))
}

#[utoipa::path(put, path = "/autorecover", tag = "policy", request_body = Autorecover,
    responses((status = 200, body = Autorecover), Errors))]
pub async fn set_autorecover(
    State(api): State<Api>,
    Json(body): Json<Autorecover>,
) -> Result<axum::Json<Autorecover>, ApiError> {
    api.sup.store().set_autorecover(body.on).await?;
    get_autorecover(State(api)).await
}

/// Every recovery policy value (backoff, breaker, pacing, connection, autorecover, alerts).
#[utoipa::path(get, path = "/policy", tag = "policy",
    responses((status = 200, body = PolicyConfig), Errors))]
pub async fn get_policy(State(api): State<Api>) -> Result<axum::Json<PolicyConfig>, ApiError> {
    Ok(axum::Json(api.sup.store().policy().await?))
}

/// Replaces the policy; a value left out takes its default (`{}` resets every value).
#[utoipa::path(put, path = "/policy", tag = "policy", request_body = PolicyConfig,
    responses((status = 200, description = "Stored, logged (each changed value, old → new) and in force in the running supervisor from its next decision; connections up now are not cut", body = PolicyConfig), Errors))]
pub async fn put_policy(
    State(api): State<Api>,
    Json(body): Json<serde_json::Value>,
) -> Result<axum::Json<PolicyConfig>, ApiError> {
    store_policy(&api, &body).await
}

/// Changes only the values given (a JSON merge patch of the policy), e.g.
/// `{"breaker": {"threshold": 5}}`.
#[utoipa::path(patch, path = "/policy", tag = "policy", request_body = PolicyConfig,
    responses((status = 200, description = "Stored, logged (each changed value, old → new) and in force in the running supervisor from its next decision; connections up now are not cut", body = PolicyConfig), Errors))]
pub async fn patch_policy(
    State(api): State<Api>,
    Json(patch): Json<serde_json::Value>,
) -> Result<axum::Json<PolicyConfig>, ApiError> {
    let current = api.sup.store().policy().await?;
    let mut merged = serde_json::to_value(current)
        .map_err(|e| ApiError::from(lifeline_engine::Error::Decode(e.to_string())))?;
    merge(&mut merged, patch);
    store_policy(&api, &merged).await
}

/// The latest 100 setting changes, newest first: each policy value (`section.key`) and the
/// autorecover switch an operator changed, when, from what to what.
#[utoipa::path(get, path = "/policy/changes", tag = "policy",
    responses((status = 200, body = Vec<lifeline_engine::store::SettingChange>), Errors))]
pub async fn setting_changes(
    State(api): State<Api>,
) -> Result<axum::Json<Vec<lifeline_engine::store::SettingChange>>, ApiError> {
    Ok(axum::Json(api.sup.store().setting_changes(100).await?))
}

/// Validates with the engine's own rules (its words come back on a `400`) and stores.
async fn store_policy(
    api: &Api,
    json: &serde_json::Value,
) -> Result<axum::Json<PolicyConfig>, ApiError> {
    let cfg = PolicyConfig::from_json(&json.to_string()).map_err(lifeline_engine::Error::from)?;
    api.sup.set_policy(cfg).await?;
    Ok(axum::Json(cfg))
}

/// RFC 7396: objects merge key by key, `null` removes, anything else replaces.
fn merge(target: &mut serde_json::Value, patch: serde_json::Value) {
    match (target, patch) {
        (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(&k);
                } else {
                    merge(t.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
        }
        (t, p) => *t = p,
    }
}

/// How many accounts an action applied to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Applied {
    pub applied: usize,
}

pub async fn act(
    api: &Api,
    action: Action,
    target: Target,
) -> Result<(StatusCode, axum::Json<Applied>), ApiError> {
    let applied = api.sup.act(action, target).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Applied { applied })))
}

/// Start every account (marks it desired-running).
#[utoipa::path(post, path = "/fleet/start-all", tag = "fleet",
    responses((status = 202, body = Applied), Errors))]
pub async fn start_all(
    State(api): State<Api>,
    _: NoBody,
) -> Result<(StatusCode, axum::Json<Applied>), ApiError> {
    act(&api, Action::Start, Target::All).await
}

/// Stop every account.
#[utoipa::path(post, path = "/fleet/stop-all", tag = "fleet",
    responses((status = 202, body = Applied), Errors))]
pub async fn stop_all(
    State(api): State<Api>,
    _: NoBody,
) -> Result<(StatusCode, axum::Json<Applied>), ApiError> {
    act(&api, Action::Stop, Target::All).await
}

/// Close every circuit breaker.
#[utoipa::path(post, path = "/fleet/reset-all", tag = "fleet",
    responses((status = 202, body = Applied), Errors))]
pub async fn reset_all(
    State(api): State<Api>,
    _: NoBody,
) -> Result<(StatusCode, axum::Json<Applied>), ApiError> {
    act(&api, Action::Reset, Target::All).await
}

/// Run the health pass over every account now.
#[utoipa::path(post, path = "/fleet/check-all", tag = "fleet",
    responses((status = 202, body = Applied), Errors))]
pub async fn check_all(
    State(api): State<Api>,
    _: NoBody,
) -> Result<(StatusCode, axum::Json<Applied>), ApiError> {
    act(&api, Action::Check, Target::All).await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut v = json!({"a": {"b": 1, "c": 2}, "d": 3});
        super::merge(&mut v, json!({"a": {"b": 5, "c": null}, "e": [1]}));
        assert_eq!(v, json!({"a": {"b": 5}, "d": 3, "e": [1]}));
    }
}
