//! Autorecover: after a restart, desired-running accounts are restored in the canonical order
//! when autorecover is on, or held stopped with a reason when it is off; accounts not desired
//! stay as they are. History is never touched. The supervisor paces the restores (a start delay,
//! at most `concurrency` attempts at once, each through the fleet's pacer).

use crate::error::InputError;
use serde::{Deserialize, Serialize};

use crate::model::{Account, AccountId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AutorecoverConfig {
    /// Wait after startup before the first restore (lets the network and the UI settle).
    pub start_delay_ms: u64,
    /// At most this many restores in flight at once.
    pub concurrency: u32,
}

impl Default for AutorecoverConfig {
    fn default() -> Self {
        Self {
            start_delay_ms: 2_000,
            concurrency: 32,
        }
    }
}

impl AutorecoverConfig {
    pub fn validate(&self) -> Result<(), InputError> {
        if self.concurrency == 0 || self.concurrency > 4096 {
            return Err(super::invalid(
                "autorecover.concurrency must be between 1 and 4096",
            ));
        }
        if self.start_delay_ms > 600_000 {
            return Err(super::invalid(
                "autorecover.start_delay_ms must be at most 600000 (10 minutes)",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartupAction {
    /// Start it (autorecover on, desired running).
    Restore,
    /// Keep it stopped and say why (autorecover off, desired running).
    HoldStopped,
    /// Not desired: nothing to do.
    Leave,
}

/// The startup plan, restores first in priority order (higher first, then oldest id).
pub fn plan<'a>(
    accounts: impl IntoIterator<Item = &'a Account>,
    autorecover: bool,
) -> Vec<(AccountId, StartupAction)> {
    let mut ordered: Vec<&Account> = accounts.into_iter().collect();
    ordered.sort_by_key(|a| crate::fleet::order(a.priority, a.id));
    ordered
        .into_iter()
        .map(|a| {
            let action = match (a.desired_running, autorecover) {
                (false, _) => StartupAction::Leave,
                (true, true) => StartupAction::Restore,
                (true, false) => StartupAction::HoldStopped,
            };
            (a.id, action)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::AccountKind;
    use crate::state::State;

    fn account(id: i64, priority: i64, desired: bool) -> Account {
        Account {
            id: AccountId(id),
            kind: AccountKind::Websocket,
            name: format!("a{id}"),
            url: Some("ws://h/".into()),
            priority,
            country: None,
            proxy_url: None,
            proxy_secret: None,
            headers: vec![],
            muted: false,
            notify_live: false,
            desired_running: desired,
            state: State::INITIAL,
            state_since: Utc::now(),
            created_at: Utc::now(),
            identity: None,
        }
    }

    #[test]
    fn the_autorecover_matrix() {
        let accounts = [account(1, 100, false), account(2, 200, true)];
        // Desired off stays off, whatever autorecover says.
        assert_eq!(
            plan(&accounts, true)[1],
            (AccountId(1), StartupAction::Leave)
        );
        assert_eq!(
            plan(&accounts, false)[1],
            (AccountId(1), StartupAction::Leave)
        );
        // Desired on + autorecover on → restored; + off → held stopped with a reason.
        assert_eq!(
            plan(&accounts, true)[0],
            (AccountId(2), StartupAction::Restore)
        );
        assert_eq!(
            plan(&accounts, false)[0],
            (AccountId(2), StartupAction::HoldStopped)
        );
    }

    #[test]
    fn restores_go_in_priority_order_then_by_age() {
        let accounts = [
            account(1, 10, true),
            account(2, 900, true),
            account(3, 500, true),
            account(4, 900, true),
        ];
        let order: Vec<i64> = plan(&accounts, true).iter().map(|(id, _)| id.0).collect();
        assert_eq!(order, [2, 4, 3, 1]);
    }
}
