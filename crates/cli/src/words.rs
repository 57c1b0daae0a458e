//! The CLI's words: the engine speaks in codes and parameters (reasons, states, verdicts); a
//! terminal reads English. The desktop has its own words (English and Bahasa Indonesia) in
//! its UI.

use lifeline_engine::fleet::Unhealthy;
use lifeline_engine::state::State;

/// What the operator should read about a reason.
pub use lifeline_webhooks::reason_words as reason;

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
    use lifeline_engine::state::Reason;

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
