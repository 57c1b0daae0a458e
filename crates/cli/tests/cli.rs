//! The `lifeline` binary as an operator uses it: real processes, a temporary data dir each.

mod common;

use common::{add_ws, bad_input, lifeline, ok, ws_add_args};
use std::process::{Command, Stdio};

#[test]
fn accounts_round_trip_through_the_cli_with_odd_names() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let names = ["Toko 🍜 \"Mawar\"", "O'Brien's", "متجر الورد"];
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let url = format!("ws://127.0.0.1:9000/s/{i}");
        let out = add_ws(tmp.path(), name, &url, &["--country", "id"]);
        ids.push(out.parse::<i64>().expect("prints the new id"));
    }
    let wa = ok(
        tmp.path(),
        &[
            "account",
            "add",
            "--kind",
            "whatsapp",
            "--name",
            "WA 1",
            "--priority",
            "900",
            "--stopped",
        ],
    );
    let listed: serde_json::Value =
        serde_json::from_str(&ok(tmp.path(), &["account", "list", "--json"])).expect("json");
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 4);
    assert_eq!(listed[0]["id"].as_i64(), wa.trim().parse().ok());
    assert_eq!(listed[0]["desired_running"], false);
    for (id, name) in ids.iter().zip(names) {
        let a = listed.iter().find(|a| a["id"] == *id).expect("listed");
        assert_eq!(a["name"], name);
        assert_eq!(a["country"], "ID");
    }
    let table = ok(tmp.path(), &["account", "list"]);
    assert!(table.contains("متجر الورد") && table.contains("Toko 🍜"));

    let removed = ok(tmp.path(), &["account", "remove", &ids[0].to_string()]);
    assert!(removed.contains("Removed account"));
    let status: serde_json::Value =
        serde_json::from_str(&ok(tmp.path(), &["status", "--json"])).expect("json");
    assert_eq!(status["accounts"], 3);
    assert_eq!(status["by_state"]["stopped"], 2);
    // A new WhatsApp account waits to be linked: it needs the operator, and is not running.
    assert_eq!(status["by_state"]["needs_operator"], 1);
    assert_eq!(status["needs_operator"], 1);
    assert_eq!(status["supervisor"]["running"], false);
}

#[test]
fn bad_input_exits_2_with_a_message_and_stores_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let msg = bad_input(d, &ws_add_args("a", "http://x"));
    assert!(msg.contains("ws://"), "{msg}");
    bad_input(d, &["account", "add", "--kind", "websocket", "--name", "a"]);
    bad_input(
        d,
        &[ws_add_args("a", "ws://h/"), vec!["--country", "XX"]].concat(),
    );
    bad_input(
        d,
        &[ws_add_args("a", "ws://h/"), vec!["--priority", "-1"]].concat(),
    );
    bad_input(d, &ws_add_args(&"n".repeat(10_240), "ws://h/"));
    bad_input(d, &["account", "add", "--kind", "fax", "--name", "a"]);
    let msg = bad_input(d, &["account", "remove", "41"]);
    assert!(msg.contains("41"), "{msg}");
    bad_input(d, &["account", "remove", "not-a-number"]);
    let msg = bad_input(
        d,
        &[
            "export",
            "--what",
            "sessions",
            "--out",
            "-",
            "--since",
            "2026-11-02",
            "--until",
            "2026-11-01",
        ],
    );
    assert!(msg.contains("inverted"), "{msg}");
    bad_input(
        d,
        &[
            "export",
            "--what",
            "events",
            "--out",
            "-",
            "--since",
            "last tuesday",
        ],
    );
    bad_input(
        d,
        &["export", "--what", "events", "--out", "-", "--account", "5"],
    );
    bad_input(d, &["secret", "set", "bad name"]);
    bad_input(d, &["autorecover", "maybe"]);
    let listed: serde_json::Value =
        serde_json::from_str(&ok(d, &["account", "list", "--json"])).expect("json");
    assert_eq!(listed.as_array().map(Vec::len), Some(0));
}

#[test]
fn autorecover_persists_between_invocations() {
    let tmp = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        ok(tmp.path(), &["autorecover", "status"]).trim(),
        "autorecover: on"
    );
    ok(tmp.path(), &["autorecover", "off"]);
    assert_eq!(
        ok(tmp.path(), &["autorecover", "status"]).trim(),
        "autorecover: off"
    );
    let status: serde_json::Value =
        serde_json::from_str(&ok(tmp.path(), &["status", "--json"])).expect("json");
    assert_eq!(status["autorecover"], false);
}

