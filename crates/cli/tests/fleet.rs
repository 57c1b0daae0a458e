//! `lifeline fleet`: the fleet key in the keyring and a fleet store's status, against a real
//! PostgreSQL (a throwaway cluster) and the test session's Secret Service.

mod common;

use common::{bad_input, fails, keyring_available, ok, set_secret, with_stdin};
use lifeline_fleet::FleetStore;
use lifeline_fleet::cluster::{self, PASSWORD};

#[test]
fn bad_store_urls_are_refused_before_anything_is_asked() {
    let dir = tempfile::tempdir().expect("dir");
    let e = bad_input(
        dir.path(),
        &[
            "fleet",
            "status",
            "--store",
            "postgres://ops:hunter2@db.example/fleet",
        ],
    );
    assert!(e.contains("keyring"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
    let e = bad_input(dir.path(), &["fleet", "status", "--store", "mysql://db/x"]);
    assert!(e.contains("postgres://"), "{e}");
}

/// `lifeline fleet key import` with `text` on standard input.
fn import(dir: &std::path::Path, text: &str) -> std::process::Output {
    with_stdin(dir, &["fleet", "key", "import"], text)
}

#[test]
fn fleet_status_and_the_fleet_key() {
    if !keyring_available() {
        eprintln!("skipped: set LIFELINE_TEST_KEYRING=1 (an unlocked Secret Service)");
        return;
    }
    let Some(cluster) = cluster::for_test() else {
        return;
    };
    let url = cluster.database("fleet").expect("database").to_string();
    let dir = tempfile::tempdir().expect("dir");
    let dir = dir.path();

    // No password in the keyring yet: the server's refusal, in one line.
    let e = fails(
        dir,
        1,
        &[
            "fleet",
            "status",
            "--store",
            &url,
            "--password-secret",
            "fleet-cli-pw",
        ],
    );
    assert!(e.contains("wrong or missing password"), "{e}");
    set_secret(dir, "fleet-cli-pw", PASSWORD);
    let status = |dir| {
        let out = ok(
            dir,
            &[
                "fleet",
                "status",
                "--store",
                &url,
                "--password-secret",
                "fleet-cli-pw",
                "--json",
            ],
        );
        serde_json::from_str::<serde_json::Value>(&out).expect("json")
    };
    let empty = status(dir);
    assert_eq!(empty["live_instances"], 0);
    assert_eq!(empty["accounts"], 0);

    // An instance that joined and holds a lease shows up.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let instance = rt.block_on(async {
        let store = FleetStore::connect(&cluster.url("fleet"), Some(PASSWORD))
            .await
            .expect("connect");
        store.add_accounts(&[1, 2]).await.expect("accounts");
        let i = store.register(Some(50)).await.expect("register");
        i.acquire(1, lifeline_fleet::DEFAULT_TTL)
            .await
            .expect("acquire");
        i
    });
    let seen = status(dir);
    assert_eq!(seen["accounts"], 2);
    assert_eq!(seen["leases_held"], 1);
    assert_eq!(seen["live_instances"], 1);
    assert_eq!(seen["instances"][0]["id"], instance.id().as_str());
    assert_eq!(seen["instances"][0]["max_accounts"], 50);
    let text = ok(
        dir,
        &[
            "fleet",
            "status",
            "--store",
            &url,
            "--password-secret",
            "fleet-cli-pw",
        ],
    );
    assert!(text.contains("1 live of 1"), "{text}");
    assert!(text.contains(&instance.id().as_str()[..8]), "{text}");

    // The fleet key: made once, exported through a pipe, imported elsewhere; never a second one.
    // (One keyring serves every data dir of the test session, as on one host.)
    let _ = common::lifeline(dir, &["secret", "delete", "fleet-key"]);
    assert_eq!(ok(dir, &["fleet", "key", "show"]).trim(), "none");
    let made = ok(dir, &["fleet", "key", "new"]);
    let fingerprint = ok(dir, &["fleet", "key", "show"]).trim().to_owned();
    assert_eq!(fingerprint.len(), 16);
    assert!(made.contains(&fingerprint), "{made}");
    let e = bad_input(dir, &["fleet", "key", "new"]);
    assert!(e.contains(&fingerprint), "{e}");
    let exported = ok(dir, &["fleet", "key", "export"]);
    assert!(!exported.contains(&fingerprint));
    let again = import(dir, &exported);
    assert!(again.status.success(), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stdout).contains("already has"));
    let garbage = import(dir, "not a key\n");
    assert_eq!(garbage.status.code(), Some(2), "{garbage:?}");
    let other = import(
        dir,
        "lifeline-fleet-key-v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    );
    assert_eq!(other.status.code(), Some(2), "{other:?}");
    assert_eq!(ok(dir, &["fleet", "key", "show"]).trim(), fingerprint);
    let text = ok(
        dir,
        &[
            "fleet",
            "status",
            "--store",
            &url,
            "--password-secret",
            "fleet-cli-pw",
        ],
    );
    assert!(text.contains("none set yet"), "{text}");
    ok(dir, &["secret", "delete", "fleet-key"]);
}
