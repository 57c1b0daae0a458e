#!/usr/bin/env bash
# Run by the Tauri bundler before it packs the .deb (tauri.conf.json, build.beforeBundleCommand;
# the working directory is ui/): stages the `lifeline` CLI, built in release with the app by
# scripts/release-build.sh, where bundle.linux.deb.files expects it, so the package puts it on
# PATH as /usr/bin/lifeline; strips both binaries (the release profile keeps line tables for
# benchmark backtraces, which would make the package ten times larger).
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-$PWD/target}"
for b in lifeline lifeline-desktop; do
  test -x "$target/release/$b" || { echo "no $target/release/$b: run scripts/release-build.sh first" >&2; exit 1; }
done
mkdir -p src-tauri/staged
install -m 0755 "$target/release/lifeline" src-tauri/staged/lifeline
strip --strip-all src-tauri/staged/lifeline
strip --strip-all "$target/release/lifeline-desktop"
