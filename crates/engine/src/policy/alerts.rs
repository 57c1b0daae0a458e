//! Alert decisions, emitted as values for the faces to show (desktop notifications, logs):
//! a drop alerts only if not recovered within a grace period (blips stay quiet); NeedsOperator
//! alerts at once; an account that keeps dropping (`flap_drops` drops within `flap_window_s`,
//! each recovered within the grace period) alerts once as unstable, not once per drop, and may
//! alert again only after a whole window without a drop; many alerts due together become one
//! summary; muted accounts never alert. An account that asked for it says when its remote's
//! session starts (a creator going live): good news, never part of a summary of trouble.

use crate::error::InputError;
use std::collections::{HashMap, VecDeque};

use chrono::Duration as ChronoDuration;
use serde::{Deserialize, Serialize};

use crate::model::AccountId;
use crate::state::{Reason, State, StateKind};
use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AlertConfig {
    pub grace_s: u64,
    /// This many alerts due at once become one summary.
    pub summary_threshold: u32,
    /// This many drops of a live connection within `flap_window_s` mark an account unstable
    /// (one alert). 0: never.
    pub flap_drops: u32,
    pub flap_window_s: u64,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            grace_s: 60,
            summary_threshold: 5,
            flap_drops: 5,
            flap_window_s: 600,
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
        if self.flap_drops > 1000 {
            return Err(super::invalid(
                "alerts.flap_drops must be at most 1000 (0 turns the unstable alert off)",
            ));
        }
        if self.flap_window_s == 0 || self.flap_window_s > 86_400 {
            return Err(super::invalid(
                "alerts.flap_window_s must be between 1 and 86400",
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
    /// Keeps connecting and dropping: `drops` drops within `window_s`.
    Unstable {
        account: AccountId,
        name: String,
        drops: u32,
        window_s: u64,
    },
    /// The remote's session started: a creator went live (accounts that asked for it).
    WentLive { account: AccountId, name: String },
    /// Many at once: one alert, not a flood.
    Summary {
        down: usize,
        needs_operator: usize,
        unstable: usize,
        /// A few names for the message.
        examples: Vec<String>,
    },
}

impl Alert {
    /// The account it is about (`None` for a summary).
    pub fn account(&self) -> Option<AccountId> {
        match self {
            Alert::Down { account, .. }
            | Alert::NeedsOperator { account, .. }
            | Alert::Unstable { account, .. }
            | Alert::WentLive { account, .. } => Some(*account),
            Alert::Summary { .. } => None,
        }
    }
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
    /// Recent drops of a live connection per account (at most `flap_drops` kept).
    drops: HashMap<AccountId, VecDeque<Timestamp>>,
    /// Accounts already alerted as unstable, with their latest drop.
    unstable: HashMap<AccountId, Timestamp>,
    /// Unstable alerts for the next [`Alerter::due`].
    flapping: Vec<Alert>,
    /// Went-live alerts for the next [`Alerter::due`], apart from any summary.
    news: Vec<Alert>,
}

impl Alerter {
    pub fn new(cfg: AlertConfig) -> Self {
        Self {
            cfg,
            ..Self::default()
        }
    }

    /// Takes new values; drops already pending keep the grace they began with.
    pub fn configure(&mut self, cfg: AlertConfig) {
        self.cfg = cfg;
    }

    /// Counts a drop of a live connection; the one that makes `flap_drops` within the window
    /// alerts, unless the account has alerted as unstable and not been steady since.
    fn count_drop(&mut self, account: AccountId, name: &str, now: Timestamp) {
        let n = self.cfg.flap_drops as usize;
        if n == 0 {
            return;
        }
        let window = ChronoDuration::seconds(self.cfg.flap_window_s as i64);
        let drops = self.drops.entry(account).or_default();
        drops.retain(|t| *t > now - window);
        drops.push_back(now);
        while drops.len() > n {
            drops.pop_front();
        }
        if let Some(last) = self.unstable.get_mut(&account) {
            *last = now;
            return;
        }
        if drops.len() == n {
            self.unstable.insert(account, now);
            self.flapping.push(Alert::Unstable {
                account,
                name: name.to_owned(),
                drops: n as u32,
                window_s: self.cfg.flap_window_s,
            });
        }
    }

    /// Until when `account` counts as unstable (it alerted so and has not been steady for a
    /// whole window since its latest drop).
    pub fn unstable_until(&self, account: AccountId) -> Option<Timestamp> {
        let window = ChronoDuration::seconds(self.cfg.flap_window_s as i64);
        self.unstable.get(&account).map(|last| *last + window)
    }

    /// Feeds one transition. Nothing is emitted here; call [`Alerter::due`].
    #[allow(clippy::too_many_arguments)]
    pub fn observe(
        &mut self,
        account: AccountId,
        name: &str,
        muted: bool,
        notify_live: bool,
        from: StateKind,
        to: &State,
        now: Timestamp,
    ) {
        if notify_live && !muted && from == StateKind::Waiting && *to == State::Connected {
            self.news.push(Alert::WentLive {
                account,
                name: name.to_owned(),
            });
        }
        let dropped = from.is_up()
            && matches!(
                to,
                State::Backoff { .. }
                    | State::Paused { .. }
                    | State::Connecting
                    | State::NeedsOperator { .. }
            );
        if dropped && !muted {
            self.count_drop(account, name, now);
        }
        match to {
            State::Connected
            | State::Waiting { reason: None }
            | State::Stopped { .. }
            | State::Linking => {
                self.pending.remove(&account);
            }
            _ if muted => {
                self.pending.remove(&account);
            }
            // A pause with no end (a blocked device) lasts until a person acts: as urgent.
            State::NeedsOperator { reason }
            | State::Paused {
                until: None,
                reason: reason @ Reason::Blocked,
            } => {
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
            // Held back while up (the service rate-limits the whole kind): said after the grace
            // period like a drop, unless it lifts first.
            State::Backoff { .. }
            | State::Paused { .. }
            | State::Connecting
            | State::Waiting { reason: Some(_) } => {
                if from.is_up() {
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
        // Steady for a whole window: it may alert as unstable again.
        let window = ChronoDuration::seconds(self.cfg.flap_window_s as i64);
        self.unstable.retain(|_, last| *last > now - window);
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
        due.append(&mut self.flapping);
        let news = std::mem::take(&mut self.news);
        if due.len() < self.cfg.summary_threshold as usize {
            due.sort_by_key(|a| match a {
                Alert::Down { account, .. }
                | Alert::NeedsOperator { account, .. }
                | Alert::Unstable { account, .. }
                | Alert::WentLive { account, .. } => (*account, 0),
                Alert::Summary { .. } => (AccountId(0), 1),
            });
            due.extend(news);
            return due;
        }
        let needs_operator = due
            .iter()
            .filter(|a| matches!(a, Alert::NeedsOperator { .. }))
            .count();
        let unstable = due
            .iter()
            .filter(|a| matches!(a, Alert::Unstable { .. }))
            .count();
        let mut examples: Vec<String> = due
            .iter()
            .filter_map(|a| match a {
                Alert::Down { name, .. }
                | Alert::NeedsOperator { name, .. }
                | Alert::Unstable { name, .. }
                | Alert::WentLive { name, .. } => Some(name.clone()),
                Alert::Summary { .. } => None,
            })
            .collect();
        examples.sort();
        examples.dedup();
        examples.truncate(3);
        let mut out = vec![Alert::Summary {
            down: due.len() - needs_operator - unstable,
            needs_operator,
            unstable,
            examples,
        }];
        out.extend(news);
        out
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
            false,
            StateKind::Connected,
            &drop_state(),
            t(0),
        );
        a.observe(
            AccountId(1),
            "A",
            false,
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
            false,
            StateKind::Connected,
            &logged_out,
            t(0),
        );
        a.observe(
            AccountId(2),
            "B",
            true,
            false,
            StateKind::Connected,
            &logged_out,
            t(0),
        );
        a.observe(
            AccountId(3),
            "C",
            true,
            false,
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
                unstable: 0,
                examples: vec!["acct 0000".into(), "acct 0001".into(), "acct 0002".into()],
            }]
        );
    }

    /// `account` connects and drops `n` times, `gap_s` apart, each back at once.
    fn flap(a: &mut Alerter, account: i64, start_s: i64, n: i64, gap_s: i64) {
        for i in 0..n {
            let at = start_s + i * gap_s;
            let name = format!("acct {account}");
            let id = AccountId(account);
            a.observe(
                id,
                &name,
                false,
                false,
                StateKind::Connected,
                &drop_state(),
                t(at),
            );
            a.observe(
                id,
                &name,
                false,
                false,
                StateKind::Backoff,
                &State::Connected,
                t(at + 1),
            );
        }
    }

    #[test]
    fn an_account_that_keeps_dropping_alerts_once_as_unstable() {
        let cfg = AlertConfig::default();
        let mut a = Alerter::new(cfg);
        // Four quick drops: blips, nothing to say yet.
        flap(&mut a, 1, 0, 4, 30);
        assert!(a.due(t(200)).is_empty());
        // The fifth within the window: one alert, though every drop recovered at once.
        flap(&mut a, 1, 200, 1, 30);
        assert_eq!(
            a.due(t(202)),
            vec![Alert::Unstable {
                account: AccountId(1),
                name: "acct 1".into(),
                drops: cfg.flap_drops,
                window_s: cfg.flap_window_s,
            }]
        );
        // It keeps flapping: no alert per drop.
        flap(&mut a, 1, 230, 20, 30);
        assert!(a.due(t(900)).is_empty());
        // Steady for a whole window, then flapping again: it alerts again.
        let last = 230 + 19 * 30;
        let later = last + cfg.flap_window_s as i64 + 1;
        assert!(a.due(t(later)).is_empty());
        flap(&mut a, 1, later, 5, 10);
        assert!(matches!(
            &a.due(t(later + 60))[..],
            [Alert::Unstable { .. }]
        ));
    }

    #[test]
    fn drops_spread_wider_than_the_window_or_muted_never_make_an_account_unstable() {
        let cfg = AlertConfig::default();
        let mut a = Alerter::new(cfg);
        let gap = cfg.flap_window_s as i64 / (cfg.flap_drops as i64 - 1) + 1;
        flap(&mut a, 1, 0, 12, gap);
        assert!(a.due(t(12 * gap)).is_empty());
        let mut a = Alerter::new(cfg);
        for i in 0..10 {
            a.observe(
                AccountId(2),
                "B",
                true,
                false,
                StateKind::Connected,
                &drop_state(),
                t(i),
            );
        }
        assert!(a.due(t(10)).is_empty());
        let mut off = Alerter::new(AlertConfig {
            flap_drops: 0,
            ..cfg
        });
        flap(&mut off, 3, 0, 10, 1);
        assert!(off.due(t(20)).is_empty());
    }

    #[test]
    fn a_live_starting_is_told_only_to_accounts_that_asked_and_never_summarised() {
        let mut a = Alerter::new(AlertConfig {
            summary_threshold: 2,
            ..AlertConfig::default()
        });
        let waiting = StateKind::Waiting;
        // Asked, asked but muted, not asked.
        a.observe(
            AccountId(1),
            "A",
            false,
            true,
            waiting,
            &State::Connected,
            t(0),
        );
        a.observe(
            AccountId(2),
            "B",
            true,
            true,
            waiting,
            &State::Connected,
            t(0),
        );
        a.observe(
            AccountId(3),
            "C",
            false,
            false,
            waiting,
            &State::Connected,
            t(0),
        );
        // Connecting again after a drop is no new live.
        a.observe(
            AccountId(1),
            "A",
            false,
            true,
            StateKind::Connecting,
            &State::Connected,
            t(1),
        );
        // Three accounts need a person at the same time: one summary, the live told apart.
        for id in 4..7 {
            let reason = Reason::LoggedOut;
            let to = State::NeedsOperator { reason };
            a.observe(
                AccountId(id),
                "X",
                false,
                true,
                StateKind::Connected,
                &to,
                t(1),
            );
        }
        let due = a.due(t(1));
        assert_eq!(due.len(), 2, "{due:?}");
        assert!(matches!(
            due[0],
            Alert::Summary {
                needs_operator: 3,
                ..
            }
        ));
        assert_eq!(
            due[1],
            Alert::WentLive {
                account: AccountId(1),
                name: "A".into()
            }
        );
        assert!(a.due(t(2)).is_empty(), "told once");
    }

    #[test]
    fn a_rate_limit_hold_longer_than_the_grace_period_alerts_a_shorter_one_does_not() {
        let mut a = Alerter::new(AlertConfig::default());
        let held = State::Waiting {
            reason: Some(Reason::RateLimited),
        };
        let waiting = State::Waiting { reason: None };
        a.observe(
            AccountId(1),
            "A",
            false,
            false,
            StateKind::Waiting,
            &held,
            t(0),
        );
        a.observe(
            AccountId(1),
            "A",
            false,
            false,
            StateKind::Waiting,
            &waiting,
            t(30),
        );
        assert!(a.due(t(120)).is_empty(), "lifted within the grace period");
        a.observe(
            AccountId(1),
            "A",
            false,
            false,
            StateKind::Waiting,
            &held,
            t(200),
        );
        let due = a.due(t(260));
        assert!(
            matches!(
                &due[..],
                [Alert::Down {
                    reason: Some(Reason::RateLimited),
                    ..
                }]
            ),
            "{due:?}"
        );
    }
}
