//! The single writer: every transition and breaker change goes through here, so a mass drop is a
//! few transactions instead of a thousand competing writers, and subscribers get one coalesced
//! update per batch instead of a flood. Alert decisions are taken here too, on recorded facts.
//! [`write_transitions`] and [`write_breaker`] are the only way account state reaches the
//! store; the offline operations (no supervisor running) use them too.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::Update;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::AccountId;
use crate::policy::PolicyConfig;
use crate::policy::alerts::Alerter;
use crate::policy::breaker::Breaker;
use crate::store::{Store, TransitionRecord};
use crate::time::Timestamp;
use crate::webhook::Attempt;

/// Most records written in one transaction.
const MAX_BATCH: usize = 2048;

/// Answers a sender of webhook attempts: each endpoint's failing streak start afterwards.
pub(crate) type AttemptsAck = oneshot::Sender<Result<Vec<Option<Timestamp>>>>;

#[derive(Debug)]
pub(crate) enum RecorderMsg {
    Transition {
        record: TransitionRecord,
        name: String,
        muted: bool,
        /// The account asked to hear when its live starts.
        notify_live: bool,
    },
    Breaker {
        account: AccountId,
        breaker: Breaker,
    },
    /// Who an account is at the remote.
    Identity {
        account: AccountId,
        identity: crate::model::Identity,
    },
    /// A session at the remote began, changed or ended.
    RemoteSession {
        account: AccountId,
        session: Box<crate::connector::RemoteSession>,
    },
    /// Webhook delivery attempts, written after the batch's transitions; answered with each
    /// endpoint's failing streak start.
    WebhookAttempts {
        attempts: Vec<Attempt>,
        ack: AttemptsAck,
    },
    /// Acknowledged once everything sent before it is written.
    Flush(oneshot::Sender<()>),
}

pub(crate) async fn run(
    store: Store,
    clock: Clock,
    mut policy: tokio::sync::watch::Receiver<Arc<PolicyConfig>>,
    mut rx: mpsc::UnboundedReceiver<RecorderMsg>,
    updates: broadcast::Sender<Update>,
    unstable: Arc<RwLock<HashMap<AccountId, Timestamp>>>,
    written: Arc<tokio::sync::Notify>,
) {
    let mut alerter = Alerter::new(policy.borrow_and_update().alerts);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let first = tokio::select! {
            msg = rx.recv() => match msg {
                Some(m) => m,
                None => break,
            },
            _ = tick.tick() => {
                if policy.has_changed().unwrap_or(false) {
                    alerter.configure(policy.borrow_and_update().alerts);
                }
                emit_alerts(&mut alerter, &store, &clock, &updates).await;
                continue;
            }
        };
        // An operator's new alert values count from this batch (or tick) on.
        if policy.has_changed().unwrap_or(false) {
            alerter.configure(policy.borrow_and_update().alerts);
        }
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut transitions = Vec::new();
        let mut meta = Vec::new();
        let mut flushes = Vec::new();
        let mut attempts = Vec::new();
        let mut remote = Vec::new();
        for msg in batch {
            match msg {
                RecorderMsg::Transition {
                    record,
                    name,
                    muted,
                    notify_live,
                } => {
                    meta.push((name, muted, notify_live));
                    transitions.push(record);
                }
                RecorderMsg::Breaker { account, breaker } => {
                    write_breaker(&store, &clock, account, &breaker).await;
                }
                RecorderMsg::Identity { account, identity } => {
                    if let Err(e) = persist(&clock, "an identity", || {
                        store.set_identity(account, &identity)
                    })
                    .await
                    {
                        tracing::warn!(account = account.0, error = %e, "identity not recorded");
                    }
                }
                RecorderMsg::RemoteSession { account, session } => {
                    // Only the latest report of each session in the batch is worth writing.
                    remote.retain(|(a, s): &(AccountId, crate::connector::RemoteSession)| {
                        *a != account || s.key != session.key
                    });
                    remote.push((account, *session));
                }
                RecorderMsg::WebhookAttempts { attempts: a, ack } => attempts.push((a, ack)),
                RecorderMsg::Flush(ack) => flushes.push(ack),
            }
        }
        if !transitions.is_empty() {
            let events = write_transitions(&store, &clock, transitions).await;
            for (event, (name, muted, notify_live)) in events.iter().zip(meta) {
                if let Some(event) = event {
                    alerter.observe(
                        event.account_id,
                        &name,
                        muted,
                        notify_live,
                        event.from,
                        &event.to,
                        event.at,
                    );
                }
            }
            // Views say who is unstable before subscribers hear of this batch.
            {
                let mut marks = unstable.write().unwrap_or_else(|p| p.into_inner());
                for event in events.iter().flatten() {
                    let id = event.account_id;
                    match alerter.unstable_until(id) {
                        Some(until) => marks.insert(id, until),
                        None => marks.remove(&id),
                    };
                }
            }
            let events: Vec<_> = events.into_iter().flatten().collect();
            if !events.is_empty() {
                let _ = updates.send(Update::Transitions(events));
            }
            emit_alerts(&mut alerter, &store, &clock, &updates).await;
        }
        if !remote.is_empty()
            && let Err(e) = persist(&clock, "remote sessions", || {
                store.save_remote_sessions(&remote, clock.now())
            })
            .await
        {
            tracing::warn!(error = %e, sessions = remote.len(), "remote sessions not recorded");
        }
        if !attempts.is_empty() {
            write_attempts(&store, &clock, attempts).await;
        }
        // The WAL grew: the checkpoint task copies it into the database file, off this loop.
        written.notify_one();
        for ack in flushes {
            let _ = ack.send(());
        }
    }
}

