//! The shell's state: what the window works on ([`Live`]: this computer's supervisor, or a
//! fleet's console), or why it could not start, and the last health pass's numbers (uptime,
//! score move slowly; the views carry everything else). Commands reach the engine through here.
//! Connecting to a fleet or leaving it swaps the [`Live`]; the window then reloads.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use lifeline_engine::connector::LinkMode;
use lifeline_engine::model::{Account, AccountChange, NewAccount};
use lifeline_engine::ops::{Action, Control, Target};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::report;
use lifeline_engine::supervisor::{AccountView, StartupReport, Supervisor};
use lifeline_engine::{AccountId, DataDir, Error, Store, Timestamp};
use lifeline_runtime::{Parts, Runtime};
use tokio_util::sync::CancellationToken;

use crate::api::{self, Card, Connection, FleetDelta, HealthBits, Prefs};
use crate::console::{self, Console};
use crate::error::{CommandError, CommandResult, ErrorCode};

/// What the window works on.
#[derive(Debug, Clone)]
pub struct Live {
    /// Where the accounts are: this computer's store, or the fleet store.
    pub store: Store,
    pub engine: Engine,
    /// This computer's own store (the data dir's): the window's preferences and the fleet it
    /// is a console of. The same store as `store` when it supervises its own accounts.
    pub home: Store,
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub enum Engine {
    /// This computer supervises its own accounts, as `lifeline serve` does.
    Local {
        sup: Supervisor,
        startup: StartupReport,
    },
    /// A fleet's console: its instances supervise; operations reach them through the store.
    Console(Arc<Console>),
}

impl Live {
    pub fn console(&self) -> Option<&Arc<Console>> {
        match &self.engine {
            Engine::Console(c) => Some(c),
            Engine::Local { .. } => None,
        }
    }

    pub fn supervisor(&self) -> Option<&Supervisor> {
        match &self.engine {
            Engine::Local { sup, .. } => Some(sup),
            Engine::Console(_) => None,
        }
    }

    /// Cancelled when this stops being what the window works on (quit, connect, disconnect).
    pub fn stopping(&self) -> CancellationToken {
        match &self.engine {
            Engine::Local { sup, .. } => sup.stopping(),
            Engine::Console(c) => c.stopping(),
        }
    }

    /// Every account's view: the supervisor's, or the fleet store's as last read.
    pub fn views(&self) -> Vec<AccountView> {
        match &self.engine {
            Engine::Local { sup, .. } => sup.views(),
            Engine::Console(c) => c.views(),
        }
    }

    pub fn now(&self) -> Timestamp {
        match &self.engine {
            Engine::Local { sup, .. } => sup.clock().now(),
            Engine::Console(_) => chrono::Utc::now(),
        }
    }

    pub fn startup(&self) -> StartupReport {
        match &self.engine {
            Engine::Local { startup, .. } => startup.clone(),
            Engine::Console(_) => StartupReport::default(),
        }
    }

    /// The fleet store's URL, for a console.
    pub fn fleet_store(&self) -> Option<String> {
        self.console().map(|c| c.fleet.url().to_string())
    }

    pub async fn add(&self, new: NewAccount) -> lifeline_engine::Result<Account> {
        match &self.engine {
            Engine::Local { sup, .. } => sup.add(new).await,
            Engine::Console(c) => c.ops.add(new).await,
        }
    }

    pub async fn remove(&self, id: AccountId) -> lifeline_engine::Result<Account> {
        match &self.engine {
            Engine::Local { sup, .. } => sup.remove(id).await,
            Engine::Console(c) => c.ops.remove(id).await,
        }
    }

    pub async fn act(&self, action: Action, target: Target) -> lifeline_engine::Result<usize> {
        match &self.engine {
            Engine::Local { sup, .. } => sup.act(action, target).await,
            Engine::Console(c) => c.ops.act(action, target).await,
        }
    }

    pub async fn update(
        &self,
        id: AccountId,
        change: AccountChange,
    ) -> lifeline_engine::Result<Account> {
        match &self.engine {
            Engine::Local { sup, .. } => sup.update(id, change).await,
            Engine::Console(c) => c.ops.update(id, change).await,
        }
    }

    /// Links a WhatsApp account: the codes reach the window as `lifeline://link` events (a
    /// console reads them from the store, where the holding instance keeps them).
    pub async fn link(&self, id: AccountId, mode: LinkMode) -> lifeline_engine::Result<()> {
        match &self.engine {
            Engine::Local { sup, .. } => sup.link(id, mode).await,
            Engine::Console(c) => c.ops.link(id, mode).await,
        }
    }

