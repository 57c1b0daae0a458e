//! Backoff with full jitter and a floor per error class:
//! `delay = floor(class) + rand(0, min(cap, base · 2^(attempt-1)))` for the 1-based `attempt`.
//! The floor is added, not max'ed, so retries after a mass drop stay spread out instead of all
//! landing on the floor; timeouts and rate limits wait longer than a plain refusal.

use crate::error::InputError;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::jitter::Jitter;
use crate::state::Reason;

/// Error classes that get their own floor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Timeout,
    Refused,
    Closed,
    Network,
    RateLimited,
    Stale,
}

impl ErrorClass {
    pub fn of(reason: &Reason) -> Self {
        match reason {
            Reason::Timeout | Reason::Stalled => ErrorClass::Timeout,
            Reason::Refused { .. } => ErrorClass::Refused,
            Reason::RateLimited | Reason::Banned { .. } => ErrorClass::RateLimited,
            Reason::Network => ErrorClass::Network,
            Reason::Stale => ErrorClass::Stale,
            _ => ErrorClass::Closed,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Backoff {
    pub base_ms: u64,
    pub cap_ms: u64,
    pub floor_timeout_ms: u64,
    pub floor_refused_ms: u64,
    pub floor_closed_ms: u64,
    pub floor_network_ms: u64,
    pub floor_rate_limited_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base_ms: 1_000,
            cap_ms: 300_000,
            floor_timeout_ms: 5_000,
            floor_refused_ms: 2_000,
            floor_closed_ms: 500,
            floor_network_ms: 2_000,
            floor_rate_limited_ms: 60_000,
        }
    }
}

impl Backoff {
    pub fn floor(&self, class: ErrorClass) -> Duration {
        Duration::from_millis(match class {
            ErrorClass::Timeout => self.floor_timeout_ms,
            ErrorClass::Refused => self.floor_refused_ms,
            ErrorClass::Closed | ErrorClass::Stale => self.floor_closed_ms,
            ErrorClass::Network => self.floor_network_ms,
            ErrorClass::RateLimited => self.floor_rate_limited_ms,
        })
    }

    /// The jitter ceiling for attempt `attempt` (1-based): `min(cap, base · 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(32);
        let grown = self.base_ms.saturating_mul(1u64 << exp);
        Duration::from_millis(grown.min(self.cap_ms))
    }

    /// Delay before retry number `attempt` after a failure of `class`.
    pub fn delay(&self, attempt: u32, class: ErrorClass, jitter: &mut Jitter) -> Duration {
        let ceiling = self.ceiling(attempt).as_millis() as u64;
        self.floor(class) + Duration::from_millis(jitter.up_to(ceiling))
    }

    pub fn validate(&self) -> Result<(), InputError> {
        if self.base_ms == 0 {
            return Err(super::invalid("backoff.base_ms must be at least 1"));
        }
        if self.cap_ms < self.base_ms {
            return Err(super::invalid(
                "backoff.cap_ms must be at least backoff.base_ms",
            ));
        }
        let day = 86_400_000;
        let delays = [
            ("cap_ms", self.cap_ms),
            ("floor_timeout_ms", self.floor_timeout_ms),
            ("floor_refused_ms", self.floor_refused_ms),
            ("floor_closed_ms", self.floor_closed_ms),
            ("floor_network_ms", self.floor_network_ms),
            ("floor_rate_limited_ms", self.floor_rate_limited_ms),
        ];
        // Name the offending key: "backoff delays" left the operator guessing which of six it was.
        if let Some((key, _)) = delays.iter().find(|(_, v)| *v > day) {
            return Err(super::invalid(&format!(
                "backoff.{key} must be at most 86400000 (one day)"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_within_floor_plus_exponential_ceiling() {
        let b = Backoff::default();
        let mut j = Jitter::seeded(1);
        for attempt in 1..=20 {
            for class in [ErrorClass::Timeout, ErrorClass::Refused, ErrorClass::Closed] {
                let floor = b.floor(class);
                let ceiling = b.ceiling(attempt);
                for _ in 0..200 {
                    let d = b.delay(attempt, class, &mut j);
                    assert!(
                        d >= floor && d <= floor + ceiling,
                        "{attempt} {class:?} {d:?}"
                    );
                }
            }
        }
        assert_eq!(b.ceiling(1), Duration::from_secs(1));
        assert_eq!(b.ceiling(4), Duration::from_secs(8));
        assert_eq!(b.ceiling(40), Duration::from_millis(b.cap_ms));
    }

    #[test]
    fn jitter_spreads_a_mass_drop() {
        let b = Backoff::default();
        let mut j = Jitter::seeded(3);
        let delays: Vec<_> = (0..1000)
            .map(|_| b.delay(5, ErrorClass::Closed, &mut j))
            .collect();
        let distinct: std::collections::HashSet<_> = delays.iter().collect();
        assert!(distinct.len() > 900, "retries must not land together");
        let floor = b.floor(ErrorClass::Closed);
        assert!(delays.iter().filter(|d| **d == floor).count() < 5);
    }

    #[test]
    fn timeouts_wait_longer_than_refusals() {
        let b = Backoff::default();
        assert!(
            b.floor(ErrorClass::of(&Reason::Timeout))
                > b.floor(ErrorClass::of(&Reason::Refused { status: None }))
        );
        assert_eq!(ErrorClass::of(&Reason::Stalled), ErrorClass::Timeout);
    }

    #[test]
    fn invalid_values_are_rejected() {
        let b = Backoff {
            base_ms: 0,
            ..Backoff::default()
        };
        assert!(b.validate().is_err());
        let b = Backoff {
            cap_ms: 10,
            ..Backoff::default()
        };
        assert!(b.validate().is_err());
        assert!(Backoff::default().validate().is_ok());
        let b = Backoff {
            floor_network_ms: 86_400_001,
            ..Backoff::default()
        };
        let err = b.validate().expect_err("over a day");
        assert!(
            err.to_string().contains("backoff.floor_network_ms"),
            "names the key: {err}"
        );
    }
}
