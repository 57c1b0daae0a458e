//! TikTok creators: polling load against the configured budget, how soon a live that starts is
//! joined against the poll interval, and memory per watched creator and per joined live. The
//! supervisor runs the real TikTok connector against the offline fake TikTok (lifeline-sim) on
//! 127.0.0.1, in this process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use lifeline_engine::clock::Clock;
use lifeline_engine::connector::Connectors;
use lifeline_engine::model::{AccountKind, NewAccount};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::secrets::MemorySecretStore;
use lifeline_engine::state::StateKind;
use lifeline_engine::store::Store;
use lifeline_engine::supervisor::{Supervisor, SupervisorDeps};
use lifeline_sim::tiktok::{FakeTikTok, RequestKind};
use lifeline_tiktok::TikTokConnector;
use lifeline_tiktok::api::Endpoints;
use lifeline_tiktok::pace::Budget;

use crate::supervise::rss_kb;
use crate::table::{Row, percentile};

#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Creators watched.
    pub creators: usize,
    /// Of them, live at once.
    pub lives: usize,
    pub poll_interval: Duration,
    pub requests_per_minute: u32,
    /// How long polling is measured while every creator waits.
    pub window: Duration,
}

pub async fn run(plan: Plan) -> anyhow::Result<Vec<Row>> {
    ensure!(
        plan.lives <= plan.creators && plan.creators > 0,
        "lives must be at most the creators"
    );
    let tmp = tempfile::tempdir()?;
    let fake = FakeTikTok::start().await.context("fake TikTok")?;
    let store = Store::open_path(&tmp.path().join("bench.db")).await?;
    let users: Vec<String> = (0..plan.creators).map(|i| format!("bench{i:05}")).collect();
    for u in &users {
        fake.add_creator(u, u);
        store
            .add_account(NewAccount::new(AccountKind::Tiktok, u.clone()).with_url(format!("@{u}")))
            .await?;
    }
    let budget = Budget {
        requests_per_minute: plan.requests_per_minute,
        poll_interval: plan.poll_interval,
        ..Budget::default()
    };
    let connector = TikTokConnector::new(Endpoints::at(url::Url::parse(&fake.url())?), budget)?;
    let mut policy = PolicyConfig::default();
    policy.autorecover.start_delay_ms = 0;
    policy.autorecover.concurrency = 256;
    policy.pacing.rate_per_s = 1000.0;
    policy.pacing.burst = 100;
    let rss_base = rss_kb();
    let sup = Supervisor::new(SupervisorDeps {
        store: store.clone(),
        connectors: Connectors::new().with(AccountKind::Tiktok, Arc::new(connector)),
        secrets: Arc::new(MemorySecretStore::default()),
        clock: Clock::System,
        policy,
        jitter_seed: Some(3),
    });
    sup.startup(None, None).await?;
    let waiting = || {
        sup.views()
            .iter()
            .filter(|v| v.state.kind() == StateKind::Waiting)
            .count()
    };
    wait_for(
        plan.poll_interval * 4 + Duration::from_secs(30),
        "every creator waiting",
        || waiting() == plan.creators,
    )
    .await?;
    // Polling while everyone waits: requests per minute over the window.
    let start = Instant::now();
    let before = fake.requests().len();
    tokio::time::sleep(plan.window).await;
    let polled = fake.requests().len() - before;
    let per_minute = polled as f64 * 60.0 / start.elapsed().as_secs_f64();
    let rss_waiting = rss_kb();

    // Lives starting together: from the fake's go-live to the account's feed open.
    let mut joined = Vec::with_capacity(plan.lives);
    let started: Vec<(usize, Instant)> = (0..plan.lives)
        .map(|i| {
            let u = &users[i * plan.creators / plan.lives.max(1)];
            fake.go_live(u);
            (i * plan.creators / plan.lives.max(1), Instant::now())
        })
        .collect();
    let deadline = Instant::now() + plan.poll_interval * 3 + Duration::from_secs(30);
    let mut pending = started.clone();
    while !pending.is_empty() {
        ensure!(
            Instant::now() < deadline,
            "{} lives never joined",
            pending.len()
        );
        pending.retain(|(i, _)| fake.open_feeds(&users[*i]) == 0);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Timed by the fake's own log: from the live's start to the room fetch that opens its feed.
    let log = fake.requests();
    for (i, at) in &started {
        let fetched = log
            .iter()
            .filter(|r| r.kind == RequestKind::Fetch && r.at >= *at)
            .find(|r| r.user.as_deref() == Some(users[*i].as_str()))
            .map(|r| r.at.duration_since(*at));
        joined.push(
            fetched
                .context("a live joined without a fetch")?
                .as_secs_f64()
                * 1000.0,
        );
    }
    let rss_lives = rss_kb();
    sup.shutdown().await;

    joined.sort_by(f64::total_cmp);
    let poll_ms = plan.poll_interval.as_secs_f64() * 1000.0;
    let n = plan.creators;
    Ok(vec![
        Row::ratio(
            format!("tiktok: polling, {n} creators waiting (requests/min vs budget)"),
            per_minute,
            f64::from(plan.requests_per_minute),
            "/min",
            "≤ 1× budget",
        ),
        Row::ratio(
            format!(
                "tiktok: live start → joined p50, {} lives (vs poll interval)",
                plan.lives
            ),
            percentile(&joined, 0.5),
            poll_ms,
            "ms",
            "≤ 1× poll",
        ),
        Row::ratio(
            format!(
                "tiktok: live start → joined p99, {} lives (vs poll interval)",
                plan.lives
            ),
            percentile(&joined, 0.99),
            poll_ms,
            "ms",
            "≤ 1× poll + pacing",
        ),
        Row::value(
            "tiktok: RSS per watched creator (fake's share included)",
            (rss_waiting - rss_base).max(0.0) / n as f64,
            "KiB",
            "≤ 64 KiB",
        ),
        Row::value(
            "tiktok: RSS per joined live (fake's share included)",
            (rss_lives - rss_waiting).max(0.0) / plan.lives.max(1) as f64,
            "KiB",
            "≤ 256 KiB",
        ),
    ])
}

async fn wait_for(
    limit: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let start = Instant::now();
    while !cond() {
        ensure!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
