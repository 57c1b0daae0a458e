//! Connector for TikTok LIVE creators (`kind = tiktok`). An account is a creator to watch: its
//! connection waits for a live by paced polling of the creator's room info (the engine shows it
//! as waiting, not failing), joins the broadcast's live WebSocket when one starts, counts it,
//! and returns to waiting when it ends. Each broadcast is reported as a remote session with its
//! counts; the engine stores and exports those without knowing they are lives.
//!
//! A dropped feed while the room is still live ends the connection (the engine's backoff,
//! breaker and pacing reconnect it, and the open live continues); a rate-limit or captcha
//! answer holds every TikTok account ([`pace::Poller`]); a blocked device pauses the account.

pub mod api;
pub mod feed;
pub mod live;
pub mod pace;
pub mod proto;

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use lifeline_engine::connector::{ConnEvent, ConnectRequest, Connector, RemoteSession};
use lifeline_engine::model::{Account, Identity, tiktok_user};
use lifeline_engine::policy::jitter::Jitter;
use lifeline_engine::secrets::fetch;
use lifeline_engine::state::Reason;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use api::{Api, CallError, Endpoints, SetupError};
use feed::FeedEnd;
use live::{END_ENDED, END_MISSED, Live};
use pace::{Budget, Poller};

/// Watches TikTok creators. One per process: every account shares its budget and back-off.
#[derive(Debug, Clone)]
pub struct TikTokConnector {
    poller: Arc<Poller>,
    report_every: Duration,
}

impl TikTokConnector {
    pub fn new(endpoints: Endpoints, budget: Budget) -> Result<Self, SetupError> {
        Ok(Self {
            poller: Arc::new(Poller::new(
                Api::new(endpoints, Duration::from_secs(15))?,
                budget,
            )),
            report_every: Duration::from_secs(30),
        })
    }

    /// TikTok's servers (or `LIFELINE_TIKTOK_URL`), with the budget from the environment.
    pub fn from_env() -> Result<Self, SetupError> {
        Self::new(Endpoints::from_env()?, Budget::from_env()?)
    }

    /// How often a running live's counts are written (they are written when it ends, too).
    pub fn report_every(mut self, every: Duration) -> Self {
        self.report_every = every;
        self
    }

    /// Requests sent to TikTok so far, and rate-limit answers among them.
    pub fn request_counts(&self) -> (u64, u64) {
        self.poller.counts()
    }
}

impl Connector for TikTokConnector {
    fn run(
        &self,
        request: ConnectRequest,
        events: mpsc::Sender<ConnEvent>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let me = self.clone();
        Box::pin(async move {
            let id = request.account.id;
            let outcome = tokio::select! {
                _ = cancel.cancelled() => return,
                o = me.watch(&request, &events, &cancel) => o,
            };
            if let Some((reason, detail)) = outcome {
                tracing::debug!(account = id.0, reason = reason.code(), "tiktok watch ended");
                let _ = events.send(ConnEvent::Ended { reason, detail }).await;
            }
        })
    }
}

type Outcome = Option<(Reason, Option<String>)>;

/// What the account shows while it has no live to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Nothing,
    Waiting,
    RateLimited,
}

