//! CSV export of session history, the event log and the sessions connectors report at the
//! remote (lives), streamed row by row from SQL so memory stays
//! flat however large the history. Cells that a spreadsheet would run as a formula are neutralised.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use chrono::Utc;

use crate::error::{Error, Result};
use crate::model::AccountId;
use crate::store::Store;
use crate::time::{TimeRange, to_ms, write_rfc3339_ms};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    /// Connected intervals: one row per session.
    Sessions,
    /// The audit log: one row per transition.
    Events,
    /// Sessions at the remote (a creator's live broadcasts): one row each, then one column per
    /// count the connector reported.
    Lives,
}

impl ExportKind {
    pub fn header(self) -> &'static [&'static str] {
        match self {
            ExportKind::Sessions => &[
                "session_id",
                "account_id",
                "account_name",
                "started_at",
                "ended_at",
                "duration_s",
                "end_reason",
                "account_number",
            ],
            ExportKind::Events => &[
                "event_id",
                "at",
                "account_id",
                "account_name",
                "from_state",
                "to_state",
                "reason",
                "detail",
                "triggered_by",
                "account_number",
            ],
            ExportKind::Lives => &[
                "live_id",
                "account_id",
                "account_name",
                "account_handle",
                "remote_key",
                "started_at",
                "ended_at",
                "duration_s",
                "ended_how",
            ],
        }
    }
}

/// Which rows to export. Sessions match when they overlap the range (an open session runs until
/// now); events match when they happened inside it. The range is half-open: `[since, until)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportFilter {
    pub account: Option<AccountId>,
    pub range: TimeRange,
}

/// The SQL behind the sessions export, shared with the benchmark that compares against `sqlite3 -csv`.
pub const SESSIONS_SQL: &str = "SELECT s.id, s.account_id, a.name, s.started_at, s.ended_at, s.end_reason, a.remote_id \
     FROM sessions s JOIN accounts a ON a.id = s.account_id \
     WHERE (?1 IS NULL OR s.account_id = ?1) \
       AND (?2 IS NULL OR COALESCE(s.ended_at, ?4) > ?2) \
       AND (?3 IS NULL OR s.started_at < ?3) \
     ORDER BY s.started_at, s.id";

const EVENTS_SQL: &str = "SELECT e.id, e.at, e.account_id, a.name, e.from_state, e.to_state, e.reason, e.detail, e.triggered_by, \
     a.remote_id \
     FROM events e JOIN accounts a ON a.id = e.account_id \
     WHERE (?1 IS NULL OR e.account_id = ?1) \
       AND (?2 IS NULL OR e.at >= ?2) \
       AND (?3 IS NULL OR e.at < ?3) \
     ORDER BY e.at, e.id";

const LIVES_SQL: &str = "SELECT r.id, r.account_id, a.name, a.remote_id, r.key, r.started_at, r.ended_at, \
     r.end_how, r.metrics \
     FROM remote_sessions r JOIN accounts a ON a.id = r.account_id \
     WHERE (?1 IS NULL OR r.account_id = ?1) \
       AND (?2 IS NULL OR COALESCE(r.ended_at, ?4) > ?2) \
       AND (?3 IS NULL OR r.started_at < ?3) \
     ORDER BY r.started_at, r.id";

/// The count columns of a lives export: every name the matching rows carry, in the order the
/// connector reports them.
const LIVE_METRICS_SQL: &str = "SELECT json_extract(j.value, '$[0]') AS name \
     FROM remote_sessions r, json_each(r.metrics) j \
     WHERE (?1 IS NULL OR r.account_id = ?1) \
       AND (?2 IS NULL OR COALESCE(r.ended_at, ?4) > ?2) \
       AND (?3 IS NULL OR r.started_at < ?3) \
     GROUP BY name ORDER BY MIN(j.key), name";

/// [`LIVE_METRICS_SQL`] in PostgreSQL's JSON functions (the counts are kept as JSON text).
const LIVE_METRICS_PG: &str = "SELECT j.value->>0 AS name \
     FROM remote_sessions r, jsonb_array_elements(r.metrics::jsonb) WITH ORDINALITY AS j(value, key) \
     WHERE ($1::BIGINT IS NULL OR r.account_id = $1) \
       AND ($2::BIGINT IS NULL OR COALESCE(r.ended_at, $4) > $2) \
       AND ($3::BIGINT IS NULL OR r.started_at < $3) \
     GROUP BY name ORDER BY MIN(j.key), name";

/// Rows between progress callbacks.
pub const PROGRESS_EVERY: u64 = 10_000;

