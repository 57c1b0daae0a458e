//! History: events and sessions page by page as JSON, and the CSV exports streamed.

use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use lifeline_engine::Event;
use lifeline_engine::export::{self, ExportFilter, ExportKind};
use lifeline_engine::model::AccountId;
use lifeline_engine::store::{HistoryPage, MAX_PAGE, SessionRecord};
use lifeline_engine::time::TimeRange;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{Errors, Query};
use crate::{Api, ApiError};

pub fn routes() -> OpenApiRouter<Api> {
    OpenApiRouter::new()
        .routes(routes!(events))
        .routes(routes!(sessions))
        .routes(routes!(export_events))
        .routes(routes!(export_sessions))
        .routes(routes!(export_lives))
}

/// Rows when `limit` is not given.
const DEFAULT_PAGE: u32 = 100;

/// Filters as the CSV export takes them, and paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Only this account (removed accounts keep their history).
    pub account: Option<i64>,
    /// From this time, inclusive: RFC 3339 or YYYY-MM-DD (UTC).
    pub since: Option<String>,
    /// Up to this time, exclusive.
    pub until: Option<String>,
    /// The `next_after` of the previous page.
    pub after: Option<i64>,
    /// Rows per page, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Filters of a CSV export.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Only this account (removed accounts keep their history).
    pub account: Option<i64>,
    /// From this time, inclusive: RFC 3339 or YYYY-MM-DD (UTC).
    pub since: Option<String>,
    /// Up to this time, exclusive.
    pub until: Option<String>,
}

fn range(since: Option<&str>, until: Option<&str>) -> Result<TimeRange, ApiError> {
    Ok(TimeRange::parse(since, until).map_err(lifeline_engine::Error::from)?)
}

fn page(q: &PageQuery) -> Result<HistoryPage, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit {limit} is out of range: use 1 to {MAX_PAGE}."
        )));
    }
    Ok(HistoryPage {
        account: q.account.map(AccountId),
        range: range(q.since.as_deref(), q.until.as_deref())?,
        after: q.after,
        limit,
    })
}

/// Recorded transitions, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventPage {
    pub items: Vec<Event>,
    /// Pass as `after` for the next page; absent on the last one.
    pub next_after: Option<i64>,
}

/// Connected intervals, oldest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionPage {
    pub items: Vec<SessionRecord>,
    /// Pass as `after` for the next page; absent on the last one.
    pub next_after: Option<i64>,
}

fn next_after(ids: impl DoubleEndedIterator<Item = i64>, len: usize, limit: u32) -> Option<i64> {
    if len as u64 == u64::from(limit) {
        ids.last()
    } else {
        None
    }
}

/// The event log: every recorded transition with its reason and who caused it.
#[utoipa::path(get, path = "/events", tag = "history", params(PageQuery),
    responses((status = 200, body = EventPage), Errors))]
pub async fn events(
    State(api): State<Api>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<EventPage>, ApiError> {
    let page = page(&q)?;
    let items = api.sup.store().events_page(page).await?;
    let next_after = next_after(items.iter().map(|e| e.id), items.len(), page.limit);
    Ok(axum::Json(EventPage { items, next_after }))
}

/// Sessions (connected intervals) overlapping the range; an open one runs until now.
#[utoipa::path(get, path = "/sessions", tag = "history", params(PageQuery),
    responses((status = 200, body = SessionPage), Errors))]
pub async fn sessions(
    State(api): State<Api>,
    Query(q): Query<PageQuery>,
) -> Result<axum::Json<SessionPage>, ApiError> {
    let page = page(&q)?;
    let items = api
        .sup
        .store()
        .sessions_page(page, api.sup.clock().now())
        .await?;
    let next_after = next_after(items.iter().map(|s| s.id), items.len(), page.limit);
    Ok(axum::Json(SessionPage { items, next_after }))
}

/// The event log as CSV, the same file `lifeline export --what events` writes (streamed).
#[utoipa::path(get, path = "/export/events.csv", tag = "history", params(ExportQuery),
    responses((status = 200, description = "CSV with a header row", content_type = "text/csv", body = String), Errors))]
pub async fn export_events(
    State(api): State<Api>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    export_csv(api, ExportKind::Events, q).await
}

/// Sessions as CSV, the same file `lifeline export --what sessions` writes (streamed).
#[utoipa::path(get, path = "/export/sessions.csv", tag = "history", params(ExportQuery),
    responses((status = 200, description = "CSV with a header row", content_type = "text/csv", body = String), Errors))]
pub async fn export_sessions(
    State(api): State<Api>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    export_csv(api, ExportKind::Sessions, q).await
}

/// Lives (sessions connectors report at the remote, such as a TikTok creator's broadcasts) as
/// CSV, the same file `lifeline export --what lives` writes (streamed): one row per live, then
/// one column per count.
#[utoipa::path(get, path = "/export/lives.csv", tag = "history", params(ExportQuery),
    responses((status = 200, description = "CSV with a header row", content_type = "text/csv", body = String), Errors))]
pub async fn export_lives(
    State(api): State<Api>,
    Query(q): Query<ExportQuery>,
) -> Result<Response, ApiError> {
    export_csv(api, ExportKind::Lives, q).await
}

/// Chunks of about this many bytes travel from the export thread to the response.
const CHUNK: usize = 64 * 1024;

async fn export_csv(api: Api, kind: ExportKind, q: ExportQuery) -> Result<Response, ApiError> {
    let filter = ExportFilter {
        account: q.account.map(AccountId),
        range: range(q.since.as_deref(), q.until.as_deref())?,
    };
    // Refused before the answer starts: afterwards a failure can only cut the stream short.
    api.sup.store().known_account(filter.account).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let store = api.sup.store().clone();
    tokio::spawn(async move {
        let out = ChannelWriter {
            buf: Vec::with_capacity(CHUNK),
            tx: tx.clone(),
        };
        match export::export_csv(&store, kind, filter, out, |_| {}).await {
            Ok((rows, out)) => {
                // The last, partial chunk (this task is async: no blocking send here).
                if !out.buf.is_empty() {
                    let _ = tx.send(Ok(out.buf)).await;
                }
                tracing::info!(rows, "CSV export sent over HTTP");
            }
            Err(e) => {
                tracing::warn!(error = %e, "CSV export over HTTP failed");
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let name = match kind {
        ExportKind::Events => "events.csv",
        ExportKind::Sessions => "sessions.csv",
        ExportKind::Lives => "lives.csv",
    };
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Hands the export thread's output to the response in chunks; the thread waits while the
/// client is slow (bounded channel), so memory stays flat however large the history.
struct ChannelWriter {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(Ok(chunk)).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client went away")
        })
    }
}
