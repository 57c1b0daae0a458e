//! The store: the embedded SQLite database of one machine (sqlx, WAL, embedded migrations) or
//! the PostgreSQL database a fleet of instances shares (its schema is the fleet store's, see
//! `lifeline_fleet`). All persistence goes through [`Store`]; both backends keep the same tables
//! and answer every method alike. Most statements are the same text on both (numbered `$n`
//! parameters, which SQLite reads too); the few that differ say so where they are.

mod accounts;
mod commands;
#[cfg(test)]
mod conformance;
mod fence;
mod history;
pub mod migrate;
mod remote;
mod settings;
mod supervision;
mod transitions;
mod webhooks;

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::migrate::MigrateError;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::datadir::DataDir;
use crate::error::{Error, Result};

pub use commands::{CommandOutcome, QueuedCommand};
pub use fence::Fence;
pub(crate) use fence::Fenced;
pub use history::{
    AccountHistory, HistoryPage, Interval, MAX_HISTORY_EVENTS, MAX_PAGE, SessionRecord,
};
pub use settings::{PreviousRun, RunStart, SettingChange};
pub use transitions::TransitionRecord;
pub use webhooks::DeliveryFilter;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// How long a query waits for a free connection before it fails.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    /// On a fleet store, the leases the supervisor's writes are made under (see [`Fence`]).
    fence: Option<std::sync::Arc<Fence>>,
}

/// The database behind a [`Store`].
#[derive(Debug, Clone)]
enum Db {
    Sqlite {
        pool: SqlitePool,
        path: PathBuf,
    },
    Postgres {
        pool: PgPool,
        fleet: lifeline_fleet::FleetStore,
    },
}

/// Runs `$body` on whichever database backs `$store`, with `$pool` naming its pool. The body is
/// compiled once per backend, so a statement written once is checked against both drivers.
macro_rules! on_db {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.db {
            $crate::store::Db::Sqlite { pool: $pool, .. } => $body,
            $crate::store::Db::Postgres { pool: $pool, .. } => $body,
        }
    };
}
pub(crate) use on_db;

/// Begins a write transaction: SQLite's takes the write lock at once (`BEGIN IMMEDIATE`, so
/// two writers never deadlock upgrading a read lock); PostgreSQL's locks rows as it writes them.
pub(crate) trait Begin {
    type Db: sqlx::Database;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = sqlx::Result<sqlx::Transaction<'static, Self::Db>>> + Send;
}

impl Begin for SqlitePool {
    type Db = sqlx::Sqlite;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = sqlx::Result<sqlx::Transaction<'static, sqlx::Sqlite>>> + Send
    {
        self.begin_with("BEGIN IMMEDIATE")
    }
}

impl Begin for PgPool {
    type Db = sqlx::Postgres;
    fn begin_write(
        &self,
    ) -> impl std::future::Future<Output = sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>>> + Send
    {
        self.begin()
    }
}

impl Store {
    /// Opens (creating if needed) the database of a data dir and brings its schema up to date.
    pub async fn open(dir: &DataDir) -> Result<Self> {
        Self::open_path(&dir.db_path()).await
    }

    /// Opens the database at `path`. A file that is not a Lifeline/SQLite database, or that
    /// comes from a newer Lifeline, is reported and left byte-for-byte untouched.
    pub async fn open_path(path: &Path) -> Result<Self> {
        Self::open_path_with(path, ACQUIRE_TIMEOUT).await
    }

