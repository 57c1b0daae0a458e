//! The keeper runs the lease rules for one instance, and tells its supervisor what to run.
//!
//! Every TTL/3 it renews what it holds, says it is alive, and claims its share of the leases
//! nobody holds (an even split over the live instances, at most `--max-accounts`). An instance
//! holding more than its share while another holds less hands a few over each round, so a new
//! instance fills up gradually rather than in one storm of reconnects. A release anywhere in
//! the fleet wakes every keeper at once (LISTEN/NOTIFY), so a graceful stop hands over without
//! waiting for a round or an expiry.
//!
//! Renewals can stop getting through (the database is down, the network is cut, the process was
//! paused). So the keeper also keeps a deadline per lease on the host's monotonic clock: the time
//! the last successful renewal was sent, plus the TTL, less a margin to close the connection.
//! When it passes, the lease is given up locally ([`LeaseEvent::Lost`]) before it can expire in
//! the database, so two instances never run one account even while they cannot talk.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::lease::{Census, Claimed, Lease};
use crate::store::Instance;
use crate::{AccountId, DEFAULT_TTL, Result};

/// The notification channel a release is announced on.
pub(crate) const CHANNEL: &str = "lifeline_fleet";

/// How a keeper runs.
#[derive(Debug, Clone, Copy)]
pub struct KeeperConfig {
    /// How long a lease lasts without renewal; renewals go every third of it.
    pub ttl: Duration,
    /// At most this many accounts handed over per round when rebalancing.
    pub handover_step: usize,
}

impl Default for KeeperConfig {
    fn default() -> Self {
        Self {
            ttl: DEFAULT_TTL,
            handover_step: 10,
        }
    }
}

/// What the keeper tells its supervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEvent {
    /// Supervise this account, writing under this lease (connect through the instance's pacing).
    Acquired { lease: Lease, takeover: bool },
    /// The lease is gone: close this account's connection now and write nothing more for it.
    Lost(Lease),
    /// This instance hands the account to another: close its connection. The lease is
    /// released in the store at the next round, after the close had time to happen.
    HandedOver(Lease),
}

#[derive(Debug, Clone, Copy)]
struct Held {
    epoch: i64,
    deadline: Instant,
}

/// The leases an instance holds and their local deadlines (pure; the keeper drives it).
#[derive(Debug)]
pub struct LeaseBook {
    ttl: Duration,
    margin: Duration,
    held: BTreeMap<AccountId, Held>,
}

