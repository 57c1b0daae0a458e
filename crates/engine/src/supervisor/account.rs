//! One task per account. It owns the account's only connection and carries out what the
//! lifecycle ([`crate::policy::lifecycle`]) decides: it closes before it connects (so an account
//! never has two connections), sends each transition to the single writer, keeps the timer the
//! lifecycle asked for, and updates the in-memory view at once. It decides nothing itself.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::recorder::RecorderMsg;
use super::{AccountView, Shared, Update};
use crate::connector::{ConnEvent, ConnectRequest, RemoteSession};
use crate::model::Account;
use crate::policy::breaker::Breaker;
use crate::policy::jitter::Jitter;
use crate::policy::lifecycle::{self, Effect, Input, Lifecycle, Transition, WakeKind};
use crate::state::{Reason, State, TriggeredBy};
use crate::store::TransitionRecord;

#[derive(Debug)]
pub(crate) enum AccountCommand {
    /// A lifecycle input from the operator or the startup sequence. Boxed, as every payload
    /// here: an account's command channel allocates room for 32 commands up front, so each
    /// byte of the largest variant costs every supervised account 32.
    Do(Box<Input>),
    /// Start, holding a restore concurrency slot until this attempt ends.
    Restore(Box<OwnedSemaphorePermit>),
    /// The account's settings changed (name, mute, …).
    Reload(Box<Account>),
    /// Stop, forget and end; acknowledged once the removal is sent to the writer.
    Remove(oneshot::Sender<()>),
    /// Run the health pass now (the operator's "check all").
    Check,
    /// Close the connection and end, recording a stop by shutdown: the account goes to
    /// another instance of the fleet, which restores it. Acknowledged once the stop is sent to
    /// the writer.
    Leave(oneshot::Sender<()>),
    /// Close the connection and end, recording nothing: the lease is gone, and another
    /// instance may already be running the account.
    Abandon,
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
    /// The account's settings, shared with its connection. Its state fields are not kept
    /// current (nothing reads them): the lifecycle holds the live state.
    account: Arc<Account>,
    life: Lifecycle,
    conn: Option<Conn>,
    /// When the lifecycle's timer fires.
    timer: Option<Instant>,
    last_alive: Option<Instant>,
    dropped_at: Option<Instant>,
    reconnects: u64,
    permit: Option<OwnedSemaphorePermit>,
    jitter: Jitter,
    /// The account's session at the remote still open, as last reported (or loaded at start):
    /// handed to the next connection so it can continue it.
    resume: Option<RemoteSession>,
}

impl AccountTask {
    pub(crate) fn new(
        shared: Arc<Shared>,
        account: Account,
        breaker: Breaker,
        resume: Option<RemoteSession>,
    ) -> Self {
        let jitter =
            Jitter::seeded(shared.jitter_seed ^ (account.id.0 as u64).wrapping_mul(0x9E37_79B9));
        let mut life = Lifecycle::loaded(
            account.state.clone(),
            account.state_since,
            account.desired_running,
            breaker,
        );
        let connector = shared.connectors.get(account.kind);
        life.supported = connector.is_some();
        life.links = account.kind.links();
        life.needs_link = connector.is_some_and(|c| c.needs_link(&account));
        let task = Self {
            shared,
            account: Arc::new(account),
            life,
            conn: None,
            timer: None,
            last_alive: None,
            dropped_at: None,
            reconnects: 0,
            permit: None,
            jitter,
            resume,
        };
        task.publish_view();
        task
    }

