//! WhatsApp chaos soak: N WhatsApp accounts linked once through the offline protocol peer
//! (lifeline-wa-peer) and supervised as `lifeline serve` supervises them (lifeline-runtime, the
//! real whatsapp-rust client), then minutes of the failures real fleets see, at rate and mixed:
//! drops, stalls, "log in again" (515), conflict/replaced, logout (401), temporary bans (402),
//! outdated (405), mass drops, a fraction of the fleet dropped, refused connections, slow
//! handshakes, login answers delayed or unreadable, and a few accounts that flap. Now and then an
//! "operator" answers what only a person may answer (a replaced or outdated account started
//! again, a logged-out one linked again by QR, the service dropping that link now and then).
//!
//! Invariants, checked against what the peer and a recording wrapper around the connector saw:
//! - never two concurrent logins for one number (the peer's per-number high-water mark);
//! - no registration (a new link) but those the operator asked for: no account falls back to a
//!   QR code by itself;
//! - replaced, logged out and outdated never retried before the operator acts;
//! - no login while a ban the client was told of runs;
//! - connect attempts within pacing in every 1 s window;
//! - breakers open and close by the rules (the same replay as the WebSocket soak);
//! - every session the service cut recorded as a transition out of `connected`;
//! - a session the peer stopped answering found within keepalive + pong timeout;
//! - zero panics; after the chaos, every account connected again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use lifeline_engine::connector::{Connectors, LinkMode};
use lifeline_engine::model::{AccountId, AccountKind, NewAccount};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::policy::jitter::Jitter;
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::{State, StateKind};
use lifeline_engine::supervisor::{Supervisor, Update};
use lifeline_engine::{DataDir, Store};
use lifeline_runtime::{Parts, Runtime};
use lifeline_wa_peer::{Config, Fault, Peer};
use lifeline_whatsapp::{Endpoint, WhatsAppConnector};

use crate::soak::{
    Outcome, Plan, Recording, all_back, load_events, pacing_and_breakers, pacing_rows, panics,
    soak_policy, wait_for,
};
use crate::table::Row;

/// The WebSocket soak's quick timers, paced as a WhatsApp fleet would be (slower than sockets
/// to a simulator, still fast enough to see many cycles in minutes).
fn policy() -> PolicyConfig {
    let mut p = soak_policy();
    p.pacing.rate_per_s = 20.0;
    p.pacing.burst = 10;
    p
}

/// What only a person may answer, and when the soak's operator will.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// Replaced or outdated: start it again (after the service lifted "outdated").
    Start,
    /// Logged out: link again by QR (a registration the operator asked for).
    Relink,
}

/// A fault only a person may answer, injected at `at` on `account`'s live session.
#[derive(Debug, Clone, Copy)]
struct Held {
    account: i64,
    at: Instant,
    needs: Needs,
}

/// Shared between the chaos loop and the operator's tasks.
#[derive(Debug, Default)]
struct Book {
    /// Each account's current number (a new link brings a new one).
    numbers: HashMap<i64, String>,
    /// Every number an account has had, to its account.
    owners: HashMap<String, i64>,
    /// When the operator acted on each held account (its first attempt is allowed from then).
    acted: HashMap<i64, Vec<Instant>>,
    /// Links the operator asked for.
    links_asked: u64,
    relinks: u64,
    relink_failures: u64,
}

type Shared = Arc<Mutex<Book>>;

fn book(b: &Shared) -> std::sync::MutexGuard<'_, Book> {
    b.lock().unwrap_or_else(|p| p.into_inner())
}

fn state_of(sup: &Supervisor, id: i64) -> Option<State> {
    sup.view(AccountId(id)).map(|v| v.state)
}

