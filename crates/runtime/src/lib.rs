//! The supervising process, shared by `lifeline serve` and the desktop app. Both faces need the
//! same sequence — lock the data dir, record the run, restore the fleet, heartbeat, apply queued
//! admin commands, and on the way out stop everything and write the clean-run marker last — so it
//! lives here once instead of twice.
//!
//! Two phases: [`Runtime::open`] builds the supervisor without starting anything, so a face can
//! subscribe to its updates before the first transition; [`Runtime::start`] runs the startup
//! sequence and the background tasks. [`Runtime::shutdown`] ends it gracefully. One signal ends
//! everything: the supervisor's [`Runtime::stopping`] token, which every task here and every
//! face's own task listens to.

use std::sync::Arc;
use std::time::Duration;

use lifeline_engine::clock::Clock;
use lifeline_engine::connector::Connectors;
use lifeline_engine::model::AccountKind;
use lifeline_engine::secrets::{KeyringSecretStore, SecretStore};
use lifeline_engine::store::PreviousRun;
use lifeline_engine::supervisor::{StartupReport, Supervisor, SupervisorDeps, queue};

use lifeline_engine::store::Fence;
use lifeline_engine::time::Timestamp;
use lifeline_engine::{DataDir, Error, Store, SupervisorLock};
use lifeline_fleet::{FleetStore, Instance, Keeper, KeeperConfig};
use lifeline_tiktok::TikTokConnector;
use lifeline_tiktok::api::Endpoints;
use lifeline_tiktok::pace::Budget;
pub use lifeline_webhooks::Notice as WebhookNotice;
use lifeline_webhooks::WorkerConfig;
use lifeline_websocket::WebSocketConnector;
/// True in builds that accept the offline WhatsApp peer's unsigned certificates: such a build
/// must never talk to real WhatsApp, and every face says so when it starts.
pub use lifeline_whatsapp::TEST_PEER_BUILD;
use lifeline_whatsapp::{Endpoint, WhatsAppConnector};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often the run records that it is alive; a crash is dated by the last one.
pub const HEARTBEAT: Duration = Duration::from_secs(10);

/// What the runtime is built from. [`Parts::system`] is what both faces use; tests swap in an
/// in-memory secret store.
#[derive(Debug, Clone)]
pub struct Parts {
    pub connectors: Connectors,
    pub secrets: Arc<dyn SecretStore>,
    /// How webhooks are sent.
    pub webhooks: WorkerConfig,
}

impl Parts {
    /// Every connector Lifeline has (WebSocket, WhatsApp, TikTok) and the OS keyring.
    pub fn system(dir: &DataDir) -> Self {
        let whatsapp = WhatsAppConnector::new(dir.root(), Endpoint::from_env());
        let mut connectors = Connectors::new()
            .with(AccountKind::Websocket, Arc::new(WebSocketConnector))
            .with(AccountKind::Whatsapp, Arc::new(whatsapp));
        if let Some(tiktok) = tiktok_connector() {
            connectors = connectors.with(AccountKind::Tiktok, Arc::new(tiktok));
        }
        Self {
            connectors,
            secrets: Arc::new(KeyringSecretStore),
            webhooks: webhook_config(),
        }
    }
}

/// The TikTok connector as the environment configures it (`LIFELINE_TIKTOK_*`); a value it
/// cannot use is reported and TikTok's own servers and the default budget are kept. `None`
/// (reported) when no HTTP client can be set up: TikTok accounts then say this build cannot
/// connect them, and everything else runs.
pub fn tiktok_connector() -> Option<TikTokConnector> {
    let connector = TikTokConnector::from_env().or_else(|e| {
        tracing::error!("{e}; TikTok's own servers and the default polling budget apply");
        TikTokConnector::new(Endpoints::tiktok(), Budget::default())
    });
    match connector {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!("{e}; TikTok accounts cannot connect");
            None
        }
    }
}

