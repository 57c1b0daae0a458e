//! The account lifecycle: one pure function, [`next`], decides every transition and effect of an
//! account for every input (a connector event, an operator command, a timer, the health pass,
//! startup, shutdown). The account task only carries decisions out, so every rule here is tested
//! with plain values: no runtime, no socket, no database.
//!
//! [`allowed`] is the table of transitions that can happen at all; the task refuses (and logs)
//! anything else, and the property tests check that no input sequence ever produces one.

use std::time::Duration;

use crate::connector::{LinkCode, LinkMode};
use crate::policy::PolicyConfig;
use crate::policy::breaker::Breaker;
use crate::policy::jitter::Jitter;
use crate::state::{Reason, State, StateKind, TriggeredBy};
use crate::time::Timestamp;

/// What an account's decisions depend on. The task keeps one and replaces it with each
/// decision's [`Decision::next`].
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    pub state: State,
    /// When `state` began.
    pub since: Timestamp,
    /// The operator's intent: should it be running.
    pub desired: bool,
    /// Failed attempts since the last success (drives the backoff ceiling). A connection is a
    /// success once it has lasted `connection.stable_after_ms`; one that drops sooner counts on.
    pub attempt: u32,
    pub breaker: Breaker,
    /// The one pending timer, if any.
    pub wake: Option<Wake>,
    /// The next attempt skips the breaker (an operator override, a ban that expired).
    pub bypass_breaker: bool,
    /// Set while the operator asked to (re)link: attempts ask the connector for codes.
    pub link: Option<LinkMode>,
    /// A connection task is held (it may have ended without saying so; see `Input::Reconcile`).
    pub connection: bool,
    /// This build has a connector for the account's kind.
    pub supported: bool,
    /// The kind must be linked before it can connect (WhatsApp).
    pub links: bool,
    /// The connector keeps no session for it yet (an unlinked WhatsApp number): connecting is
    /// pointless until the operator links it.
    pub needs_link: bool,
}

