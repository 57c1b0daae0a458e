//! Prometheus metrics of the engine, encoded in the text exposition format for `/metrics`.

use std::sync::Arc;

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    accounts: Family<Vec<(String, String)>, Gauge>,
    pub connect_attempts: Counter,
    pub reconnects: Counter,
    pub recovery_seconds: Histogram,
    pub breaker_opens: Counter,
    pub pacing_waits: Counter,
    pub drops: Counter,
    webhook_deliveries: Family<Vec<(String, String)>, Counter>,
    webhook_pending: Gauge,
    webhook_oldest_pending_seconds: Gauge,
    fleet: FleetMetrics,
    /// The fleet's metrics, registered once the instance is known to be in a fleet.
    fleet_registered: Arc<std::sync::Mutex<Option<Arc<Registry>>>>,
}

/// An instance's part in its fleet and the fleet's totals (set when scraped; absent from the
/// exposition of an instance that is not in a fleet).
#[derive(Debug, Clone, Default)]
struct FleetMetrics {
    leases_held: Gauge,
    takeovers: Counter,
    renew_failures: Counter,
    stale_writes_refused: Counter,
    accounts: Gauge,
    live_instances: Gauge,
    fleet_leases_held: Gauge,
    fleet_takeovers: Gauge,
    fleet_renew_failures: Gauge,
    fleet_stale_writes_refused: Gauge,
}

impl FleetMetrics {
    fn register(&self, registry: &mut Registry) {
        let fleet = registry.sub_registry_with_prefix("fleet");
        fleet.register(
            "leases_held",
            "Accounts whose lease this instance holds",
            self.leases_held.clone(),
        );
        fleet.register(
            "takeovers",
            "Leases this instance took over from an instance that stopped renewing",
            self.takeovers.clone(),
        );
        fleet.register(
            "renew_failures",
            "Lease renewals of this instance that did not get through",
            self.renew_failures.clone(),
        );
        fleet.register(
            "stale_writes_refused",
            "Writes of this instance refused because the account's lease had moved",
            self.stale_writes_refused.clone(),
        );
        fleet.register(
            "accounts",
            "Accounts in the fleet store",
            self.accounts.clone(),
        );
        fleet.register(
            "live_instances",
            "Instances of the fleet with a recent heartbeat",
            self.live_instances.clone(),
        );
        let total = fleet.sub_registry_with_prefix("total");
        total.register(
            "leases_held",
            "Leases held across the fleet",
            self.fleet_leases_held.clone(),
        );
        total.register(
            "takeovers",
            "Takeovers summed over the fleet's instances",
            self.fleet_takeovers.clone(),
        );
        total.register(
            "renew_failures",
            "Failed lease renewals summed over the fleet's instances",
            self.fleet_renew_failures.clone(),
        );
        total.register(
            "stale_writes_refused",
            "Stale writes refused, summed over the fleet's instances",
            self.fleet_stale_writes_refused.clone(),
        );
    }
}

/// Moves a counter up to `to` (the source counts by itself; a counter only goes up).
fn catch_up(counter: &Counter, to: u64) {
    let now = counter.get();
    if to > now {
        counter.inc_by(to - now);
    }
}