/// Environment variable that replaces the webhook retry schedule (`0,5s,5m,…`), for staging
/// receivers and tests that cannot wait hours between attempts.
pub const WEBHOOK_SCHEDULE_ENV: &str = "LIFELINE_WEBHOOK_SCHEDULE";

/// The shipped sender, named after this host; the schedule from [`WEBHOOK_SCHEDULE_ENV`] when
/// it is set and valid (an invalid one is reported and the standard schedule kept).
pub fn webhook_config() -> WorkerConfig {
    let mut cfg = WorkerConfig {
        instance: whoami::hostname().unwrap_or_else(|_| "lifeline".into()),
        ..WorkerConfig::default()
    };
    if let Ok(text) = std::env::var(WEBHOOK_SCHEDULE_ENV) {
        match lifeline_webhooks::schedule::Schedule::parse(&text) {
            Ok(s) => cfg.schedule = s,
            Err(e) => tracing::error!("{WEBHOOK_SCHEDULE_ENV}: {e}; the standard schedule applies"),
        }
    }
    cfg
}

/// How this process shares its store.
#[derive(Debug)]
enum Mode {
    /// This machine's own store: the one supervising process, its runs recorded.
    Single { run_id: i64 },
    /// A fleet store: one instance among several, running the accounts its keeper holds.
    Fleet {
        instance: Instance,
        keeper: KeeperConfig,
        running: Option<Keeper>,
    },
}

/// How an instance takes part in a fleet.
#[derive(Debug, Clone, Copy)]
pub struct FleetConfig {
    /// How long a lease lasts without renewal (renewed every third of it).
    pub ttl: Duration,
    /// At most this many accounts on this instance (`None`: its even share).
    pub max_accounts: Option<u32>,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self {
            ttl: lifeline_fleet::DEFAULT_TTL,
            max_accounts: None,
        }
    }
}

/// The one supervising process of a data dir.
#[derive(Debug)]
pub struct Runtime {
    store: Store,
    sup: Supervisor,
    mode: Mode,
    previous: Option<PreviousRun>,
    crashed_at: Option<Timestamp>,
    tasks: Vec<JoinHandle<()>>,
    startup: Option<StartupReport>,
    secrets: Arc<dyn SecretStore>,
    webhooks: WorkerConfig,
    webhook_notices: Option<mpsc::UnboundedReceiver<WebhookNotice>>,
    // Held for the life of the runtime; released when it is dropped (or the process dies).
    _lock: SupervisorLock,
}

impl Runtime {
    /// Takes the supervisor lock, records the start of the run and builds the supervisor. No
    /// account task runs yet: call [`Runtime::start`].
    pub async fn open(dir: &DataDir, store: Store, parts: Parts) -> Result<Self, Error> {
        let lock = lock(dir).await?;
        let policy = store.policy().await?;
        let run = store.begin_run(chrono::Utc::now()).await?;
        let crashed_at = store.previous_last_seen(run.id).await?;
        let mode = Mode::Single { run_id: run.id };
        let mut runtime = Self::build(store, policy, parts, mode, lock);
        runtime.previous = run.previous;
        runtime.crashed_at = crashed_at;
        Ok(runtime)
    }

    /// The supervisor over `store`, nothing started.
    fn build(
        store: Store,
        policy: lifeline_engine::policy::PolicyConfig,
        parts: Parts,
        mode: Mode,
        lock: SupervisorLock,
    ) -> Self {
        let sup = Supervisor::new(SupervisorDeps {
            store: store.clone(),
            connectors: parts.connectors,
            secrets: parts.secrets.clone(),
            clock: Clock::System,
            policy,
            jitter_seed: None,
        });
        Self {
            store,
            sup,
            mode,
            previous: None,
            crashed_at: None,
            tasks: Vec::new(),
            startup: None,
            secrets: parts.secrets,
            webhooks: parts.webhooks,
            webhook_notices: None,
            _lock: lock,
        }
    }

