//! Alert decisions, emitted as values for the faces to show (desktop notifications, logs):
//! a drop alerts only if not recovered within a grace period (blips stay quiet); NeedsOperator
//! alerts at once; many alerts due together become one summary; muted accounts never alert.

use crate::error::InputError;
use std::collections::HashMap;

use chrono::Duration as ChronoDuration;
use serde::{Deserialize, Serialize};

use crate::model::AccountId;
use crate::state::{Reason, State, StateKind};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    pub grace_s: u64,
    /// This many alerts due at once become one summary.
    pub summary_threshold: u32,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            grace_s: 60,
            summary_threshold: 5,
        }
    }
}

impl AlertConfig {
    pub fn validate(&self) -> Result<(), InputError> {
        if self.grace_s > 86_400 {
            return Err(super::invalid("alerts.grace_s must be at most 86400"));
        }
        if self.summary_threshold < 2 {
            return Err(super::invalid(
                "alerts.summary_threshold must be at least 2",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Alert {
    /// Dropped and still not back after the grace period.
    Down {
        account: AccountId,
        name: String,
        reason: Option<Reason>,
        since: Timestamp,
    },
    /// Needs a person (logged out, replaced, outdated, …).
    NeedsOperator {
        account: AccountId,
        name: String,
        reason: Reason,
    },
    /// Many at once: one alert, not a flood.
    Summary {
        down: usize,
        needs_operator: usize,
        /// A few names for the message.
        examples: Vec<String>,
    },
}

#[derive(Debug, Clone)]
struct Pending {
    alert: Alert,
    due: Timestamp,
}

#[derive(Debug, Clone, Default)]
pub struct Alerter {
    cfg: AlertConfig,
    pending: HashMap<AccountId, Pending>,
}

impl Alerter {
    pub fn new(cfg: AlertConfig) -> Self {
        Self {
            cfg,
            pending: HashMap::new(),
        }
    }

    /// Feeds one transition. Nothing is emitted here; call [`Alerter::due`].
    pub fn observe(
        &mut self,
        account: AccountId,
        name: &str,
        muted: bool,
        from: StateKind,
        to: &State,
        now: Timestamp,
    ) {
        match to {
            State::Connected | State::Stopped { .. } | State::Linking => {
                self.pending.remove(&account);
            }
            _ if muted => {
                self.pending.remove(&account);
            }
            State::NeedsOperator { reason } => {
                self.pending.insert(
                    account,
                    Pending {
                        alert: Alert::NeedsOperator {
                            account,
                            name: name.to_owned(),
                            reason: reason.clone(),
                        },
                        due: now,
                    },
                );
            }
            State::Backoff { .. } | State::Paused { .. } | State::Connecting => {
                if from == StateKind::Connected {
                    self.pending.insert(
                        account,
                        Pending {
                            alert: Alert::Down {
                                account,
                                name: name.to_owned(),
                                reason: to.reason().cloned(),
                                since: now,
                            },
                            due: now + ChronoDuration::seconds(self.cfg.grace_s as i64),
                        },
                    );
                }
            }
        }
    }

    /// Alerts due at `now`, summarised when there are many.
    pub fn due(&mut self, now: Timestamp) -> Vec<Alert> {
        let due_ids: Vec<AccountId> = self
            .pending
            .iter()
            .filter(|(_, p)| p.due <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut due: Vec<Alert> = due_ids
            .iter()
            .filter_map(|id| self.pending.remove(id))
            .map(|p| p.alert)
            .collect();
        if due.len() < self.cfg.summary_threshold as usize {
            due.sort_by_key(|a| match a {
                Alert::Down { account, .. } | Alert::NeedsOperator { account, .. } => *account,
                Alert::Summary { .. } => AccountId(0),
            });
            return due;
        }
        let needs_operator = due
            .iter()
            .filter(|a| matches!(a, Alert::NeedsOperator { .. }))
            .count();
        let mut examples: Vec<String> = due
            .iter()
            .filter_map(|a| match a {
                Alert::Down { name, .. } | Alert::NeedsOperator { name, .. } => Some(name.clone()),
                Alert::Summary { .. } => None,
            })
            .collect();
        examples.sort();
        examples.truncate(3);
        vec![Alert::Summary {
            down: due.len() - needs_operator,
            needs_operator,
            examples,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_time;

    fn t(s: i64) -> Timestamp {
        parse_time("2026-11-01T00:00:00Z").expect("time") + ChronoDuration::seconds(s)
    }

    fn drop_state() -> State {
        State::Backoff {
            attempt: 1,
            retry_at: t(1),
            reason: Reason::Stalled,
        }
    }

    #[test]
    fn a_blip_recovered_within_grace_stays_quiet() {
        let mut a = Alerter::new(AlertConfig::default());
        a.observe(
            AccountId(1),
            "A",
            false,
            StateKind::Connected,
            &drop_state(),
            t(0),
        );
        a.observe(
            AccountId(1),
            "A",
            false,
            StateKind::Backoff,
            &State::Connected,
            t(30),
        );
        assert!(a.due(t(120)).is_empty());
    }

    #[test]
    fn a_drop_past_grace_alerts_once() {
        let mut a = Alerter::new(AlertConfig::default());
        a.observe(
            AccountId(1),
            "A",
            false,
            StateKind::Connected,
            &drop_state(),
            t(0),
        );
        assert!(a.due(t(59)).is_empty());
        let alerts = a.due(t(60));
        assert!(matches!(&alerts[..], [Alert::Down { name, .. }] if name == "A"));
        assert!(a.due(t(120)).is_empty(), "only once");
    }

    #[test]
    fn needs_operator_alerts_at_once_and_muted_accounts_never() {
        let mut a = Alerter::new(AlertConfig::default());
        let logged_out = State::NeedsOperator {
            reason: Reason::LoggedOut,
        };
        a.observe(
            AccountId(1),
            "A",
            false,
            StateKind::Connected,
            &logged_out,
            t(0),
        );
        a.observe(
            AccountId(2),
            "B",
            true,
            StateKind::Connected,
            &logged_out,
            t(0),
        );
        a.observe(
            AccountId(3),
            "C",
            true,
            StateKind::Connected,
            &drop_state(),
            t(0),
        );
        let now = a.due(t(0));
        assert!(matches!(&now[..], [Alert::NeedsOperator { name, .. }] if name == "A"));
        assert!(a.due(t(600)).is_empty());
    }

    #[test]
    fn a_mass_drop_becomes_one_summary() {
        let mut a = Alerter::new(AlertConfig::default());
        for i in 0..1000 {
            a.observe(
                AccountId(i),
                &format!("acct {i:04}"),
                false,
                StateKind::Connected,
                &drop_state(),
                t(0),
            );
        }
        let alerts = a.due(t(61));
        assert_eq!(
            alerts,
            vec![Alert::Summary {
                down: 1000,
                needs_operator: 0,
                examples: vec!["acct 0000".into(), "acct 0001".into(), "acct 0002".into()],
            }]
        );
    }
}
