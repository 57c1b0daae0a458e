//! Running the `lifeline` binary from tests: one process per call, its own data dir.

use std::path::Path;
use std::process::{Command, Output, Stdio};

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