/// Every webhook attempt of a batch in one transaction; each sender gets its own answers.
async fn write_attempts(store: &Store, clock: &Clock, batch: Vec<(Vec<Attempt>, AttemptsAck)>) {
    let all: Vec<Attempt> = batch.iter().flat_map(|(a, _)| a.iter().cloned()).collect();
    match persist(clock, "webhook attempts", || store.record_attempts(&all)).await {
        Ok(mut failing) => {
            for (attempts, ack) in batch.into_iter().rev() {
                let mine = failing.split_off(failing.len().saturating_sub(attempts.len()));
                let _ = ack.send(Ok(mine));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "webhook attempts not recorded");
            for (_, ack) in batch {
                let _ = ack.send(Err(Error::Webhook(format!(
                    "Webhook attempts were not recorded: {e}"
                ))));
            }
        }
    }
}

/// Tells subscribers of the alerts now due and queues them for webhooks (an alert is decided
/// from events already recorded; losing one to a crash right here loses no history).
async fn emit_alerts(
    alerter: &mut Alerter,
    store: &Store,
    clock: &Clock,
    updates: &broadcast::Sender<Update>,
) {
    let now = clock.now();
    let due = alerter.due(now);
    if due.is_empty() {
        return;
    }
    for alert in &due {
        let Ok(data) = serde_json::to_value(alert) else {
            continue;
        };
        let kind = format!("alert.{}", data["kind"].as_str().unwrap_or("raised"));
        if let Err(e) = persist(clock, "an alert", || {
            store.enqueue_webhook_message("alert", &kind, alert.account(), &data, now)
        })
        .await
        {
            tracing::warn!(error = %e, "alert not queued for webhooks");
        }
    }
    let _ = updates.send(Update::Alerts(due));
}

/// Persists a breaker (a failure here is logged: the breaker still holds in memory).
pub(crate) async fn write_breaker(
    store: &Store,
    clock: &Clock,
    account: AccountId,
    breaker: &Breaker,
) {
    if let Err(e) = persist(clock, "a breaker", || {
        store.save_breaker(account, breaker, clock.now())
    })
    .await
    {
        tracing::error!(account = account.0, error = %e, "could not persist breaker");
    }
}

