//! The HTTP API against the real `lifeline serve`: every operation an integrator needs, from
//! adding an account to reading its history, linking a WhatsApp number (the QR PNG read back by
//! zbar, an independent decoder, and scanned on the offline peer), policy and webhooks; then the
//! served OpenAPI document checked by `openapi-spec-validator` and the live server by a
//! property-based `schemathesis` run. Needs an unlocked Secret Service (LIFELINE_TEST_KEYRING)
//! for the token and LIFELINE_TEST_PYTHON (the venv scripts/test.sh makes).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Serve, http, keyring_available, ok, serve_with_env, set_secret};
use serde_json::{Value, json};

/// A served data dir with a token set; `None` (skipped) without a test keyring.
struct Api {
    serve: Serve,
    bearer: String,
    token_secret: String,
}

fn start(dir: &Path, env: &[(&str, &str)]) -> Option<Api> {
    if !keyring_available() {
        eprintln!("skipped: set LIFELINE_TEST_KEYRING=1 with an unlocked Secret Service");
        return None;
    }
    // One secret per test: tests run in parallel and each deletes its own at the end.
    let unique = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let token_secret = format!("api-test-{}-{unique}", std::process::id());
    let token = format!("t0k-{}", std::process::id());
    set_secret(dir, &token_secret, &token);
    let serve = serve_with_env(dir, &["--token-secret", &token_secret], env);
    Some(Api {
        serve,
        bearer: format!("Authorization: Bearer {token}"),
        token_secret,
    })
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut headers = vec![self.bearer.as_str()];
        if !body.is_empty() {
            headers.push("Content-Type: application/json");
        }
        http(&self.serve.http, method, path, &headers, body.as_bytes())
    }

    /// A call that must answer `status` with JSON; returns it.
    fn json(&self, method: &str, path: &str, body: Option<Value>, status: u16) -> Value {
        let (st, text) = self.call(method, path, body);
        assert_eq!(st, status, "{method} {path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {path}: {e}: {text}"))
    }

    fn until(&self, path: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (st, text) = self.call("GET", path, None);
            if st == 200 {
                let v: Value = serde_json::from_str(&text).expect("json");
                if cond(&v) {
                    return v;
                }
            }
            assert!(Instant::now() < deadline, "{what}: last answer {st} {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        let dir = std::env::temp_dir();
        let _ = common::lifeline(&dir, &["secret", "delete", &self.token_secret]);
    }
}

