//! Reconcile: level-triggered repair. Connector events update state at once; this periodic pass
//! compares desired vs recorded state vs the connection's own liveness and names the fix.
//! "Shown connected but dead" becomes a recorded recovery, never a silent lie.

use std::time::Duration;

use crate::state::{Reason, State};

/// What the supervisor knows about one account at pass time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation<'a> {
    pub desired: bool,
    pub state: &'a State,
    /// A connection task exists and has not ended.
    pub connection_live: bool,
    /// Time since the connector last proved liveness (pong, protocol ping, connect).
    pub since_alive: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    Nothing,
    /// Desired but idle with no reason to be: start it.
    Start,
    /// Not desired but still active: stop it.
    Stop,
    /// Recorded connected, but the connection is gone or silent: record `stale` and retry.
    Stale,
}

pub fn decide(obs: &Observation<'_>, stale_after: Duration) -> Fix {
    match (obs.desired, obs.state) {
        (true, State::Connected) => {
            let silent = obs.since_alive.is_none_or(|d| d > stale_after);
            if !obs.connection_live || silent {
                Fix::Stale
            } else {
                Fix::Nothing
            }
        }
        // Waiting sends no keepalives (the remote has nothing live); the task must still run.
        (true, State::Waiting { .. }) if !obs.connection_live => Fix::Stale,
        (true, State::Connecting) if !obs.connection_live => Fix::Start,
        (true, State::Stopped { reason }) => match reason {
            // Held back on purpose: only the operator starts these.
            Some(Reason::AutorecoverOff) => Fix::Nothing,
            _ => Fix::Start,
        },
        (true, _) => Fix::Nothing,
        (false, State::Stopped { .. } | State::NeedsOperator { .. }) => Fix::Nothing,
        (false, _) => Fix::Stop,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(desired: bool, state: &State, live: bool, alive_s: Option<u64>) -> Observation<'_> {
        Observation {
            desired,
            state,
            connection_live: live,
            since_alive: alive_s.map(Duration::from_secs),
        }
    }

    const STALE: Duration = Duration::from_secs(45);

    #[test]
    fn waiting_is_stale_only_when_its_connection_ended() {
        let waiting = State::Waiting { reason: None };
        assert_eq!(
            decide(&obs(true, &waiting, true, None), STALE),
            Fix::Nothing
        );
        assert_eq!(
            decide(&obs(true, &waiting, true, Some(600)), STALE),
            Fix::Nothing
        );
        assert_eq!(
            decide(&obs(true, &waiting, false, Some(1)), STALE),
            Fix::Stale
        );
        assert_eq!(decide(&obs(false, &waiting, true, None), STALE), Fix::Stop);
    }

    #[test]
    fn connected_but_dead_or_silent_is_stale() {
        assert_eq!(
            decide(&obs(true, &State::Connected, false, Some(1)), STALE),
            Fix::Stale
        );
        assert_eq!(
            decide(&obs(true, &State::Connected, true, Some(46)), STALE),
            Fix::Stale
        );
        assert_eq!(
            decide(&obs(true, &State::Connected, true, None), STALE),
            Fix::Stale
        );
        assert_eq!(
            decide(&obs(true, &State::Connected, true, Some(10)), STALE),
            Fix::Nothing
        );
    }

    #[test]
    fn desired_idle_accounts_start_unless_held_by_autorecover_off() {
        let stopped = State::Stopped { reason: None };
        assert_eq!(decide(&obs(true, &stopped, false, None), STALE), Fix::Start);
        let held = State::Stopped {
            reason: Some(Reason::AutorecoverOff),
        };
        assert_eq!(decide(&obs(true, &held, false, None), STALE), Fix::Nothing);
        assert_eq!(
            decide(&obs(true, &State::Connecting, false, None), STALE),
            Fix::Start
        );
        assert_eq!(
            decide(&obs(true, &State::Connecting, true, None), STALE),
            Fix::Nothing
        );
    }

    #[test]
    fn undesired_active_accounts_stop_and_waiting_ones_are_left_to_their_timers() {
        assert_eq!(
            decide(&obs(false, &State::Connected, true, Some(1)), STALE),
            Fix::Stop
        );
        let needs = State::NeedsOperator {
            reason: Reason::LoggedOut,
        };
        assert_eq!(
            decide(&obs(false, &needs, false, None), STALE),
            Fix::Nothing
        );
        assert_eq!(decide(&obs(true, &needs, false, None), STALE), Fix::Nothing);
        let paused = State::Paused {
            until: None,
            reason: Reason::BreakerOpen,
        };
        assert_eq!(
            decide(&obs(true, &paused, false, None), STALE),
            Fix::Nothing
        );
    }
}
