//! The supervisor: one task per account that owns its connection, a single writer that records
//! every transition, and the startup sequence that restores the fleet. Faces (CLI, HTTP, desktop)
//! call the methods here and subscribe to [`Update`]s; they never touch connections themselves.

mod account;
mod leases;
pub mod queue;
pub(crate) mod recorder;
mod startup;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::clock::Clock;
use crate::connector::{Connectors, LinkCode, LinkMode, RemoteSession};
use crate::error::{InputError, Result};
pub use crate::fleet::AccountView;
use crate::fleet::Counts;
use crate::metrics::Metrics;
use crate::model::{Account, AccountId};
use crate::policy::PolicyConfig;
use crate::policy::alerts::Alert;
use crate::policy::breaker::Breaker;
use crate::policy::lifecycle::Input;
use crate::policy::pacing::Pacer;
use crate::proxy::ProxyEntry;
use crate::secrets::SecretStore;
use crate::state::{Event, TriggeredBy};
use crate::store::Store;
use crate::time::Timestamp;

use account::{AccountCommand, AccountTask};
use recorder::RecorderMsg;
pub use startup::StartupReport;

/// What subscribers (UI, CLI `serve` logs, HTTP) receive. Transitions come coalesced: one
/// message per recorded batch, so a mass drop of 1000 accounts is a handful of messages.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Update {
    Transitions(Vec<Event>),
    Alerts(Vec<Alert>),
    Link {
        account: AccountId,
        code: LinkCode,
    },
    /// Who an account is at the remote was learnt or changed (its view has it now).
    Identity {
        account: AccountId,
    },
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
    /// The policy in force: replaced whole when an operator changes it, read at each decision.
    pub policy: watch::Sender<Arc<PolicyConfig>>,
    pub pacer: Mutex<Pacer>,
    pub views: RwLock<HashMap<AccountId, AccountView>>,
    /// Until when each account that keeps dropping counts as unstable (kept by the writer,
    /// which decides the unstable alert; the views carry it).
    pub unstable: Arc<RwLock<HashMap<AccountId, Timestamp>>>,
    /// The fleet's proxies, by the account that configured each: the pool for fallback chains.
    pub proxies: RwLock<HashMap<AccountId, ProxyEntry>>,
    pub recorder: mpsc::UnboundedSender<RecorderMsg>,
    pub updates: broadcast::Sender<Update>,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub jitter_seed: u64,
}

impl Shared {
    /// The policy in force now.
    pub fn policy(&self) -> Arc<PolicyConfig> {
        self.policy.borrow().clone()
    }

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
            self.policy().connection.direct_fallback,
        )
    }
}

#[derive(Debug)]
struct Handle {
    commands: mpsc::UnboundedSender<AccountCommand>,
}

