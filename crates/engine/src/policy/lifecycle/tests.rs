//! The lifecycle with plain values: explicit timestamps, a seeded jitter, no runtime.

use chrono::{Duration as Span, TimeZone, Utc};
use proptest::prelude::*;

use super::*;
use crate::policy::breaker::Breaker;

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0)
        .single()
        .expect("time")
}

fn at(s: i64) -> Timestamp {
    t0() + Span::seconds(s)
}

fn account(state: State) -> Lifecycle {
    let connection = matches!(
        state.kind(),
        StateKind::Connecting | StateKind::Linking | StateKind::Connected | StateKind::Waiting
    );
    // A waiting account has its timer, as the account task would have set it.
    let wake = match &state {
        State::Backoff { retry_at, .. } => Some(*retry_at),
        State::Paused { until, .. } => *until,
        _ => None,
    }
    .map(|at| Wake {
        at,
        kind: WakeKind::Retry,
    });
    Lifecycle {
        connection,
        wake,
        ..Lifecycle::loaded(state, t0(), true, Breaker::default())
    }
}

/// Runs one input the way the account task does: a paced attempt is answered at once with a
/// slot `slot_in` seconds away.
struct Run {
    lc: Lifecycle,
    policy: PolicyConfig,
    jitter: Jitter,
}

impl Run {
    fn new(lc: Lifecycle) -> Self {
        Self {
            lc,
            policy: PolicyConfig::default(),
            jitter: Jitter::seeded(7),
        }
    }

    fn step(&mut self, input: Input, now: Timestamp) -> (Vec<Transition>, Vec<Effect>) {
        let mut inputs = vec![input];
        let (mut transitions, mut effects) = (Vec::new(), Vec::new());
        while let Some(input) = inputs.pop() {
            let d = next(&self.lc, input, now, &self.policy, &mut self.jitter);
            self.lc = d.next;
            transitions.extend(d.transition);
            for e in d.effects {
                if e == Effect::Pace {
                    inputs.push(Input::Paced { at: now });
                }
                effects.push(e);
            }
        }
        (transitions, effects)
    }
}

fn kinds(ts: &[Transition]) -> Vec<StateKind> {
    ts.iter().map(|t| t.to.kind()).collect()
}

#[test]
fn an_operator_start_is_paced_then_connects() {
    let mut r = Run::new(account(State::INITIAL));
    let d = next(
        &r.lc,
        Input::Start {
            by: TriggeredBy::Operator,
        },
        at(0),
        &r.policy,
        &mut r.jitter,
    );
    assert_eq!(d.transition, None, "nothing happens before the paced slot");
    assert_eq!(d.effects, vec![Effect::Pace]);
    r.lc = d.next;
    // The slot is a second away: wait for it, then connect.
    let d = next(
        &r.lc,
        Input::Paced { at: at(1) },
        at(0),
        &r.policy,
        &mut r.jitter,
    );
    assert_eq!(d.effects, vec![Effect::PacingWait]);
    assert_eq!(
        d.next.wake,
        Some(Wake {
            at: at(1),
            kind: WakeKind::Connect
        })
    );
    r.lc = d.next;
    let (ts, effects) = r.step(Input::Wake(WakeKind::Connect), at(1));
    assert_eq!(kinds(&ts), vec![StateKind::Connecting]);
    assert_eq!(effects, vec![Effect::Connect]);
    assert!(r.lc.connection);
    let (ts, _) = r.step(Input::Connected { via: None }, at(2));
    assert_eq!(kinds(&ts), vec![StateKind::Connected]);
}

