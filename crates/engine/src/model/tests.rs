use super::*;

fn ws(name: &str, url: &str) -> NewAccount {
    NewAccount::new(AccountKind::Websocket, name).with_url(url)
}

#[test]
fn names_keep_emoji_quotes_and_rtl_text() {
    for name in ["Toko 🍜 \"Mawar\"", "O'Brien's", "متجر الورد", "שלום"] {
        let v = ws(name, "ws://127.0.0.1:1/a").validate().expect("valid");
        assert_eq!(v.name, name);
    }
}

#[test]
fn names_with_control_chars_or_too_long_are_rejected() {
    assert_eq!(validate_name("a\0b"), Err(InputError::NameHasControlChars));
    assert_eq!(validate_name("a\nb"), Err(InputError::NameHasControlChars));
    assert_eq!(validate_name("   "), Err(InputError::EmptyName));
    let long = "x".repeat(10 * 1024);
    assert_eq!(
        validate_name(&long),
        Err(InputError::NameTooLong { chars: 10 * 1024 })
    );
    assert!(validate_name(&"é".repeat(MAX_NAME_CHARS)).is_ok());
}

#[test]
fn names_cannot_reorder_what_follows_them_or_be_invisible() {
    for spoof in [
        "Shop \u{202E}A gnikaerB",
        "\u{2067}متجر",
        "a\u{202A}b\u{202C}",
    ] {
        assert_eq!(
            validate_name(spoof),
            Err(InputError::NameHasControlChars),
            "{spoof:?}"
        );
    }
    for blank in ["\u{200B}", " \u{200B}\u{FEFF} ", "\u{200E}", "\u{3164}"] {
        assert_eq!(
            validate_name(blank),
            Err(InputError::EmptyName),
            "{blank:?}"
        );
    }
    // Right-to-left text with its ordinary marks, and emoji sequences joined by ZWJ, stay.
    for ok in ["\u{200F}متجر الورد", "👩\u{200D}👩\u{200D}👧", "a\u{200B}b"] {
        assert_eq!(validate_name(ok).as_deref(), Ok(ok), "{ok:?}");
    }
}

#[test]
fn websocket_urls_are_checked() {
    assert!(ws("a", "ws://127.0.0.1:9000/s/1").validate().is_ok());
    assert!(ws("a", "wss://example.com/feed").validate().is_ok());
    for bad in [
        "http://example.com",
        "not a url",
        "ws://",
        "ws://user:pw@example.com/",
        "",
    ] {
        assert!(
            matches!(ws("a", bad).validate(), Err(InputError::InvalidUrl { .. })),
            "{bad:?}"
        );
    }
    assert_eq!(
        NewAccount::new(AccountKind::Websocket, "a").validate(),
        Err(InputError::MissingUrl)
    );
    assert_eq!(
        NewAccount::new(AccountKind::Whatsapp, "a")
            .with_url("ws://x/")
            .validate(),
        Err(InputError::UrlNotAllowed)
    );
}

#[test]
fn priority_and_country_are_checked_and_normalised() {
    let mut a = ws("a", "ws://h/");
    a.priority = 1001;
    assert_eq!(a.validate(), Err(InputError::InvalidPriority(1001)));
    let mut a = ws("a", "ws://h/");
    a.country = Some("id".into());
    assert_eq!(a.validate().expect("valid").country.as_deref(), Some("ID"));
    let mut a = ws("a", "ws://h/");
    a.country = Some("XX".into());
    assert!(matches!(a.validate(), Err(InputError::InvalidCountry(_))));
}

#[test]
fn proxies_must_be_socks5_or_http_without_credentials() {
    let mut a = ws("a", "ws://h/");
    a.proxy_url = Some("socks5://10.0.0.1:1080".into());
    assert!(a.validate().is_ok());
    for bad in ["ftp://h:1", "socks5://u:p@h:1", "nonsense"] {
        let mut a = ws("a", "ws://h/");
        a.proxy_url = Some(bad.into());
        assert!(
            matches!(a.validate(), Err(InputError::InvalidProxy(_))),
            "{bad}"
        );
    }
}

#[test]
fn phone_numbers_normalise_to_e164_or_are_refused() {
    assert_eq!(
        normalize_phone("+62 812-3456-7890").as_deref(),
        Ok("+6281234567890")
    );
    assert_eq!(
        normalize_phone(" +1 (415) 555.0100 ").as_deref(),
        Ok("+14155550100")
    );
    for bad in [
        "081234567890",
        "+0812345678",
        "+62 812 abc",
        "+1234567",
        "+1234567890123456",
        "",
        "+",
        "62812345678",
        "+62\u{0}812345678",
    ] {
        assert!(
            matches!(normalize_phone(bad), Err(InputError::InvalidPhone(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn secret_and_header_names_are_checked() {
    assert!(SecretName::parse("api-token.v2_x").is_ok());
    for bad in ["", "has space", "ünï", &"a".repeat(65)] {
        assert!(SecretName::parse(bad).is_err(), "{bad:?}");
    }
    let h = HeaderRef::parse("Authorization=api-token").expect("valid");
    assert_eq!(h.name, "Authorization");
    assert_eq!(h.secret.as_str(), "api-token");
    assert!(HeaderRef::parse("Authorization").is_err());
    assert!(HeaderRef::parse("Bad Header=x").is_err());
}
