//! Webhooks under a mass drop: how long until every endpoint has acknowledged every account's
//! drop, against the same number of plain HTTP POSTs from a bare client at the same
//! concurrency; and whether sending webhooks slows the engine's drop → recorded path (p99 with
//! three endpoints against none, beside a second run without any to show the run-to-run noise).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use lifeline_engine::Store;
use lifeline_engine::clock::Clock;
use lifeline_engine::model::SecretName;
use lifeline_engine::secrets::{MemorySecretStore, SecretStore};
use lifeline_engine::state::StateKind;
use lifeline_engine::supervisor::Supervisor;
use lifeline_engine::webhook::{NewWebhook, WebhookUrl};
use lifeline_sim::{Fault, Sim};
use lifeline_webhooks::WorkerConfig;
use tokio_util::sync::CancellationToken;

use crate::supervise::{await_recorded, bench_policy, fleet, into, ms, settle};
use crate::table::{Row, percentile};

const ENDPOINTS: usize = 3;
const ROUNDS: usize = 3;

/// A loopback receiver answering 204 and counting what it took: every message, and the drops.
struct Receiver {
    url: String,
    all: Arc<AtomicU64>,
    drops: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Receiver {
    async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let (all, drops) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (a, d) = (all.clone(), drops.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |body: axum::body::Bytes| {
                let (a, d) = (a.clone(), d.clone());
                async move {
                    a.fetch_add(1, Ordering::Relaxed);
                    if body.windows(15).any(|w| w == b"account.dropped") {
                        d.fetch_add(1, Ordering::Relaxed);
                    }
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        );
        let stop = CancellationToken::new();
        let until = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { until.cancelled().await })
                .await;
        });
        Ok(Self {
            url,
            all,
            drops,
            stop,
        })
    }
}

/// A supervised fleet, with `endpoints` receivers subscribed and the sender running.
struct Fleet {
    _tmp: tempfile::TempDir,
    store: Store,
    sup: Supervisor,
    stop: CancellationToken,
}

impl Fleet {
    async fn start(sim: &str, n: usize, receivers: &[Receiver]) -> anyhow::Result<Self> {
        let (tmp, store, sup) = fleet(sim, n, bench_policy(32)).await?;
        let secrets: Arc<dyn SecretStore> = Arc::new(MemorySecretStore::default());
        for (i, r) in receivers.iter().enumerate() {
            let (_, value) = lifeline_webhooks::sign::SigningKey::generate();
            let name = SecretName::parse(&format!("webhook-bench-{i}"))?;
            secrets.set(&name, &value)?;
            store
                .add_webhook(NewWebhook {
                    url: WebhookUrl::parse(&r.url)?,
                    events: None,
                    accounts: None,
                    secret_name: name,
                })
                .await?;
        }
        // As the runtime runs it: a read pool of its own, attempts through the single writer.
        let stop = CancellationToken::new();
        let (notices, _) = tokio::sync::mpsc::unbounded_channel();
        let outbox = lifeline_webhooks::worker::Outbox {
            store: store.reader().await?,
            secrets,
            clock: Clock::System,
            metrics: None,
            writer: Some(sup.clone()),
        };
        let cfg = WorkerConfig {
            instance: "bench".into(),
            ..WorkerConfig::default()
        };
        tokio::spawn(lifeline_webhooks::worker::run(
            outbox,
            cfg,
            notices,
            stop.clone(),
        ));
        let mut rx = sup.subscribe();
        sup.startup(None, None).await?;
        await_recorded(&mut rx, into(StateKind::Connected), n).await?;
        Ok(Self {
            _tmp: tmp,
            store,
            sup,
            stop,
        })
    }

