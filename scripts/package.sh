#!/usr/bin/env bash
# Builds the Debian package: the desktop app (release, UI embedded), the `lifeline` CLI on PATH,
# the desktop entry and icons, runtime dependencies declared. Nothing is downloaded at build
# time beyond the package registries (npm ci, crates.io). Prints the path of the .deb.
# The version is the workspace's (Cargo.toml), the one place it is set.
set -euo pipefail
# Everything but the final path goes to stderr, so callers can take the path from stdout.
exec 3>&1 1>&2
cd "$(dirname "$0")/.."
source scripts/deps.sh
bash scripts/desktop-test.sh --install-only
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeline/target}"
# The binaries come from the one release build the benchmarks use too (built once, shared
# dependencies); the bundler then only packs them. Its before-bundle command (stage-cli.sh,
# run in the frontend dir, ui/) stages the CLI.
bash scripts/release-build.sh
TAURI_APP_PATH=src-tauri TAURI_FRONTEND_PATH=ui npx --yes @tauri-apps/cli@2 bundle --bundles deb --ci
version=$(cargo metadata --format-version 1 --no-deps --locked |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "lifeline"))')
deb="$CARGO_TARGET_DIR/release/bundle/deb/Lifeline_${version}_$(dpkg --print-architecture).deb"
test -f "$deb" || { echo "no package at $deb" >&2; exit 1; }
echo "$deb" >&3
