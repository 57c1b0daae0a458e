//! The shell's state: the running [`Runtime`] (or why it could not start), plus the little the
//! UI needs that the supervisor's live views do not carry (endpoint, priority, the last health
//! pass). Commands reach the engine through here.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use lifeline_engine::report;
use lifeline_engine::supervisor::{AccountView, StartupReport, Supervisor};
use lifeline_engine::{AccountId, DataDir, Error, Store};
use lifeline_runtime::{Parts, Runtime};

use crate::api::{self, Card, FleetDelta, HealthBits, Info, Prefs};
use crate::error::{CommandError, CommandResult, ErrorCode};

/// What a running shell has.
#[derive(Debug, Clone)]
pub struct Live {
    pub sup: Supervisor,
    pub store: Store,
    pub startup: StartupReport,
    pub data_dir: PathBuf,
}

#[derive(Debug, Default)]
struct Cache {
    info: HashMap<AccountId, Info>,
    health: HashMap<AccountId, HealthBits>,
}

#[derive(Debug)]
pub struct Shell {
    live: Result<Live, CommandError>,
    runtime: tokio::sync::Mutex<Option<Runtime>>,
    cache: Mutex<Cache>,
    prefs: RwLock<Prefs>,
    stopping: AtomicBool,
    /// Where card changes go (the window's `watch_fleet` channel; a reload replaces it).
    fleet: Mutex<Option<FleetChannel>>,
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
            Ok((runtime, live, prefs)) => Arc::new(Self {
                live: Ok(live),
                runtime: tokio::sync::Mutex::new(Some(runtime)),
                cache: Mutex::new(Cache::default()),
                prefs: RwLock::new(prefs),
                stopping: AtomicBool::new(false),
                fleet: Mutex::new(None),
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot supervise");
                Arc::new(Self {
                    live: Err(e.into()),
                    runtime: tokio::sync::Mutex::new(None),
                    cache: Mutex::new(Cache::default()),
                    prefs: RwLock::new(Prefs::default()),
                    stopping: AtomicBool::new(false),
                    fleet: Mutex::new(None),
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
        if self.stopping.load(Ordering::SeqCst) {
            return Err(CommandError::new(
                ErrorCode::Unavailable,
                "Lifeline is shutting down.",
            ));
        }
        self.live.as_ref().map_err(Clone::clone)
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

    /// Sends card changes to the window, if it is watching.
    pub fn send_fleet(&self, delta: FleetDelta) {
        let fleet = self.fleet.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(channel) = fleet.as_ref()
            && let Err(e) = channel.0.send(delta)
        {
            tracing::debug!(error = %e, "fleet channel closed");
        }
    }

    /// Graceful stop, once: connections closed, clean-run marker written last.
    pub async fn shutdown(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let runtime = self.runtime.lock().await.take();
        if let Some(rt) = runtime
            && let Err(e) = rt.shutdown().await
        {
            tracing::error!(error = %e, "shutdown did not complete");
        }
    }

    /// Loads endpoint and priority of accounts the cache has not seen (added by the CLI, say).
    pub async fn learn(&self, live: &Live, ids: impl IntoIterator<Item = AccountId>) {
        let missing: Vec<AccountId> = {
            let cache = self.cache();
            ids.into_iter()
                .filter(|id| !cache.info.contains_key(id))
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        let accounts = if missing.len() > 8 {
            live.store.accounts().await.map_err(Some)
        } else {
            let mut v = Vec::new();
            for id in missing {
                match live.store.account(id).await {
                    Ok(a) => v.push(a),
                    // Removed meanwhile: nothing to learn.
                    Err(Error::Input(_)) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot read account");
                    }
                }
            }
            Ok(v)
        };
        if let Ok(accounts) = accounts {
            let mut cache = self.cache();
            for a in &accounts {
                cache.info.insert(a.id, Info::from(a));
            }
        }
    }

    /// Forgets cached settings so the next card reads them again.
    pub fn forget(&self, id: AccountId) {
        let mut cache = self.cache();
        cache.info.remove(&id);
        cache.health.remove(&id);
    }

    /// Runs the health report (uptime, score) for every account and keeps the numbers.
    pub async fn refresh_health(&self, live: &Live) -> Result<(), Error> {
        let views = live.sup.views();
        let r = report::fleet_health(&live.store, live.sup.clock().now(), Some(&views)).await?;
        let mut cache = self.cache();
        cache.health = r
            .accounts
            .iter()
            .map(|a| (a.id, HealthBits::from(a)))
            .collect();
        Ok(())
    }

    /// Cards for the given views (accounts whose settings are unknown are skipped).
    pub fn cards<'a>(&self, views: impl IntoIterator<Item = &'a AccountView>) -> Vec<Card> {
        let cache = self.cache();
        views
            .into_iter()
            .filter_map(|v| {
                let info = cache.info.get(&v.id)?;
                Some(api::card(v, info, cache.health.get(&v.id)))
            })
            .collect()
    }

    /// The card of one account, after learning its settings if needed.
    pub async fn card(&self, live: &Live, id: AccountId) -> CommandResult<Card> {
        self.learn(live, [id]).await;
        let views = live.sup.views();
        let view = views.iter().find(|v| v.id == id);
        self.cards(view)
            .pop()
            .ok_or_else(|| lifeline_engine::InputError::UnknownAccount(id.0).into())
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
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