    /// Waits until the outbox is empty.
    async fn drained(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.store.outbox_stats().await?.pending > 0 {
            if Instant::now() > deadline {
                bail!("webhook outbox not drained within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    async fn end(self) {
        self.stop.cancel();
        self.sup.shutdown().await;
    }
}

/// Single drops one at a time: drop → recorded, sorted, in ms. Each drop comes once the last
/// one's messages are sent (a drop on a fleet whose webhooks are idle, as single drops are; a
/// storm is the mass drop's measure).
async fn single_drops(sim: &Sim, fleet: &Fleet, samples: usize) -> anyhow::Result<Vec<f64>> {
    let mut rx = fleet.sup.subscribe();
    let mut out = Vec::with_capacity(samples);
    for i in 0..samples {
        fleet.drained().await?;
        let t0 = Instant::now();
        sim.inject(Fault::Drop {
            path: Some(format!("/s/{i}")),
        });
        let (t1, _) = await_recorded(&mut rx, into(StateKind::Backoff), 1).await?;
        out.push(ms(t1 - t0));
    }
    out.sort_by(f64::total_cmp);
    settle(&fleet.sup, "the single drops").await?;
    Ok(out)
}

/// `n` plain POSTs of `body` spread over the receivers, `concurrency` at a time.
async fn bare_posts(
    receivers: &[Receiver],
    n: usize,
    body: &[u8],
    concurrency: usize,
) -> anyhow::Result<Duration> {
    let client = reqwest::Client::new();
    let t0 = Instant::now();
    let mut sends = futures_util::stream::iter(0..n)
        .map(|i| {
            let req = client
                .post(&receivers[i % receivers.len()].url)
                .header("content-type", "application/json")
                .body(body.to_vec());
            async move { req.send().await.map(|r| r.status().is_success()) }
        })
        .buffer_unordered(concurrency);
    while let Some(sent) = sends.next().await {
        if !sent.context("bare POST")? {
            bail!("a receiver refused a bare POST");
        }
    }
    Ok(t0.elapsed())
}

pub async fn run(n: usize, samples: usize) -> anyhow::Result<Vec<Row>> {
    let sim = Sim::start("127.0.0.1:0").await?;
    let addr = sim.addr().to_string();
    let samples = samples.min(n);

    // Drop → recorded with three endpoints and without, alternating over three rounds (one
    // run's p99 moves by more than webhooks could on a shared two-core machine): the medians of
    // the p99s, and the spread of the runs without as the noise.
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        for endpoints in [0, ENDPOINTS] {
            let receivers = receivers(endpoints).await?;
            let fleet = Fleet::start(&addr, n, &receivers).await?;
            fleet.drained().await?;
            let l = single_drops(&sim, &fleet, samples).await?;
            fleet.end().await;
            let side = if endpoints == 0 { &mut off } else { &mut on };
            side.push((percentile(&l, 0.5), percentile(&l, 0.99)));
        }
    }
    // The median of one percentile over the rounds.
    let median = |v: &[(f64, f64)], p99: bool| {
        let mut x: Vec<f64> = v.iter().map(|r| if p99 { r.1 } else { r.0 }).collect();
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let off_p99: Vec<f64> = {
        let mut x: Vec<f64> = off.iter().map(|r| r.1).collect();
        x.sort_by(f64::total_cmp);
        x
    };

    // A mass drop with three endpoints: every drop acknowledged by every endpoint.
    let receivers = receivers(ENDPOINTS).await?;
    let fleet = Fleet::start(&addr, n, &receivers).await?;
    fleet.drained().await?;
    let want = (n * ENDPOINTS) as u64;
    let t0 = Instant::now();
    sim.inject(Fault::Drop { path: None });
    let deadline = t0 + Duration::from_secs(120);
    while receivers
        .iter()
        .map(|r| r.drops.load(Ordering::Relaxed))
        .sum::<u64>()
        < want
    {
        if Instant::now() > deadline {
            bail!("the drops were not all acknowledged within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let delivered = t0.elapsed();
    settle(&fleet.sup, "the mass drop").await?;
    fleet.drained().await?;
    let sample = fleet
        .store
        .deliveries(lifeline_engine::store::DeliveryFilter {
            limit: 1,
            ..Default::default()
        })
        .await?
        .pop()
        .context("no delivery to size the bare POSTs by")?;
    let body = lifeline_webhooks::body(&sample, "bench");
    let total: u64 = receivers
        .iter()
        .map(|r| r.all.load(Ordering::Relaxed))
        .sum();
    fleet.end().await;
    let bare = bare_posts(
        &receivers,
        want as usize,
        &body,
        WorkerConfig::default().concurrency,
    )
    .await?;

    Ok(vec![
        Row::ratio(
            format!(
                "mass drop of {n}, {ENDPOINTS} endpoints -> every drop acknowledged (vs {want} bare POSTs)"
            ),
            ms(delivered),
            ms(bare),
            "ms",
            "",
        ),
        Row::ratio(
            format!(
                "single drop -> recorded p50, {ENDPOINTS} webhook endpoints (vs none), median of {ROUNDS}"
            ),
            median(&on, false),
            median(&off, false),
            "ms",
            "",
        ),
        Row::ratio(
            format!(
                "single drop -> recorded p99, {ENDPOINTS} webhook endpoints (vs none), median of {ROUNDS}"
            ),
            median(&on, true),
            median(&off, true),
            "ms",
            "within noise",
        ),
        Row::ratio(
            format!(
                "single drop -> recorded p99 without webhooks: slowest of {ROUNDS} runs (vs fastest: the noise)"
            ),
            off_p99[off_p99.len() - 1],
            off_p99[0],
            "ms",
            "",
        ),
        Row::value(
            format!("webhook messages acknowledged over the run ({ENDPOINTS} endpoints)"),
            total as f64,
            "",
            "",
        ),
    ])
}

async fn receivers(n: usize) -> anyhow::Result<Vec<Receiver>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(Receiver::start().await?);
    }
    Ok(out)
}
