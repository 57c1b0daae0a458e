//! Chaos soak: the supervising process `lifeline serve` runs (lifeline-runtime: store, restore,
//! heartbeat, queue) against lifeline-sim while a seeded chaos agent drops, stalls, closes,
//! refuses and slows sessions, and mass-drops the whole fleet now and then. Invariants checked
//! against what the simulator and a recording wrapper around the connector saw, not against the
//! engine's own counters:
//!
//! - at most one live socket per account (the simulator's per-path high-water mark);
//! - zero panics (a panic hook counts them, in any thread or task);
//! - every server-side drop matched by a recorded transition out of `connected`;
//! - connect attempts never above the pacing limit (rate x 1 s + burst) in any 1 s window;
//! - breakers open and close by the rules, replayed from the event log through an independent
//!   model: opens exactly when `threshold` failures fall within `window_s` (or a half-open trial
//!   fails — a trial connection that drops before `stable_after_ms` fails too — with the
//!   cooldown doubled and capped), no attempt while open, one trial when half-open; the
//!   server's "log in again" is no failure, and a link the operator asks for resets it;
//! - after the chaos stops, the whole fleet is connected again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::BoxFuture;
use lifeline_engine::connector::{ConnEvent, ConnectRequest, Connector, Connectors};
use lifeline_engine::model::{AccountKind, NewAccount};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::policy::jitter::Jitter;
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::{Reason, State, StateKind};
use lifeline_engine::supervisor::Supervisor;
use lifeline_engine::{DataDir, Store};
use lifeline_runtime::{Parts, Runtime};
use lifeline_sim::{Fault, Sim};
use lifeline_websocket::WebSocketConnector;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::table::Row;

static PANICS: AtomicU64 = AtomicU64::new(0);
static PANIC_HOOK: std::sync::Once = std::sync::Once::new();

/// Panics so far in this process, in any thread or task (counted from the first call on).
pub(crate) fn panics() -> u64 {
    PANIC_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            previous(info);
        }));
    });
    PANICS.load(Ordering::SeqCst)
}

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub accounts: usize,
    pub duration: Duration,
    pub seed: u64,
}

/// What the soak found: its table rows and every invariant violation, described.
#[derive(Debug, Default)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub violations: Vec<String>,
    pub duplicates: usize,
    pub panics: u64,
}

impl Outcome {
    /// Adds another soak's findings (each counts the panics during its own run).
    pub fn merge(&mut self, other: Outcome) {
        self.rows.extend(other.rows);
        self.violations.extend(other.violations);
        self.duplicates += other.duplicates;
        self.panics += other.panics;
    }
}

/// One connect attempt, as the connector was asked for it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt {
    pub(crate) account: i64,
    pub(crate) at: Instant,
    pub(crate) wall_ms: i64,
}

/// Passes every attempt to the real connector and writes down when it was asked.
#[derive(Debug)]
pub(crate) struct Recording {
    pub(crate) inner: Arc<dyn Connector>,
    pub(crate) log: Arc<Mutex<Vec<Attempt>>>,
}