/// Links `id` by QR as the operator would: asks for a code, lets the peer's phone scan the
/// first one, waits for the account to connect. Returns the new number.
async fn link(sup: &Supervisor, peer: &Peer, shared: &Shared, id: i64) -> anyhow::Result<String> {
    let mut updates = sup.subscribe();
    book(shared).links_asked += 1;
    sup.request_link(AccountId(id), LinkMode::Qr).await?;
    let code = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match updates.recv().await {
                Ok(Update::Link { account, code }) if account.0 == id => return Ok(code),
                // This link attempt failed (the service dropped it, refused it, ...).
                Ok(Update::Transitions(events))
                    if events.iter().any(|e| {
                        e.account_id.0 == id
                            && e.from != StateKind::NeedsOperator
                            && e.to.kind() == StateKind::NeedsOperator
                    }) =>
                {
                    bail!("account {id}: linking ended before a code showed");
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => return Err(anyhow::anyhow!("updates ended: {e}")),
            }
        }
    })
    .await
    .with_context(|| format!("account {id}: no linking code within 60 s"))??;
    let number = peer.scan(&code.code)?;
    wait_for(Duration::from_secs(60), || {
        state_of(sup, id) == Some(State::Connected)
            || state_of(sup, id).is_some_and(|s| s.kind() == StateKind::NeedsOperator)
    })
    .await
    .with_context(|| format!("account {id}: not connected within 60 s of the scan"))?;
    if state_of(sup, id) != Some(State::Connected) {
        bail!("account {id}: the link failed ({:?})", state_of(sup, id));
    }
    let mut b = book(shared);
    b.numbers.insert(id, number.clone());
    b.owners.insert(number.clone(), id);
    Ok(number)
}