    pub(crate) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<AccountCommand>) {
        let mut policy = self.shared.policy.subscribe();
        let mut period = policy.borrow_and_update().connection.reconcile_interval();
        let mut reconcile = self.reconcile_timer(period);
        let shutdown = self.shared.shutdown.clone();
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => {
                    self.apply(Input::Shutdown).await;
                    break;
                }
                cmd = commands.recv() => match cmd {
                    None => break,
                    Some(AccountCommand::Remove(ack)) => {
                        self.apply(Input::Remove).await;
                        self.shared.set_proxy(self.account.id, None);
                        let _ = ack.send(());
                        break;
                    }
                    Some(AccountCommand::Leave(ack)) => {
                        self.apply(Input::Shutdown).await;
                        self.shared.set_proxy(self.account.id, None);
                        let _ = ack.send(());
                        break;
                    }
                    Some(AccountCommand::Abandon) => {
                        self.close_conn().await;
                        self.shared.set_proxy(self.account.id, None);
                        break;
                    }
                    Some(AccountCommand::Do(input)) => self.apply(*input).await,
                    Some(AccountCommand::Check) => {
                        let input = self.observe(TriggeredBy::Operator);
                        self.apply(input).await;
                    }
                    Some(AccountCommand::Restore(permit)) => {
                        self.permit = Some(*permit);
                        self.apply(Input::Start { by: TriggeredBy::Startup }).await;
                    }
                    Some(AccountCommand::Reload(account)) => {
                        self.account = Arc::from(account);
                        self.shared.set_proxy(self.account.id, Some(&self.account));
                        self.publish_view();
                    }
                },
                event = next_event(&mut self.conn) => {
                    let input = match event {
                        Some(ConnEvent::Alive) => {
                            self.last_alive = Some(Instant::now());
                            continue;
                        }
                        Some(ConnEvent::Identity(identity)) => {
                            self.learn_identity(identity);
                            continue;
                        }
                        Some(ConnEvent::Connected { via }) => {
                            self.last_alive = Some(Instant::now());
                            Input::Connected { via }
                        }
                        Some(ConnEvent::Waiting { reason }) => {
                            self.last_alive = Some(Instant::now());
                            Input::Waiting { reason }
                        }
                        Some(ConnEvent::Session(session)) => {
                            self.learn_session(*session);
                            continue;
                        }
                        Some(ConnEvent::Link(code)) => Input::Link(*code),
                        Some(ConnEvent::Ended { reason, detail }) => Input::Ended { reason, detail },
                        None => Input::Ended {
                            reason: Reason::Network,
                            detail: Some("the connection task ended without saying why".into()),
                        },
                    };
                    self.apply(input).await;
                }
                _ = sleep_until(self.timer) => {
                    self.timer = None;
                    if let Some(wake) = self.life.wake {
                        self.apply(Input::Wake(wake.kind)).await;
                    }
                }
                Ok(()) = policy.changed() => {
                    // A new health-pass period starts counting now; every other value is read
                    // where it is used.
                    let now = policy.borrow_and_update().connection.reconcile_interval();
                    if now != period {
                        period = now;
                        reconcile = self.reconcile_timer(period);
                    }
                }
                _ = reconcile.tick() => {
                    let input = self.observe(TriggeredBy::Reconcile);
                    self.apply(input).await;
                }
            }
        }
    }

    /// The health pass's timer, spread over the period so a large fleet's passes do not bunch.
    fn reconcile_timer(&mut self, period: Duration) -> tokio::time::Interval {
        let offset = Duration::from_millis(self.jitter.up_to(period.as_millis() as u64));
        let mut timer = tokio::time::interval_at(Instant::now() + period + offset, period);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    }

    /// What the health pass sees of the connection.
    fn observe(&self, by: TriggeredBy) -> Input {
        Input::Reconcile {
            by,
            live: self.conn.as_ref().is_some_and(|c| !c.task.is_finished()),
            since_alive: self.last_alive.map(|t| t.elapsed()),
        }
    }

    /// Runs the lifecycle on `input` and carries out its decisions (a paced attempt answers
    /// with a second input, handled in the same call). Boxed: the account's task future would
    /// otherwise hold room for this one (decision, close timeout) for as long as the account
    /// lives, while it runs only on the rare input.
    fn apply(&mut self, input: Input) -> BoxFuture<'_, ()> {
        Box::pin(self.carry_out(input))
    }

    async fn carry_out(&mut self, input: Input) {
        let mut inputs = VecDeque::from([input]);
        while let Some(input) = inputs.pop_front() {
            let now = self.shared.clock.now();
            let decision = lifecycle::next(
                &self.life,
                input,
                now,
                &self.shared.policy(),
                &mut self.jitter,
            );
            if let Some(t) = &decision.transition
                && !lifecycle::allowed(t.from, t.to.kind())
            {
                tracing::error!(
                    account = self.account.id.0,
                    from = t.from.as_str(),
                    to = t.to.kind().as_str(),
                    "refused a transition the lifecycle table does not allow"
                );
                continue;
            }
            self.life = decision.next;
            if decision.effects.contains(&Effect::Close) {
                self.close_conn().await;
            }
            if let Some(t) = decision.transition {
                self.record(t);
                // Faces that hear of this transition's effects (a link code) see it at once.
                self.publish_view();
            }
            for effect in decision.effects {
                match effect {
                    Effect::Close => {}
                    Effect::Connect => self.connect(),
                    Effect::Pace => {
                        let now_i = Instant::now();
                        let slot = {
                            let mut pacer =
                                self.shared.pacer.lock().unwrap_or_else(|p| p.into_inner());
                            pacer.reserve(now_i)
                        };
                        let wait =
                            chrono::Duration::from_std(slot.saturating_duration_since(now_i))
                                .unwrap_or_default();
                        inputs.push_back(Input::Paced {
                            at: self.shared.clock.now() + wait,
                        });
                    }
                    Effect::SaveBreaker => {
                        let _ = self.shared.recorder.send(RecorderMsg::Breaker {
                            account: self.account.id,
                            breaker: self.life.breaker.clone(),
                        });
                    }
                    Effect::Forget => {
                        if let Some(connector) = self.shared.connectors.get(self.account.kind)
                            && let Err(e) = connector.forget(&self.account)
                        {
                            tracing::warn!(account = self.account.id.0, error = %e, "connector could not forget account");
                        }
                    }
                    Effect::ShowLink(code) => {
                        let _ = self.shared.updates.send(Update::Link {
                            account: self.account.id,
                            code,
                        });
                    }
                    Effect::Dropped => {
                        self.dropped_at = Some(Instant::now());
                        self.shared.metrics.drops.inc();
                    }
                    Effect::BreakerOpened => {
                        self.shared.metrics.breaker_opens.inc();
                    }
                    Effect::PacingWait => {
                        self.shared.metrics.pacing_waits.inc();
                    }
                }
            }
        }
        self.timer = self.life.wake.map(|w| self.shared.clock.instant_at(w.at));
        // A restore slot is held only while its attempt is under way.
        let attempting = self.life.state == State::Connecting
            || self.life.wake.is_some_and(|w| w.kind == WakeKind::Connect);
        if !attempting {
            self.permit = None;
        }
        self.publish_view();
    }

    fn connect(&mut self) {
        let Some(connector) = self.shared.connectors.get(self.account.kind).cloned() else {
            return;
        };
        self.shared.metrics.connect_attempts.inc();
        let (tx, rx) = mpsc::channel(64);
        let cancel = CancellationToken::new();
        let request = ConnectRequest {
            account: self.account.clone(),
            config: self.shared.policy().connection,
            secrets: self.shared.secrets.clone(),
            link: self.life.link.clone(),
            route: self.shared.route(&self.account),
            resume: self.resume.clone(),
        };
        let task = tokio::spawn(connector.run(request, tx, cancel.clone()));
        self.conn = Some(Conn {
            cancel,
            task,
            events: rx,
        });
    }

    /// Single-flight: the old connection is asked to close, then aborted if it overstays.
    async fn close_conn(&mut self) {
        if let Some(mut conn) = self.conn.take() {
            conn.cancel.cancel();
            let timeout = self.shared.policy().connection.close_timeout();
            if tokio::time::timeout(timeout, &mut conn.task).await.is_err() {
                conn.task.abort();
                let _ = conn.task.await;
            }
            // What the connection reported of its remote session as it closed (a live's last
            // counts) is kept, so the next connection or run continues from there.
            while let Ok(event) = conn.events.try_recv() {
                if let ConnEvent::Session(session) = event {
                    self.learn_session(*session);
                }
            }
        }
    }

    fn record(&mut self, t: Transition) {
        if t.to.kind().is_up()
            && let Some(dropped) = self.dropped_at.take()
        {
            self.reconnects += 1;
            self.shared.metrics.reconnects.inc();
            self.shared
                .metrics
                .recovery_seconds
                .observe(dropped.elapsed().as_secs_f64());
        }
        let _ = self.shared.recorder.send(RecorderMsg::Transition {
            record: TransitionRecord {
                account_id: self.account.id,
                from: Some(t.from),
                to: t.to,
                detail: t.detail,
                triggered_by: t.by,
                at: t.at,
            },
            name: self.account.name.clone(),
            muted: self.account.muted,
            notify_live: self.account.notify_live,
        });
    }

    /// Keeps who the account is at the remote: in its view at once, in the store through the
    /// writer, only when it changed.
    fn learn_identity(&mut self, identity: crate::model::Identity) {
        if self.account.identity.as_ref() == Some(&identity) {
            return;
        }
        let mut account = (*self.account).clone();
        account.identity = Some(identity.clone());
        self.account = Arc::new(account);
        let _ = self.shared.recorder.send(RecorderMsg::Identity {
            account: self.account.id,
            identity,
        });
        self.publish_view();
        let _ = self.shared.updates.send(Update::Identity {
            account: self.account.id,
        });
    }

    /// Keeps the remote session the connection reported: the open one for the next
    /// connection, every report for the store through the writer.
    fn learn_session(&mut self, session: RemoteSession) {
        self.resume = session.ended_at.is_none().then(|| session.clone());
        let _ = self.shared.recorder.send(RecorderMsg::RemoteSession {
            account: self.account.id,
            session: Box::new(session),
        });
    }

    fn publish_view(&self) {
        self.shared
            .set_view(AccountView::of(&self.account, &self.life, self.reconnects));
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
