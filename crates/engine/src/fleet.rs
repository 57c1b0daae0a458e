//! The fleet as every face reads it: one view per account (its settings and its live state),
//! the counts by state, the one health verdict (`lifeline health`, HTTP `/health`, the tray)
//! and the canonical order (the order accounts are restored in and listed by).

use std::cmp::Reverse;
use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{Account, AccountId, AccountKind};
use crate::policy::breaker::Breaker;
use crate::policy::lifecycle::Lifecycle;
use crate::state::{State, StateKind};
use crate::time::Timestamp;

/// One account: settings and live state in one value.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AccountView {
    pub id: AccountId,
    pub name: String,
    pub kind: AccountKind,
    /// The endpoint of a WebSocket account.
    pub url: Option<String>,
    pub priority: i64,
    pub country: Option<String>,
    pub proxy_url: Option<String>,
    pub muted: bool,
    /// A notification when a live starts.
    pub notify_live: bool,
    pub desired_running: bool,
    pub state: State,
    #[schema(value_type = String, format = DateTime)]
    pub since: Timestamp,
    /// closed | open | half_open
    pub breaker: &'static str,
    /// Connections restored after a drop, this run.
    pub reconnects: u64,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    /// Set while the account keeps connecting and dropping (`alerts.flap_drops` drops within
    /// `alerts.flap_window_s`): until when it counts as unstable unless it drops again.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub unstable_until: Option<Timestamp>,
    /// Who it is at the remote, once connected (a WhatsApp number's phone number and name).
    pub identity: Option<crate::model::Identity>,
}

impl AccountView {
    /// A live account inside the supervisor.
    pub(crate) fn of(account: &Account, life: &Lifecycle, reconnects: u64) -> Self {
        Self {
            desired_running: life.desired,
            state: life.state.clone(),
            since: life.since,
            breaker: life.breaker.label(),
            reconnects,
            ..Self::stored(account, &Breaker::default())
        }
    }

    /// An account as last recorded (no supervisor in this process).
    pub fn stored(account: &Account, breaker: &Breaker) -> Self {
        Self {
            id: account.id,
            name: account.name.clone(),
            kind: account.kind,
            url: account.url.clone(),
            priority: account.priority,
            country: account.country.clone(),
            proxy_url: account.proxy_url.clone(),
            muted: account.muted,
            notify_live: account.notify_live,
            desired_running: account.desired_running,
            state: account.state.clone(),
            since: account.state_since,
            breaker: breaker.label(),
            reconnects: 0,
            created_at: account.created_at,
            unstable_until: None,
            identity: account.identity.clone(),
        }
    }
}

/// The canonical order: highest priority first, then the oldest. Accounts are restored, listed
/// and shown in it.
pub fn order(priority: i64, id: AccountId) -> (Reverse<i64>, AccountId) {
    (Reverse(priority), id)
}

/// Sorts views into the canonical order.
pub fn sort(views: &mut [AccountView]) {
    views.sort_by_key(|v| order(v.priority, v.id));
}

/// How the fleet is doing, in counts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub total: usize,
    pub by_state: BTreeMap<StateKind, usize>,
    /// Accounts that should be running.
    pub desired: usize,
    /// …of which connected.
    pub desired_connected: usize,
    /// Desired, not connected, and the engine is on it (connecting, backoff, paused, linking).
    pub recovering: usize,
    /// Waiting for a person (new scan, logged out, replaced, …), desired or not.
    pub needs_operator: usize,
}

/// The tray's reading of [`Counts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Every desired account is connected and nobody is needed.
    Healthy,
    /// Some are recovering.
    Degraded,
    /// A person is needed, or at least half of the desired fleet is down.
    Critical,
}

/// Why a fleet is not healthy, for a face to put into words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "snake_case")]
pub enum Unhealthy {
    /// Accounts should run but no supervisor keeps them.
    NotSupervised { desired: usize },
    /// Desired accounts that are not connected.
    Down { down: usize, desired: usize },
}

