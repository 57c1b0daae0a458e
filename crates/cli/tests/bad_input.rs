//! The bad-input suite: `lifeline` fed what an operator, a script or a crash should never feed it
//! — a torn WAL, a database from a newer Lifeline, unusable stored settings, odd names, URLs and
//! phone numbers that cannot work, malformed HTTP requests, a thousand of them at once. Every
//! case asserts the exit code or HTTP status, a message naming the offending thing, and that what
//! was stored is still there, unchanged.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    add_ws, bad_input, db_facts, fails, http, keyring_available, ok, serve, set_secret,
    split_response, until, ws_add_args,
};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).expect("json")
}

/// What an operator would miss if it were lost: the accounts, the event log, the policy.
#[derive(Debug, PartialEq)]
struct Stored {
    accounts: Value,
    events: Vec<String>,
    policy: Value,
}

fn stored(dir: &Path) -> Stored {
    let events = ok(dir, &["export", "--what", "events", "--out", "-"]);
    Stored {
        accounts: json(&ok(dir, &["account", "list", "--json"])),
        events: events.lines().map(str::to_owned).collect(),
        policy: json(&ok(dir, &["policy", "show"])),
    }
}

fn write_db(rt: &tokio::runtime::Runtime, db: &Path, sql: &str, binds: &[&str]) {
    rt.block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
            .await
            .expect("open db");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(&mut c).await.expect("write");
        c.close().await.expect("close");
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

// ---------------------------------------------------------------------------------------------
// `lifeline serve` as a child process
// ---------------------------------------------------------------------------------------------

// ---------------------------------------------------------------------------------------------
// Damaged and foreign databases
// ---------------------------------------------------------------------------------------------

/// Copies `files` of `from` into a fresh dir, the WAL cut to `wal_len` bytes.
fn copy_with_torn_wal(from: &Path, wal_len: Option<u64>) -> tempfile::TempDir {
    let to = tempfile::tempdir().expect("tempdir");
    std::fs::copy(from.join("lifeline.db"), to.path().join("lifeline.db")).expect("copy db");
    if let Some(len) = wal_len {
        let wal = to.path().join("lifeline.db-wal");
        std::fs::copy(from.join("lifeline.db-wal"), &wal).expect("copy wal");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&wal)
            .expect("open wal");
        f.set_len(len).expect("truncate wal");
    }
    // The -shm index is left behind on purpose: SQLite must rebuild it from the torn WAL.
    to
}

