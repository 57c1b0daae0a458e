//! Moving a machine's own store into a fleet store (`lifeline store migrate-to`): every account
//! with its history, breakers, settings, remote sessions and webhooks, keeping their ids, and
//! each linked WhatsApp number's device store sealed with the fleet key, so the fleet resumes
//! the numbers without a new QR scan.
//!
//! All of it is written in one PostgreSQL transaction, and the row counts of every table are
//! checked against the source's before it commits: a failure or an interruption anywhere
//! leaves the fleet store as it was. The source is read in one read transaction and never
//! written.
//!
//! Rows stream from SQLite on a blocking thread as CSV chunks into `COPY … FROM STDIN`, so
//! memory stays flat however long the history. The columns copied are the fleet schema's,
//! which carries the same names as the SQLite schema (flags become BOOLEAN: PostgreSQL reads
//! `0` and `1` as false and true).

use std::path::PathBuf;

use lifeline_fleet::{FleetKey, FleetStore, Purpose};
use sqlx::{AssertSqlSafe, PgConnection};
use tokio::sync::mpsc;

use super::Store;
use crate::connector::Connectors;
use crate::error::{Error, InputError, Result};
use crate::model::{AccountId, AccountKind};

/// The tables copied, in an order that respects their references. The machine's own run log,
/// command queue and pending link codes stay behind: they describe this machine's process.
/// The webhook endpoints come after the events, so the outbox trigger finds no endpoint to
/// queue old events for: the deliveries are copied as they stand.
const TABLES: &[&str] = &[
    "accounts",
    "events",
    "sessions",
    "breakers",
    "setting_changes",
    "remote_sessions",
    "webhook_endpoints",
    "webhook_deliveries",
    "settings",
    "secrets",
];

/// Tables that may already hold rows in a fresh fleet store (its webhook-id prefix, secret
/// names registered from another host): copied through a staging table and merged. This
/// machine's settings replace the fleet's; secret names are added.
const MERGED: &[(&str, &str)] = &[
    (
        "settings",
        "DELETE FROM settings WHERE key IN (SELECT key FROM staging); \
         INSERT INTO settings SELECT * FROM staging",
    ),
    (
        "secrets",
        "INSERT INTO secrets SELECT * FROM staging ON CONFLICT (name) DO NOTHING",
    ),
];

/// How a table copied through a staging table is merged into its target (`None`: copied
/// straight in).
fn merge_sql(table: &str) -> Option<&'static str> {
    MERGED
        .iter()
        .find(|(t, _)| *t == table)
        .map(|(_, sql)| *sql)
}

/// Quoted column names, comma-separated, as both databases' statements list them.
fn column_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Rows sent to PostgreSQL per CSV chunk (about a megabyte of history).
const CHUNK_ROWS: u64 = 5_000;

/// What the migration reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Rows of `table` copied so far (after each chunk, and once at its end).
    Rows { table: &'static str, rows: u64 },
    /// A WhatsApp number's device store was read and sealed.
    DeviceStore { account: AccountId },
}

/// What was copied: every table with its row count (the same on both sides), and the number
/// of sealed device stores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    pub tables: Vec<(&'static str, u64)>,
    pub device_stores: u64,
}

