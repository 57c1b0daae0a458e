//! One task per account. It owns the account's only connection (single-flight: the old one is
//! closed, with a timeout and then by force, before a new attempt starts), applies connector
//! events and operator commands, and asks the policies what to do next. Decisions are recorded
//! through the single writer; the in-memory view is updated at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::recorder::RecorderMsg;
use super::{AccountView, Shared, Update};
use crate::connector::{ConnEvent, ConnectRequest, LinkMode};
use crate::model::Account;
use crate::policy::backoff::ErrorClass;
use crate::policy::breaker::{Admission, Breaker};
use crate::policy::jitter::Jitter;
use crate::policy::reconcile::{self, Fix, Observation};
use crate::state::{Reason, State, TriggeredBy};
use crate::store::TransitionRecord;

#[derive(Debug)]
pub(crate) enum AccountCommand {
    Start {
        by: TriggeredBy,
        /// Restore concurrency slot, held until this attempt ends.
        permit: Option<OwnedSemaphorePermit>,
    },
    Stop,
    ForceRetry,
    ResetBreaker,
    RequestLink(LinkMode),
    HoldStopped,
    Check,
    Reload(Box<Account>),
    Remove(oneshot::Sender<()>),
}

impl AccountCommand {
    pub(crate) fn operator_start() -> Self {
        AccountCommand::Start {
            by: TriggeredBy::Operator,
            permit: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// Backoff or pause over: ask the breaker and pacing, then connect.
    Retry,
    /// The paced slot has come: connect now.
    Connect,
}

#[derive(Debug)]
struct Conn {
    cancel: CancellationToken,
    task: JoinHandle<()>,
    events: mpsc::Receiver<ConnEvent>,
}

#[derive(Debug)]
pub(crate) struct AccountTask {
    shared: Arc<Shared>,
    account: Account,
    state: State,
    since: crate::time::Timestamp,
    entered: Instant,
    attempt: u32,
    breaker: Breaker,
    conn: Option<Conn>,
    wake: Option<(Instant, Wake)>,
    /// Skip the breaker on the next attempt (operator override).
    bypass_breaker: bool,
    last_alive: Option<Instant>,
    dropped_at: Option<Instant>,
    reconnects: u64,
    permit: Option<OwnedSemaphorePermit>,
    link: Option<LinkMode>,
    jitter: Jitter,
}

impl AccountTask {
    pub(crate) fn new(shared: Arc<Shared>, account: Account, breaker: Breaker) -> Self {
        let jitter =
            Jitter::seeded(shared.jitter_seed ^ (account.id.0 as u64).wrapping_mul(0x9E37_79B9));
        let state = account.state.clone();
        let since = account.state_since;
        let task = Self {
            shared,
            account,
            state,
            since,
            entered: Instant::now(),
            attempt: 0,
            breaker,
            conn: None,
            wake: None,
            bypass_breaker: false,
            last_alive: None,
            dropped_at: None,
            reconnects: 0,
            permit: None,
            link: None,
            jitter,
        };
        task.publish_view();
        task
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<AccountCommand>) {
        let period = self.shared.policy.connection.reconcile_interval();
        // Spread the health passes of a large fleet over the period.
        let offset = Duration::from_millis(self.jitter.up_to(period.as_millis() as u64));
        let mut reconcile = tokio::time::interval_at(Instant::now() + period + offset, period);
        reconcile.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.shared.shutdown.clone();
        loop {
            let wake_at = self.wake.map(|(at, _)| at);
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.close_conn().await;
                    if !matches!(self.state, State::Stopped { .. } | State::NeedsOperator { .. }) {
                        self.transition(
                            State::Stopped { reason: Some(Reason::Shutdown) },
                            TriggeredBy::Engine,
                            None,
                        );
                    }
                    break;
                }
                cmd = commands.recv() => match cmd {
                    None => break,
                    Some(AccountCommand::Remove(ack)) => {
                        self.close_conn().await;
                        if let Some(connector) = self.shared.connectors.get(self.account.kind)
                            && let Err(e) = connector.forget(&self.account)
                        {
                            tracing::warn!(account = self.account.id.0, error = %e, "connector could not forget account");
                        }
                        self.shared.set_proxy(self.account.id, None);
                        let _ = ack.send(());
                        break;
                    }
                    Some(cmd) => self.on_command(cmd).await,
                },
                event = next_event(&mut self.conn) => self.on_event(event).await,
                _ = sleep_until(wake_at) => {
                    if let Some((_, wake)) = self.wake.take() {
                        match wake {
                            Wake::Retry => self.begin_attempt().await,
                            Wake::Connect => self.connect_now().await,
                        }
                    }
                }
                _ = reconcile.tick() => self.reconcile(TriggeredBy::Reconcile).await,
            }
        }
    }