    /// [`Store::open_path`] with another wait for a free connection. sqlx measures that wait on
    /// tokio's clock, so a test that moves paused time forward by hand while SQLite works gives
    /// its stores a wait it never reaches.
    pub async fn open_path_with(path: &Path, acquire_timeout: Duration) -> Result<Self> {
        check_header(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // No connection checkpoints the WAL as part of its own commit (SQLite's default
            // every 1000 pages): that made the commit that crossed the mark — usually the
            // recorder's, holding a transition — wait for the database file to be written and
            // synced. A supervising process checkpoints from its own task instead
            // ([`Store::checkpoint`]); any process checkpoints when it closes its last connection.
            .pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| classify_open_error(path, e))?;
        // sqlx takes no lock around SQLite migrations: two processes upgrading one database at
        // once (the autostarted app and a CLI command, right after a package upgrade) would both
        // apply the next migration and one would fail. Upgrades are serialised by a lock file
        // beside the database, taken only when something is to be applied, so opening an
        // up-to-date (or a refused, newer) database creates nothing.
        let _upgrade_lock = if pending_migrations(&pool).await {
            match upgrade_lock(path).await {
                Ok(lock) => Some(lock),
                Err(e) => {
                    pool.close().await;
                    return Err(e);
                }
            }
        } else {
            None
        };
        if let Err(e) = MIGRATOR.run(&pool).await {
            // Closing (rather than dropping) the pool removes the -wal and -shm files SQLite
            // created on connect, so a refused database is left exactly as it was found.
            pool.close().await;
            return Err(match e {
                MigrateError::VersionMissing(version) => Error::DatabaseTooNew {
                    path: path.to_owned(),
                    version,
                    known: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
                },
                MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
                    classify_open_error(path, e)
                }
                other => Error::DatabaseOpen {
                    path: path.to_owned(),
                    detail: other.to_string(),
                },
            });
        }
        Ok(Self {
            db: Db::Sqlite {
                pool,
                path: path.to_owned(),
            },
            fence: None,
        })
    }

    /// The store of a fleet: its PostgreSQL database, already checked and migrated by
    /// [`lifeline_fleet::FleetStore::connect`].
    pub fn fleet(fleet: &lifeline_fleet::FleetStore) -> Self {
        Self {
            db: Db::Postgres {
                pool: fleet.pool().clone(),
                fleet: fleet.clone(),
            },
            fence: None,
        }
    }

    /// This store with the supervisor's writes fenced by `fence`: each is refused for an
    /// account whose lease the instance no longer holds. Only a fleet store has leases; an
    /// SQLite store is returned as it is.
    pub fn fenced(&self, fence: std::sync::Arc<Fence>) -> Self {
        Self {
            db: self.db.clone(),
            fence: self.is_fleet().then_some(fence),
        }
    }

    /// The fence the supervisor's writes are made under, on a fleet store.
    pub fn fence(&self) -> Option<&Fence> {
        self.fence.as_deref()
    }

    /// Copies what the WAL holds into the database file, without waiting for readers or
    /// writers (a passive checkpoint): writers keep appending meanwhile.
    /// PostgreSQL writes its log back by itself: nothing to do there.
    pub async fn checkpoint(&self) -> Result<()> {
        if let Db::Sqlite { pool, .. } = &self.db {
            sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(pool)
                .await?;
        }
        Ok(())
    }

    /// The SQLite database file; `None` for a fleet store.
    pub fn path(&self) -> Option<&Path> {
        match &self.db {
            Db::Sqlite { path, .. } => Some(path),
            Db::Postgres { .. } => None,
        }
    }

    /// Where the data is, for people: the SQLite file, or the fleet store's server and database.
    pub fn location(&self) -> String {
        match &self.db {
            Db::Sqlite { path, .. } => path.display().to_string(),
            Db::Postgres { fleet, .. } => fleet.url().to_string(),
        }
    }

    /// A store with connections of its own to the same database, for a reader that must not
    /// wait behind the single writer's (the webhook sender). A fleet store's pool already has
    /// enough connections for both: it is shared.
    pub async fn reader(&self) -> Result<Self> {
        match &self.db {
            Db::Sqlite { path, .. } => Self::open_path(path).await,
            Db::Postgres { .. } => Ok(self.clone()),
        }
    }

    /// The fleet this store belongs to (its leases and instances), for a fleet store.
    pub fn fleet_store(&self) -> Option<&lifeline_fleet::FleetStore> {
        match &self.db {
            Db::Sqlite { .. } => None,
            Db::Postgres { fleet, .. } => Some(fleet),
        }
    }

    /// Whether this is a fleet's shared store (PostgreSQL).
    pub fn is_fleet(&self) -> bool {
        matches!(self.db, Db::Postgres { .. })
    }

    /// The SQLite pool, for exports and benchmarks that stream straight from SQL; `None` for a
    /// fleet store.
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.db {
            Db::Sqlite { pool, .. } => Some(pool),
            Db::Postgres { .. } => None,
        }
    }

    /// The fleet store's pool, for exports that stream straight from SQL; `None` for SQLite.
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.db {
            Db::Sqlite { .. } => None,
            Db::Postgres { pool, .. } => Some(pool),
        }
    }

    /// The SQLite pool of a test's store.
    #[cfg(test)]
    pub(crate) fn pool(&self) -> &SqlitePool {
        self.sqlite_pool().expect("the tests' stores are SQLite")
    }

    /// Closes every connection, checkpointing SQLite's WAL. A fleet store's connections are
    /// those of the fleet handle it came from: both close.
    pub async fn close(&self) {
        on_db!(self, pool => pool.close().await)
    }
}