#[test]
fn a_wal_torn_after_kill_9_opens_with_every_checkpointed_row_and_integrity_ok() {
    let rt = runtime();
    let sim = rt
        .block_on(lifeline_sim::Sim::start("127.0.0.1:0"))
        .expect("sim");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    common::add(dir, &sim, 3);
    ok(dir, &["policy", "set", "autorecover.start_delay_ms=0"]);
    let accounts_before = json(&ok(dir, &["account", "list", "--json"]));
    let mut s = serve(dir, &[]);
    until(dir, Duration::from_secs(30), "3 connected", |h| {
        h["desired_connected"] == 3
    });
    s.child.kill().expect("SIGKILL");
    s.child.wait().expect("reaped");

    let wal = std::fs::read(dir.join("lifeline.db-wal")).expect("kill -9 leaves the WAL");
    // WAL header: magic, format, page size (big-endian u32 at 8), …; frames: 24-byte header + page.
    let page = u32::from_be_bytes(wal[8..12].try_into().expect("4 bytes")) as u64;
    let frame = 24 + page;
    let len = wal.len() as u64;
    let frames = (len - 32) / frame;
    assert!(frames >= 2, "the WAL holds the run's writes: {len} bytes");
    // Frames a checkpoint has copied, or begun to copy, into the database file were synced
    // before the copying started: a crash can only tear the WAL after them. A cut inside them
    // would pair old frames with a newer database file, a state no crash produces. The -shm
    // index says how far: nBackfill right after its two 48-byte headers, and nBackfillAttempted
    // (set before copying, so it covers a kill in the middle of a checkpoint) 32 bytes on.
    let shm = std::fs::read(dir.join("lifeline.db-shm")).expect("kill -9 leaves the -shm index");
    let at = |offset: usize| {
        u64::from(u32::from_ne_bytes(
            shm[offset..offset + 4].try_into().expect("4 bytes"),
        ))
    };
    // Those counts are of the index's current WAL generation. When its salt is not the file's,
    // the writer has restarted the WAL after a complete checkpoint and not yet written over the
    // file's header: every frame in the file is already in the database file.
    // (The index keeps the salt as the file's bytes.)
    let same_generation = shm[32..40] == wal[16..24];
    let backfilled = if same_generation {
        at(96).max(at(128)).min(frames)
    } else {
        frames
    };
    let mid = (32 + (backfilled + (frames - backfilled) / 2) * frame + frame / 2).min(len);
    // Tears before the first whole frame (the WAL is then ignored), and after the backfilled
    // frames: in the middle of the rest, and in its last frame if it has not been copied.
    let first_unbackfilled = 32 + backfilled * frame;
    let mut cuts: Vec<u64> = [0, 20, 32 + 100, mid, len - 1, len]
        .into_iter()
        .filter(|c| *c < 32 + frame || *c >= first_unbackfilled)
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut last = (0, 0);
    for cut in cuts {
        let copy = copy_with_torn_wal(dir, Some(cut));
        let status = ok(copy.path(), &["status", "--json"]);
        assert_eq!(json(&status)["accounts"], 3, "cut at {cut}: {status}");
        assert_eq!(
            json(&ok(copy.path(), &["account", "list", "--json"]))
                .as_array()
                .map(|a| a.iter().map(|a| a["name"].clone()).collect::<Vec<_>>()),
            accounts_before
                .as_array()
                .map(|a| a.iter().map(|a| a["name"].clone()).collect::<Vec<_>>()),
            "cut at {cut}: accounts checkpointed before the run are all there"
        );
        let common::DbFacts {
            integrity,
            events,
            max_event_id: max_id,
            accounts,
        } = db_facts(&rt, &copy.path().join("lifeline.db"));
        assert_eq!(integrity, "ok", "cut at {cut}");
        assert_eq!(accounts, 3, "cut at {cut}");
        // A longer WAL prefix never holds fewer committed rows than a shorter one.
        assert!(
            events >= last.0 && max_id >= last.1,
            "cut at {cut}: {events} events (max id {max_id}) after {last:?}"
        );
        last = (events, max_id);
    }
    assert!(last.0 > 0, "the intact WAL held the run's transitions");

    // The next start on a torn WAL restores the fleet as usual.
    let torn = copy_with_torn_wal(dir, Some(mid));
    let _s = serve(torn.path(), &[]);
    until(
        torn.path(),
        Duration::from_secs(30),
        "restored after a torn WAL",
        |h| h["desired_connected"] == 3,
    );
}

#[test]
fn a_database_from_a_newer_lifeline_is_refused_by_every_command_and_left_untouched() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add_ws(dir, "Shop A", "ws://127.0.0.1:9/a", &["--stopped"]);
    let db = dir.join("lifeline.db");
    let rt = runtime();
    write_db(
        &rt,
        &db,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer Lifeline', 1, x'00', 0)",
        &[],
    );
    let before = std::fs::read(&db).expect("read");
    for args in [
        &["status"][..],
        &["account", "list"],
        &["account", "add", "--kind", "whatsapp", "--name", "x"],
        &["policy", "reset"],
        &["autorecover", "off"],
        &["export", "--what", "events", "--out", "-"],
        &["serve"],
    ] {
        let msg = fails(dir, 1, args);
        for needle in ["newer Lifeline", "99990101000000", "Upgrade Lifeline"] {
            assert!(msg.contains(needle), "{args:?}: {msg}");
        }
        assert!(msg.contains(&db.display().to_string()), "{args:?}: {msg}");
    }
    assert_eq!(std::fs::read(&db).expect("read"), before, "byte for byte");
    for side in ["lifeline.db-wal", "lifeline.db-shm"] {
        assert!(
            !dir.join(side).exists(),
            "{side} left beside a refused file"
        );
    }
}

