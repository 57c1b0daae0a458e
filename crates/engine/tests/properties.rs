//! Property tests: every parser of operator input and every recovery policy, checked against
//! thousands of generated inputs instead of a handful of examples. Parsers must never panic and
//! either accept (and then round-trip) or return their typed error; policies must keep their
//! promises (bounds, thresholds, cooldowns, rates) for any configuration the validator accepts.
//!
//! Case counts stay modest so the whole file runs in a few seconds in a debug build; raise them
//! for a deeper run with `PROPTEST_CASES=10000 cargo test -p lifeline-engine --test properties`.

use std::time::Duration;

use chrono::{FixedOffset, TimeZone, Utc};
use proptest::collection::vec;
use proptest::prelude::*;

use lifeline_engine::InputError;
use lifeline_engine::country;
use lifeline_engine::export::neutralize;
use lifeline_engine::metrics::classic_text;
use lifeline_engine::model::AccountId;
use lifeline_engine::model::{
    AccountKind, HeaderRef, MAX_NAME_CHARS, NewAccount, SecretName, normalize_phone, validate_name,
};
use lifeline_engine::ops::{self, Action};
use lifeline_engine::policy::PolicyConfig;
use lifeline_engine::policy::alerts::{Alert, AlertConfig, Alerter};
use lifeline_engine::policy::backoff::{Backoff, ErrorClass};
use lifeline_engine::policy::breaker::{Admission, Breaker, BreakerConfig};
use lifeline_engine::policy::jitter::Jitter;
use lifeline_engine::policy::pacing::{Pacer, PacingConfig};
use lifeline_engine::proxy::Target;
use lifeline_engine::state::{Reason, State, StateKind, TriggeredBy};
use lifeline_engine::time::{
    TimeRange, Timestamp, from_ms, parse_time, rfc3339, to_ms, write_rfc3339_ms,
};

/// Cases per property unless `PROPTEST_CASES` says otherwise.
fn cases(n: u32) -> ProptestConfig {
    let from_env = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok());
    ProptestConfig {
        cases: from_env.unwrap_or(n),
        // Failures are reported with their minimal input; no regression files in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Any text an operator could paste, weighted towards the awkward: control characters, NUL,
/// emoji, right-to-left text, combining marks and bidi controls.
fn odd_text(max: usize) -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => any::<char>().prop_map(String::from),
        2 => "[ -~]{1,4}",
        1 => prop::sample::select(vec![
            "\0", "\n", "\r\n", "\t", "\u{1b}[31m", "\u{7f}", "\u{85}", "\u{feff}", "\u{200b}",
            "\u{200e}", "\u{202e}", "\u{2066}", "\u{2069}", "\u{301}", "🍜", "👩‍👩‍👧", "🇮🇩",
            "متجر", "שלום", "中文", "ß", " ", "\u{a0}", "=", "+", "-", "@", "%", "'", "\"",
        ])
        .prop_map(str::to_owned),
    ];
    vec(piece, 0..max).prop_map(|parts| parts.concat())
}

fn t0() -> Timestamp {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .expect("valid date")
}

// ---------------------------------------------------------------------------------------------
// Parsers of operator input
// ---------------------------------------------------------------------------------------------

