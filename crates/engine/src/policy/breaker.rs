//! Circuit breaker per account: after `threshold` failures within `window` it opens
//! for a cooldown; then one trial is allowed (half-open). Trial success closes it; trial failure
//! re-opens it with a doubled cooldown, capped. Manual reset and a fresh link request close it.
//! Drops of a live connection count as failures too, so a flapping account cannot storm.
//! Times are wall-clock so the state survives restarts (it is persisted as JSON).

use crate::error::InputError;
use chrono::Duration as ChronoDuration;
use serde::{Deserialize, Serialize};

use crate::time::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    pub threshold: u32,
    pub window_s: u64,
    pub cooldown_s: u64,
    pub max_cooldown_s: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            threshold: 10,
            window_s: 300,
            cooldown_s: 600,
            max_cooldown_s: 3600,
        }
    }
}

impl BreakerConfig {
    pub fn validate(&self) -> Result<(), InputError> {
        if self.threshold == 0 || self.threshold > 1000 {
            return Err(super::invalid(
                "breaker.threshold must be between 1 and 1000",
            ));
        }
        if self.window_s == 0 || self.window_s > 86_400 {
            return Err(super::invalid(
                "breaker.window_s must be between 1 and 86400",
            ));
        }
        if self.cooldown_s == 0 || self.cooldown_s > self.max_cooldown_s {
            return Err(super::invalid(
                "breaker.cooldown_s must be at least 1 and at most breaker.max_cooldown_s",
            ));
        }
        if self.max_cooldown_s > 7 * 86_400 {
            return Err(super::invalid(
                "breaker.max_cooldown_s must be at most 604800 (a week)",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Breaker {
    Closed { failures: Vec<Timestamp> },
    Open { until: Timestamp, cooldown_s: u64 },
    HalfOpen { cooldown_s: u64 },
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker::Closed {
            failures: Vec::new(),
        }
    }
}

/// Whether an attempt may go ahead now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Allow,
    /// Half-open: this attempt is the one trial.
    Trial,
    Deny {
        until: Timestamp,
    },
}

impl Breaker {
    pub fn is_open(&self) -> bool {
        matches!(self, Breaker::Open { .. })
    }

    pub fn label(&self) -> &'static str {
        match self {
            Breaker::Closed { .. } => "closed",
            Breaker::Open { .. } => "open",
            Breaker::HalfOpen { .. } => "half_open",
        }
    }

    /// Asks to make an attempt at `now`. An open breaker whose cooldown has passed turns half-open.
    pub fn admit(&mut self, now: Timestamp) -> Admission {
        match *self {
            Breaker::Closed { .. } => Admission::Allow,
            Breaker::Open { until, cooldown_s } if now >= until => {
                *self = Breaker::HalfOpen { cooldown_s };
                Admission::Trial
            }
            Breaker::Open { until, .. } => Admission::Deny { until },
            Breaker::HalfOpen { .. } => Admission::Trial,
        }
    }

    /// Records a failure; returns `Some(until)` when this failure opened the breaker.
    pub fn on_failure(&mut self, now: Timestamp, cfg: &BreakerConfig) -> Option<Timestamp> {
        match self {
            Breaker::Closed { failures } => {
                let window_start = now - ChronoDuration::seconds(cfg.window_s as i64);
                failures.retain(|t| *t > window_start);
                failures.push(now);
                if failures.len() >= cfg.threshold as usize {
                    let until = now + ChronoDuration::seconds(cfg.cooldown_s as i64);
                    *self = Breaker::Open {
                        until,
                        cooldown_s: cfg.cooldown_s,
                    };
                    return Some(until);
                }
                None
            }
            Breaker::HalfOpen { cooldown_s } => {
                let cooldown_s = cooldown_s.saturating_mul(2).min(cfg.max_cooldown_s);
                let until = now + ChronoDuration::seconds(cooldown_s as i64);
                *self = Breaker::Open { until, cooldown_s };
                Some(until)
            }
            Breaker::Open { .. } => None,
        }
    }

    /// Records a successful connection; a half-open breaker closes.
    pub fn on_success(&mut self) {
        // Open too: an operator's start may go past an open breaker, and a connection that
        // lasted proves more than a cooldown would (left open, one later drop would pause the
        // account for what remained of it).
        if !matches!(self, Breaker::Closed { .. }) {
            *self = Breaker::default();
        }
    }

    /// Operator reset or a fresh link request.
    pub fn reset(&mut self) {
        *self = Breaker::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_time;

    fn t0() -> Timestamp {
        parse_time("2026-11-01T00:00:00Z").expect("time")
    }

    fn secs(s: i64) -> ChronoDuration {
        ChronoDuration::seconds(s)
    }

    #[test]
    fn breaker_opens_after_ten_failures_in_window() {
        let cfg = BreakerConfig::default();
        let mut b = Breaker::default();
        for i in 0..9 {
            assert_eq!(b.on_failure(t0() + secs(i * 20), &cfg), None);
            assert_eq!(b.admit(t0() + secs(i * 20)), Admission::Allow);
        }
        let opened = b.on_failure(t0() + secs(180), &cfg);
        assert_eq!(opened, Some(t0() + secs(180 + 600)));
        assert_eq!(
            b.admit(t0() + secs(200)),
            Admission::Deny {
                until: t0() + secs(780)
            }
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let cfg = BreakerConfig::default();
        let mut b = Breaker::default();
        for i in 0..30 {
            // One failure every 40 s: at most 8 inside any 300 s window.
            assert_eq!(b.on_failure(t0() + secs(i * 40), &cfg), None, "failure {i}");
        }
        assert!(!b.is_open());
    }

    #[test]
    fn half_open_trial_success_closes_and_failure_reopens_longer_capped() {
        let cfg = BreakerConfig::default();
        let mut b = Breaker::default();
        for _ in 0..10 {
            b.on_failure(t0(), &cfg);
        }
        assert!(b.is_open());
        let after = t0() + secs(601);
        assert_eq!(b.admit(after), Admission::Trial);
        assert_eq!(b.label(), "half_open");
        // Trial fails: cooldown doubles.
        assert_eq!(b.on_failure(after, &cfg), Some(after + secs(1200)));
        let after2 = after + secs(1201);
        assert_eq!(b.admit(after2), Admission::Trial);
        assert_eq!(b.on_failure(after2, &cfg), Some(after2 + secs(2400)));
        let after3 = after2 + secs(2401);
        b.admit(after3);
        // Capped at max_cooldown_s.
        assert_eq!(b.on_failure(after3, &cfg), Some(after3 + secs(3600)));
        let after4 = after3 + secs(3601);
        assert_eq!(b.admit(after4), Admission::Trial);
        b.on_success();
        assert_eq!(b, Breaker::default());
    }

    #[test]
    fn a_lasting_connection_closes_a_breaker_an_operator_went_past() {
        let cfg = BreakerConfig::default();
        let mut b = Breaker::default();
        for _ in 0..cfg.threshold {
            b.on_failure(t0(), &cfg);
        }
        assert!(b.is_open());
        // Started by a person while open; the connection lasted.
        b.on_success();
        assert_eq!(b, Breaker::default());
        // A later drop is one failure in a fresh window, not a pause for the old cooldown.
        assert_eq!(b.on_failure(t0() + secs(120), &cfg), None);
        assert_eq!(b.admit(t0() + secs(121)), Admission::Allow);
        // Closed with failures stays as it is: only the window forgets them.
        let before = b.clone();
        b.on_success();
        assert_eq!(b, before);
    }

    #[test]
    fn reset_closes_an_open_breaker() {
        let cfg = BreakerConfig::default();
        let mut b = Breaker::default();
        for _ in 0..10 {
            b.on_failure(t0(), &cfg);
        }
        b.reset();
        assert_eq!(b.admit(t0()), Admission::Allow);
    }

    #[test]
    fn state_round_trips_through_json_for_persistence() {
        let b = Breaker::Open {
            until: t0(),
            cooldown_s: 1200,
        };
        let json = serde_json::to_string(&b).expect("json");
        assert_eq!(serde_json::from_str::<Breaker>(&json).expect("parse"), b);
    }

    #[test]
    fn invalid_config_is_rejected() {
        let c = BreakerConfig {
            threshold: 0,
            ..BreakerConfig::default()
        };
        assert!(c.validate().is_err());
        let c = BreakerConfig {
            cooldown_s: BreakerConfig::default().max_cooldown_s + 1,
            ..BreakerConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