#[test]
fn a_damaged_page_found_by_a_query_is_reported_by_file_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add_ws(dir, "Shop A", "ws://127.0.0.1:9/a", &["--stopped"]);
    let db = dir.join("lifeline.db");
    let rt = runtime();
    // Enough history to fill pages of its own, far from the schema that opening reads.
    let detail = "x".repeat(1500);
    write_db(
        &rt,
        &db,
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 200) \
         INSERT INTO events (account_id, at, from_state, to_state, reason, state_json, detail, triggered_by) \
         SELECT 1, i, 'stopped', 'connecting', NULL, '{\"state\":\"connecting\"}', ?, 'engine' FROM n",
        &[&detail],
    );
    let mut bytes = std::fs::read(&db).expect("read");
    let page = 4096;
    let at = bytes.len() - 4 * page;
    bytes[at..at + page].fill(0xA5);
    std::fs::write(&db, &bytes).expect("write");
    let msg = fails(dir, 1, &["export", "--what", "events", "--out", "-"]);
    assert!(msg.contains(&db.display().to_string()), "{msg}");
    assert!(
        msg.contains("damaged") && msg.contains("move it aside"),
        "{msg}"
    );
    assert_eq!(std::fs::read(&db).expect("read"), bytes, "left as found");
}

#[test]
fn unusable_stored_settings_are_reported_with_the_way_out_and_lose_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add_ws(dir, "Shop A", "ws://127.0.0.1:9/a", &["--stopped"]);
    ok(dir, &["policy", "set", "breaker.threshold=7"]);
    let db = dir.join("lifeline.db");
    let rt = runtime();
    let set = |key: &str, value: &str| {
        write_db(
            &rt,
            &db,
            "UPDATE settings SET value = ? WHERE key = ?",
            &[value, key],
        )
    };
    let accounts = json(&ok(dir, &["account", "list", "--json"]));

    ok(dir, &["autorecover", "off"]);
    set("autorecover", "maybe");
    for args in [&["autorecover", "status"][..], &["status"]] {
        let msg = bad_input(dir, args);
        assert!(
            msg.contains("autorecover") && msg.contains("maybe"),
            "{args:?}: {msg}"
        );
        assert!(msg.contains("lifeline autorecover on"), "{args:?}: {msg}");
    }
    ok(dir, &["autorecover", "on"]);
    assert_eq!(
        ok(dir, &["autorecover", "status"]).trim(),
        "autorecover: on"
    );

    for (stored, names) in [
        (r#"{"pacing":{"rate_per_s":0}}"#, "pacing.rate_per_s"),
        (
            r#"{"pacing":{"from_a_newer_lifeline":1}}"#,
            "from_a_newer_lifeline",
        ),
        (r#"{"breaker":"#, "policy"),
    ] {
        set("policy", stored);
        for args in [
            &["policy", "show"][..],
            &["policy", "set", "breaker.threshold=3"],
            &["serve"],
        ] {
            let msg = bad_input(dir, args);
            assert!(msg.contains(names), "{args:?}: {msg}");
            assert!(msg.contains("lifeline policy reset"), "{args:?}: {msg}");
        }
        // Everything else still works, and nothing was lost.
        assert_eq!(json(&ok(dir, &["account", "list", "--json"])), accounts);
        let status = json(&ok(dir, &["status", "--json"]));
        assert_eq!(status["last_run"], Value::Null, "serve never started a run");
    }
    ok(dir, &["policy", "reset"]);
    assert_eq!(
        json(&ok(dir, &["policy", "show"]))["breaker"]["threshold"],
        10
    );
}

// ---------------------------------------------------------------------------------------------
// What an operator types
// ---------------------------------------------------------------------------------------------

#[test]
fn policy_values_out_of_range_or_malformed_are_refused_naming_the_key() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    ok(d, &["policy", "set", "pacing.rate_per_s=3.5"]);
    let before = stored(d);
    for (assignment, names) in [
        (
            "backoff.floor_network_ms=86400001",
            "backoff.floor_network_ms",
        ),
        ("backoff.cap_ms=999", "backoff.cap_ms"),
        ("breaker.threshold=0", "breaker.threshold"),
        ("breaker.threshold=1001", "breaker.threshold"),
        ("breaker.threshold=-1", "breaker.threshold"),
        ("breaker.threshold=5.5", "breaker.threshold"),
        ("breaker.threshold=4294967296", "breaker.threshold"),
        ("breaker.threshold=\"5\"", "breaker.threshold"),
        ("breaker.cooldown_s=3601", "breaker.cooldown_s"),
        ("pacing.rate_per_s=0.001", "pacing.rate_per_s"),
        ("pacing.rate_per_s=1e400", "1e400"),
        ("pacing.rate_per_s=NaN", "NaN"),
        ("pacing.rate_per_s=", "pacing.rate_per_s"),
        ("pacing.enabled=maybe", "maybe"),
        ("pacing.rate_per_s.x=1", "pacing.rate_per_s"),
        ("pacing", "section.key=value"),
        ("=5", "unknown key"),
        ("connection.keepalive_ms=99", "connection.keepalive_ms"),
        ("autorecover.concurrency=0", "autorecover.concurrency"),
        ("alerts.summary_threshold=1", "alerts.summary_threshold"),
    ] {
        let msg = bad_input(d, &["policy", "set", assignment]);
        assert!(msg.contains(names), "{assignment}: {msg}");
    }
    assert_eq!(stored(d), before, "nothing stored on bad input");
}

