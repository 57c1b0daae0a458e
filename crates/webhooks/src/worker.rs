//! The sender: a bounded pool working through the outbox. Each (endpoint, account) queue is sent
//! by one task at a time, oldest first, so a receiver sees one account's messages in order; queues
//! go out side by side up to the pool's size. The engine never waits for it: it reads what the
//! store already holds, woken by new transitions and by a short poll (rows written by another
//! process, retries falling due).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeline_engine::Store;
use lifeline_engine::clock::Clock;
use lifeline_engine::metrics::Metrics;
use lifeline_engine::model::SecretName;
use lifeline_engine::secrets::{self, SecretStore};
use lifeline_engine::supervisor::Supervisor;
use lifeline_engine::supervisor::Update;
use lifeline_engine::webhook::{
    Attempt, AttemptResult, Delivery, DeliveryQueue, WebhookEndpoint, WebhookUrl,
};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::schedule::Schedule;
use crate::send::{Answer, HttpSender};
use crate::sign::SigningKey;

/// How the sender behaves. [`WorkerConfig::default`] is what Lifeline ships.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub schedule: Schedule,
    /// Queues sent at once.
    pub concurrency: usize,
    /// One attempt's limit.
    pub timeout: Duration,
    /// An endpoint failing this long without one success is disabled.
    pub give_up_after: Duration,
    /// How often the outbox is read when nothing wakes the sender.
    pub poll: Duration,
    /// Who sends, written into every message (`data.instance`).
    pub instance: String,
    /// How long delivered messages stay listed.
    pub keep_delivered: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            schedule: Schedule::standard(),
            concurrency: 16,
            timeout: crate::send::TIMEOUT,
            give_up_after: Duration::from_secs(5 * 86_400),
            poll: Duration::from_secs(1),
            instance: String::new(),
            keep_delivered: Duration::from_secs(30 * 86_400),
        }
    }
}

/// How often delivered messages past their keeping time are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Most queue heads read from the outbox at once.
const READ_AHEAD: u32 = 256;

/// What the sender tells the faces (the desktop notifies, `serve` logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An endpoint was turned off: it answered 410, or kept failing too long.
    Disabled {
        endpoint: i64,
        url: String,
        reason: String,
    },
}

/// Everything one attempt needs, shared by the pool's tasks.
#[derive(Debug)]
struct Ctx {
    store: Store,
    secrets: Arc<dyn SecretStore>,
    clock: Clock,
    cfg: WorkerConfig,
    http: HttpSender,
    metrics: Option<Metrics>,
    writer: Option<Supervisor>,
    notices: mpsc::UnboundedSender<Notice>,
    /// Signing keys read from the keyring, by secret name (the keyring is slow to ask).
    keys: Mutex<HashMap<SecretName, SigningKey>>,
}

/// Where the sender works: the store holding the outbox (best a pool of its own: its reads then
/// never wait behind the engine's), the keyring with the signing secrets, and the supervisor
/// whose single writer records the attempts (`None`: the store does, as when none runs).
#[derive(Debug, Clone)]
pub struct Outbox {
    pub store: Store,
    pub secrets: Arc<dyn SecretStore>,
    pub clock: Clock,
    pub metrics: Option<Metrics>,
    pub writer: Option<Supervisor>,
}

