//! The supervisor: one task per account that owns its connection, a single writer that records
//! every transition, and the startup sequence that restores the fleet. Faces (CLI, HTTP, desktop)
//! call the methods here and subscribe to [`Update`]s; they never touch connections themselves.

mod account;
pub mod queue;
mod recorder;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Semaphore, broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::connector::{Connectors, LinkCode, LinkMode};
use crate::error::{InputError, Result};
use crate::metrics::Metrics;
use crate::model::{Account, AccountId, AccountKind};
use crate::policy::PolicyConfig;
use crate::policy::alerts::Alert;
use crate::policy::autorecover::{self, StartupAction};
use crate::policy::breaker::Breaker;
use crate::policy::pacing::Pacer;
use crate::proxy::ProxyEntry;
use crate::secrets::SecretStore;
use crate::state::{Event, Reason, State, StateKind, TriggeredBy};
use crate::store::{PreviousRun, Store, TransitionRecord};
use crate::time::Timestamp;

use account::{AccountCommand, AccountTask};
use recorder::RecorderMsg;

/// What subscribers (UI, CLI `serve` logs, HTTP) receive. Transitions come coalesced: one
/// message per recorded batch, so a mass drop of 1000 accounts is a handful of messages.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Update {
    Transitions(Vec<Event>),
    Alerts(Vec<Alert>),
    Link { account: AccountId, code: LinkCode },
}

/// Live, in-memory view of one account (updated at once, before the store write).
#[derive(Debug, Clone, Serialize)]
pub struct AccountView {
    pub id: AccountId,
    pub name: String,
    pub kind: AccountKind,
    pub desired_running: bool,
    pub muted: bool,
    pub state: State,
    pub since: Timestamp,
    pub breaker: &'static str,
    /// Connections restored after a drop, this run.
    pub reconnects: u64,
}

/// Everything the supervisor needs from outside.
#[derive(Debug, Clone)]
pub struct SupervisorDeps {
    pub store: Store,
    pub connectors: Connectors,
    pub secrets: Arc<dyn SecretStore>,
    pub clock: Clock,
    pub policy: PolicyConfig,
    /// Seed for backoff jitter; `None` seeds from entropy.
    pub jitter_seed: Option<u64>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Store,
    pub connectors: Connectors,
    pub secrets: Arc<dyn SecretStore>,
    pub clock: Clock,
    pub policy: PolicyConfig,
    pub pacer: Mutex<Pacer>,
    pub views: RwLock<HashMap<AccountId, AccountView>>,
    /// The fleet's proxies, by the account that configured each: the pool for fallback chains.
    pub proxies: RwLock<HashMap<AccountId, ProxyEntry>>,
    pub recorder: mpsc::UnboundedSender<RecorderMsg>,
    pub updates: broadcast::Sender<Update>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub jitter_seed: u64,
}

impl Shared {
    pub fn set_view(&self, view: AccountView) {
        let mut views = self.views.write().unwrap_or_else(|p| p.into_inner());
        views.insert(view.id, view);
    }

    /// Keeps the proxy pool in step with an account's settings (`None`: the account is gone).
    pub fn set_proxy(&self, id: AccountId, account: Option<&Account>) {
        let mut pool = self.proxies.write().unwrap_or_else(|p| p.into_inner());
        match account.and_then(ProxyEntry::of) {
            Some(entry) => pool.insert(id, entry),
            None => pool.remove(&id),
        };
    }

    /// The hops a connection of `account` should try now.
    pub fn route(&self, account: &Account) -> Vec<crate::proxy::Hop> {
        if account.proxy_url.is_none() {
            return Vec::new();
        }
        // Pool order does not matter: each tier is sorted before it is rotated.
        let pool = self.proxies.read().unwrap_or_else(|p| p.into_inner());
        crate::proxy::chain(
            account,
            pool.values(),
            self.policy.connection.direct_fallback,
        )
    }
}

/// Awaits a store operation. Under `cfg(test)` a parked blocking task holds tokio's paused clock
/// still meanwhile: SQLite answers from its own thread, and without this a paused test clock
/// would race ahead through every pending timer while the database works.
pub(crate) async fn db<F: std::future::Future>(f: F) -> F::Output {
    #[cfg(test)]
    {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let guard = tokio::task::spawn_blocking(move || {
            let _ = rx.recv();
        });
        let out = f.await;
        drop(tx);
        let _ = guard.await;
        out
    }
    #[cfg(not(test))]
    {
        f.await
    }
}

#[derive(Debug)]
struct Handle {
    commands: mpsc::UnboundedSender<AccountCommand>,
}

/// Result of the startup sequence, for logs and the UI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StartupReport {
    pub previous_run_crashed: bool,
    pub restoring: usize,
    pub held_stopped: usize,
    pub closed_after_crash: usize,
}

#[derive(Debug, Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
    handles: Arc<Mutex<HashMap<AccountId, Handle>>>,
    tasks: TaskTracker,
    recorder_done: Arc<tokio::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