#[test]
fn odd_names_are_kept_verbatim_or_refused_with_the_reason() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let kept = [
        "👩\u{200d}👩\u{200d}👧 family shop",
        "🇮🇩 Toko",
        "\u{200f}متجر الورد",
        "חנות הפרחים",
        "Cafe\u{301} 中文",
        "O'Brien's \"Best\" <b>&amp;</b>",
        "%s %n {0} $(rm -rf) `x`",
    ];
    let max = "🍜".repeat(120);
    for (i, name) in kept.iter().copied().chain([max.as_str()]).enumerate() {
        add_ws(d, name, &format!("ws://127.0.0.1:9/{i}"), &["--stopped"]);
    }
    add_ws(d, "  padded  ", "ws://127.0.0.1:9/p", &["--stopped"]);
    let before = stored(d);
    let names: Vec<&str> = before
        .accounts
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    for name in kept.iter().copied().chain([max.as_str(), "padded"]) {
        assert!(
            names.contains(&name),
            "{name:?} stored verbatim in {names:?}"
        );
    }
    let table = ok(d, &["account", "list"]);
    assert!(table.contains("חנות הפרחים") && table.contains("🇮🇩 Toko"));

    let too_long = "🍜".repeat(121);
    for (name, says) in [
        (too_long.as_str(), "121 characters"),
        ("a\nb", "control characters"),
        ("\u{1b}[2J\u{1b}[Hgone", "control characters"),
        ("Shop \u{202e}A gnikaerB", "text-direction"),
        ("\u{2067}متجر", "text-direction"),
        ("\u{200b}\u{feff}", "empty"),
        ("   ", "empty"),
        ("padded", "already exists"),
        (" padded ", "'padded'"),
    ] {
        let msg = bad_input(d, &ws_add_args(name, "ws://127.0.0.1:9/x"));
        assert!(msg.contains(says), "{name:?}: {msg}");
    }
    // A NUL cannot travel in argv at all; the engine refuses it for the other faces (its unit
    // and property tests), and the OS refuses to start a process with one.
    let spawned = Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(["account", "add", "--kind", "whatsapp", "--name", "a\0b"])
        .env("LIFELINE_DATA_DIR", d)
        .output();
    assert!(spawned.is_err(), "{spawned:?}");
    assert_eq!(stored(d), before, "refusals stored nothing");
}

