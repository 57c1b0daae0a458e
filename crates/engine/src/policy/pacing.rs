//! Global pacing of connect attempts across all accounts: a token bucket (as GCRA, the
//! "virtual scheduling" form) with `rate` per second and `burst`. Each attempt reserves a start
//! time; callers sleep until it. Reservations are handed out in order, so 1000 simultaneous
//! drops become an even trickle instead of a reconnect storm that gets numbers banned.

use crate::error::InputError;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct PacingConfig {
    /// Off only for benchmarks and tests that measure raw restore speed.
    pub enabled: bool,
    pub rate_per_s: f64,
    pub burst: u32,
}

impl Default for PacingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rate_per_s: 2.0,
            burst: 5,
        }
    }
}

const MIN_RATE_PER_S: f64 = 0.01;
const MAX_RATE_PER_S: f64 = 10_000.0;

impl PacingConfig {
    pub fn validate(&self) -> Result<(), InputError> {
        if !(MIN_RATE_PER_S..=MAX_RATE_PER_S).contains(&self.rate_per_s) {
            return Err(super::invalid(
                "pacing.rate_per_s must be between 0.01 and 10000",
            ));
        }
        if self.burst == 0 || self.burst > 10_000 {
            return Err(super::invalid("pacing.burst must be between 1 and 10000"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct Pacer {
    enabled: bool,
    interval: Duration,
    tolerance: Duration,
    /// Theoretical arrival time of the next conforming attempt.
    tat: Option<Instant>,
}

impl Pacer {
    /// Values outside the validated range (a config that skipped validation) are clamped into
    /// it rather than trusted: a rate of 0 or NaN would otherwise panic here.
    pub fn new(cfg: &PacingConfig) -> Self {
        let mut pacer = Self {
            enabled: false,
            interval: Duration::ZERO,
            tolerance: Duration::ZERO,
            tat: None,
        };
        pacer.configure(cfg);
        pacer
    }

    /// Takes new values from the next reservation on; slots already handed out stand.
    pub fn configure(&mut self, cfg: &PacingConfig) {
        let rate = if cfg.rate_per_s.is_nan() {
            PacingConfig::default().rate_per_s
        } else {
            cfg.rate_per_s.clamp(MIN_RATE_PER_S, MAX_RATE_PER_S)
        };
        self.enabled = cfg.enabled;
        self.interval = Duration::from_secs_f64(1.0 / rate);
        self.tolerance = self.interval * cfg.burst.saturating_sub(1);
    }

    /// Reserves the next slot and returns when the attempt may start (`now` or later).
    pub fn reserve(&mut self, now: Instant) -> Instant {
        if !self.enabled {
            return now;
        }
        let tat = self.tat.map_or(now, |t| t.max(now));
        let start = tat.checked_sub(self.tolerance).map_or(now, |s| s.max(now));
        self.tat = Some(tat + self.interval);
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Max attempts that start inside any window of `len` (sliding over start times).
    fn max_in_window(starts: &[Instant], len: Duration) -> usize {
        let mut max = 0;
        let mut lo = 0;
        for hi in 0..starts.len() {
            while starts[hi] - starts[lo] >= len {
                lo += 1;
            }
            max = max.max(hi - lo + 1);
        }
        max
    }

    #[test]
    fn pacing_never_exceeds_its_rate_under_1000_simultaneous_drops() {
        let cfg = PacingConfig::default();
        let mut p = Pacer::new(&cfg);
        let now = Instant::now();
        let starts: Vec<Instant> = (0..1000).map(|_| p.reserve(now)).collect();
        assert!(starts.windows(2).all(|w| w[0] <= w[1]));
        // In any 1 s window: at most the burst plus the rate.
        let limit = cfg.burst as usize + cfg.rate_per_s as usize;
        assert!(max_in_window(&starts, Duration::from_secs(1)) <= limit);
        // Long-run rate holds: 1000 attempts take about (1000 - burst) / rate seconds.
        let span = starts[999] - starts[0];
        let expected = Duration::from_secs_f64((1000 - cfg.burst) as f64 / cfg.rate_per_s);
        assert!(
            span >= expected - Duration::from_millis(1),
            "{span:?} vs {expected:?}"
        );
        // The burst goes at once.
        assert!(starts[..cfg.burst as usize].iter().all(|s| *s == now));
    }

    #[test]
    fn idle_time_refills_only_up_to_the_burst() {
        let cfg = PacingConfig::default();
        let mut p = Pacer::new(&cfg);
        let t0 = Instant::now();
        for _ in 0..20 {
            p.reserve(t0);
        }
        let later = t0 + Duration::from_secs(3600);
        let starts: Vec<_> = (0..20).map(|_| p.reserve(later)).collect();
        assert_eq!(
            starts.iter().filter(|s| **s == later).count(),
            cfg.burst as usize
        );
    }

    #[test]
    fn disabled_pacing_never_waits() {
        let mut p = Pacer::new(&PacingConfig {
            enabled: false,
            ..PacingConfig::default()
        });
        let now = Instant::now();
        assert!((0..1000).all(|_| p.reserve(now) == now));
    }

    #[test]
    fn a_pacer_from_unvalidated_values_clamps_instead_of_panicking() {
        let now = Instant::now();
        for rate in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e-300] {
            let mut p = Pacer::new(&PacingConfig {
                enabled: true,
                rate_per_s: rate,
                burst: 1,
            });
            assert_eq!(p.reserve(now), now, "{rate}");
            assert!(p.reserve(now) > now, "{rate}: still paced");
        }
    }

    #[test]
    fn invalid_values_are_rejected() {
        for (rate, burst) in [(0.0, 5), (f64::NAN, 5), (2.0, 0), (1e9, 5)] {
            let c = PacingConfig {
                enabled: true,
                rate_per_s: rate,
                burst,
            };
            assert!(c.validate().is_err(), "{rate} {burst}");
        }
    }
}
