//! Turns what the UI sends into engine values. Validation itself is the engine's (same rules
//! and messages as the CLI); this only maps shapes. Pure, tested without a window.

use lifeline_engine::connector::LinkMode;
use lifeline_engine::export::{ExportFilter, ExportKind};
use lifeline_engine::model::{HeaderRef, NewAccount, SecretName, normalize_phone};
use lifeline_engine::policy::{PolicyConfig, Preset};
use lifeline_engine::{AccountId, AccountKind, InputError, TimeRange};

use crate::api::{
    ExportRequest, ExportWhat, LinkRequest, NewAccountInput, PolicyValues, PresetInfo,
};

fn blank(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

pub fn new_account(input: &NewAccountInput) -> Result<NewAccount, InputError> {
    let kind: AccountKind = input.kind.into();
    let mut new = NewAccount::new(kind, input.name.clone());
    new.url = blank(&input.url).map(str::to_owned);
    if let Some(p) = input.priority {
        new.priority = p;
    }
    new.country = blank(&input.country).map(str::to_owned);
    match (blank(&input.header_name), blank(&input.header_secret)) {
        (None, None) => {}
        (Some(h), Some(s)) => new.headers = vec![HeaderRef::parse(&format!("{h}={s}"))?],
        (Some(h), None) => return Err(InputError::InvalidSecretName(format!("(none for {h})"))),
        (None, Some(_)) => return Err(InputError::InvalidHeaderName(String::new())),
    }
    new.validate()
}

pub fn link_mode(req: &LinkRequest) -> Result<LinkMode, InputError> {
    Ok(match req {
        LinkRequest::Qr => LinkMode::Qr,
        LinkRequest::PhoneCode { phone } => LinkMode::PhoneCode {
            phone: normalize_phone(phone)?,
        },
    })
}

pub fn export(req: &ExportRequest) -> Result<(ExportKind, ExportFilter), InputError> {
    let kind = match req.what {
        ExportWhat::Sessions => ExportKind::Sessions,
        ExportWhat::Events => ExportKind::Events,
        ExportWhat::Lives => ExportKind::Lives,
    };
    Ok((
        kind,
        ExportFilter {
            account: req.account.map(AccountId),
            range: TimeRange::parse(blank(&req.since), blank(&req.until))?,
        },
    ))
}

pub fn policy(values: &PolicyValues) -> Result<PolicyConfig, InputError> {
    let json =
        serde_json::to_string(values).map_err(|e| InputError::InvalidPolicy(e.to_string()))?;
    PolicyConfig::from_json(&json)
}

pub fn policy_values(cfg: &PolicyConfig) -> Result<PolicyValues, InputError> {
    serde_json::to_value(cfg)
        .and_then(serde_json::from_value)
        .map_err(|e| InputError::InvalidPolicy(e.to_string()))
}

/// Each preset with only the values it sets, as they are on top of the defaults.
pub fn presets() -> Result<Vec<PresetInfo>, InputError> {
    Preset::ALL
        .into_iter()
        .map(|name| {
            let mut values = policy_values(&name.apply(&PolicyConfig::default()))?;
            for (section, keys) in values.0.iter_mut() {
                keys.retain(|key, _| Preset::KEYS.contains(&format!("{section}.{key}").as_str()));
            }
            values.0.retain(|_, keys| !keys.is_empty());
            Ok(PresetInfo { name, values })
        })
        .collect()
}

/// Parses a history window name as the UI sends it.
pub fn window(name: &str) -> Result<chrono::Duration, InputError> {
    match name {
        "24h" => Ok(chrono::Duration::hours(24)),
        "7d" => Ok(chrono::Duration::days(7)),
        other => Err(InputError::InvalidSetting {
            key: "window".into(),
            value: other.into(),
            why: "use 24h or 7d".into(),
        }),
    }
}

pub fn secret_name(s: &str) -> Result<SecretName, InputError> {
    SecretName::parse(s.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Kind;

    fn ws(name: &str, url: &str) -> NewAccountInput {
        NewAccountInput {
            kind: Kind::Websocket,
            name: name.into(),
            url: Some(url.into()),
            header_name: None,
            header_secret: None,
            priority: None,
            country: None,
            link: None,
        }
    }

    #[test]
    fn each_preset_carries_only_its_own_values_and_they_make_the_preset() {
        let presets = presets().expect("presets");
        assert_eq!(
            presets.iter().map(|p| p.name).collect::<Vec<_>>(),
            Preset::ALL
        );
        for p in presets {
            let keys: Vec<String> = p
                .values
                .0
                .iter()
                .flat_map(|(s, keys)| keys.keys().map(move |k| format!("{s}.{k}")))
                .collect();
            assert_eq!(keys.len(), Preset::KEYS.len(), "{}", p.name);
            assert!(
                keys.iter().all(|k| Preset::KEYS.contains(&k.as_str())),
                "{keys:?}"
            );
            // Put over a tuned policy, as the form does, they are that preset.
            let mut form = policy_values(
                &PolicyConfig::default()
                    .assign("connection.keepalive_ms=9000")
                    .expect("valid"),
            )
            .expect("values");
            for (s, keys) in &p.values.0 {
                form.0.entry(s.clone()).or_default().extend(keys.clone());
            }
            let cfg = policy(&form).expect("valid");
            assert_eq!(Preset::of(&cfg), Some(p.name));
            assert_eq!(cfg.connection.keepalive_ms, 9000);
        }
    }

    #[test]
    fn websocket_input_maps_header_from_a_named_secret() {
        let mut i = ws("  Feed ", "ws://127.0.0.1:9000/s/a");
        i.header_name = Some("Authorization".into());
        i.header_secret = Some("feed-token".into());
        i.country = Some("id".into());
        let n = new_account(&i).expect("valid");
        assert_eq!(n.name, "Feed");
        assert_eq!(n.headers[0].name, "Authorization");
        assert_eq!(n.headers[0].secret.as_str(), "feed-token");
        assert_eq!(n.country.as_deref(), Some("ID"));
        assert!(n.desired_running);
    }

    #[test]
    fn bad_input_is_refused_with_the_engine_errors() {
        assert_eq!(
            new_account(&ws("a", "http://x/")).map(|_| ()),
            Err(InputError::InvalidUrl {
                url: "http://x/".into(),
                why: "scheme 'http' is not ws or wss".into()
            })
        );
        assert_eq!(
            new_account(&ws("", "ws://h/")).map(|_| ()),
            Err(InputError::EmptyName)
        );
        let mut i = ws("a", "ws://h/");
        i.header_name = Some("Authorization".into());
        assert!(new_account(&i).is_err(), "a header needs its secret");
    }

    #[test]
    fn whatsapp_accounts_wait_for_linking_and_phones_normalise() {
        let i = NewAccountInput {
            kind: Kind::Whatsapp,
            url: None,
            ..ws("Toko", "")
        };
        let n = new_account(&i).expect("valid");
        assert!(!n.desired_running);
        assert_eq!(
            link_mode(&LinkRequest::PhoneCode {
                phone: "+62 812-3456-7890".into()
            }),
            Ok(LinkMode::PhoneCode {
                phone: "+6281234567890".into()
            })
        );
        assert!(
            link_mode(&LinkRequest::PhoneCode {
                phone: "0812".into()
            })
            .is_err()
        );
    }

    #[test]
    fn history_windows_are_a_day_or_a_week() {
        assert!(window("24h").is_ok() && window("7d").is_ok() && window("1y").is_err());
    }

    #[test]
    fn export_requests_parse_ranges_and_refuse_inverted_ones() {
        let mut r = ExportRequest {
            path: "/tmp/x.csv".into(),
            what: ExportWhat::Events,
            account: Some(3),
            since: Some("2026-11-01".into()),
            until: Some("".into()),
        };
        let (kind, filter) = export(&r).expect("valid");
        assert_eq!(kind, ExportKind::Events);
        assert_eq!(filter.account, Some(AccountId(3)));
        assert!(filter.range.since.is_some() && filter.range.until.is_none());
        r.until = Some("2026-10-01".into());
        assert!(matches!(export(&r), Err(InputError::InvertedRange { .. })));
    }

    #[test]
    fn policy_round_trips_and_validates() {
        let mut v = policy_values(&PolicyConfig::default()).expect("values");
        assert_eq!(v.0["breaker"]["threshold"], 10);
        v.0.get_mut("pacing")
            .expect("pacing")
            .insert("rate_per_s".into(), serde_json::json!(0));
        let err = policy(&v).expect_err("zero rate");
        assert!(err.to_string().contains("pacing.rate_per_s"), "{err}");
        v.0.get_mut("pacing")
            .expect("pacing")
            .insert("rate_per_s".into(), serde_json::json!(3.5));
        assert_eq!(policy(&v).expect("valid").pacing.rate_per_s, 3.5);
    }
}
