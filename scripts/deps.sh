#!/usr/bin/env bash
# Installs what building and testing Lifeline needs on Debian/Ubuntu: system packages (only the
# missing ones, so a rerun is quick) and a Rust toolchain if there is none.
set -euo pipefail

packages=(
  build-essential pkg-config libssl-dev libdbus-1-dev   # build: keyring talks D-Bus
  sqlite3                                               # export benchmark baseline
  dbus-daemon gnome-keyring libsecret-tools             # tests: a real Secret Service keyring
  prometheus                                            # tests: promtool validates /metrics
  python3 python3-venv                                  # tests: webhook verifier, OpenAPI checks
  postgresql                                            # tests: fleets on a throwaway cluster
  zbar-tools                                            # tests: read QR codes the API and app draw
  libwebkit2gtk-4.1-dev libgtk-3-dev libsoup-3.0-dev    # build: the Tauri desktop app
  librsvg2-dev libayatana-appindicator3-dev libxdo-dev
)

sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi

# Installs the given Debian packages that are not installed yet (scripts that source this file
# call it for their own lists). nodejs/npm are skipped when node and npm are already on PATH:
# they may come from elsewhere (nodesource, nvm).
install_missing() {
  local missing=() p
  for p in "$@"; do
    if [[ "$p" == nodejs || "$p" == npm ]] && command -v node >/dev/null && command -v npm >/dev/null; then
      continue
    fi
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing system packages: ${missing[*]}"
    $sudo apt-get update -q
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
  fi
}
install_missing "${packages[@]}"

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "Installing the Rust toolchain (rustup)"
    command -v curl >/dev/null 2>&1 || { $sudo apt-get update -q; $sudo apt-get install -y -q curl ca-certificates; }
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt
  rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy
fi

# whatsapp-rust's proto crate (waproto 0.7.0) marks a file that its own build script writes into
# its OUT_DIR as rerun-if-changed. The file is newer than the run that wrote it, so cargo's next
# invocation reruns the script and rebuilds the WhatsApp stack and everything above it (about
# six minutes in release on two cores). Scripts call this after each cargo build: dated back, the
# file reads as unchanged; when the script does write it anew, it reruns as it should.
settle_build_outputs() {
  local target="${CARGO_TARGET_DIR:-target}" f
  for f in "$target"/*/build/waproto-*/out/whatsapp.local.desc; do
    if [ -e "$f" ]; then touch -d @0 "$f"; fi
  done
}