#[derive(Debug, Clone)]
pub struct Supervisor {
    shared: Arc<Shared>,
    handles: Arc<Mutex<HashMap<AccountId, Handle>>>,
    tasks: TaskTracker,
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
            policy: watch::Sender::new(Arc::new(deps.policy)),
            views: RwLock::new(HashMap::new()),
            unstable: Arc::default(),
            proxies: RwLock::new(HashMap::new()),
            recorder: recorder_tx,
            updates,
            metrics: Metrics::new(),
            shutdown: CancellationToken::new(),
            jitter_seed,
        });
        let written = Arc::new(Notify::new());
        tokio::spawn(recorder::run(
            shared.store.clone(),
            shared.clock,
            shared.policy.subscribe(),
            recorder_rx,
            shared.updates.clone(),
            shared.unstable.clone(),
            written.clone(),
        ));
        tokio::spawn(checkpoints(
            shared.store.clone(),
            shared.clock,
            written.clone(),
            shared.shutdown.clone(),
        ));
        Self {
            shared,
            handles: Arc::new(Mutex::new(HashMap::new())),
            tasks: TaskTracker::new(),
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.shared.updates.subscribe()
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<PolicyConfig> {
        self.shared.policy()
    }

    /// Puts a validated policy in force at once: every account's next decision (backoff,
    /// breaker, keepalive of its next connection, reconcile period), the fleet's pacing and the
    /// alerts use it; connections up now are not cut. Storing (and logging) it is the caller's.
    pub fn apply_policy(&self, policy: PolicyConfig) {
        if **self.shared.policy.borrow() == policy {
            return;
        }
        self.shared
            .pacer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .configure(&policy.pacing);
        self.shared.policy.send_replace(Arc::new(policy));
        tracing::info!("recovery policy changed; in force from the next decision");
    }

    /// Reads the stored policy and puts it in force (an operator changed it from another
    /// process).
    pub async fn reload_policy(&self) -> Result<()> {
        let policy = self.shared.store.policy().await?;
        self.apply_policy(policy);
        Ok(())
    }

    pub fn clock(&self) -> Clock {
        self.shared.clock
    }

    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// Records webhook delivery attempts through the single writer, so the sender never
    /// contends with transitions for the database; once the supervisor has stopped, directly.
    pub async fn record_webhook_attempts(
        &self,
        attempts: Vec<crate::webhook::Attempt>,
    ) -> Result<Vec<Option<Timestamp>>> {
        let (ack, answer) = oneshot::channel();
        let msg = RecorderMsg::WebhookAttempts {
            attempts: attempts.clone(),
            ack,
        };
        if self.shared.recorder.send(msg).is_ok()
            && let Ok(out) = answer.await
        {
            return out;
        }
        self.shared.store.record_attempts(&attempts).await
    }

    /// Current views, in the canonical order (highest priority first, then the oldest).
    pub fn views(&self) -> Vec<AccountView> {
        let views = self.shared.views.read().unwrap_or_else(|p| p.into_inner());
        let marks = self.marks();
        let mut v: Vec<_> = views.values().map(|v| marked(v, &marks)).collect();
        crate::fleet::sort(&mut v);
        v
    }

    /// One account's view, if the supervisor has it.
    pub fn view(&self, id: AccountId) -> Option<AccountView> {
        let views = self.shared.views.read().unwrap_or_else(|p| p.into_inner());
        views.get(&id).map(|v| marked(v, &self.marks()))
    }

    /// The writer's unstable marks.
    fn marks(&self) -> std::sync::RwLockReadGuard<'_, HashMap<AccountId, Timestamp>> {
        self.shared
            .unstable
            .read()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn counts(&self) -> Counts {
        let views = self.shared.views.read().unwrap_or_else(|p| p.into_inner());
        Counts::of(views.values())
    }

    fn spawn_account(&self, account: Account, breaker: Breaker, resume: Option<RemoteSession>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = account.id;
        self.shared.set_proxy(id, Some(&account));
        let task = AccountTask::new(self.shared.clone(), account, breaker, resume);
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
        let account = self
            .shared
            .clock
            .hold(self.shared.store.account(id))
            .await?;
        let desired = account.desired_running;
        self.spawn_account(account, Breaker::default(), None);
        if desired {
            self.send(
                id,
                operator(Input::Start {
                    by: TriggeredBy::Operator,
                }),
            );
        }
        Ok(())
    }

    /// Stops the account, lets its connector forget it (device keys), records the removal and
    /// takes it out of the fleet. Its history stays (exports keep it).
    pub async fn remove_account(&self, id: AccountId) -> Result<Account> {
        let account = self
            .shared
            .clock
            .hold(self.shared.store.account(id))
            .await?;
        if let Some(handle) = self.take_handle(id) {
            let (ack, done) = oneshot::channel();
            if handle.commands.send(AccountCommand::Remove(ack)).is_ok() {
                let _ = done.await;
            }
            // The removal's transition is written before the account leaves the store.
            self.flush().await;
        }
        self.shared
            .clock
            .hold(self.shared.store.mark_removed(id))
            .await?;
        self.forget_view(id);
        Ok(account)
    }

    /// Takes an account's task handle out of the supervisor (the task ends when told to, or
    /// when the handle is dropped).
    fn take_handle(&self, id: AccountId) -> Option<Handle> {
        self.handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id)
    }

    fn forget_view(&self, id: AccountId) {
        self.shared
            .views
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// Refreshes an account's settings (name, mute, …) from the store.
    pub async fn reload_account(&self, id: AccountId) -> Result<()> {
        let account = self
            .shared
            .clock
            .hold(self.shared.store.account(id))
            .await?;
        self.send(id, AccountCommand::Reload(Box::new(account)));
        Ok(())
    }

    /// Records the operator's intent (desired running or not), then tells the account's task.
    async fn desire(&self, id: AccountId, desired: bool, input: Input) -> Result<()> {
        self.require(id)?;
        self.shared
            .clock
            .hold(self.shared.store.set_desired_running(id, desired))
            .await?;
        self.send(id, operator(input));
        Ok(())
    }

    pub async fn start(&self, id: AccountId) -> Result<()> {
        self.desire(
            id,
            true,
            Input::Start {
                by: TriggeredBy::Operator,
            },
        )
        .await
    }

    pub async fn stop(&self, id: AccountId) -> Result<()> {
        self.desire(id, false, Input::Stop).await
    }

    /// Retry now, skipping the backoff wait and an open breaker (still paced).
    pub async fn force_retry(&self, id: AccountId) -> Result<()> {
        self.desire(id, true, Input::ForceRetry).await
    }

    pub async fn reset_breaker(&self, id: AccountId) -> Result<()> {
        self.require(id)?;
        self.send(id, operator(Input::ResetBreaker));
        Ok(())
    }

    /// Asks for a fresh QR or pair code (resets the breaker: a person is waiting). The codes
    /// arrive as [`Update::Link`].
    pub async fn request_link(&self, id: AccountId, mode: LinkMode) -> Result<()> {
        self.desire(id, true, Input::RequestLink(mode)).await
    }

    /// Runs the reconcile health pass on one account now.
    pub fn check(&self, id: AccountId) -> Result<()> {
        self.require(id)?;
        self.send(id, AccountCommand::Check);
        Ok(())
    }

    /// Waits until every transition sent so far is recorded (tests, shutdown).
    pub async fn flush(&self) {
        let (ack, done) = oneshot::channel();
        if self.shared.recorder.send(RecorderMsg::Flush(ack)).is_ok() {
            let _ = self.shared.clock.hold(done).await;
        }
    }

    /// Fires when shutdown begins: the one signal every task of a supervising process ends on.
    pub fn stopping(&self) -> CancellationToken {
        self.shared.shutdown.clone()
    }

    /// Graceful stop: every connection closed and recorded as stopped by shutdown (desired
    /// flags untouched, so the next start restores them), everything flushed to the store. The
    /// writer itself ends with the last handle on this supervisor.
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
}

/// A view with the writer's unstable mark.
fn marked(view: &AccountView, marks: &HashMap<AccountId, Timestamp>) -> AccountView {
    AccountView {
        unstable_until: marks.get(&view.id).copied(),
        ..view.clone()
    }
}

fn operator(input: Input) -> AccountCommand {
    AccountCommand::Do(Box::new(input))
}

/// Least time between two WAL checkpoints while the recorder keeps writing.
const CHECKPOINT_SPACING: Duration = Duration::from_millis(250);

/// Checkpoints the WAL after the recorder wrote (see the store's options: no commit pays for a
/// checkpoint itself), at most every [`CHECKPOINT_SPACING`], until shutdown; closing the store
/// checkpoints the rest. Idle when nothing is written, so paused-clock tests see no timer.
async fn checkpoints(store: Store, clock: Clock, written: Arc<Notify>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = written.notified() => {}
        }
        if let Err(e) = clock.hold(store.checkpoint()).await {
            tracing::warn!(error = %e, "WAL checkpoint failed; the next write retries it");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(CHECKPOINT_SPACING) => {}
        }
    }
}