impl Recording {
    pub(crate) fn attempts(&self) -> Vec<Attempt> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Connector for Recording {
    fn run(
        &self,
        request: ConnectRequest,
        events: mpsc::Sender<ConnEvent>,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        let attempt = Attempt {
            account: request.account.id.0,
            at: Instant::now(),
            wall_ms: chrono::Utc::now().timestamp_millis(),
        };
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(attempt);
        self.inner.run(request, events, cancel)
    }
}

/// Quick timers so a soak of minutes sees many cycles of every rule.
pub(crate) fn soak_policy() -> PolicyConfig {
    let mut p = PolicyConfig::default();
    p.pacing.rate_per_s = 100.0;
    p.pacing.burst = 20;
    p.autorecover.start_delay_ms = 0;
    p.connection.connect_timeout_ms = 2_000;
    p.connection.keepalive_ms = 1_000;
    p.connection.pong_timeout_ms = 1_000;
    p.connection.close_timeout_ms = 1_000;
    p.connection.reconcile_interval_ms = 5_000;
    p.backoff.base_ms = 200;
    p.backoff.cap_ms = 5_000;
    p.backoff.floor_timeout_ms = 200;
    p.backoff.floor_refused_ms = 200;
    p.backoff.floor_closed_ms = 100;
    p.backoff.floor_network_ms = 200;
    p.breaker.threshold = 6;
    p.breaker.window_s = 60;
    p.breaker.cooldown_s = 5;
    p.breaker.max_cooldown_s = 20;
    p
}

/// Fault counts by kind, for the table.
#[derive(Debug, Default)]
struct Injected {
    drops: u64,
    stalls: u64,
    closes: u64,
    fraction_drops: u64,
    mass_drops: u64,
    refusals: u64,
    slow_handshakes: u64,
    flaps: u64,
}

pub async fn run(plan: Plan) -> anyhow::Result<Outcome> {
    let panics_before = panics();
    let n = plan.accounts;
    let policy = soak_policy();
    policy.validate()?;
    let sim = Sim::start("127.0.0.1:0").await?;
    // Every fault reaches every socket: the simulator itself works as hard as the fleet is large.
    sim.fan_out_faults();
    let tmp = tempfile::tempdir()?;
    let dir = DataDir::resolve(Some(tmp.path().to_owned()))?;
    let store = Store::open(&dir).await?;
    store.set_policy(&policy).await?;
    store.set_autorecover(true).await?;
    let mut paths = HashMap::new();
    for i in 0..n {
        let a = store
            .add_account(
                NewAccount::new(AccountKind::Websocket, format!("soak {i}"))
                    .with_url(sim.url(&i.to_string())),
            )
            .await?;
        paths.insert(a.id.0, format!("/s/{i}"));
    }
    let recording = Arc::new(Recording {
        inner: Arc::new(WebSocketConnector),
        log: Arc::default(),
    });
    let parts = Parts {
        connectors: Connectors::new().with(AccountKind::Websocket, recording.clone()),
        secrets: Arc::new(MemorySecretStore::default()),
        webhooks: Default::default(),
    };
    let mut runtime = Runtime::open(&dir, store.clone(), parts).await?;
    let started = Instant::now();
    runtime.start().await?;
    let sup = runtime.supervisor().clone();
    let all_connected = |sup: &Supervisor| {
        sup.views()
            .iter()
            .all(|v| v.state.kind() == StateKind::Connected)
    };
    wait_for(Duration::from_secs(120), || all_connected(&sup))
        .await
        .context("the fleet did not connect before the chaos")?;
    let restore = started.elapsed();
    eprintln!(
        "soak: {n} accounts connected in {restore:.1?}; chaos for {:?}",
        plan.duration
    );

    // Chaos.
    let mut rng = Jitter::seeded(plan.seed);
    let mut injected = Injected::default();
    let flappers = (n / 100).max(1);
    let tick = Duration::from_millis(100);
    let chaos_start = Instant::now();
    let mass_every = plan.duration / 4;
    let mut next_mass = chaos_start + mass_every / 2;
    let mut refusing_until: Option<Instant> = None;
    let mut slow_until: Option<Instant> = None;
    let mut next_report = chaos_start + Duration::from_secs(60);
    let pick = |rng: &mut Jitter| format!("/s/{}", rng.up_to(n as u64 - 1));
    while chaos_start.elapsed() < plan.duration {
        let now = Instant::now();
        let roll = |rng: &mut Jitter, per_mille: u64| rng.up_to(999) < per_mille;
        if roll(&mut rng, 500) {
            sim.inject(Fault::Drop {
                path: Some(pick(&mut rng)),
            });
            injected.drops += 1;
        }
        if roll(&mut rng, 200) {
            sim.inject(Fault::Stall {
                path: Some(pick(&mut rng)),
            });
            injected.stalls += 1;
        }
        if roll(&mut rng, 200) {
            let code = [1000, 1001, 1011][rng.up_to(2) as usize];
            sim.inject(Fault::Close {
                path: Some(pick(&mut rng)),
                code,
            });
            injected.closes += 1;
        }
        if roll(&mut rng, 5) {
            sim.inject(Fault::DropFraction(0.05));
            injected.fraction_drops += 1;
        }
        // A few accounts flap: dropped as soon as they are back, so their breakers must open.
        for i in 0..flappers {
            sim.inject(Fault::Drop {
                path: Some(format!("/s/{i}")),
            });
        }
        injected.flaps += flappers as u64;
        if refusing_until.is_none_or(|u| now >= u) && roll(&mut rng, 3) {
            let secs = 1 + rng.up_to(3);
            sim.refuse_for(Duration::from_secs(secs));
            refusing_until = Some(now + Duration::from_secs(secs));
            injected.refusals += 1;
        }
        match slow_until {
            Some(u) if now >= u => {
                sim.set_handshake_delay(Duration::ZERO);
                slow_until = None;
            }
            None if roll(&mut rng, 3) => {
                // Up to 1.5x the connect timeout: some attempts time out, some just wait.
                sim.set_handshake_delay(Duration::from_millis(200 + rng.up_to(2_800)));
                slow_until = Some(now + Duration::from_secs(2 + rng.up_to(3)));
                injected.slow_handshakes += 1;
            }
            _ => {}
        }
        if now >= next_mass {
            sim.inject(Fault::Drop { path: None });
            injected.mass_drops += 1;
            next_mass += mass_every;
        }
        if now >= next_report {
            let counts = sup.counts();
            eprintln!(
                "soak: {:.0} s of chaos, states {counts:?}, panics {}",
                chaos_start.elapsed().as_secs_f64(),
                panics() - panics_before
            );
            next_report += Duration::from_secs(60);
        }
        tokio::time::sleep(tick).await;
    }

    // Calm: no more faults; stalls still pending are detected within keepalive + pong timeout,
    // open breakers run out within the longest cooldown; then everyone must be back.
    sim.stop_refusing();
    sim.set_handshake_delay(Duration::ZERO);
    let calm = Instant::now();
    let mut violations = Vec::new();
    let limit =
        Duration::from_millis(policy.connection.keepalive_ms + policy.connection.pong_timeout_ms)
            + Duration::from_secs(policy.breaker.max_cooldown_s)
            + Duration::from_secs(30);
    tokio::time::sleep(Duration::from_millis(
        policy.connection.keepalive_ms + policy.connection.pong_timeout_ms + 500,
    ))
    .await;
    violations.extend(all_back(&sup, limit).await);
    let recovered = calm.elapsed();
    sup.flush().await;

    // What the simulator saw.
    let stats = sim.all_stats();
    let duplicates = stats.values().filter(|s| s.max_live > 1).count();
    for (path, s) in stats.iter().filter(|(_, s)| s.max_live > 1) {
        violations.push(format!("{path}: {} live sockets at once", s.max_live));
    }
    let events = load_events(&store).await?;
    let by_path: HashMap<&str, i64> = paths.iter().map(|(id, p)| (p.as_str(), *id)).collect();
    let mut left_connected: HashMap<i64, u64> = HashMap::new();
    for e in &events {
        if e.from == "connected" && e.to.kind() != StateKind::Connected {
            *left_connected.entry(e.account).or_default() += 1;
        }
    }
    let (mut sim_drops, mut unmatched, mut extra) = (0u64, 0u64, 0u64);
    for (path, s) in &stats {
        let Some(id) = by_path.get(path.as_str()) else {
            continue;
        };
        let recorded = left_connected.get(id).copied().unwrap_or(0);
        sim_drops += s.server_drops;
        if recorded < s.server_drops {
            unmatched += s.server_drops - recorded;
            violations.push(format!(
                "{path}: {} server-side drops but {recorded} recorded",
                s.server_drops
            ));
        } else {
            extra += recorded - s.server_drops;
        }
    }

    // Pacing and breakers, from the connector's own log and the event log.
    let attempts = recording.attempts();
    let (busiest, pacing_limit, breaker) =
        pacing_and_breakers(&policy, &events, &attempts, &mut violations);

    runtime.shutdown().await?;
    sim.shutdown();
    let panics = panics() - panics_before;
    if panics > 0 {
        violations.push(format!("{panics} panics"));
    }
    let pacing_floor =
        n.saturating_sub(policy.pacing.burst as usize) as f64 / policy.pacing.rate_per_s;
    let mut rows = vec![
        Row::ratio(
            format!("soak: restore {n} with pacing (vs pacing floor)"),
            restore.as_secs_f64(),
            pacing_floor,
            "s",
            "",
        ),
        Row::value(
            format!(
                "soak: faults ({} drops, {} stalls, {} closes, {} flaps, {} mass)",
                injected.drops,
                injected.stalls,
                injected.closes,
                injected.flaps,
                injected.mass_drops
            ),
            (injected.drops
                + injected.stalls
                + injected.closes
                + injected.flaps
                + injected.mass_drops
                + injected.fraction_drops
                + injected.refusals
                + injected.slow_handshakes) as f64,
            "",
            "",
        ),
        Row::value("soak: server-side drops", sim_drops as f64, "", ""),
        Row::value(
            "soak: drops with no recorded event",
            unmatched as f64,
            "",
            "0",
        ),
        Row::value(
            "soak: client-side ends (stale, timeouts)",
            extra as f64,
            "",
            "",
        ),
        Row::value("soak: connect attempts", attempts.len() as f64, "", ""),
    ];
    rows.extend(pacing_rows(
        "soak",
        &policy,
        busiest,
        pacing_limit,
        &breaker,
    ));
    rows.extend([
        Row::value(
            "soak: all connected again after the chaos",
            recovered.as_secs_f64(),
            "s",
            "",
        ),
        Row::value(
            "soak: invariant violations",
            violations.len() as f64,
            "",
            "0",
        ),
    ]);
    Ok(Outcome {
        rows,
        violations,
        duplicates,
        panics,
    })
}

/// Waits up to `limit` for the whole fleet to be connected; the violation when it is not.
pub(crate) async fn all_back(sup: &Supervisor, limit: Duration) -> Option<String> {
    let all_connected = || {
        sup.views()
            .iter()
            .all(|v| v.state.kind() == StateKind::Connected)
    };
    if wait_for(limit, all_connected).await.is_ok() {
        return None;
    }
    let stuck: Vec<_> = sup
        .views()
        .into_iter()
        .filter(|v| v.state.kind() != StateKind::Connected)
        .take(5)
        .map(|v| format!("{} ({:?})", v.name, v.state))
        .collect();
    Some(format!(
        "fleet not restored {:.0} s after the chaos stopped: e.g. {}",
        limit.as_secs_f64(),
        stuck.join(", ")
    ))
}

/// The busiest second against the pacing limit, and the breakers replayed; violations added.
pub(crate) fn pacing_and_breakers(
    policy: &PolicyConfig,
    events: &[Recorded],
    attempts: &[Attempt],
    violations: &mut Vec<String>,
) -> (usize, usize, BreakerCheck) {
    let pacing_limit = (policy.pacing.rate_per_s + f64::from(policy.pacing.burst)).floor() as usize;
    let busiest = busiest_second(attempts);
    if busiest > pacing_limit {
        violations.push(format!(
            "{busiest} connect attempts within 1 s (pacing allows {pacing_limit})"
        ));
    }
    let breaker = check_breakers(policy, events, attempts);
    violations.extend(breaker.violations.iter().cloned());
    // The history behind the first breach, to read what happened.
    if let Some(account) = breaker.first_account {
        eprintln!("soak: account {account}'s recorded history and attempts (wall ms):");
        for e in events.iter().filter(|e| e.account == account) {
            eprintln!("  {} {} -> {:?}", e.at, e.from, e.to);
        }
        let tried: Vec<i64> = attempts
            .iter()
            .filter(|a| a.account == account)
            .map(|a| a.wall_ms)
            .collect();
        eprintln!("  attempts at {tried:?}");
    }
    (busiest, pacing_limit, breaker)
}

/// The table's rows for pacing and the breakers.
pub(crate) fn pacing_rows(
    prefix: &str,
    policy: &PolicyConfig,
    busiest: usize,
    pacing_limit: usize,
    breaker: &BreakerCheck,
) -> [Row; 4] {
    [
        Row::value(
            format!("{prefix}: most attempts in any 1 s"),
            busiest as f64,
            "",
            format!(
                "<= {pacing_limit} ({}/s + burst {})",
                policy.pacing.rate_per_s, policy.pacing.burst
            ),
        ),
        Row::value(
            format!("{prefix}: breaker opens"),
            breaker.opens as f64,
            "",
            "",
        ),
        Row::value(
            format!("{prefix}: attempts while a breaker was open"),
            breaker.attempts_while_open as f64,
            "",
            "0",
        ),
        Row::value(
            format!("{prefix}: breaker rule violations"),
            breaker.rule_violations as f64,
            "",
            "0",
        ),
    ]
}

pub(crate) async fn wait_for(
    limit: Duration,
    mut done: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let end = Instant::now() + limit;
    while !done() {
        if Instant::now() > end {
            anyhow::bail!("not within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// One recorded transition.
#[derive(Debug, Clone)]
pub(crate) struct Recorded {
    pub(crate) account: i64,
    pub(crate) at: i64,
    pub(crate) from: String,
    pub(crate) to: State,
}

pub(crate) async fn load_events(store: &Store) -> anyhow::Result<Vec<Recorded>> {
    let rows: Vec<(i64, i64, String, String)> =
        sqlx::query_as("SELECT account_id, at, from_state, state_json FROM events ORDER BY id")
            .fetch_all(store.sqlite_pool().context("an SQLite store")?)
            .await?;
    rows.into_iter()
        .map(|(account, at, from, json)| {
            Ok(Recorded {
                account,
                at,
                from,
                to: serde_json::from_str(&json).with_context(|| format!("event state {json}"))?,
            })
        })
        .collect()
}

/// The most attempts that fell within any 1 s window.
pub(crate) fn busiest_second(attempts: &[Attempt]) -> usize {
    let mut times: Vec<Instant> = attempts.iter().map(|a| a.at).collect();
    times.sort();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi] - times[lo] >= Duration::from_secs(1) {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[derive(Debug, Default)]
pub(crate) struct BreakerCheck {
    pub(crate) opens: u64,
    pub(crate) attempts_while_open: u64,
    pub(crate) rule_violations: u64,
    pub(crate) violations: Vec<String>,
    /// The account of the first breach.
    pub(crate) first_account: Option<i64>,
}

/// The breaker's rules as the operator reads them, applied to one account's recorded history.
#[derive(Debug)]
enum Model {
    Closed { failures: Vec<i64> },
    Open { until: i64, cooldown_s: u64 },
    HalfOpen { cooldown_s: u64 },
}

fn is_breaker_pause(s: &State) -> Option<i64> {
    match s {
        State::Paused {
            reason: Reason::BreakerOpen,
            until,
        } => Some(until.map_or(i64::MAX, |u| u.timestamp_millis())),
        _ => None,
    }
}

/// A failure as the breaker counts it: a connect attempt or a live connection that ended badly
/// (the server's "log in again" is an instruction, not a failure).
fn is_failure(e: &Recorded) -> bool {
    match &e.to {
        State::Backoff { reason, .. } => *reason != Reason::RestartRequired,
        to => is_breaker_pause(to).is_some(),
    }
}

pub(crate) fn check_breakers(
    policy: &PolicyConfig,
    events: &[Recorded],
    attempts: &[Attempt],
) -> BreakerCheck {
    let cfg = &policy.breaker;
    let window_ms = cfg.window_s as i64 * 1000;
    let stable_ms = policy.connection.stable_after_ms as i64;
    // Stored times are whole milliseconds taken a moment apart from the breaker's own clock read.
    let slack_ms = 50;
    let mut out = BreakerCheck::default();
    let mut by_account: HashMap<i64, Vec<&Recorded>> = HashMap::new();
    for e in events {
        by_account.entry(e.account).or_default().push(e);
    }
    let mut tries: HashMap<i64, Vec<i64>> = HashMap::new();
    for a in attempts {
        tries.entry(a.account).or_default().push(a.wall_ms);
    }
    let note = |out: &mut BreakerCheck, account: i64, msg: String| {
        out.rule_violations += 1;
        out.first_account.get_or_insert(account);
        if out.violations.len() < 20 {
            out.violations.push(msg);
        }
    };
    for (account, history) in &by_account {
        let tries = tries.get(account).map(Vec::as_slice).unwrap_or(&[]);
        let mut model = Model::Closed {
            failures: Vec::new(),
        };
        // When the account last connected: a connection that has lasted `stable_after_ms` by
        // its next event was a success (a half-open trial passed); one that ended sooner failed.
        let mut connected_at: Option<i64> = None;
        for e in history {
            if let Model::Open { until, cooldown_s } = model
                && e.at + slack_ms >= until
            {
                model = Model::HalfOpen { cooldown_s };
            }
            if let Some(since) = connected_at.take()
                && e.at - since >= stable_ms
                && let Model::HalfOpen { .. } = model
            {
                model = Model::Closed {
                    failures: Vec::new(),
                };
            }
            if e.to.kind() == StateKind::Connected {
                connected_at = Some(e.at);
                continue;
            }
            // A link the operator asked for resets the breaker: a person is there.
            if e.to.kind() == StateKind::Linking {
                model = Model::Closed {
                    failures: Vec::new(),
                };
                continue;
            }
            if !is_failure(e) {
                continue;
            }
            let opened = is_breaker_pause(&e.to);
            // Set when the rules allow either decision (see below).
            let mut either = false;
            let expected_cooldown = match &mut model {
                Model::Closed { failures } => {
                    // A failure within `slack_ms` of the window's edge may fall on either side
                    // of it on the breaker's own clock (it keeps nanoseconds, the log keeps
                    // milliseconds): opening or not are both within the rules then.
                    failures.retain(|t| *t > e.at - window_ms - slack_ms);
                    failures.push(e.at);
                    let threshold = cfg.threshold as usize;
                    let surely = failures
                        .iter()
                        .filter(|t| **t > e.at - window_ms + slack_ms)
                        .count();
                    either = surely < threshold && failures.len() >= threshold;
                    (failures.len() >= threshold).then_some(cfg.cooldown_s)
                }
                Model::HalfOpen { cooldown_s } => {
                    Some(cooldown_s.saturating_mul(2).min(cfg.max_cooldown_s))
                }
                Model::Open { .. } => {
                    note(
                        &mut out,
                        *account,
                        format!(
                            "account {account}: a failure recorded while its breaker was open (at {})",
                            e.at
                        ),
                    );
                    None
                }
            };
            match (opened, expected_cooldown) {
                (Some(until), Some(cooldown_s)) => {
                    out.opens += 1;
                    let got = until - e.at;
                    if (got - cooldown_s as i64 * 1000).abs() > 1000 {
                        note(
                            &mut out,
                            *account,
                            format!(
                                "account {account}: breaker opened for {got} ms, the rules say {cooldown_s} s"
                            ),
                        );
                    }
                    let during = tries
                        .iter()
                        .filter(|t| **t > e.at + slack_ms && **t + slack_ms < until)
                        .count();
                    if during > 0 {
                        out.attempts_while_open += during as u64;
                        note(
                            &mut out,
                            *account,
                            format!(
                                "account {account}: {during} attempts while its breaker was open"
                            ),
                        );
                    }
                    model = Model::Open { until, cooldown_s };
                }
                (Some(_), None) => {
                    out.opens += 1;
                    note(
                        &mut out,
                        *account,
                        format!(
                            "account {account}: breaker opened at {} before the rules allow",
                            e.at
                        ),
                    );
                }
                (None, Some(_)) if either => {}
                (None, Some(_)) => note(
                    &mut out,
                    *account,
                    format!(
                        "account {account}: breaker stayed closed at {} when the rules open it",
                        e.at
                    ),
                ),
                (None, None) => {}
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn policy() -> PolicyConfig {
        soak_policy()
    }

    fn ev(account: i64, at: i64, from: &str, to: State) -> Recorded {
        Recorded {
            account,
            at,
            from: from.into(),
            to,
        }
    }

    fn backoff() -> State {
        State::Backoff {
            attempt: 1,
            retry_at: chrono::Utc::now(),
            reason: Reason::Stalled,
        }
    }

    fn open(until_ms: i64) -> State {
        State::Paused {
            reason: Reason::BreakerOpen,
            until: chrono::Utc.timestamp_millis_opt(until_ms).single(),
        }
    }

    #[test]
    fn the_busiest_second_counts_a_sliding_window() {
        let t0 = Instant::now();
        let at = |ms: u64| Attempt {
            account: 1,
            at: t0 + Duration::from_millis(ms),
            wall_ms: 0,
        };
        let attempts: Vec<_> = [0, 100, 900, 999, 1000, 1500, 1899, 1900]
            .into_iter()
            .map(at)
            .collect();
        // 900, 999, 1000, 1500, 1899 lie within one second; 1900 is a full second after 900.
        assert_eq!(busiest_second(&attempts), 5);
        assert_eq!(busiest_second(&[]), 0);
    }

    #[test]
    fn the_breaker_replay_accepts_the_rules_and_flags_breaches() {
        let p = policy();
        let threshold = p.breaker.threshold as i64;
        // Opens on the 6th failure within the window, for cooldown_s; the trial fails and it
        // reopens for twice as long; then a trial succeeds.
        let mut events: Vec<_> = (0..threshold - 1)
            .map(|i| ev(1, i * 1000, "connected", backoff()))
            .collect();
        let t_open = (threshold - 1) * 1000;
        events.push(ev(1, t_open, "connected", open(t_open + 5_000)));
        events.push(ev(1, t_open + 5_100, "connecting", open(t_open + 15_100)));
        events.push(ev(1, t_open + 15_200, "connecting", State::Connected));
        let attempts = vec![
            Attempt {
                account: 1,
                at: Instant::now(),
                wall_ms: t_open + 5_050,
            },
            Attempt {
                account: 1,
                at: Instant::now(),
                wall_ms: t_open + 15_150,
            },
        ];
        let ok = check_breakers(&p, &events, &attempts);
        assert_eq!(ok.opens, 2);
        assert_eq!(ok.rule_violations, 0, "{:?}", ok.violations);

        // An attempt in the middle of the cooldown is caught.
        let mut sneaky = attempts.clone();
        sneaky.push(Attempt {
            account: 1,
            at: Instant::now(),
            wall_ms: t_open + 2_000,
        });
        let bad = check_breakers(&p, &events, &sneaky);
        assert_eq!(bad.attempts_while_open, 1, "{:?}", bad.violations);

        // Opening one failure early is caught, and so is not opening at the threshold.
        let early: Vec<_> = events
            .iter()
            .skip(1)
            .map(|e| ev(e.account, e.at, &e.from, e.to.clone()))
            .collect();
        assert!(check_breakers(&p, &early, &attempts).rule_violations > 0);
        let mut late: Vec<_> = (0..threshold)
            .map(|i| ev(2, i * 1000, "connected", backoff()))
            .collect();
        late.push(ev(2, threshold * 1000, "connected", backoff()));
        assert!(check_breakers(&p, &late, &[]).rule_violations > 0);
        // Failures spread wider than the window never open it.
        let spread: Vec<_> = (0..20)
            .map(|i| ev(3, i * 20_000, "connected", backoff()))
            .collect();
        assert_eq!(check_breakers(&p, &spread, &[]).rule_violations, 0);

        // A trial connection that drops before it lasted fails the trial: the breaker reopens
        // for twice the cooldown (capped), and staying closed instead breaks the rules. A trial
        // connection that lasted closed it: its drop is a first failure.
        let trial = t_open + 15_200;
        let short = p.connection.stable_after_ms as i64 / 2;
        let reopened = (p.breaker.cooldown_s * 4).min(p.breaker.max_cooldown_s) as i64 * 1000;
        let mut flap = events.clone();
        flap.push(ev(
            1,
            trial + short,
            "connected",
            open(trial + short + reopened),
        ));
        let r = check_breakers(&p, &flap, &attempts);
        assert_eq!(r.rule_violations, 0, "{:?}", r.violations);
        let mut reset = events.clone();
        reset.push(ev(1, trial + short, "connected", backoff()));
        assert!(check_breakers(&p, &reset, &attempts).rule_violations > 0);
        let mut lasted = events.clone();
        let stable = p.connection.stable_after_ms as i64;
        lasted.push(ev(1, trial + stable, "connected", backoff()));
        let r = check_breakers(&p, &lasted, &attempts);
        assert_eq!(r.rule_violations, 0, "{:?}", r.violations);
    }

    #[test]
    fn a_failure_on_the_window_s_edge_may_count_either_way() {
        let p = policy();
        let threshold = p.breaker.threshold as i64;
        let window = p.breaker.window_s as i64 * 1000;
        // The first failure lies exactly one window before the last, to the millisecond.
        let mut events: Vec<_> = (0..threshold - 1)
            .map(|i| ev(5, i * 1000, "connected", backoff()))
            .collect();
        let last = window;
        let mut opened = events.clone();
        opened.push(ev(5, last, "connected", open(last + 5_000)));
        let r = check_breakers(&p, &opened, &[]);
        assert_eq!(r.rule_violations, 0, "{:?}", r.violations);
        events.push(ev(5, last, "connected", backoff()));
        let r = check_breakers(&p, &events, &[]);
        assert_eq!(r.rule_violations, 0, "{:?}", r.violations);
        // A second later the first failure is surely out: opening then breaks the rules.
        let mut late: Vec<_> = (0..threshold - 1)
            .map(|i| ev(6, i * 1000, "connected", backoff()))
            .collect();
        late.push(ev(6, last + 1_000, "connected", open(last + 6_000)));
        assert!(check_breakers(&p, &late, &[]).rule_violations > 0);
    }

    #[test]
    fn the_breaker_replay_skips_log_in_again_and_restarts_after_a_link() {
        let p = policy();
        let threshold = p.breaker.threshold as i64;
        let restart = State::Backoff {
            attempt: 0,
            retry_at: chrono::Utc::now(),
            reason: Reason::RestartRequired,
        };
        // One failure short of the threshold, then any number of "log in again": still closed.
        let mut events: Vec<_> = (0..threshold - 1)
            .map(|i| ev(4, i * 1000, "connected", backoff()))
            .collect();
        events.extend((0..5).map(|i| ev(4, 10_000 + i * 100, "connected", restart.clone())));
        let r = check_breakers(&p, &events, &[]);
        assert_eq!(r.rule_violations, 0, "{:?}", r.violations);
        // Counted as failures, they would have opened it.
        let mut counted = events.clone();
        counted.push(ev(4, 11_000, "connected", backoff()));
        assert!(check_breakers(&p, &counted, &[]).rule_violations > 0);
        // A link in between starts the count again.
        let mut relinked = events.clone();
        relinked.push(ev(4, 10_800, "connecting", State::Linking));
        relinked.push(ev(4, 11_000, "connected", backoff()));
        let r = check_breakers(&p, &relinked, &[]);
        assert_eq!(r.rule_violations, 0, "{:?}", r.violations);
    }
}
