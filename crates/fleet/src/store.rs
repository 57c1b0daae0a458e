//! Connecting to the fleet store and this process's row in its registry.

use std::fmt;
use std::time::Duration;

use sqlx::migrate::MigrateError;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::{Error, Result};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!();

/// How long opening the store waits for PostgreSQL before it reports it unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A fleet store's address, checked: `postgres://` or `postgresql://`, a host, and no password
/// (the password lives in the keyring). Its `Display` is safe to log and show.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl {
    url: url::Url,
}

impl StoreUrl {
    pub fn parse(text: &str) -> Result<Self> {
        let url = url::Url::parse(text.trim()).map_err(|e| Error::BadUrl(e.to_string()))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(Error::BadUrl(format!("scheme {}", url.scheme())));
        }
        if url.password().is_some() {
            return Err(Error::PasswordInUrl);
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::BadUrl("no host".to_owned()));
        }
        if url.path().trim_start_matches('/').is_empty() {
            return Err(Error::BadUrl("no database name".to_owned()));
        }
        Ok(Self { url })
    }

    /// A store on this machine's loopback.
    pub fn loopback(port: u16, user: &str, database: &str) -> Self {
        let text = format!("postgres://{user}@127.0.0.1:{port}/{database}");
        match url::Url::parse(&text) {
            Ok(url) => Self { url },
            Err(e) => unreachable!("{text}: {e}"),
        }
    }

    /// `host:port`, for messages.
    pub fn target(&self) -> String {
        let host = self.url.host_str().unwrap_or_default();
        match self.url.port() {
            Some(port) => format!("{host}:{port}"),
            None => format!("{host}:5432"),
        }
    }

    pub fn database(&self) -> String {
        self.url.path().trim_start_matches('/').to_owned()
    }

    pub fn user(&self) -> String {
        match self.url.username() {
            "" => whoami::username().unwrap_or_else(|_| "postgres".to_owned()),
            user => user.to_owned(),
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.url.as_str())
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StoreUrl({})", self.url)
    }
}

/// The fleet store: a pool of connections to PostgreSQL with the fleet schema in place.
#[derive(Clone)]
pub struct FleetStore {
    pub(crate) pool: PgPool,
    url: StoreUrl,
    /// Seconds added to the database's clock in every query of this handle. Always 0 except in
    /// tests of the lease rules, which move the database's clock this way.
    pub(crate) clock_offset_s: f64,
}

impl fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetStore")
            .field("url", &self.url)
            .finish()
    }
}

impl FleetStore {
    /// Connects, checks that the database is empty or Lifeline's, and migrates it. `password`
    /// comes from the keyring; `None` connects without one (trust or peer authentication).
    /// On any refusal nothing has been written.
    pub async fn connect(url: &StoreUrl, password: Option<&str>) -> Result<Self> {
        Self::connect_with(url, password, 16).await
    }