#[test]
fn a_drop_closes_counts_and_backs_off_within_the_jitter_bounds() {
    let mut r = Run::new(account(State::Connected));
    let (ts, effects) = r.step(
        Input::Ended {
            reason: Reason::ClosedByPeer { code: Some(1011) },
            detail: None,
        },
        at(10),
    );
    assert_eq!(effects[0], Effect::Close, "closed first");
    assert!(effects.contains(&Effect::Dropped));
    assert!(effects.contains(&Effect::SaveBreaker));
    let State::Backoff {
        attempt, retry_at, ..
    } = ts[0].to.clone()
    else {
        panic!("{:?}", ts[0].to)
    };
    assert_eq!(attempt, 1);
    let b = &r.policy.backoff;
    let floor = Span::milliseconds(b.floor_closed_ms as i64);
    let ceiling = Span::from_std(b.ceiling(1)).expect("span");
    assert!(retry_at >= at(10) + floor && retry_at <= at(10) + floor + ceiling);
    assert_eq!(r.lc.wake.map(|w| w.at), Some(retry_at));
    assert!(!r.lc.connection);
}

#[test]
fn reasons_only_a_person_can_fix_are_never_retried_by_the_engine() {
    for reason in [
        Reason::LoggedOut,
        Reason::Replaced,
        Reason::Outdated,
        Reason::CredentialsMissing,
        Reason::QrExpired,
        Reason::PairingFailed,
    ] {
        let mut r = Run::new(account(State::Connected));
        let (ts, _) = r.step(
            Input::Ended {
                reason: reason.clone(),
                detail: None,
            },
            at(1),
        );
        assert_eq!(
            ts[0].to,
            State::NeedsOperator {
                reason: reason.clone()
            }
        );
        assert_eq!(r.lc.wake, None);
        for input in [
            Input::Start {
                by: TriggeredBy::Startup,
            },
            Input::Reconcile {
                by: TriggeredBy::Reconcile,
                live: false,
                since_alive: None,
            },
            Input::Wake(WakeKind::Retry),
        ] {
            let (ts, effects) = r.step(input, at(600));
            assert!(
                ts.is_empty() && !effects.contains(&Effect::Connect),
                "{reason:?}"
            );
        }
        // A person may.
        let (ts, _) = r.step(
            Input::Start {
                by: TriggeredBy::Operator,
            },
            at(700),
        );
        assert_eq!(kinds(&ts), vec![StateKind::Connecting], "{reason:?}");
    }
    // A logged-out device of a linking kind lost its keys: it must be linked, not dialled.
    let mut lc = account(State::Connected);
    lc.links = true;
    let mut r = Run::new(lc);
    r.step(
        Input::Ended {
            reason: Reason::LoggedOut,
            detail: None,
        },
        at(1),
    );
    let (ts, effects) = r.step(
        Input::Start {
            by: TriggeredBy::Operator,
        },
        at(2),
    );
    assert_eq!(
        ts.last().map(|t| t.to.clone()),
        Some(State::NeedsOperator {
            reason: Reason::NotLinked
        })
    );
    assert!(!effects.contains(&Effect::Connect));
}

#[test]
fn a_ban_pauses_until_it_ends_and_is_not_counted_by_the_breaker() {
    let mut r = Run::new(account(State::Connecting));
    let until = at(120);
    let (ts, effects) = r.step(
        Input::Ended {
            reason: Reason::Banned { until: Some(until) },
            detail: None,
        },
        at(0),
    );
    assert!(matches!(ts[0].to, State::Paused { until: Some(u), .. } if u == until));
    assert!(!effects.contains(&Effect::SaveBreaker));
    assert_eq!(r.lc.wake.map(|w| w.at), Some(until));
    // Startup during the ban keeps waiting; at the end it connects, skipping the breaker.
    let (ts, effects) = r.step(
        Input::Start {
            by: TriggeredBy::Startup,
        },
        at(60),
    );
    assert!(ts.is_empty() && effects.is_empty());
    let (ts, _) = r.step(Input::Wake(WakeKind::Retry), until);
    assert_eq!(kinds(&ts), vec![StateKind::Connecting]);
}

