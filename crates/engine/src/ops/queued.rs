//! [`Control`] from another process (the CLI's admin commands). With a supervisor running on the
//! data dir, each operation goes into the store's command table and the call waits for the
//! supervisor's answer (it polls the table a few times a second). With none running, the call
//! takes the data dir's supervisor lock, so none can start meanwhile, and applies the operation
//! offline. A supervisor that stops before answering is noticed and the operation is applied
//! offline instead, so nothing asked for is lost.
//!
//! On a fleet store the supervisors are the fleet's instances, on any host: an operation about
//! one account goes to the command table when an instance holds its lease (that instance
//! answers), one about every account when any instance is alive (each applies it to its own;
//! the first answer stands). With no instance to answer, it is applied offline in the store,
//! where the instance that takes the account up next reads it.

use std::time::Duration;

use super::{Action, Control, Op, Target, linkable, offline};
use crate::connector::{Connectors, LinkMode};
use crate::datadir::DataDir;
use crate::error::{Error, InputError, Result};
use crate::model::{Account, AccountChange, AccountId, NewAccount};
use crate::policy::PolicyConfig;
use crate::policy::config::PolicyChange;
use crate::policy::lifecycle::Input;
use crate::state::TriggeredBy;
use crate::store::{CommandOutcome, Store};

/// How long the CLI waits for a running supervisor to answer.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(50);
/// An instance of a fleet counts as alive when its last heartbeat is this recent (instances
/// heartbeat every third of their lease TTL, 15 s by default).
const FLEET_ALIVE: Duration = Duration::from_secs(60);

/// Where an operation was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// By the running supervisor (its pid when known).
    Supervisor(Option<u32>),
    /// Here, with no supervisor running: the next one acts on it.
    Offline,
}

#[derive(Debug, Clone)]
pub struct Queued {
    dir: DataDir,
    store: Store,
    connectors: Connectors,
    /// Where the last operation went.
    last: std::sync::Arc<std::sync::Mutex<Option<Delivery>>>,
}

impl Queued {
    /// `connectors` let offline removal wipe what a connector keeps (device keys).
    pub fn new(dir: DataDir, store: Store, connectors: Connectors) -> Self {
        Self {
            dir,
            store,
            connectors,
            last: Default::default(),
        }
    }

    /// Where the last operation went, once one was delivered.
    pub fn last_delivery(&self) -> Option<Delivery> {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands `op` to the running supervisor and waits for its answer, or applies it offline.
    pub async fn deliver(&self, op: Op) -> Result<Delivery> {
        let delivery = self.deliver_once(op).await?;
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(delivery);
        Ok(delivery)
    }

    async fn deliver_once(&self, op: Op) -> Result<Delivery> {
        if self.store.is_fleet() {
            loop {
                if !self.answered(&op).await? {
                    self.offline(&op).await?;
                    return Ok(Delivery::Offline);
                }
                if let Some(d) = self.through_supervisor(&op, None).await? {
                    return Ok(d);
                }
            }
        }
        loop {
            match self.dir.lock() {
                Ok(_lock) => {
                    self.offline(&op).await?;
                    return Ok(Delivery::Offline);
                }
                Err(Error::DataDirLocked { pid, .. }) => {
                    if let Some(d) = self.through_supervisor(&op, pid).await? {
                        return Ok(d);
                    }
                    // The supervisor went away before answering: apply it here.
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `Ok(None)`: the supervisor stopped without answering (the command is withdrawn).
    async fn through_supervisor(&self, op: &Op, pid: Option<u32>) -> Result<Option<Delivery>> {
        let id = self.store.enqueue(op, chrono::Utc::now()).await?;
        let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
        loop {
            match self.store.command_outcome(id).await? {
                Some(CommandOutcome::Done) => return Ok(Some(Delivery::Supervisor(pid))),
                Some(CommandOutcome::Failed { message, input }) => {
                    return Err(if input {
                        InputError::Refused(message).into()
                    } else {
                        Error::Supervisor(message)
                    });
                }
                None => {}
            }
            if !self.answered(op).await? {
                let withdrawn = CommandOutcome::Failed {
                    message: "withdrawn: the supervisor stopped before answering".into(),
                    input: false,
                };
                if self.store.answer_command(id, &withdrawn).await? {
                    return Ok(None);
                }
                continue;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::SupervisorSilent {
                    pid,
                    waited_s: ANSWER_WITHIN.as_secs(),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether a supervisor is there to answer `op`: the data dir's, or on a fleet store the
    /// instance holding the account's lease (any live instance for an operation on all).
    async fn answered(&self, op: &Op) -> Result<bool> {
        let Some(fleet) = self.store.fleet_store() else {
            return Ok(self.dir.supervisor().is_some());
        };
        Ok(match op.account() {
            Some(id) => fleet.holder(id.0).await?.is_some(),
            None => fleet.totals(FLEET_ALIVE).await?.live_instances > 0,
        })
    }

    async fn offline(&self, op: &Op) -> Result<()> {
        let (store, connectors) = (&self.store, &self.connectors);
        match op {
            Op::Act(action, target) => {
                let ids = match target {
                    Target::One(id) => vec![*id],
                    Target::All => store.accounts().await?.iter().map(|a| a.id).collect(),
                };
                for id in ids {
                    let input = match action {
                        Action::Start => Input::Start {
                            by: TriggeredBy::Operator,
                        },
                        Action::Stop => Input::Stop,
                        Action::Retry => Input::ForceRetry,
                        Action::Reset => Input::ResetBreaker,
                        // No supervisor: no connection to check.
                        Action::Check => continue,
                    };
                    offline::apply(store, connectors, id, input).await?;
                }
            }
            Op::Remove(id) => {
                offline::apply(store, connectors, *id, Input::Remove).await?;
                store.mark_removed(*id).await?;
            }
            // The next supervisor reads settings from the store.
            Op::Add(_) | Op::Reload(_) | Op::Policy => {}
            Op::Link(..) => return Err(Error::NeedsSupervisor),
        }
        Ok(())
    }

    async fn count(&self, target: Target) -> Result<usize> {
        Ok(match target {
            Target::One(id) => {
                self.store.account(id).await?;
                1
            }
            Target::All => self.store.accounts().await?.len(),
        })
    }
}

impl Control for Queued {
    async fn add(&self, new: NewAccount) -> Result<Account> {
        let account = self.store.add_account(new).await?;
        self.deliver(Op::Add(account.id)).await?;
        Ok(account)
    }

    async fn remove(&self, id: AccountId) -> Result<Account> {
        let account = self.store.account(id).await?;
        self.deliver(Op::Remove(id)).await?;
        Ok(account)
    }

    async fn act(&self, action: Action, target: Target) -> Result<usize> {
        let n = self.count(target).await?;
        self.deliver(Op::Act(action, target)).await?;
        Ok(n)
    }

    async fn update(&self, id: AccountId, change: AccountChange) -> Result<Account> {
        let account = self.store.update_account(id, change).await?;
        self.deliver(Op::Reload(id)).await?;
        Ok(account)
    }

    async fn link(&self, id: AccountId, mode: LinkMode) -> Result<()> {
        linkable(&self.store.account(id).await?)?;
        self.deliver(Op::Link(id, mode)).await?;
        Ok(())
    }

    async fn set_policy(&self, policy: PolicyConfig) -> Result<Vec<PolicyChange>> {
        let changes = self.store.set_policy(&policy).await?;
        if !changes.is_empty() {
            self.deliver(Op::Policy).await?;
        }
        Ok(changes)
    }
}