    /// [`FleetStore::connect`] with another number of pooled connections.
    pub async fn connect_with(
        url: &StoreUrl,
        password: Option<&str>,
        max_connections: u32,
    ) -> Result<Self> {
        let mut options: PgConnectOptions = url
            .url
            .as_str()
            .parse()
            .map_err(|e: sqlx::Error| Error::BadUrl(e.to_string()))?;
        options = options.application_name("lifeline");
        if let Some(password) = password {
            options = options.password(password);
        }
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| classify(url, e))?;
        let store = Self {
            pool,
            url: url.clone(),
            clock_offset_s: 0.0,
        };
        if let Err(e) = store.prepare().await {
            store.pool.close().await;
            return Err(e);
        }
        Ok(store)
    }

    async fn prepare(&self) -> Result<()> {
        // A database with tables of its own and no fleet marker is someone else's. sqlx records
        // each migration in the same transaction as the migration itself, so an instance that
        // is setting up an empty store at this moment shows either nothing or the marker, as
        // long as both are read in one scan of one snapshot (`to_regclass` reads the catalog
        // at another moment than a scan of `pg_tables`, and could miss a marker committed in
        // between).
        let (marker, others, migrations): (bool, i64, bool) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE tablename = 'lifeline_fleet') > 0,
                    count(*) FILTER (WHERE tablename <> '_sqlx_migrations'),
                    count(*) FILTER (WHERE tablename = '_sqlx_migrations') > 0
               FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| classify(&self.url, e))?;
        let applied: i64 = if migrations && !marker {
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
                .fetch_one(&self.pool)
                .await
                .map_err(|e| classify(&self.url, e))?
        } else {
            0
        };
        if !marker && (others > 0 || applied > 0) {
            return Err(Error::NotLifeline {
                target: self.url.target(),
                database: self.url.database(),
            });
        }
        MIGRATOR.run(&self.pool).await.map_err(|e| match e {
            MigrateError::VersionMissing(version) => Error::TooNew {
                target: self.url.target(),
                version,
                known: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
            },
            MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => {
                classify(&self.url, e)
            }
            other => Error::Database(sqlx::Error::Migrate(Box::new(other))),
        })
    }

    pub fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// The connections, for Lifeline's own model kept in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// This handle with the database's clock moved by `seconds` as its queries see it (tests of
    /// the lease rules; a fleet never runs with an offset).
    #[doc(hidden)]
    pub fn with_clock_offset(&self, seconds: f64) -> Self {
        Self {
            clock_offset_s: seconds,
            ..self.clone()
        }
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Registers this process as a new instance: a random id, the host's name and this pid.
    pub async fn register(&self, max_accounts: Option<u32>) -> Result<Instance> {
        let id = InstanceId::random();
        let host = whoami::hostname().unwrap_or_else(|_| "unknown-host".to_owned());
        let pid = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
        let max = max_accounts.map(|m| i32::try_from(m).unwrap_or(i32::MAX));
        sqlx::query(
            "INSERT INTO fleet_instances (id, host, pid, max_accounts, started_at, heartbeat_at)
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5),
                     now() + make_interval(secs => $5))",
        )
        .bind(id.as_str())
        .bind(&host)
        .bind(pid)
        .bind(max)
        .bind(self.clock_offset_s)
        .execute(&self.pool)
        .await?;
        // Every start adds a row: instances silent for a week and holding nothing are dropped,
        // so the registry shows the fleet, not its history.
        sqlx::query(
            "DELETE FROM fleet_instances i
              WHERE i.heartbeat_at < now() + make_interval(secs => $1) - interval '7 days'
                AND NOT EXISTS (SELECT 1 FROM account_leases l WHERE l.owner = i.id)",
        )
        .bind(self.clock_offset_s)
        .execute(&self.pool)
        .await?;
        tracing::info!(instance = %id, %host, pid, "joined the fleet");
        Ok(Instance {
            id,
            max_accounts,
            store: self.clone(),
            counters: Default::default(),
        })
    }
}

/// Maps a connection error to the operator's one line.
fn classify(url: &StoreUrl, e: sqlx::Error) -> Error {
    let target = url.target();
    match &e {
        sqlx::Error::Io(io) => Error::Unreachable {
            target,
            detail: io.to_string(),
        },
        sqlx::Error::PoolTimedOut => Error::Unreachable {
            target,
            detail: format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        },
        sqlx::Error::Tls(tls) => Error::Unreachable {
            target,
            detail: tls.to_string(),
        },
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // invalid_password, invalid_authorization_specification
            Some("28P01" | "28000") => Error::Auth {
                target,
                user: url.user(),
            },
            // invalid_catalog_name
            Some("3D000") => Error::NoDatabase {
                target,
                database: url.database(),
            },
            _ => Error::Database(e),
        },
        _ => Error::Database(e),
    }
}

/// An instance's id: 128 random bits in hex, new for every process.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(String);

impl InstanceId {
    fn random() -> Self {
        let bits: u128 = rand::random();
        Self(format!("{bits:032x}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The first 8 hex digits name an instance well enough for people.
        f.write_str(&self.0[..8])
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId({})", self.0)
    }
}

/// This process in the fleet's registry; the lease operations are its methods (see
/// [`crate::lease`]).
#[derive(Clone)]
pub struct Instance {
    pub(crate) id: InstanceId,
    pub(crate) max_accounts: Option<u32>,
    pub(crate) store: FleetStore,
    pub(crate) counters: std::sync::Arc<crate::lease::Counters>,
}

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance").field("id", &self.id).finish()
    }
}

impl Instance {
    pub fn id(&self) -> &InstanceId {
        &self.id
    }

    pub fn store(&self) -> &FleetStore {
        &self.store
    }

    pub fn max_accounts(&self) -> Option<u32> {
        self.max_accounts
    }

    /// This instance's counters since it joined (what its heartbeat writes).
    pub fn counts(&self) -> crate::lease::InstanceCounts {
        use std::sync::atomic::Ordering::Relaxed;
        crate::lease::InstanceCounts {
            takeovers: self.counters.takeovers.load(Relaxed),
            renew_failures: self.counters.renew_failures.load(Relaxed),
            stale_writes_refused: self.counters.stale_writes_refused.load(Relaxed),
        }
    }

    /// The same instance seen through another handle (tests move the database's clock so).
    #[doc(hidden)]
    pub fn through(&self, store: &FleetStore) -> Self {
        Self {
            store: store.clone(),
            ..self.clone()
        }
    }
}
