//! Webhooks as an integrator meets them: `lifeline serve` sending to a receiver on 127.0.0.1 that
//! verifies every message with the Standard Webhooks project's own Python library. The receiver
//! goes down and comes back, answers 429 with Retry-After, 410, and holds only the old or only
//! the new secret during a rotation; serve is killed with SIGKILL in the middle of a burst.
//!
//! Needs a Secret Service (signing secrets live in the keyring: LIFELINE_TEST_KEYRING=1) and a
//! Python with `standardwebhooks` (LIFELINE_TEST_PYTHON); scripts/test.sh provides both.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{add, bad_input, http, ok, serve_with_env, sim, until};
use lifeline_sim::Fault;
use serde_json::Value;

/// Short waits between attempts, so a test sees many retries in seconds.
const SCHEDULE: (&str, &str) = (
    "LIFELINE_WEBHOOK_SCHEDULE",
    "0,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms",
);

fn ready() -> Option<String> {
    let python = std::env::var("LIFELINE_TEST_PYTHON").ok();
    let keyring = std::env::var_os("LIFELINE_TEST_KEYRING").is_some();
    match (python, keyring) {
        (Some(p), true) => Some(p),
        _ => {
            eprintln!(
                "skipped: set LIFELINE_TEST_KEYRING=1 (an unlocked Secret Service) and LIFELINE_TEST_PYTHON (the venv scripts/test.sh makes)"
            );
            None
        }
    }
}

struct Receiver {
    child: Child,
    addr: String,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Receiver {
    fn start(python: &str) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/webhook_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("receiver port");
        let port = line
            .trim()
            .strip_prefix("port ")
            .expect("port line")
            .to_owned();
        Self {
            child,
            addr: format!("127.0.0.1:{port}"),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    fn secret(&self, secret: &str) {
        assert_eq!(
            http(&self.addr, "POST", "/_secret", &[], secret.as_bytes()).0,
            204
        );
    }

    fn answer(&self, status: u16, retry_after: Option<u64>, times: Option<u32>) {
        let ask = serde_json::json!({"status": status, "retry_after": retry_after, "times": times});
        let (code, _) = http(
            &self.addr,
            "POST",
            "/_answer",
            &[],
            ask.to_string().as_bytes(),
        );
        assert_eq!(code, 204);
    }

    fn log(&self) -> Vec<Value> {
        let (code, body) = http(&self.addr, "GET", "/_log", &[], b"");
        assert_eq!(code, 200);
        serde_json::from_str(&body).expect("log json")
    }

    /// Messages answered 2xx, by the event they announce.
    fn accepted_events(&self) -> Vec<Value> {
        self.log()
            .into_iter()
            .filter(|m| {
                m["status"]
                    .as_u64()
                    .is_some_and(|s| (200..300).contains(&s))
            })
            .filter(|m| m["body"]["data"]["event_id"].is_i64())
            .collect()
    }
}

/// Every event id in the database with its account, as an outside reader sees them.
fn events(rt: &tokio::runtime::Runtime, dir: &Path) -> Vec<(i64, i64)> {
    rt.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=ro", dir.join("lifeline.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open db");
        let rows: Vec<(i64, i64)> = sqlx::query_as("SELECT id, account_id FROM events ORDER BY id")
            .fetch_all(&mut c)
            .await
            .expect("events");
        c.close().await.expect("close");
        rows
    })
}

fn pending(rt: &tokio::runtime::Runtime, dir: &Path) -> i64 {
    rt.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=ro", dir.join("lifeline.db").display());
        let mut c = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open db");
        let n: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")
                .fetch_one(&mut c)
                .await
                .expect("pending");
        c.close().await.expect("close");
        n
    })
}