#[test]
fn accounts_history_policy_and_webhooks_through_the_api() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let (_rt, sim) = common::sim();
    let Some(api) = start(d, &[]) else { return };

    // Add: validated like the CLI, connected by the supervisor at once.
    let url = sim.url("api");
    let added = api.json(
        "POST",
        "/accounts",
        Some(json!({"kind": "websocket", "name": "Shop API", "url": url, "country": "id"})),
        201,
    );
    let id = added["id"].as_i64().expect("id");
    assert_eq!(added["country"], "ID");
    let one = format!("/accounts/{id}");
    api.until(&one, "connected", |v| v["state"]["state"] == "connected");
    let (st, text) = api.call(
        "POST",
        "/accounts",
        Some(json!({"kind": "websocket", "name": "Shop API", "url": url})),
    );
    assert_eq!(st, 409, "{text}");
    let (st, text) = api.call(
        "POST",
        "/accounts",
        Some(json!({"kind": "websocket", "name": "x"})),
    );
    assert_eq!(st, 400, "a WebSocket account needs a URL: {text}");
    let (st, text) = api.call(
        "POST",
        "/accounts",
        Some(json!({"kind": "fax", "name": "x"})),
    );
    assert_eq!(st, 400, "{text}");
    let listed = api.json("GET", "/accounts", None, 200);
    assert_eq!(listed.as_array().map(Vec::len), Some(1));

    // Change: the CLI sees the same account.
    let changed = api.json(
        "PATCH",
        &one,
        Some(json!({"name": "Shop Renamed", "muted": true, "priority": 700})),
        200,
    );
    assert_eq!(
        (changed["name"].as_str(), changed["muted"].as_bool()),
        (Some("Shop Renamed"), Some(true))
    );
    let cli: Value = serde_json::from_str(&ok(d, &["account", "list", "--json"])).expect("json");
    assert_eq!(cli[0]["name"], "Shop Renamed");
    assert_eq!(cli[0]["priority"], 700);
    let (st, text) = api.call("PATCH", &one, Some(json!({"priority": 5000})));
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("5000"), "{text}");

    // Stop, start: recorded transitions, paged.
    api.json("POST", &format!("{one}/stop"), None, 202);
    api.until(&one, "stopped", |v| v["state"]["state"] == "stopped");
    api.json("POST", &format!("{one}/start"), None, 202);
    api.until(&one, "connected again", |v| {
        v["state"]["state"] == "connected"
    });
    let all = api.json(
        "GET",
        &format!("/events?account={id}&limit=1000"),
        None,
        200,
    );
    let events = all["items"].as_array().expect("items").clone();
    assert!(events.len() >= 4, "{all}");
    assert!(
        events
            .iter()
            .any(|e| e["to"]["state"] == "stopped" && e["triggered_by"] == "operator")
    );
    let mut paged = Vec::new();
    let mut after = String::new();
    loop {
        let page = api.json(
            "GET",
            &format!("/events?account={id}&limit=2{after}"),
            None,
            200,
        );
        paged.extend(page["items"].as_array().expect("items").iter().cloned());
        match page["next_after"].as_i64() {
            Some(n) => after = format!("&after={n}"),
            None => break,
        }
    }
    assert_eq!(paged, events, "pages add up to the whole log");
    let sessions = api.json("GET", &format!("/sessions?account={id}"), None, 200);
    let items = sessions["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{sessions}");
    assert!(items[0]["ended_at"].is_string() && items[1]["ended_at"].is_null());
    let (st, csv) = get(&api, &format!("/export/events.csv?account={id}"));
    assert_eq!(st, 200);
    let csv = String::from_utf8(csv).expect("utf-8 CSV");
    let cli_csv = ok(
        d,
        &[
            "export",
            "--what",
            "events",
            "--account",
            &id.to_string(),
            "--out",
            "-",
        ],
    );
    assert_eq!(csv, cli_csv, "the API's CSV is the CLI's");
    for (path, status) in [
        ("/events?since=yesterday", 400),
        ("/events?limit=0", 400),
        ("/events?since=2026-02-01&until=2026-01-01", 400),
        ("/sessions?account=999", 404),
        ("/export/sessions.csv?account=999", 404),
    ] {
        let (st, text) = api.call("GET", path, None);
        assert_eq!(st, status, "{path}: {text}");
        let v: Value = serde_json::from_str(&text).expect("json error");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{text}"
        );
    }

    // Policy: a merge patch, refused values in the engine's words, PUT {} resets.
    let patched = api.json(
        "PATCH",
        "/policy",
        Some(json!({"breaker": {"threshold": 3}})),
        200,
    );
    assert_eq!(patched["breaker"]["threshold"], 3);
    let shown: Value = serde_json::from_str(&ok(d, &["policy", "show"])).expect("json");
    assert_eq!(shown, patched, "stored where the CLI reads it");
    let (st, text) = api.call(
        "PATCH",
        "/policy",
        Some(json!({"breaker": {"threshold": 0}})),
    );
    assert_eq!(st, 400, "{text}");
    assert!(text.contains("threshold"), "{text}");
    let (st, text) = api.call(
        "PATCH",
        "/policy",
        Some(json!({"breaker": {"nonsense": 1}})),
    );
    assert_eq!(st, 400, "{text}");
    let reset = api.json("PUT", "/policy", Some(json!({})), 200);
    assert_ne!(reset["breaker"]["threshold"], 3);
    // Each change logged, newest first, old → new; the refused ones not at all.
    let changes = api.json("GET", "/policy/changes", None, 200);
    let threshold: Vec<(&str, &str)> = changes
        .as_array()
        .expect("list")
        .iter()
        .filter(|c| c["key"] == "breaker.threshold")
        .map(|c| {
            (
                c["old"].as_str().unwrap_or("-"),
                c["new"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    let default = reset["breaker"]["threshold"].to_string();
    assert_eq!(
        threshold,
        [("3", default.as_str()), (default.as_str(), "3")],
        "{changes}"
    );
    assert_eq!(changes[0]["triggered_by"], "operator");
    let status = api.json("GET", "/status", None, 200);
    assert_eq!(
        (
            status["accounts"].as_u64(),
            status["pid"].as_u64().is_some()
        ),
        (Some(1), true)
    );
    assert!(api.json("PUT", "/autorecover", Some(json!({"on": false})), 200)["on"] == false);
    assert_eq!(ok(d, &["autorecover", "status"]).trim(), "autorecover: off");

    // Webhooks: add (secret shown once), test against a receiver, off and on, remove.
    let receiver = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hook_url = format!("http://{}/hook", receiver.local_addr().expect("addr"));
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in receiver.incoming() {
            let Ok(mut s) = stream else { break };
            let mut buf = [0u8; 65536];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    let created = api.json(
        "POST",
        "/webhooks",
        Some(json!({"url": hook_url, "events": ["needs_operator", "alert"], "accounts": [id]})),
        201,
    );
    let hook = created["endpoint"]["id"].as_i64().expect("endpoint id");
    assert!(
        created["secret"]
            .as_str()
            .is_some_and(|s| s.starts_with("whsec_"))
    );
    assert!(
        !ok(d, &["webhook", "list", "--json"]).contains("whsec_"),
        "never listed"
    );
    let tested = api.json("POST", &format!("/webhooks/{hook}/test"), None, 200);
    assert_eq!(
        (tested["status"].as_str(), tested["last_code"].as_u64()),
        (Some("delivered"), Some(204))
    );
    let off = api.json("POST", &format!("/webhooks/{hook}/disable"), None, 200);
    assert_eq!(off["enabled"], false);
    let on = api.json("POST", &format!("/webhooks/{hook}/enable"), None, 200);
    assert_eq!(on["enabled"], true);
    let rotated = api.json(
        "POST",
        &format!("/webhooks/{hook}/rotate-secret"),
        None,
        200,
    );
    assert_ne!(rotated["secret"], created["secret"]);
    let listed = api.json(
        "GET",
        &format!("/webhooks/deliveries?endpoint={hook}"),
        None,
        200,
    );
    assert_eq!(listed[0]["type"], "webhook.test");
    for (method, path, body, status) in [
        (
            "POST",
            "/webhooks".to_owned(),
            json!({"url": "ftp://x"}),
            400,
        ),
        (
            "POST",
            "/webhooks".to_owned(),
            json!({"url": "http://169.254.169.254/"}),
            400,
        ),
        (
            "POST",
            "/webhooks".to_owned(),
            json!({"url": hook_url, "events": ["nope"]}),
            400,
        ),
        (
            "POST",
            "/webhooks".to_owned(),
            json!({"url": hook_url, "accounts": [999]}),
            404,
        ),
    ] {
        let (st, text) = api.call(method, &path, Some(body));
        assert_eq!(st, status, "{path}: {text}");
    }
    let removed = api.json("DELETE", &format!("/webhooks/{hook}"), None, 200);
    assert_eq!(removed["id"], hook);
    let (st, _) = api.call("GET", &format!("/webhooks/{hook}"), None);
    assert_eq!(st, 404);

    // Remove: gone from the fleet, its history kept.
    api.json("DELETE", &one, None, 200);
    let (st, text) = api.call("GET", &one, None);
    assert_eq!(st, 404, "{text}");
    let kept = api.json(
        "GET",
        &format!("/events?account={id}&limit=1000"),
        None,
        200,
    );
    assert!(kept["items"].as_array().map(Vec::len) > Some(events.len()));
}

#[test]
fn a_whatsapp_number_is_linked_through_the_api_from_its_qr_png() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let peer = rt
        .block_on(lifeline_wa_peer::Peer::start(
            "127.0.0.1:0",
            lifeline_wa_peer::Config::default(),
        ))
        .expect("peer");
    let Some(api) = start(d, &[("LIFELINE_WHATSAPP_URL", &peer.url())]) else {
        return;
    };
    let added = api.json(
        "POST",
        "/accounts",
        Some(json!({"kind": "whatsapp", "name": "Toko Mawar"})),
        201,
    );
    let id = added["id"].as_i64().expect("id");
    assert_eq!(added["state"]["state"], "needs_operator");
    let link = format!("/accounts/{id}/link");
    let (st, text) = api.call("GET", &link, None);
    assert_eq!(st, 404, "no code before linking starts: {text}");
    let (st, text) = api.call("POST", &link, Some(json!({"phone": "12"})));
    assert_eq!(st, 400, "{text}");
    api.json("POST", &link, None, 202);
    let code = api.until(&link, "a QR code", |v| v["mode"]["mode"] == "qr");
    let payload = code["code"].as_str().expect("code").to_owned();

    // The PNG, read by zbar: the payload the JSON gave.
    let (st, png) = get(&api, &format!("{link}/qr.png"));
    assert_eq!(st, 200);
    let file = d.join("qr.png");
    std::fs::write(&file, &png).expect("write png");
    match Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&file)
        .output()
    {
        Ok(out) => {
            assert!(out.status.success(), "zbarimg could not read the QR code");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim_end(), payload);
        }
        Err(e) => panic!("zbarimg (zbar-tools, installed by scripts/deps.sh) is needed: {e}"),
    }

    // The phone scans it: linked and connected, the code gone.
    peer.scan(&payload).expect("the phone scans the code");
    api.until(&format!("/accounts/{id}"), "connected", |v| {
        v["state"]["state"] == "connected"
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.call("GET", &link, None).0 != 404 {
        assert!(
            Instant::now() < deadline,
            "the code was not withdrawn after linking"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET returning the status and the body as bytes (a chunked body decoded).
fn get(api: &Api, path: &str) -> (u16, Vec<u8>) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(&api.serve.http).expect("connect");
    let head = format!(
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{}\r\n\r\n",
        api.bearer
    );
    s.write_all(head.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = raw[split..].to_vec();
    if head.contains("transfer-encoding: chunked") {
        let (mut out, mut rest) = (Vec::new(), &body[..]);
        loop {
            let eol = rest
                .windows(2)
                .position(|w| w == b"\r\n")
                .expect("chunk size");
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).expect("hex"), 16)
                .expect("chunk size");
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + size]);
            rest = &rest[eol + 2 + size + 2..];
        }
        body = out;
    }
    (status, body)
}

/// The document `serve` publishes is the one in docs/, valid per `openapi-spec-validator`, and
/// a property-based `schemathesis` run against the live server (a fleet with two accounts, the
/// token set) finds no 5xx, no answer outside the document (status, content type, schema), and
/// no guarded operation that answers without the token.
#[test]
fn the_published_document_is_valid_and_the_live_api_keeps_to_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let (_rt, sim) = common::sim();
    common::add(d, &sim, 2);
    let Some(python) = std::env::var_os("LIFELINE_TEST_PYTHON") else {
        eprintln!("skipped: set LIFELINE_TEST_PYTHON (the venv scripts/test.sh makes)");
        return;
    };
    let Some(api) = start(d, &[]) else { return };

    let (st, served) = http(&api.serve.http, "GET", "/openapi.json", &[], b"");
    assert_eq!(st, 200, "the document needs no token");
    let published = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.json"),
    )
    .expect("docs/openapi.json");
    let served: Value = serde_json::from_str(&served).expect("json");
    assert_eq!(
        served,
        serde_json::from_str::<Value>(&published).expect("json")
    );
    let file = d.join("openapi.json");
    std::fs::write(&file, published).expect("write");

    let out = Command::new(&python)
        .args([
            "-c",
            "import sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.readers import read_from_filename\n\
             validate(read_from_filename(sys.argv[1])[0])\n\
             print('valid')",
        ])
        .arg(&file)
        .output()
        .expect("run openapi-spec-validator");
    assert!(
        out.status.success(),
        "openapi-spec-validator refused the document: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let schemathesis = Path::new(&python).with_file_name("schemathesis");
    // The checks, and one exception: /health answers 503 by design while a desired account is
    // not connected (the run adds and starts accounts); its status and body are still checked
    // against the document.
    let config = d.join("schemathesis.toml");
    std::fs::write(
        &config,
        "[checks]\n\
         enabled = false\n\
         not_a_server_error.enabled = true\n\
         status_code_conformance.enabled = true\n\
         content_type_conformance.enabled = true\n\
         response_schema_conformance.enabled = true\n\
         ignored_auth.enabled = true\n\
         \n\
         [[operations]]\n\
         include-path = \"/health\"\n\
         checks.not_a_server_error.enabled = false\n",
    )
    .expect("write schemathesis.toml");
    let started = Instant::now();
    let out = Command::new(&schemathesis)
        // Its cache of examples and crashes goes in the throwaway dir, not the source tree.
        .current_dir(d)
        .arg("--config-file")
        .arg(&config)
        .arg("run")
        .arg(format!("http://{}/openapi.json", api.serve.http))
        .args(["-H", &api.bearer.replacen(": ", ":", 1)])
        .args([
            // The property-based phases: generated inputs, then sequences of calls.
            "--phases",
            "examples,fuzzing,stateful",
            "--max-examples",
            "15",
            "--workers",
            "2",
            "--request-timeout",
            "20",
            "--no-color",
        ])
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", schemathesis.display()));
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = report
        .lines()
        .find(|l| l.contains("generated,"))
        .unwrap_or_default()
        .trim();
    eprintln!("schemathesis: {summary} in {:?}", started.elapsed());
    let (st, _) = http(&api.serve.http, "GET", "/metrics", &[], b"");
    assert_eq!(st, 200, "still serving");
}
