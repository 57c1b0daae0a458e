//! Accounts: list, add, read, change, remove, start/stop/retry/reset, and linking (the current
//! QR payload or pair code, and the QR code as a PNG).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use lifeline_engine::connector::{LinkCode, LinkMode};
use lifeline_engine::fleet::AccountView;
use lifeline_engine::model::{
    AccountChange, AccountId, AccountKind, DEFAULT_PRIORITY, HeaderRef, NewAccount, SecretName,
    normalize_phone,
};
use lifeline_engine::ops::{Action, Control, Target};
use lifeline_engine::policy::breaker::Breaker;
use lifeline_engine::supervisor::queue::link_for_another;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Errors, Json, NoBody, Path};
use crate::system::{Applied, act};
use crate::{Api, ApiError};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(list_accounts, add_account))
        .routes(routes!(get_account, update_account, remove_account))
        .routes(routes!(start_account))
        .routes(routes!(stop_account))
        .routes(routes!(retry_account))
        .routes(routes!(reset_account))
        .routes(routes!(link, link_code))
        .routes(routes!(link_qr_png))
}

/// An account to add. A WhatsApp account is added waiting to be linked.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccountBody {
    pub kind: AccountKind,
    /// A name the operator recognises, e.g. "Shop A" (unique).
    pub name: String,
    /// Endpoint of a WebSocket account (ws:// or wss://); none for WhatsApp.
    #[serde(default)]
    pub url: Option<String>,
    /// Restore order at startup, 0–1000, higher first (default 100).
    #[serde(default)]
    pub priority: Option<i64>,
    /// ISO 3166-1 country code of the number, e.g. ID.
    #[serde(default)]
    pub country: Option<String>,
    /// Proxy to connect through: socks5://host:port or http://host:port.
    #[serde(default)]
    pub proxy_url: Option<String>,
    /// Name of the secret holding the proxy's user:password.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub proxy_secret: Option<SecretName>,
    /// Headers sent on connect, each valued from a secret.
    #[serde(default)]
    pub headers: Vec<HeaderRef>,
    /// No desktop notifications for this account.
    #[serde(default)]
    pub muted: bool,
    /// Start it at once (default true; a WhatsApp account starts when linked).
    #[serde(default)]
    pub start: Option<bool>,
}

/// The account's live view with its settings as just stored (a running account task learns of
/// a change a moment later).
fn view(api: &Api, account: &lifeline_engine::Account) -> AccountView {
    let stored = AccountView::stored(account, &Breaker::default());
    match api.sup.view(account.id) {
        Some(live) => AccountView {
            name: stored.name,
            priority: stored.priority,
            muted: stored.muted,
            ..live
        },
        None => stored,
    }
}

/// Every account with its live state, highest priority first.
#[utoipa::path(get, path = "/accounts", tag = "accounts",
    responses((status = 200, body = Vec<AccountView>), Errors))]
pub async fn list_accounts(State(api): State<Api>) -> axum::Json<Vec<AccountView>> {
    let mut views = api.sup.views();
    views.sort_by_key(|v| lifeline_engine::fleet::order(v.priority, v.id));
    axum::Json(views)
}

/// Adds an account (validated exactly as `lifeline account add`).
#[utoipa::path(post, path = "/accounts", tag = "accounts", request_body = NewAccountBody,
    responses((status = 201, body = AccountView), Errors))]
pub async fn add_account(
    State(api): State<Api>,
    Json(body): Json<NewAccountBody>,
) -> Result<(StatusCode, axum::Json<AccountView>), ApiError> {
    let mut new = NewAccount::new(body.kind, body.name);
    new.url = body.url;
    new.priority = body.priority.unwrap_or(DEFAULT_PRIORITY);
    new.country = body.country;
    new.proxy_url = body.proxy_url;
    new.proxy_secret = body.proxy_secret;
    new.headers = body.headers;
    new.muted = body.muted;
    new.desired_running = body.start.unwrap_or(true);
    let account = api.sup.add(new).await?;
    Ok((StatusCode::CREATED, axum::Json(view(&api, &account))))
}

#[utoipa::path(get, path = "/accounts/{id}", tag = "accounts",
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = AccountView), Errors))]
pub async fn get_account(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<AccountView>, ApiError> {
    let account = api.sup.store().account(AccountId(id)).await?;
    Ok(axum::Json(view(&api, &account)))
}

/// Renames, reprioritises, mutes or unmutes an account; fields left out stay as they are.
#[utoipa::path(patch, path = "/accounts/{id}", tag = "accounts", request_body = AccountChange,
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = AccountView), Errors))]
pub async fn update_account(
    State(api): State<Api>,
    Path(id): Path<i64>,
    Json(change): Json<AccountChange>,
) -> Result<axum::Json<AccountView>, ApiError> {
    let account = api.sup.update(AccountId(id), change).await?;
    Ok(axum::Json(view(&api, &account)))
}

/// Stops the account, wipes what its connector keeps (device keys) and takes it out of the
/// fleet; its history stays in exports.
#[utoipa::path(delete, path = "/accounts/{id}", tag = "accounts",
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, description = "Removed; the account as it was", body = AccountView), Errors))]
pub async fn remove_account(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<AccountView>, ApiError> {
    let account = api.sup.remove(AccountId(id)).await?;
    Ok(axum::Json(AccountView::stored(
        &account,
        &Breaker::default(),
    )))
}

async fn act_one(
    api: &Api,
    action: Action,
    id: i64,
) -> Result<(StatusCode, axum::Json<Applied>), ApiError> {
    act(api, action, Target::One(AccountId(id))).await
}

/// Marks the account desired-running; the supervisor connects it (paced).
#[utoipa::path(post, path = "/accounts/{id}/start", tag = "accounts",
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 202, body = Applied), Errors))]
pub async fn start_account(
    State(api): State<Api>,
    Path(id): Path<i64>,
    _: NoBody,
) -> Result<(StatusCode, axum::Json<Applied>), ApiError> {
    act_one(&api, Action::Start, id).await
}