#[test]
fn urls_secrets_and_phone_numbers_that_cannot_work_are_refused_naming_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
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
    let wa = wa.trim();
    let before = stored(d);
    let add = |extra: &[&str]| {
        let mut args = vec!["account", "add", "--kind", "websocket", "--name", "feed"];
        args.extend_from_slice(extra);
        bad_input(d, &args)
    };
    for url in [
        "http://example.com/feed",
        "javascript:alert(1)",
        "ws://",
        "ws://:9000/x",
        "ws://[::1/x",
        "ws://h:99999/x",
        "ws://user:secret@h/x",
        "ws://exa mple.com/",
        "",
        "🍜",
    ] {
        let msg = add(&["--url", url]);
        assert!(msg.contains(&format!("'{url}'")), "{url:?}: {msg}");
    }
    for proxy in [
        "socks4://10.0.0.1:1080",
        "socks5://user:pw@10.0.0.1:1080",
        "socks5://10.0.0.1",
        "http://",
        "10.0.0.1:1080",
    ] {
        let msg = add(&["--url", "ws://h/x", "--proxy", proxy]);
        assert!(msg.contains(&format!("'{proxy}'")), "{proxy:?}: {msg}");
    }
    let msg = add(&["--url", "ws://h/x", "--header", "Authorization=never-set"]);
    assert!(
        msg.contains("'never-set'") && msg.contains("secret set"),
        "{msg}"
    );
    let msg = add(&["--url", "ws://h/x", "--header", "Bad Header=x"]);
    assert!(msg.contains("'Bad Header'"), "{msg}");
    let msg = add(&[
        "--url",
        "ws://h/x",
        "--proxy",
        "socks5://10.0.0.1:1080",
        "--proxy-secret",
        "bad name",
    ]);
    assert!(msg.contains("'bad name'"), "{msg}");

    for phone in [
        "0812345678",
        "+62",
        "+62 812 abc 7890",
        "+0812345678",
        "+1234567890123456",
        "++6281234567890",
        "+62\u{2212}812\u{2212}3456",
        "+٦٢٨١٢٣٤٥٦٧٨٩",
        "",
    ] {
        let msg = bad_input(d, &["link", wa, "--phone", phone]);
        assert!(msg.contains(&format!("'{phone}'")), "{phone:?}: {msg}");
        assert!(msg.contains("international form"), "{phone:?}: {msg}");
    }
    // TikTok creators: a name TikTok could not have, none at all, or --user on another kind.
    for user in [
        "@a",
        "@toko mawar",
        "@toko!",
        "@namethatiswaytoolongfortiktok",
        "@dot.",
        "",
    ] {
        let msg = bad_input(
            d,
            &[
                "account", "add", "--kind", "tiktok", "--name", "live", "--user", user,
            ],
        );
        assert!(msg.contains(&format!("'{user}'")), "{user:?}: {msg}");
    }
    let msg = bad_input(d, &["account", "add", "--kind", "tiktok", "--name", "live"]);
    assert!(msg.contains("--user @name"), "{msg}");
    let msg = add(&["--url", "ws://h/x", "--user", "@tokomawar"]);
    assert!(msg.contains("--user"), "{msg}");
    let msg = bad_input(d, &["link", "99", "--phone", "+6281234567890"]);
    assert!(msg.contains("99"), "{msg}");
    assert!(
        !d.join("whatsapp").exists(),
        "a refused link touched no device store"
    );

    // Export ranges: inverted (also once offsets are applied), empty, impossible dates.
    for (since, until, says) in [
        ("2026-11-02", "2026-11-01", "inverted"),
        ("2026-11-01", "2026-11-01", "inverted"),
        (
            "2026-11-01T08:00:00+07:00",
            "2026-11-01T00:30:00Z",
            "2026-11-01T01:00:00",
        ),
        ("2026-02-30", "2026-03-01", "'2026-02-30'"),
        ("2026-11-01", "10000-01-01", "'10000-01-01'"),
    ] {
        let msg = bad_input(
            d,
            &[
                "export", "--what", "events", "--out", "-", "--since", since, "--until", until,
            ],
        );
        assert!(msg.contains(says), "{since}..{until}: {msg}");
    }
    let msg = bad_input(
        d,
        &["export", "--what", "sessions", "--out", "-", "--account=-1"],
    );
    assert!(msg.contains("-1"), "{msg}");
    assert_eq!(stored(d), before, "refusals stored nothing");
}