/// Runs until `stop`. With a supervisor (`writer`), every batch it records wakes the sender (its
/// outbox rows are written by then); otherwise, and for rows other processes write, the poll.
pub async fn run(
    outbox: Outbox,
    cfg: WorkerConfig,
    notices: mpsc::UnboundedSender<Notice>,
    stop: CancellationToken,
) {
    let mut updates = outbox.writer.as_ref().map(Supervisor::subscribe);
    let http = match HttpSender::new(cfg.timeout) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "webhooks will not be sent");
            return;
        }
    };
    let ctx = Arc::new(Ctx {
        store: outbox.store,
        secrets: outbox.secrets,
        clock: outbox.clock,
        cfg,
        http,
        metrics: outbox.metrics,
        writer: outbox.writer,
        notices,
        keys: Mutex::new(HashMap::new()),
    });
    // Queues due and waiting for a free sender, read from the outbox in large steps (one read
    // per many deliveries), and every queue either waiting here or being sent: never read twice.
    let mut ready: VecDeque<Delivery> = VecDeque::new();
    let mut busy: HashSet<DeliveryQueue> = HashSet::new();
    let mut pool: JoinSet<()> = JoinSet::new();
    let mut sending: HashMap<tokio::task::Id, DeliveryQueue> = HashMap::new();
    let mut stale = true;
    let mut pruned: Option<tokio::time::Instant> = None;
    loop {
        if pruned.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
            pruned = Some(tokio::time::Instant::now());
            let before = ctx.clock.now()
                - chrono::Duration::from_std(ctx.cfg.keep_delivered).unwrap_or_default();
            if let Err(e) = ctx.store.prune_delivered(before).await {
                tracing::warn!(error = %e, "delivered webhook messages not pruned");
            }
        }
        if stale || ready.len() < ctx.cfg.concurrency {
            match ctx
                .store
                .due_deliveries(ctx.clock.now(), &busy, READ_AHEAD)
                .await
            {
                Ok(due) => {
                    for head in due {
                        busy.insert(head.queue());
                        ready.push_back(head);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "webhook outbox not readable"),
            }
            stale = false;
        }
        while pool.len() < ctx.cfg.concurrency {
            let Some(head) = ready.pop_front() else { break };
            let queue = head.queue();
            let task = pool.spawn(send_queue(ctx.clone(), head));
            sending.insert(task.id(), queue);
        }
        let mut wait = ctx.cfg.poll;
        if ready.is_empty()
            && pool.len() < ctx.cfg.concurrency
            && let Ok(Some(next)) = ctx.store.next_delivery_at(ctx.clock.now()).await
        {
            let until = (next - ctx.clock.now()).to_std().unwrap_or(Duration::ZERO);
            wait = wait.min(until.max(Duration::from_millis(10)));
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            Some(done) = pool.join_next_with_id(), if !pool.is_empty() => {
                let mut finished = vec![done];
                // Every other finished queue too, before reading the outbox again.
                while let Some(more) = pool.try_join_next_with_id() {
                    finished.push(more);
                }
                for done in finished {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            // A panicking attempt leaves its delivery pending: tried again.
                            tracing::error!(error = %e, "webhook task failed");
                            e.id()
                        }
                    };
                    if let Some(queue) = sending.remove(&id) {
                        busy.remove(&queue);
                    }
                }
            }
            more = next_update(&mut updates) => {
                if !more {
                    updates = None;
                }
                stale = true;
            }
            _ = tokio::time::sleep(wait) => stale = true,
        }
    }
    // An attempt cut short stays pending and goes again on the next start, with the same
    // webhook-id: receivers drop the duplicate.
    pool.abort_all();
    while pool.join_next().await.is_some() {}
}

/// Waits for the supervisor's next update (or a lag: updates were missed); false once it has
/// stopped. Without a supervisor, never.
async fn next_update(updates: &mut Option<broadcast::Receiver<Update>>) -> bool {
    match updates {
        Some(rx) => !matches!(rx.recv().await, Err(broadcast::error::RecvError::Closed)),
        None => std::future::pending().await,
    }
}

/// Sends one queue's deliveries in order while they are due; stops at the first that must wait.
async fn send_queue(ctx: Arc<Ctx>, head: Delivery) {
    let queue = head.queue();
    let mut next = Some(head);
    while let Some(delivery) = next.take() {
        if !attempt(&ctx, &delivery).await {
            break;
        }
        next = match ctx.store.next_in_queue(queue, ctx.clock.now()).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "webhook outbox not readable");
                None
            }
        };
    }
}

/// One attempt, recorded. True when the queue may go on (this one is done, either way).
async fn attempt(ctx: &Ctx, delivery: &Delivery) -> bool {
    // Read at every attempt: a change (turned off, a new secret) applies to the next message.
    let endpoint = match ctx.store.webhook(delivery.endpoint_id).await {
        Ok(e) if e.enabled => e,
        // Removed or turned off meanwhile: the delivery waits (or was dropped with it).
        Ok(_) | Err(_) => return false,
    };
    let now = ctx.clock.now();
    let answer = match prepare(ctx, &endpoint).await {
        Ok((url, keys)) => {
            crate::send_signed(&ctx.http, &url, &keys, delivery, &ctx.cfg.instance, now).await
        }
        Err(why) => Answer {
            code: None,
            retry_after: None,
            error: Some(why),
        },
    };
    let result = judge(
        &ctx.cfg.schedule,
        delivery.attempts,
        &answer,
        ctx.clock.now(),
    );
    let outcome = match &result {
        AttemptResult::Delivered { .. } => "delivered",
        AttemptResult::Retry { .. } => "retry",
        AttemptResult::Exhausted { .. } => "failed",
        AttemptResult::Gone { .. } => "gone",
    };
    if let Some(m) = &ctx.metrics {
        m.webhook_attempt(outcome);
    }
    tracing::debug!(
        delivery = delivery.id,
        endpoint = endpoint.id,
        code = answer.code,
        outcome,
        "webhook attempt"
    );
    let recorded = Attempt {
        delivery: delivery.id,
        result: result.clone(),
        at: ctx.clock.now(),
    };
    let written = match &ctx.writer {
        Some(sup) => sup.record_webhook_attempts(vec![recorded]).await,
        None => ctx.store.record_attempts(&[recorded]).await,
    };
    let failing = match written {
        Ok(mut f) => f.pop().flatten(),
        Err(e) => {
            // Not recorded: the delivery stays pending and goes again (same webhook-id).
            tracing::warn!(error = %e, delivery = delivery.id, "webhook attempt not recorded");
            return false;
        }
    };
    if let AttemptResult::Gone { code } = result {
        let _ = ctx.notices.send(Notice::Disabled {
            endpoint: endpoint.id,
            url: endpoint.url.clone(),
            reason: format!("it answered {code} Gone"),
        });
        return false;
    }
    if let Some(since) = failing {
        let failing_for = (ctx.clock.now() - since).to_std().unwrap_or(Duration::ZERO);
        if failing_for >= ctx.cfg.give_up_after {
            let days = ctx.cfg.give_up_after.as_secs_f64() / 86_400.0;
            let reason = format!("it failed every delivery for {days:.0} days");
            match ctx
                .store
                .set_webhook_enabled(endpoint.id, false, Some(&reason))
                .await
            {
                Ok(_) => {
                    tracing::warn!(
                        endpoint = endpoint.id,
                        "webhook endpoint disabled: {reason}"
                    );
                    let _ = ctx.notices.send(Notice::Disabled {
                        endpoint: endpoint.id,
                        url: endpoint.url.clone(),
                        reason,
                    });
                }
                Err(e) => tracing::warn!(error = %e, "webhook endpoint not disabled"),
            }
            return false;
        }
    }
    !matches!(result, AttemptResult::Retry { .. })
}