impl Supervisor {
    /// Creates the supervisor (no account task yet; see [`Supervisor::startup`]).
    pub fn new(deps: SupervisorDeps) -> Self {
        let (recorder_tx, recorder_rx) = mpsc::unbounded_channel();
        let (updates, _) = broadcast::channel(1024);
        let jitter_seed = deps
            .jitter_seed
            .unwrap_or_else(|| crate::policy::jitter::Jitter::from_entropy().next_u64());
        let shared = Arc::new(Shared {
            pacer: Mutex::new(Pacer::new(&deps.policy.pacing)),
            store: deps.store,
            connectors: deps.connectors,
            secrets: deps.secrets,
            clock: deps.clock,
            policy: deps.policy,
            views: RwLock::new(HashMap::new()),
            proxies: RwLock::new(HashMap::new()),
            recorder: recorder_tx,
            updates,
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            jitter_seed,
        });
        let recorder = tokio::spawn(recorder::run(
            shared.store.clone(),
            shared.clock,
            shared.policy.alerts,
            recorder_rx,
            shared.updates.clone(),
        ));
        Self {
            shared,
            handles: Arc::new(Mutex::new(HashMap::new())),
            tasks: TaskTracker::new(),
            recorder_done: Arc::new(tokio::sync::Mutex::new(Some(recorder))),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.shared.updates.subscribe()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    pub fn policy(&self) -> &PolicyConfig {
        &self.shared.policy
    }

    pub fn clock(&self) -> Clock {
        self.shared.clock
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Current views, highest priority first is not known here: ordered by id.
    pub fn views(&self) -> Vec<AccountView> {
        let views = self.shared.views.read().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = views.values().cloned().collect();
        v.sort_by_key(|a| a.id);
        v
    }

    pub fn counts(&self) -> Vec<(StateKind, usize)> {
        let mut counts: BTreeMap<StateKind, usize> =
            StateKind::ALL.into_iter().map(|k| (k, 0)).collect();
        for v in self
            .shared
            .views
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            *counts.entry(v.state.kind()).or_default() += 1;
        }
        counts.into_iter().collect()
    }

    /// The autorecover start sequence: closes sessions a crash left open (dated by the last
    /// heartbeat), spawns a task per account, then restores desired-running accounts in
    /// priority order (paced, at most `concurrency` at once, after `start_delay`) when autorecover
    /// is on, or holds them stopped with a reason when it is off. History is kept either way.
    pub async fn startup(
        &self,
        previous: Option<PreviousRun>,
        crashed_at: Option<Timestamp>,
    ) -> Result<StartupReport> {
        let store = &self.shared.store;
        let now = self.shared.clock.now();
        let crashed = previous.is_some_and(|p| !p.clean);
        let accounts = db(store.accounts()).await?;
        let mut report = StartupReport {
            previous_run_crashed: crashed,
            ..StartupReport::default()
        };
        // Whatever the previous run left active is not active now.
        let stale: Vec<TransitionRecord> = accounts
            .iter()
            .filter(|a| {
                matches!(
                    a.state.kind(),
                    StateKind::Connected
                        | StateKind::Connecting
                        | StateKind::Linking
                        | StateKind::Backoff
                )
            })
            .map(|a| TransitionRecord {
                account_id: a.id,
                from: Some(a.state.kind()),
                to: State::Stopped {
                    reason: Some(if crashed {
                        Reason::Crashed
                    } else {
                        Reason::Shutdown
                    }),
                },
                detail: None,
                triggered_by: TriggeredBy::Startup,
                at: if crashed {
                    crashed_at.unwrap_or(now).max(a.state_since).min(now)
                } else {
                    now
                },
            })
            .collect();
        report.closed_after_crash = if crashed { stale.len() } else { 0 };
        let stale_ids: Vec<AccountId> = stale.iter().map(|r| r.account_id).collect();
        if !stale.is_empty() {
            db(store.record_transitions(stale)).await?;
        }
        let breakers = db(store.breakers()).await?;
        let autorecover_on = db(store.autorecover()).await?;
        let plan = autorecover::plan(&accounts, autorecover_on);
        let by_id: HashMap<AccountId, &Account> = accounts.iter().map(|a| (a.id, a)).collect();
        let mut restore = Vec::new();
        for (id, action) in plan {
            let Some(account) = by_id.get(&id) else {
                continue;
            };
            let mut account = (*account).clone();
            if stale_ids.contains(&id) {
                account.state = State::Stopped {
                    reason: Some(if crashed {
                        Reason::Crashed
                    } else {
                        Reason::Shutdown
                    }),
                };
            }
            let breaker = breakers.get(&id).cloned().unwrap_or_default();
            self.spawn_account(account, breaker);
            match action {
                StartupAction::Restore => restore.push(id),
                StartupAction::HoldStopped => {
                    report.held_stopped += 1;
                    self.send(id, AccountCommand::HoldStopped);
                }
                StartupAction::Leave => {}
            }
        }
        report.restoring = restore.len();
        let this = self.clone();
        let delay = Duration::from_millis(self.shared.policy.autorecover.start_delay_ms);
        let concurrency = self.shared.policy.autorecover.concurrency as usize;
        self.tasks.spawn(async move {
            let shutdown = this.shared.shutdown.clone();
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            let permits = Arc::new(Semaphore::new(concurrency));
            for id in restore {
                let permit = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                };
                this.send(
                    id,
                    AccountCommand::Start {
                        by: TriggeredBy::Startup,
                        permit: Some(permit),
                    },
                );
            }
        });
        tracing::info!(?report, "startup sequence");
        Ok(report)
    }

    fn spawn_account(&self, account: Account, breaker: Breaker) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = account.id;
        self.shared.set_proxy(id, Some(&account));
        let task = AccountTask::new(self.shared.clone(), account, breaker);
        self.tasks.spawn(task.run(rx));
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, Handle { commands: tx });
    }

    fn send(&self, id: AccountId, cmd: AccountCommand) -> bool {
        let handles = self.handles.lock().unwrap_or_else(|p| p.into_inner());
        match handles.get(&id) {
            Some(h) => h.commands.send(cmd).is_ok(),
            None => false,
        }
    }

    fn ids(&self) -> Vec<AccountId> {
        let mut ids: Vec<_> = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        ids.sort();
        ids
    }

    fn require(&self, id: AccountId) -> Result<()> {
        if self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&id)
        {
            Ok(())
        } else {
            Err(InputError::UnknownAccount(id.0).into())
        }
    }

    /// Picks up an account added to the store after startup (and starts it if desired).
    pub async fn add_account(&self, id: AccountId) -> Result<()> {
        if self.require(id).is_ok() {
            return Ok(());
        }
        let account = db(self.shared.store.account(id)).await?;
        let desired = account.desired_running;
        self.spawn_account(account, Breaker::default());
        if desired {
            self.send(id, AccountCommand::operator_start());
        }
        Ok(())
    }

    /// Stops and forgets an account (the store keeps its history).
    pub async fn remove_account(&self, id: AccountId) -> Result<()> {
        let handle = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        let Some(handle) = handle else {
            return Err(InputError::UnknownAccount(id.0).into());
        };
        let (ack, done) = oneshot::channel();
        if handle.commands.send(AccountCommand::Remove(ack)).is_ok() {
            let _ = done.await;
        }
        self.shared
            .views
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        Ok(())
    }

    /// Refreshes an account's settings (name, mute, …) from the store.
    pub async fn reload_account(&self, id: AccountId) -> Result<()> {
        let account = db(self.shared.store.account(id)).await?;
        self.send(id, AccountCommand::Reload(Box::new(account)));
        Ok(())
    }

    /// Records the operator's intent (desired running or not), then tells the account's task.
    async fn desire(&self, id: AccountId, desired: bool, cmd: AccountCommand) -> Result<()> {
        self.require(id)?;
        db(self.shared.store.set_desired_running(id, desired)).await?;
        self.send(id, cmd);
        Ok(())
    }

    pub async fn start(&self, id: AccountId) -> Result<()> {
        self.desire(id, true, AccountCommand::operator_start())
            .await
    }

    pub async fn stop(&self, id: AccountId) -> Result<()> {
        self.desire(id, false, AccountCommand::Stop).await
    }

    pub async fn start_all(&self) -> Result<()> {
        for id in self.ids() {
            self.start(id).await?;
        }
        Ok(())
    }

    pub async fn stop_all(&self) -> Result<()> {
        for id in self.ids() {
            self.stop(id).await?;
        }
        Ok(())
    }

    /// Retry now, skipping the backoff wait and an open breaker (still paced).
    pub async fn force_retry(&self, id: AccountId) -> Result<()> {
        self.desire(id, true, AccountCommand::ForceRetry).await
    }

    pub async fn reset_breaker(&self, id: AccountId) -> Result<()> {
        self.require(id)?;
        self.send(id, AccountCommand::ResetBreaker);
        Ok(())
    }

    pub async fn reset_all(&self) -> Result<()> {
        for id in self.ids() {
            self.send(id, AccountCommand::ResetBreaker);
        }
        Ok(())
    }

    /// Asks for a fresh QR or pair code (resets the breaker: a person is waiting).
    pub async fn request_link(&self, id: AccountId, mode: LinkMode) -> Result<()> {
        self.desire(id, true, AccountCommand::RequestLink(mode))
            .await
    }

    /// Runs the reconcile health pass on every account now.
    pub fn check_all(&self) {
        for id in self.ids() {
            self.send(id, AccountCommand::Check);
        }
    }

    /// Waits until every transition sent so far is recorded (tests, shutdown).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.shared.recorder.send(RecorderMsg::Flush(ack)).is_ok() {
            let _ = db(done).await;
        }
    }

    /// Graceful stop: every connection closed and recorded as stopped by shutdown (desired
    /// flags untouched, so the next start restores them), everything flushed to the store.
    pub async fn shutdown(&self) {
        self.shared.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.flush().await;
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Ends the recorder after [`Supervisor::shutdown`]; the store is quiet afterwards.
    pub async fn join(self) {
        let recorder = self.recorder_done.lock().await.take();
        drop(self);
        if let Some(r) = recorder {
            r.abort();
            let _ = r.await;
        }
    }
}