#[test]
fn unusable_data_dirs_and_serve_options_are_refused_before_anything_starts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let f = file.to_str().expect("utf-8");
    let msg = fails(tmp.path(), 1, &["--data-dir", f, "status"]);
    assert!(msg.contains(f) && msg.contains("--data-dir"), "{msg}");
    let d = tmp.path().join("d");
    std::fs::create_dir_all(d.join("lifeline.db")).expect("a directory where the file goes");
    let msg = fails(&d, 1, &["status"]);
    assert!(
        msg.contains(&d.join("lifeline.db").display().to_string()),
        "{msg}"
    );

    let d = tmp.path().join("serve");
    add_ws(&d, "Shop A", "ws://127.0.0.1:9/a", &["--stopped"]);
    for (args, says) in [
        (&["serve", "--http", "0.0.0.0:7700"][..], "loopback"),
        (&["serve", "--http", "192.168.1.10:7700"], "loopback"),
        (&["serve", "--http", "localhost:7700"], "'localhost:7700'"),
        (&["serve", "--http", "127.0.0.1:99999"], "'127.0.0.1:99999'"),
        (&["serve", "--http", "127.0.0.1"], "'127.0.0.1'"),
        (&["serve", "--token-secret", "bad name"], "'bad name'"),
    ] {
        let msg = bad_input(&d, args);
        assert!(msg.contains(says), "{args:?}: {msg}");
    }
    let status = json(&ok(&d, &["status", "--json"]));
    assert_eq!(status["last_run"], Value::Null, "no run was started");
}

// ---------------------------------------------------------------------------------------------
// The HTTP API
// ---------------------------------------------------------------------------------------------

/// One HTTP/1.1 exchange over a fresh connection; `(status, body)`, status 0 when the server
/// closed without answering.
/// Asserts the one error shape every face uses, `{code, message}`; returns the message.
fn error_json(status: u16, body: &str, code: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{status} {body:?}: {e}"));
    assert_eq!(v["code"], code, "{status} {body}");
    v["message"].as_str().expect("message").to_owned()
}

