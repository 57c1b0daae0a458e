//! The one error shape of the API, `{code, message}`, and how engine errors and malformed
//! requests map onto it.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use std::collections::BTreeMap;

use axum::response::{IntoResponse, Response};
use lifeline_engine::{Error, InputError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::{Ref, RefOr};

/// Every error answer: a stable machine code and one line for a person.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable, snake_case: `bad_request`, `unauthorized`, `not_found`, `unknown_account`, …
    pub code: String,
    /// One line saying what was wrong and what to do.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
            },
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::Input(input) => {
                let (status, code) = match input {
                    InputError::UnknownAccount(_) => (StatusCode::NOT_FOUND, "unknown_account"),
                    InputError::UnknownWebhook(_) => (StatusCode::NOT_FOUND, "unknown_webhook"),
                    InputError::UnknownDelivery(_) => (StatusCode::NOT_FOUND, "unknown_delivery"),
                    InputError::DuplicateName(_) => (StatusCode::CONFLICT, "duplicate_name"),
                    _ => (StatusCode::BAD_REQUEST, "bad_request"),
                };
                Self::new(status, code, message)
            }
            Error::Keyring { .. } => Self::new(StatusCode::SERVICE_UNAVAILABLE, "keyring", message),
            Error::NeedsSupervisor | Error::Supervisor(_) => {
                Self::new(StatusCode::SERVICE_UNAVAILABLE, "supervisor", message)
            }
            _ => {
                tracing::warn!(error = %message, "HTTP API request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(self.body)).into_response()
    }
}

/// The error answers every guarded endpoint may give, for the OpenAPI document: each one a
/// reference to [`ErrorBody`].
#[derive(Debug)]
pub struct Errors;

impl utoipa::IntoResponses for Errors {
    fn responses() -> BTreeMap<String, RefOr<utoipa::openapi::Response>> {
        [
            (
                400,
                "A parameter or body the engine refuses; the message says which and why.",
            ),
            (401, "No bearer token, or not the right one."),
            (404, "No such account, endpoint, delivery or code."),
            (409, "The name is taken."),
            (413, "The request body is too large."),
            (500, "The store could not be read or written."),
            (
                503,
                "No token is set yet, or the OS keyring cannot be reached.",
            ),
        ]
        .into_iter()
        .map(|(status, description)| {
            let content = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            let response = ResponseBuilder::new()
                .description(description)
                .content("application/json", content)
                .build();
            (status.to_string(), RefOr::T(response))
        })
        .collect()
    }
}

/// A JSON body; a malformed one is a `400` in the API's error shape.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(e) => Err(rejected_body(&e)),
        }
    }
}

fn rejected_body(e: &JsonRejection) -> ApiError {
    ApiError::bad_request(format!(
        "The request body is not what this endpoint takes: {}.",
        e.body_text()
    ))
}

/// Query parameters; malformed ones are a `400`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e: QueryRejection| ApiError::bad_request(e.body_text()))
    }
}

/// Path parameters; an id that is not a number is a `400`.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|e: PathRejection| {
                ApiError::bad_request(format!(
                    "{}: ids in paths are whole numbers (see /openapi.json).",
                    e.body_text()
                ))
            })
    }
}

/// Bodies an action endpoint reads before refusing them.
const MAX_ACTION_BODY: usize = 64 * 1024;

/// An action takes no body; an empty one or a JSON value (`{}`) is accepted, anything else is a
/// `400`, so a client that thinks it is sending parameters learns that it is not.
#[derive(Debug)]
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_ACTION_BODY)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!(
                        "The request body is over {MAX_ACTION_BODY} bytes; actions take no body."
                    ),
                )
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(NoBody);
        }
        serde_json::from_slice::<serde_json::Value>(&bytes)
            .map(|_| NoBody)
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "bad_json",
                    format!(
                        "The request body is not valid JSON ({e}); actions take no body: the account and the action are in the path."
                    ),
                )
            })
    }
}
