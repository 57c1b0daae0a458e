//! `lifeline link` against the offline WhatsApp peer (in this process), the real client in the
//! `lifeline` binary: while `serve` runs, the running supervisor links and the CLI shows its
//! code; with none running, one runs for the link alone and a later `serve` connects without a
//! new scan. The test plays the phone: it reads the code the CLI shows from the store, where the
//! supervisor keeps it while linking, and scans it on the peer.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{health, ok, until};
use lifeline_wa_peer::{Config, Peer};

fn with_peer(cmd: &mut Command, dir: &Path, peer: &Peer) {
    cmd.env("LIFELINE_DATA_DIR", dir)
        .env("LIFELINE_WHATSAPP_URL", peer.url())
        .env("LIFELINE_LOG", "warn")
        .stdin(Stdio::null());
}

fn spawn(dir: &Path, peer: &Peer, args: &[&str]) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeline"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    with_peer(&mut cmd, dir, peer);
    cmd.spawn().expect("spawn lifeline")
}

/// `lifeline serve` pointed at the peer.
fn serve(dir: &Path, peer: &Peer) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lifeline"));
    cmd.arg("serve").stdout(Stdio::null()).stderr(Stdio::null());
    with_peer(&mut cmd, dir, peer);
    cmd.spawn().expect("serve")
}

/// Kills and reaps the child when dropped, also when an assertion fails first.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The code the supervisor keeps for a CLI that asked for a link, once there is one.
fn shown_code(rt: &tokio::runtime::Runtime, db: &Path, account: i64) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let code: Option<String> = rt.block_on(async {
            use sqlx::Connection;
            let url = format!("sqlite://{}?mode=ro", db.display());
            let mut c = sqlx::SqliteConnection::connect(&url).await.ok()?;
            let code = sqlx::query_scalar("SELECT code FROM link_codes WHERE account_id = ?")
                .bind(account)
                .fetch_optional(&mut c)
                .await
                .ok()
                .flatten();
            let _ = c.close().await;
            code
        });
        if let Some(code) = code {
            return code;
        }
        assert!(Instant::now() < deadline, "no link code was shown");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn finish(mut child: Child) -> (bool, String, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "link did not finish");
        std::thread::sleep(Duration::from_millis(50));
    };
    let (mut out, mut err) = (String::new(), String::new());
    let _ = child.stdout.take().map(|mut s| s.read_to_string(&mut out));
    let _ = child.stderr.take().map(|mut s| s.read_to_string(&mut err));
    (status.success(), out, err)
}

/// A runtime for the test's own async work and the offline peer running on it.
fn peer() -> (tokio::runtime::Runtime, Peer) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let peer = rt
        .block_on(Peer::start("127.0.0.1:0", Config::default()))
        .expect("peer");
    (rt, peer)
}

/// Runs `lifeline link ID`, scans the code it shows as the phone would, and returns what the
/// command printed once it succeeded.
fn link(rt: &tokio::runtime::Runtime, peer: &Peer, dir: &Path, id: &str) -> String {
    let child = spawn(dir, peer, &["link", id]);
    let code = shown_code(rt, &dir.join("lifeline.db"), id.parse().expect("id"));
    peer.scan(&code).expect("the phone scans the code");
    let (linked, out, err) = finish(child);
    assert!(linked, "link failed: {err}");
    out
}

fn add_whatsapp(dir: &Path, name: &str) -> String {
    ok(
        dir,
        &["account", "add", "--kind", "whatsapp", "--name", name],
    )
    .trim()
    .to_owned()
}

#[test]
fn a_running_supervisor_links_for_the_cli_and_keeps_the_number_connected() {
    let (rt, peer) = peer();
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let id = add_whatsapp(d, "Toko Mawar");
    let serve = Served(serve(d, &peer));
    until(d, Duration::from_secs(20), "serve to run", |h| {
        h["supervisor_running"] == true
    });
    // Not linked: the supervisor does not dial it.
    let h = health(d);
    assert_eq!(h["accounts"][0]["state"]["reason"]["kind"], "not-linked");
    let out = link(&rt, &peer, d, &id);
    assert!(
        out.contains("the running supervisor keeps it connected"),
        "{out}"
    );
    until(d, Duration::from_secs(30), "the number to connect", |h| {
        h["desired_connected"] == 1
    });
    assert_eq!(peer.numbers().len(), 1, "one registration");
    // The list says which phone it is: the number WhatsApp paired.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list = ok(d, &["account", "list"]);
        let row = list
            .lines()
            .find(|l| l.contains("Toko Mawar"))
            .unwrap_or_default();
        let number = row.split_once("WhatsApp +").map(|(_, rest)| rest);
        if number.is_some_and(|n| n.starts_with(|c: char| c.is_ascii_digit())) {
            break;
        }
        assert!(Instant::now() < deadline, "no number listed:\n{list}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(serve);
}

#[test]
fn with_no_supervisor_running_link_runs_one_and_serve_then_connects_without_a_new_scan() {
    let (rt, peer) = peer();
    let tmp = tempfile::tempdir().expect("tempdir");
    let d = tmp.path();
    let id = add_whatsapp(d, "Toko Melati");
    let out = link(&rt, &peer, d, &id);
    assert!(out.contains("Start `lifeline serve`"), "{out}");
    // The supervisor that ran for the link stopped cleanly; the code is gone from the store.
    let status: serde_json::Value =
        serde_json::from_str(&ok(d, &["status", "--json"])).expect("json");
    assert_eq!(status["supervisor"]["running"], false);
    assert_eq!(status["last_run"]["clean"], true);
    let h = health(d);
    assert_eq!(
        h["accounts"][0]["desired_running"], true,
        "linking starts it"
    );
    let serve = Served(serve(d, &peer));
    until(
        d,
        Duration::from_secs(30),
        "the restored number to connect",
        |h| h["desired_connected"] == 1,
    );
    assert_eq!(peer.numbers().len(), 1, "no new registration");
    drop(serve);
}
