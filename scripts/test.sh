#!/usr/bin/env bash
# Installs everything needed, then runs every check: formatting, clippy (warnings are errors)
# and all tests, inside a private D-Bus session with an unlocked gnome-keyring so the keyring
# tests use a real Secret Service and never touch the operator's own keyring.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test"
keyring_home=$(mktemp -d)
trap 'rm -rf "$keyring_home"' EXIT
KEYRING_HOME="$keyring_home" dbus-run-session -- bash -c '
  export XDG_DATA_HOME="$KEYRING_HOME"
  printf lifeline-test | gnome-keyring-daemon --unlock --components=secrets --daemonize >/dev/null
  LIFELINE_TEST_KEYRING=1 cargo test --workspace --locked 2>&1
' 2> >(grep -v "Failed to set fd limit" >&2)
