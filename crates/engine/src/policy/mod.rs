//! Recovery policies: small pure values, each in its own file, each tested with explicit time.
//! The supervisor feeds them facts (failures, the clock) and executes what they decide.

pub mod alerts;
pub mod autorecover;
pub mod backoff;
pub mod breaker;
pub mod config;
pub mod health;
pub mod jitter;
pub mod lifecycle;
pub mod pacing;
pub mod preset;
pub mod reconcile;

pub use config::PolicyConfig;
pub use preset::Preset;

/// A policy value out of range: the message names the key and the allowed range.
pub(crate) fn invalid(why: &str) -> crate::error::InputError {
    crate::error::InputError::InvalidPolicy(why.to_owned())
}