    /// Joins the fleet of `fleet` as a new instance (the data dir still holds this host's
    /// device stores, and is locked as for any supervising process). No account runs until
    /// [`Runtime::start`] starts the keeper: the accounts come as their leases are won.
    pub async fn open_fleet(
        dir: &DataDir,
        fleet: &FleetStore,
        config: FleetConfig,
        parts: Parts,
    ) -> Result<Self, Error> {
        let lock = lock(dir).await?;
        let key = fleet_key(fleet, &parts.secrets).await?;
        // Read before joining: a stored policy this version refuses leaves no instance behind.
        let policy = Store::fleet(fleet).policy().await?;
        let instance = fleet.register(config.max_accounts).await?;
        let fence = Arc::new(Fence::new(instance.clone()).with_key(key));
        let store = Store::fleet(fleet).fenced(fence);
        tracing::info!(instance = %instance.id().as_str(), store = %store.location(), "joined the fleet");
        let mode = Mode::Fleet {
            instance,
            keeper: KeeperConfig {
                ttl: config.ttl,
                ..KeeperConfig::default()
            },
            running: None,
        };
        Ok(Self::build(store, policy, parts, mode, lock))
    }

    /// This instance in its fleet (`None`: this machine's own store).
    pub fn instance(&self) -> Option<&Instance> {
        match &self.mode {
            Mode::Single { .. } => None,
            Mode::Fleet { instance, .. } => Some(instance),
        }
    }

    /// The HTTP API over this runtime's supervisor, guarded by the token in `token_secret`.
    pub fn api(&self, token_secret: lifeline_engine::model::SecretName) -> lifeline_api::Api {
        lifeline_api::Api {
            sup: self.sup.clone(),
            token_secret,
            secrets: self.secrets.clone(),
            instance: self.webhooks.instance.clone(),
        }
    }

    /// Runs the startup sequence (crash cleanup, autorecover restore), then the heartbeat and the
    /// command queue that lets admin commands from other processes reach this supervisor.
    pub async fn start(&mut self) -> Result<StartupReport, Error> {
        self.start_with(true).await
    }

    /// Like [`Runtime::start`] but restores nothing: a supervisor run for one operation (a link
    /// from the CLI while no other supervisor runs). Accounts stay as they are.
    pub async fn start_quiet(&mut self) -> Result<StartupReport, Error> {
        self.start_with(false).await
    }

    async fn start_with(&mut self, restore: bool) -> Result<StartupReport, Error> {
        if let Some(report) = &self.startup {
            return Ok(report.clone());
        }
        let (report, webhooks) = match &mut self.mode {
            Mode::Fleet {
                instance,
                keeper,
                running,
            } => {
                let (tx, rx) = mpsc::unbounded_channel();
                *running = Some(Keeper::start(instance.clone(), *keeper, tx));
                let sup = self.sup.clone();
                self.tasks
                    .push(tokio::spawn(async move { sup.follow_leases(rx).await }));
                // Each instance sends the messages about its own accounts (see the store).
                (StartupReport::default(), true)
            }
            Mode::Single { run_id } => {
                let report = if restore {
                    self.sup.startup(self.previous, self.crashed_at).await?
                } else {
                    self.sup
                        .startup_quiet(self.previous, self.crashed_at)
                        .await?
                };
                self.tasks.push(tokio::spawn(heartbeat(
                    self.store.clone(),
                    *run_id,
                    self.sup.stopping(),
                )));
                (report, restore)
            }
        };
        if webhooks {
            self.start_webhooks().await?;
        }
        self.tasks.push(tokio::spawn(queue::run(self.sup.clone())));
        self.startup = Some(report.clone());
        Ok(report)
    }

    /// The webhook sender, with a read pool of its own; the supervisor's single writer records
    /// its attempts.
    async fn start_webhooks(&mut self) -> Result<(), Error> {
        let reader = self.store.reader().await?;
        let (tx, rx) = mpsc::unbounded_channel();
        self.webhook_notices = Some(rx);
        self.tasks.push(tokio::spawn(lifeline_webhooks::worker::run(
            lifeline_webhooks::worker::Outbox {
                store: reader,
                secrets: self.secrets.clone(),
                clock: Clock::System,
                metrics: Some(self.sup.metrics().clone()),
                writer: Some(self.sup.clone()),
            },
            self.webhooks.clone(),
            tx,
            self.sup.stopping(),
        )));
        Ok(())
    }

