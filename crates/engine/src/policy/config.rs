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

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
    /// A connection counts as a success (the retry count starts over, a half-open breaker
    /// closes) only once it has lasted this long: one that drops sooner is a failed attempt, so
    /// an account that keeps connecting and dropping backs off and trips its breaker.
    pub stable_after_ms: u64,
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
            stable_after_ms: 60_000,
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
    pub fn stable_after(&self) -> Duration {
        Duration::from_millis(self.stable_after_ms)
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
        if !in_range(self.stable_after_ms, 100, 3_600_000) {
            return Err(super::invalid(
                "connection.stable_after_ms must be between 100 and 3600000",
            ));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize, utoipa::ToSchema)]
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

impl PolicyConfig {
    /// Applies one `section.key=value` assignment (as `lifeline policy set` takes it), refusing
    /// unknown keys and values that do not validate; `self` is left as it was.
    pub fn assign(&self, assignment: &str) -> Result<Self, InputError> {
        let bad = |why: String| InputError::InvalidSetting {
            key: "policy".into(),
            value: assignment.to_owned(),
            why,
        };
        let (key, value) = assignment
            .split_once('=')
            .ok_or_else(|| bad("write it as section.key=value, e.g. pacing.rate_per_s=3".into()))?;
        let mut json = serde_json::to_value(self).map_err(|e| bad(e.to_string()))?;
        let mut slot = &mut json;
        let mut path: Vec<&str> = Vec::new();
        for part in key.trim().split('.') {
            let Some(keys) = slot
                .as_object()
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
            else {
                let at = path.join(".");
                return Err(bad(format!(
                    "'{at}' is a value, not a section; write {at}=VALUE"
                )));
            };
            slot = slot.get_mut(part).ok_or_else(|| {
                bad(format!(
                    "unknown key '{part}'; known here: {}",
                    keys.join(", ")
                ))
            })?;
            path.push(part);
        }
        if slot.is_object() {
            return Err(bad(format!("'{key}' is a section; name one of its values")));
        }
        *slot = serde_json::from_str(value.trim())
            .map_err(|_| bad(format!("'{}' is not a number or true/false", value.trim())))?;
        let cfg: PolicyConfig = serde_json::from_value(json).map_err(|e| bad(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Every value of a policy as `section.key` and its JSON text, in a stable order.
fn value_texts(cfg: &PolicyConfig) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Ok(serde_json::Value::Object(sections)) = serde_json::to_value(cfg) {
        for (section, values) in sections {
            if let serde_json::Value::Object(values) = values {
                for (key, value) in values {
                    out.push((format!("{section}.{key}"), value.to_string()));
                }
            }
        }
    }
    out
}

/// One value that a policy change altered (`old` is `None` when nothing usable was stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PolicyChange {
    /// `section.key`, as `lifeline policy set` names it.
    pub key: String,
    pub old: Option<String>,
    pub new: String,
}

impl PolicyConfig {
    /// The values that differ from `old` to `self` (every value when `old` is unknown).
    pub fn changes_from(&self, old: Option<&PolicyConfig>) -> Vec<PolicyChange> {
        let before: std::collections::HashMap<String, String> = old
            .map(value_texts)
            .unwrap_or_default()
            .into_iter()
            .collect();
        value_texts(self)
            .into_iter()
            .filter(|(key, new)| before.get(key) != Some(new))
            .map(|(key, new)| PolicyChange {
                old: before.get(&key).cloned(),
                key,
                new,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Every `section.key` of the policy, as `policy show` prints them.
    fn leaves() -> Vec<(String, serde_json::Value)> {
        let json = serde_json::to_value(PolicyConfig::default()).expect("json");
        let mut out = Vec::new();
        for (section, values) in json.as_object().expect("sections") {
            for (key, value) in values.as_object().expect("values") {
                out.push((format!("{section}.{key}"), value.clone()));
            }
        }
        out
    }

    #[test]
    fn changes_name_each_altered_value_with_old_and_new() {
        let old = PolicyConfig::default();
        let new = old
            .assign("breaker.threshold=2")
            .and_then(|p| p.assign("pacing.rate_per_s=1.5"))
            .expect("valid");
        let changes = new.changes_from(Some(&old));
        assert_eq!(
            changes,
            vec![
                PolicyChange {
                    key: "breaker.threshold".into(),
                    old: Some(old.breaker.threshold.to_string()),
                    new: "2".into(),
                },
                PolicyChange {
                    key: "pacing.rate_per_s".into(),
                    old: Some(serde_json::to_string(&old.pacing.rate_per_s).expect("json")),
                    new: "1.5".into(),
                },
            ]
        );
        assert!(old.changes_from(Some(&old)).is_empty());
        assert_eq!(old.changes_from(None).len(), value_texts(&old).len());
    }

    #[test]
    fn a_value_is_not_a_section() {
        let err = PolicyConfig::default()
            .assign("pacing.rate_per_s.x=1")
            .expect_err("bad");
        assert!(
            err.to_string().contains("'pacing.rate_per_s' is a value"),
            "{err}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        /// Whatever is typed: a validated policy or an input error, never a panic.
        #[test]
        fn any_assignment_gives_a_valid_policy_or_an_input_error(
            key in prop_oneof![
                prop::sample::select(leaves()).prop_map(|(k, _)| k),
                "[a-z_.]{0,24}",
                any::<String>(),
            ],
            value in prop_oneof![
                any::<i64>().prop_map(|v| v.to_string()),
                any::<f64>().prop_map(|v| v.to_string()),
                Just("true".to_owned()),
                "[ -~]{0,12}",
                any::<String>(),
            ],
            sep in prop::sample::select(vec!["=", " = ", "==", ""]),
        ) {
            if let Ok(cfg) = PolicyConfig::default().assign(&format!("{key}{sep}{value}")) {
                prop_assert!(cfg.validate().is_ok());
            }
        }

        /// Writing back what `policy show` prints changes nothing, for every key.
        #[test]
        fn shown_values_assign_back_unchanged(leaf in prop::sample::select(leaves())) {
            let (key, value) = leaf;
            let cfg = PolicyConfig::default();
            prop_assert_eq!(cfg.assign(&format!("{key}={value}")).ok(), Some(cfg));
        }
    }

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