    async fn on_command(&mut self, cmd: AccountCommand) {
        match cmd {
            AccountCommand::Start { by, permit } => {
                self.account.desired_running = true;
                let busy = matches!(
                    self.state,
                    State::Connected | State::Connecting | State::Linking
                ) || matches!(self.wake, Some((_, Wake::Connect)));
                if busy {
                    return;
                }
                self.permit = permit;
                if by != TriggeredBy::Operator {
                    // Restored after a restart: a person is still needed, or a ban still runs.
                    if matches!(self.state, State::NeedsOperator { .. }) {
                        self.permit = None;
                        return;
                    }
                    if let State::Paused {
                        until: Some(until), ..
                    } = self.state
                        && until > self.shared.clock.now()
                    {
                        self.permit = None;
                        self.bypass_breaker = matches!(
                            self.state,
                            State::Paused {
                                reason: Reason::Banned { .. },
                                ..
                            }
                        );
                        self.wake = Some((self.shared.clock.instant_at(until), Wake::Retry));
                        return;
                    }
                }
                if by == TriggeredBy::Operator {
                    // A person asked: an operator start overrides a pause or a needs-operator hold.
                    self.bypass_breaker = true;
                    self.attempt = 0;
                }
                self.begin_attempt().await;
            }
            AccountCommand::Stop => {
                self.account.desired_running = false;
                self.wake = None;
                self.permit = None;
                self.link = None;
                self.close_conn().await;
                if !matches!(self.state, State::Stopped { .. }) {
                    self.transition(
                        State::Stopped {
                            reason: Some(Reason::Operator),
                        },
                        TriggeredBy::Operator,
                        None,
                    );
                }
            }
            AccountCommand::ForceRetry => {
                self.account.desired_running = true;
                self.bypass_breaker = true;
                self.close_conn().await;
                self.begin_attempt().await;
            }
            AccountCommand::ResetBreaker => {
                self.breaker.reset();
                self.persist_breaker();
                self.publish_view();
                let paused_by_breaker = matches!(
                    self.state,
                    State::Paused {
                        reason: Reason::BreakerOpen,
                        ..
                    }
                );
                if paused_by_breaker && self.account.desired_running {
                    self.attempt = 0;
                    self.begin_attempt().await;
                }
            }
            AccountCommand::RequestLink(mode) => {
                self.account.desired_running = true;
                self.breaker.reset();
                self.persist_breaker();
                self.link = Some(mode);
                self.bypass_breaker = true;
                self.attempt = 0;
                self.close_conn().await;
                self.begin_attempt().await;
            }
            AccountCommand::HoldStopped => {
                self.transition(
                    State::Stopped {
                        reason: Some(Reason::AutorecoverOff),
                    },
                    TriggeredBy::Startup,
                    None,
                );
            }
            AccountCommand::Check => self.reconcile(TriggeredBy::Operator).await,
            AccountCommand::Reload(account) => {
                let state = std::mem::replace(&mut self.account, *account);
                self.account.state = state.state;
                self.shared.set_proxy(self.account.id, Some(&self.account));
                self.publish_view();
            }
            AccountCommand::Remove(_) => {}
        }
    }