#[test]
fn the_breaker_opens_after_the_threshold_and_lets_one_trial_through_after_the_cooldown() {
    let mut r = Run::new(account(State::Connecting));
    r.policy.breaker.threshold = 3;
    let mut now = at(0);
    for i in 1..=3 {
        let (ts, effects) = r.step(
            Input::Ended {
                reason: Reason::Timeout,
                detail: Some("no answer".into()),
            },
            now,
        );
        if i < 3 {
            assert_eq!(kinds(&ts), vec![StateKind::Backoff]);
            let wake = r.lc.wake.expect("retry timer");
            now = wake.at;
            r.step(Input::Wake(WakeKind::Retry), now);
            assert_eq!(r.lc.state, State::Connecting);
        } else {
            assert!(effects.contains(&Effect::BreakerOpened));
            assert!(matches!(
                ts[0].to,
                State::Paused {
                    reason: Reason::BreakerOpen,
                    ..
                }
            ));
            assert_eq!(ts[0].detail.as_deref(), Some("timeout: no answer"));
        }
    }
    let until = r.lc.wake.expect("cooldown timer").at;
    assert_eq!(
        until,
        now + Span::seconds(r.policy.breaker.cooldown_s as i64)
    );
    // The cooldown over: one trial.
    let (ts, _) = r.step(Input::Wake(WakeKind::Retry), until);
    assert_eq!(kinds(&ts), vec![StateKind::Connecting]);
    assert!(matches!(r.lc.breaker, Breaker::HalfOpen { .. }));
}

#[test]
fn a_startup_restore_is_refused_by_an_open_breaker() {
    let mut lc = account(State::INITIAL);
    lc.breaker = Breaker::Open {
        until: at(300),
        cooldown_s: 600,
    };
    let mut r = Run::new(lc);
    let (ts, effects) = r.step(
        Input::Start {
            by: TriggeredBy::Startup,
        },
        at(0),
    );
    assert!(matches!(ts[0].to, State::Paused { until: Some(u), .. } if u == at(300)));
    assert!(!effects.contains(&Effect::Connect));
}

#[test]
fn stop_remove_and_shutdown_close_and_say_why() {
    let mut r = Run::new(account(State::Connected));
    let (ts, effects) = r.step(Input::Stop, at(1));
    assert_eq!(effects, vec![Effect::Close]);
    assert_eq!(ts[0].to, stopped(Reason::Operator));
    assert!(!r.lc.desired);
    let (ts, _) = r.step(Input::Stop, at(2));
    assert!(ts.is_empty(), "stopping a stopped account records nothing");

    let mut r = Run::new(account(State::Connected));
    let (ts, effects) = r.step(Input::Remove, at(1));
    assert_eq!(effects, vec![Effect::Close, Effect::Forget]);
    assert_eq!(ts[0].to, stopped(Reason::Removed));

    let mut r = Run::new(account(State::Connected));
    let (ts, _) = r.step(Input::Shutdown, at(1));
    assert_eq!(ts[0].to, stopped(Reason::Shutdown));
    // A pause outlives a restart: its end must still be respected.
    let paused = State::Paused {
        until: Some(at(100)),
        reason: Reason::Banned {
            until: Some(at(100)),
        },
    };
    let mut r = Run::new(account(paused.clone()));
    let (ts, _) = r.step(Input::Shutdown, at(1));
    assert!(ts.is_empty());
    assert_eq!(r.lc.state, paused);
}

#[test]
fn startup_closes_what_a_crash_left_open_at_the_last_heartbeat() {
    let mut lc = account(State::Connected);
    lc.connection = false;
    lc.since = at(10);
    let mut r = Run::new(lc.clone());
    let (ts, _) = r.step(
        Input::Recover {
            crashed: true,
            at: at(50),
        },
        at(100),
    );
    assert_eq!(ts[0].to, stopped(Reason::Crashed));
    assert_eq!(ts[0].at, at(50), "dated by the last heartbeat");
    assert_eq!(ts[0].by, TriggeredBy::Startup);
    // A heartbeat older than the state itself (clock trouble) never dates it before it began.
    let mut r = Run::new(lc.clone());
    let (ts, _) = r.step(
        Input::Recover {
            crashed: true,
            at: at(0),
        },
        at(100),
    );
    assert_eq!(ts[0].at, at(10));
    let mut r = Run::new(lc);
    let (ts, _) = r.step(
        Input::Recover {
            crashed: false,
            at: at(50),
        },
        at(100),
    );
    assert_eq!(
        (ts[0].to.clone(), ts[0].at),
        (stopped(Reason::Shutdown), at(100))
    );
    let mut r = Run::new(account(State::INITIAL));
    let (ts, _) = r.step(
        Input::Recover {
            crashed: true,
            at: at(50),
        },
        at(100),
    );
    assert!(ts.is_empty(), "a stopped account stays as it is");
}

