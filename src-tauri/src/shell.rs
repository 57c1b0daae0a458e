//! The shell's state: the running [`Runtime`] (or why it could not start) and the last health
//! pass's numbers (uptime, score move slowly; the live views carry everything else). Commands
//! reach the engine through here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use lifeline_engine::report;
use lifeline_engine::supervisor::{AccountView, StartupReport, Supervisor};
use lifeline_engine::{AccountId, DataDir, Error, Store};
use lifeline_runtime::{Parts, Runtime};

use crate::api::{self, Card, FleetDelta, HealthBits, Prefs};
use crate::error::{CommandError, CommandResult, ErrorCode};

/// What a running shell has.
#[derive(Debug, Clone)]
pub struct Live {
    pub sup: Supervisor,
    pub store: Store,
    pub startup: StartupReport,
    pub data_dir: PathBuf,
}

#[derive(Debug)]
pub struct Shell {
    live: Result<Live, CommandError>,
    runtime: tokio::sync::Mutex<Option<Runtime>>,
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

impl Shell {
    /// Opens the data dir (`LIFELINE_DATA_DIR` or the platform default) and starts supervising.
    /// A failure (another Lifeline supervises the dir, a damaged database) is kept and shown by
    /// the UI instead of a window that never appears.
    pub async fn start() -> Arc<Self> {
        match Self::open().await {
            Ok((mut runtime, live, prefs)) => Arc::new(Self {
                live: Ok(live),
                webhook_notices: Mutex::new(runtime.take_webhook_notices()),
                runtime: tokio::sync::Mutex::new(Some(runtime)),
                health: Mutex::default(),
                prefs: RwLock::new(prefs),
                exit: Mutex::new(Exit::Running),
                fleet: Mutex::new(None),
                reads: Mutex::new(0),
                api_server: tokio::sync::Mutex::new(None),
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot supervise");
                Arc::new(Self {
                    live: Err(e.into()),
                    runtime: tokio::sync::Mutex::new(None),
                    health: Mutex::default(),
                    prefs: RwLock::new(Prefs::default()),
                    exit: Mutex::new(Exit::Running),
                    fleet: Mutex::new(None),
                    reads: Mutex::new(0),
                    webhook_notices: Mutex::new(None),
                    api_server: tokio::sync::Mutex::new(None),
                })
            }
        }
    }

    async fn open() -> Result<(Runtime, Live, Prefs), Error> {
        let explicit = std::env::var_os("LIFELINE_DATA_DIR").map(PathBuf::from);
        let dir = DataDir::resolve(explicit)?;
        let store = Store::open(&dir).await?;
        let prefs = load_prefs(&store).await;
        let mut runtime = Runtime::open(&dir, store.clone(), Parts::system(&dir)).await?;
        let startup = runtime.start().await?;
        let live = Live {
            sup: runtime.supervisor().clone(),
            store,
            startup,
            data_dir: dir.root().to_owned(),
        };
        Ok((runtime, live, prefs))
    }

    pub fn live(&self) -> CommandResult<&Live> {
        let live = self.live.as_ref().map_err(Clone::clone)?;
        if live.sup.stopping().is_cancelled() {
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

    /// True the first time the window closes into the tray (remembered in the store), so the
    /// operator is told once.
    pub async fn first_time_in_tray(&self) -> bool {
        let Ok(live) = self.live() else { return false };
        match live.store.setting(crate::api::TRAY_NOTICE_KEY).await {
            Ok(None) => {
                if let Err(e) = live
                    .store
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
        (*reads, live.sup.views())
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
        *self.exit.lock().unwrap_or_else(|p| p.into_inner()) = Exit::Done;
    }

    /// Forgets an account's health numbers (it was removed).
    pub fn forget(&self, id: AccountId) {
        self.health().remove(&id);
    }

    /// Runs the health report (uptime, score) for every account and keeps the numbers.
    pub async fn refresh_health(&self, live: &Live) -> Result<(), Error> {
        let views = live.sup.views();
        let r = report::fleet_health(&live.store, live.sup.clock().now(), &views).await?;
        *self.health() = r
            .accounts
            .iter()
            .map(|a| (a.id, HealthBits::from(a)))
            .collect();
        Ok(())
    }

    /// Cards for the given views, with the last health pass's numbers.
    pub fn cards<'a>(&self, views: impl IntoIterator<Item = &'a AccountView>) -> Vec<Card> {
        let health = self.health();
        views
            .into_iter()
            .map(|v| api::card(v, health.get(&v.id)))
            .collect()
    }

    /// The card of one account.
    pub fn card(&self, live: &Live, id: AccountId) -> CommandResult<Card> {
        let view = live
            .sup
            .view(id)
            .ok_or(lifeline_engine::InputError::UnknownAccount(id.0))?;
        Ok(self.cards([&view]).remove(0))
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
