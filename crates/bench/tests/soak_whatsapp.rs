//! The WhatsApp chaos soak at CI size, run by the workspace's test build (feature `wa-soak`):
//! that build already accepts the offline peer's certificates (lifeline-wa-peer's tests turn it
//! on), so the soak costs no build of its own.
//! 50 accounts are linked through the peer, then a minute of drops, stalls, 515 restarts, bans,
//! logouts and mass cuts; the harness exits non-zero on any broken invariant.
#![cfg(feature = "wa-soak")]

use std::process::Command;

#[test]
fn fifty_whatsapp_accounts_keep_every_invariant_through_a_minute_of_chaos() {
    let out = Command::new(env!("CARGO_BIN_EXE_lifeline-bench"))
        .args([
            "soak",
            "--accounts",
            "0",
            "--whatsapp",
            "50",
            "--minutes",
            "1",
        ])
        .output()
        .expect("lifeline-bench runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the soak failed:\n{stdout}\n{stderr}");
    // It ran what it says: every account linked, faults injected, and the verdict printed.
    let row = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no row {name:?} in:\n{stdout}"))
            .to_owned()
    };
    assert!(row("soak wa: link 50 WhatsApp accounts by QR").contains(" s "));
    // A row's figure is the first word after its name (names end in ')' or their last word).
    let figure = |name: &str, ends: &str| -> u64 {
        let r = row(name);
        let after = &r[r.rfind(ends).map_or(0, |i| i + ends.len())..];
        after
            .split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no figure in {r:?}"))
    };
    assert!(figure("soak wa: faults", ")") > 0, "no fault injected");
    assert_eq!(figure("soak wa: invariant violations", "violations"), 0);
    assert_eq!(figure("soak wa: cuts with no recorded event", "event"), 0);
    println!("{stdout}");
}