#[test]
fn holding_stopped_never_hides_that_a_person_is_needed() {
    let mut r = Run::new(account(State::NeedsOperator {
        reason: Reason::LoggedOut,
    }));
    let (ts, _) = r.step(Input::HoldStopped, at(0));
    assert!(ts.is_empty());
    let mut r = Run::new(account(State::INITIAL));
    let (ts, _) = r.step(Input::HoldStopped, at(0));
    assert_eq!(ts[0].to, stopped(Reason::AutorecoverOff));
}

#[test]
fn an_unlinked_account_never_dials_until_it_is_linked() {
    let mut lc = account(State::NeedsOperator {
        reason: Reason::NotLinked,
    });
    lc.needs_link = true;
    lc.desired = false;
    let mut r = Run::new(lc);
    let (ts, effects) = r.step(
        Input::Start {
            by: TriggeredBy::Operator,
        },
        at(0),
    );
    assert_eq!(
        ts.last().map(|t| t.to.clone()),
        Some(State::NeedsOperator {
            reason: Reason::NotLinked
        })
    );
    assert!(!effects.contains(&Effect::Connect));
    let (ts, effects) = r.step(Input::RequestLink(LinkMode::Qr), at(1));
    assert_eq!(kinds(&ts), vec![StateKind::Connecting]);
    assert!(effects.contains(&Effect::Connect));
    assert_eq!(r.lc.link, Some(LinkMode::Qr));
    // The server's "log in again" after a link: linking is done, reconnect at once.
    let (ts, _) = r.step(
        Input::Ended {
            reason: Reason::RestartRequired,
            detail: None,
        },
        at(2),
    );
    assert!(matches!(ts[0].to, State::Backoff { attempt: 0, .. }));
    assert!(!r.lc.needs_link && r.lc.link.is_none());
    let (ts, _) = r.step(Input::Wake(WakeKind::Retry), at(2));
    assert_eq!(kinds(&ts), vec![StateKind::Connecting]);
}

#[test]
fn a_link_attempt_that_fails_waits_for_the_operator_instead_of_registering_again() {
    let mut lc = account(State::NeedsOperator {
        reason: Reason::NotLinked,
    });
    lc.needs_link = true;
    lc.links = true;
    let mut r = Run::new(lc);
    r.step(Input::RequestLink(LinkMode::Qr), at(0));
    let code = crate::connector::LinkCode {
        mode: LinkMode::Qr,
        code: "2@ref".into(),
        expires_at: at(60),
    };
    let (ts, _) = r.step(Input::Link(code), at(1));
    assert_eq!(kinds(&ts), vec![StateKind::Linking]);
    // The linking connection drops: no retry (each would be a new registration), one state
    // that says so, and nothing on any timer or health pass afterwards.
    let (ts, effects) = r.step(dropped(), at(2));
    assert_eq!(
        ts.last().map(|t| t.to.clone()),
        Some(State::NeedsOperator {
            reason: Reason::PairingFailed
        })
    );
    assert!(
        ts.last()
            .and_then(|t| t.detail.as_deref())
            .is_some_and(|d| d.starts_with("linking ended (closed-by-peer)")),
        "{ts:?}"
    );
    assert!(!effects.contains(&Effect::Connect));
    assert!(r.lc.link.is_none() && r.lc.wake.is_none() && r.lc.needs_link);
    for (i, input) in [
        Input::Wake(WakeKind::Retry),
        Input::Reconcile {
            by: TriggeredBy::Reconcile,
            live: false,
            since_alive: None,
        },
    ]
    .into_iter()
    .enumerate()
    {
        let (ts, effects) = r.step(input, at(100 + i as i64));
        assert!(ts.is_empty() && !effects.contains(&Effect::Connect));
    }
    // A connect that fails before any code showed is a failed link too.
    let (ts, _) = r.step(Input::RequestLink(LinkMode::Qr), at(200));
    assert_eq!(kinds(&ts), vec![StateKind::Connecting]);
    let (ts, _) = r.step(
        Input::Ended {
            reason: Reason::Timeout,
            detail: None,
        },
        at(201),
    );
    assert_eq!(kinds(&ts), vec![StateKind::NeedsOperator]);
}

