//! When a delivery is tried again. The standard schedule follows the Standard Webhooks
//! recommendation (immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h), each wait
//! spread by ±10 % so receivers coming back up are not hit by every sender at once. A
//! `Retry-After` from the receiver (on 429 or 503) replaces the wait it asks to change.

use std::time::Duration;

use lifeline_engine::InputError;

/// Longest wait a `Retry-After` can ask for.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The wait before each attempt: the first is the wait before the first attempt.
    waits: Vec<Duration>,
}

impl Default for Schedule {
    fn default() -> Self {
        Self::standard()
    }
}

impl Schedule {
    pub fn standard() -> Self {
        let m = 60;
        let h = 3600;
        Self {
            waits: [
                0,
                5,
                5 * m,
                30 * m,
                2 * h,
                5 * h,
                10 * h,
                14 * h,
                20 * h,
                24 * h,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
        }
    }

    /// A schedule written as waits: `0,2s,1m,1h` (seconds when no unit is given).
    pub fn parse(text: &str) -> Result<Self, InputError> {
        let bad = |why: &str| InputError::InvalidSetting {
            key: "webhook retry schedule".into(),
            value: text.into(),
            why: why.into(),
        };
        let mut waits = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (num, unit) = match part.find(|c: char| !c.is_ascii_digit()) {
                Some(i) => part.split_at(i),
                None => (part, "s"),
            };
            let n: u64 = num
                .parse()
                .map_err(|_| bad("use waits such as 0,5s,5m,2h"))?;
            let secs = match unit {
                "ms" => {
                    waits.push(Duration::from_millis(n));
                    continue;
                }
                "s" => n,
                "m" => n * 60,
                "h" => n * 3600,
                _ => return Err(bad("units are ms, s, m and h")),
            };
            waits.push(Duration::from_secs(secs));
        }
        if waits.is_empty() || waits.len() > 50 {
            return Err(bad("give 1 to 50 waits"));
        }
        Ok(Self { waits })
    }

    /// How many attempts a delivery gets.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.waits.len()).unwrap_or(u32::MAX)
    }

    /// The wait after `made` failed attempts (`None`: no attempt is left). `retry_after` is the
    /// receiver's own ask, honoured up to a day; `roll` in [0, 1) spreads the wait by ±10 %.
    pub fn wait_after(
        &self,
        made: u32,
        retry_after: Option<Duration>,
        roll: f64,
    ) -> Option<Duration> {
        let planned = *self.waits.get(usize::try_from(made).ok()?)?;
        if let Some(asked) = retry_after {
            return Some(asked.min(MAX_RETRY_AFTER));
        }
        Some(planned.mul_f64(0.9 + 0.2 * roll.clamp(0.0, 1.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_schedule_spreads_each_wait_by_a_tenth_and_ends() {
        let s = Schedule::standard();
        assert_eq!(s.attempts(), 10);
        assert_eq!(s.wait_after(1, None, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(s.wait_after(2, None, 0.0), Some(Duration::from_secs(270)));
        assert_eq!(s.wait_after(2, None, 1.0), Some(Duration::from_secs(330)));
        assert_eq!(
            s.wait_after(9, None, 0.5),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(s.wait_after(10, None, 0.5), None);
        // The receiver's ask replaces the plan, up to a day, but never adds attempts.
        assert_eq!(
            s.wait_after(1, Some(Duration::from_secs(120)), 0.9),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            s.wait_after(1, Some(Duration::from_secs(999_999)), 0.9),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(s.wait_after(10, Some(Duration::from_secs(1)), 0.0), None);
    }

    #[test]
    fn schedules_parse_from_text_or_say_why_not() {
        let s = Schedule::parse("0, 200ms, 2s, 1m, 1h, 7").expect("parse");
        assert_eq!(s.attempts(), 6);
        assert_eq!(s.wait_after(1, None, 0.5), Some(Duration::from_millis(200)));
        assert_eq!(s.wait_after(5, None, 0.5), Some(Duration::from_secs(7)));
        for bad in ["", "x", "5d", "1,,2", "-1"] {
            let err = Schedule::parse(bad).expect_err(bad);
            assert!(err.to_string().contains("schedule"), "{err}");
        }
    }
}
