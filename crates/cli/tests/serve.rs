//! `lifeline serve` as an operator runs it: a real process against lifeline-sim on 127.0.0.1,
//! driven by other `lifeline` invocations, killed with SIGKILL, stopped with SIGTERM.

mod common;

use common::{
    add, add_ws, db_facts, health, http, lifeline, ok, promtool_accepts, serve, sim, until,
};
use std::process::Command;
use std::time::{Duration, Instant};

fn state_of(h: &serde_json::Value, id: i64) -> String {
    h["accounts"]
        .as_array()
        .and_then(|a| a.iter().find(|a| a["id"] == id))
        .map(|a| a["state"]["state"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default()
}

#[test]
fn serve_restores_the_fleet_and_applies_cli_commands_within_a_second() {
    let (_rt, sim) = sim();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add(dir, &sim, 3);
    let s = serve(dir, &[]);
    until(dir, Duration::from_secs(20), "all connected", |h| {
        h["healthy"] == true && h["desired_connected"] == 3
    });
    assert!(lifeline(dir, &["health"]).status.success());

    let stop_took = {
        ok(dir, &["stop", "2"]);
        until(dir, Duration::from_secs(10), "account 2 stopped", |h| {
            state_of(h, 2) == "stopped"
        })
    };
    assert!(
        stop_took < Duration::from_secs(3),
        "stop took {stop_took:?}"
    );
    assert_eq!(sim.stats("/s/1").live, 0);
    ok(dir, &["start", "2"]);
    until(dir, Duration::from_secs(10), "account 2 back", |h| {
        state_of(h, 2) == "connected"
    });

    // An account added while serving is picked up.
    add_ws(dir, "late", &sim.url("late"), &[]);
    until(dir, Duration::from_secs(10), "new account connected", |h| {
        h["desired_connected"] == 4
    });

    // Removing an account while serving closes its connection.
    ok(dir, &["account", "remove", "3"]);
    let start = Instant::now();
    while sim.stats("/s/2").live != 0 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "removed account still connected"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    add_ws(dir, "shop 2", &sim.url("2b"), &[]);
    until(dir, Duration::from_secs(10), "replacement connected", |h| {
        h["desired_connected"] == 4
    });

    // HTTP: health JSON, Prometheus metrics, control needs a token.
    let addr = s.http.clone();
    let (status, body) = http(&addr, "GET", "/health", &[], b"");
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["by_state"]["connected"], 4);
    let (status, metrics) = http(&addr, "GET", "/metrics", &[], b"");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("lifeline_accounts{state=\"connected\"} 4"),
        "{metrics}"
    );
    assert!(metrics.contains("lifeline_connect_attempts_total"));
    promtool_accepts(&metrics);
    let (status, _) = http(
        &addr,
        "POST",
        "/accounts/1/stop",
        &["Authorization: Bearer wrong"],
        b"",
    );
    assert!(
        status == 401 || status == 503,
        "mutations need the keyring token, got {status}"
    );
    assert_eq!(state_of(&health(dir), 1), "connected");

    // A second supervisor on the same data dir is refused.
    let second = lifeline(dir, &["serve"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&second.stderr).contains("already supervising"));
    drop(s);
}