impl LeaseBook {
    /// The margin is a fifth of the TTL: time to close a connection before the lease expires.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            margin: ttl / 5,
            held: BTreeMap::new(),
        }
    }

    fn deadline(&self, asked_at: Instant) -> Instant {
        asked_at + self.ttl.saturating_sub(self.margin)
    }

    /// Records a lease won by a request sent at `asked_at`.
    pub fn insert(&mut self, lease: Lease, asked_at: Instant) {
        let deadline = self.deadline(asked_at);
        self.held.insert(
            lease.account,
            Held {
                epoch: lease.epoch,
                deadline,
            },
        );
    }

    /// Applies a renewal of `asked`, sent at `asked_at`: the renewed leases get a new deadline,
    /// the others are removed and returned (lost). Leases won after the renewal was asked for
    /// are not judged by it.
    pub fn renewed(
        &mut self,
        asked: &[Lease],
        asked_at: Instant,
        renewed: &[AccountId],
    ) -> Vec<Lease> {
        let renewed: HashSet<AccountId> = renewed.iter().copied().collect();
        let deadline = self.deadline(asked_at);
        let mut lost = Vec::new();
        for lease in asked {
            let Some(held) = self.held.get_mut(&lease.account) else {
                continue;
            };
            if held.epoch != lease.epoch {
                continue;
            }
            if renewed.contains(&lease.account) {
                held.deadline = held.deadline.max(deadline);
            } else {
                self.held.remove(&lease.account);
                lost.push(*lease);
            }
        }
        lost
    }

    /// Removes and returns the leases whose deadline has passed at `now`.
    pub fn overdue(&mut self, now: Instant) -> Vec<Lease> {
        let gone: Vec<Lease> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(&account, h)| Lease {
                account,
                epoch: h.epoch,
            })
            .collect();
        for lease in &gone {
            self.held.remove(&lease.account);
        }
        gone
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.values().map(|h| h.deadline).min()
    }

    pub fn remove(&mut self, account: AccountId) -> Option<Lease> {
        self.held.remove(&account).map(|h| Lease {
            account,
            epoch: h.epoch,
        })
    }

    pub fn leases(&self) -> Vec<Lease> {
        self.held
            .iter()
            .map(|(&account, h)| Lease {
                account,
                epoch: h.epoch,
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// A running keeper. [`Keeper::stop`] ends it and returns the leases it held, for the caller to
/// close their connections and then [`Instance::leave`]; dropping it (or [`Keeper::abort`])
/// releases nothing, as a killed process would.
#[derive(Debug)]
pub struct Keeper {
    stop: CancellationToken,
    task: JoinHandle<Vec<Lease>>,
    _stop_on_drop: DropGuard,
}

impl Keeper {
    pub fn start(
        instance: Instance,
        config: KeeperConfig,
        events: mpsc::UnboundedSender<LeaseEvent>,
    ) -> Self {
        let stop = CancellationToken::new();
        let wake = Arc::new(Notify::new());
        tokio::spawn(listen(instance.clone(), wake.clone(), stop.clone()));
        tokio::spawn(watch_expiries(instance.clone(), wake.clone(), stop.clone()));
        let task = tokio::spawn(run(instance, config, events, wake, stop.clone()));
        Self {
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
            task,
        }
    }

    /// Ends the keeper and returns the leases it still held.
    pub async fn stop(self) -> Vec<Lease> {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }

    /// Ends the keeper without releasing anything (what a killed process leaves behind).
    pub fn abort(self) {
        self.stop.cancel();
        self.task.abort();
    }
}

/// What one round found out, applied to the book when it completes.
struct Round {
    asked: Vec<Lease>,
    asked_at: Instant,
    renewed: Result<Vec<AccountId>>,
    claimed: Vec<Claimed>,
    /// How many of its leases this instance should hand over.
    surplus: usize,
}

type RoundFuture = Pin<Box<dyn Future<Output = Round> + Send>>;

async fn round(
    instance: Instance,
    config: KeeperConfig,
    asked: Vec<Lease>,
    release: Vec<AccountId>,
    hand_over: bool,
) -> Round {
    let asked_at = Instant::now();
    let ttl = config.ttl;
    if let Err(e) = instance.release(&release).await {
        // They expire by themselves within the TTL.
        tracing::warn!(error = %e, count = release.len(), "could not release handed-over leases");
    }
    let renewed = instance.renew(&asked, ttl).await;
    if let Err(e) = &renewed {
        tracing::warn!(error = %e, held = asked.len(), "lease renewal failed");
    }
    let mut claimed = Vec::new();
    let mut surplus = 0;
    if renewed.is_ok() {
        if let Err(e) = instance.heartbeat().await {
            tracing::warn!(error = %e, "heartbeat failed");
        }
        match instance.census(ttl).await {
            Ok(census) => {
                let (want, over) = share(&census, instance.max_accounts(), config);
                match instance.claim(want, ttl).await {
                    Ok(won) => claimed = won,
                    Err(e) => tracing::warn!(error = %e, "claiming leases failed"),
                }
                if hand_over {
                    surplus = over;
                }
            }
            Err(e) => tracing::warn!(error = %e, "fleet census failed"),
        }
    }
    Round {
        asked,
        asked_at,
        renewed,
        claimed,
        surplus,
    }
}

/// How many leases to claim, and how many to hand over, given the census: claim up to the fair
/// share; hand over what is above it (a step at a time) only while another live instance has
/// room for it, so accounts never bounce between instances that are all full.
fn share(census: &Census, max_accounts: Option<u32>, config: KeeperConfig) -> (i64, usize) {
    let fair = census.fair_share(max_accounts);
    let want = (fair - census.held).max(0);
    let over = (census.held - fair).max(0);
    let surplus = if over > 0 && census.room_elsewhere > 0 {
        usize::try_from(over.min(census.room_elsewhere))
            .unwrap_or(0)
            .min(config.handover_step)
    } else {
        0
    };
    (want, surplus)
}

async fn run(
    instance: Instance,
    config: KeeperConfig,
    events: mpsc::UnboundedSender<LeaseEvent>,
    wake: Arc<Notify>,
    stop: CancellationToken,
) -> Vec<Lease> {
    let mut book = LeaseBook::new(config.ttl);
    let mut tick = tokio::time::interval(config.ttl / 3);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut pending: Option<RoundFuture> = None;
    let mut handover: Vec<AccountId> = Vec::new();
    let mut again = false;
    let send = |event: LeaseEvent| {
        // A supervisor that went away has nothing left to start or stop.
        let _ = events.send(event);
    };
    loop {
        let deadline = book.next_deadline();
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                for lease in book.overdue(Instant::now()) {
                    tracing::warn!(account = lease.account, "renewals are not getting through: giving the lease up before it expires");
                    send(LeaseEvent::Lost(lease));
                }
            }
            done = async { pending.as_mut().expect("guarded by is_some").await }, if pending.is_some() => {
                pending = None;
                apply(&mut book, done, &mut handover, &send);
                if std::mem::take(&mut again) {
                    pending = Some(Box::pin(round(instance.clone(), config, book.leases(), Vec::new(), false)));
                }
            }
            _ = tick.tick(), if pending.is_none() => {
                pending = Some(Box::pin(round(instance.clone(), config, book.leases(), std::mem::take(&mut handover), true)));
            }
            () = wake.notified() => {
                // Another instance released leases: claim now rather than at the next tick.
                // Handing over, and releasing what was handed over, wait for the tick: a release
                // never sets off another at once, and a connection handed over always has a
                // round's time to close before its lease is released.
                if pending.is_none() {
                    pending = Some(Box::pin(round(instance.clone(), config, book.leases(), Vec::new(), false)));
                } else {
                    again = true;
                }
            }
        }
    }
    book.leases()
}

fn apply(
    book: &mut LeaseBook,
    round: Round,
    handover: &mut Vec<AccountId>,
    send: &impl Fn(LeaseEvent),
) {
    if let Ok(renewed) = &round.renewed {
        for lease in book.renewed(&round.asked, round.asked_at, renewed) {
            tracing::warn!(
                account = lease.account,
                "lease lost: another instance holds it"
            );
            send(LeaseEvent::Lost(lease));
        }
    }
    for claimed in round.claimed {
        book.insert(claimed.lease, round.asked_at);
        send(LeaseEvent::Acquired {
            lease: claimed.lease,
            takeover: claimed.takeover,
        });
    }
    // Hand over the most recently numbered accounts first: which ones does not matter, only
    // that the choice is stable from round to round.
    let mut give: Vec<Lease> = book.leases();
    give.reverse();
    for lease in give.into_iter().take(round.surplus) {
        book.remove(lease.account);
        handover.push(lease.account);
        send(LeaseEvent::HandedOver(lease));
    }
}

/// How often a keeper looks for leases another instance stopped renewing.
pub const EXPIRY_CHECK: Duration = Duration::from_secs(1);

/// Wakes the keeper once a lease held by another instance has expired (its owner died, froze
/// or lost the database), so the claim follows the expiry within a second instead of waiting
/// for the next round (up to a third of the TTL later). One indexed read a second. Each expiry
/// wakes it twice, a second apart: the dead owner's last heartbeat is about as old as its
/// leases, so a round right at the expiry may still count it alive and leave its share alone.
/// A lease nobody has room for does not wake it again and again.
async fn watch_expiries(instance: Instance, wake: Arc<Notify>, stop: CancellationToken) {
    let mut seen: f64 = f64::NEG_INFINITY;
    let mut again = false;
    let mut tick = tokio::time::interval(EXPIRY_CHECK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match instance.latest_expiry_after(seen).await {
            Ok(Some(at)) => {
                seen = at;
                again = true;
                wake.notify_one();
            }
            Ok(None) if std::mem::take(&mut again) => wake.notify_one(),
            Ok(None) => {}
            Err(e) => tracing::debug!(error = %e, "expiry check failed"),
        }
    }
}

/// Wakes the keeper whenever another instance releases leases. When the database
/// cannot be reached it tries again each second; the rounds go on without it meanwhile.
async fn listen(instance: Instance, wake: Arc<Notify>, stop: CancellationToken) {
    loop {
        let attempt = async {
            let mut listener = PgListener::connect_with(&instance.store().pool).await?;
            listener.listen(CHANNEL).await?;
            loop {
                let note = listener.recv().await?;
                if note.payload() != instance.id().as_str() {
                    wake.notify_one();
                }
            }
            #[allow(unreachable_code)]
            Ok::<(), sqlx::Error>(())
        };
        tokio::select! {
            () = stop.cancelled() => return,
            result = attempt => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "fleet notifications interrupted");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(account: AccountId, epoch: i64) -> Lease {
        Lease { account, epoch }
    }

    #[test]
    fn a_renewed_lease_moves_its_deadline_and_an_unrenewed_one_is_lost() {
        let ttl = Duration::from_secs(15);
        let t0 = Instant::now();
        let mut book = LeaseBook::new(ttl);
        book.insert(lease(1, 3), t0);
        book.insert(lease(2, 1), t0);
        // Deadline: sent + TTL - TTL/5.
        assert_eq!(book.next_deadline(), Some(t0 + Duration::from_secs(12)));
        let t1 = t0 + Duration::from_secs(5);
        let lost = book.renewed(&[lease(1, 3), lease(2, 1)], t1, &[1]);
        assert_eq!(lost, vec![lease(2, 1)]);
        assert_eq!(book.leases(), vec![lease(1, 3)]);
        assert_eq!(book.next_deadline(), Some(t1 + Duration::from_secs(12)));
    }

    #[test]
    fn a_renewal_judges_only_the_leases_it_asked_about() {
        let t0 = Instant::now();
        let mut book = LeaseBook::new(Duration::from_secs(15));
        book.insert(lease(1, 1), t0);
        // Won while the renewal was on its way, and re-won under a newer epoch.
        book.insert(lease(2, 1), t0);
        book.insert(lease(1, 2), t0);
        let lost = book.renewed(&[lease(1, 1)], t0, &[]);
        assert!(lost.is_empty(), "{lost:?}");
        assert_eq!(book.len(), 2);
    }

    #[test]
    fn leases_past_their_local_deadline_are_given_up_without_the_database() {
        let t0 = Instant::now();
        let mut book = LeaseBook::new(Duration::from_secs(15));
        book.insert(lease(1, 1), t0);
        book.insert(lease(2, 1), t0 + Duration::from_secs(5));
        assert!(book.overdue(t0 + Duration::from_secs(11)).is_empty());
        assert_eq!(
            book.overdue(t0 + Duration::from_secs(12)),
            vec![lease(1, 1)]
        );
        // A process paused for a minute wakes with every deadline gone.
        assert_eq!(
            book.overdue(t0 + Duration::from_secs(60)),
            vec![lease(2, 1)]
        );
        assert!(book.is_empty());
        assert_eq!(book.next_deadline(), None);
    }

    #[test]
    fn shares_claim_up_to_fair_and_hand_over_only_where_there_is_room() {
        let config = KeeperConfig {
            ttl: DEFAULT_TTL,
            handover_step: 10,
        };
        let census = |held, room_elsewhere| Census {
            accounts: 300,
            live_instances: 3,
            held,
            room_elsewhere,
        };
        assert_eq!(share(&census(0, 0), None, config), (100, 0));
        assert_eq!(share(&census(60, 0), None, config), (40, 0));
        // Above the share with a newcomer holding nothing: a step at a time.
        assert_eq!(share(&census(150, 100), None, config), (0, 10));
        // The last few.
        assert_eq!(share(&census(103, 3), None, config), (0, 3));
        // Nobody has room: keep them rather than let them bounce.
        assert_eq!(share(&census(150, 0), None, config), (0, 0));
        // --max-accounts caps the share.
        assert_eq!(share(&census(0, 0), Some(30), config), (30, 0));
        assert_eq!(share(&census(50, 100), Some(30), config), (0, 10));
    }
}