/// Streams the export into `out` and returns the number of data rows written, with the writer.
/// `progress` is called with the running row count every [`PROGRESS_EVERY`] rows.
///
/// The CSV is written on a blocking thread. From SQLite the rows are read there too, through a
/// read-only rusqlite connection to the same database: sqlx materialises every row through its
/// worker channel (about 2.6 µs a row here), which alone made exports 2–3× slower than
/// `sqlite3 -csv`. From a fleet store they stream from PostgreSQL in batches over a channel, so
/// memory stays flat there too. The SQL and the rows written are the same either way.
pub async fn export_csv<W, P>(
    store: &Store,
    kind: ExportKind,
    filter: ExportFilter,
    out: W,
    progress: P,
) -> Result<(u64, W)>
where
    W: Write + Send + 'static,
    P: FnMut(u64) + Send + 'static,
{
    export_csv_at(store, kind, filter, to_ms(Utc::now()), out, progress).await
}

/// [`export_csv`] with open sessions counted to `now` (Unix ms).
pub(crate) async fn export_csv_at<W, P>(
    store: &Store,
    kind: ExportKind,
    filter: ExportFilter,
    now: i64,
    out: W,
    progress: P,
) -> Result<(u64, W)>
where
    W: Write + Send + 'static,
    P: FnMut(u64) + Send + 'static,
{
    // Removed accounts still have exportable history, so look among all of them.
    store.known_account(filter.account).await?;
    if let Some(pool) = store.postgres_pool() {
        return from_postgres(pool, kind, filter, now, out, progress).await;
    }
    let Some(db) = store.path().map(Path::to_owned) else {
        return Err(Error::Export("the store has no database to read".into()));
    };
    tokio::task::spawn_blocking(move || from_sqlite(&db, kind, filter, now, out, progress))
        .await
        .map_err(thread_stopped)?
}

fn thread_stopped(e: tokio::task::JoinError) -> Error {
    Error::Export(format!("the export thread stopped: {e}"))
}

/// The statement for `kind`, with `?N` parameters (SQLite's spelling).
fn statement(kind: ExportKind) -> &'static str {
    match kind {
        ExportKind::Sessions => SESSIONS_SQL,
        ExportKind::Events => EVENTS_SQL,
        ExportKind::Lives => LIVES_SQL,
    }
}

/// The filter as the statements' parameters: account, since, until (Unix ms).
fn parameters(filter: ExportFilter) -> (Option<i64>, Option<i64>, Option<i64>) {
    (
        filter.account.map(|a| a.0),
        filter.range.since.map(to_ms),
        filter.range.until.map(to_ms),
    )
}

fn from_sqlite<W: Write>(
    db: &Path,
    kind: ExportKind,
    filter: ExportFilter,
    now: i64,
    out: W,
    mut progress: impl FnMut(u64),
) -> Result<(u64, W)> {
    let (conn, sql_err) = crate::store::sqlite_reader(db, |_, e| Error::Export(e.to_string()))?;
    let (account, since, until) = parameters(filter);
    let metrics: Vec<String> = if kind == ExportKind::Lives {
        let mut stmt = conn.prepare(LIVE_METRICS_SQL).map_err(sql_err)?;
        stmt.query_map(rusqlite::params![account, since, until, now], |r| {
            r.get::<_, String>(0)
        })
        .map_err(sql_err)?
        .collect::<std::result::Result<_, _>>()
        .map_err(sql_err)?
    } else {
        Vec::new()
    };
    let mut stmt = conn.prepare(statement(kind)).map_err(sql_err)?;
    let mut rows = match kind {
        ExportKind::Sessions | ExportKind::Lives => {
            stmt.query(rusqlite::params![account, since, until, now])
        }
        ExportKind::Events => stmt.query(rusqlite::params![account, since, until]),
    }
    .map_err(sql_err)?;
    let mut csv = RowWriter::new(out, kind, metrics, now)?;
    while let Some(row) = rows.next().map_err(sql_err)? {
        if csv.write(row)? {
            progress(csv.count);
        }
    }
    csv.finish()
}

/// Rows fetched from PostgreSQL per hand-over to the writing thread.
const PG_BATCH: usize = 512;

