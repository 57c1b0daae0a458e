use chrono::{Duration, Utc};
use lifeline_engine::AccountId;
use lifeline_engine::connector::{LinkCode, LinkMode};
use lifeline_engine::policy::alerts::Alert;

use super::*;

fn view(state: State) -> AccountView {
    AccountView {
        id: AccountId(3),
        name: "Toko Mawar".into(),
        kind: AccountKind::Websocket,
        url: Some("ws://127.0.0.1:9000/s/a".into()),
        priority: 900,
        country: Some("ID".into()),
        proxy_url: None,
        muted: false,
        notify_live: false,
        desired_running: true,
        state,
        since: Utc::now(),
        breaker: "closed",
        reconnects: 4,
        created_at: Utc::now(),
        unstable_until: None,
        identity: None,
    }
}

#[test]
fn a_backoff_card_carries_reason_retry_time_and_health() {
    let retry = Utc::now() + Duration::seconds(5);
    let v = view(State::Backoff {
        attempt: 2,
        retry_at: retry,
        reason: Reason::ClosedByPeer { code: Some(1011) },
    });
    let health = HealthBits {
        uptime_pct: 97.5,
        score: 88,
        failures_1h: 2,
        breaker: "closed",
    };
    let c = card(&v, Some(&health));
    assert_eq!(c.state, StateName::Backoff);
    let reason = c.reason.clone().expect("reason");
    assert_eq!(reason.code, "closed-by-peer");
    assert_eq!(reason.close_code, Some(1011));
    assert_eq!(c.retry_at, Some(rfc3339(retry)));
    assert_eq!(c.attempt, Some(2));
    assert_eq!(
        (c.uptime_pct, c.score, c.failures_1h),
        (Some(97.5), Some(88), 2)
    );
    assert_eq!(c.reconnects, 4);
    let json = serde_json::to_value(&c).expect("json");
    assert_eq!(json["state"], "backoff");
    assert_eq!(json["kind"], "websocket");
}

#[test]
fn a_card_carries_until_when_its_account_counts_as_unstable() {
    let until = Utc::now() + Duration::seconds(600);
    let v = AccountView {
        unstable_until: Some(until),
        ..view(State::Connected)
    };
    assert_eq!(card(&v, None).unstable_until, Some(rfc3339(until)));
    assert_eq!(card(&view(State::Connected), None).unstable_until, None);
}

#[test]
fn a_card_without_a_health_pass_yet_has_no_score() {
    let c = card(&view(State::Connected), None);
    assert_eq!(c.state, StateName::Connected);
    assert!(c.reason.is_none() && c.score.is_none() && c.uptime_pct.is_none());
}

#[test]
fn qr_codes_travel_as_svg_and_pair_codes_as_text() {
    let at = Utc::now();
    let qr = link_info(
        5,
        &LinkCode {
            mode: LinkMode::Qr,
            code: "2@abc,def,ghi".into(),
            expires_at: at,
        },
    )
    .expect("qr");
    assert_eq!(qr.mode, LinkModeName::Qr);
    let svg = qr.qr_svg.as_deref().expect("svg");
    assert!(svg.contains("<svg") && svg.contains("#000000"), "{svg}");
    assert!(qr.code.is_none(), "the raw payload is not sent separately");
    assert!(!format!("{qr:?}").contains("svg"), "Debug hides the code");
    let pair = link_info(
        5,
        &LinkCode {
            mode: LinkMode::PhoneCode {
                phone: "+6281234567890".into(),
            },
            code: "ABCD1234".into(),
            expires_at: at,
        },
    )
    .expect("pair");
    assert_eq!(pair.code.as_deref(), Some("ABCD1234"));
    assert_eq!(pair.phone.as_deref(), Some("+6281234567890"));
    assert!(!format!("{pair:?}").contains("ABCD1234"));
}

#[test]
fn alerts_and_reasons_travel_as_codes_and_parameters() {
    let since = Utc::now();
    let down = AlertInfo::from(&Alert::Down {
        account: AccountId(1),
        name: "Shop A".into(),
        reason: Some(Reason::ClosedByPeer { code: Some(4000) }),
        since,
    });
    assert_eq!(down.kind, AlertKind::Down);
    assert_eq!(down.name.as_deref(), Some("Shop A"));
    let reason = down.reason.expect("reason");
    assert_eq!(
        (reason.code.as_str(), reason.close_code),
        ("closed-by-peer", Some(4000))
    );
    assert_eq!(down.since, Some(rfc3339(since)));
    let summary = AlertInfo::from(&Alert::Summary {
        down: 7,
        needs_operator: 1,
        unstable: 2,
        examples: vec!["a".into(), "b".into()],
    });
    assert_eq!(
        (
            summary.kind,
            summary.down,
            summary.needs_operator,
            summary.unstable
        ),
        (AlertKind::Summary, 7, 1, 2)
    );
    let unstable = AlertInfo::from(&Alert::Unstable {
        account: AccountId(3),
        name: "Shop C".into(),
        drops: 5,
        window_s: 600,
    });
    assert_eq!(
        (
            unstable.kind,
            unstable.account,
            unstable.drops,
            unstable.window_s
        ),
        (AlertKind::Unstable, Some(3), 5, 600)
    );
    let until = Utc::now();
    let banned = ReasonInfo::from(&Reason::Banned { until: Some(until) });
    assert_eq!(banned.until, Some(rfc3339(until)));
}

#[test]
fn secret_inputs_never_print_their_value() {
    let s: SecretInput = serde_json::from_str("\"hunter2\"").expect("parse");
    assert!(!format!("{s:?}").contains("hunter2"));
    assert_eq!(s.into_value().expose(), "hunter2");
}

#[test]
fn prefs_fill_missing_fields_with_defaults() {
    let p: Prefs = serde_json::from_str(r#"{"language":"id"}"#).expect("parse");
    assert_eq!(p.language, Language::Id);
    assert!(p.notifications);
    assert_eq!(p.theme, Theme::System);
}