#[test]
fn the_health_pass_catches_silent_and_stuck_connections() {
    let stale_after = PolicyConfig::default().connection.stale_after();
    let mut r = Run::new(account(State::Connected));
    let (ts, _) = r.step(
        Input::Reconcile {
            by: TriggeredBy::Reconcile,
            live: true,
            since_alive: Some(stale_after + std::time::Duration::from_secs(1)),
        },
        at(100),
    );
    assert!(matches!(
        &ts[0].to,
        State::Backoff {
            reason: Reason::Stale,
            ..
        }
    ));
    assert_eq!(ts[0].by, TriggeredBy::Reconcile);
    // Connecting for longer than twice the connect timeout plus the close timeout: stuck.
    let mut r = Run::new(account(State::Connecting));
    let (ts, _) = r.step(
        Input::Reconcile {
            by: TriggeredBy::Reconcile,
            live: true,
            since_alive: None,
        },
        at(10),
    );
    assert!(ts.is_empty(), "not stuck yet");
    let (ts, effects) = r.step(
        Input::Reconcile {
            by: TriggeredBy::Reconcile,
            live: true,
            since_alive: None,
        },
        at(60),
    );
    assert_eq!(effects[0], Effect::Close);
    assert_eq!(kinds(&ts), vec![StateKind::Backoff]);
}

#[test]
fn events_from_a_connection_the_account_no_longer_wants_only_close_it() {
    let mut lc = account(State::Paused {
        until: Some(at(60)),
        reason: Reason::BreakerOpen,
    });
    lc.connection = true;
    let mut r = Run::new(lc);
    let (ts, effects) = r.step(Input::Connected { via: None }, at(1));
    assert!(ts.is_empty());
    assert_eq!(effects, vec![Effect::Close]);
}

#[test]
fn the_table_lets_a_connection_s_outcomes_follow_only_an_attempt() {
    use StateKind::*;
    for from in StateKind::ALL {
        for to in [Stopped, Connecting, Paused, NeedsOperator] {
            assert!(allowed(from, to), "{from} → {to}");
        }
        assert_eq!(
            allowed(from, Connected),
            matches!(from, Connecting | Linking | Waiting)
        );
        assert_eq!(
            allowed(from, Waiting),
            matches!(from, Connecting | Linking | Connected | Waiting)
        );
        assert_eq!(
            allowed(from, Backoff),
            matches!(from, Connecting | Linking | Connected | Waiting)
        );
    }
    assert!(!allowed(Stopped, Linking) && !allowed(Linking, Linking));
}

#[test]
fn waiting_for_the_remote_is_up_and_a_live_in_it_connects() {
    let mut r = Run::new(account(State::Connecting));
    let (ts, _) = r.step(Input::Waiting { reason: None }, at(1));
    assert_eq!(ts[0].to, State::Waiting { reason: None });
    // Told again: nothing new is recorded.
    let (ts, _) = r.step(Input::Waiting { reason: None }, at(2));
    assert!(ts.is_empty());
    let held = State::Waiting {
        reason: Some(Reason::RateLimited),
    };
    let (ts, _) = r.step(
        Input::Waiting {
            reason: Some(Reason::RateLimited),
        },
        at(3),
    );
    assert_eq!(ts[0].to, held);
    let (ts, _) = r.step(Input::Connected { via: None }, at(4));
    assert_eq!(ts[0].to, State::Connected);
    let (ts, effects) = r.step(Input::Waiting { reason: None }, at(5));
    assert_eq!(ts[0].to, State::Waiting { reason: None });
    assert!(
        !effects.contains(&Effect::Dropped),
        "a live ending is no drop"
    );
    // Starting an account that waits changes nothing: it is running.
    let (ts, effects) = r.step(
        Input::Start {
            by: TriggeredBy::Operator,
        },
        at(6),
    );
    assert!(ts.is_empty() && effects.is_empty(), "{ts:?} {effects:?}");
}

