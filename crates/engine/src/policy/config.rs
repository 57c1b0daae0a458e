//! Every policy value in one validated config, stored as JSON in `settings` under `policy`.
//! Defaults are documented here and nowhere else.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::alerts::AlertConfig;
use super::autorecover::AutorecoverConfig;
use super::backoff::Backoff;
use super::breaker::BreakerConfig;
use super::pacing::PacingConfig;
use crate::error::InputError;

pub const SETTING_KEY: &str = "policy";

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConnectionConfig {
    /// A connect attempt (TCP + TLS + handshake) that takes longer fails with `timeout`.
    pub connect_timeout_ms: u64,
    /// Keepalive ping interval on a live connection.
    pub keepalive_ms: u64,
    /// No pong (or any frame) this long after a ping: the peer is `stalled`.
    pub pong_timeout_ms: u64,
    /// Closing an old connection waits this long before the task is aborted outright.
    pub close_timeout_ms: u64,
    /// Period of the reconcile health pass.
    pub reconcile_interval_ms: u64,
    /// When every proxy of an account's chain fails, connect without a proxy. Off by default:
    /// a number that suddenly appears from the operator's own address may be flagged.
    pub direct_fallback: bool,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            connect_timeout_ms: 15_000,
            keepalive_ms: 15_000,
            pong_timeout_ms: 10_000,
            close_timeout_ms: 3_000,
            reconcile_interval_ms: 30_000,
            direct_fallback: false,
        }
    }
}

impl ConnectionConfig {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }
    pub fn keepalive(&self) -> Duration {
        Duration::from_millis(self.keepalive_ms)
    }
    pub fn pong_timeout(&self) -> Duration {
        Duration::from_millis(self.pong_timeout_ms)
    }
    pub fn close_timeout(&self) -> Duration {
        Duration::from_millis(self.close_timeout_ms)
    }
    pub fn reconcile_interval(&self) -> Duration {
        Duration::from_millis(self.reconcile_interval_ms)
    }
    /// Silence longer than this on a connected account means it is dead.
    pub fn stale_after(&self) -> Duration {
        self.keepalive() * 2 + self.pong_timeout()
    }

    pub fn validate(&self) -> Result<(), InputError> {
        let in_range = |v: u64, lo: u64, hi: u64| (lo..=hi).contains(&v);
        if !in_range(self.connect_timeout_ms, 100, 300_000) {
            return Err(super::invalid(
                "connection.connect_timeout_ms must be between 100 and 300000",
            ));
        }
        if !in_range(self.keepalive_ms, 100, 600_000) {
            return Err(super::invalid(
                "connection.keepalive_ms must be between 100 and 600000",
            ));
        }
        if !in_range(self.pong_timeout_ms, 100, 600_000) {
            return Err(super::invalid(
                "connection.pong_timeout_ms must be between 100 and 600000",
            ));
        }
        if !in_range(self.close_timeout_ms, 10, 60_000) {
            return Err(super::invalid(
                "connection.close_timeout_ms must be between 10 and 60000",
            ));
        }
        if !in_range(self.reconcile_interval_ms, 100, 3_600_000) {
            return Err(super::invalid(
                "connection.reconcile_interval_ms must be between 100 and 3600000",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    pub backoff: Backoff,
    pub breaker: BreakerConfig,
    pub pacing: PacingConfig,
    pub connection: ConnectionConfig,
    pub autorecover: AutorecoverConfig,
    pub alerts: AlertConfig,
}

impl PolicyConfig {
    pub fn validate(&self) -> Result<(), InputError> {
        let results = [
            self.backoff.validate(),
            self.breaker.validate(),
            self.pacing.validate(),
            self.connection.validate(),
            self.autorecover.validate(),
            self.alerts.validate(),
        ];
        for r in results {
            r?;
        }
        Ok(())
    }

    /// Parses and validates stored or operator-supplied JSON; missing fields take defaults.
    pub fn from_json(json: &str) -> Result<Self, InputError> {
        let cfg: PolicyConfig =
            serde_json::from_str(json).map_err(|e| InputError::InvalidSetting {
                key: SETTING_KEY.into(),
                value: json.chars().take(80).collect(),
                why: e.to_string(),
            })?;
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_design() {
        let c = PolicyConfig::default();
        c.validate().expect("valid");
        assert_eq!(c.breaker.threshold, 10);
        assert_eq!(c.breaker.window_s, 300);
        assert_eq!(c.pacing.rate_per_s, 2.0);
        assert_eq!(c.pacing.burst, 5);
        assert_eq!(c.connection.reconcile_interval_ms, 30_000);
    }

    #[test]
    fn partial_json_fills_defaults_and_bad_values_are_rejected_clearly() {
        let c = PolicyConfig::from_json(r#"{"pacing":{"rate_per_s":5}}"#).expect("valid");
        assert_eq!(c.pacing.rate_per_s, 5.0);
        assert_eq!(c.pacing.burst, 5);
        let err = PolicyConfig::from_json(r#"{"pacing":{"rate_per_s":0}}"#).expect_err("bad");
        assert!(err.to_string().contains("pacing.rate_per_s"), "{err}");
        let err = PolicyConfig::from_json(r#"{"pacing":{"rate":5}}"#).expect_err("unknown field");
        assert!(err.to_string().contains("rate"), "{err}");
        assert!(PolicyConfig::from_json("nonsense").is_err());
    }
}