/// Whether this binary has migrations the database has not applied (a missing or unreadable
/// migrations table counts as pending: `MIGRATOR.run` then says what is wrong).
async fn pending_migrations(pool: &SqlitePool) -> bool {
    let applied: std::result::Result<Vec<i64>, _> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await;
    match applied {
        Ok(applied) => MIGRATOR.iter().any(|m| !applied.contains(&m.version)),
        Err(_) => true,
    }
}

/// Waits for the exclusive upgrade lock of the database at `db` (released on drop, or by the
/// OS if the process dies).
async fn upgrade_lock(db: &Path) -> Result<std::fs::File> {
    let mut name = db.file_name().unwrap_or_default().to_owned();
    name.push("-upgrade.lock");
    let lock_path = db.with_file_name(name);
    let err = |detail: String| Error::DatabaseOpen {
        path: db.to_owned(),
        detail,
    };
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        file.lock()
            .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
        Ok(file)
    })
    .await
    .map_err(|e| err(format!("the upgrade lock task stopped: {e}")))?
    .map_err(err)
}

/// Refuses files whose first bytes are not SQLite's header before SQLite can touch them.
fn check_header(path: &Path) -> Result<()> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(Error::DatabaseOpen {
                path: path.to_owned(),
                detail: e.to_string(),
            });
        }
    };
    let mut header = [0u8; 16];
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) => {
                return Err(Error::DatabaseOpen {
                    path: path.to_owned(),
                    detail: e.to_string(),
                });
            }
        }
    }
    // An empty file is a database SQLite has not written yet; anything else must carry the magic.
    if read == 0 || (read == header.len() && &header == SQLITE_MAGIC) {
        Ok(())
    } else {
        Err(Error::DatabaseCorrupt {
            path: path.to_owned(),
            detail: "it does not start with the SQLite header".into(),
        })
    }
}

fn classify_open_error(path: &Path, e: sqlx::Error) -> Error {
    damaged(path, &e).unwrap_or_else(|| Error::DatabaseOpen {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}

/// A read-only rusqlite connection to the SQLite store at `db`, for streaming its rows on a
/// blocking thread (exports, a move into a fleet), with the error mapping its callers use for
/// every later step: a damaged page met while streaming is reported like one met on open
/// (which file, what to do), anything else as `other` says.
pub(crate) fn sqlite_reader(
    db: &Path,
    other: fn(&Path, rusqlite::Error) -> Error,
) -> Result<(
    rusqlite::Connection,
    impl Fn(rusqlite::Error) -> Error + Copy + '_,
)> {
    use rusqlite::OpenFlags;
    let sql_err = move |e: rusqlite::Error| match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase) => {
            Error::DatabaseCorrupt {
                path: db.to_owned(),
                detail: e.to_string(),
            }
        }
        _ => other(db, e),
    };
    let conn = rusqlite::Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql_err)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(sql_err)?;
    Ok((conn, sql_err))
}

