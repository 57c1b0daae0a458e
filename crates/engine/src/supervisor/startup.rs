//! The start sequence: every account gets its task with its recorded state; whatever the
//! previous run left active is closed through the lifecycle (dated by the last heartbeat after a
//! crash), so those closes reach subscribers like any other transition; then desired accounts are
//! restored in the canonical order (paced, a few at a time, after a short delay) when autorecover
//! is on, or held stopped with a reason when it is off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;

use super::Supervisor;
use super::account::AccountCommand;
use crate::error::Result;
use crate::model::AccountId;
use crate::policy::autorecover::{self, StartupAction};
use crate::policy::lifecycle::{self, Input};
use crate::state::StateKind;
use crate::store::PreviousRun;
use crate::time::Timestamp;

/// See [`Supervisor::start_reads`].
pub(super) type StartReads = (
    Vec<crate::model::Account>,
    HashMap<AccountId, crate::policy::breaker::Breaker>,
    bool,
    HashMap<AccountId, crate::connector::RemoteSession>,
);

/// Result of the start sequence, for logs and the UI.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StartupReport {
    pub previous_run_crashed: bool,
    pub restoring: usize,
    pub held_stopped: usize,
    pub closed_after_crash: usize,
}

impl Supervisor {
    /// The start sequence (see the module docs): restores the fleet as autorecover says.
    pub async fn startup(
        &self,
        previous: Option<PreviousRun>,
        crashed_at: Option<Timestamp>,
    ) -> Result<StartupReport> {
        self.begin(previous, crashed_at, true).await
    }

    /// The start sequence without restoring anything: a supervisor that runs for one
    /// operation (linking an account from the CLI while no other supervisor runs).
    pub async fn startup_quiet(
        &self,
        previous: Option<PreviousRun>,
        crashed_at: Option<Timestamp>,
    ) -> Result<StartupReport> {
        self.begin(previous, crashed_at, false).await
    }

    async fn begin(
        &self,
        previous: Option<PreviousRun>,
        crashed_at: Option<Timestamp>,
        restore_fleet: bool,
    ) -> Result<StartupReport> {
        let now = self.shared.clock.now();
        let crashed = previous.is_some_and(|p| !p.clean);
        let (accounts, breakers, autorecover_on, mut open_sessions) = self.start_reads().await?;
        let mut report = StartupReport {
            previous_run_crashed: crashed,
            ..StartupReport::default()
        };
        let recover = Input::Recover {
            crashed,
            at: crashed_at.unwrap_or(now),
        };
        let mut by_id: HashMap<AccountId, _> = accounts.into_iter().map(|a| (a.id, a)).collect();
        let plan = autorecover::plan(by_id.values(), autorecover_on);
        let mut restore = Vec::new();
        for (id, action) in plan {
            let Some(account) = by_id.remove(&id) else {
                continue;
            };
            if crashed && lifecycle::left_active(&account.state) {
                report.closed_after_crash += 1;
            }
            let needs_person = account.state.kind() == StateKind::NeedsOperator;
            let breaker = breakers.get(&id).cloned().unwrap_or_default();
            let resume = open_sessions.remove(&id);
            self.spawn_account(account, breaker, resume);
            self.send(id, AccountCommand::Do(Box::new(recover.clone())));
            match action {
                _ if !restore_fleet => {}
                StartupAction::Restore => restore.push(id),
                StartupAction::HoldStopped => {
                    if !needs_person {
                        report.held_stopped += 1;
                    }
                    self.send(id, AccountCommand::Do(Box::new(Input::HoldStopped)));
                }
                StartupAction::Leave => {}
            }
        }
        report.restoring = restore.len();
        self.restore_paced(restore);
        tracing::info!(?report, "startup sequence");
        Ok(report)
    }

    /// What taking accounts up reads from the store: the accounts, their breakers, whether
    /// autorecover is on, and the remote sessions left open. Independent reads, each on its own
    /// pooled connection.
    pub(super) async fn start_reads(&self) -> Result<StartReads> {
        let store = &self.shared.store;
        self.shared
            .clock
            .hold(async {
                tokio::try_join!(
                    store.accounts(),
                    store.breakers(),
                    store.autorecover(),
                    store.open_remote_sessions()
                )
            })
            .await
    }

    /// Starts `restore` in order, after autorecover's start delay, a few at a time (each holds
    /// a slot until its attempt ends), every attempt through the pacing.
    pub(super) fn restore_paced(&self, restore: Vec<AccountId>) {
        if restore.is_empty() {
            return;
        }
        let this = self.clone();
        let policy = self.shared.policy();
        let delay = Duration::from_millis(policy.autorecover.start_delay_ms);
        let concurrency = policy.autorecover.concurrency as usize;
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
                this.send(id, AccountCommand::Restore(Box::new(permit)));
            }
        });
    }
}