/// Copies `source` (a machine's own SQLite store) into the empty fleet store `fleet`. WhatsApp
/// device stores are read through `connectors` and sealed with `key`; a source with linked
/// numbers and no key is refused before anything is written.
pub async fn migrate_to_fleet(
    source: &Store,
    fleet: &FleetStore,
    connectors: &Connectors,
    key: Option<&FleetKey>,
    mut progress: impl FnMut(Progress) + Send,
) -> Result<Migrated> {
    let Some(db) = source.path().map(ToOwned::to_owned) else {
        return Err(refused(
            "the source is a fleet store already; migrate-to copies a machine's own store".into(),
        ));
    };
    // Refused early when the fleet store holds anything, before the device stores are read;
    // checked again under the lock below.
    refuse_unless_empty(fleet, &mut *fleet.pool().acquire().await?).await?;
    // The device stores next: sealed in memory (they are small), checked before any write.
    let mut devices = Vec::new();
    if let Some(whatsapp) = connectors.get(AccountKind::Whatsapp) {
        for account in source.accounts().await? {
            if account.kind != AccountKind::Whatsapp {
                continue;
            }
            let connector = whatsapp.clone();
            let id = account.id;
            let plain = tokio::task::spawn_blocking(move || connector.snapshot(&account))
                .await
                .map_err(|e| Error::Export(format!("the device store reader stopped: {e}")))??;
            let Some(plain) = plain else { continue };
            let Some(key) = key else {
                return Err(refused(format!(
                    "account {id} is a linked WhatsApp number, and its device store is sealed with \
                     the fleet key, which this host does not have: run `lifeline fleet key new` \
                     (the fleet's first host) or `lifeline fleet key import`; nothing was copied"
                )));
            };
            let sealed = key
                .seal(id.0, Purpose::DeviceStore, &plain)
                .map_err(lifeline_fleet::Error::from)?;
            devices.push((id, sealed));
            progress(Progress::DeviceStore { account: id });
        }
    }
    if !devices.is_empty()
        && let Some(key) = key
    {
        fleet.check_key(key).await?;
    }

    let mut tx = fleet.pool().begin().await?;
    // No instance may add an account or write history while the copy runs.
    sqlx::query("LOCK TABLE accounts, events, sessions IN EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    refuse_unless_empty(fleet, &mut tx).await?;
    // The outbox trigger would run once per copied event to find no endpoint (they come
    // later): switched off for the copy when this user owns the table, as the user who set the
    // store up does. Back on at the end of the same transaction either way.
    sqlx::query("SAVEPOINT trigger_off")
        .execute(&mut *tx)
        .await?;
    let trigger_off = sqlx::query("ALTER TABLE events DISABLE TRIGGER events_outbox")
        .execute(&mut *tx)
        .await
        .is_ok();
    if !trigger_off {
        sqlx::query("ROLLBACK TO SAVEPOINT trigger_off")
            .execute(&mut *tx)
            .await?;
    }
    let mut columns = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::TEXT FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
        )
        .bind(table)
        .fetch_all(&mut *tx)
        .await?;
        columns.push(names);
    }

    // The reader: one read transaction over every table, each streamed as CSV chunks.
    let (chunks, mut received) = mpsc::channel::<Chunk>(4);
    let reader_columns = columns.clone();
    let reader = tokio::task::spawn_blocking(move || read_all(db, reader_columns, chunks));

    let mut tables = Vec::with_capacity(TABLES.len());
    let copied: Result<()> = async {
        for (table, names) in TABLES.iter().zip(&columns) {
            let merged = merge_sql(table);
            let target = if merged.is_some() {
                sqlx::query(AssertSqlSafe(format!(
                    "CREATE TEMP TABLE staging (LIKE {table} INCLUDING DEFAULTS) ON COMMIT DROP"
                )))
                .execute(&mut *tx)
                .await?;
                "staging"
            } else {
                table
            };
            let statement = format!(
                "COPY {target} ({}) FROM STDIN WITH (FORMAT csv)",
                column_list(names)
            );
            let mut copy = PgConnection::copy_in_raw(&mut tx, &statement).await?;
            let expected = loop {
                match received.recv().await {
                    Some(Chunk::Rows { csv, rows }) => {
                        copy.send(csv).await?;
                        progress(Progress::Rows { table, rows });
                    }
                    Some(Chunk::End { rows }) => break rows,
                    // The reader stopped: its error is the one to report.
                    None => {
                        copy.abort("the source could not be read").await?;
                        return Ok(());
                    }
                }
            };
            let written = copy.finish().await?;
            if let Some(merge) = merged {
                sqlx::raw_sql(AssertSqlSafe(merge))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DROP TABLE staging").execute(&mut *tx).await?;
            }
            if written != expected {
                return Err(Error::Export(format!(
                    "{table}: {expected} rows read, {written} written; nothing was copied"
                )));
            }
            progress(Progress::Rows {
                table,
                rows: written,
            });
            tables.push((*table, written));
        }
        Ok(())
    }
    .await;
    drop(received);
    reader
        .await
        .map_err(|e| Error::Export(format!("the source reader stopped: {e}")))??;
    copied?;

    // Ids go on from the highest copied, as they would have on this machine.
    for (table, names) in TABLES.iter().zip(&columns) {
        if names.iter().any(|n| n == "id") && merge_sql(table).is_none() {
            sqlx::query(AssertSqlSafe(format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), \
                 (SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)"
            )))
            .execute(&mut *tx)
            .await?;
        }
    }
    if trigger_off {
        sqlx::query("ALTER TABLE events ENABLE TRIGGER events_outbox")
            .execute(&mut *tx)
            .await?;
    }
    // Every account still in use gets its free lease, as one added to the fleet does.
    sqlx::query(
        "INSERT INTO account_leases (account_id) SELECT id FROM accounts WHERE removed_at IS NULL",
    )
    .execute(&mut *tx)
    .await?;
    for (account, sealed) in &devices {
        sqlx::query(
            "INSERT INTO device_stores (account_id, sealed, epoch, updated_at) \
             VALUES ($1, $2, 0, now())",
        )
        .bind(account.0)
        .bind(sealed)
        .execute(&mut *tx)
        .await?;
    }
    // The counts again, as PostgreSQL now holds them, before anything becomes visible.
    for (table, rows) in &tables {
        if merge_sql(table).is_some() {
            continue;
        }
        let held: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut *tx)
            .await?;
        if u64::try_from(held).ok() != Some(*rows) {
            return Err(Error::Export(format!(
                "{table}: {rows} rows copied but {held} in the fleet store; nothing was copied"
            )));
        }
    }
    tx.commit().await?;
    Ok(Migrated {
        tables,
        device_stores: devices.len() as u64,
    })
}