#[test]
fn data_dir_flag_overrides_the_environment() {
    let env_dir = tempfile::tempdir().expect("tempdir");
    let flag_dir = tempfile::tempdir().expect("tempdir");
    let flag = flag_dir.path().to_str().expect("utf-8 path");
    ok(
        env_dir.path(),
        &[
            "--data-dir",
            flag,
            "account",
            "add",
            "--kind",
            "whatsapp",
            "--name",
            "a",
        ],
    );
    assert!(flag_dir.path().join("lifeline.db").exists());
    assert!(!env_dir.path().join("lifeline.db").exists());
}

#[test]
fn corrupt_database_is_reported_by_name_and_left_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let db = tmp.path().join("lifeline.db");
    let bytes: Vec<u8> = b"this is not a database, but an operator's precious file\n".repeat(200);
    std::fs::write(&db, &bytes).expect("write");
    let out = lifeline(tmp.path(), &["status"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains("move it aside"), "{err}");
    assert_eq!(std::fs::read(&db).expect("read"), bytes);
}

#[test]
fn export_writes_parseable_csv_to_file_and_stdout() {
    let tmp = tempfile::tempdir().expect("tempdir");
    ok(
        tmp.path(),
        &[
            "account",
            "add",
            "--kind",
            "websocket",
            "--name",
            "=cmd|' /C calc'!A0",
            "--url",
            "ws://h/",
        ],
    );
    // No supervisor yet writes history in this test, so the header alone must still be valid CSV.
    let out = ok(tmp.path(), &["export", "--what", "sessions", "--out", "-"]);
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    assert_eq!(
        reader.headers().expect("header").iter().collect::<Vec<_>>(),
        [
            "session_id",
            "account_id",
            "account_name",
            "started_at",
            "ended_at",
            "duration_s",
            "end_reason",
            "account_number"
        ]
    );
    assert_eq!(reader.records().count(), 0);
    let file = tmp.path().join("events.csv");
    ok(
        tmp.path(),
        &[
            "export",
            "--what",
            "events",
            "--out",
            file.to_str().expect("utf-8"),
            "--account",
            "1",
        ],
    );
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(text.starts_with("event_id,at,account_id"));
}

/// Runs only where a Secret Service is available (CI starts gnome-keyring for it).
#[test]
fn secret_set_goes_to_the_keyring_and_never_to_the_data_dir() {
    if std::env::var_os("LIFELINE_TEST_KEYRING").is_none() {
        eprintln!("skipped: set LIFELINE_TEST_KEYRING=1 with an unlocked Secret Service");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let name = format!("cli-test-{}", std::process::id());
    let value = "v4lue-that-must-stay-in-the-keyring-8c1f";
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(["secret", "set", &name])
        .env("LIFELINE_DATA_DIR", tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{value}").expect("write value");
    }
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored = Command::new("secret-tool")
        .args(["lookup", "service", "lifeline", "username", &name])
        .output()
        .expect("secret-tool");
    assert_eq!(String::from_utf8_lossy(&stored.stdout), value);
    assert_eq!(ok(tmp.path(), &["secret", "list"]).trim(), name);
    for entry in std::fs::read_dir(tmp.path()).expect("dir") {
        let bytes = std::fs::read(entry.expect("entry").path()).expect("read");
        assert!(!bytes.windows(value.len()).any(|w| w == value.as_bytes()));
    }
    ok(tmp.path(), &["secret", "delete", &name]);
    let gone = Command::new("secret-tool")
        .args(["lookup", "service", "lifeline", "username", &name])
        .output()
        .expect("secret-tool");
    assert!(gone.stdout.is_empty());
}

#[test]
fn policy_values_are_validated_and_persisted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    ok(d, &["policy", "set", "breaker.threshold=5"]);
    let shown: serde_json::Value = serde_json::from_str(&ok(d, &["policy", "show"])).expect("json");
    assert_eq!(shown["breaker"]["threshold"], 5);
    assert_eq!(
        shown["pacing"]["rate_per_s"], 2.0,
        "others keep their defaults"
    );
    let msg = bad_input(d, &["policy", "set", "pacing.rate_per_s=0"]);
    assert!(msg.contains("pacing.rate_per_s"), "{msg}");
    let msg = bad_input(d, &["policy", "set", "pacing.speed=3"]);
    assert!(msg.contains("rate_per_s"), "lists the known keys: {msg}");
    bad_input(d, &["policy", "set", "breaker.threshold=lots"]);
    bad_input(d, &["policy", "set", "breaker"]);
    let shown: serde_json::Value = serde_json::from_str(&ok(d, &["policy", "show"])).expect("json");
    assert_eq!(
        shown["breaker"]["threshold"], 5,
        "nothing stored on bad input"
    );
    ok(d, &["policy", "reset"]);
    let shown: serde_json::Value = serde_json::from_str(&ok(d, &["policy", "show"])).expect("json");
    assert_eq!(shown["breaker"]["threshold"], 10);
}

