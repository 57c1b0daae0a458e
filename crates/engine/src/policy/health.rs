//! Health: uptime over a window and a 0–100 score per account, counts for the fleet. Pure
//! arithmetic over facts the store and supervisor provide.

use crate::state::StateKind;
use crate::time::Timestamp;

/// Fraction of `[window_start, now)` covered by connected intervals (`end = None` is ongoing).
pub fn uptime_ratio(
    intervals: &[(Timestamp, Option<Timestamp>)],
    window_start: Timestamp,
    now: Timestamp,
) -> f64 {
    let window = (now - window_start).num_milliseconds();
    if window <= 0 {
        return 0.0;
    }
    let covered: i64 = intervals
        .iter()
        .map(|(s, e)| {
            let s = (*s).max(window_start);
            let e = e.unwrap_or(now).min(now);
            (e - s).num_milliseconds().max(0)
        })
        .sum();
    (covered as f64 / window as f64).clamp(0.0, 1.0)
}

/// Score 0–100: 70 points for uptime over the window, 30 for few recent failures (each failure in
/// the last hour costs 3), capped at 20 while the breaker is open and at 10 while a person is needed.
pub fn score(uptime: f64, failures_last_hour: u32, breaker_open: bool, state: StateKind) -> u8 {
    let stability = 30.0 - 3.0 * f64::from(failures_last_hour.min(10));
    let mut s = (uptime.clamp(0.0, 1.0) * 70.0 + stability).round();
    if breaker_open {
        s = s.min(20.0);
    }
    if state == StateKind::NeedsOperator {
        s = s.min(10.0);
    }
    s.clamp(0.0, 100.0) as u8
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::time::parse_time;

    fn t(h: i64) -> Timestamp {
        parse_time("2026-11-01T00:00:00Z").expect("time") + Duration::hours(h)
    }

    #[test]
    fn uptime_clips_intervals_to_the_window() {
        let intervals = [(t(-5), Some(t(2))), (t(10), None)];
        // Window [0, 24): covered 0–2 and 10–24 = 16 h.
        let u = uptime_ratio(&intervals, t(0), t(24));
        assert!((u - 16.0 / 24.0).abs() < 1e-9, "{u}");
        assert_eq!(uptime_ratio(&[], t(0), t(24)), 0.0);
    }

    #[test]
    fn score_rewards_uptime_and_punishes_failures_breakers_and_operator_needs() {
        assert_eq!(score(1.0, 0, false, StateKind::Connected), 100);
        assert_eq!(score(0.5, 0, false, StateKind::Connected), 65);
        assert_eq!(score(1.0, 5, false, StateKind::Connected), 85);
        assert_eq!(score(1.0, 50, false, StateKind::Backoff), 70);
        assert_eq!(score(1.0, 0, true, StateKind::Paused), 20);
        assert_eq!(score(1.0, 0, false, StateKind::NeedsOperator), 10);
        assert_eq!(score(0.0, 10, false, StateKind::Backoff), 0);
    }
}
