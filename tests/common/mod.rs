//! What the cross-crate scenarios share: a policy fast enough for loopback sockets, and waiting
//! for a condition instead of sleeping a fixed time.

use std::time::{Duration, Instant};

use lifeline_engine::policy::PolicyConfig;

/// Keepalives, timeouts and backoff scaled down to loopback speeds; restores and pacing
/// opened up so a fleet comes back at once.
pub fn fast_policy() -> PolicyConfig {
    let mut p = PolicyConfig::default();
    p.connection.connect_timeout_ms = 2_000;
    p.connection.keepalive_ms = 200;
    p.connection.pong_timeout_ms = 300;
    p.connection.close_timeout_ms = 500;
    p.connection.reconcile_interval_ms = 1_000;
    p.backoff.base_ms = 20;
    p.backoff.cap_ms = 200;
    p.backoff.floor_timeout_ms = 50;
    p.backoff.floor_refused_ms = 20;
    p.backoff.floor_closed_ms = 20;
    p.backoff.floor_network_ms = 20;
    p.backoff.floor_rate_limited_ms = 100;
    p.autorecover.start_delay_ms = 0;
    p.autorecover.concurrency = 64;
    p.pacing.rate_per_s = 500.0;
    p.pacing.burst = 50;
    p
}

/// Polls `cond` until it holds; panics with `what` after `limit`.
pub async fn until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
