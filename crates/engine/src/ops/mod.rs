//! One operations layer for every face. The CLI, the HTTP API, the tray and the desktop's
//! commands only translate what a person asked into an [`Op`] or a [`Control`] call, and its
//! outcome into words; what an operation does is decided here and in the lifecycle.
//!
//! Two implementations of [`Control`]: the [`Supervisor`](crate::supervisor::Supervisor) itself,
//! for faces in the supervising process (desktop, `serve`'s HTTP API), and [`Queued`], for
//! faces in another process (the CLI's admin commands), which hands each operation to the
//! running supervisor through the store's command table, or — when none runs — applies it
//! offline through the same lifecycle and writer.

mod local;
mod offline;
mod queued;
#[cfg(test)]
mod tests;

use std::future::Future;

use crate::connector::LinkMode;
use crate::error::{InputError, Result};
use crate::model::{Account, AccountChange, AccountId, NewAccount};
use crate::policy::PolicyConfig;
use crate::policy::config::PolicyChange;

pub use queued::{ANSWER_WITHIN, Delivery, Queued};

/// What can be done to one account or to the whole fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Start,
    Stop,
    /// Retry now, skipping the backoff wait and an open breaker (still paced).
    Retry,
    /// Close the circuit breaker.
    Reset,
    /// Run the health pass now.
    Check,
}

impl Action {
    pub const ALL: [Action; 5] = [
        Action::Start,
        Action::Stop,
        Action::Retry,
        Action::Reset,
        Action::Check,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Retry => "retry",
            Action::Reset => "reset",
            Action::Check => "check",
        }
    }

    /// Actions that make sense for one account (the HTTP API's `/accounts/{id}/{action}`).
    pub fn for_one(name: &str) -> Option<Self> {
        [Action::Start, Action::Stop, Action::Retry, Action::Reset]
            .into_iter()
            .find(|a| a.as_str() == name)
    }

    /// Actions that make sense for the fleet, named `start-all`, … (`/fleet/{action}`).
    pub fn for_all(name: &str) -> Option<Self> {
        let name = name.strip_suffix("-all")?;
        [Action::Start, Action::Stop, Action::Reset, Action::Check]
            .into_iter()
            .find(|a| a.as_str() == name)
    }
}

/// One account or all of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    One(AccountId),
    All,
}

/// An operation as it travels through the command table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Act(Action, Target),
    /// Pick up an account added to the store.
    Add(AccountId),
    Remove(AccountId),
    /// An account's settings changed (name, priority, mute): reload them.
    Reload(AccountId),
    Link(AccountId, LinkMode),
    /// The stored policy changed: put it in force.
    Policy,
}

impl Op {
    /// The one account the operation is about (`None`: every account, a new one, the policy).
    pub fn account(&self) -> Option<AccountId> {
        match self {
            Op::Act(_, Target::One(id)) | Op::Remove(id) | Op::Reload(id) | Op::Link(id, _) => {
                Some(*id)
            }
            Op::Act(_, Target::All) | Op::Add(_) | Op::Policy => None,
        }
    }

    /// The command table's columns: name, account, argument.
    pub fn encode(&self) -> (String, Option<AccountId>, Option<String>) {
        match self {
            Op::Act(a, Target::One(id)) => (a.as_str().to_owned(), Some(*id), None),
            Op::Act(a, Target::All) => (format!("{}-all", a.as_str()), None, None),
            Op::Add(id) => ("add".into(), Some(*id), None),
            Op::Remove(id) => ("remove".into(), Some(*id), None),
            Op::Reload(id) => ("reload".into(), Some(*id), None),
            Op::Policy => ("policy".into(), None, None),
            Op::Link(id, LinkMode::Qr) => ("link".into(), Some(*id), None),
            Op::Link(id, LinkMode::PhoneCode { phone }) => {
                ("link".into(), Some(*id), Some(phone.clone()))
            }
        }
    }

    /// Reads a row back; `None` for a row this version does not know.
    pub fn decode(name: &str, account: Option<AccountId>, arg: Option<&str>) -> Option<Self> {
        if let Some(action) = Action::for_all(name) {
            return Some(Op::Act(action, Target::All));
        }
        if name == "policy" {
            return Some(Op::Policy);
        }
        let id = account?;
        Some(match name {
            "add" => Op::Add(id),
            "remove" => Op::Remove(id),
            "reload" => Op::Reload(id),
            "link" => Op::Link(
                id,
                match arg {
                    Some(phone) => LinkMode::PhoneCode {
                        phone: phone.to_owned(),
                    },
                    None => LinkMode::Qr,
                },
            ),
            other => Op::Act(Action::for_one(other)?, Target::One(id)),
        })
    }
}

/// What every face can ask for.
pub trait Control {
    /// Adds an account (validated); a WhatsApp account waits to be linked.
    fn add(&self, new: NewAccount) -> impl Future<Output = Result<Account>> + Send;
    /// Stops it, wipes what its connector keeps (device keys) and takes it out of the fleet;
    /// its history stays.
    fn remove(&self, id: AccountId) -> impl Future<Output = Result<Account>> + Send;
    /// Start, stop, retry, reset or check one account or all; returns how many it applied to.
    fn act(&self, action: Action, target: Target) -> impl Future<Output = Result<usize>> + Send;
    /// Renames, reprioritises or mutes an account; returns it as stored.
    fn update(
        &self,
        id: AccountId,
        change: AccountChange,
    ) -> impl Future<Output = Result<Account>> + Send;
    /// Asks for a QR code or a pair code; the codes are shown by the supervising process (and
    /// written for the CLI to read while it waits, see `supervisor::queue`).
    fn link(&self, id: AccountId, mode: LinkMode) -> impl Future<Output = Result<()>> + Send;
    /// Validates and stores the recovery policy, logging each changed value (old → new), and
    /// puts it in force in the running supervisor at once. Returns what changed.
    fn set_policy(
        &self,
        policy: PolicyConfig,
    ) -> impl Future<Output = Result<Vec<PolicyChange>>> + Send;
}

/// Only accounts of a linking kind can be linked.
pub(crate) fn linkable(account: &Account) -> Result<()> {
    if account.kind.links() {
        Ok(())
    } else {
        Err(InputError::NotLinkable(account.id.0).into())
    }
}