fn is_e164(s: &str) -> bool {
    let Some(digits) = s.strip_prefix('+') else {
        return false;
    };
    (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn phone_parser_never_panics_and_accepts_only_e164(raw in odd_text(24)) {
        match normalize_phone(&raw) {
            Ok(p) => {
                prop_assert!(is_e164(&p), "{raw:?} → {p:?}");
                prop_assert_eq!(normalize_phone(&p), Ok(p.clone()), "normalising is idempotent");
            }
            Err(e) => prop_assert_eq!(e, InputError::InvalidPhone(raw.clone())),
        }
    }

    /// The parser agrees with its spec on strings close to phone numbers.
    #[test]
    fn phone_parser_matches_its_specification(raw in "[ ]?[+]?[0-9 ().x-]{0,22}[ ]?") {
        let expected = raw.trim().strip_prefix('+').and_then(|rest| {
            let allowed = rest.chars().all(|c| c.is_ascii_digit() || " -.()".contains(c));
            let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
            (allowed && (8..=15).contains(&digits.len()) && !digits.starts_with('0'))
                .then(|| format!("+{digits}"))
        });
        prop_assert_eq!(normalize_phone(&raw).ok(), expected);
    }

    #[test]
    fn numbers_written_with_separators_normalise_to_their_digits(
        first in 1u8..=9,
        rest in vec(0u8..=9, 7..=14),
        seps in vec(prop::sample::select(vec!["", "", " ", "-", ".", "(", ")"]), 15),
    ) {
        let digits: String = std::iter::once(first)
            .chain(rest)
            .map(|d| char::from(b'0' + d))
            .collect();
        let mut typed = String::from(" +");
        for (d, sep) in digits.chars().zip(&seps) {
            typed.push(d);
            typed.push_str(sep);
        }
        typed.push(' ');
        prop_assert_eq!(normalize_phone(&typed), Ok(format!("+{digits}")));
    }

    #[test]
    fn name_validation_never_panics_and_accepted_names_are_clean(raw in odd_text(40)) {
        match validate_name(&raw) {
            Ok(name) => {
                prop_assert_eq!(name.as_str(), name.trim());
                prop_assert!((1..=MAX_NAME_CHARS).contains(&name.chars().count()));
                prop_assert!(!name.chars().any(char::is_control), "{name:?}");
                prop_assert_eq!(validate_name(&name), Ok(name.clone()), "idempotent");
            }
            Err(e) => prop_assert!(
                matches!(
                    e,
                    InputError::EmptyName
                        | InputError::NameTooLong { .. }
                        | InputError::NameHasControlChars
                ),
                "{e:?}"
            ),
        }
    }

    /// Emoji, right-to-left scripts, combining marks: stored exactly as typed, up to the limit.
    #[test]
    fn printable_names_in_any_script_are_kept_verbatim(
        parts in vec(
            prop::sample::select(vec![
                "🍜", "👩‍👩‍👧", "🇮🇩", "متجر", "שלום", "中文", "e\u{301}", "ß", "Toko", "O'Brien",
                "\"Mawar\"", "\u{200f}متجر",
            ]),
            1..40,
        ),
    ) {
        let name = parts.join(" ");
        let chars = name.chars().count();
        let result = validate_name(&name);
        if chars <= MAX_NAME_CHARS {
            prop_assert_eq!(result, Ok(name.clone()));
        } else {
            prop_assert_eq!(result, Err(InputError::NameTooLong { chars }));
        }
    }

    #[test]
    fn secret_names_parse_exactly_their_alphabet_and_round_trip(raw in odd_text(12)) {
        let valid = !raw.is_empty()
            && raw.len() <= 64
            && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        match SecretName::parse(&raw) {
            Ok(name) => {
                prop_assert!(valid, "{raw:?} accepted");
                prop_assert_eq!(name.to_string(), raw.clone());
                let json = serde_json::to_string(&name).expect("serialize");
                prop_assert_eq!(serde_json::from_str::<SecretName>(&json).ok(), Some(name));
            }
            Err(e) => {
                prop_assert!(!valid, "{raw:?} refused");
                prop_assert_eq!(e, InputError::InvalidSecretName(raw.clone()));
            }
        }
    }

    #[test]
    fn valid_secret_names_always_parse(raw in "[A-Za-z0-9._-]{1,64}") {
        let name = SecretName::parse(&raw).expect("valid by construction");
        prop_assert_eq!(SecretName::parse(&name.to_string()), Ok(name));
    }

    #[test]
    fn header_refs_parse_or_refuse_and_round_trip(
        raw in odd_text(12),
        name in "[A-Za-z0-9-]{1,64}",
        secret in "[A-Za-z0-9._-]{1,64}",
    ) {
        // Arbitrary text: a typed error, never a panic.
        if let Err(e) = HeaderRef::parse(&raw) {
            prop_assert!(
                matches!(e, InputError::InvalidHeaderName(_) | InputError::InvalidSecretName(_)),
                "{e:?}"
            );
        }
        let h = HeaderRef::parse(&format!(" {name} = {secret} ")).expect("valid by construction");
        prop_assert_eq!(&h.name, &name);
        prop_assert_eq!(h.secret.as_str(), secret.as_str());
        let again = HeaderRef::parse(&format!("{}={}", h.name, h.secret)).expect("round trip");
        prop_assert_eq!(again, h);
    }

    #[test]
    fn country_codes_are_case_insensitive_and_canonical(raw in odd_text(4), pair in "[A-Za-z]{2}") {
        if let Some(code) = country::normalize(&raw) {
            prop_assert!(code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()));
            prop_assert_eq!(country::normalize(&code), Some(code.clone()));
        }
        let upper = country::normalize(&pair.to_ascii_uppercase());
        prop_assert_eq!(country::normalize(&pair.to_ascii_lowercase()), upper.clone());
        prop_assert_eq!(country::normalize(&format!("  {pair} ")), upper.clone());
        if let Some(code) = upper {
            prop_assert_eq!(code, pair.to_ascii_uppercase());
        }
    }

    #[test]
    fn time_parser_never_panics(raw in odd_text(30)) {
        if let Err(e) = parse_time(&raw) {
            prop_assert_eq!(e, InputError::InvalidTime(raw.clone()));
        }
    }

    /// Every instant Lifeline prints (RFC 3339, milliseconds, UTC) reads back as the same
    /// instant, and so does the same instant written with any offset.
    #[test]
    fn printed_times_parse_back_to_the_same_instant(
        ms in 0i64..=253_402_300_799_999,
        offset_min in -(23 * 60 + 59)..=(23 * 60 + 59),
    ) {
        let t = from_ms(ms);
        prop_assert_eq!(parse_time(&rfc3339(t)), Ok(t));
        let offset = FixedOffset::east_opt(offset_min * 60).expect("offset in range");
        let local = t.with_timezone(&offset).to_rfc3339();
        // An offset can move the local date past year 9999, which RFC 3339 cannot write.
        if let Ok(parsed) = parse_time(&local) {
            prop_assert_eq!(parsed, t, "{}", local);
        }
        let mut fast = String::new();
        write_rfc3339_ms(ms, &mut fast);
        prop_assert_eq!(fast, rfc3339(t));
    }

    #[test]
    fn dates_mean_midnight_utc(y in 1000i32..=9999, m in 1u32..=12, d in 1u32..=31) {
        let typed = format!("{y:04}-{m:02}-{d:02}");
        match Utc.with_ymd_and_hms(y, m, d, 0, 0, 0).single() {
            Some(midnight) => prop_assert_eq!(parse_time(&typed), Ok(midnight)),
            None => prop_assert_eq!(parse_time(&typed), Err(InputError::InvalidTime(typed.clone()))),
        }
    }

    #[test]
    fn millisecond_formatter_never_panics_on_any_stored_value(ms in any::<i64>()) {
        let mut out = String::new();
        write_rfc3339_ms(ms, &mut out);
        prop_assert!(!out.is_empty());
        prop_assert_eq!(to_ms(from_ms(to_ms(from_ms(ms)))), to_ms(from_ms(ms)));
    }

    #[test]
    fn time_ranges_are_accepted_exactly_when_since_is_before_until(
        a in -1_000_000_000i64..1_000_000_000,
        b in -1_000_000_000i64..1_000_000_000,
    ) {
        let (since, until) = (from_ms(to_ms(t0()) + a), from_ms(to_ms(t0()) + b));
        match TimeRange::new(Some(since), Some(until)) {
            Ok(r) => {
                prop_assert!(since < until);
                prop_assert_eq!(r, TimeRange { since: Some(since), until: Some(until) });
            }
            Err(e) => {
                prop_assert!(since >= until);
                prop_assert_eq!(
                    e,
                    InputError::InvertedRange { since: rfc3339(since), until: rfc3339(until) }
                );
            }
        }
        prop_assert!(TimeRange::new(Some(since), None).is_ok());
        prop_assert!(TimeRange::new(None, Some(until)).is_ok());
    }
}