async fn from_postgres<W, P>(
    pool: &sqlx::PgPool,
    kind: ExportKind,
    filter: ExportFilter,
    now: i64,
    out: W,
    mut progress: P,
) -> Result<(u64, W)>
where
    W: Write + Send + 'static,
    P: FnMut(u64) + Send + 'static,
{
    use futures_util::TryStreamExt;
    let (account, since, until) = parameters(filter);
    let metrics: Vec<String> = if kind == ExportKind::Lives {
        sqlx::query_scalar(LIVE_METRICS_PG)
            .bind(account)
            .bind(since)
            .bind(until)
            .bind(now)
            .fetch_all(pool)
            .await?
    } else {
        Vec::new()
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<sqlx::postgres::PgRow>>(4);
    let writer = tokio::task::spawn_blocking(move || {
        let mut csv = RowWriter::new(out, kind, metrics, now)?;
        while let Some(batch) = rx.blocking_recv() {
            for row in &batch {
                if csv.write(row)? {
                    progress(csv.count);
                }
            }
        }
        csv.finish()
    });
    let sql = statement(kind).replace('?', "$");
    // The constants above with `$N` for `?N`: no outside text in it.
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(account)
        .bind(since)
        .bind(until);
    if kind != ExportKind::Events {
        query = query.bind(now);
    }
    let mut rows = query.fetch(pool);
    let mut batch = Vec::with_capacity(PG_BATCH);
    let fetched: Result<()> = async {
        while let Some(row) = rows.try_next().await? {
            batch.push(row);
            if batch.len() == PG_BATCH
                && tx
                    .send(std::mem::replace(&mut batch, Vec::with_capacity(PG_BATCH)))
                    .await
                    .is_err()
            {
                // The writer stopped: its error is the one to report.
                return Ok(());
            }
        }
        if !batch.is_empty() {
            let _ = tx.send(batch).await;
        }
        Ok(())
    }
    .await;
    drop(tx);
    let written = writer.await.map_err(thread_stopped)?;
    fetched?;
    written
}

/// One row's cells, as both databases' rows give them.
trait Cells {
    fn int(&self, i: usize) -> Result<i64>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
    /// A text cell, NULL as empty.
    fn text(&self, i: usize) -> Result<&str>;
}

impl Cells for rusqlite::Row<'_> {
    fn int(&self, i: usize) -> Result<i64> {
        self.get(i).map_err(|e| Error::Export(e.to_string()))
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        self.get(i).map_err(|e| Error::Export(e.to_string()))
    }

    fn text(&self, i: usize) -> Result<&str> {
        let value = self.get_ref(i).map_err(|e| Error::Export(e.to_string()))?;
        match value {
            rusqlite::types::ValueRef::Null => Ok(""),
            v => v.as_str().map_err(|e| Error::Export(e.to_string())),
        }
    }
}

impl Cells for sqlx::postgres::PgRow {
    fn int(&self, i: usize) -> Result<i64> {
        use sqlx::Row as _;
        Ok(self.try_get(i)?)
    }

    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        use sqlx::Row as _;
        Ok(self.try_get(i)?)
    }

    fn text(&self, i: usize) -> Result<&str> {
        use sqlx::Row as _;
        Ok(self.try_get::<Option<&str>, _>(i)?.unwrap_or(""))
    }
}

/// The CSV being written: the header, then one record per row, whichever database it came from.
struct RowWriter<W: Write> {
    csv: csv::Writer<W>,
    kind: ExportKind,
    /// The lives export's count columns.
    metrics: Vec<String>,
    now: i64,
    count: u64,
    /// Reused cell buffers: the hot loop allocates nothing per row.
    bufs: [String; 3],
}