fn gauge(value: i64) -> i64 {
    value.max(0)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lifeline");
        let accounts = Family::<Vec<(String, String)>, Gauge>::default();
        let connect_attempts = Counter::default();
        let reconnects = Counter::default();
        let recovery_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 14));
        let breaker_opens = Counter::default();
        let pacing_waits = Counter::default();
        let drops = Counter::default();
        registry.register("accounts", "Accounts by actual state", accounts.clone());
        registry.register(
            "connect_attempts",
            "Connection attempts started",
            connect_attempts.clone(),
        );
        registry.register(
            "reconnects",
            "Connections restored after a drop",
            reconnects.clone(),
        );
        registry.register(
            "recovery_seconds",
            "Time from a drop to connected again",
            recovery_seconds.clone(),
        );
        registry.register(
            "breaker_opens",
            "Circuit breakers opened",
            breaker_opens.clone(),
        );
        registry.register(
            "pacing_waits",
            "Connect attempts delayed by global pacing",
            pacing_waits.clone(),
        );
        registry.register("drops", "Live connections lost", drops.clone());
        let webhook_deliveries = Family::<Vec<(String, String)>, Counter>::default();
        let webhook_pending = Gauge::default();
        let webhook_oldest_pending_seconds = Gauge::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts by outcome (delivered, retry, failed, gone)",
            webhook_deliveries.clone(),
        );
        registry.register(
            "webhook_pending",
            "Webhook deliveries waiting to be sent",
            webhook_pending.clone(),
        );
        registry.register(
            "webhook_oldest_pending_seconds",
            "Age of the oldest webhook delivery still waiting",
            webhook_oldest_pending_seconds.clone(),
        );
        Self {
            registry: Arc::new(registry),
            accounts,
            connect_attempts,
            reconnects,
            recovery_seconds,
            breaker_opens,
            pacing_waits,
            drops,
            webhook_deliveries,
            webhook_pending,
            webhook_oldest_pending_seconds,
            fleet: FleetMetrics::default(),
            fleet_registered: Arc::new(std::sync::Mutex::new(None)),
        }
    }

    /// Sets this instance's fleet figures and the fleet's totals (read when scraped). The
    /// first call adds the `lifeline_fleet_*` metrics to the exposition.
    pub fn set_fleet(&self, part: &crate::report::FleetPart) {
        let f = &self.fleet;
        f.leases_held
            .set(i64::try_from(part.leases_held).unwrap_or(i64::MAX));
        catch_up(&f.takeovers, part.takeovers);
        catch_up(&f.renew_failures, part.renew_failures);
        catch_up(&f.stale_writes_refused, part.stale_writes_refused);
        if let Some(t) = &part.totals {
            f.accounts.set(gauge(t.accounts));
            f.live_instances.set(gauge(t.live_instances));
            f.fleet_leases_held.set(gauge(t.leases_held));
            f.fleet_takeovers.set(gauge(t.takeovers));
            f.fleet_renew_failures.set(gauge(t.renew_failures));
            f.fleet_stale_writes_refused
                .set(gauge(t.stale_writes_refused));
        }
        let mut registered = self
            .fleet_registered
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if registered.is_none() {
            let mut registry = Registry::with_prefix("lifeline");
            f.register(&mut registry);
            *registered = Some(Arc::new(registry));
        }
    }

    /// Counts one webhook attempt by its outcome.
    pub fn webhook_attempt(&self, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&vec![("outcome".to_owned(), outcome.to_owned())])
            .inc();
    }

    /// Sets the outbox gauges (read from the store when scraped).
    pub fn set_outbox(&self, stats: &crate::webhook::OutboxStats, now: crate::time::Timestamp) {
        self.webhook_pending
            .set(i64::try_from(stats.pending).unwrap_or(i64::MAX));
        let age = stats
            .oldest_pending_at
            .map(|t| (now - t).num_seconds().max(0))
            .unwrap_or(0);
        self.webhook_oldest_pending_seconds.set(age);
    }

    /// Sets the per-state gauges from current counts and returns the text exposition.
    pub fn render(&self, counts: &crate::fleet::Counts) -> String {
        for (kind, n) in &counts.by_state {
            self.accounts
                .get_or_create(&vec![("state".to_owned(), kind.as_str().to_owned())])
                .set(*n as i64);
        }
        let mut out = String::new();
        // Encoding into a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry);
        if let Some(fleet) = self
            .fleet_registered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let _ = encode_registry(&mut out, fleet);
        }
        let _ = encode_eof(&mut out);
        out
    }
}

/// OpenMetrics → Prometheus text format 0.0.4, for scrapers that do not ask for OpenMetrics
/// (and `promtool check metrics`): counters' HELP/TYPE name their `_total` samples, and the
/// OpenMetrics-only `# UNIT` and `# EOF` lines go.
pub fn classic_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let suffix = if counters.contains(name) {
                    "_total"
                } else {
                    ""
                };
                out.push_str(&format!("{prefix}{name}{suffix} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Counts;
    use crate::state::StateKind;

    fn counts(n: &[(StateKind, usize)]) -> Counts {
        Counts::of_states(
            n.iter()
                .flat_map(|(k, n)| std::iter::repeat_n((*k, true), *n)),
        )
    }

    #[test]
    fn renders_prometheus_text_with_states_and_counters() {
        let m = Metrics::new();
        m.reconnects.inc();
        m.recovery_seconds.observe(0.3);
        let text = m.render(&counts(&[
            (StateKind::Connected, 7),
            (StateKind::Backoff, 2),
        ]));
        assert!(
            text.contains("lifeline_accounts{state=\"connected\"} 7"),
            "{text}"
        );
        assert!(text.contains("lifeline_reconnects_total 1"), "{text}");
        assert!(text.contains("lifeline_recovery_seconds_bucket"), "{text}");
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn classic_text_names_counter_samples_in_help_and_type_and_drops_eof() {
        let m = Metrics::new();
        m.reconnects.inc();
        let text = classic_text(&m.render(&counts(&[(StateKind::Connected, 1)])));
        assert!(
            text.contains("# TYPE lifeline_reconnects_total counter\n"),
            "{text}"
        );
        assert!(text.contains("# HELP lifeline_reconnects_total "), "{text}");
        assert!(text.contains("lifeline_reconnects_total 1\n"), "{text}");
        assert!(text.contains("# TYPE lifeline_accounts gauge\n"), "{text}");
        assert!(
            !text.contains("# EOF") && !text.contains("# UNIT"),
            "{text}"
        );
    }
}