fn no_credentials(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| u.username().is_empty() && u.password().is_none())
}

fn ws_account(url: &str) -> NewAccount {
    NewAccount::new(AccountKind::Websocket, "a").with_url(url)
}

fn proxied(proxy: &str) -> NewAccount {
    let mut a = ws_account("ws://h/");
    a.proxy_url = Some(proxy.to_owned());
    a
}

/// Text shaped like URLs: right and wrong schemes, hosts, ports, credentials and paths.
fn url_like() -> impl Strategy<Value = String> {
    let scheme = prop::sample::select(vec![
        "ws://",
        "wss://",
        "WS://",
        "http://",
        "https://",
        "socks5://",
        "socks5h://",
        "ftp://",
        "javascript:",
        "ws:",
        "",
        "ws:///",
    ]);
    let creds = prop::sample::select(vec!["", "", "", "user@", "user:pw@", ":@"]);
    let host = prop::sample::select(vec![
        "",
        "h",
        "127.0.0.1",
        "[::1]",
        "[::1",
        "example.com",
        "ex ample.com",
        "xn--mnchen-3ya.de",
        "münchen.de",
        "256.1.1.1",
        "%00",
        "🍜.com",
    ]);
    let port = prop::sample::select(vec![
        "", "", ":", ":0", ":80", ":1080", ":9000", ":65535", ":65536", ":-1", ":abc",
    ]);
    let path = prop_oneof![
        Just(String::new()),
        "/[a-z0-9%?#&=/._~ -]{0,16}",
        odd_text(4)
    ];
    (scheme, creds, host, port, path).prop_map(|(s, c, h, p, path)| format!("{s}{c}{h}{p}{path}"))
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn websocket_urls_are_accepted_only_as_canonical_ws_urls(raw in prop_oneof![url_like(), odd_text(16)]) {
        match ws_account(&raw).validate() {
            Ok(a) => {
                let url = a.url.expect("websocket accounts keep their URL");
                prop_assert!(url.starts_with("ws://") || url.starts_with("wss://"), "{url}");
                prop_assert!(no_credentials(&url), "no credentials stored: {url}");
                // Canonical: validating the stored form changes nothing.
                prop_assert_eq!(ws_account(&url).validate().ok().and_then(|a| a.url), Some(url.clone()));
                prop_assert!(Target::of_url(&url).is_some(), "the connector can reach {url}");
            }
            Err(e) => prop_assert!(matches!(e, InputError::InvalidUrl { .. }), "{e:?}"),
        }
    }

    #[test]
    fn proxy_urls_are_accepted_only_without_credentials_and_with_a_port(
        raw in prop_oneof![url_like(), odd_text(16)],
    ) {
        match proxied(&raw).validate() {
            Ok(a) => {
                let url = a.proxy_url.expect("kept");
                prop_assert!(
                    ["socks5://", "socks5h://", "http://"].iter().any(|s| url.starts_with(s)),
                    "{url}"
                );
                prop_assert!(no_credentials(&url), "{url}");
                prop_assert_eq!(proxied(&url).validate().ok().and_then(|a| a.proxy_url), Some(url.clone()));
            }
            Err(e) => prop_assert_eq!(e, InputError::InvalidProxy(raw.clone())),
        }
    }

    #[test]
    fn targets_come_from_host_and_port(
        host in "[a-z][a-z0-9-]{0,12}(\\.[a-z]{2,5})?",
        port in 1u16..,
        secure in any::<bool>(),
        raw in prop_oneof![url_like(), odd_text(16)],
    ) {
        let _ = Target::of_url(&raw);
        let scheme = if secure { "wss" } else { "ws" };
        let t = Target::of_url(&format!("{scheme}://{host}:{port}/x")).expect("valid URL");
        prop_assert_eq!(t, Target { host, port });
    }

    #[test]
    fn named_values_parse_exactly_their_own_names(raw in "[a-z_-]{0,16}") {
        for k in StateKind::ALL {
            prop_assert_eq!(StateKind::parse(k.as_str()), Some(k));
        }
        if let Some(k) = StateKind::parse(&raw) {
            prop_assert_eq!(k.as_str(), raw.as_str());
        }
        for t in [TriggeredBy::Engine, TriggeredBy::Operator, TriggeredBy::Reconcile, TriggeredBy::Startup] {
            prop_assert_eq!(TriggeredBy::parse(t.as_str()), Some(t));
        }
        if let Some(t) = TriggeredBy::parse(&raw) {
            prop_assert_eq!(t.as_str(), raw.as_str());
        }
        for a in Action::ALL {
            if let Some(one) = Action::for_one(a.as_str()) {
                prop_assert_eq!(one, a);
            }
        }
        if let Some(a) = Action::for_one(&raw) {
            prop_assert_eq!(a.as_str(), raw.as_str());
        }
        if let Some(a) = Action::for_all(&raw) {
            prop_assert_eq!(format!("{}-all", a.as_str()), raw.clone());
        }
        // A queued command this version reads back is one it writes the same way.
        if let Some(op) = ops::Op::decode(&raw, Some(lifeline_engine::AccountId(1)), None) {
            let (name, _, _) = op.encode();
            prop_assert_eq!(name, raw.clone());
        }
        for k in [AccountKind::Websocket, AccountKind::Whatsapp] {
            prop_assert_eq!(k.to_string().parse::<AccountKind>(), Ok(k));
        }
        match raw.parse::<AccountKind>() {
            Ok(k) => prop_assert_eq!(k.as_str(), raw.as_str()),
            Err(why) => prop_assert!(why.contains(&raw), "{why}"),
        }
    }

    #[test]
    fn stored_states_round_trip_and_junk_is_refused_without_panicking(
        state in any_state(),
        junk in odd_text(20),
    ) {
        let json = serde_json::to_string(&state).expect("serialize");
        prop_assert_eq!(serde_json::from_str::<State>(&json).ok(), Some(state.clone()));
        let _ = serde_json::from_str::<State>(&junk);
        let _ = serde_json::from_str::<Reason>(&junk);
    }

    #[test]
    fn csv_cells_never_start_a_formula_and_lose_nothing(cell in odd_text(10)) {
        let out = neutralize(&cell);
        let first = out.as_bytes().first().copied();
        prop_assert!(!matches!(first, Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')), "{out:?}");
        let restored = if out.len() == cell.len() { &out[..] } else { &out[1..] };
        prop_assert_eq!(restored, cell.as_str());
    }

    #[test]
    fn classic_metrics_text_never_panics_and_keeps_every_sample(text in prop_oneof![
        odd_text(20),
        vec(prop::sample::select(vec![
            "# HELP x_total help", "# TYPE x counter", "# TYPE g gauge", "# UNIT x seconds",
            "# EOF", "x_total 1", "g 2", "# HELP", "# TYPE ", "", "#", "# HELP y",
        ]), 0..12).prop_map(|l| l.join("\n")),
    ]) {
        // A lone carriage return is not a line end to `str::lines`; keep the comparison simple.
        let text = text.replace('\r', "");
        let out = classic_text(&text);
        prop_assert!(out.lines().all(|l| l != "# EOF" && !l.starts_with("# UNIT ")), "{out}");
        let samples = |s: &str| -> Vec<String> {
            s.lines().filter(|l| !l.starts_with('#')).map(str::to_owned).collect()
        };
        prop_assert_eq!(samples(&out), samples(&text));
    }
}

fn any_timestamp() -> impl Strategy<Value = Timestamp> {
    (0i64..=253_402_300_799_999).prop_map(from_ms)
}

fn any_reason() -> impl Strategy<Value = Reason> {
    prop_oneof![
        Just(Reason::Timeout),
        any::<Option<u16>>().prop_map(|status| Reason::Refused { status }),
        any::<Option<u16>>().prop_map(|code| Reason::ClosedByPeer { code }),
        Just(Reason::Stalled),
        Just(Reason::Network),
        Just(Reason::Stale),
        Just(Reason::LoggedOut),
        Just(Reason::Replaced),
        proptest::option::of(any_timestamp()).prop_map(|until| Reason::Banned { until }),
        Just(Reason::Outdated),
        Just(Reason::CredentialsMissing),
        Just(Reason::RateLimited),
        Just(Reason::BreakerOpen),
        Just(Reason::QrExpired),
        Just(Reason::PairingFailed),
        Just(Reason::Operator),
        Just(Reason::AutorecoverOff),
        Just(Reason::Shutdown),
        Just(Reason::Removed),
        Just(Reason::Crashed),
        Just(Reason::Unsupported),
        Just(Reason::RestartRequired),
    ]
}

fn any_state() -> impl Strategy<Value = State> {
    prop_oneof![
        proptest::option::of(any_reason()).prop_map(|reason| State::Stopped { reason }),
        Just(State::Linking),
        Just(State::Connecting),
        Just(State::Connected),
        (any::<u32>(), any_timestamp(), any_reason()).prop_map(|(attempt, retry_at, reason)| {
            State::Backoff {
                attempt,
                retry_at,
                reason,
            }
        }),
        (proptest::option::of(any_timestamp()), any_reason())
            .prop_map(|(until, reason)| State::Paused { until, reason }),
        any_reason().prop_map(|reason| State::NeedsOperator { reason }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Policy values
// ---------------------------------------------------------------------------------------------

/// Every numeric policy value with its allowed range when the others keep their defaults.
const RANGES: &[(&str, &str, u64, u64)] = &[
    ("backoff", "base_ms", 1, 300_000),
    ("backoff", "cap_ms", 1_000, 86_400_000),
    ("backoff", "floor_timeout_ms", 0, 86_400_000),
    ("backoff", "floor_refused_ms", 0, 86_400_000),
    ("backoff", "floor_closed_ms", 0, 86_400_000),
    ("backoff", "floor_network_ms", 0, 86_400_000),
    ("backoff", "floor_rate_limited_ms", 0, 86_400_000),
    ("breaker", "threshold", 1, 1000),
    ("breaker", "window_s", 1, 86_400),
    ("breaker", "cooldown_s", 1, 3600),
    ("breaker", "max_cooldown_s", 600, 604_800),
    ("pacing", "burst", 1, 10_000),
    ("connection", "connect_timeout_ms", 100, 300_000),
    ("connection", "keepalive_ms", 100, 600_000),
    ("connection", "pong_timeout_ms", 100, 600_000),
    ("connection", "close_timeout_ms", 10, 60_000),
    ("connection", "reconcile_interval_ms", 100, 3_600_000),
    ("autorecover", "start_delay_ms", 0, 600_000),
    ("autorecover", "concurrency", 1, 4096),
    ("alerts", "grace_s", 0, 86_400),
    ("alerts", "summary_threshold", 2, u32::MAX as u64),
];

/// The widest integer each field's type holds (u32 fields beyond it fail to parse, not validate).
fn type_max(key: &str) -> u64 {
    match key {
        "threshold" | "burst" | "concurrency" | "summary_threshold" => u64::from(u32::MAX),
        _ => u64::MAX,
    }
}

fn one_value(section: &str, key: &str, value: impl std::fmt::Display) -> String {
    format!(r#"{{"{section}":{{"{key}":{value}}}}}"#)
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn every_value_in_range_is_accepted_and_stored_as_given(
        field in prop::sample::select(RANGES),
        pick in any::<u64>(),
    ) {
        let (section, key, lo, hi) = field;
        let v = lo + pick % (hi - lo + 1);
        let cfg = PolicyConfig::from_json(&one_value(section, key, v));
        prop_assert!(cfg.is_ok(), "{section}.{key}={v}: {cfg:?}");
        let stored = serde_json::to_value(cfg.expect("checked")).expect("json");
        prop_assert_eq!(&stored[section][key], &serde_json::json!(v));
    }

    #[test]
    fn every_value_out_of_range_is_refused_naming_its_key(
        field in prop::sample::select(RANGES),
        pick in any::<u64>(),
        above in any::<bool>(),
    ) {
        let (section, key, lo, hi) = field;
        let v = if above && hi < type_max(key) {
            hi + 1 + pick % (type_max(key) - hi)
        } else if lo > 0 {
            pick % lo
        } else {
            return Ok(());
        };
        match PolicyConfig::from_json(&one_value(section, key, v)) {
            Err(InputError::InvalidPolicy(why)) => {
                prop_assert!(why.contains(&format!("{section}.{key}")), "{section}.{key}={v}: {why}");
            }
            other => prop_assert!(false, "{section}.{key}={v} accepted: {other:?}"),
        }
    }

    #[test]
    fn pacing_rate_is_accepted_exactly_in_its_range(rate in prop_oneof![
        any::<f64>(),
        0.0f64..20_000.0,
        Just(0.01),
        Just(10_000.0),
        Just(0.009_999),
        Just(10_000.001),
    ]) {
        let cfg = PacingConfig { rate_per_s: rate, ..PacingConfig::default() };
        let in_range = (0.01..=10_000.0).contains(&rate);
        prop_assert_eq!(cfg.validate().is_ok(), in_range, "{}", rate);
        if let Err(e) = cfg.validate() {
            prop_assert!(e.to_string().contains("pacing.rate_per_s"), "{e}");
        }
    }

    #[test]
    fn stored_policy_text_never_panics_and_valid_configs_round_trip(
        junk in odd_text(30),
        cfg in any_policy(),
    ) {
        let _ = PolicyConfig::from_json(&junk);
        let json = serde_json::to_string(&cfg).expect("serialize");
        match cfg.validate() {
            Ok(()) => prop_assert_eq!(PolicyConfig::from_json(&json), Ok(cfg)),
            Err(e) => prop_assert_eq!(PolicyConfig::from_json(&json), Err(e)),
        }
    }
}

/// Configurations from anywhere in each field's type, valid or not.
fn any_policy() -> impl Strategy<Value = PolicyConfig> {
    let near =
        |lo: u64, hi: u64| prop_oneof![lo.saturating_sub(2)..=hi.saturating_add(2), any::<u64>()];
    let near32 =
        |lo: u32, hi: u32| prop_oneof![lo.saturating_sub(2)..=hi.saturating_add(2), any::<u32>()];
    let backoff = (
        near(1, 300_000),
        near(1_000, 86_400_000),
        vec(near(0, 86_400_000), 5),
    )
        .prop_map(|(base_ms, cap_ms, f)| Backoff {
            base_ms,
            cap_ms,
            floor_timeout_ms: f[0],
            floor_refused_ms: f[1],
            floor_closed_ms: f[2],
            floor_network_ms: f[3],
            floor_rate_limited_ms: f[4],
        });
    let breaker = (
        near32(1, 1000),
        near(1, 86_400),
        near(1, 3600),
        near(600, 604_800),
    )
        .prop_map(
            |(threshold, window_s, cooldown_s, max_cooldown_s)| BreakerConfig {
                threshold,
                window_s,
                cooldown_s,
                max_cooldown_s,
            },
        );
    // Hundredths: text → number → text is exact for them, as for anything an operator types.
    let pacing = (any::<bool>(), 0u32..1_200_000, near32(1, 10_000)).prop_map(
        |(enabled, hundredths, burst)| PacingConfig {
            enabled,
            rate_per_s: f64::from(hundredths) / 100.0,
            burst,
        },
    );
    (backoff, breaker, pacing).prop_map(|(backoff, breaker, pacing)| PolicyConfig {
        backoff,
        breaker,
        pacing,
        ..PolicyConfig::default()
    })
}

// ---------------------------------------------------------------------------------------------
// Recovery policies
// ---------------------------------------------------------------------------------------------

fn valid_backoff() -> impl Strategy<Value = Backoff> {
    (1u64..=300_000, 0u64..=86_400_000, vec(0u64..=86_400_000, 5)).prop_map(|(base, cap, f)| {
        Backoff {
            base_ms: base,
            cap_ms: cap.max(base),
            floor_timeout_ms: f[0],
            floor_refused_ms: f[1],
            floor_closed_ms: f[2],
            floor_network_ms: f[3],
            floor_rate_limited_ms: f[4],
        }
    })
}

fn any_class() -> impl Strategy<Value = ErrorClass> {
    prop::sample::select(vec![
        ErrorClass::Timeout,
        ErrorClass::Refused,
        ErrorClass::Closed,
        ErrorClass::Network,
        ErrorClass::RateLimited,
        ErrorClass::Stale,
    ])
}

proptest! {
    #![proptest_config(cases(256))]

    /// `floor ≤ delay ≤ floor + min(cap, base·2^(attempt-1))`, for any attempt up to u32::MAX.
    #[test]
    fn backoff_delays_stay_between_floor_and_floor_plus_ceiling(
        b in valid_backoff(),
        attempt in prop_oneof![0u32..64, any::<u32>(), Just(u32::MAX)],
        class in any_class(),
        seed in any::<u64>(),
    ) {
        prop_assert!(b.validate().is_ok());
        let mut j = Jitter::seeded(seed);
        let floor = b.floor(class);
        let ceiling = b.ceiling(attempt);
        prop_assert!(ceiling <= Duration::from_millis(b.cap_ms));
        prop_assert!(ceiling >= Duration::from_millis(b.base_ms.min(b.cap_ms)));
        for _ in 0..8 {
            let d = b.delay(attempt, class, &mut j);
            prop_assert!(d >= floor && d <= floor + ceiling, "{attempt} {class:?} {d:?}");
            prop_assert!(d <= Duration::from_millis(2 * 86_400_000), "at most a day plus a day");
        }
        // The ceiling grows with the attempt and stops at the cap.
        prop_assert!(b.ceiling(attempt.saturating_add(1)) >= ceiling);
        prop_assert_eq!(b.ceiling(u32::MAX), Duration::from_millis(b.cap_ms));
    }

    /// Even values no validator accepted (a hand-edited database) cannot overflow.
    #[test]
    fn backoff_never_overflows_whatever_its_values(
        base_ms in any::<u64>(),
        cap_ms in any::<u64>(),
        floor in any::<u64>(),
        attempt in any::<u32>(),
        seed in any::<u64>(),
    ) {
        let b = Backoff {
            base_ms,
            cap_ms,
            floor_closed_ms: floor,
            ..Backoff::default()
        };
        let d = b.delay(attempt, ErrorClass::Closed, &mut Jitter::seeded(seed));
        prop_assert!(d >= Duration::from_millis(floor));
    }

    #[test]
    fn jitter_stays_in_its_range(max in prop_oneof![0u64..10, any::<u64>(), Just(u64::MAX)], seed in any::<u64>()) {
        let mut j = Jitter::seeded(seed);
        for _ in 0..16 {
            prop_assert!(j.up_to(max) <= max);
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Fail,
    Admit,
    Succeed,
    Reset,
}

/// How the clock moves before an operation.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// Forward by this many milliseconds.
    By(i64),
    /// To this many milliseconds around the next edge that matters: the end of an open
    /// breaker's cooldown, or the instant the oldest failure leaves the window.
    NearEdge(i64),
}

fn any_op() -> impl Strategy<Value = (Op, Step)> {
    let op = prop_oneof![
        6 => Just(Op::Fail),
        3 => Just(Op::Admit),
        2 => Just(Op::Succeed),
        1 => Just(Op::Reset),
    ];
    let step = prop_oneof![
        2 => Just(Step::By(0)),
        3 => (0i64..5_000).prop_map(Step::By),
        2 => (0i64..900).prop_map(|s| Step::By(s * 1000)),
        1 => (0i64..4_000_000).prop_map(Step::By),
        2 => Just(Step::NearEdge(0)),
        2 => prop_oneof![Just(-1i64), Just(1), -1_500i64..1_500].prop_map(Step::NearEdge),
    ];
    (op, step)
}

fn valid_breaker_config() -> impl Strategy<Value = BreakerConfig> {
    (1u32..=12, 1u64..=600, 1u64..=900, 0u64..=3600).prop_map(
        |(threshold, window_s, cooldown_s, extra)| BreakerConfig {
            threshold,
            window_s,
            cooldown_s,
            max_cooldown_s: cooldown_s + extra,
        },
    )
}

/// What the breaker is expected to be, written from its specification rather than its code.
#[derive(Debug, Clone, PartialEq)]
enum Model {
    Closed(Vec<Timestamp>),
    Open { until: Timestamp, cooldown_s: u64 },
    HalfOpen { cooldown_s: u64 },
}

proptest! {
    #![proptest_config(cases(256))]

    /// Opens exactly when `threshold` failures fall inside the window, never lets an attempt
    /// through before its cooldown ends, doubles the cooldown after a failed trial up to the
    /// cap, and closes only on a reset or a connection that lasted (a successful trial, or one
    /// an operator started past the open breaker).
    #[test]
    fn breaker_follows_its_rule(cfg in valid_breaker_config(), ops in vec(any_op(), 1..120)) {
        prop_assert!(cfg.validate().is_ok());
        let mut b = Breaker::default();
        let mut model = Model::Closed(Vec::new());
        let mut now = t0();
        let window = chrono::Duration::seconds(cfg.window_s as i64);
        for (op, step) in ops {
            let next = match step {
                Step::By(ms) => now + chrono::Duration::milliseconds(ms),
                Step::NearEdge(ms) => {
                    let edge = match &model {
                        Model::Open { until, .. } => Some(*until),
                        Model::Closed(fails) => fails.first().map(|t| *t + window),
                        Model::HalfOpen { .. } => None,
                    };
                    edge.map_or(now, |e| e + chrono::Duration::milliseconds(ms))
                }
            };
            // The clock of this property only moves forward; jumps back have their own.
            now = now.max(next);
            let was_open_until = match &model {
                Model::Open { until, .. } => Some(*until),
                _ => None,
            };
            match op {
                Op::Fail => {
                    let opened = b.on_failure(now, &cfg);
                    let expected = match &mut model {
                        Model::Closed(fails) => {
                            let window_start = now - window;
                            fails.retain(|t| *t > window_start);
                            fails.push(now);
                            if fails.len() >= cfg.threshold as usize {
                                let until = now + chrono::Duration::seconds(cfg.cooldown_s as i64);
                                model = Model::Open { until, cooldown_s: cfg.cooldown_s };
                                Some(until)
                            } else {
                                None
                            }
                        }
                        Model::Open { .. } => None,
                        Model::HalfOpen { cooldown_s } => {
                            let cooldown_s = (*cooldown_s * 2).min(cfg.max_cooldown_s);
                            let until = now + chrono::Duration::seconds(cooldown_s as i64);
                            model = Model::Open { until, cooldown_s };
                            Some(until)
                        }
                    };
                    prop_assert_eq!(opened, expected);
                }
                Op::Admit => {
                    let admission = b.admit(now);
                    let expected = match model {
                        Model::Closed(_) => Admission::Allow,
                        Model::Open { until, .. } if now < until => Admission::Deny { until },
                        Model::Open { cooldown_s, .. } | Model::HalfOpen { cooldown_s } => {
                            model = Model::HalfOpen { cooldown_s };
                            Admission::Trial
                        }
                    };
                    prop_assert_eq!(admission, expected);
                }
                Op::Succeed => {
                    b.on_success();
                    if matches!(model, Model::HalfOpen { .. } | Model::Open { .. }) {
                        model = Model::Closed(Vec::new());
                    }
                }
                Op::Reset => {
                    b.reset();
                    model = Model::Closed(Vec::new());
                }
            }
            let actual = match &b {
                Breaker::Closed { failures } => Model::Closed(failures.clone()),
                Breaker::Open { until, cooldown_s } => Model::Open { until: *until, cooldown_s: *cooldown_s },
                Breaker::HalfOpen { cooldown_s } => Model::HalfOpen { cooldown_s: *cooldown_s },
            };
            prop_assert_eq!(&actual, &model);
            if let Some(until) = was_open_until
                && now < until
                && !matches!(op, Op::Reset | Op::Succeed)
            {
                prop_assert!(b.is_open(), "closed at {now} before its cooldown ended at {until}");
            }
            if let Model::Open { cooldown_s, .. } | Model::HalfOpen { cooldown_s } = model {
                prop_assert!((cfg.cooldown_s..=cfg.max_cooldown_s).contains(&cooldown_s));
            }
        }
    }

    /// Wall clocks jump (NTP, a laptop waking up): any order of times is survived, and an open
    /// breaker still refuses until its own `until`.
    #[test]
    fn breaker_survives_clock_jumps(
        cfg in valid_breaker_config(),
        ops in vec((any_op(), -86_400_000i64..86_400_000), 1..60),
    ) {
        let mut b = Breaker::default();
        for ((op, _), jump) in ops {
            let now = t0() + chrono::Duration::milliseconds(jump);
            match op {
                Op::Fail => {
                    b.on_failure(now, &cfg);
                }
                Op::Admit => {
                    let before = b.clone();
                    if let (Breaker::Open { until, .. }, Admission::Allow) = (before, b.admit(now)) {
                        prop_assert!(false, "open until {until} but allowed at {now}");
                    }
                }
                Op::Succeed => b.on_success(),
                Op::Reset => b.reset(),
            }
            if let Breaker::Closed { failures } = &b {
                prop_assert!(failures.len() < cfg.threshold as usize);
            }
        }
    }
}

fn valid_pacing() -> impl Strategy<Value = PacingConfig> {
    (prop_oneof![0.01f64..=10.0, 0.01f64..=10_000.0], 1u32..=50).prop_map(|(rate_per_s, burst)| {
        PacingConfig {
            enabled: true,
            rate_per_s,
            burst,
        }
    })
}

proptest! {
    #![proptest_config(cases(128))]

    /// GCRA: between the i-th and the j-th start, at most `(s_j - s_i)·rate + burst` attempts
    /// start — so no window of length t ever holds more than `rate·t + burst` — and no attempt
    /// starts before it asked.
    #[test]
    fn pacing_never_allows_more_than_rate_times_t_plus_burst(
        cfg in valid_pacing(),
        gaps_us in vec(prop_oneof![Just(0u64), 0u64..1_000, 0u64..2_000_000, 0u64..200_000_000], 1..250),
    ) {
        prop_assert!(cfg.validate().is_ok());
        let interval = Duration::from_secs_f64(1.0 / cfg.rate_per_s);
        let tolerance = interval * (cfg.burst - 1);
        let mut pacer = Pacer::new(&cfg);
        let mut now = tokio::time::Instant::now();
        let mut starts = Vec::with_capacity(gaps_us.len());
        for gap in gaps_us {
            now += Duration::from_micros(gap);
            let start = pacer.reserve(now);
            prop_assert!(start >= now, "an attempt never starts before it asked");
            starts.push(start);
        }
        prop_assert!(starts.windows(2).all(|w| w[0] <= w[1]), "handed out in order");
        for i in 0..starts.len() {
            for j in i + 1..starts.len() {
                let span = starts[j] - starts[i];
                // (j - i) intervals must fit into the span plus the burst allowance.
                prop_assert!(
                    interval * u32::try_from(j - i).expect("small") <= span + tolerance,
                    "{} starts within {span:?} at {} per second, burst {}",
                    j - i + 1, cfg.rate_per_s, cfg.burst
                );
            }
        }
    }

    #[test]
    fn disabled_pacing_never_delays(gaps in vec(0u64..1_000_000, 1..100)) {
        let mut pacer = Pacer::new(&PacingConfig { enabled: false, ..PacingConfig::default() });
        let mut now = tokio::time::Instant::now();
        for gap in gaps {
            now += Duration::from_micros(gap);
            prop_assert_eq!(pacer.reserve(now), now);
        }
    }

    /// A pacer built from values no validator accepted (a hand-edited database) still works.
    #[test]
    fn pacer_from_any_values_does_not_panic(rate in any::<f64>(), burst in any::<u32>(), enabled in any::<bool>()) {
        let mut pacer = Pacer::new(&PacingConfig { enabled, rate_per_s: rate, burst });
        let now = tokio::time::Instant::now();
        for _ in 0..4 {
            prop_assert!(pacer.reserve(now) >= now);
        }
    }
}

#[derive(Debug, Clone)]
enum AlertEvent {
    /// Account `id` moves from one state to another.
    Moves { id: i64, from: StateKind, to: State },
    /// The supervisor asks what is due.
    Due,
}

fn any_alert_event() -> impl Strategy<Value = (AlertEvent, i64)> {
    let from = prop::sample::select(StateKind::ALL.to_vec());
    let to = prop_oneof![
        Just(State::Connected),
        Just(State::Waiting { reason: None }),
        Just(State::Waiting {
            reason: Some(Reason::RateLimited),
        }),
        Just(State::Stopped { reason: None }),
        Just(State::Linking),
        Just(State::Connecting),
        Just(State::Backoff {
            attempt: 1,
            retry_at: t0(),
            reason: Reason::Stalled,
        }),
        Just(State::Paused {
            until: None,
            reason: Reason::BreakerOpen,
        }),
        Just(State::Paused {
            until: None,
            reason: Reason::Blocked,
        }),
        Just(State::NeedsOperator {
            reason: Reason::LoggedOut,
        }),
    ];
    let moves = (0i64..12, from, to).prop_map(|(id, from, to)| AlertEvent::Moves { id, from, to });
    let event = prop_oneof![3 => moves, 1 => Just(AlertEvent::Due)];
    (event, prop_oneof![Just(0i64), 0i64..150])
}

fn alert_name(id: i64) -> String {
    format!("acct {id:02}")
}

/// Every fourth account is muted.
fn muted(id: i64) -> bool {
    id % 4 == 3
}

proptest! {
    #![proptest_config(cases(256))]

    /// A drop alerts only if still down after the grace period, and once; needs-operator alerts
    /// at the next check; `flap_drops` drops of a live connection within `flap_window_s` alert
    /// once as unstable until a window passes without a drop; many due together become one
    /// summary; muted accounts never alert.
    #[test]
    fn alerts_follow_their_rule(
        grace_s in 0u64..120,
        summary_threshold in 2u32..6,
        flap_drops in 0u32..5,
        flap_window_s in 1u64..400,
        events in vec(any_alert_event(), 1..150),
    ) {
        let cfg = AlertConfig { grace_s, summary_threshold, flap_drops, flap_window_s };
        prop_assert!(cfg.validate().is_ok());
        let mut alerter = Alerter::new(cfg);
        // account → (needs operator, due at)
        let mut pending: std::collections::BTreeMap<i64, (bool, Timestamp)> = Default::default();
        // account → every drop of a live connection; account → latest drop once alerted unstable
        let mut drops: std::collections::BTreeMap<i64, Vec<Timestamp>> = Default::default();
        let mut flagged: std::collections::BTreeMap<i64, Timestamp> = Default::default();
        let mut unstable: Vec<i64> = Vec::new();
        let window = chrono::Duration::seconds(flap_window_s as i64);
        let mut now = t0();
        for (event, step) in events {
            now += chrono::Duration::seconds(step);
            match event {
                AlertEvent::Moves { id, from, to } => {
                    alerter.observe(AccountId(id), &alert_name(id), muted(id), false, from, &to, now);
                    let dropped = from.is_up()
                        && !matches!(to, State::Connected | State::Waiting { .. } | State::Stopped { .. } | State::Linking);
                    if dropped && !muted(id) && flap_drops > 0 {
                        let d = drops.entry(id).or_default();
                        d.push(now);
                        let recent = d.iter().filter(|t| **t > now - window).count();
                        if let Some(last) = flagged.get_mut(&id) {
                            *last = now;
                        } else if recent >= flap_drops as usize {
                            flagged.insert(id, now);
                            unstable.push(id);
                        }
                    }
                    match to {
                        State::Connected | State::Waiting { reason: None } | State::Stopped { .. } | State::Linking => {
                            pending.remove(&id);
                        }
                        _ if muted(id) => {
                            pending.remove(&id);
                        }
                        State::NeedsOperator { .. } | State::Paused { reason: Reason::Blocked, until: None } => {
                            pending.insert(id, (true, now));
                        }
                        _ if from.is_up() => {
                            pending.insert(id, (false, now + chrono::Duration::seconds(grace_s as i64)));
                        }
                        _ => {}
                    }
                }
                AlertEvent::Due => {
                    let got = alerter.due(now);
                    flagged.retain(|_, last| *last > now - window);
                    // (account, 0 down / 1 needs the operator / 2 unstable)
                    let mut due: Vec<(i64, u8)> = pending
                        .iter()
                        .filter(|(_, (_, at))| *at <= now)
                        .map(|(id, (needs, _))| (*id, u8::from(*needs)))
                        .collect();
                    for (id, _) in &due {
                        pending.remove(id);
                    }
                    due.extend(unstable.drain(..).map(|id| (id, 2)));
                    due.sort();
                    for a in &got {
                        let names: Vec<&String> = match a {
                            Alert::Down { name, .. }
                            | Alert::NeedsOperator { name, .. }
                            | Alert::Unstable { name, .. }
                            | Alert::WentLive { name, .. } => vec![name],
                            Alert::Summary { examples, .. } => examples.iter().collect(),
                        };
                        for n in names {
                            prop_assert!(
                                !(0..12).any(|id| muted(id) && *n == alert_name(id)),
                                "muted {n} alerted"
                            );
                        }
                    }
                    if due.len() < summary_threshold as usize {
                        let got: Vec<(i64, u8)> = got
                            .iter()
                            .map(|a| match a {
                                Alert::Down { account, .. } => (account.0, 0),
                                Alert::NeedsOperator { account, .. } => (account.0, 1),
                                Alert::Unstable { account, drops, window_s, .. } => {
                                    assert_eq!((*drops, *window_s), (flap_drops, flap_window_s));
                                    (account.0, 2)
                                }
                                Alert::Summary { .. } => (-1, 0),
                                // Nobody in this model asked to hear of lives.
                                Alert::WentLive { account, .. } => (account.0, 3),
                            })
                            .collect();
                        prop_assert_eq!(got, due);
                    } else {
                        let count = |k: u8| due.iter().filter(|(_, kind)| *kind == k).count();
                        let mut examples: Vec<String> =
                            due.iter().map(|(id, _)| alert_name(*id)).collect();
                        examples.dedup();
                        examples.truncate(3);
                        prop_assert_eq!(
                            got,
                            vec![Alert::Summary {
                                down: count(0),
                                needs_operator: count(1),
                                unstable: count(2),
                                examples,
                            }]
                        );
                    }
                }
            }
        }
    }
}