    /// Asks the breaker, then reserves a paced slot; connects when the slot comes.
    async fn begin_attempt(&mut self) {
        if !self.account.desired_running {
            return;
        }
        let now = self.shared.clock.now();
        let admission = if std::mem::take(&mut self.bypass_breaker) {
            Admission::Allow
        } else {
            let before = self.breaker.clone();
            let a = self.breaker.admit(now);
            if self.breaker != before {
                self.persist_breaker();
            }
            a
        };
        if let Admission::Deny { until } = admission {
            self.permit = None;
            self.wake = Some((self.shared.clock.instant_at(until), Wake::Retry));
            if !matches!(
                self.state,
                State::Paused {
                    reason: Reason::BreakerOpen,
                    ..
                }
            ) {
                self.transition(
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
        let now_i = Instant::now();
        let slot = {
            let mut pacer = self.shared.pacer.lock().unwrap_or_else(|p| p.into_inner());
            pacer.reserve(now_i)
        };
        if slot > now_i {
            self.shared.metrics.pacing_waits.inc();
            self.wake = Some((slot, Wake::Connect));
        } else {
            self.connect_now().await;
        }
    }

    async fn connect_now(&mut self) {
        if !self.account.desired_running {
            return;
        }
        // This attempt supersedes any pending retry; a stale one would later tear it down.
        self.wake = None;
        self.close_conn().await;
        let Some(connector) = self.shared.connectors.get(self.account.kind).cloned() else {
            self.permit = None;
            self.transition(
                State::NeedsOperator {
                    reason: Reason::Unsupported,
                },
                TriggeredBy::Engine,
                Some(format!(
                    "no connector for {} accounts in this build",
                    self.account.kind
                )),
            );
            return;
        };
        self.transition(State::Connecting, TriggeredBy::Engine, None);
        self.shared.metrics.connect_attempts.inc();
        let (tx, rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let request = ConnectRequest {
            account: self.account.clone(),
            config: self.shared.policy.connection,
            secrets: self.shared.secrets.clone(),
            link: self.link.clone(),
            route: self.shared.route(&self.account),
        };
        let task = tokio::spawn(connector.run(request, tx, cancel.clone()));
        self.conn = Some(Conn {
            cancel,
            task,
            events: rx,
        });
    }

    async fn on_event(&mut self, event: Option<ConnEvent>) {
        let event = event.unwrap_or_else(|| ConnEvent::Ended {
            reason: Reason::Network,
            detail: Some("the connection task ended without saying why".into()),
        });
        match event {
            ConnEvent::Connected { via } => {
                self.last_alive = Some(Instant::now());
                self.permit = None;
                self.link = None;
                self.attempt = 0;
                let before = self.breaker.clone();
                self.breaker.on_success();
                if self.breaker != before {
                    self.persist_breaker();
                }
                if let Some(dropped) = self.dropped_at.take() {
                    self.reconnects += 1;
                    self.shared.metrics.reconnects.inc();
                    self.shared
                        .metrics
                        .recovery_seconds
                        .observe(dropped.elapsed().as_secs_f64());
                }
                self.transition(State::Connected, TriggeredBy::Engine, via);
            }
            ConnEvent::Alive => self.last_alive = Some(Instant::now()),
            ConnEvent::Link(code) => {
                self.permit = None;
                if self.state != State::Linking {
                    self.transition(State::Linking, TriggeredBy::Engine, None);
                }
                let _ = self.shared.updates.send(Update::Link {
                    account: self.account.id,
                    code,
                });
            }
            ConnEvent::Ended { reason, detail } => {
                if let Some(conn) = self.conn.take() {
                    // The task is finishing by itself; make sure its socket is gone.
                    finish(conn, self.shared.policy.connection.close_timeout()).await;
                }
                self.on_failure(reason, detail, TriggeredBy::Engine);
            }
        }
    }

    fn on_failure(&mut self, reason: Reason, detail: Option<String>, by: TriggeredBy) {
        self.permit = None;
        if !self.account.desired_running {
            return;
        }
        let now = self.shared.clock.now();
        if self.state == State::Connected {
            self.dropped_at = Some(Instant::now());
            self.shared.metrics.drops.inc();
        }
        match reason {
            Reason::LoggedOut
            | Reason::Replaced
            | Reason::Outdated
            | Reason::CredentialsMissing
            | Reason::PairingFailed
            | Reason::QrExpired
            | Reason::Unsupported => {
                // A person must act; retrying would only fight them (or the phone).
                self.wake = None;
                self.link = None;
                self.transition(State::NeedsOperator { reason }, by, detail);
            }
            Reason::RestartRequired => {
                // Asked to reconnect (not a failure): at once, still paced, breaker untouched.
                // After a link this is the server's "now log in": linking is done.
                self.link = None;
                self.wake = Some((Instant::now(), Wake::Retry));
                self.bypass_breaker = true;
                self.transition(
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
                self.wake = until.map(|u| (self.shared.clock.instant_at(u), Wake::Retry));
                self.bypass_breaker = true;
                self.transition(
                    State::Paused {
                        until,
                        reason: Reason::Banned { until },
                    },
                    by,
                    detail,
                );
            }
            reason => {
                let opened = self.breaker.on_failure(now, &self.shared.policy.breaker);
                self.persist_breaker();
                if let Some(until) = opened {
                    self.shared.metrics.breaker_opens.inc();
                    self.wake = Some((self.shared.clock.instant_at(until), Wake::Retry));
                    let detail = Some(match detail {
                        Some(d) => format!("{}: {d}", reason.describe()),
                        None => reason.describe(),
                    });
                    self.transition(
                        State::Paused {
                            until: Some(until),
                            reason: Reason::BreakerOpen,
                        },
                        by,
                        detail,
                    );
                    return;
                }
                self.attempt = self.attempt.saturating_add(1);
                let delay = self.shared.policy.backoff.delay(
                    self.attempt,
                    ErrorClass::of(&reason),
                    &mut self.jitter,
                );
                let retry_at = now + chrono::Duration::from_std(delay).unwrap_or_default();
                self.wake = Some((Instant::now() + delay, Wake::Retry));
                self.transition(
                    State::Backoff {
                        attempt: self.attempt,
                        retry_at,
                        reason,
                    },
                    by,
                    detail,
                );
            }
        }
    }

    async fn reconcile(&mut self, by: TriggeredBy) {
        let live = self.conn.as_ref().is_some_and(|c| !c.task.is_finished());
        let obs = Observation {
            desired: self.account.desired_running,
            state: &self.state,
            connection_live: live,
            since_alive: self.last_alive.map(|t| t.elapsed()),
        };
        let cfg = &self.shared.policy.connection;
        let mut fix = reconcile::decide(&obs, cfg.stale_after());
        // A connector that ignores its own connect timeout must not hold an account forever.
        let stuck_for = cfg.connect_timeout() * 2 + cfg.close_timeout();
        if fix == Fix::Nothing
            && self.state == State::Connecting
            && self.entered.elapsed() > stuck_for
        {
            fix = Fix::Stale;
        }
        match fix {
            Fix::Nothing => {}
            Fix::Start if self.wake.is_none() => self.begin_attempt().await,
            Fix::Start => {}
            Fix::Stop => {
                self.close_conn().await;
                self.wake = None;
                self.transition(
                    State::Stopped {
                        reason: Some(Reason::Operator),
                    },
                    by,
                    None,
                );
            }
            Fix::Stale => {
                tracing::info!(
                    account = self.account.id.0,
                    "reconcile: connection is dead or silent"
                );
                self.close_conn().await;
                self.on_failure(
                    Reason::Stale,
                    Some("no sign of life from the connection".into()),
                    by,
                );
            }
        }
    }

    /// Single-flight: the old connection is asked to close, then aborted if it overstays.
    async fn close_conn(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.cancel.cancel();
            finish(conn, self.shared.policy.connection.close_timeout()).await;
        }
    }

    fn transition(&mut self, to: State, by: TriggeredBy, detail: Option<String>) {
        let at = self.shared.clock.now();
        let from = self.state.kind();
        self.state = to.clone();
        self.since = at;
        self.entered = Instant::now();
        self.account.state = to.clone();
        self.publish_view();
        let _ = self.shared.recorder.send(RecorderMsg::Transition {
            record: TransitionRecord {
                account_id: self.account.id,
                from: Some(from),
                to,
                detail,
                triggered_by: by,
                at,
            },
            name: self.account.name.clone(),
            muted: self.account.muted,
        });
    }

    fn persist_breaker(&self) {
        let _ = self.shared.recorder.send(RecorderMsg::Breaker {
            account: self.account.id,
            breaker: self.breaker.clone(),
        });
    }

    fn publish_view(&self) {
        self.shared.set_view(AccountView {
            id: self.account.id,
            name: self.account.name.clone(),
            kind: self.account.kind,
            desired_running: self.account.desired_running,
            muted: self.account.muted,
            state: self.state.clone(),
            since: self.since,
            breaker: self.breaker.label(),
            reconnects: self.reconnects,
        });
    }
}

async fn finish(mut conn: Conn, timeout: Duration) {
    if tokio::time::timeout(timeout, &mut conn.task).await.is_err() {
        conn.task.abort();
        let _ = conn.task.await;
    }
}

async fn next_event(conn: &mut Option<Conn>) -> Option<ConnEvent> {
    match conn {
        Some(c) => c.events.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
