//! Supervising a fleet's share. On a fleet store each instance runs only the accounts whose
//! leases its keeper holds: an account it acquires is taken up as a start would (its recorded
//! state closed if the previous owner died with it open, then restored through this instance's
//! pacing when it should run); an account it hands over is stopped and recorded as stopped by
//! shutdown, for the next owner to restore; an account whose lease is lost is closed at once
//! and nothing more is written for it (the store's fence refuses it anyway).
//!
//! What a connector keeps for an account and another host needs to resume it (a WhatsApp
//! number's device keys) travels through the fleet store, sealed with the fleet key: a copy is
//! stored under the lease when the account connects, every few minutes while it is held, and
//! when it is handed over; the instance that takes the account up puts the latest copy in place
//! before connecting, so the number resumes without a new QR scan.

use std::collections::HashMap;
use std::time::Duration;

use lifeline_fleet::LeaseEvent;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::account::AccountCommand;
use super::{Supervisor, Update};
use crate::error::Result;
use crate::model::AccountId;
use crate::policy::autorecover::{self, StartupAction};
use crate::policy::lifecycle::Input;
use crate::state::StateKind;
use crate::store::Fence;

/// How often the device stores of the accounts an instance holds are copied to the fleet store
/// (besides on connecting and on hand-over): what changed since (new pre-keys, ratcheted
/// sessions) is what a takeover loses, and the other side's retries restore it.
pub const DEVICE_SNAPSHOT_EVERY: Duration = Duration::from_secs(5 * 60);

impl Supervisor {
    /// Follows the keeper's lease events until shutdown (or until the keeper stops). The
    /// supervisor's store must be fenced ([`crate::store::Store::fenced`]): the leases won are
    /// held in its fence, so its writes carry them.
    pub async fn follow_leases(&self, mut events: mpsc::UnboundedReceiver<LeaseEvent>) {
        let Some(fence) = self.shared.store.fence() else {
            tracing::error!("lease events for a store with no fence: no account is taken up");
            return;
        };
        let stop = self.stopping();
        let mut updates = self.subscribe();
        let mut periodic = tokio::time::interval_at(
            tokio::time::Instant::now() + DEVICE_SNAPSHOT_EVERY,
            DEVICE_SNAPSHOT_EVERY,
        );
        periodic.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let first = tokio::select! {
                _ = stop.cancelled() => return,
                e = events.recv() => match e {
                    Some(e) => e,
                    None => return,
                },
                u = updates.recv() => {
                    match u {
                        Ok(Update::Transitions(events)) => {
                            for e in events {
                                if e.to.kind() == StateKind::Connected && fence.holds(e.account_id) {
                                    self.save_device_later(e.account_id);
                                }
                            }
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                    continue;
                }
                _ = periodic.tick() => {
                    for id in fence.accounts() {
                        self.save_device_later(id);
                    }
                    continue;
                }
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
                        // The last copy, from the closed store, for the next owner.
                        self.save_device(id).await;
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
        let (accounts, breakers, autorecover_on, mut open_sessions) = self.start_reads().await?;
        let wanted: HashMap<AccountId, bool> = acquired.iter().copied().collect();
        let mut by_id: HashMap<AccountId, _> = accounts
            .into_iter()
            .filter(|a| wanted.contains_key(&a.id) && self.require(a.id).is_err())
            .map(|a| (a.id, a))
            .collect();
        for account in by_id.values() {
            self.restore_device(account).await;
        }
        let plan = autorecover::plan(by_id.values(), autorecover_on);
        let now = self.shared.clock.now();
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

    /// Puts the fleet store's copy of what the account's connector keeps (a WhatsApp device
    /// store) in place before the account connects here. Without a copy, or a fleet key on this
    /// host, the account asks for a link as a new one would.
    async fn restore_device(&self, account: &crate::model::Account) {
        if !account.kind.links() {
            return;
        }
        let store = &self.shared.store;
        let (Some(fleet), Some(key)) = (store.fleet_store(), store.fence().and_then(Fence::key))
        else {
            tracing::warn!(
                account = account.id.0,
                "no fleet key on this host: the account needs a new link here"
            );
            return;
        };
        let Some(connector) = self.shared.connectors.get(account.kind).cloned() else {
            return;
        };
        let snapshot = match fleet.device_store(account.id.0, key).await {
            Ok(Some(s)) => s,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(account = account.id.0, error = %e, "device store not read from the fleet store");
                return;
            }
        };
        let account = account.clone();
        let id = account.id.0;
        let put = tokio::task::spawn_blocking(move || connector.restore(&account, &snapshot)).await;
        match put {
            Ok(Ok(())) => {
                tracing::info!(account = id, "device store restored from the fleet store")
            }
            Ok(Err(e)) => tracing::warn!(account = id, error = %e, "device store not restored"),
            Err(e) => tracing::warn!(account = id, error = %e, "device store restore stopped"),
        }
    }

    /// [`Supervisor::save_device`] on its own task.
    fn save_device_later(&self, id: AccountId) {
        // Only accounts a connector keeps something for (the ones that link), on a host with
        // the fleet key: nothing to read from the store for the others.
        let keyed = self.shared.store.fence().is_some_and(|f| f.key().is_some());
        if !keyed || !self.view(id).is_some_and(|v| v.kind.links()) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move { this.save_device(id).await });
    }

    /// Stores a sealed copy of what the account's connector keeps in the fleet store, under
    /// the account's lease (refused if the lease moved meanwhile).
    async fn save_device(&self, id: AccountId) {
        let store = &self.shared.store;
        let Some(fence) = store.fence() else {
            return;
        };
        let (Some(key), Some(lease)) = (fence.key(), fence.lease(id)) else {
            return;
        };
        let Ok(account) = store.account(id).await else {
            return;
        };
        if !account.kind.links() {
            return;
        }
        let Some(connector) = self.shared.connectors.get(account.kind).cloned() else {
            return;
        };
        let copy = tokio::task::spawn_blocking(move || connector.snapshot(&account)).await;
        let snapshot = match copy {
            Ok(Ok(Some(s))) => s,
            Ok(Ok(None)) => return,
            Ok(Err(e)) => {
                tracing::warn!(account = id.0, error = %e, "device store not copied");
                return;
            }
            Err(e) => {
                tracing::warn!(account = id.0, error = %e, "device store copy stopped");
                return;
            }
        };
        match fence
            .instance()
            .put_device_store(lease, key, &snapshot)
            .await
        {
            Ok(()) => tracing::debug!(account = id.0, "device store copied to the fleet store"),
            Err(e) => tracing::warn!(account = id.0, error = %e, "device store not stored"),
        }
    }

    /// Ends an account's task without writing anything for it.
    fn abandon(&self, id: AccountId) {
        if let Some(handle) = self.take_handle(id) {
            let _ = handle.commands.send(AccountCommand::Abandon);
        }
        self.forget_view(id);
    }

    /// Stops an account for another instance to take up: its stop is recorded first.
    async fn hand_over(&self, id: AccountId) {
        if let Some(handle) = self.take_handle(id) {
            let (ack, done) = oneshot::channel();
            if handle.commands.send(AccountCommand::Leave(ack)).is_ok() {
                let _ = done.await;
            }
            self.flush().await;
        }
        self.forget_view(id);
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