impl Lifecycle {
    /// An account as loaded from the store, with no connection and no timer.
    pub fn loaded(state: State, since: Timestamp, desired: bool, breaker: Breaker) -> Self {
        Self {
            state,
            since,
            desired,
            attempt: 0,
            breaker,
            wake: None,
            bypass_breaker: false,
            link: None,
            connection: false,
            supported: true,
            links: false,
            needs_link: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeKind {
    /// A backoff or pause is over: ask the breaker and pacing, then connect.
    Retry,
    /// The paced slot has come: connect now.
    Connect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wake {
    pub at: Timestamp,
    pub kind: WakeKind,
}

/// What happened to the account.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// Start it. `by` is the operator, or startup restoring a desired account.
    Start {
        by: TriggeredBy,
    },
    Stop,
    /// Retry now, skipping the backoff wait and an open breaker (still paced).
    ForceRetry,
    ResetBreaker,
    /// Ask the connector for a fresh QR or pair code (a person is waiting: breaker reset).
    RequestLink(LinkMode),
    /// Startup with autorecover off: keep a desired account stopped, saying why.
    HoldStopped,
    /// The account is being removed from the fleet.
    Remove,
    /// Lifeline is shutting down gracefully.
    Shutdown,
    /// Startup: whatever the previous run left active is not active now. `at` dates the end
    /// (the last heartbeat after a crash).
    Recover {
        crashed: bool,
        at: Timestamp,
    },
    /// The connection is live.
    Connected {
        via: Option<String>,
    },
    /// The connection is up; the remote has nothing to join yet.
    Waiting {
        reason: Option<Reason>,
    },
    /// A code to show the operator.
    Link(LinkCode),
    /// The connection is over.
    Ended {
        reason: Reason,
        detail: Option<String>,
    },
    /// A timer fired.
    Wake(WakeKind),
    /// The pacer gave the attempt this slot.
    Paced {
        at: Timestamp,
    },
    /// The health pass (periodic, or the operator's "check all").
    Reconcile {
        by: TriggeredBy,
        /// The connection task is still running.
        live: bool,
        /// Time since the connection last proved liveness.
        since_alive: Option<Duration>,
    },
}

/// A transition to record.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub from: StateKind,
    pub to: State,
    pub by: TriggeredBy,
    pub detail: Option<String>,
    pub at: Timestamp,
}

/// What the account task must do, in order. `Close` always comes before `Connect`, and the
/// task closes before it records the transition, so one account never has two connections.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Close the held connection (asked, then aborted after the close timeout).
    Close,
    /// Open a connection (with the link mode, when linking).
    Connect,
    /// Reserve a connect slot from the fleet's pacer and answer with [`Input::Paced`].
    Pace,
    /// Persist the breaker.
    SaveBreaker,
    /// Delete what the connector keeps for the account (device keys).
    Forget,
    /// Show a link code to the operator.
    ShowLink(LinkCode),
    /// For metrics: a live connection dropped.
    Dropped,
    /// For metrics: a failure opened the breaker.
    BreakerOpened,
    /// For metrics: the attempt waits for its paced slot.
    PacingWait,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub next: Lifecycle,
    pub transition: Option<Transition>,
    pub effects: Vec<Effect>,
}

/// Transitions that can happen at all. A connection's own outcomes (connected, linking, a
/// retry after a failure) only follow a connection attempt; stopping, connecting, pausing and
/// needing the operator can follow anything.
pub fn allowed(from: StateKind, to: StateKind) -> bool {
    use StateKind::*;
    match to {
        Stopped | Connecting | Paused | NeedsOperator => true,
        Connected => matches!(from, Connecting | Linking | Waiting),
        Waiting => matches!(from, Connecting | Linking | Connected | Waiting),
        Linking => matches!(from, Connecting | Connected),
        Backoff => matches!(from, Connecting | Linking | Connected | Waiting),
    }
}

/// Whether startup must close this recorded state (the previous run left it active).
pub fn left_active(state: &State) -> bool {
    matches!(
        state.kind(),
        StateKind::Connected
            | StateKind::Waiting
            | StateKind::Connecting
            | StateKind::Linking
            | StateKind::Backoff
    )
}

/// Reasons that only a person can resolve: never retried by the engine.
pub fn needs_person(reason: &Reason) -> bool {
    matches!(
        reason,
        Reason::LoggedOut
            | Reason::Replaced
            | Reason::Outdated
            | Reason::CredentialsMissing
            | Reason::PairingFailed
            | Reason::QrExpired
            | Reason::Unsupported
            | Reason::NotLinked
            | Reason::NotFound
    )
}

/// Decides what `input` does to the account at `now`. `jitter` spreads backoff delays.
pub fn next(
    current: &Lifecycle,
    input: Input,
    now: Timestamp,
    policy: &PolicyConfig,
    jitter: &mut Jitter,
) -> Decision {
    let mut d = Step {
        lc: current.clone(),
        from: current.state.kind(),
        transition: None,
        effects: Vec::new(),
        now,
        policy,
        jitter,
    };
    // Whatever comes, a connection that has lasted long enough is a success first.
    d.settle();
    match input {
        Input::Start { by } => d.start(by),
        Input::Stop => {
            d.lc.desired = false;
            d.lc.wake = None;
            d.lc.link = None;
            d.close();
            if !matches!(d.lc.state, State::Stopped { .. }) {
                d.go(stopped(Reason::Operator), TriggeredBy::Operator, None);
            }
        }
        Input::ForceRetry => {
            d.lc.desired = true;
            d.lc.bypass_breaker = true;
            d.close();
            d.begin_attempt();
        }
        Input::ResetBreaker => {
            d.lc.breaker.reset();
            d.effects.push(Effect::SaveBreaker);
            let paused_by_breaker = matches!(
                d.lc.state,
                State::Paused {
                    reason: Reason::BreakerOpen,
                    ..
                }
            );
            if paused_by_breaker && d.lc.desired {
                d.lc.attempt = 0;
                d.begin_attempt();
            }
        }
        Input::RequestLink(mode) => {
            d.lc.desired = true;
            d.lc.breaker.reset();
            d.effects.push(Effect::SaveBreaker);
            d.lc.link = Some(mode);
            d.lc.bypass_breaker = true;
            d.lc.attempt = 0;
            d.close();
            d.begin_attempt();
        }
        Input::HoldStopped => {
            d.close();
            // A person is still needed either way: that says more than "autorecover is off".
            if !matches!(d.lc.state, State::NeedsOperator { .. }) {
                d.go(stopped(Reason::AutorecoverOff), TriggeredBy::Startup, None);
            }
        }
        Input::Remove => {
            d.lc.desired = false;
            d.lc.wake = None;
            d.lc.link = None;
            d.close();
            d.effects.push(Effect::Forget);
            if !matches!(d.lc.state, State::Stopped { .. }) {
                d.go(stopped(Reason::Removed), TriggeredBy::Operator, None);
            }
        }
        Input::Shutdown => {
            d.lc.wake = None;
            d.close();
            // Stopped and needs-operator stay as they are; so does a pause, whose end (a ban's
            // expiry, a breaker's cooldown) the next start must still respect.
            if left_active(&d.lc.state) {
                d.go(stopped(Reason::Shutdown), TriggeredBy::Engine, None);
            }
        }
        Input::Recover { crashed, at } => {
            if left_active(&d.lc.state) {
                let (reason, at) = if crashed {
                    (Reason::Crashed, at.max(d.lc.since).min(now))
                } else {
                    (Reason::Shutdown, now)
                };
                d.go_at(stopped(reason), TriggeredBy::Startup, None, at);
            }
        }
        Input::Connected { via } => match d.lc.state.kind() {
            StateKind::Connecting | StateKind::Linking | StateKind::Waiting => {
                // Not a success yet: the retry count and a half-open breaker wait until the
                // connection has lasted (see `Step::settle`), so a flapping account backs off.
                d.lc.link = None;
                d.lc.needs_link = false;
                d.go(State::Connected, TriggeredBy::Engine, via);
            }
            // Told twice: still live, nothing new.
            StateKind::Connected => {}
            _ => d.close(),
        },
        Input::Waiting { reason } => match d.lc.state.kind() {
            StateKind::Connecting
            | StateKind::Linking
            | StateKind::Connected
            | StateKind::Waiting => {
                let to = State::Waiting { reason };
                if d.lc.state != to {
                    d.lc.link = None;
                    d.go(to, TriggeredBy::Engine, None);
                }
            }
            _ => d.close(),
        },
        Input::Link(code) => match d.lc.state.kind() {
            StateKind::Connecting | StateKind::Connected => {
                d.go(State::Linking, TriggeredBy::Engine, None);
                d.effects.push(Effect::ShowLink(code));
            }
            StateKind::Linking => d.effects.push(Effect::ShowLink(code)),
            // A code from a connection that is up and waiting: nothing to link, it stays up.
            StateKind::Waiting => {}
            // A code from a connection this account no longer wants.
            _ => d.close(),
        },
        Input::Ended { reason, detail } => {
            let active = matches!(
                d.lc.state.kind(),
                StateKind::Connecting
                    | StateKind::Linking
                    | StateKind::Connected
                    | StateKind::Waiting
            );
            d.close();
            if active {
                d.failure(reason, detail, TriggeredBy::Engine);
            }
        }
        Input::Wake(kind) => {
            let pending = d.lc.wake.take();
            match pending {
                Some(w) if w.kind == kind && w.at <= now => match kind {
                    WakeKind::Retry => d.begin_attempt(),
                    WakeKind::Connect => d.connect_now(),
                },
                // A timer that was replaced meanwhile, or fired early: the task sets it again.
                _ => d.lc.wake = pending,
            }
        }
        Input::Paced { at } => {
            if !d.lc.desired {
                return d.finish();
            }
            if at > now {
                d.effects.push(Effect::PacingWait);
                d.lc.wake = Some(Wake {
                    at,
                    kind: WakeKind::Connect,
                });
            } else {
                d.connect_now();
            }
        }
        Input::Reconcile {
            by,
            live,
            since_alive,
        } => d.reconcile(by, live, since_alive),
    }
    d.finish()
}

pub(super) fn stopped(reason: Reason) -> State {
    State::Stopped {
        reason: Some(reason),
    }
}

mod step;
#[cfg(test)]
mod tests;

use step::Step;
