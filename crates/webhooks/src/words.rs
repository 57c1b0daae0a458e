//! Reasons in English words, for the messages Lifeline sends outside (webhooks) and for the
//! CLI: the engine speaks in codes; these are the words beside them.

use lifeline_engine::state::Reason;
use lifeline_engine::time::rfc3339;

/// What the operator should read about a reason.
pub fn reason_words(r: &Reason) -> String {
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
        Reason::NotFound => {
            "the service has no such user — check the name and add the account again".into()
        }
        Reason::Blocked => {
            "the service blocked this device — try another proxy, then retry by hand".into()
        }
    }
}