/// SQLite's "damaged" answers (SQLITE_CORRUPT, SQLITE_NOTADB) as [`Error::DatabaseCorrupt`]
/// naming the file.
pub(crate) fn damaged(path: &Path, e: &sqlx::Error) -> Option<Error> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    // SQLITE_CORRUPT (11) and SQLITE_NOTADB (26), including extended codes.
    let primary = db
        .code()
        .and_then(|c| c.parse::<i64>().ok())
        .map(|c| c & 0xff);
    matches!(primary, Some(11) | Some(26)).then(|| Error::DatabaseCorrupt {
        path: path.to_owned(),
        detail: db.message().to_owned(),
    })
}

fn decode<T: serde::de::DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|e| Error::Decode(e.to_string()))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::Decode(e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) async fn temp_store() -> (tempfile::TempDir, Store) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open_path(&tmp.path().join("t.db"))
            .await
            .expect("open");
        (tmp, store)
    }

    /// Commits never checkpoint (the WAL grows past SQLite's usual 1000-page mark instead of
    /// being copied into the database file by whichever commit crosses it), and
    /// [`Store::checkpoint`] makes the WAL reusable, so the next writes do not grow it further.
    #[tokio::test]
    async fn commits_leave_checkpoints_to_the_checkpointer() {
        let (tmp, store) = temp_store().await;
        let wal = tmp.path().join("t.db-wal");
        let value = "x".repeat(16 * 1024);
        let write = |round: usize| {
            let (store, value) = (store.clone(), value.clone());
            async move {
                // 400 values of 16 KiB: about 1600 pages of 4 KiB.
                for i in 0..400 {
                    store
                        .set_setting(&format!("bulk.{round}.{i}"), &value)
                        .await
                        .expect("write");
                }
            }
        };
        let size = || std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
        write(0).await;
        let first = size();
        assert!(
            first > 1200 * 4096,
            "the WAL holds every page written ({first} bytes): no commit checkpointed it"
        );
        store.checkpoint().await.expect("checkpoint");
        write(1).await;
        let second = size();
        assert!(
            second < first + first / 5,
            "after a checkpoint the WAL is written from its start again ({first} then {second} bytes)"
        );
    }

    /// An upgrade's first start: the desktop app (autostarted) and a `lifeline` command open a
    /// previous-schema database at the same moment. sqlx takes no lock around SQLite migrations,
    /// so both used to apply the next one and one failed ("duplicate column").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_processes_upgrading_one_database_at_once_both_open_it() {
        for round in 0..20 {
            let tmp = tempfile::tempdir().expect("tempdir");
            let path = tmp.path().join("old.db");
            let options = SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
            let pool = SqlitePoolOptions::new()
                .connect_with(options)
                .await
                .expect("create");
            let first = MIGRATOR
                .iter()
                .map(|m| m.version)
                .min()
                .expect("a migration");
            MIGRATOR
                .run_to(first, &pool)
                .await
                .expect("previous schema");
            pool.close().await;
            let (a, b) = tokio::join!(
                tokio::spawn({
                    let p = path.clone();
                    async move { Store::open_path(&p).await }
                }),
                tokio::spawn({
                    let p = path.clone();
                    async move { Store::open_path(&p).await }
                }),
            );
            for (who, r) in [("first", a), ("second", b)] {
                let store = r
                    .expect("task")
                    .unwrap_or_else(|e| panic!("round {round}: the {who} opener failed: {e}"));
                store.close().await;
            }
        }
    }

    #[tokio::test]
    async fn migrations_apply_to_a_fresh_db_and_reopen_cleanly() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("t.db");
        let store = Store::open_path(&path).await.expect("fresh");
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(store.pool())
            .await
            .expect("count");
        assert_eq!(applied, MIGRATOR.iter().count() as i64);
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(store.pool())
            .await
            .expect("pragma");
        assert_eq!(mode, "wal");
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(store.pool())
            .await
            .expect("pragma");
        assert_eq!(fk, 1);
        store.close().await;
        // Existing DB: opening again applies nothing new and keeps data.
        let store = Store::open_path(&path).await.expect("existing");
        let again: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(store.pool())
            .await
            .expect("count");
        assert_eq!(again, applied);
    }

    #[tokio::test]
    async fn non_database_file_is_refused_and_left_unchanged() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("t.db");
        let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 31 % 251) as u8).collect();
        std::fs::write(&path, &garbage).expect("write");
        let err = Store::open_path(&path).await.expect_err("must refuse");
        assert!(matches!(err, Error::DatabaseCorrupt { .. }), "{err:?}");
        assert!(err.to_string().contains(&path.display().to_string()));
        assert_eq!(std::fs::read(&path).expect("read"), garbage);
        assert!(!tmp.path().join("t.db-wal").exists());
    }

    #[tokio::test]
    async fn damaged_pages_behind_a_valid_header_are_reported_as_corrupt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("t.db");
        let store = Store::open_path(&path).await.expect("fresh");
        store.close().await;
        let mut bytes = std::fs::read(&path).expect("read");
        // Keep the 100-byte header, trash the schema page.
        for b in bytes.iter_mut().skip(100).take(3000) {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).expect("write");
        let err = Store::open_path(&path).await.expect_err("must refuse");
        assert!(matches!(err, Error::DatabaseCorrupt { .. }), "{err:?}");
        assert_eq!(std::fs::read(&path).expect("read"), bytes);
    }

    #[tokio::test]
    async fn database_from_a_newer_version_is_refused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("t.db");
        let store = Store::open_path(&path).await.expect("fresh");
        sqlx::query(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (99990101000000, 'from the future', 1, x'00', 0)",
        )
        .execute(store.pool())
        .await
        .expect("insert");
        store.close().await;
        let before = std::fs::read(&path).expect("read");
        let err = Store::open_path(&path).await.expect_err("must refuse");
        let known = MIGRATOR
            .iter()
            .map(|m| m.version)
            .max()
            .expect("migrations");
        assert!(
            matches!(
                err,
                Error::DatabaseTooNew {
                    version: 99990101000000,
                    known: k,
                    ..
                } if k == known
            ),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("newer Lifeline") && msg.contains("99990101000000"),
            "{msg}"
        );
        assert_eq!(
            std::fs::read(&path).expect("read"),
            before,
            "left untouched"
        );
        for side in ["t.db-wal", "t.db-shm"] {
            assert!(!tmp.path().join(side).exists(), "{side} left behind");
        }
    }

    #[tokio::test]
    async fn damage_found_by_a_query_names_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("t.db");
        let store = Store::open_path(&path).await.expect("fresh");
        sqlx::query("CREATE TABLE filler (x TEXT)")
            .execute(store.pool())
            .await
            .expect("create");
        for _ in 0..64 {
            sqlx::query("INSERT INTO filler VALUES (?)")
                .bind("x".repeat(2000))
                .execute(store.pool())
                .await
                .expect("insert");
        }
        store.close().await;
        // Trash a page near the end: filler rows, away from the schema that opening reads.
        let mut bytes = std::fs::read(&path).expect("read");
        let page = 4096;
        let at = bytes.len() - 3 * page;
        bytes[at..at + page].fill(0xA5);
        std::fs::write(&path, &bytes).expect("write");
        let store = Store::open_path(&path)
            .await
            .expect("opening reads only the schema");
        let e = sqlx::query("SELECT COUNT(*), SUM(LENGTH(x)) FROM filler")
            .fetch_one(store.pool())
            .await
            .expect_err("damaged page");
        store.close().await;
        let err = Error::from(e).in_database(&path);
        assert!(matches!(err, Error::DatabaseCorrupt { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        // Other errors keep their own kind.
        let other = Error::from(sqlx::Error::RowNotFound).in_database(&path);
        assert!(matches!(other, Error::Database(_)), "{other:?}");
    }
}