#[test]
fn kill_9_then_restart_records_the_crash_and_restores() {
    let (_rt, sim) = sim();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add(dir, &sim, 2);
    let mut s = serve(dir, &[]);
    until(dir, Duration::from_secs(20), "connected", |h| {
        h["desired_connected"] == 2
    });
    s.child.kill().expect("SIGKILL");
    s.child.wait().expect("reaped");
    let status: serde_json::Value =
        serde_json::from_str(&ok(dir, &["status", "--json"])).expect("json");
    assert_eq!(status["supervisor"]["running"], false);
    assert_eq!(status["last_run"]["clean"], false);

    let _s2 = serve(dir, &[]);
    // The restart closes the crashed run's sessions through its recorder, just after startup:
    // until then the stored states still say connected, so wait for the closes themselves.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let crashed = |csv: &str| ended_by(csv, "crashed");
    let csv = loop {
        let csv = ok(dir, &["export", "--what", "sessions", "--out", "-"]);
        if crashed(&csv) >= 2 || std::time::Instant::now() > deadline {
            break csv;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(crashed(&csv), 2, "both sessions closed as crashed:\n{csv}");
    until(dir, Duration::from_secs(20), "restored", |h| {
        h["desired_connected"] == 2 && h["by_state"]["connected"] == 2
    });
    for path in ["/s/0", "/s/1"] {
        assert_eq!(sim.stats(path).max_live, 1, "{path}");
    }
}

#[test]
fn sigterm_stops_cleanly_and_the_next_start_knows() {
    let (_rt, sim) = sim();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add(dir, &sim, 2);
    let mut s = serve(dir, &[]);
    until(dir, Duration::from_secs(20), "connected", |h| {
        h["desired_connected"] == 2
    });
    let pid = s.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let code = s.child.wait().expect("exit");
    assert!(code.success(), "{code:?}");
    let status: serde_json::Value =
        serde_json::from_str(&ok(dir, &["status", "--json"])).expect("json");
    assert_eq!(status["last_run"]["clean"], true);
    assert_eq!(status["by_state"]["stopped"], 2);
    assert_eq!(sim.total_live(), 0, "connections closed");
    let csv = ok(dir, &["export", "--what", "sessions", "--out", "-"]);
    assert_eq!(ended_by(&csv, "shutdown"), 2, "{csv}");
    // Not healthy without a supervisor, and says why.
    let out = lifeline(dir, &["health"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no supervisor"));
}

/// How many rows of a sessions export ended for `reason` (the column found by its header; these
/// tests' account names hold no commas or quotes).
fn ended_by(csv: &str, reason: &str) -> usize {
    let mut lines = csv.lines();
    let header = lines.next().unwrap_or_default();
    let Some(column) = header.split(',').position(|h| h == "end_reason") else {
        panic!("no end_reason column in:\n{csv}");
    };
    lines
        .filter(|l| l.split(',').nth(column) == Some(reason))
        .count()
}

#[test]
fn a_policy_change_reaches_the_running_serve_without_a_restart() {
    let (_rt, sim) = sim();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add(dir, &sim, 1);
    // Nothing listens on port 9: this one fails fast, again and again.
    add_ws(dir, "gone", "ws://127.0.0.1:9/", &[]);
    for setting in [
        "autorecover.start_delay_ms=0",
        "backoff.base_ms=20",
        "backoff.cap_ms=100",
        "backoff.floor_network_ms=20",
        "backoff.floor_refused_ms=20",
        "backoff.floor_timeout_ms=20",
        "breaker.threshold=1000",
    ] {
        ok(dir, &["policy", "set", setting]);
    }
    let _s = serve(dir, &[]);
    until(dir, Duration::from_secs(20), "a drop or two", |h| {
        state_of(h, 1) == "connected"
            && h["accounts"][1]["breaker"] == "closed"
            && h["accounts"][1]["state"]["state"] == "backoff"
    });
    // The command returns once the running supervisor has the new values.
    let out = ok(dir, &["policy", "set", "breaker.threshold=2"]);
    assert!(out.contains("breaker.threshold: 1000 → 2"), "{out}");
    assert!(out.contains("in force in the running supervisor"), "{out}");
    until(dir, Duration::from_secs(10), "the breaker open", |h| {
        state_of(h, 2) == "paused" && h["accounts"][1]["breaker"] == "open"
    });
    // The live connection was not touched.
    assert_eq!(state_of(&health(dir), 1), "connected");
    assert_eq!(sim.stats("/s/0").accepted, 1);
    assert!(ok(dir, &["policy", "set", "breaker.threshold=2"]).contains("Nothing changed"));
    let log = ok(dir, &["policy", "changes", "--last", "1"]);
    assert!(
        log.contains("breaker.threshold: 1000 → 2  by operator") && log.lines().count() == 1,
        "{log}"
    );
}

#[test]
fn kill_9_under_churn_never_loses_a_committed_row_and_the_next_start_recovers() {
    let rounds: usize = std::env::var("LIFELINE_KILL_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (rt, sim) = sim();
    add(dir, &sim, 30);
    for setting in [
        "pacing.rate_per_s=500",
        "pacing.burst=50",
        "backoff.base_ms=20",
        "backoff.floor_closed_ms=20",
        "backoff.floor_network_ms=20",
        "autorecover.start_delay_ms=0",
    ] {
        ok(dir, &["policy", "set", setting]);
    }
    let db = dir.join("lifeline.db");
    // Churn: the sim keeps dropping a third of the sessions while serve records it all.
    let churn = {
        let sim = sim.clone();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let s = stop.clone();
        let t = std::thread::spawn(move || {
            while !s.load(std::sync::atomic::Ordering::Relaxed) {
                sim.inject(lifeline_sim::Fault::DropFraction(0.3));
                std::thread::sleep(Duration::from_millis(40));
            }
        });
        (stop, t)
    };
    // Kill moments from a fixed-seed generator: reproducible, spread over 100–900 ms.
    let mut seed: u64 = 0x5eed_1fe1_17e5;
    let mut last_max = 0;
    for round in 0..rounds {
        let mut s = serve(dir, &[]);
        if round > 0 {
            assert!(
                s.early.iter().any(|l| l.contains("did not stop cleanly")),
                "round {round}: the crash was not reported on start: {:?}",
                s.early
            );
        }
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(100 + (seed >> 33) % 800));
        let before = db_facts(&rt, &db);
        s.child.kill().expect("SIGKILL");
        let _ = s.child.wait();
        let after = db_facts(&rt, &db);
        assert_eq!(after.integrity, "ok", "round {round}");
        assert!(
            after.events >= before.events && after.max_event_id >= before.max_event_id,
            "round {round}: rows lost ({} → {})",
            before.events,
            after.events
        );
        assert!(
            after.max_event_id >= last_max,
            "round {round}: rows from earlier runs lost"
        );
        last_max = after.max_event_id;
    }
    churn.0.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = churn.1.join();
    // A last start: the crash is closed out and autorecover brings the fleet back; breakers the
    // churn opened stay open across the crash (they persist), until the operator resets them.
    let _s = serve(dir, &[]);
    until(
        dir,
        Duration::from_secs(30),
        "fleet restored after the last kill",
        |h| {
            h["accounts"].as_array().is_some_and(|a| {
                a.iter().all(|a| {
                    a["state"]["state"] == "connected"
                        || (a["state"]["state"] == "paused" && a["breaker"] == "open")
                })
            })
        },
    );
    ok(dir, &["reset", "--all"]);
    until(
        dir,
        Duration::from_secs(30),
        "every account after reset",
        |h| h["desired_connected"] == 30,
    );
    let h = health(dir);
    assert_eq!(h["desired_connected"], 30, "{h}");
    assert!(last_max > 0, "churn was recorded");
}

/// An operator's `lifeline serve 2>&1 | head -1`: the reader is gone long before the stop. The
/// stop messages must not kill serve before it has closed everything and marked the run clean.
#[test]
fn serve_stops_cleanly_after_its_stderr_reader_went_away() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let (_rt, sim) = sim();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    add(dir, &sim, 1);
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(["serve", "--http", "127.0.0.1:0"])
        .env("LIFELINE_DATA_DIR", dir)
        .env("LIFELINE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("HTTP on") {
        line.clear();
        let n = stderr.read_line(&mut line).expect("read stderr");
        assert!(n > 0, "serve ended before printing its HTTP address");
    }
    until(dir, Duration::from_secs(20), "connected", |h| {
        h["desired_connected"] == 1
    });
    drop(stderr);
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let code = child.wait().expect("exit");
    assert!(code.success(), "{code:?}");
    let status: serde_json::Value =
        serde_json::from_str(&ok(dir, &["status", "--json"])).expect("json");
    assert_eq!(status["last_run"]["clean"], true);
    assert_eq!(sim.total_live(), 0, "connections closed");
}