/// What an answer means for the delivery after `made` earlier attempts.
pub fn judge(
    schedule: &Schedule,
    made: u32,
    answer: &Answer,
    now: lifeline_engine::Timestamp,
) -> AttemptResult {
    let error = answer.error.clone().unwrap_or_default();
    match answer.code {
        Some(code) if answer.is_success() => AttemptResult::Delivered { code },
        Some(410) => AttemptResult::Gone { code: 410 },
        code => match schedule.wait_after(made + 1, answer.retry_after, rand::random()) {
            Some(wait) => AttemptResult::Retry {
                code,
                error,
                retry_at: now + chrono::Duration::from_std(wait).unwrap_or_default(),
            },
            None => AttemptResult::Exhausted { code, error },
        },
    }
}

/// The endpoint's URL and its signing keys (two while a rotation lasts), or why it cannot be
/// sent to now.
async fn prepare(
    ctx: &Ctx,
    endpoint: &WebhookEndpoint,
) -> Result<(WebhookUrl, Vec<SigningKey>), String> {
    let url = WebhookUrl::parse(&endpoint.url).map_err(|e| e.to_string())?;
    let mut names = vec![endpoint.secret_name.clone()];
    if let Some((old, until)) = &endpoint.old_secret {
        if *until > ctx.clock.now() {
            names.push(old.clone());
        } else {
            crate::end_rotation(&ctx.store, &ctx.secrets, endpoint.id, old).await;
        }
    }
    let mut keys = Vec::with_capacity(names.len());
    for name in names {
        let cached = ctx
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
            .cloned();
        let key = match cached {
            Some(k) => k,
            None => {
                let value = secrets::fetch(ctx.secrets.clone(), &name)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or_else(|| {
                        format!("its signing secret '{name}' is missing from the keyring")
                    })?;
                let key = SigningKey::parse(&value).ok_or_else(|| {
                    format!("its signing secret '{name}' in the keyring is not a whsec_ secret")
                })?;
                ctx.keys
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(name, key.clone());
                key
            }
        };
        keys.push(key);
    }
    Ok((url, keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(code: Option<u16>, retry_after: Option<u64>) -> Answer {
        Answer {
            code,
            retry_after: retry_after.map(Duration::from_secs),
            error: code.filter(|c| *c >= 300).map(|c| format!("HTTP {c}")),
        }
    }

    #[test]
    fn only_2xx_delivers_410_disables_and_the_schedule_ends_the_rest() {
        let s = Schedule::parse("0,10s,20s").expect("schedule");
        let now = chrono::Utc::now();
        assert_eq!(
            judge(&s, 0, &answer(Some(204), None), now),
            AttemptResult::Delivered { code: 204 }
        );
        assert_eq!(
            judge(&s, 0, &answer(Some(410), None), now),
            AttemptResult::Gone { code: 410 }
        );
        for code in [Some(301), Some(404), Some(500), None] {
            match judge(&s, 0, &answer(code, None), now) {
                AttemptResult::Retry {
                    retry_at, code: c, ..
                } => {
                    assert_eq!(c, code);
                    let wait = (retry_at - now).num_milliseconds();
                    assert!((9_000..=11_000).contains(&wait), "{wait}");
                }
                other => panic!("{code:?}: {other:?}"),
            }
        }
        match judge(&s, 1, &answer(Some(429), Some(60)), now) {
            AttemptResult::Retry { retry_at, .. } => {
                assert_eq!((retry_at - now).num_seconds(), 60);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            judge(&s, 2, &answer(Some(503), Some(1)), now),
            AttemptResult::Exhausted {
                code: Some(503),
                ..
            }
        ));
    }
}
