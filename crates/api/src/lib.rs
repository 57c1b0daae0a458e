//! Lifeline's HTTP API, served on loopback by `lifeline serve --http` (and by the desktop app when
//! the operator turns it on). `/health`, `/metrics` and `/openapi.json` are open; everything
//! else needs `Authorization: Bearer TOKEN`, the token being a secret in the OS keyring (never in
//! a file or the database). Every operation goes through the same operations layer as the CLI and
//! the desktop; every error is `{code, message}`.
//!
//! The OpenAPI document is generated from the handlers and the engine's own types, so it cannot
//! drift from what is served; `docs/openapi.json` is a copy kept equal to it by a test.

mod accounts;
mod auth;
mod error;
mod history;
mod system;
mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use lifeline_engine::model::SecretName;
use lifeline_engine::secrets::SecretStore;
use lifeline_engine::supervisor::Supervisor;
use tokio_util::sync::CancellationToken;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr, SecurityRequirement};
use utoipa_axum::router::OpenApiRouter;

pub use error::{ApiError, ErrorBody};

/// What every handler reaches: the supervisor (and through it the store) and the secrets.
#[derive(Debug, Clone)]
pub struct Api {
    pub sup: Supervisor,
    /// The secret whose value is the bearer token.
    pub token_secret: SecretName,
    pub secrets: Arc<dyn SecretStore>,
    /// This instance's name in webhook test messages.
    pub instance: String,
}

/// The security scheme's name in the document.
const BEARER: &str = "bearer";

/// Endpoints anyone on the machine may read.
fn open_routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(utoipa_axum::routes!(system::health))
        .routes(utoipa_axum::routes!(system::metrics))
}

/// Endpoints that need the token.
fn guarded_routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .merge(system::routes())
        .merge(accounts::routes())
        .merge(history::routes())
        .merge(webhooks::routes())
}

/// The OpenAPI 3.1 document of everything [`router`] serves.
pub fn openapi() -> OpenApi {
    let (_, open) = open_routes().split_for_parts();
    let (_, guarded) = guarded_routes().split_for_parts();
    let mut doc = OpenApi::builder()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("Lifeline HTTP API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Supervise WhatsApp and WebSocket sessions: accounts, linking, history, \
                     recovery policy and webhooks. Served on loopback only. Every endpoint but \
                     /health, /metrics and /openapi.json needs `Authorization: Bearer TOKEN`, \
                     the value of the token secret in the OS keyring (`lifeline secret set \
                     http-token`). Errors are `{code, message}`.",
                ))
                .build(),
        )
        .build();
    doc.merge(guarded);
    let require = vec![SecurityRequirement::new(BEARER, Vec::<String>::new())];
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            op.security = Some(require.clone());
        }
    }
    doc.merge(open);
    // A response object must say what it is; the handlers give descriptions where there is
    // more to say than the status.
    for item in doc.paths.paths.values_mut() {
        for op in operations(item) {
            for (status, response) in op.responses.responses.iter_mut() {
                if let RefOr::T(r) = response
                    && r.description.is_empty()
                {
                    r.description = status
                        .parse::<u16>()
                        .ok()
                        .and_then(|s| StatusCode::from_u16(s).ok())
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Answer")
                        .to_owned();
                }
            }
        }
    }
    let components = doc.components.get_or_insert_with(Default::default);
    components.schemas.insert(
        "ErrorBody".to_owned(),
        <ErrorBody as utoipa::PartialSchema>::schema(),
    );
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    doc
}

fn operations(
    item: &mut utoipa::openapi::PathItem,
) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The routes with their state: the open ones, the guarded ones behind the token check, the
/// document, and `{code, message}` answers for unknown paths and methods.
pub fn router(api: Api) -> Router {
    let document = match serde_json::to_vec_pretty(&openapi()) {
        Ok(json) => json,
        Err(e) => {
            tracing::error!(error = %e, "OpenAPI document not serialisable");
            Vec::new()
        }
    };
    let document = axum::body::Bytes::from(document);
    let (open, _) = open_routes().split_for_parts();
    let (guarded, _) = guarded_routes().split_for_parts();
    let guarded = guarded.route_layer(axum::middleware::from_fn_with_state(
        api.clone(),
        auth::require_token,
    ));
    open.merge(guarded)
        .route(
            "/openapi.json",
            axum::routing::get(move || {
                let document = document.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], document) }
            }),
        )
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .with_state(api)
}

/// Serves until `stop` is cancelled.
pub async fn serve(listener: tokio::net::TcpListener, api: Api, stop: CancellationToken) {
    let result = axum::serve(listener, router(api))
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "HTTP server stopped");
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    ApiError::not_found(
        "not_found",
        format!(
            "No endpoint {method} {}: the endpoints are listed at /openapi.json.",
            uri.path()
        ),
    )
    .into_response()
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not answer {method}: the endpoints are listed at /openapi.json.",
            uri.path()
        ),
    )
    .into_response()
}