impl Counts {
    /// Counts (state, desired) pairs.
    pub fn of_states(items: impl IntoIterator<Item = (StateKind, bool)>) -> Self {
        let mut c = Counts {
            total: 0,
            by_state: StateKind::ALL.into_iter().map(|k| (k, 0)).collect(),
            desired: 0,
            desired_connected: 0,
            recovering: 0,
            needs_operator: 0,
        };
        for (kind, desired) in items {
            c.total += 1;
            *c.by_state.entry(kind).or_default() += 1;
            match kind {
                StateKind::NeedsOperator => c.needs_operator += 1,
                k if k.is_up() && desired => c.desired_connected += 1,
                _ if desired => c.recovering += 1,
                _ => {}
            }
            if desired {
                c.desired += 1;
            }
        }
        c
    }

    pub fn of<'a>(views: impl IntoIterator<Item = &'a AccountView>) -> Self {
        Self::of_states(
            views
                .into_iter()
                .map(|v| (v.state.kind(), v.desired_running)),
        )
    }

    /// The verdict: `None` when every desired account is connected and a supervisor keeps them
    /// so (`supervised`: one runs on this data dir; always true inside one).
    pub fn unhealthy(&self, supervised: bool) -> Option<Unhealthy> {
        if !supervised && self.desired > 0 {
            return Some(Unhealthy::NotSupervised {
                desired: self.desired,
            });
        }
        (self.desired_connected < self.desired).then_some(Unhealthy::Down {
            down: self.desired - self.desired_connected,
            desired: self.desired,
        })
    }

    pub fn level(&self) -> Level {
        let down = self.desired - self.desired_connected;
        if self.needs_operator > 0 || (down > 0 && down * 2 >= self.desired) {
            Level::Critical
        } else if down > 0 {
            Level::Degraded
        } else {
            Level::Healthy
        }
    }

    /// Counts by state name, as JSON faces print them.
    pub fn by_state_names(&self) -> BTreeMap<&'static str, usize> {
        self.by_state
            .iter()
            .map(|(k, n)| (k.as_str(), *n))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(items: &[(StateKind, bool)]) -> Counts {
        Counts::of_states(items.iter().copied())
    }

    #[test]
    fn the_verdict_and_the_level_follow_the_fleet() {
        use StateKind::*;
        let all_up = counts(&[(Connected, true), (Connected, true), (Stopped, false)]);
        assert_eq!(all_up.unhealthy(true), None);
        assert_eq!(all_up.level(), Level::Healthy);
        assert_eq!(
            all_up.unhealthy(false),
            Some(Unhealthy::NotSupervised { desired: 2 })
        );
        let one_down = counts(&[(Connected, true), (Connected, true), (Backoff, true)]);
        assert_eq!(
            one_down.unhealthy(true),
            Some(Unhealthy::Down {
                down: 1,
                desired: 3
            })
        );
        assert_eq!(one_down.level(), Level::Degraded);
        assert_eq!(one_down.recovering, 1);
        let half_down = counts(&[(Connected, true), (Paused, true)]);
        assert_eq!(half_down.level(), Level::Critical);
        // An unlinked number is not desired yet, but it needs a person: critical, not unhealthy.
        let unlinked = counts(&[(Connected, true), (NeedsOperator, false)]);
        assert_eq!(unlinked.unhealthy(true), None);
        assert_eq!(unlinked.level(), Level::Critical);
        assert_eq!(unlinked.needs_operator, 1);
        assert_eq!(counts(&[]).level(), Level::Healthy);
        assert_eq!(counts(&[]).unhealthy(false), None);
    }

    #[test]
    fn canonical_order_is_priority_then_age() {
        let mut ids = [(1, 100), (2, 900), (3, 100), (4, 900)];
        ids.sort_by_key(|(id, p)| order(*p, AccountId(*id)));
        let ids: Vec<i64> = ids.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, vec![2, 4, 1, 3]);
    }
}
