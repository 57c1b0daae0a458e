//! The bearer token check in front of every guarded endpoint.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{Api, ApiError};

pub async fn require_token(State(api): State<Api>, req: Request, next: Next) -> Response {
    match authorize(&api, req.headers()).await {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Checks `Authorization: Bearer <token>` against the keyring secret. A request without a bearer
/// token is refused before the keyring is asked, so a flood of anonymous requests costs no
/// keyring round trips.
async fn authorize(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let unauthorized = |what: &str| {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "{what}: send `Authorization: Bearer TOKEN` with the value of secret '{}'.",
                api.token_secret
            ),
        )
    };
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(unauthorized("Missing bearer token"));
    };
    let (secrets, name) = (api.secrets.clone(), api.token_secret.clone());
    let expected = tokio::task::spawn_blocking(move || secrets.get(&name))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let expected = match expected {
        Ok(Some(v)) => v,
        Ok(None) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_token",
                format!(
                    "The API is off until a token is set: run `lifeline secret set {}`.",
                    api.token_secret
                ),
            ));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "keyring",
                e.to_string(),
            ));
        }
    };
    if constant_time_eq(given.as_bytes(), expected.expose().as_bytes()) {
        Ok(())
    } else {
        Err(unauthorized("Wrong bearer token"))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