/// Refuses a fleet store that holds accounts, history or webhooks already.
async fn refuse_unless_empty(fleet: &FleetStore, conn: &mut PgConnection) -> Result<()> {
    let held: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM events), \
                (SELECT count(*) FROM webhook_endpoints)",
    )
    .fetch_one(&mut *conn)
    .await?;
    if held == (0, 0, 0) {
        return Ok(());
    }
    Err(refused(format!(
        "the fleet store at {} already holds data (accounts: {}, events: {}, webhooks: {}): \
         migrate into a new, empty fleet store; nothing was copied",
        fleet.url(),
        held.0,
        held.1,
        held.2
    )))
}

fn refused(why: String) -> Error {
    InputError::Refused(why).into()
}

/// What the reader sends: CSV chunks of the current table, then its end with the rows read.
enum Chunk {
    Rows { csv: Vec<u8>, rows: u64 },
    End { rows: u64 },
}

/// Reads every table of `TABLES` (these columns of each) in one read transaction and sends
/// them as CSV chunks. Stops early, without error, when the receiver went away.
fn read_all(db: PathBuf, columns: Vec<Vec<String>>, out: mpsc::Sender<Chunk>) -> Result<()> {
    let (mut conn, sql_err) = super::sqlite_reader(&db, |db, e| {
        Error::Export(format!("reading {}: {e}", db.display()))
    })?;
    let snapshot = conn.transaction().map_err(sql_err)?;
    for (table, names) in TABLES.iter().zip(&columns) {
        let mut stmt = snapshot
            .prepare(&format!(
                "SELECT {} FROM {table} ORDER BY rowid",
                column_list(names)
            ))
            .map_err(sql_err)?;
        let mut rows = stmt.query([]).map_err(sql_err)?;
        let mut csv = Vec::new();
        let (mut read, mut in_chunk) = (0u64, 0u64);
        while let Some(row) = rows.next().map_err(sql_err)? {
            for i in 0..names.len() {
                if i > 0 {
                    csv.push(b',');
                }
                let value = row.get_ref(i).map_err(sql_err)?;
                write_cell(&mut csv, value);
            }
            csv.push(b'\n');
            read += 1;
            in_chunk += 1;
            if in_chunk == CHUNK_ROWS {
                in_chunk = 0;
                let chunk = Chunk::Rows {
                    csv: std::mem::take(&mut csv),
                    rows: read,
                };
                if out.blocking_send(chunk).is_err() {
                    return Ok(());
                }
            }
        }
        if !csv.is_empty() && out.blocking_send(Chunk::Rows { csv, rows: read }).is_err() {
            return Ok(());
        }
        if out.blocking_send(Chunk::End { rows: read }).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// One cell in PostgreSQL's CSV format: NULL is nothing at all, text is always quoted (so an
/// empty string stays one), numbers as they are, bytes as `\x` hex.
fn write_cell(out: &mut Vec<u8>, value: rusqlite::types::ValueRef<'_>) {
    use rusqlite::types::ValueRef;
    use std::io::Write as _;
    match value {
        ValueRef::Null => {}
        // Writing to a Vec cannot fail.
        ValueRef::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        ValueRef::Real(f) => {
            let _ = write!(out, "{f:?}");
        }
        ValueRef::Text(t) => quoted(out, t),
        ValueRef::Blob(b) => {
            let mut hex = String::with_capacity(2 + 2 * b.len());
            hex.push_str("\\x");
            for byte in b {
                let _ = std::fmt::Write::write_fmt(&mut hex, format_args!("{byte:02x}"));
            }
            quoted(out, hex.as_bytes());
        }
    }
}

fn quoted(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    for &b in text {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::types::ValueRef;

    fn cell(value: ValueRef<'_>) -> String {
        let mut out = Vec::new();
        write_cell(&mut out, value);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn cells_keep_null_empty_quotes_and_numbers_apart() {
        assert_eq!(cell(ValueRef::Null), "");
        assert_eq!(cell(ValueRef::Text(b"")), "\"\"");
        assert_eq!(
            cell(ValueRef::Text(b"say \"hi\", ok\n")),
            "\"say \"\"hi\"\", ok\n\""
        );
        assert_eq!(cell(ValueRef::Integer(-42)), "-42");
        assert_eq!(cell(ValueRef::Real(9.0)), "9.0");
        assert_eq!(cell(ValueRef::Real(0.125)), "0.125");
        assert_eq!(cell(ValueRef::Blob(&[0, 0xab])), "\"\\x00ab\"");
    }
}