/// Waits until every recorded event was accepted by the receiver, then checks what an
/// integrator relies on: each verified, each event accepted once, one webhook-id per event
/// (a retry repeats the id), and per account in the order recorded.
fn all_delivered(rt: &tokio::runtime::Runtime, dir: &Path, rx: &Receiver, limit: Duration) {
    let start = Instant::now();
    let (recorded, accepted) = loop {
        let recorded = events(rt, dir);
        let accepted = rx.accepted_events();
        let got: std::collections::HashSet<i64> = accepted
            .iter()
            .filter_map(|m| m["body"]["data"]["event_id"].as_i64())
            .collect();
        if recorded.iter().all(|(id, _)| got.contains(id)) {
            break (recorded, accepted);
        }
        assert!(
            start.elapsed() < limit,
            "{} of {} events delivered after {limit:?}",
            got.len(),
            recorded.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!recorded.is_empty());
    let mut times: HashMap<i64, u32> = HashMap::new();
    let mut per_account: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for m in &accepted {
        assert_eq!(m["verified"], true, "not verified: {m}");
        let event = m["body"]["data"]["event_id"].as_i64().expect("event id");
        *times.entry(event).or_default() += 1;
        let account = m["body"]["data"]["account_id"].as_i64().expect("account");
        per_account.entry(account).or_default().push(event);
    }
    for (event, n) in &times {
        assert_eq!(*n, 1, "event {event} accepted {n} times");
    }
    for (account, seq) in &per_account {
        assert!(
            seq.windows(2).all(|w| w[0] < w[1]),
            "account {account} out of order: {seq:?}"
        );
    }
    let mut ids: HashMap<String, i64> = HashMap::new();
    for m in rx.log() {
        let (Some(id), Some(event)) = (m["id"].as_str(), m["body"]["data"]["event_id"].as_i64())
        else {
            continue;
        };
        let first = *ids.entry(id.to_owned()).or_insert(event);
        assert_eq!(first, event, "webhook-id {id} reused for another event");
    }
}

/// Adds an endpoint for the receiver; returns its id and secret.
fn add_endpoint(dir: &Path, rx: &Receiver, extra: &[&str]) -> (String, String) {
    let url = rx.url();
    let mut args = vec!["webhook", "add", url.as_str(), "--show-secret"];
    args.extend_from_slice(extra);
    let out = ok(dir, &args);
    let mut lines = out.lines();
    let id = lines.next().expect("id").to_owned();
    let secret = lines.next().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    (id, secret)
}

/// `n` accounts served with the short retry schedule, sending to a receiver that holds the
/// endpoint's secret, all connected. Fields drop in order: serve first, the runtime last.
struct Serving {
    serve: common::Serve,
    rx: Receiver,
    id: String,
    secret: String,
    tmp: tempfile::TempDir,
    sim: lifeline_sim::Sim,
    rt: tokio::runtime::Runtime,
}

fn serving(python: &str, n: u64) -> Serving {
    let (rt, sim) = sim();
    let tmp = tempfile::tempdir().expect("tempdir");
    add(tmp.path(), &sim, n as usize);
    let rx = Receiver::start(python);
    let (id, secret) = add_endpoint(tmp.path(), &rx, &[]);
    rx.secret(&secret);
    let serve = serve_with_env(tmp.path(), &[], &[SCHEDULE]);
    connected(tmp.path(), n);
    Serving {
        serve,
        rx,
        id,
        secret,
        tmp,
        sim,
        rt,
    }
}

fn connected(dir: &Path, n: u64) {
    until(dir, Duration::from_secs(30), "all connected", |h| {
        h["desired_connected"] == n && h["healthy"] == true
    });
}

#[test]
fn every_event_reaches_a_receiver_that_was_down_once_verified_and_in_order() {
    let Some(python) = ready() else { return };
    let (rt, sim) = sim();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add(dir, &sim, 3);
    let rx = Receiver::start(&python);
    let (_, secret) = add_endpoint(dir, &rx, &[]);
    rx.secret(&secret);
    rx.answer(503, None, None);
    let _serve = serve_with_env(dir, &[], &[SCHEDULE]);
    connected(dir, 3);
    rt.block_on(async { sim.inject(Fault::Drop { path: None }) });
    connected(dir, 3);
    // Down all along: messages were tried and refused.
    let refused = rx.log().iter().filter(|m| m["status"] == 503).count();
    assert!(refused >= 3, "{refused} refused attempts");
    rx.answer(200, None, None);
    all_delivered(&rt, dir, &rx, Duration::from_secs(30));
    let drops = rx
        .accepted_events()
        .into_iter()
        .filter(|m| m["body"]["type"] == "account.dropped")
        .count();
    assert_eq!(drops, 3);
    let sample = &rx.accepted_events()[0]["body"];
    assert_eq!(sample["data"]["version"], 1);
    assert!(
        sample["data"]["account_name"]
            .as_str()
            .is_some_and(|n| n.starts_with("shop"))
    );
    assert!(
        sample["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
}

/// One sample of a Prometheus text exposition (`name{labels} value`), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn an_endpoint_turned_off_keeps_what_happened_meanwhile_and_sends_it_once_on_again() {
    let Some(python) = ready() else { return };
    let s = serving(&python, 2);
    let (rt, sim, dir, rx, id) = (&s.rt, &s.sim, s.tmp.path(), &s.rx, &s.id);
    all_delivered(rt, dir, rx, Duration::from_secs(30));
    let before = rx.log().len();

    let out = ok(dir, &["webhook", "disable", id]);
    assert!(out.contains("keep queueing"), "{out}");
    rt.block_on(async { sim.inject(Fault::Drop { path: None }) });
    connected(dir, 2);
    // Recorded, queued, not sent: the metrics count them waiting.
    let (code, metrics) = http(&s.serve.http, "GET", "/metrics", &[], b"");
    assert_eq!(code, 200);
    assert!(
        sample(&metrics, "lifeline_webhook_pending ") >= 4.0,
        "two drops and two reconnects wait:\n{metrics}"
    );
    assert!(sample(&metrics, "lifeline_webhook_oldest_pending_seconds ") >= 0.0);
    let delivered = sample(
        &metrics,
        "lifeline_webhook_deliveries_total{outcome=\"delivered\"} ",
    );
    assert!(
        delivered >= 4.0,
        "the first connects were delivered:\n{metrics}"
    );
    assert_eq!(rx.log().len(), before, "nothing sent while off");

    ok(dir, &["webhook", "enable", id]);
    all_delivered(rt, dir, rx, Duration::from_secs(30));
    let drops = rx
        .accepted_events()
        .into_iter()
        .filter(|m| m["body"]["type"] == "account.dropped")
        .count();
    assert_eq!(drops, 2, "what happened while off went out");
    let out = ok(dir, &["webhook", "test", id]);
    assert!(out.contains("200") || out.contains("204"), "{out}");
}

#[test]
fn a_kill_in_the_middle_of_a_burst_loses_no_message() {
    let Some(python) = ready() else { return };
    let (rt, sim) = sim();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add(dir, &sim, 20);
    let rx = Receiver::start(&python);
    let (_, secret) = add_endpoint(dir, &rx, &["--events", "state"]);
    rx.secret(&secret);
    let mut serve = serve_with_env(dir, &[], &[SCHEDULE]);
    connected(dir, 20);
    // The receiver stops taking messages, the fleet drops, and serve dies mid-recovery.
    rx.answer(503, None, None);
    rt.block_on(async { sim.inject(Fault::Drop { path: None }) });
    until(dir, Duration::from_secs(10), "some dropped", |h| {
        h["desired_connected"].as_u64().is_some_and(|n| n < 20)
    });
    serve.child.kill().expect("kill -9");
    serve.child.wait().expect("reap");
    assert!(
        pending(&rt, dir) > 0,
        "messages were waiting when serve died"
    );
    rx.answer(200, None, None);
    let _serve = serve_with_env(dir, &[], &[SCHEDULE]);
    connected(dir, 20);
    all_delivered(&rt, dir, &rx, Duration::from_secs(60));
}

#[test]
fn retry_after_rotation_and_gone_are_honoured() {
    let Some(python) = ready() else { return };
    let s = serving(&python, 1);
    let (rt, dir, rx, id, old) = (&s.rt, s.tmp.path(), &s.rx, &s.id, &s.secret);
    all_delivered(rt, dir, rx, Duration::from_secs(10));

    // 429 with Retry-After: 2 → the next attempt waits two seconds, not the schedule's 300 ms.
    rx.answer(429, Some(2), Some(1));
    ok(dir, &["stop", "1"]);
    all_delivered(rt, dir, rx, Duration::from_secs(15));
    let log = rx.log();
    let limited = log.iter().find(|m| m["status"] == 429).expect("a 429");
    let again = log
        .iter()
        .find(|m| m["id"] == limited["id"] && m["status"] == 200)
        .expect("retried");
    let waited = again["arrived"].as_f64().expect("t") - limited["arrived"].as_f64().expect("t");
    assert!(waited >= 1.9, "retried after {waited} s");
    // The same on 503 (a receiver in maintenance).
    rx.answer(503, Some(2), Some(1));
    ok(dir, &["start", "1"]);
    all_delivered(rt, dir, rx, Duration::from_secs(15));
    let log = rx.log();
    let busy = log.iter().find(|m| m["status"] == 503).expect("a 503");
    let again = log
        .iter()
        .find(|m| m["id"] == busy["id"] && m["status"] == 200)
        .expect("retried");
    let waited = again["arrived"].as_f64().expect("t") - busy["arrived"].as_f64().expect("t");
    assert!(waited >= 1.9, "retried after {waited} s");

    // Rotation: both secrets sign for a while, so a receiver holding either verifies.
    let new = ok(dir, &["webhook", "rotate-secret", id, "--show-secret"])
        .trim()
        .to_owned();
    assert!(new.starts_with("whsec_") && new != *old);
    for (secret, action) in [(&new, "stop"), (old, "start")] {
        rx.secret(secret);
        let before = rx.log().len();
        ok(dir, &[action, "1"]);
        all_delivered(rt, dir, rx, Duration::from_secs(15));
        let fresh = &rx.log()[before..];
        assert!(!fresh.is_empty());
        assert!(
            fresh
                .iter()
                .all(|m| m["verified"] == true && m["signatures"] == 2),
            "{fresh:?}"
        );
    }

    // 410 Gone: the endpoint is turned off and says why.
    rx.answer(410, None, None);
    ok(dir, &["stop", "1"]);
    let start = Instant::now();
    loop {
        let list: Value =
            serde_json::from_str(&ok(dir, &["webhook", "list", "--json"])).expect("json");
        if list[0]["enabled"] == false {
            assert!(
                list[0]["disabled_reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("410"))
            );
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "not disabled: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let failed = ok(dir, &["webhook", "deliveries", id, "--failed"]);
    assert!(failed.contains("410"), "{failed}");

    // The receiver is back: the refused message is queued again (ahead of what happened while
    // the endpoint was off), then the endpoint is turned on and all of it goes out in order,
    // the replayed message under its own webhook-id.
    rx.answer(200, None, None);
    ok(dir, &["start", "1"]);
    ok(dir, &["webhook", "replay", "--failed"]);
    ok(dir, &["webhook", "enable", id]);
    all_delivered(rt, dir, rx, Duration::from_secs(15));
    let gone = rx
        .log()
        .into_iter()
        .find(|m| m["status"] == 410)
        .expect("the 410");
    assert!(
        rx.accepted_events().iter().any(|m| m["id"] == gone["id"]),
        "replayed with the same webhook-id"
    );
}

#[test]
fn bad_endpoints_are_refused_with_one_line_and_nothing_stored() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    for (args, says) in [
        (vec!["webhook", "add", "ftp://127.0.0.1/x"], "only http"),
        (
            vec!["webhook", "add", "http://169.254.169.254/latest/meta-data"],
            "metadata",
        ),
        (
            vec!["webhook", "add", "http://user:pw@127.0.0.1/hook"],
            "credentials",
        ),
        (
            vec![
                "webhook",
                "add",
                "http://127.0.0.1:9/hook",
                "--events",
                "state,bogus",
            ],
            "bogus",
        ),
        (
            vec![
                "webhook",
                "add",
                "http://127.0.0.1:9/hook",
                "--account",
                "7",
            ],
            "No account with id 7",
        ),
        (
            vec!["webhook", "add", "https://no-such-host.invalid/hook"],
            "does not resolve",
        ),
        (
            vec!["webhook", "remove", "4"],
            "No webhook endpoint with id 4",
        ),
        (
            vec!["webhook", "replay", "12"],
            "No webhook delivery with id 12",
        ),
        (
            vec!["webhook", "test", "3"],
            "No webhook endpoint with id 3",
        ),
    ] {
        let err = bad_input(dir, &args);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(ok(dir, &["webhook", "list"]).contains("No webhook endpoints"));
}