impl TikTokConnector {
    async fn watch(
        &self,
        request: &ConnectRequest,
        events: &mpsc::Sender<ConnEvent>,
        cancel: &CancellationToken,
    ) -> Outcome {
        let account = &request.account;
        let Some(user) = user_of(account) else {
            return Some((
                Reason::NotFound,
                Some("the account has no TikTok user name".into()),
            ));
        };
        let poller = &self.poller;
        let mut resume = request.resume.clone();
        let mut shown = Shown::Nothing;
        let mut known_name = account.identity.clone();
        let mut polled = false;
        let mut jitter = Jitter::seeded(Jitter::from_entropy().next_u64() ^ account.id.0 as u64);
        loop {
            if let Some(until) = poller.held_until() {
                show(events, &mut shown, Shown::RateLimited).await?;
                tokio::time::sleep_until(until).await;
                continue;
            }
            if polled {
                tokio::time::sleep(jittered(poller.budget().poll_interval, &mut jitter)).await;
            }
            polled = true;
            let info = match poller.room_info(&user).await {
                Ok(info) => info,
                Err(CallError::RateLimited { .. }) => continue,
                Err(e) => return Some((e.reason(), Some(e.detail()))),
            };
            let identity = Identity {
                id: format!("@{user}"),
                name: info.nickname.clone(),
            };
            if known_name.as_ref() != Some(&identity) {
                known_name = Some(identity.clone());
                let _ = events.send(ConnEvent::Identity(identity)).await;
            }
            // A live recorded as running that is not this room's live any more ended while no
            // connection watched it.
            if let Some(r) = resume.take_if(|r| !(info.live && info.room_id == r.key)) {
                let mut ended = r.clone();
                ended.ended_at = Some(chrono::Utc::now().max(r.started_at));
                ended.end = Some(END_MISSED.into());
                let _ = events.send(ConnEvent::Session(Box::new(ended))).await;
            }
            if !info.live {
                show(events, &mut shown, Shown::Waiting).await?;
                let _ = events.send(ConnEvent::Alive).await;
                continue;
            }
            let mut live = match resume.take() {
                Some(r) => Live::resume(&r),
                None => Live::new(info.room_id.clone(), chrono::Utc::now()),
            };
            let join = match self.join(request, &user, &info.room_id).await {
                Ok(j) => j,
                Err(CallError::RateLimited { .. }) => {
                    resume = Some(live.session(None));
                    continue;
                }
                // The room closed between the two calls: look again next time.
                Err(CallError::NotFound) => {
                    resume = Some(live.session(None));
                    continue;
                }
                Err(e) => return Some((e.reason(), Some(e.detail()))),
            };
            shown = Shown::Nothing;
            match feed::run(&join, request, &mut live, self.report_every, events, cancel).await {
                FeedEnd::Ended => {
                    self.ended(events, &live, END_ENDED).await;
                    show(events, &mut shown, Shown::Waiting).await?;
                }
                FeedEnd::Dropped(reason, detail) => {
                    // Still live: the engine reconnects (backoff, pacing) and the live goes on.
                    match poller.alive(&live.room_id).await {
                        Ok(false) => {
                            self.ended(events, &live, END_ENDED).await;
                            show(events, &mut shown, Shown::Waiting).await?;
                        }
                        _ => {
                            let _ = events
                                .send(ConnEvent::Session(Box::new(live.session(None))))
                                .await;
                            return Some((reason, detail));
                        }
                    }
                }
                FeedEnd::Blocked(detail) => {
                    let _ = events
                        .send(ConnEvent::Session(Box::new(live.session(None))))
                        .await;
                    return Some((Reason::Blocked, Some(detail)));
                }
                FeedEnd::Cancelled => {
                    let _ = events
                        .send(ConnEvent::Session(Box::new(live.session(None))))
                        .await;
                    return None;
                }
            }
        }
    }

    async fn ended(&self, events: &mpsc::Sender<ConnEvent>, live: &Live, how: &str) {
        let session: RemoteSession = live.session(Some((chrono::Utc::now(), how)));
        let _ = events.send(ConnEvent::Session(Box::new(session))).await;
    }

    /// A session cookie, then the room's first fetch (through the signing service when one
    /// is configured), each paced.
    async fn join(
        &self,
        request: &ConnectRequest,
        user: &str,
        room: &str,
    ) -> Result<api::Join, CallError> {
        let poller = &self.poller;
        let cookie = poller
            .call(|api| async move { api.session_cookie(user).await })
            .await?;
        let key = match &poller.api().endpoints.signer {
            None => None,
            Some(s) => match fetch(request.secrets.clone(), &s.key).await {
                Ok(Some(v)) => Some(v.expose().to_owned()),
                _ => None,
            },
        };
        let cookie = &cookie;
        let key = key.as_deref();
        poller
            .call(|api| async move { api.first_fetch(room, cookie, key).await })
            .await
    }
}

/// Tells the engine the account waits (once per change). `None` when the account's task has
/// gone (the connection is over).
async fn show(events: &mpsc::Sender<ConnEvent>, shown: &mut Shown, now: Shown) -> Option<()> {
    if *shown == now {
        return Some(());
    }
    *shown = now;
    let reason = (now == Shown::RateLimited).then_some(Reason::RateLimited);
    events.send(ConnEvent::Waiting { reason }).await.ok()
}

/// The poll interval ±10 %, drawn per poll so that creators added together do not stay in
/// step.
fn jittered(interval: Duration, jitter: &mut Jitter) -> Duration {
    let ms = interval.as_millis() as u64;
    let spread = ms / 5;
    if spread == 0 {
        return interval;
    }
    Duration::from_millis(ms - spread / 2 + jitter.up_to(spread - 1))
}

/// The creator an account watches, from its stored URL.
pub fn user_of(account: &Account) -> Option<String> {
    let url = account.url.as_deref()?;
    tiktok_user(url).ok().map(str::to_ascii_lowercase)
}