/// Raises the open-file limit for this process (and the serve it spawns) to what a thousand
/// simultaneous connections on each side need, where the hard limit allows.
#[allow(unsafe_code)] // setrlimit(2) has no safe wrapper in std.
fn allow_open_files(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit for the duration of both calls.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < n {
            lim.rlim_cur = n.min(lim.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// What one of the thousand sends, and what it must get back.
fn flood_request(i: usize) -> (String, &'static [u16], Option<&'static str>) {
    let post = |path: &str, extra: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    if i % 50 == 49 {
        // Wrong token: the only kind that asks the keyring (401 with one, 503 without).
        return (
            post("/accounts/1/stop", "Authorization: Bearer wrong\r\n", ""),
            &[401, 503],
            Some("unauthorized|keyring|no_token"),
        );
    }
    match i % 7 {
        0 => (get("/health"), &[200], None),
        1 => (get("/metrics"), &[200], None),
        2 => (
            post("/accounts/1/stop", "", ""),
            &[401],
            Some("unauthorized"),
        ),
        3 => (
            post(
                "/fleet/stop-all",
                "Content-Type: application/json\r\n",
                "{\"all\": tru",
            ),
            &[401],
            Some("unauthorized"),
        ),
        4 => (get("/accounts/1/stop"), &[405], Some("method_not_allowed")),
        5 => (get("/no/such/endpoint"), &[404], Some("not_found")),
        _ => (
            post("/accounts/%FF/stop", "Authorization: Basic eDp5\r\n", ""),
            &[401],
            Some("unauthorized"),
        ),
    }
}

/// Opens `n` connections, sends every request only once all are open, reads every answer.
fn flood(addr: &str, n: usize) -> Vec<(usize, u16, String)> {
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rt = runtime();
    rt.block_on(async {
        let all_open = Arc::new(tokio::sync::Barrier::new(n));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..n {
            let addr = addr.to_owned();
            let all_open = all_open.clone();
            tasks.spawn(async move {
                let conn = tokio::net::TcpStream::connect(&addr).await;
                all_open.wait().await;
                let mut s = conn.map_err(|e| format!("{i}: connect: {e}"))?;
                let (request, _, _) = flood_request(i);
                s.write_all(request.as_bytes())
                    .await
                    .map_err(|e| format!("{i}: write: {e}"))?;
                let mut raw = Vec::new();
                s.read_to_end(&mut raw)
                    .await
                    .map_err(|e| format!("{i}: read: {e}"))?;
                let (status, body) = split_response(&raw);
                Ok::<_, String>((i, status, body))
            });
        }
        let mut answers = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while let Some(joined) = tokio::time::timeout_at(deadline, tasks.join_next())
            .await
            .expect("every request answered within two minutes")
        {
            answers.push(joined.expect("task").expect("exchange"));
        }
        answers
    })
}

#[test]
fn http_api_answers_every_bad_request_with_a_json_error_and_changes_nothing() {
    allow_open_files(4096);
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    add_ws(d, "Shop A", "ws://127.0.0.1:9/a", &["--stopped"]);
    add_ws(d, "Shop B", "ws://127.0.0.1:9/b", &["--stopped"]);
    let token_secret = format!("bad-input-http-{}", std::process::id());
    let s = serve(d, &["--token-secret", &token_secret]);
    let addr = s.http.clone();
    let before = stored(d);

    // Without a bearer token nothing is even looked up.
    let (st, body) = http(&addr, "POST", "/accounts/1/stop", &[], b"");
    assert_eq!(st, 401);
    assert!(error_json(st, &body, "unauthorized").contains(&token_secret));
    for auth in [
        "Authorization: Basic eDp5",
        "Authorization: bearer x",
        "Authorization:",
    ] {
        let (st, body) = http(&addr, "POST", "/fleet/stop-all", &[auth], b"{}");
        assert_eq!(st, 401, "{auth}");
        error_json(st, &body, "unauthorized");
    }
    let (st, body) = http(&addr, "GET", "/accounts/1/stop", &[], b"");
    assert_eq!(st, 405);
    assert!(error_json(st, &body, "method_not_allowed").contains("/openapi.json"));
    let (st, body) = http(&addr, "DELETE", "/accounts/1/stop", &[], b"");
    assert_eq!(st, 405);
    error_json(st, &body, "method_not_allowed");
    let (st, body) = http(&addr, "GET", "/no/such/thing", &[], b"");
    assert_eq!(st, 404);
    assert!(error_json(st, &body, "not_found").contains("/no/such/thing"));
    // Every guarded endpoint is refused without the token, reads included.
    for (method, path) in [
        ("GET", "/accounts"),
        ("GET", "/accounts/1"),
        ("DELETE", "/accounts/1"),
        ("GET", "/events"),
        ("GET", "/export/events.csv"),
        ("GET", "/policy"),
        ("GET", "/webhooks"),
    ] {
        let (st, body) = http(&addr, method, path, &[], b"");
        assert_eq!(st, 401, "{method} {path}: {body}");
        error_json(st, &body, "unauthorized");
    }
    // Not HTTP at all: a 400 (or a closed connection), and the server carries on.
    let mut raw = TcpStream::connect(&addr).expect("connect");
    raw.write_all(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03GARBAGE\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    let (st, _) = split_response(&answer);
    assert!(st == 400 || st == 0, "{st}");

    // With a token set in the keyring: wrong ones, unknown ids and actions, malformed bodies.
    let authorized = if keyring_available() {
        let (st, body) = http(
            &addr,
            "POST",
            "/accounts/1/stop",
            &["Authorization: Bearer anything"],
            b"",
        );
        assert_eq!(st, 503, "no token set yet: {body}");
        assert!(error_json(st, &body, "no_token").contains(&format!("secret set {token_secret}")));
        let token = format!("tok-{}-7c1e", std::process::id());
        set_secret(d, &token_secret, &token);
        let bearer = format!("Authorization: Bearer {token}");
        let (st, body) = http(
            &addr,
            "POST",
            "/accounts/1/stop",
            &[&format!("Authorization: Bearer {token}x")],
            b"",
        );
        assert_eq!(st, 401);
        assert!(error_json(st, &body, "unauthorized").contains("Wrong bearer token"));
        for (path, body, status, code, says) in [
            ("/accounts/99/stop", &b""[..], 404, "unknown_account", "99"),
            ("/accounts/-1/retry", b"", 404, "unknown_account", "-1"),
            ("/accounts/abc/stop", b"", 400, "bad_request", "abc"),
            (
                "/accounts/99999999999999999999/stop",
                b"",
                400,
                "bad_request",
                "99999999999999999999",
            ),
            (
                "/accounts/%FF/stop",
                b"",
                400,
                "bad_request",
                "whole number",
            ),
            (
                "/accounts/1/explode",
                b"",
                404,
                "not_found",
                "/accounts/1/explode",
            ),
            ("/fleet/explode", b"", 404, "not_found", "/fleet/explode"),
            (
                "/accounts/1/stop",
                b"{\"id\": 2,",
                400,
                "bad_json",
                "not valid JSON",
            ),
            (
                "/fleet/stop-all",
                b"stop=all",
                400,
                "bad_json",
                "take no body",
            ),
            (
                "/accounts/1/reset",
                &[b'x'; 100_000][..],
                413,
                "too_large",
                "no body",
            ),
        ] {
            let (st, answer) = http(&addr, "POST", path, &[&bearer], body);
            assert_eq!(st, status, "{path}: {answer}");
            let msg = error_json(st, &answer, code);
            assert!(msg.contains(says), "{path}: {msg}");
        }
        Some(bearer)
    } else {
        eprintln!(
            "token checks skipped: set LIFELINE_TEST_KEYRING=1 with an unlocked Secret Service"
        );
        None
    };
    assert_eq!(stored(d), before, "bad requests changed nothing");

    // A thousand at once: every one answered, well formed, and the server stays up.
    let started = Instant::now();
    let answers = flood(&addr, 1000);
    let took = started.elapsed();
    assert_eq!(answers.len(), 1000);
    for (i, status, body) in &answers {
        let (_, statuses, codes) = flood_request(*i);
        assert!(statuses.contains(status), "request {i}: {status} {body}");
        match codes {
            Some(codes) => {
                let v: Value = serde_json::from_str(body).expect("json error");
                let code = v["code"].as_str().expect("code");
                assert!(codes.split('|').any(|c| c == code), "request {i}: {body}");
                assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
            }
            None if i % 7 == 0 => assert!(json(body)["accounts"].is_array(), "{body}"),
            None => assert!(body.contains("lifeline_accounts"), "{body}"),
        }
    }
    eprintln!("1000 concurrent requests answered in {took:?}");
    let (st, _) = http(&addr, "GET", "/health", &[], b"");
    assert_eq!(st, 200, "still serving");
    assert_eq!(stored(d), before, "the flood changed nothing");

    // The token works, so the refusals above were about the requests, not the setup.
    if let Some(bearer) = authorized {
        let (st, body) = http(&addr, "POST", "/accounts/1/start", &[&bearer], b"{}");
        assert_eq!(st, 202, "{body}");
        let listed = json(&ok(d, &["account", "list", "--json"]));
        let one = listed
            .as_array()
            .and_then(|a| a.iter().find(|a| a["id"] == 1))
            .expect("account 1");
        assert_eq!(one["desired_running"], true);
        drop(s);
        ok(d, &["secret", "delete", &token_secret]);
    }
}
