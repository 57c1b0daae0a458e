//! The fleet console: who supervises each account, the instances, the connection.

use serde::{Deserialize, Serialize};
use ts_rs::TS;

use super::SecretInput;

/// The instance supervising an account (the holder of its lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct Owner {
    /// The instance's id, shortened as `lifeline fleet status` prints it.
    pub instance: String,
    pub host: String,
    pub pid: i32,
}

impl From<lifeline_fleet::Holder> for Owner {
    fn from(h: lifeline_fleet::Holder) -> Self {
        Self {
            instance: short_id(&h.instance),
            host: h.host,
            pid: h.pid,
        }
    }
}

fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

/// One instance of the fleet, as the registry shows it.
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
pub struct FleetInstance {
    pub instance: String,
    pub host: String,
    pub pid: i32,
    pub alive: bool,
    /// Seconds since its last heartbeat (the database's clock).
    pub heartbeat_age_s: f64,
    /// Accounts it supervises now.
    #[ts(type = "number")]
    pub leases: i64,
    pub max_accounts: Option<i32>,
    #[ts(type = "number")]
    pub takeovers: i64,
    #[ts(type = "number")]
    pub renew_failures: i64,
    #[ts(type = "number")]
    pub stale_writes_refused: i64,
}

impl From<lifeline_fleet::InstanceRow> for FleetInstance {
    fn from(i: lifeline_fleet::InstanceRow) -> Self {
        Self {
            instance: short_id(&i.id),
            host: i.host,
            pid: i.pid,
            alive: i.alive,
            heartbeat_age_s: i.heartbeat_age_s,
            leases: i.leases,
            max_accounts: i.max_accounts,
            takeovers: i.takeovers,
            renew_failures: i.renew_failures,
            stale_writes_refused: i.stale_writes_refused,
        }
    }
}

/// The fleet view: the store, its totals and every instance (live ones first).
#[derive(Debug, Clone, PartialEq, Serialize, TS)]
pub struct FleetStatus {
    pub url: String,
    #[ts(type = "number")]
    pub accounts: i64,
    #[ts(type = "number")]
    pub leases_held: i64,
    #[ts(type = "number")]
    pub live_instances: i64,
    #[ts(type = "number")]
    pub takeovers: i64,
    #[ts(type = "number")]
    pub renew_failures: i64,
    #[ts(type = "number")]
    pub stale_writes_refused: i64,
    pub instances: Vec<FleetInstance>,
}

/// Settings → "Connect to a fleet".
#[derive(Debug, Clone, Deserialize, TS)]
pub struct FleetConnectInput {
    /// postgres://user@host[:port]/database, without a password.
    pub url: String,
    /// Kept in the OS keyring once the connection works; empty uses the one kept there already
    /// (or none).
    #[ts(type = "string")]
    pub password: SecretInput,
}

/// Which store the window works on, for Settings and for a window that could not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS)]
pub struct Connection {
    /// The fleet store this computer is a console of; `null`: its own accounts.
    pub fleet_store: Option<String>,
    /// Set by `LIFELINE_STORE` (Settings cannot change it).
    pub from_environment: bool,
}
