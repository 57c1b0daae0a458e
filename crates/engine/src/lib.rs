//! Lifeline's recovery engine. Everything that decides how accounts are kept connected lives here,
//! with no GUI dependency: the desktop shell and the `lifeline` CLI are thin faces over this crate.

pub mod clock;
pub mod connector;
pub mod country;
pub mod datadir;
pub mod error;
pub mod export;
pub mod fleet;
pub mod metrics;
pub mod model;
pub mod ops;
pub mod policy;
pub mod proxy;
pub mod report;
pub mod secrets;
pub mod state;
pub mod store;
pub mod supervisor;
pub mod time;
pub mod webhook;

pub use datadir::{DataDir, SupervisorLock};
pub use error::{Error, InputError, Result};
pub use model::{Account, AccountId, AccountKind, HeaderRef, NewAccount, SecretName};
pub use state::{Event, Reason, State, StateKind, TriggeredBy};
pub use store::Store;
pub use time::{TimeRange, Timestamp};
