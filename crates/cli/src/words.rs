//! The CLI's words: the engine speaks in codes and parameters (reasons, states, verdicts); a
//! terminal reads English. The desktop has its own words (English and Bahasa Indonesia) in
//! its UI.

use lifeline_engine::fleet::Unhealthy;
use lifeline_engine::state::{Reason, State};
use lifeline_engine::time::rfc3339;

/// What the operator should read about a reason.
pub fn reason(r: &Reason) -> String {
    match r {
        Reason::Timeout => "timed out".into(),
        Reason::Refused { status: Some(s) } => format!("refused by the server (HTTP {s})"),
        Reason::Refused { status: None } => "connection refused".into(),
        Reason::ClosedByPeer { code: Some(c) } => format!("closed by the server (code {c})"),
        Reason::ClosedByPeer { code: None } => "closed by the server".into(),
        Reason::Stalled => "server stopped answering keepalives".into(),
        Reason::Network => "network error".into(),
        Reason::Stale => "shown connected but the connection was dead".into(),
        Reason::LoggedOut => "logged out on the phone — scan a new QR code to link it again".into(),
        Reason::Replaced => {
            "another device took over this number — relink here only if that was not intended"
                .into()
        }
        Reason::Banned { until: Some(u) } => format!("temporarily banned until {}", rfc3339(*u)),
        Reason::Banned { until: None } => "temporarily banned".into(),
        Reason::Outdated => "this Lifeline version is refused — update Lifeline".into(),
        Reason::CredentialsMissing => "a secret it needs is missing — set it in the keyring".into(),
        Reason::RateLimited => "rate limited by the server".into(),
        Reason::BreakerOpen => "too many failures — waiting before trying again".into(),
        Reason::QrExpired => "QR expired — request a new one".into(),
        Reason::PairingFailed => "linking failed — request a new QR or pair code".into(),
        Reason::Operator => "by the operator".into(),
        Reason::AutorecoverOff => "autorecover is off — start it by hand".into(),
        Reason::Shutdown => "Lifeline was shut down".into(),
        Reason::Removed => "account removed".into(),
        Reason::Crashed => "Lifeline stopped unexpectedly".into(),
        Reason::Unsupported => {
            "this Lifeline cannot connect accounts of this kind — update Lifeline".into()
        }
        Reason::RestartRequired => "the server asked for a reconnect".into(),
        Reason::NotLinked => "not linked yet — run `lifeline link ID`".into(),
    }
}

/// A state with its reason code, for tables: `backoff (closed-by-peer)`.
pub fn state_cell(s: &State) -> String {
    match s.reason() {
        Some(r) => format!("{} ({})", s.kind(), r.code()),
        None => s.kind().to_string(),
    }
}

/// Why `lifeline health` exits 1.
pub fn unhealthy(u: &Unhealthy) -> String {
    match u {
        Unhealthy::NotSupervised { .. } => {
            "no supervisor is running on this data dir: start `lifeline serve`".into()
        }
        Unhealthy::Down { down, desired } => {
            format!("{down} of {desired} desired accounts are not connected")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_read_as_sentences_with_their_parameters() {
        assert!(reason(&Reason::ClosedByPeer { code: Some(1011) }).contains("1011"));
        assert!(reason(&Reason::Refused { status: Some(503) }).contains("503"));
        assert!(reason(&Reason::NotLinked).contains("lifeline link"));
        let s = State::Backoff {
            attempt: 1,
            retry_at: chrono::Utc::now(),
            reason: Reason::Timeout,
        };
        assert_eq!(state_cell(&s), "backoff (timeout)");
    }
}