    pub async fn set_policy(&self, policy: PolicyConfig) -> lifeline_engine::Result<()> {
        match &self.engine {
            Engine::Local { sup, .. } => sup.set_policy(policy).await.map(drop),
            Engine::Console(c) => c.ops.set_policy(policy).await.map(drop),
        }
    }
}

#[derive(Debug)]
pub struct Shell {
    live: RwLock<Result<Arc<Live>, CommandError>>,
    /// The supervisor's runtime, while this computer supervises its own accounts.
    runtime: tokio::sync::Mutex<Option<Runtime>>,
    /// The fleet store the window is (or was trying to be) a console of.
    connection: Mutex<Connection>,
    /// Held while the window changes what it works on.
    switching: tokio::sync::Mutex<()>,
    /// The last health pass's numbers (uptime, score), by account.
    health: Mutex<HashMap<AccountId, HealthBits>>,
    prefs: RwLock<Prefs>,
    /// Where the process is on its way out (the one record of it in the shell).
    exit: Mutex<Exit>,
    /// Where card changes go (the window's `watch_fleet` channel; a reload replaces it).
    fleet: Mutex<Option<FleetChannel>>,
    /// How many times the fleet was read for the window (snapshots and deltas), so the window
    /// can tell which of the two is newer.
    reads: Mutex<u64>,
    /// Endpoints the webhook sender turned off, until `forward` takes them to the window.
    webhook_notices: Mutex<Option<WebhookNotices>>,
    /// The HTTP API, while the operator has it on.
    api_server: tokio::sync::Mutex<Option<ApiServer>>,
}

type WebhookNotices = tokio::sync::mpsc::UnboundedReceiver<lifeline_runtime::WebhookNotice>;

#[derive(Debug)]
struct ApiServer {
    port: u16,
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exit {
    Running,
    Stopping,
    Done,
}

/// What an exit request should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStep {
    /// Stop gracefully first, then exit.
    Stop,
    /// The graceful stop is under way.
    Wait,
    /// Stopped: exit now.
    Go,
}

struct FleetChannel(tauri::ipc::Channel<FleetDelta>);

impl std::fmt::Debug for FleetChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FleetChannel({})", self.0.id())
    }
}

/// What opening gave: the live state, and the runtime when this computer supervises.
type Opened = (Arc<Live>, Option<Runtime>);

impl Shell {
    /// Opens the data dir (`LIFELINE_DATA_DIR` or the platform default), then either supervises
    /// its accounts or, when this computer is a fleet's console (Settings, or `LIFELINE_STORE`),
    /// connects to the fleet store. A failure (another Lifeline supervises the dir, a damaged
    /// database, an unreachable fleet store) is kept and shown by the UI instead of a window
    /// that never appears.
    pub async fn start() -> Arc<Self> {
        let shell = Arc::new(Self {
            live: RwLock::new(Err(CommandError::new(
                ErrorCode::Unavailable,
                "Lifeline is starting.",
            ))),
            runtime: tokio::sync::Mutex::new(None),
            connection: Mutex::new(Connection {
                fleet_store: None,
                from_environment: false,
            }),
            switching: tokio::sync::Mutex::new(()),
            health: Mutex::default(),
            prefs: RwLock::new(Prefs::default()),
            exit: Mutex::new(Exit::Running),
            fleet: Mutex::new(None),
            reads: Mutex::new(0),
            webhook_notices: Mutex::new(None),
            api_server: tokio::sync::Mutex::new(None),
        });
        let opened = shell.open().await;
        shell.install(opened).await;
        shell
    }

    async fn open(&self) -> Result<Opened, Error> {
        let explicit = std::env::var_os("LIFELINE_DATA_DIR").map(PathBuf::from);
        let dir = DataDir::resolve(explicit)?;
        let home = Store::open(&dir).await?;
        self.set_prefs(load_prefs(&home).await);
        let chosen = console::chosen(&home).await?;
        let url = chosen.fleet_store.clone();
        *self.connection() = chosen;
        match url {
            Some(url) => {
                let (console, store) = Console::open(&dir, &url).await?;
                Ok(Self::console_live(&dir, home, console, store))
            }
            None => Self::open_local(&dir, home).await,
        }
    }

