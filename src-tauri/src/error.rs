//! The one error shape the UI receives: `{ code, message }`. `code` is stable and machine-read
//! (the UI picks a translation or a field to highlight by it); `message` is the engine's
//! operator-facing sentence, which already says what happened and what to do.

use serde::Serialize;
use ts_rs::TS;

use lifeline_engine::{Error, InputError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Something typed cannot be accepted; nothing was changed.
    InvalidInput,
    /// The account (or secret) does not exist (any more).
    NotFound,
    /// Another Lifeline already supervises this data dir.
    AlreadyRunning,
    /// The OS keyring refused or is locked.
    Keyring,
    /// The database could not be read or written.
    Storage,
    /// A file could not be read or written (export).
    Io,
    /// The operator cancelled (e.g. closed the save dialog).
    Cancelled,
    /// The supervisor is not running (starting up or shutting down).
    Unavailable,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, TS, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub code: ErrorCode,
    pub message: String,
}

impl CommandError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl From<InputError> for CommandError {
    fn from(e: InputError) -> Self {
        let code = match e {
            InputError::UnknownAccount(_) | InputError::UnknownSecret(_) => ErrorCode::NotFound,
            _ => ErrorCode::InvalidInput,
        };
        Self::new(code, e.to_string())
    }
}

impl From<Error> for CommandError {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::Input(input) => return input.clone().into(),
            Error::DataDirLocked { .. } => ErrorCode::AlreadyRunning,
            Error::Keyring { .. } => ErrorCode::Keyring,
            Error::DatabaseCorrupt { .. }
            | Error::DatabaseTooNew { .. }
            | Error::DatabaseOpen { .. }
            | Error::Database(_)
            | Error::Decode(_)
            | Error::DataDir { .. }
            | Error::NoDataDir => ErrorCode::Storage,
            Error::Read { .. } | Error::Write { .. } | Error::Export(_) | Error::Csv(_) => {
                ErrorCode::Io
            }
            // A fleet store URL the operator typed, or a store that cannot be used.
            Error::Fleet(f) if f.is_input() => ErrorCode::InvalidInput,
            Error::Fleet(_) => ErrorCode::Storage,
            _ => ErrorCode::Internal,
        };
        Self::new(code, e.to_string())
    }
}

pub type CommandResult<T> = Result<T, CommandError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_become_invalid_input_with_the_engine_message() {
        let e: CommandError = Error::from(InputError::EmptyName).into();
        assert_eq!(e.code, ErrorCode::InvalidInput);
        assert!(e.message.starts_with("Account name is empty"), "{e:?}");
        let json = serde_json::to_value(&e).expect("json");
        assert_eq!(json["code"], "invalid_input");
        assert_eq!(json.as_object().map(|o| o.len()), Some(2), "{json}");
    }

    #[test]
    fn unknown_things_are_not_found_and_locks_say_already_running() {
        let e: CommandError = Error::from(InputError::UnknownAccount(7)).into();
        assert_eq!(e.code, ErrorCode::NotFound);
        let e: CommandError = Error::DataDirLocked {
            path: "/d".into(),
            pid: Some(42),
        }
        .into();
        assert_eq!(e.code, ErrorCode::AlreadyRunning);
        assert!(e.message.contains("pid 42"), "{}", e.message);
        let e: CommandError = Error::Keyring {
            name: "x".into(),
            detail: "locked".into(),
        }
        .into();
        assert_eq!(serde_json::to_value(&e).expect("json")["code"], "keyring");
    }
}