#[test]
fn a_failure_while_waiting_is_a_drop_and_backs_off() {
    let mut r = Run::new(account(State::Waiting { reason: None }));
    let (ts, effects) = r.step(
        Input::Ended {
            reason: Reason::Network,
            detail: None,
        },
        at(100),
    );
    assert_eq!(kinds(&ts), vec![StateKind::Backoff]);
    assert!(effects.contains(&Effect::Dropped));
    // A long wait is a success: the retry count had started over.
    assert!(matches!(ts[0].to, State::Backoff { attempt: 1, .. }));
}

#[test]
fn a_blocked_device_pauses_until_a_person_acts() {
    let mut r = Run::new(account(State::Connecting));
    let (ts, _) = r.step(
        Input::Ended {
            reason: Reason::Blocked,
            detail: None,
        },
        at(1),
    );
    assert_eq!(
        ts[0].to,
        State::Paused {
            until: None,
            reason: Reason::Blocked
        }
    );
    assert_eq!(r.lc.wake, None);
    let (_, effects) = r.step(Input::ForceRetry, at(2));
    assert!(effects.contains(&Effect::Pace), "{effects:?}");
}

#[test]
fn an_unknown_remote_user_needs_a_person() {
    let mut r = Run::new(account(State::Connecting));
    let (ts, _) = r.step(
        Input::Ended {
            reason: Reason::NotFound,
            detail: None,
        },
        at(1),
    );
    assert_eq!(
        ts[0].to,
        State::NeedsOperator {
            reason: Reason::NotFound
        }
    );
}

fn any_reason() -> impl Strategy<Value = Reason> {
    prop_oneof![
        Just(Reason::Timeout),
        Just(Reason::Refused { status: Some(503) }),
        Just(Reason::ClosedByPeer { code: None }),
        Just(Reason::Stalled),
        Just(Reason::Network),
        Just(Reason::LoggedOut),
        Just(Reason::Replaced),
        (0i64..600).prop_map(|s| Reason::Banned { until: Some(at(s)) }),
        Just(Reason::Banned { until: None }),
        Just(Reason::Outdated),
        Just(Reason::RateLimited),
        Just(Reason::QrExpired),
        Just(Reason::RestartRequired),
        Just(Reason::NotFound),
        Just(Reason::Blocked),
    ]
}

fn any_state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::INITIAL),
        Just(State::Connecting),
        Just(State::Connected),
        Just(State::Waiting { reason: None }),
        Just(State::Linking),
        any_reason().prop_map(|reason| State::Backoff {
            attempt: 1,
            retry_at: at(5),
            reason
        }),
        (0i64..600).prop_map(|s| State::Paused {
            until: Some(at(s)),
            reason: Reason::BreakerOpen
        }),
        any_reason().prop_map(|reason| State::NeedsOperator { reason }),
    ]
}

fn operator(input: &Input) -> bool {
    matches!(
        input,
        Input::Start {
            by: TriggeredBy::Operator
        } | Input::ForceRetry
            | Input::RequestLink(_)
            | Input::ResetBreaker
    )
}

