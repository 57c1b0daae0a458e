//! Supervising a fleet's share. On a fleet store each instance runs only the accounts whose
//! leases its keeper holds: an account it acquires is taken up as a start would (its recorded
//! state closed if the previous owner died with it open, then restored through this instance's
//! pacing when it should run); an account it hands over is stopped and recorded as stopped by
//! shutdown, for the next owner to restore; an account whose lease is lost is closed at once
//! and nothing more is written for it (the store's fence refuses it anyway).

use std::collections::HashMap;
use std::sync::Arc;

use lifeline_fleet::LeaseEvent;
use tokio::sync::{mpsc, oneshot};

use super::Supervisor;
use super::account::AccountCommand;
use crate::error::Result;
use crate::model::AccountId;
use crate::policy::autorecover::{self, StartupAction};
use crate::policy::lifecycle::Input;
use crate::store::Fence;

impl Supervisor {
    /// Follows the keeper's lease events until shutdown (or until the keeper stops). `fence`
    /// is the one the supervisor's store writes under.
    pub async fn follow_leases(
        &self,
        mut events: mpsc::UnboundedReceiver<LeaseEvent>,
        fence: Arc<Fence>,
    ) {
        let stop = self.stopping();
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                e = events.recv() => match e {
                    Some(e) => e,
                    None => return,
                },
            };
            // Leases come in rounds: take up a round's accounts with one read of the store.
            let mut batch = vec![first];
            while let Ok(e) = events.try_recv() {
                batch.push(e);
            }
            let mut acquired: Vec<(AccountId, bool)> = Vec::new();
            for event in batch {
                match event {
                    LeaseEvent::Acquired { lease, takeover } => {
                        fence.hold(lease);
                        acquired.push((AccountId(lease.account), takeover));
                    }
                    LeaseEvent::Lost(lease) => {
                        let id = AccountId(lease.account);
                        self.adopt_logged(std::mem::take(&mut acquired)).await;
                        fence.drop_account(id);
                        self.abandon(id);
                        tracing::warn!(
                            account = id.0,
                            epoch = lease.epoch,
                            "lease lost: connection closed"
                        );
                    }
                    LeaseEvent::HandedOver(lease) => {
                        let id = AccountId(lease.account);
                        self.adopt_logged(std::mem::take(&mut acquired)).await;
                        self.hand_over(id).await;
                        fence.drop_account(id);
                        tracing::info!(account = id.0, "handed over to another instance");
                    }
                }
            }
            self.adopt_logged(acquired).await;
        }
    }

    async fn adopt_logged(&self, acquired: Vec<(AccountId, bool)>) {
        if acquired.is_empty() {
            return;
        }
        if let Err(e) = self.adopt(&acquired).await {
            tracing::error!(error = %e, accounts = acquired.len(), "could not take up leased accounts");
        }
    }

    /// Takes up accounts whose leases were just won (`true`: taken over from an owner that
    /// stopped renewing, so what it recorded as running is closed as a crash).
    async fn adopt(&self, acquired: &[(AccountId, bool)]) -> Result<()> {
        let store = &self.shared.store;
        let clock = self.shared.clock;
        let (accounts, breakers, autorecover_on, mut open_sessions) = clock
            .hold(async {
                tokio::try_join!(
                    store.accounts(),
                    store.breakers(),
                    store.autorecover(),
                    store.open_remote_sessions()
                )
            })
            .await?;
        let wanted: HashMap<AccountId, bool> = acquired.iter().copied().collect();
        let mut by_id: HashMap<AccountId, _> = accounts
            .into_iter()
            .filter(|a| wanted.contains_key(&a.id) && self.require(a.id).is_err())
            .map(|a| (a.id, a))
            .collect();
        let plan = autorecover::plan(by_id.values(), autorecover_on);
        let now = clock.now();
        let mut restore = Vec::new();
        for (id, action) in plan {
            let Some(account) = by_id.remove(&id) else {
                continue;
            };
            let breaker = breakers.get(&id).cloned().unwrap_or_default();
            let resume = open_sessions.remove(&id);
            self.spawn_account(account, breaker, resume);
            let crashed = wanted.get(&id).copied().unwrap_or(false);
            self.send(
                id,
                AccountCommand::Do(Box::new(Input::Recover { crashed, at: now })),
            );
            match action {
                StartupAction::Restore => restore.push(id),
                StartupAction::HoldStopped => {
                    self.send(id, AccountCommand::Do(Box::new(Input::HoldStopped)));
                }
                StartupAction::Leave => {}
            }
        }
        tracing::info!(
            accounts = acquired.len(),
            restoring = restore.len(),
            "took up leased accounts"
        );
        self.restore_paced(restore);
        Ok(())
    }

    /// Ends an account's task without writing anything for it.
    fn abandon(&self, id: AccountId) {
        let handle = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(handle) = handle {
            let _ = handle.commands.send(AccountCommand::Abandon);
        }
        self.forget_view(id);
    }

    /// Stops an account for another instance to take up: its stop is recorded first.
    async fn hand_over(&self, id: AccountId) {
        let handle = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        if let Some(handle) = handle {
            let (ack, done) = oneshot::channel();
            if handle.commands.send(AccountCommand::Leave(ack)).is_ok() {
                let _ = done.await;
            }
            self.flush().await;
        }
        self.forget_view(id);
    }

    fn forget_view(&self, id: AccountId) {
        self.shared
            .views
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
    }

    /// The accounts this supervisor runs now, in id order.
    pub fn supervised(&self) -> Vec<AccountId> {
        let mut ids: Vec<AccountId> = self
            .handles
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }
}
