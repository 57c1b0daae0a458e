//! Loopback HTTP for monitoring and automation: `GET /health` (JSON; 503 when a desired account is
//! not connected), `GET /metrics` (Prometheus text), and control endpoints that need a bearer
//! token whose value lives in the OS keyring (never in a file or the database).

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lifeline_engine::model::{AccountId, SecretName};
use lifeline_engine::ops::{Action, Control, Target};
use lifeline_engine::report;
use lifeline_engine::secrets::{KeyringSecretStore, SecretStore};
use lifeline_engine::supervisor::Supervisor;
use lifeline_engine::{Error, InputError};
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct App {
    sup: Supervisor,
    token_secret: SecretName,
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    sup: Supervisor,
    token_secret: SecretName,
    stop: CancellationToken,
) {
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/accounts/{id}/{action}", post(account_action))
        .route("/fleet/{action}", post(fleet_action))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(App { sup, token_secret });
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({ "code": code, "message": message.into() })),
    )
        .into_response()
}

const ENDPOINTS: &str = "GET /health, GET /metrics, POST /accounts/{id}/{start|stop|retry|reset}, \
     POST /fleet/{start-all|stop-all|reset-all|check-all}";

/// Control endpoints take no body; a client may still send a small JSON one (`{}`).
const MAX_BODY: usize = 64 * 1024;

async fn not_found(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("No endpoint {method} {}. Use {ENDPOINTS}.", uri.path()),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} does not answer {method}. Use {ENDPOINTS}.", uri.path()),
    )
}

async fn health(State(app): State<App>) -> Response {
    let views = app.sup.views();
    match report::fleet_health(app.sup.store(), app.sup.clock().now(), &views).await {
        Ok(r) => {
            let status = if r.healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            (status, axum::Json(r)).into_response()
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "store", e.to_string()),
    }
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), the classic text format otherwise.
async fn metrics(State(app): State<App>, headers: HeaderMap) -> Response {
    match app.sup.store().outbox_stats().await {
        Ok(stats) => app.sup.metrics().set_outbox(&stats, chrono::Utc::now()),
        Err(e) => tracing::warn!(error = %e, "webhook outbox not readable for /metrics"),
    }
    let body = app.sup.metrics().render(&app.sup.counts());
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

/// Checks `Authorization: Bearer <token>` against the keyring secret; `Err` is the response.
/// A request without a bearer token is refused before the keyring is asked, so a flood of
/// anonymous requests costs no keyring round trips.
async fn authorize(app: &App, headers: &HeaderMap) -> Result<(), Response> {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "Missing bearer token: send `Authorization: Bearer TOKEN` with the value of secret '{}'.",
                app.token_secret
            ),
        ));
    };
    let name = app.token_secret.clone();
    let expected = tokio::task::spawn_blocking(move || KeyringSecretStore.get(&name))
        .await
        .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let expected = match expected {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_token",
                format!(
                    "Control endpoints are off until a token is set: run `lifeline secret set {}`.",
                    app.token_secret
                ),
            ));
        }
        Err(e) => {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "keyring",
                e.to_string(),
            ));
        }
    };
    if constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "Wrong bearer token: it must be the value of secret '{}'.",
                app.token_secret
            ),
        ))
    }
}

/// After authorization: refuses a body that is not JSON (or is too long), so a client that
/// thinks it is sending parameters learns that it is not.
async fn no_body(body: Body) -> Result<(), Response> {
    let bytes = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("The request body is over {MAX_BODY} bytes; control endpoints take no body."),
        )
    })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(());
    }
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .map(drop)
        .map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                "bad_json",
                format!(
                    "The request body is not valid JSON ({e}); control endpoints take no body: the account and the action are in the path."
                ),
            )
        })
}

fn bad_path(rejection: &PathRejection) -> Response {
    error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        format!("{}. Use {ENDPOINTS}.", rejection.body_text()),
    )
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn outcome(result: lifeline_engine::Result<usize>) -> Response {
    match result {
        Ok(_) => (StatusCode::ACCEPTED, axum::Json(json!({ "ok": true }))).into_response(),
        Err(e @ Error::Input(InputError::UnknownAccount(_))) => {
            error(StatusCode::NOT_FOUND, "unknown_account", e.to_string())
        }
        Err(e) if e.is_input() => error(StatusCode::BAD_REQUEST, "bad_request", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn account_action(
    State(app): State<App>,
    path: Result<Path<(String, String)>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = authorize(&app, &headers).await {
        return r;
    }
    let (id, action) = match path {
        Ok(Path(p)) => p,
        Err(rejection) => return bad_path(&rejection),
    };
    if let Err(r) = no_body(body).await {
        return r;
    }
    let Ok(id) = id.parse::<i64>().map(AccountId) else {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("'{id}' is not an account id."),
        );
    };
    let Some(action) = Action::for_one(&action) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_action",
            format!("Unknown action '{action}': use start, stop, retry or reset."),
        );
    };
    outcome(app.sup.act(action, Target::One(id)).await)
}

async fn fleet_action(
    State(app): State<App>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if let Err(r) = authorize(&app, &headers).await {
        return r;
    }
    let action = match path {
        Ok(Path(action)) => action,
        Err(rejection) => return bad_path(&rejection),
    };
    if let Err(r) = no_body(body).await {
        return r;
    }
    let Some(action) = Action::for_all(&action) else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_action",
            format!("Unknown action '{action}': use start-all, stop-all, reset-all or check-all."),
        );
    };
    outcome(app.sup.act(action, Target::All).await)
}

#[cfg(test)]
mod tests {
    #[test]
    fn token_comparison() {
        assert!(super::constant_time_eq(b"abc", b"abc"));
        assert!(!super::constant_time_eq(b"abc", b"abd"));
        assert!(!super::constant_time_eq(b"abc", b"abcd"));
    }
}