impl<W: Write> RowWriter<W> {
    fn new(out: W, kind: ExportKind, metrics: Vec<String>, now: i64) -> Result<Self> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(
            kind.header()
                .iter()
                .copied()
                .chain(metrics.iter().map(String::as_str)),
        )?;
        Ok(Self {
            csv,
            kind,
            metrics,
            now,
            count: 0,
            bufs: Default::default(),
        })
    }

    /// Writes one row; true when progress is due.
    fn write(&mut self, row: &impl Cells) -> Result<bool> {
        let Self { csv, now, bufs, .. } = self;
        let now = *now;
        let [a, b, c] = bufs;
        a.clear();
        b.clear();
        c.clear();
        match self.kind {
            ExportKind::Sessions => {
                write_ids(csv, a, row.int(0)?, row.int(1)?)?;
                csv.write_field(neutralize(row.text(2)?).as_bytes())?;
                write_span(csv, [a, b, c], row.int(3)?, row.opt_int(4)?, now)?;
                csv.write_field(neutralize(row.text(5)?).as_bytes())?;
                csv.write_field(neutralize(row.text(6)?).as_bytes())?;
            }
            ExportKind::Lives => {
                write_ids(csv, a, row.int(0)?, row.int(1)?)?;
                for i in 2..5 {
                    csv.write_field(neutralize(row.text(i)?).as_bytes())?;
                }
                write_span(csv, [a, b, c], row.int(5)?, row.opt_int(6)?, now)?;
                csv.write_field(neutralize(row.text(7)?).as_bytes())?;
                let counts: Vec<(String, i64)> = serde_json::from_str(row.text(8)?)
                    .map_err(|e| Error::Export(format!("a live's counts are unreadable: {e}")))?;
                for name in &self.metrics {
                    a.clear();
                    if let Some((_, v)) = counts.iter().find(|(n, _)| n == name) {
                        write_int(a, *v);
                    }
                    csv.write_field(&*a)?;
                }
            }
            ExportKind::Events => {
                write_int(a, row.int(0)?);
                write_rfc3339_ms(row.int(1)?, b);
                write_int(c, row.int(2)?);
                csv.write_field(&*a)?;
                csv.write_field(&*b)?;
                csv.write_field(&*c)?;
                for i in 3..10 {
                    csv.write_field(neutralize(row.text(i)?).as_bytes())?;
                }
            }
        }
        csv.write_record(None::<&[u8]>)?;
        self.count += 1;
        Ok(self.count.is_multiple_of(PROGRESS_EVERY))
    }

    fn finish(self) -> Result<(u64, W)> {
        let out = self
            .csv
            .into_inner()
            .map_err(|e| Error::Csv(e.into_error().into()))?;
        Ok((self.count, out))
    }
}

/// Exports to a file: written beside it under a temporary name and renamed into place only when
/// complete, so a failed or interrupted export never leaves a truncated CSV behind.
pub async fn export_to_path(
    store: &Store,
    kind: ExportKind,
    filter: ExportFilter,
    path: &Path,
    progress: impl FnMut(u64) + Send + 'static,
) -> Result<u64> {
    let write_err = |source| Error::Write {
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".lifeline-export-")
        .suffix(".csv.part")
        .tempfile_in(dir)
        .map_err(write_err)?;
    let file = tmp.as_file().try_clone().map_err(write_err)?;
    let out = std::io::BufWriter::with_capacity(256 * 1024, file);
    let (rows, out) = export_csv(store, kind, filter, out, progress).await?;
    let file = out.into_inner().map_err(|e| write_err(e.into_error()))?;
    file.sync_all().map_err(write_err)?;
    tmp.persist(path).map_err(|e| write_err(e.error))?;
    Ok(rows)
}

/// A row's own id and its account's, as the first two cells (`buf` is scratch space).
fn write_ids<W: Write>(
    csv: &mut csv::Writer<W>,
    buf: &mut String,
    id: i64,
    account_id: i64,
) -> Result<()> {
    for v in [id, account_id] {
        buf.clear();
        write_int(buf, v);
        csv.write_field(&*buf)?;
    }
    Ok(())
}

/// Three cells for an interval: its start, its end (empty while it runs) and its duration in
/// seconds, counted to `now` while it runs. The buffers are scratch space.
fn write_span<W: Write>(
    csv: &mut csv::Writer<W>,
    [a, b, c]: [&mut String; 3],
    started: i64,
    ended: Option<i64>,
    now: i64,
) -> Result<()> {
    b.clear();
    write_rfc3339_ms(started, b);
    csv.write_field(&*b)?;
    c.clear();
    if let Some(e) = ended {
        write_rfc3339_ms(e, c);
    }
    csv.write_field(&*c)?;
    a.clear();
    write_seconds(a, ended.unwrap_or(now).saturating_sub(started).max(0));
    csv.write_field(&*a)?;
    Ok(())
}

/// Milliseconds as seconds with three decimals.
fn write_seconds(out: &mut String, ms: i64) {
    write_int(out, ms / 1000);
    let frac = ms % 1000;
    out.push_str(if frac < 10 {
        ".00"
    } else if frac < 100 {
        ".0"
    } else {
        "."
    });
    write_int(out, frac);
}

fn write_int(out: &mut String, v: i64) {
    use std::fmt::Write as _;
    // Writing to a String cannot fail.
    let _ = write!(out, "{v}");
}

/// Prefixes a `'` to cells a spreadsheet would evaluate (`= + - @`, tab, carriage return), the
/// OWASP-recommended neutralisation; other text, including any UTF-8, passes unchanged.
pub fn neutralize(cell: &str) -> Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

#[cfg(test)]
mod tests;
