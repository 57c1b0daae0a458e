//! Running the `lifeline` binary from tests: one process per call, its own data dir; `serve` as
//! a child, its HTTP API, and the database as an outside reader sees it.
// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn lifeline(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(args)
        .env("LIFELINE_DATA_DIR", dir)
        .env_remove("LIFELINE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run lifeline")
}

/// Runs a command that must succeed; returns its stdout.
pub fn ok(dir: &Path, args: &[&str]) -> String {
    let out = lifeline(dir, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Runs a command that must fail with `code` and one `lifeline: …` line on stderr; returns it.
pub fn fails(dir: &Path, code: i32, args: &[&str]) -> String {
    let out = lifeline(dir, args);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {out:?}");
    let err = String::from_utf8(out.stderr).expect("utf-8 stderr");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err:?}");
    assert!(err.starts_with("lifeline: "), "{err:?}");
    err
}

/// Bad input: exit code 2 and a single-line message; returns the message.
pub fn bad_input(dir: &Path, args: &[&str]) -> String {
    fails(dir, 2, args)
}

pub fn health(dir: &Path) -> serde_json::Value {
    let out = lifeline(dir, &["health", "--json"]);
    serde_json::from_slice(&out.stdout).expect("health json")
}

/// Polls until `cond` holds on the health report; returns how long it took.
pub fn until(
    dir: &Path,
    limit: Duration,
    what: &str,
    cond: impl Fn(&serde_json::Value) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let h = health(dir);
        if cond(&h) {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}: {h}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `lifeline serve` as a child process, killed and reaped when dropped.
pub struct Serve {
    pub child: Child,
    /// The loopback address of its HTTP API.
    pub http: String,
    /// What serve printed up to its HTTP address (startup notes).
    pub early: Vec<String>,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `lifeline serve --http 127.0.0.1:0 EXTRA…` and waits (20 s at most) for its address.
pub fn serve(dir: &Path, extra: &[&str]) -> Serve {
    serve_with_env(dir, extra, &[])
}

/// [`serve`] with these environment variables set.
pub fn serve_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(["serve", "--http", "127.0.0.1:0"])
        .args(extra)
        .envs(env.iter().copied())
        .env("LIFELINE_DATA_DIR", dir)
        .env("LIFELINE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().expect("stderr");
    // Owned by the guard from here on, so a failed start still kills and reaps the child.
    let mut s = Serve {
        child,
        http: String::new(),
        early: Vec::new(),
    };
    let (tx, lines) = mpsc::channel();
    // Reads stderr to the end, also after nobody listens: a closed pipe would make serve's own
    // later messages (its shutdown lines) fail.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.http.is_empty() {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("serve printed no HTTP address: {:?}", s.early));
        if let Some(http) = line
            .strip_prefix("lifeline: HTTP on http://")
            .and_then(|rest| rest.split_whitespace().next())
        {
            s.http = http.to_owned();
        }
        s.early.push(line);
    }
    s
}

/// One HTTP/1.1 request with these extra header lines and body; returns status and body.
pub fn http(addr: &str, method: &str, path: &str, headers: &[&str], body: &[u8]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(head.as_bytes()).expect("write");
    // The server may answer (and close) before reading a body it refuses.
    let _ = stream.write_all(body);
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    split_response(&raw)
}

pub fn split_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// What a database file holds, read by a separate read-only connection the way an operator's
/// own tool would: integrity check, event count and highest event id, account count.
pub struct DbFacts {
    pub integrity: String,
    pub events: i64,
    pub max_event_id: i64,
    pub accounts: i64,
}

pub fn db_facts(rt: &tokio::runtime::Runtime, db: &Path) -> DbFacts {
    rt.block_on(async {
        use sqlx::Connection;
        let url = format!("sqlite://{}?mode=ro", db.display());
        let mut c = sqlx::SqliteConnection::connect(&url)
            .await
            .expect("open db");
        let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut c)
            .await
            .expect("integrity");
        let (events, max_event_id): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COALESCE(MAX(id), 0) FROM events")
                .fetch_one(&mut c)
                .await
                .expect("events");
        let accounts: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(&mut c)
            .await
            .expect("accounts");
        c.close().await.expect("close");
        DbFacts {
            integrity,
            events,
            max_event_id,
            accounts,
        }
    })
}

/// lifeline-sim on 127.0.0.1, with the runtime it runs on.
pub fn sim() -> (tokio::runtime::Runtime, lifeline_sim::Sim) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let sim = rt
        .block_on(lifeline_sim::Sim::start("127.0.0.1:0"))
        .expect("sim");
    (rt, sim)
}

/// Adds `n` WebSocket accounts "shop 0"… on the simulator's paths /s/0….
pub fn add(dir: &Path, sim: &lifeline_sim::Sim, n: usize) {
    for i in 0..n {
        add_ws(dir, &format!("shop {i}"), &sim.url(&i.to_string()), &[]);
    }
}

/// The arguments that add one WebSocket account.
pub fn ws_add_args<'a>(name: &'a str, url: &'a str) -> Vec<&'a str> {
    vec![
        "account",
        "add",
        "--kind",
        "websocket",
        "--name",
        name,
        "--url",
        url,
    ]
}

/// Adds one WebSocket account (with `extra` arguments); returns the id it printed.
pub fn add_ws(dir: &Path, name: &str, url: &str, extra: &[&str]) -> String {
    let mut args = ws_add_args(name, url);
    args.extend_from_slice(extra);
    ok(dir, &args).trim().to_owned()
}

/// True where the tests may use a real Secret Service (scripts/test.sh starts a throwaway one).
pub fn keyring_available() -> bool {
    std::env::var_os("LIFELINE_TEST_KEYRING").is_some()
}

/// Runs `lifeline ARGS` with `input` on its standard input.
pub fn with_stdin(dir: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(args)
        .env("LIFELINE_DATA_DIR", dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write the input");
    child.wait_with_output().expect("wait")
}

/// `lifeline secret set NAME` with `value` on standard input.
pub fn set_secret(dir: &Path, name: &str, value: &str) {
    let out = with_stdin(dir, &["secret", "set", name], value);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Validates exposition text with Prometheus's own parser (`promtool check metrics`, Debian's
/// prometheus package). scripts/deps.sh installs it; without it (a bare dev box) the check is
/// skipped unless LIFELINE_REQUIRE_PROMTOOL=1 (set by scripts/test.sh).
pub fn promtool_accepts(metrics: &str) {
    use std::io::Write;
    let spawned = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("LIFELINE_REQUIRE_PROMTOOL").is_err(),
                "promtool is required here: {e}"
            );
            eprintln!("promtool not found; skipping the Prometheus parser check");
            return;
        }
    };
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("write metrics");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool rejected /metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