    async fn open_local(dir: &DataDir, store: Store) -> Result<Opened, Error> {
        let mut runtime = Runtime::open(dir, store.clone(), Parts::system(dir)).await?;
        let startup = runtime.start().await?;
        let live = Live {
            engine: Engine::Local {
                sup: runtime.supervisor().clone(),
                startup,
            },
            home: store.clone(),
            store,
            data_dir: dir.root().to_owned(),
        };
        Ok((Arc::new(live), Some(runtime)))
    }

    fn console_live(dir: &DataDir, home: Store, console: Arc<Console>, store: Store) -> Opened {
        let live = Live {
            engine: Engine::Console(console),
            store,
            home,
            data_dir: dir.root().to_owned(),
        };
        (Arc::new(live), None)
    }

    /// Makes `opened` what the window works on (or keeps why it could not start).
    async fn install(&self, opened: Result<Opened, Error>) {
        match opened {
            Ok((live, mut runtime)) => {
                if let Some(rt) = runtime.as_mut() {
                    *self
                        .webhook_notices
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = rt.take_webhook_notices();
                }
                *self.runtime.lock().await = runtime;
                self.health().clear();
                *self.live.write().unwrap_or_else(|p| p.into_inner()) = Ok(live);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                *self.live.write().unwrap_or_else(|p| p.into_inner()) = Err(e.into());
            }
        }
    }