    /// What the webhook sender has to tell (an endpoint it turned off), once: the face that
    /// shows them takes the receiver.
    pub fn take_webhook_notices(&mut self) -> Option<mpsc::UnboundedReceiver<WebhookNotice>> {
        self.webhook_notices.take()
    }

    pub fn supervisor(&self) -> &Supervisor {
        &self.sup
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// How the previous run ended (`None`: this is the first).
    pub fn previous_run(&self) -> Option<PreviousRun> {
        self.previous
    }

    /// The last heartbeat of the previous run, which dates a crash.
    pub fn crashed_at(&self) -> Option<Timestamp> {
        self.crashed_at
    }

    /// The startup report, once [`Runtime::start`] has run.
    pub fn startup_report(&self) -> Option<&StartupReport> {
        self.startup.as_ref()
    }

    /// Fires when shutdown begins; faces end their own tasks (HTTP, event forwarding) on it.
    pub fn stopping(&self) -> CancellationToken {
        self.sup.stopping()
    }

    /// Graceful stop: every connection is closed and recorded, background tasks end, and the
    /// clean-run marker is written last, so the next start knows this run did not crash.
    ///
    /// An instance of a fleet stops renewing, closes and records its accounts while their
    /// leases still hold, then releases them all at once: the other instances are woken and
    /// take them over without waiting for an expiry.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        let keeper = match &mut self.mode {
            Mode::Fleet { running, .. } => running.take(),
            Mode::Single { .. } => None,
        };
        if let Some(keeper) = keeper {
            keeper.stop().await;
        }
        self.sup.shutdown().await;
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
        match &self.mode {
            Mode::Single { run_id } => {
                self.store.end_run(*run_id, chrono::Utc::now()).await?;
                self.store.close().await;
                tracing::info!(run = run_id, "stopped cleanly");
            }
            Mode::Fleet { instance, .. } => {
                instance.leave().await?;
                self.store.close().await;
                tracing::info!(instance = %instance.id().as_str(), "left the fleet");
            }
        }
        Ok(())
    }
}

/// This host's fleet key, checked against the fleet's (a host with another key is refused
/// before it joins). Without one, WhatsApp numbers cannot move to or from this host without a
/// new link: said once, and the instance runs.
async fn fleet_key(
    fleet: &FleetStore,
    secrets: &Arc<dyn SecretStore>,
) -> Result<Option<lifeline_fleet::FleetKey>, Error> {
    let name = lifeline_engine::model::SecretName::parse(lifeline_fleet::KEY_SECRET)?;
    let Some(text) = lifeline_engine::secrets::fetch(secrets.clone(), &name).await? else {
        tracing::warn!(
            "no fleet key in this host's keyring (`lifeline fleet key import`): WhatsApp numbers taken over here need a new link"
        );
        return Ok(None);
    };
    let key =
        lifeline_fleet::FleetKey::from_text(text.expose()).map_err(lifeline_fleet::Error::from)?;
    fleet.check_key(&key).await?;
    Ok(Some(key))
}

/// Takes the data dir's supervisor lock. An admin command with no supervisor to talk to holds it
/// for the moment it records its change (see `ops::Queued`), so a lock held briefly is waited
/// for; another supervisor holds it for good, and is reported.
async fn lock(dir: &DataDir) -> Result<SupervisorLock, Error> {
    let deadline = tokio::time::Instant::now() + LOCK_WAIT;
    loop {
        match dir.lock() {
            Err(Error::DataDirLocked { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// How long a start waits for a briefly held lock.
const LOCK_WAIT: Duration = Duration::from_secs(2);

async fn heartbeat(store: Store, run_id: i64, stop: CancellationToken) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {
                if let Err(e) = store.heartbeat(run_id, chrono::Utc::now()).await {
                    tracing::warn!(error = %e, "heartbeat not recorded");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
