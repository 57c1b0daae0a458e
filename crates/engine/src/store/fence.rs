//! Fenced writes on a fleet store. An instance writes about an account only while it holds the
//! account's lease: every write the supervisor makes (transitions with their history and
//! webhook messages, breakers, identities, remote sessions) first checks, in its own
//! transaction, that the lease is still this instance's at the epoch it was won with, and locks
//! it against a change of owner until the commit. A write for an account whose lease was lost
//! (the process was paused, the network cut, another instance took it over) is refused with
//! [`lifeline_fleet::Error::Stale`] and nothing of it is written.

use std::collections::HashMap;
use std::sync::RwLock;

use lifeline_fleet::{FleetKey, Instance, Lease};

use crate::error::Result;
use crate::model::AccountId;

/// The leases an instance holds, as its writes carry them.
#[derive(Debug)]
pub struct Fence {
    instance: Instance,
    held: RwLock<HashMap<AccountId, i64>>,
    /// This host's fleet key, which seals what connectors keep (WhatsApp device stores) in the
    /// fleet store; `None` on a host that has none.
    key: Option<FleetKey>,
}

impl Fence {
    pub fn new(instance: Instance) -> Self {
        Self {
            instance,
            held: RwLock::new(HashMap::new()),
            key: None,
        }
    }

    /// With this host's fleet key (already checked against the fleet's).
    pub fn with_key(self, key: Option<FleetKey>) -> Self {
        Self { key, ..self }
    }

    pub fn key(&self) -> Option<&FleetKey> {
        self.key.as_ref()
    }

    /// The lease held for `account`, if any.
    pub fn lease(&self, account: AccountId) -> Option<Lease> {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&account)
            .map(|&epoch| Lease {
                account: account.0,
                epoch,
            })
    }

    pub fn instance(&self) -> &Instance {
        &self.instance
    }

    /// Writes about the lease's account carry its epoch from now on.
    pub fn hold(&self, lease: Lease) {
        self.held
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(AccountId(lease.account), lease.epoch);
    }

    /// Writes about `account` are refused from now on.
    pub fn drop_account(&self, account: AccountId) {
        self.held
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&account);
    }

    /// Whether this instance holds `account`'s lease (as far as it knows).
    pub fn holds(&self, account: AccountId) -> bool {
        self.held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&account)
    }

    /// The accounts held, in id order.
    pub fn accounts(&self) -> Vec<AccountId> {
        let mut ids: Vec<AccountId> = self
            .held
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The leases writes about `accounts` are made under; an account not held gets an epoch no
    /// lease has, so the check refuses it.
    fn leases(&self, accounts: &[i64]) -> Vec<Lease> {
        let held = self.held.read().unwrap_or_else(|p| p.into_inner());
        let mut leases: Vec<Lease> = accounts
            .iter()
            .map(|&account| Lease {
                account,
                epoch: held.get(&AccountId(account)).copied().unwrap_or(-1),
            })
            .collect();
        leases.sort_unstable();
        leases.dedup();
        leases
    }
}

/// The fence check inside a write transaction, in each database's terms: SQLite's store is one
/// machine's own and has nothing to check.
pub(crate) trait Fenced {
    async fn fence(&mut self, fence: Option<&Fence>, accounts: &[i64]) -> Result<()>;
}

impl Fenced for sqlx::SqliteConnection {
    async fn fence(&mut self, _fence: Option<&Fence>, _accounts: &[i64]) -> Result<()> {
        Ok(())
    }
}

impl Fenced for sqlx::PgConnection {
    async fn fence(&mut self, fence: Option<&Fence>, accounts: &[i64]) -> Result<()> {
        let Some(fence) = fence else {
            return Ok(());
        };
        let leases = fence.leases(accounts);
        let stale = fence.instance.stale_leases(self, &leases).await?;
        match stale.first() {
            None => Ok(()),
            Some(lease) => Err(lifeline_fleet::Error::Stale {
                account: lease.account,
                epoch: lease.epoch,
            }
            .into()),
        }
    }
}