/// The operator answering a held account, a few seconds after it needed them.
/// Returns false when the account never came to need a person: the fault reached a session
/// that another fault had just ended (the service's "replaced" then told nobody), so there was
/// nothing for the operator to answer.
async fn operator(sup: Supervisor, peer: Peer, shared: Shared, held: Held) -> bool {
    // Wait until the account says it needs a person (after a breaker's cooldown at the most).
    let needs_person = wait_for(Duration::from_secs(60), || {
        state_of(&sup, held.account).is_some_and(|s| s.kind() == StateKind::NeedsOperator)
    })
    .await
    .is_ok();
    if needs_person {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    book(&shared)
        .acted
        .entry(held.account)
        .or_default()
        .push(Instant::now());
    if !needs_person {
        return false;
    }
    match held.needs {
        Needs::Start => {
            let number = book(&shared).numbers.get(&held.account).cloned();
            if let Some(n) = number {
                peer.pardon(&n);
            }
            let _ = sup.start(AccountId(held.account)).await;
        }
        Needs::Relink => {
            // The service may drop the link under the operator; they try again.
            for _ in 0..5 {
                match link(&sup, &peer, &shared, held.account).await {
                    Ok(_) => {
                        book(&shared).relinks += 1;
                        return true;
                    }
                    Err(e) => {
                        book(&shared).relink_failures += 1;
                        eprintln!("soak wa: relink: {e:#}; the operator tries again");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        book(&shared)
                            .acted
                            .entry(held.account)
                            .or_default()
                            .push(Instant::now());
                    }
                }
            }
        }
    }
    true
}

/// Fault counts by kind, for the table.
#[derive(Debug, Default)]
struct Injected {
    drops: u64,
    stalls: u64,
    restarts: u64,
    bans: u64,
    held: u64,
    fraction_drops: u64,
    mass_drops: u64,
    refusals: u64,
    slow: u64,
    flaps: u64,
}

impl Injected {
    fn total(&self) -> u64 {
        self.drops
            + self.stalls
            + self.restarts
            + self.bans
            + self.held
            + self.fraction_drops
            + self.mass_drops
            + self.refusals
            + self.slow
            + self.flaps
    }
}

pub async fn run(plan: Plan) -> anyhow::Result<Outcome> {
    let panics_before = panics();
    let n = plan.accounts;
    let policy = policy();
    policy.validate()?;
    let peer = Peer::start("127.0.0.1:0", Config::default()).await?;
    let tmp = tempfile::tempdir()?;
    if std::env::var_os("LIFELINE_SOAK_KEEP").is_some() {
        eprintln!("soak wa: store kept in {}", tmp.path().display());
    }
    let dir = DataDir::resolve(Some(tmp.path().to_owned()))?;
    let store = Store::open(&dir).await?;
    store.set_policy(&policy).await?;
    store.set_autorecover(true).await?;
    for i in 0..n {
        let mut new = NewAccount::new(AccountKind::Whatsapp, format!("wa soak {i}"));
        new.desired_running = false;
        store.add_account(new.validate()?).await?;
    }
    let endpoint = Endpoint {
        url: Some(peer.url()),
        version: Some((2, 3000, 1_000_000_000)),
    };
    let recording = Arc::new(Recording {
        inner: Arc::new(WhatsAppConnector::new(dir.root(), endpoint)),
        log: Arc::default(),
    });
    let parts = Parts {
        connectors: Connectors::new().with(AccountKind::Whatsapp, recording.clone()),
        secrets: Arc::new(MemorySecretStore::default()),
        webhooks: Default::default(),
    };
    let mut runtime = Runtime::open(&dir, store.clone(), parts).await?;
    runtime.start().await?;
    let sup = runtime.supervisor().clone();
    let ids: Vec<i64> = {
        let mut v: Vec<i64> = sup.views().iter().map(|v| v.id.0).collect();
        v.sort_unstable();
        v
    };

    // Link every account once, a wave at a time (as an operator with a pile of phones would).
    let shared: Shared = Arc::default();
    let started = Instant::now();
    for wave in ids.chunks(20) {
        let links = wave.iter().map(|id| link(&sup, &peer, &shared, *id));
        for r in futures_util::future::join_all(links).await {
            r?;
        }
    }
    let linked_in = started.elapsed();
    let registrations_at_link = peer.stats().registrations;
    book(&shared).links_asked = 0;
    eprintln!(
        "soak wa: {n} WhatsApp accounts linked in {linked_in:.1?} ({registrations_at_link} registrations); chaos for {:?}",
        plan.duration
    );

    // Chaos.
    let mut rng = Jitter::seeded(plan.seed);
    let mut injected = Injected::default();
    let mut held: Vec<Held> = Vec::new();
    // Stalls on live sessions: (account, wall ms when injected).
    let mut stalls: Vec<(i64, i64)> = Vec::new();
    let flappers: Vec<i64> = ids.iter().take((n / 100).max(1)).copied().collect();
    let tick = Duration::from_millis(100);
    let chaos_start = Instant::now();
    let mass_every = plan.duration / 4;
    let mut next_mass = chaos_start + mass_every / 2;
    let mut refusing_until: Option<Instant> = None;
    let mut slow_until: Option<Instant> = None;
    let mut next_report = chaos_start + Duration::from_secs(30);
    let mut operators = Vec::new();
    while chaos_start.elapsed() < plan.duration {
        let now = Instant::now();
        let roll = |rng: &mut Jitter, per_mille: u64| rng.up_to(999) < per_mille;
        // A random account whose number has a live session now (faults hit live sessions).
        let pick = |rng: &mut Jitter| -> Option<(i64, String)> {
            let id = ids[rng.up_to(n as u64 - 1) as usize];
            let number = book(&shared).numbers.get(&id).cloned()?;
            (peer.live_sessions(&number) > 0).then_some((id, number))
        };
        // What only a person answers: rare, never twice on one account at a time, and first in
        // the tick so that this tick's other faults do not end the session before it lands.
        let pending = |id: i64| {
            let b = book(&shared);
            held.iter().any(|h| {
                h.account == id
                    && !b
                        .acted
                        .get(&id)
                        .is_some_and(|times| times.iter().any(|t| *t > h.at))
            })
        };
        if roll(&mut rng, 16)
            && let Some((id, number)) = pick(&mut rng)
            && !pending(id)
        {
            let (fault, needs) = match rng.up_to(3) {
                0 | 1 => (Fault::Replaced, Needs::Start),
                2 => (Fault::Outdated, Needs::Start),
                _ => (Fault::LoggedOut, Needs::Relink),
            };
            if peer.inject(&number, fault) > 0 {
                let h = Held {
                    account: id,
                    at: now,
                    needs,
                };
                held.push(h);
                injected.held += 1;
                operators.push(tokio::spawn(operator(
                    sup.clone(),
                    peer.clone(),
                    shared.clone(),
                    h,
                )));
            }
        }
        if roll(&mut rng, 300)
            && let Some((_, number)) = pick(&mut rng)
        {
            injected.drops += peer.inject(&number, Fault::Close) as u64;
        }
        if roll(&mut rng, 100)
            && let Some((id, number)) = pick(&mut rng)
            && peer.inject(&number, Fault::Stall) > 0
        {
            stalls.push((id, chrono::Utc::now().timestamp_millis()));
            injected.stalls += 1;
        }
        if roll(&mut rng, 80)
            && let Some((_, number)) = pick(&mut rng)
        {
            injected.restarts += peer.inject(&number, Fault::RestartRequired) as u64;
        }
        if roll(&mut rng, 15)
            && let Some((_, number)) = pick(&mut rng)
        {
            let expire_secs = 2 + rng.up_to(3);
            let ban = Fault::Banned {
                code: 101,
                expire_secs,
            };
            injected.bans += peer.inject(&number, ban) as u64;
        }
        if roll(&mut rng, 5) {
            peer.inject_fraction(Fault::Close, 0.05);
            injected.fraction_drops += 1;
        }
        if roll(&mut rng, 2) {
            // Only relinks are linking: the service dropping a link under the operator.
            peer.drop_linking();
        }
        // A few accounts flap: dropped as soon as they are back, so their breakers must open.
        for id in &flappers {
            let number = book(&shared).numbers.get(id).cloned();
            if let Some(number) = number {
                injected.flaps += peer.inject(&number, Fault::Close) as u64;
            }
        }
        if refusing_until.is_none_or(|u| now >= u) && roll(&mut rng, 3) {
            let secs = 1 + rng.up_to(2);
            peer.refuse_for(Duration::from_secs(secs));
            refusing_until = Some(now + Duration::from_secs(secs));
            injected.refusals += 1;
        }
        match slow_until {
            Some(u) if now >= u => {
                peer.set_handshake_delay(Duration::ZERO);
                peer.set_login_delay(Duration::ZERO);
                peer.garble_logins(0.0);
                slow_until = None;
            }
            None if roll(&mut rng, 6) => {
                match rng.up_to(2) {
                    // Up to 1.5x the connect timeout: some attempts time out, some just wait.
                    0 => peer.set_handshake_delay(Duration::from_millis(200 + rng.up_to(2_800))),
                    1 => peer.set_login_delay(Duration::from_millis(200 + rng.up_to(1_500))),
                    _ => peer.garble_logins(0.2),
                }
                slow_until = Some(now + Duration::from_secs(2 + rng.up_to(2)));
                injected.slow += 1;
            }
            _ => {}
        }
        if now >= next_mass {
            injected.mass_drops += 1;
            peer.inject_all(Fault::Close);
            next_mass += mass_every;
        }
        if now >= next_report {
            eprintln!(
                "soak wa: {:.0} s of chaos, states {:?}, panics {}",
                chaos_start.elapsed().as_secs_f64(),
                sup.counts(),
                panics() - panics_before
            );
            next_report += Duration::from_secs(30);
        }
        tokio::time::sleep(tick).await;
    }

    // Calm: the service behaves again; the operator finishes what they started; then every
    // account must be back.
    peer.calm();
    let calm = Instant::now();
    let mut violations = Vec::new();
    // Held faults that never reached anyone are left out of the check below.
    let mut reached = Vec::new();
    for (h, op) in held.iter().zip(operators) {
        match op.await {
            Ok(true) => reached.push(*h),
            Ok(false) => {}
            Err(e) => violations.push(format!("an operator task failed: {e}")),
        }
    }
    let limit =
        Duration::from_millis(policy.connection.keepalive_ms + policy.connection.pong_timeout_ms)
            + Duration::from_secs(policy.breaker.max_cooldown_s)
            + Duration::from_secs(60);
    violations.extend(all_back(&sup, limit).await);
    let recovered = calm.elapsed();
    sup.flush().await;

    // What the peer saw, number by number.
    let numbers = peer.number_stats();
    let stats = peer.stats();
    let book = std::mem::take(&mut *book(&shared));
    let doubled: Vec<_> = numbers
        .iter()
        .filter(|(_, s)| s.max_concurrent > 1)
        .collect();
    for (number, s) in doubled.iter().take(10) {
        let when = s.first_overlap.map_or(0.0, |t| {
            t.saturating_duration_since(chaos_start).as_secs_f64()
        });
        let wall_ms = s.first_overlap.map_or(0, |t| {
            chrono::Utc::now().timestamp_millis() - t.elapsed().as_millis() as i64
        });
        violations.push(format!(
            "number {number} (account {:?}): {} concurrent logins, first {when:.1} s into the chaos (at {wall_ms})",
            book.owners.get(*number),
            s.max_concurrent
        ));
    }
    let registrations_after = stats.registrations - registrations_at_link;
    if registrations_after > book.links_asked {
        violations.push(format!(
            "{registrations_after} registrations after linking, the operator asked for {}",
            book.links_asked
        ));
    }
    let banned_connects: u64 = numbers.values().map(|s| s.connects_while_banned).sum();
    if banned_connects > 0 {
        violations.push(format!(
            "{banned_connects} logins during a ban the client had been told of"
        ));
    }

    // Held accounts: no attempt between the fault and the operator's action.
    let attempts = recording.attempts();
    let mut retried_alone = 0u64;
    for h in &reached {
        let acted = book
            .acted
            .get(&h.account)
            .and_then(|times| times.iter().find(|t| **t > h.at).copied());
        let alone = attempts
            .iter()
            .filter(|a| a.account == h.account && a.at > h.at && acted.is_none_or(|t| a.at < t))
            .count() as u64;
        if alone > 0 {
            retried_alone += alone;
            violations.push(format!(
                "account {}: {alone} attempts after a {:?} fault before the operator acted",
                h.account, h.needs
            ));
        }
    }

    // Every server-side cut recorded; stalls found in time.
    let events = load_events(&store).await?;
    // A cut lands on a session the service has let in, which the client may not have reported
    // as connected yet (the login's answer was on its way): it must end that attempt or that
    // connection, either way a recorded transition.
    let mut ended: HashMap<i64, u64> = HashMap::new();
    for e in &events {
        let live = matches!(e.from.as_str(), "connected" | "connecting" | "linking");
        let still = matches!(
            e.to.kind(),
            StateKind::Connected | StateKind::Connecting | StateKind::Linking
        );
        if live && !still {
            *ended.entry(e.account).or_default() += 1;
        }
    }
    let mut cuts_by_account: HashMap<i64, u64> = HashMap::new();
    for (number, s) in &numbers {
        match book.owners.get(number) {
            Some(id) => *cuts_by_account.entry(*id).or_default() += s.server_cuts,
            None => violations.push(format!("number {number}: logged in but never linked")),
        }
    }
    let (mut server_cuts, mut unmatched) = (0u64, 0u64);
    for (id, cuts) in &cuts_by_account {
        server_cuts += cuts;
        let recorded = ended.get(id).copied().unwrap_or(0);
        if recorded < *cuts {
            unmatched += cuts - recorded;
            violations.push(format!(
                "account {id}: {cuts} sessions cut by the service but {recorded} recorded ends"
            ));
        }
    }
    let keep = policy.connection.keepalive_ms + policy.connection.pong_timeout_ms;
    // The recorded time follows the socket's close (bounded by 3/4 of the close timeout).
    let stall_bound = keep as i64 + policy.connection.close_timeout_ms as i64;
    let mut slowest_stall = 0i64;
    for (account, at) in &stalls {
        // The session may still have been logging in when it stopped answering.
        let found = events
            .iter()
            .find(|e| {
                e.account == *account
                    && e.at >= *at
                    && matches!(e.from.as_str(), "connected" | "connecting")
                    && e.to.kind() != StateKind::Connected
            })
            .map(|e| e.at - at);
        match found {
            Some(ms) => {
                slowest_stall = slowest_stall.max(ms);
                if ms > stall_bound {
                    violations.push(format!(
                        "account {account}: a stalled session found after {ms} ms (bound {stall_bound} ms)"
                    ));
                }
            }
            None => violations.push(format!(
                "account {account}: a stalled session was never found"
            )),
        }
    }

    // Pacing and breakers, as for WebSocket accounts.
    let (busiest, pacing_limit, breaker) =
        pacing_and_breakers(&policy, &events, &attempts, &mut violations);

    runtime.shutdown().await?;
    peer.shutdown();
    if std::env::var_os("LIFELINE_SOAK_KEEP").is_some() {
        let _ = tmp.keep();
    }
    let panics = panics() - panics_before;
    if panics > 0 {
        violations.push(format!("{panics} panics"));
    }
    let mut rows = vec![
        Row::value(
            format!("soak wa: link {n} WhatsApp accounts by QR"),
            linked_in.as_secs_f64(),
            "s",
            "",
        ),
        Row::value(
            format!(
                "soak wa: faults ({} drops, {} stalls, {} 515, {} bans, {} for a person, {} flaps, {} mass)",
                injected.drops,
                injected.stalls,
                injected.restarts,
                injected.bans,
                injected.held,
                injected.flaps,
                injected.mass_drops
            ),
            injected.total() as f64,
            "",
            "",
        ),
        Row::value(
            "soak wa: sessions cut by the service",
            server_cuts as f64,
            "",
            "",
        ),
        Row::value(
            "soak wa: cuts with no recorded event",
            unmatched as f64,
            "",
            "0",
        ),
        Row::value(
            "soak wa: most concurrent logins of one number",
            numbers
                .values()
                .map(|s| s.max_concurrent)
                .max()
                .unwrap_or(0) as f64,
            "",
            "<= 1",
        ),
        Row::value(
            format!(
                "soak wa: registrations after linking ({} relinks, {} links cut short)",
                book.relinks, book.relink_failures
            ),
            registrations_after as f64,
            "",
            format!("<= {} asked", book.links_asked),
        ),
        Row::value(
            "soak wa: attempts before the operator (replaced, logged out, outdated)",
            retried_alone as f64,
            "",
            "0",
        ),
        Row::value(
            "soak wa: logins during a known ban",
            banned_connects as f64,
            "",
            "0",
        ),
        Row::value(
            "soak wa: slowest stall found",
            slowest_stall as f64,
            "ms",
            format!("<= {stall_bound} ms"),
        ),
        Row::value("soak wa: connect attempts", attempts.len() as f64, "", ""),
        Row::value(
            "soak wa: refused, garbled logins",
            (stats.refused_connections + stats.garbled_logins) as f64,
            "",
            "",
        ),
    ];
    rows.extend(pacing_rows(
        "soak wa",
        &policy,
        busiest,
        pacing_limit,
        &breaker,
    ));
    rows.extend([
        Row::value(
            "soak wa: all connected again after the chaos",
            recovered.as_secs_f64(),
            "s",
            "",
        ),
        Row::value(
            "soak wa: invariant violations",
            violations.len() as f64,
            "",
            "0",
        ),
    ]);
    Ok(Outcome {
        rows,
        violations,
        duplicates: doubled.len(),
        panics,
    })
}