    /// Which store the window works on.
    pub fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes this computer a console of the fleet store at `url`: connects first (with the
    /// password given, kept in the keyring once the connection works), then stops supervising
    /// its own accounts and remembers the choice. A refused connection changes nothing.
    pub async fn connect_fleet(
        &self,
        url: &str,
        password: lifeline_engine::secrets::SecretValue,
    ) -> CommandResult<Arc<Live>> {
        let _switching = self.switching.lock().await;
        self.settable()?;
        let home = self.home().await?;
        let dir = self.data_dir()?;
        // None typed: the password this computer keeps already (or none at all).
        let typed = !password.expose().is_empty();
        let (console, store) = if typed {
            Console::connect(&dir, url.trim(), Some(&password)).await?
        } else {
            Console::open(&dir, url.trim()).await?
        };
        let url = console.fleet.url().to_string();
        let kept = async {
            if typed {
                console::keep_password(&home, password).await?;
            }
            home.set_setting(console::FLEET_URL_KEY, &url).await
        };
        if let Err(e) = kept.await {
            console.close().await;
            return Err(e.into());
        }
        tracing::info!(store = %url, "console of a fleet store");
        // A supervisor's stop closes its store, which was also this computer's own.
        let supervised = self.runtime.lock().await.is_some();
        self.stop_current().await;
        let home = if supervised {
            match Store::open(&dir).await {
                Ok(home) => home,
                Err(e) => {
                    console.close().await;
                    let e = CommandError::from(e);
                    *self.live.write().unwrap_or_else(|p| p.into_inner()) = Err(e.clone());
                    return Err(e);
                }
            }
        } else {
            home
        };
        let opened = Self::console_live(&dir, home, console, store);
        let live = opened.0.clone();
        *self.connection() = Connection {
            fleet_store: Some(url),
            from_environment: false,
        };
        self.install(Ok(opened)).await;
        Ok(live)
    }

    /// Back to supervising this computer's own accounts.
    pub async fn disconnect_fleet(&self) -> CommandResult<Option<Arc<Live>>> {
        let _switching = self.switching.lock().await;
        self.settable()?;
        let home = self.home().await?;
        let dir = self.data_dir()?;
        home.set_setting(console::FLEET_URL_KEY, "").await?;
        self.stop_current().await;
        *self.connection() = Connection {
            fleet_store: None,
            from_environment: false,
        };
        tracing::info!("supervising this computer's accounts");
        let opened = Self::open_local(&dir, home).await;
        let live = opened.as_ref().ok().map(|(l, _)| l.clone());
        self.install(opened).await;
        Ok(live)
    }

    fn settable(&self) -> CommandResult<()> {
        if self.connection().from_environment {
            return Err(CommandError::new(
                ErrorCode::InvalidInput,
                "LIFELINE_STORE chooses the fleet store for this run: start Lifeline without it to choose here.",
            ));
        }
        Ok(())
    }

    /// This computer's own store, also when the window could not start (to leave a fleet
    /// that cannot be reached).
    async fn home(&self) -> CommandResult<Store> {
        if let Ok(live) = self.live() {
            return Ok(live.home.clone());
        }
        let dir = self.data_dir()?;
        Ok(Store::open(&dir).await?)
    }

    fn data_dir(&self) -> CommandResult<DataDir> {
        let explicit = std::env::var_os("LIFELINE_DATA_DIR").map(PathBuf::from);
        Ok(DataDir::resolve(explicit)?)
    }

    /// Stops what the window works on now: the supervisor (graceful, clean-run marker) or the
    /// console's reading.
    async fn stop_current(&self) {
        let current = self.live.read().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(server) = self.api_server.lock().await.take() {
            server.stop.cancel();
            let _ = server.task.await;
        }
        if let Some(rt) = self.runtime.lock().await.take()
            && let Err(e) = rt.shutdown().await
        {
            tracing::error!(error = %e, "shutdown did not complete");
        }
        if let Ok(live) = current
            && let Some(c) = live.console()
        {
            c.close().await;
        }
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Err(CommandError::new(
            ErrorCode::Unavailable,
            "Lifeline is switching stores.",
        ));
    }

    pub fn live(&self) -> CommandResult<Arc<Live>> {
        let live = self
            .live
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()?;
        if live.stopping().is_cancelled() {
            return Err(CommandError::new(
                ErrorCode::Unavailable,
                "Lifeline is shutting down.",
            ));
        }
        Ok(live)
    }

    /// The notices of endpoints the webhook sender turns off (once: `forward` takes them).
    pub fn take_webhook_notices(&self) -> Option<WebhookNotices> {
        self.webhook_notices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }

    /// Serves the HTTP API on 127.0.0.1 as `prefs` say: started, moved to another port, or
    /// stopped. A port that cannot be bound is refused with the reason and changes nothing.
    pub async fn serve_api(&self, prefs: &Prefs) -> CommandResult<Option<u16>> {
        if self.connection().fleet_store.is_some() {
            // A console supervises nothing to serve: the choice is kept for this computer's
            // own accounts, but switching it on here is refused.
            if prefs.http_api && !self.prefs().http_api {
                return Err(CommandError::new(
                    ErrorCode::InvalidInput,
                    "In a fleet the instances serve the HTTP API (lifeline serve --store … --http 127.0.0.1:PORT), not its console.",
                ));
            }
            return Ok(None);
        }
        let mut server = self.api_server.lock().await;
        let wanted = prefs.http_api.then_some(prefs.http_port);
        if server.as_ref().map(|s| s.port) == wanted {
            return Ok(wanted);
        }
        let listener = match wanted {
            Some(0) => {
                return Err(CommandError::new(
                    ErrorCode::InvalidInput,
                    "Pick a port for the HTTP API between 1 and 65535.",
                ));
            }
            Some(port) => Some(
                tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port))
                    .await
                    .map_err(|e| {
                        CommandError::new(
                            ErrorCode::InvalidInput,
                            format!("The HTTP API cannot listen on 127.0.0.1:{port} ({e}): pick another port."),
                        )
                    })?,
            ),
            None => None,
        };
        if let Some(old) = server.take() {
            old.stop.cancel();
            let _ = old.task.await;
        }
        let (Some(listener), Some(port)) = (listener, wanted) else {
            return Ok(None);
        };
        let token = lifeline_engine::model::SecretName::parse(api::HTTP_TOKEN_SECRET)?;
        let runtime = self.runtime.lock().await;
        let Some(rt) = runtime.as_ref() else {
            return Err(CommandError::new(
                ErrorCode::Unavailable,
                "Lifeline is shutting down.",
            ));
        };
        let stop = rt.supervisor().stopping().child_token();
        let task = tokio::spawn(lifeline_api::serve(listener, rt.api(token), stop.clone()));
        tracing::info!(port, "HTTP API on");
        *server = Some(ApiServer { port, stop, task });
        Ok(wanted)
    }

    /// True the first time the window closes into the tray (remembered in this computer's
    /// store), so the operator is told once.
    pub async fn first_time_in_tray(&self) -> bool {
        let Ok(live) = self.live() else { return false };
        match live.home.setting(crate::api::TRAY_NOTICE_KEY).await {
            Ok(None) => {
                if let Err(e) = live
                    .home
                    .set_setting(crate::api::TRAY_NOTICE_KEY, "1")
                    .await
                {
                    tracing::warn!(error = %e, "could not remember the tray notice");
                }
                true
            }
            Ok(Some(_)) => false,
            Err(e) => {
                tracing::warn!(error = %e, "could not read whether the tray notice was shown");
                false
            }
        }
    }

    pub fn prefs(&self) -> Prefs {
        *self.prefs.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn set_prefs(&self, prefs: Prefs) {
        *self.prefs.write().unwrap_or_else(|p| p.into_inner()) = prefs;
    }

    pub fn watch_fleet(&self, channel: tauri::ipc::Channel<FleetDelta>) {
        *self.fleet.lock().unwrap_or_else(|p| p.into_inner()) = Some(FleetChannel(channel));
    }

    /// Every account's view, numbered in the order of such reads: the window keeps a card from
    /// the later read when a snapshot and a delta cross on their way.
    pub fn read_views(&self, live: &Live) -> (u64, Vec<AccountView>) {
        let mut reads = self.reads.lock().unwrap_or_else(|p| p.into_inner());
        *reads += 1;
        (*reads, live.views())
    }

    /// Sends card changes to the window, if it is watching.
    pub fn send_fleet(&self, delta: FleetDelta) {
        let fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = fleet.as_ref()
            && let Err(e) = channel.0.send(delta)
        {
            tracing::debug!(error = %e, "fleet channel closed");
        }
    }

    /// Asked on every request to exit: whether the process may go now, or must first stop
    /// gracefully (the first request starts that; later ones wait for it).
    pub fn exit_step(&self) -> ExitStep {
        let mut exit = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        match *exit {
            Exit::Done => ExitStep::Go,
            Exit::Stopping => ExitStep::Wait,
            Exit::Running => {
                *exit = Exit::Stopping;
                ExitStep::Stop
            }
        }
    }

    /// Graceful stop: connections closed, clean-run marker written last. Afterwards every exit
    /// request goes through.
    pub async fn shutdown(&self) {
        if let Some(server) = self.api_server.lock().await.take() {
            server.stop.cancel();
            let _ = server.task.await;
        }
        let runtime = self.runtime.lock().await.take();
        if let Some(rt) = runtime
            && let Err(e) = rt.shutdown().await
        {
            tracing::error!(error = %e, "shutdown did not complete");
        }
        if let Ok(live) = self.live()
            && let Some(c) = live.console()
        {
            c.close().await;
        }
        *self.exit.lock().unwrap_or_else(|p| p.into_inner()) = Exit::Done;
    }

    /// Forgets an account's health numbers (it was removed).
    pub fn forget(&self, id: AccountId) {
        self.health().remove(&id);
    }

    /// Runs the health report (uptime, score) for every account and keeps the numbers.
    pub async fn refresh_health(&self, live: &Live) -> Result<(), Error> {
        let views = live.views();
        let r = report::fleet_health(&live.store, live.now(), &views).await?;
        *self.health() = r
            .accounts
            .iter()
            .map(|a| (a.id, HealthBits::from(a)))
            .collect();
        Ok(())
    }

    /// Cards for the given views, with the last health pass's numbers (and, in a console, the
    /// instance supervising each).
    pub fn cards<'a>(
        &self,
        live: &Live,
        views: impl IntoIterator<Item = &'a AccountView>,
    ) -> Vec<Card> {
        let health = self.health();
        let console = live.console();
        views
            .into_iter()
            .map(|v| api::Card {
                owner: console.and_then(|c| c.owner(v.id)),
                ..api::card(v, health.get(&v.id))
            })
            .collect()
    }

    /// The card of one account (a console reads the store again first).
    pub async fn card(&self, live: &Live, id: AccountId) -> CommandResult<Card> {
        if let Some(c) = live.console() {
            c.refresh(&live.store).await?;
        }
        let view = live
            .views()
            .into_iter()
            .find(|v| v.id == id)
            .ok_or(lifeline_engine::InputError::UnknownAccount(id.0))?;
        Ok(self.cards(live, [&view]).remove(0))
    }

    fn health(&self) -> std::sync::MutexGuard<'_, HashMap<AccountId, HealthBits>> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub async fn load_prefs(store: &Store) -> Prefs {
    match store.setting(api::PREFS_KEY).await {
        Ok(Some(json)) => serde_json::from_str(&json).unwrap_or_default(),
        Ok(None) => Prefs::default(),
        Err(e) => {
            tracing::warn!(error = %e, "desktop preferences unreadable; using defaults");
            Prefs::default()
        }
    }
}
