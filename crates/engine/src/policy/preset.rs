//! Three named starting points for the values an operator most often weighs against each other:
//! how fast a dropped number is tried again, and how gently the fleet treats WhatsApp's servers.
//! A preset sets only those values (reconnect waits, pacing, breaker, restores at once); timeouts,
//! keepalive and alert settings stay as they are.

use serde::Serialize;

use super::PolicyConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// Safest for numbers: slow, widely spaced retries; a breaker that trips early and rests long.
    Careful,
    /// The defaults.
    Balanced,
    /// Back quickly after a drop, for servers that tolerate eager reconnects (own WebSocket
    /// services, a small fleet).
    Fast,
}

impl Preset {
    pub const ALL: [Preset; 3] = [Preset::Careful, Preset::Balanced, Preset::Fast];

    /// The values a preset sets, as `section.key`; `apply` leaves every other one alone.
    pub const KEYS: [&'static str; 10] = [
        "backoff.base_ms",
        "backoff.cap_ms",
        "backoff.floor_rate_limited_ms",
        "pacing.rate_per_s",
        "pacing.burst",
        "breaker.threshold",
        "breaker.window_s",
        "breaker.cooldown_s",
        "breaker.max_cooldown_s",
        "autorecover.concurrency",
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Preset::Careful => "careful",
            Preset::Balanced => "balanced",
            Preset::Fast => "fast",
        }
    }

    /// `base` with this preset's values put in; every other value is kept.
    pub fn apply(self, base: &PolicyConfig) -> PolicyConfig {
        let v = match self {
            Preset::Balanced => Values::of(&PolicyConfig::default()),
            Preset::Careful => Values {
                base_ms: 5_000,
                cap_ms: 900_000,
                floor_rate_limited_ms: 300_000,
                rate_per_s: 0.5,
                burst: 2,
                threshold: 5,
                window_s: 600,
                cooldown_s: 1_800,
                max_cooldown_s: 14_400,
                concurrency: 8,
            },
            Preset::Fast => Values {
                base_ms: 500,
                cap_ms: 60_000,
                floor_rate_limited_ms: 30_000,
                rate_per_s: 10.0,
                burst: 20,
                threshold: 20,
                window_s: 300,
                cooldown_s: 300,
                max_cooldown_s: 1_800,
                concurrency: 64,
            },
        };
        let mut cfg = *base;
        cfg.backoff.base_ms = v.base_ms;
        cfg.backoff.cap_ms = v.cap_ms;
        cfg.backoff.floor_rate_limited_ms = v.floor_rate_limited_ms;
        cfg.pacing.rate_per_s = v.rate_per_s;
        cfg.pacing.burst = v.burst;
        cfg.breaker.threshold = v.threshold;
        cfg.breaker.window_s = v.window_s;
        cfg.breaker.cooldown_s = v.cooldown_s;
        cfg.breaker.max_cooldown_s = v.max_cooldown_s;
        cfg.autorecover.concurrency = v.concurrency;
        cfg
    }

    /// The preset whose values `cfg` holds, if any.
    pub fn of(cfg: &PolicyConfig) -> Option<Preset> {
        Preset::ALL.into_iter().find(|p| p.apply(cfg) == *cfg)
    }
}

/// The values a preset sets (`Preset::KEYS`, in that order).
struct Values {
    base_ms: u64,
    cap_ms: u64,
    floor_rate_limited_ms: u64,
    rate_per_s: f64,
    burst: u32,
    threshold: u32,
    window_s: u64,
    cooldown_s: u64,
    max_cooldown_s: u64,
    concurrency: u32,
}

impl Values {
    fn of(cfg: &PolicyConfig) -> Self {
        Self {
            base_ms: cfg.backoff.base_ms,
            cap_ms: cfg.backoff.cap_ms,
            floor_rate_limited_ms: cfg.backoff.floor_rate_limited_ms,
            rate_per_s: cfg.pacing.rate_per_s,
            burst: cfg.pacing.burst,
            threshold: cfg.breaker.threshold,
            window_s: cfg.breaker.window_s,
            cooldown_s: cfg.breaker.cooldown_s,
            max_cooldown_s: cfg.breaker.max_cooldown_s,
            concurrency: cfg.autorecover.concurrency,
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_preset_is_a_valid_policy_whatever_it_starts_from() {
        let tuned = PolicyConfig::default()
            .assign("connection.keepalive_ms=10000")
            .and_then(|c| c.assign("alerts.grace_s=5"))
            .expect("valid");
        for base in [PolicyConfig::default(), tuned] {
            for p in Preset::ALL {
                let cfg = p.apply(&base);
                cfg.validate().unwrap_or_else(|e| panic!("{p}: {e}"));
                assert_eq!(Preset::of(&cfg), Some(p), "{p} is recognised");
                // Only the weighed values move: the rest is the operator's.
                assert_eq!(cfg.connection, base.connection);
                assert_eq!(cfg.alerts, base.alerts);
                assert_eq!(cfg.pacing.enabled, base.pacing.enabled);
                assert_eq!(cfg.backoff.floor_timeout_ms, base.backoff.floor_timeout_ms);
            }
        }
    }

    #[test]
    fn balanced_is_the_default_and_the_presets_are_ordered() {
        let d = PolicyConfig::default();
        assert_eq!(Preset::Balanced.apply(&d), d);
        assert_eq!(Preset::of(&d), Some(Preset::Balanced));
        let [careful, balanced, fast] = Preset::ALL.map(|p| p.apply(&d));
        // Careful waits longer and goes slower than Balanced, which does so more than Fast.
        for (slow, quick) in [(careful, balanced), (balanced, fast)] {
            assert!(slow.backoff.base_ms > quick.backoff.base_ms);
            assert!(slow.backoff.cap_ms > quick.backoff.cap_ms);
            assert!(slow.pacing.rate_per_s < quick.pacing.rate_per_s);
            assert!(slow.breaker.threshold < quick.breaker.threshold);
            assert!(slow.breaker.cooldown_s > quick.breaker.cooldown_s);
            assert!(slow.autorecover.concurrency < quick.autorecover.concurrency);
        }
    }

    #[test]
    fn keys_name_exactly_what_the_presets_set() {
        let base = PolicyConfig::default()
            .assign("backoff.floor_timeout_ms=7000")
            .expect("valid");
        let mut moved = std::collections::BTreeSet::new();
        for p in Preset::ALL {
            for c in p.apply(&base).changes_from(Some(&base)) {
                assert!(Preset::KEYS.contains(&c.key.as_str()), "{p} sets {}", c.key);
                moved.insert(c.key);
            }
        }
        assert_eq!(moved, Preset::KEYS.map(String::from).into_iter().collect());
    }

    #[test]
    fn a_changed_value_is_no_preset() {
        let cfg = Preset::Careful
            .apply(&PolicyConfig::default())
            .assign("pacing.burst=3")
            .expect("valid");
        assert_eq!(Preset::of(&cfg), None);
    }
}