#[test]
fn a_preset_sets_its_values_and_keeps_the_operators_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    ok(d, &["policy", "set", "connection.keepalive_ms=20000"]);
    let out = ok(d, &["policy", "preset", "careful"]);
    assert!(out.contains("breaker.threshold: 10 → 5"), "{out}");
    let shown: serde_json::Value = serde_json::from_str(&ok(d, &["policy", "show"])).expect("json");
    assert_eq!(shown["pacing"]["rate_per_s"], 0.5);
    assert_eq!(shown["backoff"]["cap_ms"], 900_000);
    assert_eq!(
        shown["connection"]["keepalive_ms"], 20_000,
        "not a preset's value"
    );
    let changes = ok(d, &["policy", "changes"]);
    assert!(
        changes.contains("pacing.rate_per_s: 2.0 → 0.5"),
        "{changes}"
    );
    assert_eq!(
        ok(d, &["policy", "preset", "careful"]),
        "Nothing changed.\n"
    );
    let out = lifeline(d, &["policy", "preset", "reckless"]);
    assert_eq!(out.status.code(), Some(2));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("careful, balanced, fast"),
        "names the presets: {msg}"
    );
    ok(d, &["policy", "preset", "balanced"]);
    let shown: serde_json::Value = serde_json::from_str(&ok(d, &["policy", "show"])).expect("json");
    assert_eq!(shown["breaker"]["threshold"], 10);
    assert_eq!(shown["connection"]["keepalive_ms"], 20_000);
}

#[test]
fn link_checks_its_input_and_reports_an_unreachable_server() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let ws = ok(
        d,
        &[
            "account",
            "add",
            "--kind",
            "websocket",
            "--name",
            "feed",
            "--url",
            "ws://h/",
        ],
    );
    let wa = ok(
        d,
        &[
            "account",
            "add",
            "--kind",
            "whatsapp",
            "--name",
            "Toko",
            "--stopped",
        ],
    );
    let msg = bad_input(d, &["link", ws.trim()]);
    assert!(msg.contains("not a WhatsApp account"), "{msg}");
    let msg = bad_input(d, &["link", wa.trim(), "--phone", "0812345678"]);
    assert!(msg.contains("international form"), "{msg}");
    bad_input(d, &["link", "99"]);
    // The real client against a closed local port: a clear failure, exit 1.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let out = Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(["link", wa.trim()])
        .env("LIFELINE_DATA_DIR", d)
        .env(
            "LIFELINE_WHATSAPP_URL",
            format!("ws://127.0.0.1:{port}/ws/chat"),
        )
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Linking did not complete"), "{err}");
    let store = d.join("whatsapp").join(format!("account-{}.db", wa.trim()));
    // A link that never happened leaves no half-made device store behind.
    assert!(!store.exists());
    // Removing the account deletes its device keys (here: a store as a link leaves it).
    std::fs::write(&store, b"keys").expect("device store");
    ok(d, &["account", "remove", wa.trim()]);
    assert!(!store.exists());
}

#[test]
fn a_tiktok_creator_is_added_by_user_name_or_page_and_lives_export_with_a_header() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let add = |name: &str, user: &str| {
        ok(
            d,
            &[
                "account",
                "add",
                "--kind",
                "tiktok",
                "--name",
                name,
                "--user",
                user,
                "--stopped",
            ],
        )
    };
    add("Toko Mawar live", "@TokoMawar");
    add("Melati", "https://www.tiktok.com/@melati.id/live?lang=id");
    let listed: serde_json::Value =
        serde_json::from_str(&ok(d, &["account", "list", "--json"])).expect("json");
    let urls: Vec<&str> = listed
        .as_array()
        .expect("array")
        .iter()
        .map(|a| {
            assert_eq!(a["kind"], "tiktok");
            a["url"].as_str().expect("url")
        })
        .collect();
    assert!(
        urls.contains(&"https://www.tiktok.com/@tokomawar/live"),
        "{urls:?}"
    );
    assert!(
        urls.contains(&"https://www.tiktok.com/@melati.id/live"),
        "{urls:?}"
    );
    let csv = ok(d, &["export", "--what", "lives", "--out", "-"]);
    assert_eq!(
        csv.trim_end(),
        "live_id,account_id,account_name,account_handle,remote_key,started_at,ended_at,duration_s,ended_how"
    );
}
