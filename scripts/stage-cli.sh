#!/usr/bin/env bash
# Run by the Tauri bundler after it built the desktop app and before it packs the .deb
# (tauri.conf.json, build.beforeBundleCommand; the working directory is ui/): builds the
# `lifeline` CLI in release and stages it where bundle.linux.deb.files expects it, so the package
# puts it on PATH as /usr/bin/lifeline; strips both binaries (the release profile keeps line
# tables for benchmark backtraces, which would make the package ten times larger).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
cargo build --release --locked -q -p lifeline
mkdir -p src-tauri/staged
install -m 0755 "$target/release/lifeline" src-tauri/staged/lifeline
strip --strip-all src-tauri/staged/lifeline
strip --strip-all "$target/release/lifeline-desktop"
