//! Lifeline fleets: several instances share one PostgreSQL store, and each account is supervised
//! by exactly one of them, the holder of its lease.
//!
//! - [`FleetStore`] connects (the password comes from the caller, read from the keyring, never
//!   from the URL), refuses a database of another program or of a newer Lifeline before writing
//!   anything, and brings the fleet schema up to date.
//! - [`Instance`] is this process in the registry: a random id, host name and pid, a heartbeat.
//! - [`lease`] holds the rules: one conditional upsert to acquire, a renewal that says which
//!   leases are lost, claims of expired leases with `FOR UPDATE SKIP LOCKED`, and fenced writes
//!   that are refused once the writer's epoch is stale.
//! - [`sealed`] seals WhatsApp device stores with the fleet key (AES-256-GCM) so that any
//!   instance can resume an account without a new QR scan, and a dump alone opens nothing.
//! - [`keeper`] runs those rules for an instance: renewals every TTL/3, a local deadline that
//!   gives a lease up before its expiry when renewals do not get through, claims and releases
//!   that spread accounts over the live instances.
//!
//! Every time that decides a lease is the database's clock; hosts' clocks never enter.

pub mod cluster;
mod devices;
pub mod keeper;
pub mod lease;
pub mod sealed;
mod store;

pub use keeper::{Keeper, KeeperConfig, LeaseBook, LeaseEvent};
pub use lease::{Claimed, FleetTotals, Holder, InstanceCounts, InstanceRow, Lease};
pub use sealed::{FleetKey, Purpose, SealError};
pub use store::{FleetStore, Instance, InstanceId, StoreUrl};

use std::time::Duration;

/// How long a lease lasts without renewal, unless configured otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(15);

/// The name of the keyring secret holding a host's fleet key.
pub const KEY_SECRET: &str = "fleet-key";

/// An account's id, as the rest of Lifeline numbers accounts.
pub type AccountId = i64;

/// Everything that can go wrong with a fleet store, each with one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not a PostgreSQL store URL ({0}); expected postgres://user@host[:port]/database")]
    BadUrl(String),
    #[error(
        "the store URL holds a password; leave it out and keep it in the keyring instead (lifeline secret set store-password)"
    )]
    PasswordInUrl,
    #[error("cannot reach the fleet store at {target}: {detail}")]
    Unreachable { target: String, detail: String },
    #[error(
        "the fleet store at {target} refused user {user}: wrong or missing password (set it with: lifeline secret set store-password)"
    )]
    Auth { target: String, user: String },
    #[error(
        "the fleet store at {target} has no database {database}; create it first (createdb {database})"
    )]
    NoDatabase { target: String, database: String },
    #[error(
        "database {database} at {target} belongs to another program (it holds tables but is not a Lifeline fleet store); nothing was written"
    )]
    NotLifeline { target: String, database: String },
    #[error(
        "the fleet store at {target} was set up by a newer Lifeline (schema {version}, this one knows up to {known}); upgrade this instance"
    )]
    TooNew {
        target: String,
        version: i64,
        known: i64,
    },
    #[error(
        "account {account} is supervised by another instance now (lease epoch {epoch} is stale); nothing was written"
    )]
    Stale { account: AccountId, epoch: i64 },
    #[error(
        "this host's fleet key (fingerprint {here}) is not the fleet's ({fleet}) at {target}; import the fleet's key here before joining"
    )]
    WrongKey {
        target: String,
        fleet: String,
        here: String,
    },
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error("fleet store: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// The operator's input was wrong (a URL, a key), as opposed to the store or the network.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            Error::BadUrl(_) | Error::PasswordInUrl | Error::Seal(SealError::BadKey)
        )
    }

    /// True when the database could not be reached or went away mid-statement (a restart, a
    /// network cut): the same statement may succeed once it is back.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Database(e) => transient(e),
            Error::Unreachable { .. } => true,
            _ => false,
        }
    }
}

/// Whether a database error is one of losing the server rather than one of the statement:
/// the connection broke or timed out, or PostgreSQL was shutting down or not yet accepting
/// connections (SQLSTATE class 08, 57P01–57P03, 53300).
pub fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03" | "53300")
        }),
        _ => false,
    }
}

pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn losing_the_server_is_transient_and_a_statement_error_is_not() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(transient(&io));
        assert!(transient(&sqlx::Error::PoolTimedOut));
        assert!(!transient(&sqlx::Error::RowNotFound));
        assert!(!transient(&sqlx::Error::PoolClosed));
        assert!(Error::Database(sqlx::Error::PoolTimedOut).is_transient());
        assert!(!Error::PasswordInUrl.is_transient());
    }
}