/// Stops the account and keeps it stopped.
#[utoipa::path(post, path = "/accounts/{id}/stop", tag = "accounts",
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 202, body = Applied), Errors))]
pub async fn stop_account(
    State(api): State<Api>,
    Path(id): Path<i64>,
    _: NoBody,
) -> Result<(StatusCode, axum::Json<Applied>), ApiError> {
    act_one(&api, Action::Stop, id).await
}

/// Retries now, skipping the backoff wait and an open breaker (still paced).
#[utoipa::path(post, path = "/accounts/{id}/retry", tag = "accounts",
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 202, body = Applied), Errors))]
pub async fn retry_account(
    State(api): State<Api>,
    Path(id): Path<i64>,
    _: NoBody,
) -> Result<(StatusCode, axum::Json<Applied>), ApiError> {
    act_one(&api, Action::Retry, id).await
}

/// Closes the account's circuit breaker.
#[utoipa::path(post, path = "/accounts/{id}/reset", tag = "accounts",
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 202, body = Applied), Errors))]
pub async fn reset_account(
    State(api): State<Api>,
    Path(id): Path<i64>,
    _: NoBody,
) -> Result<(StatusCode, axum::Json<Applied>), ApiError> {
    act_one(&api, Action::Reset, id).await
}

/// How to link: by QR code (no body, or no phone), or by a pair code typed on the phone.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkRequest {
    /// The number in international form (+62 812 …) to pair by code instead of QR.
    #[serde(default)]
    pub phone: Option<String>,
}

/// Starts linking a WhatsApp account. The code to show appears at `GET /accounts/{id}/link`
/// within seconds and is refreshed as it rotates; linking starts the account.
#[utoipa::path(post, path = "/accounts/{id}/link", tag = "linking",
    params(("id" = i64, Path, description = "Account id")),
    request_body(content = Option<LinkRequest>, description = "Optional: `{\"phone\": \"+62…\"}` for a pair code"),
    responses((status = 202, body = Applied), Errors))]
pub async fn link(
    State(api): State<Api>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Applied>), ApiError> {
    let request: LinkRequest = if body.iter().all(u8::is_ascii_whitespace) {
        LinkRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::bad_request(format!("The request body is not a link request: {e}."))
        })?
    };
    let mode = match request.phone.as_deref() {
        Some(p) => LinkMode::PhoneCode {
            phone: normalize_phone(p).map_err(lifeline_engine::Error::from)?,
        },
        None => LinkMode::Qr,
    };
    link_for_another(&api.sup, AccountId(id), mode).await?;
    Ok((StatusCode::ACCEPTED, axum::Json(Applied { applied: 1 })))
}

async fn current_code(api: &Api, id: i64) -> Result<LinkCode, ApiError> {
    let id = AccountId(id);
    api.sup.store().account(id).await?;
    api.sup.store().link_code(id).await?.ok_or_else(|| {
        ApiError::not_found(
            "no_link_code",
            format!("Account {id} has no code to show: start linking with POST /accounts/{id}/link, then ask again."),
        )
    })
}

/// The code to show now: the QR payload (`mode: qr`) or the 8-character pair code, with when it
/// expires. Sensitive: whoever holds it can link the number.
#[utoipa::path(get, path = "/accounts/{id}/link", tag = "linking",
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, body = LinkCode), Errors))]
pub async fn link_code(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<axum::Json<LinkCode>, ApiError> {
    Ok(axum::Json(current_code(&api, id).await?))
}

/// The current QR code as a PNG image to scan (404 while none is shown, or when pairing by code).
#[utoipa::path(get, path = "/accounts/{id}/link/qr.png", tag = "linking",
    params(("id" = i64, Path, description = "Account id")),
    responses((status = 200, description = "The QR code", content_type = "image/png", body = Vec<u8>), Errors))]
pub async fn link_qr_png(
    State(api): State<Api>,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let code = current_code(&api, id).await?;
    if code.mode != LinkMode::Qr {
        return Err(ApiError::not_found(
            "no_qr_code",
            format!(
                "Account {id} is pairing by phone code, not QR: read the code at GET /accounts/{id}/link."
            ),
        ));
    }
    let png = qr_png(&code.code)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        png,
    )
        .into_response())
}

/// Pixels per QR module, and the quiet zone around the code in modules (the standard's 4).
const SCALE: usize = 8;
const QUIET: usize = 4;

/// Renders `payload` as a black-on-white grayscale PNG.
fn qr_png(payload: &str) -> Result<Vec<u8>, ApiError> {
    let internal = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e);
    let qr =
        qrcode::QrCode::new(payload.as_bytes()).map_err(|e| internal(format!("QR code: {e}")))?;
    let modules = qr.width();
    let colors = qr.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != qrcode::Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    let side32 = u32::try_from(side).map_err(|e| internal(e.to_string()))?;
    let mut encoder = png::Encoder::new(&mut out, side32, side32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| internal(format!("PNG: {e}")))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| internal(format!("PNG: {e}")))?;
    writer.finish().map_err(|e| internal(format!("PNG: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn qr_png_is_a_png_of_the_right_size() {
        let png = super::qr_png("2@abc,def,ghi,jkl").expect("renders");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().expect("a PNG");
        let info = reader.info();
        assert_eq!(info.width, info.height);
        assert_eq!(info.width as usize % super::SCALE, 0);
        assert!(info.width as usize >= (21 + 2 * super::QUIET) * super::SCALE);
    }
}
