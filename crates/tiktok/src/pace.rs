//! Fleet-wide pacing of every call to TikTok. All accounts of the kind share one budget of
//! requests per minute, handed out as evenly spaced slots (no bursts, whatever the number of
//! watched creators), and one back-off: a rate-limit or captcha answer to any account holds
//! every account's calls, for longer each time it happens again.
//!
//! Alive checks of rooms are batched: checks asked for while one waits for its slot go out
//! together in one request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use lifeline_engine::policy::pacing::{Pacer, PacingConfig};

use crate::api::{Api, CallError, RoomInfo};

/// Rooms in one alive check at most.
pub const MAX_ROOMS_PER_CHECK: usize = 50;

/// How hard Lifeline may poll TikTok.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Every request to TikTok, all accounts together, per minute.
    pub requests_per_minute: u32,
    /// How often each waiting creator is checked (stretched when the budget cannot cover
    /// every creator that often).
    pub poll_interval: Duration,
    /// The first back-off after a rate-limit answer; it doubles on each one that follows,
    /// up to [`Budget::max_backoff`].
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            requests_per_minute: 120,
            poll_interval: Duration::from_secs(60),
            backoff: Duration::from_secs(60),
            max_backoff: Duration::from_secs(30 * 60),
        }
    }
}

impl Budget {
    /// The default, with `LIFELINE_TIKTOK_REQUESTS_PER_MINUTE` and
    /// `LIFELINE_TIKTOK_POLL_SECONDS` when set.
    pub fn from_env() -> Result<Self, crate::api::SetupError> {
        let mut b = Self::default();
        let num = |k: &str, lo: u64, hi: u64| -> Result<Option<u64>, crate::api::SetupError> {
            match std::env::var(k).ok().filter(|v| !v.trim().is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| (lo..=hi).contains(n))
                    .map(Some)
                    .ok_or_else(|| {
                        crate::api::SetupError::Setting(format!(
                            "{k}='{v}' is not a whole number from {lo} to {hi}"
                        ))
                    }),
            }
        };
        if let Some(n) = num("LIFELINE_TIKTOK_REQUESTS_PER_MINUTE", 1, 60_000)? {
            b.requests_per_minute = n as u32;
        }
        if let Some(n) = num("LIFELINE_TIKTOK_POLL_SECONDS", 1, 3600)? {
            b.poll_interval = Duration::from_secs(n);
        }
        Ok(b)
    }

    /// The budget as the engine's pacer takes it: evenly spaced slots, no burst.
    pub fn pacing(&self) -> PacingConfig {
        PacingConfig {
            enabled: true,
            rate_per_s: f64::from(self.requests_per_minute.max(1)) / 60.0,
            burst: 1,
        }
    }
}

#[derive(Debug)]
struct Slots {
    pacer: Pacer,
    /// Every call waits until then (a rate-limit answer).
    held_until: Option<Instant>,
    /// Rate-limit answers in a row.
    strikes: u32,
}

type AliveWaiter = oneshot::Sender<Result<bool, CallError>>;

#[derive(Debug, Default)]
struct Pending {
    rooms: HashMap<String, Vec<AliveWaiter>>,
    /// A task is sending batches until none is left.
    sending: bool,
}

/// The shared pacer and the HTTP calls that go through it.
#[derive(Debug)]
pub struct Poller {
    api: Api,
    budget: Budget,
    slots: Mutex<Slots>,
    /// Alive checks waiting for the next batch.
    pending: Mutex<Pending>,
    requests: AtomicU64,
    rate_limited: AtomicU64,
}

impl Poller {
    pub fn new(api: Api, budget: Budget) -> Self {
        Self {
            api,
            budget,
            slots: Mutex::new(Slots {
                pacer: Pacer::new(&budget.pacing()),
                held_until: None,
                strikes: 0,
            }),
            pending: Mutex::new(Pending::default()),
            requests: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
        }
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// Requests sent so far, and rate-limit answers among them.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.rate_limited.load(Ordering::Relaxed),
        )
    }

    /// Until when every call is held back after a rate-limit answer, if it still is.
    pub fn held_until(&self) -> Option<Instant> {
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.held_until.filter(|t| *t > Instant::now())
    }

    /// Waits for this call's slot: evenly spaced, after any hold.
    async fn slot(&self) {
        let at = {
            let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            // Nothing goes out before a hold ends; then the slots run on from there.
            let from = s
                .held_until
                .map_or(Instant::now(), |h| h.max(Instant::now()));
            s.pacer.reserve(from)
        };
        tokio::time::sleep_until(at).await;
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Notes the outcome of a call: a rate-limit answer holds every call of the kind.
    fn outcome<T>(&self, r: Result<T, CallError>) -> Result<T, CallError> {
        let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        match &r {
            Err(CallError::RateLimited { .. }) => {
                self.rate_limited.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                // Answers to calls already in flight when the hold began do not lengthen it.
                if s.held_until.is_none_or(|h| h <= now) {
                    let factor = 1u32 << s.strikes.min(16);
                    let hold = self
                        .budget
                        .backoff
                        .saturating_mul(factor)
                        .min(self.budget.max_backoff);
                    s.strikes = s.strikes.saturating_add(1);
                    s.held_until = Some(now + hold);
                    tracing::warn!(
                        hold_s = hold.as_secs(),
                        "TikTok is rate-limiting: every TikTok account waits"
                    );
                }
            }
            Ok(_) => s.strikes = 0,
            Err(_) => {}
        }
        r
    }

    /// Any call, paced and watched for rate limits.
    pub async fn call<T, F>(&self, call: impl FnOnce(Api) -> F) -> Result<T, CallError>
    where
        F: std::future::Future<Output = Result<T, CallError>>,
    {
        self.slot().await;
        let r = call(self.api.clone()).await;
        self.outcome(r)
    }

    pub async fn room_info(&self, user: &str) -> Result<RoomInfo, CallError> {
        self.call(|api| async move { api.room_info(user).await })
            .await
    }

    /// Whether a room is still live. Checks asked for by other accounts while one waits for
    /// its slot share the request. The batch is sent by a task of its own, so an account that
    /// stops waiting cannot strand the others' checks.
    pub async fn alive(self: &Arc<Self>, room: &str) -> Result<bool, CallError> {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            p.rooms.entry(room.to_owned()).or_default().push(tx);
            !std::mem::replace(&mut p.sending, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.send_alive_batches().await });
        }
        rx.await
            .unwrap_or_else(|_| Err(CallError::Network("the alive check was dropped".into())))
    }

    async fn send_alive_batches(&self) {
        loop {
            {
                let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                if p.rooms.is_empty() {
                    p.sending = false;
                    return;
                }
            }
            self.slot().await;
            let batch: Vec<(String, Vec<AliveWaiter>)> = {
                let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
                let rooms: Vec<String> =
                    p.rooms.keys().take(MAX_ROOMS_PER_CHECK).cloned().collect();
                rooms
                    .into_iter()
                    .filter_map(|r| p.rooms.remove(&r).map(|w| (r, w)))
                    .collect()
            };
            let rooms: Vec<String> = batch.iter().map(|(r, _)| r.clone()).collect();
            let answer = self.outcome(self.api.alive(&rooms).await);
            for (room, waiters) in batch {
                let result = match &answer {
                    // A room the answer leaves out is not live.
                    Ok(list) => Ok(list.iter().any(|(r, alive)| *r == room && *alive)),
                    Err(e) => Err(e.clone()),
                };
                for w in waiters {
                    let _ = w.send(result.clone());
                }
            }
        }
    }
}