fn any_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        Just(Input::Start {
            by: TriggeredBy::Operator
        }),
        Just(Input::Start {
            by: TriggeredBy::Startup
        }),
        Just(Input::Stop),
        Just(Input::ForceRetry),
        Just(Input::ResetBreaker),
        Just(Input::RequestLink(LinkMode::Qr)),
        Just(Input::HoldStopped),
        Just(Input::Shutdown),
        (any::<Option<String>>()).prop_map(|via| Input::Connected { via }),
        Just(Input::Waiting { reason: None }),
        Just(Input::Waiting {
            reason: Some(Reason::RateLimited)
        }),
        Just(Input::Link(crate::connector::LinkCode {
            mode: LinkMode::Qr,
            code: "2@x".into(),
            expires_at: at(60),
        })),
        (any_reason(), any::<Option<String>>())
            .prop_map(|(reason, detail)| Input::Ended { reason, detail }),
        Just(Input::Wake(WakeKind::Retry)),
        Just(Input::Wake(WakeKind::Connect)),
        (any::<bool>(), proptest::option::of(0u64..200)).prop_map(|(live, s)| {
            Input::Reconcile {
                by: TriggeredBy::Reconcile,
                live,
                since_alive: s.map(std::time::Duration::from_secs),
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// Whatever happens, in whatever order: every transition is in the table, a connection is
    /// held exactly in the states that have one (closed before another opens), nothing connects
    /// unless desired, and without a person nothing connects while a person is needed, a ban
    /// runs or the breaker is open.
    #[test]
    fn any_input_sequence_keeps_the_lifecycle_s_promises(
        start in any_state(),
        desired in any::<bool>(),
        supported in any::<bool>(),
        needs_link in any::<bool>(),
        links in any::<bool>(),
        steps in proptest::collection::vec((any_input(), 0i64..90), 1..60),
    ) {
        let mut lc = account(start);
        lc.desired = desired;
        lc.supported = supported;
        lc.needs_link = needs_link;
        lc.links = links;
        let mut r = Run::new(lc);
        r.policy.breaker.threshold = 3;
        let mut now = at(0);
        for (input, gap) in steps {
            now += Span::seconds(gap);
            let before = r.lc.clone();
            let is_operator = operator(&input);
            let (ts, effects) = r.step(input.clone(), now);
            let mut from = before.state.kind();
            for t in &ts {
                prop_assert_eq!(t.from, from);
                prop_assert!(allowed(t.from, t.to.kind()), "{:?} → {:?} on {:?}", t.from, t.to, input);
                from = t.to.kind();
            }
            let connects = effects.contains(&Effect::Connect);
            if let Some(c) = effects.iter().position(|e| *e == Effect::Connect) {
                prop_assert!(!effects[c..].contains(&Effect::Close), "closed after connecting");
                if before.connection {
                    prop_assert!(effects[..c].contains(&Effect::Close), "two connections");
                }
                prop_assert!(r.lc.desired && r.lc.supported);
            }
            let holds = matches!(r.lc.state.kind(), StateKind::Connecting | StateKind::Linking | StateKind::Connected | StateKind::Waiting);
            prop_assert_eq!(r.lc.connection, holds, "{:?} after {:?}", r.lc.state, input);
            if !is_operator {
                let waiting = match &before.state {
                    State::NeedsOperator { .. } => true,
                    State::Paused { reason: Reason::Banned { until: Some(u) }, .. } => now < *u,
                    State::Paused { reason: Reason::Banned { until: None }, .. } => true,
                    State::Paused { reason: Reason::Blocked, .. } => true,
                    _ => false,
                } || matches!(before.breaker, Breaker::Open { until, .. } if now < until);
                prop_assert!(!(waiting && connects), "connected on its own from {:?} on {:?}", before.state, input);
            }
            if r.lc.needs_link && r.lc.link.is_none() {
                prop_assert!(!connects, "dialled an unlinked account");
            }
            // A desired account waiting to retry always has its timer.
            if r.lc.desired && matches!(r.lc.state, State::Backoff { .. }) {
                prop_assert!(r.lc.wake.is_some(), "backoff without a timer after {:?}", input);
            }
        }
    }
}

fn dropped() -> Input {
    Input::Ended {
        reason: Reason::ClosedByPeer { code: Some(1011) },
        detail: None,
    }
}

/// An account that has failed `attempt` times and just connected at `t0` with `breaker`.
fn just_connected(attempt: u32, breaker: Breaker) -> Run {
    let mut lc = account(State::Connected);
    lc.attempt = attempt;
    lc.breaker = breaker;
    Run::new(lc)
}

#[test]
fn a_connection_that_drops_before_it_lasted_keeps_the_retry_count_going() {
    let stable = PolicyConfig::default().connection.stable_after_ms as i64 / 1000;
    // Dropped a moment after connecting: the fourth failure in a row, not the first.
    let mut r = just_connected(3, Breaker::default());
    let (ts, _) = r.step(dropped(), at(5));
    assert!(
        matches!(ts[0].to, State::Backoff { attempt: 4, .. }),
        "{:?}",
        ts[0].to
    );
    // The same drop after the connection lasted: a fresh failure.
    let mut r = just_connected(3, Breaker::default());
    let (ts, _) = r.step(dropped(), at(stable));
    assert!(
        matches!(ts[0].to, State::Backoff { attempt: 1, .. }),
        "{:?}",
        ts[0].to
    );
}

#[test]
fn a_half_open_breaker_closes_only_once_its_trial_connection_lasted() {
    let policy = PolicyConfig::default();
    let stable = policy.connection.stable_after_ms as i64 / 1000;
    let cooldown_s = policy.breaker.cooldown_s;
    // The trial connected, then dropped at once: the trial failed, the cooldown doubles.
    let mut r = just_connected(0, Breaker::HalfOpen { cooldown_s });
    let (ts, effects) = r.step(dropped(), at(2));
    let doubled = at(2) + Span::seconds((cooldown_s * 2) as i64);
    assert_eq!(
        ts[0].to,
        State::Paused {
            until: Some(doubled),
            reason: Reason::BreakerOpen
        }
    );
    assert!(effects.contains(&Effect::BreakerOpened));
    // The trial connection lasted: the health pass closes the breaker while it stays up.
    let mut r = just_connected(2, Breaker::HalfOpen { cooldown_s });
    let quiet = Input::Reconcile {
        by: TriggeredBy::Engine,
        live: true,
        since_alive: Some(std::time::Duration::from_secs(1)),
    };
    let (ts, effects) = r.step(quiet.clone(), at(stable - 1));
    assert!(ts.is_empty() && effects.is_empty(), "not yet: {effects:?}");
    assert_eq!(r.lc.breaker, Breaker::HalfOpen { cooldown_s });
    let (ts, effects) = r.step(quiet, at(stable));
    assert!(ts.is_empty(), "still connected: {ts:?}");
    assert_eq!(effects, vec![Effect::SaveBreaker]);
    assert_eq!(r.lc.breaker, Breaker::default());
    assert_eq!(r.lc.attempt, 0);
}

#[test]
fn an_account_that_keeps_connecting_and_dropping_backs_off_further_each_time() {
    let mut r = Run::new(account(State::Connected));
    let mut now = 0;
    let mut attempts = Vec::new();
    let mut waits = Vec::new();
    for _ in 0..4 {
        let (ts, _) = r.step(dropped(), at(now));
        let State::Backoff {
            attempt, retry_at, ..
        } = ts[0].to
        else {
            panic!("{:?}", ts[0].to)
        };
        attempts.push(attempt);
        waits.push(retry_at - at(now));
        // Back after its backoff, connected for a few seconds, then dropped again.
        let s = (retry_at - t0()).num_seconds() + 1;
        r.step(Input::Wake(WakeKind::Retry), at(s));
        let (ts, _) = r.step(Input::Connected { via: None }, at(s));
        assert_eq!(kinds(&ts), vec![StateKind::Connected]);
        now = s + 3;
    }
    assert_eq!(attempts, vec![1, 2, 3, 4]);
    let b = &r.policy.backoff;
    let floor = Span::milliseconds(b.floor_closed_ms as i64);
    let ceiling = |n| floor + Span::from_std(b.ceiling(n)).expect("span");
    for (n, wait) in (1..).zip(&waits) {
        assert!(
            *wait <= ceiling(n),
            "wait {n} is {wait} beyond {}",
            ceiling(n)
        );
    }
    // The ceiling grows with the count: the fourth wait may be far longer than the first could.
    assert!(ceiling(4) > ceiling(1) * 2);
}
