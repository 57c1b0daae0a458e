//! How each input is carried through: the rules of [`super::next`], one method per situation.

use std::time::Duration;

use super::{Decision, Effect, Lifecycle, Transition, Wake, WakeKind, needs_person, stopped};
use crate::policy::PolicyConfig;
use crate::policy::backoff::ErrorClass;
use crate::policy::breaker::Admission;
use crate::policy::jitter::Jitter;
use crate::policy::reconcile::{self, Fix, Observation};
use crate::state::{Reason, State, StateKind, TriggeredBy};
use crate::time::Timestamp;

pub(super) struct Step<'a> {
    pub lc: Lifecycle,
    pub from: StateKind,
    pub transition: Option<Transition>,
    pub effects: Vec<Effect>,
    pub now: Timestamp,
    pub policy: &'a PolicyConfig,
    pub jitter: &'a mut Jitter,
}

impl Step<'_> {
    pub(super) fn finish(self) -> Decision {
        Decision {
            next: self.lc,
            transition: self.transition,
            effects: self.effects,
        }
    }

    pub(super) fn go(&mut self, to: State, by: TriggeredBy, detail: Option<String>) {
        let at = self.now;
        self.go_at(to, by, detail, at);
    }

    pub(super) fn go_at(
        &mut self,
        to: State,
        by: TriggeredBy,
        detail: Option<String>,
        at: Timestamp,
    ) {
        debug_assert!(self.transition.is_none(), "one transition per decision");
        self.lc.state = to.clone();
        self.lc.since = at;
        self.transition = Some(Transition {
            from: self.from,
            to,
            by,
            detail,
            at,
        });
    }

    /// A connection that has lasted `connection.stable_after_ms` is a success: the retry count
    /// starts over and a half-open breaker closes. Until then a drop continues the count (and
    /// fails a half-open breaker's trial), so connecting and dropping again and again cannot
    /// reset the backoff or the breaker.
    pub(super) fn settle(&mut self) {
        if !self.lc.state.kind().is_up() {
            return;
        }
        let lasted = (self.now - self.lc.since).to_std().unwrap_or_default();
        if lasted < self.policy.connection.stable_after() {
            return;
        }
        self.lc.attempt = 0;
        let before = self.lc.breaker.clone();
        self.lc.breaker.on_success();
        if self.lc.breaker != before {
            self.effects.push(Effect::SaveBreaker);
        }
    }

    pub(super) fn close(&mut self) {
        if self.lc.connection {
            self.lc.connection = false;
            self.effects.push(Effect::Close);
        }
    }

    pub(super) fn start(&mut self, by: TriggeredBy) {
        self.lc.desired = true;
        let busy = matches!(
            self.lc.state,
            State::Connected | State::Waiting { .. } | State::Connecting | State::Linking
        ) || self.lc.wake.is_some_and(|w| w.kind == WakeKind::Connect);
        if busy {
            return;
        }
        if by == TriggeredBy::Operator {
            // A person asked: an operator start overrides a pause or a needs-operator hold.
            self.lc.bypass_breaker = true;
            self.lc.attempt = 0;
        } else {
            // Restored after a restart: a person is still needed, or a pause still runs.
            if matches!(self.lc.state, State::NeedsOperator { .. }) {
                return;
            }
            if let State::Paused { until, ref reason } = self.lc.state {
                match until {
                    Some(until) if until > self.now => {
                        self.lc.bypass_breaker = matches!(reason, Reason::Banned { .. });
                        self.lc.wake = Some(Wake {
                            at: until,
                            kind: WakeKind::Retry,
                        });
                        return;
                    }
                    // A pause with no known end lasts until a person ends it.
                    None => return,
                    Some(_) => {}
                }
            }
        }
        self.begin_attempt();
    }

    /// Asks the breaker, then the pacer (see [`Input::Paced`]).
    pub(super) fn begin_attempt(&mut self) {
        if !self.lc.desired {
            return;
        }
        let admission = if std::mem::take(&mut self.lc.bypass_breaker) {
            Admission::Allow
        } else {
            let before = self.lc.breaker.clone();
            let a = self.lc.breaker.admit(self.now);
            if self.lc.breaker != before {
                self.effects.push(Effect::SaveBreaker);
            }
            a
        };
        if let Admission::Deny { until } = admission {
            // A connection that died without saying so (the health pass restarts it) goes too.
            self.close();
            self.lc.wake = Some(Wake {
                at: until,
                kind: WakeKind::Retry,
            });
            let already = matches!(
                self.lc.state,
                State::Paused {
                    reason: Reason::BreakerOpen,
                    ..
                }
            );
            if !already {
                self.go(
                    State::Paused {
                        until: Some(until),
                        reason: Reason::BreakerOpen,
                    },
                    TriggeredBy::Engine,
                    None,
                );
            }
            return;
        }
        self.effects.push(Effect::Pace);
    }

    pub(super) fn connect_now(&mut self) {
        if !self.lc.desired {
            return;
        }
        // This attempt supersedes any pending timer; a stale one would later tear it down.
        self.lc.wake = None;
        self.close();
        if !self.lc.supported {
            self.go(
                State::NeedsOperator {
                    reason: Reason::Unsupported,
                },
                TriggeredBy::Engine,
                None,
            );
            return;
        }
        if self.lc.needs_link && self.lc.link.is_none() {
            self.go(
                State::NeedsOperator {
                    reason: Reason::NotLinked,
                },
                TriggeredBy::Engine,
                None,
            );
            return;
        }
        self.go(State::Connecting, TriggeredBy::Engine, None);
        self.lc.connection = true;
        self.effects.push(Effect::Connect);
    }

    pub(super) fn failure(&mut self, reason: Reason, detail: Option<String>, by: TriggeredBy) {
        if !self.lc.desired {
            // Not wanted any more: it simply ends, saying why.
            self.go(stopped(reason), by, detail);
            return;
        }
        if self.lc.state.kind().is_up() {
            self.effects.push(Effect::Dropped);
        }
        let now = self.now;
        if needs_person(&reason) {
            // A person must act; retrying would only fight them (or the phone).
            self.lc.wake = None;
            self.lc.link = None;
            if reason == Reason::LoggedOut && self.lc.links {
                // The connector drops the keys of a logged-out device: it must be linked again.
                self.lc.needs_link = true;
            }
            self.go(State::NeedsOperator { reason }, by, detail);
            return;
        }
        if reason != Reason::RestartRequired && self.lc.link.take().is_some() {
            // A link attempt that failed. Trying again would open a new registration (a new
            // code to scan) that nobody is there to see: the operator asks again, or not.
            // A ban still pauses the account; linking is over either way.
            if !matches!(reason, Reason::Banned { .. }) {
                self.lc.wake = None;
                let detail = Some(match detail {
                    Some(d) => format!("linking ended ({}): {d}", reason.code()),
                    None => format!("linking ended ({})", reason.code()),
                });
                self.go(
                    State::NeedsOperator {
                        reason: Reason::PairingFailed,
                    },
                    by,
                    detail,
                );
                return;
            }
        }
        match reason {
            Reason::RestartRequired => {
                // Asked to reconnect (not a failure): at once, still paced, breaker untouched.
                // After a link this is the server's "now log in": linking is done.
                self.lc.link = None;
                self.lc.needs_link = false;
                self.lc.bypass_breaker = true;
                self.lc.wake = Some(Wake {
                    at: now,
                    kind: WakeKind::Retry,
                });
                self.go(
                    State::Backoff {
                        attempt: 0,
                        retry_at: now,
                        reason,
                    },
                    by,
                    detail,
                );
            }
            Reason::Banned { until } => {
                self.lc.bypass_breaker = true;
                self.lc.wake = until.map(|at| Wake {
                    at,
                    kind: WakeKind::Retry,
                });
                self.go(
                    State::Paused {
                        until,
                        reason: Reason::Banned { until },
                    },
                    by,
                    detail,
                );
            }
            Reason::Blocked => {
                // The service refuses this device: retrying would only confirm the block.
                // Paused with no end, so a person decides (a retry, a reset, another proxy).
                self.lc.wake = None;
                self.go(
                    State::Paused {
                        until: None,
                        reason: Reason::Blocked,
                    },
                    by,
                    detail,
                );
            }
            reason => {
                let opened = self.lc.breaker.on_failure(now, &self.policy.breaker);
                self.effects.push(Effect::SaveBreaker);
                if let Some(until) = opened {
                    self.effects.push(Effect::BreakerOpened);
                    self.lc.wake = Some(Wake {
                        at: until,
                        kind: WakeKind::Retry,
                    });
                    // The failure that opened it, as a code, so the event log keeps it.
                    let detail = Some(match detail {
                        Some(d) => format!("{}: {d}", reason.code()),
                        None => reason.code().to_owned(),
                    });
                    self.go(
                        State::Paused {
                            until: Some(until),
                            reason: Reason::BreakerOpen,
                        },
                        by,
                        detail,
                    );
                    return;
                }
                self.lc.attempt = self.lc.attempt.saturating_add(1);
                let backoff = &self.policy.backoff;
                let delay = backoff.delay(self.lc.attempt, ErrorClass::of(&reason), self.jitter);
                let retry_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
                self.lc.wake = Some(Wake {
                    at: retry_at,
                    kind: WakeKind::Retry,
                });
                self.go(
                    State::Backoff {
                        attempt: self.lc.attempt,
                        retry_at,
                        reason,
                    },
                    by,
                    detail,
                );
            }
        }
    }

    pub(super) fn reconcile(&mut self, by: TriggeredBy, live: bool, since_alive: Option<Duration>) {
        let cfg = &self.policy.connection;
        let obs = Observation {
            desired: self.lc.desired,
            state: &self.lc.state,
            connection_live: self.lc.connection && live,
            since_alive,
        };
        let mut fix = reconcile::decide(&obs, cfg.stale_after());
        // A connector that ignores its own connect timeout must not hold an account forever.
        let stuck_after = cfg.connect_timeout() * 2 + cfg.close_timeout();
        let in_state = (self.now - self.lc.since).to_std().unwrap_or_default();
        if fix == Fix::Nothing && self.lc.state == State::Connecting && in_state > stuck_after {
            fix = Fix::Stale;
        }
        match fix {
            Fix::Nothing => {}
            Fix::Start if self.lc.wake.is_none() => self.begin_attempt(),
            Fix::Start => {}
            Fix::Stop => {
                self.close();
                self.lc.wake = None;
                self.go(stopped(Reason::Operator), by, None);
            }
            Fix::Stale => {
                self.close();
                self.failure(
                    Reason::Stale,
                    Some("no sign of life from the connection".into()),
                    by,
                );
            }
        }
    }
}