/// Writes a batch in one transaction; if that fails (say, one account was just removed), falls
/// back to one transaction per record so the others are not lost.
pub(crate) async fn write_transitions(
    store: &Store,
    clock: &Clock,
    records: Vec<TransitionRecord>,
) -> Vec<Option<crate::state::Event>> {
    match persist(clock, "transitions", || {
        store.record_transitions(records.clone())
    })
    .await
    {
        Ok(events) => events.into_iter().map(Some).collect(),
        Err(batch_err) => {
            if records.len() == 1 {
                tracing::warn!(error = %batch_err, "transition not recorded");
                return vec![None];
            }
            let mut out = Vec::with_capacity(records.len());
            for r in records {
                let id = r.account_id;
                match persist(clock, "a transition", || {
                    store.record_transitions(vec![r.clone()])
                })
                .await
                {
                    Ok(mut e) => out.push(e.pop()),
                    Err(e) => {
                        tracing::warn!(account = id.0, error = %e, "transition not recorded");
                        out.push(None);
                    }
                }
            }
            out
        }
    }
}

/// First and longest wait between two tries of a write while the store is unreachable.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a write is tried again before it is given up (logged, as any failed write): an
/// outage this short loses nothing, and a stop during a longer one does not hang.
const RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs a store write until it is done or fails for a reason of its own. While the store
/// cannot be reached (a fleet store's PostgreSQL restarting, a network cut), the write waits and
/// is tried again for up to [`RETRY_FOR`], so what the supervisor saw meanwhile is recorded once
/// the store is back rather than lost. A write the fence refuses (the lease moved meanwhile) is
/// not retried.
pub(crate) async fn persist<T, F>(
    clock: &Clock,
    what: &str,
    mut write: impl FnMut() -> F,
) -> Result<T>
where
    F: std::future::Future<Output = Result<T>>,
{
    let mut wait = RETRY_FIRST;
    let mut down_since: Option<tokio::time::Instant> = None;
    loop {
        match clock.hold(write()).await {
            Err(e) if e.is_transient() && down_since.is_none_or(|t| t.elapsed() < RETRY_FOR) => {
                if down_since.is_none() {
                    tracing::warn!(error = %e, "the store is unreachable: {what} kept and tried again");
                    down_since = Some(tokio::time::Instant::now());
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(RETRY_MAX);
            }
            outcome => {
                if let Some(since) = down_since {
                    tracing::info!(
                        after_ms = since.elapsed().as_millis() as u64,
                        "the store is back: {what} written"
                    );
                }
                return outcome;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn lost() -> Error {
        Error::Database(sqlx::Error::PoolTimedOut)
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_is_tried_again_while_the_store_is_away_and_no_longer() {
        // Back after three tries: written.
        let tries = AtomicU32::new(0);
        let out = persist(&Clock::System, "a test write", || async {
            if tries.fetch_add(1, Ordering::SeqCst) < 3 {
                Err(lost())
            } else {
                Ok(7)
            }
        })
        .await;
        assert_eq!(out.ok(), Some(7));
        assert_eq!(tries.load(Ordering::SeqCst), 4);

        // Never back: given up after RETRY_FOR, not before.
        let started = tokio::time::Instant::now();
        let out: Result<()> =
            persist(&Clock::System, "a test write", || async { Err(lost()) }).await;
        assert!(out.is_err_and(|e| e.is_transient()));
        assert!(started.elapsed() >= RETRY_FOR);
        assert!(started.elapsed() < RETRY_FOR + RETRY_MAX * 2);

        // A refusal of the write itself: returned at once, tried once.
        let tries = AtomicU32::new(0);
        let out: Result<()> = persist(&Clock::System, "a test write", || async {
            tries.fetch_add(1, Ordering::SeqCst);
            Err(Error::Database(sqlx::Error::RowNotFound))
        })
        .await;
        assert!(out.is_err());
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }
}
