#!/usr/bin/env bash
# Desktop app checks: UI unit tests (vitest), the shell's Rust tests, then end-to-end under Xvfb
# with tauri-driver and WebKitWebDriver against lifeline-sim, inside a private D-Bus session with
# a throwaway gnome-keyring and a notification daemon. Installs what it needs (only what is
# missing, so a rerun is quick). Screenshots land in docs/screenshots/ when SCREENSHOTS=1;
# PERF=1 also measures cold start and frame times with 1000 accounts.
#   --install-only   install the system packages and tauri-driver, then stop (used by demo.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeline/target}"

# Beyond what scripts/deps.sh installs (the build's Tauri libraries among them):
desktop_packages=(
  xvfb xauth dbus-x11 at-spi2-core webkit2gtk-driver   # e2e: a display and the WebDriver
  dunst imagemagick curl                                # e2e: notifications, screenshots, HTTP
  xdotool desktop-file-utils python3                    # package test: window, desktop entry, JSON
  nodejs npm
)
install_missing "${desktop_packages[@]}"
if [ "${1:-}" = --install-only ]; then exit 0; fi
command -v tauri-driver >/dev/null || cargo install --locked tauri-driver --version '^2'

# e2e helpers in Python: a stand-in for a panel's tray host (dbus-next) and a window manager's
# close button (python-xlib).
e2e_venv="$HOME/.cache/lifeline/e2e-venv"
e2e_tools=('dbus-next==0.2.3' 'python-xlib==0.33')
if [ "$("$e2e_venv/bin/pip" freeze 2>/dev/null | grep -cxF "${e2e_tools[@]/#/-e}" || true)" != "${#e2e_tools[@]}" ]; then
  python3 -m venv "$e2e_venv"
  "$e2e_venv/bin/pip" install -q --disable-pip-version-check "${e2e_tools[@]}"
fi
export LIFELINE_E2E_PYTHON="$e2e_venv/bin/python"

echo "== UI: npm ci, typecheck, vitest, build"
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npx tsc --noEmit && npx vitest run && npx vite build --logLevel warn)

if [ "${LIFELINE_WORKSPACE_TESTED:-0}" != 1 ]; then
  echo "== shell and runtime: cargo test"
  cargo test --locked -p lifeline-desktop -p lifeline-runtime 2>&1 | grep -E "^test result|FAILED|panicked" || true
  cargo test --locked -q -p lifeline-desktop -p lifeline-runtime >/dev/null
fi

echo "== build: desktop (UI embedded; test-peer build, accepts the offline WhatsApp peer), CLI, simulators"
cargo build --locked -p lifeline-desktop --features lifeline-desktop/custom-protocol,lifeline-desktop/test-peer \
  -p lifeline -p lifeline-sim -p lifeline-wa-peer
settle_build_outputs
export LIFELINE_DESKTOP_BIN="$CARGO_TARGET_DIR/debug/lifeline-desktop"
export LIFELINE_WA_PEER_BIN="$CARGO_TARGET_DIR/debug/lifeline-wa-peer"
export LIFELINE_BIN="$CARGO_TARGET_DIR/debug/lifeline"
export LIFELINE_SIM_BIN="$CARGO_TARGET_DIR/debug/lifeline-sim"

echo "== end to end (Xvfb, tauri-driver, WebKitWebDriver)"
# A UTF-8 locale, as every desktop has: in the C locale GTK cannot put a title such as
# "Lifeline — 2 need you" into the window's X11 name, and the title checks read that name.
if [ "$(locale charmap 2>/dev/null)" != UTF-8 ]; then export LC_ALL=C.UTF-8; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export NOTIFY_LOG="$work/notify.log" KEYRING_HOME="$work/keyring"
if [ "${SCREENSHOTS:-0}" = 1 ]; then
  mkdir -p docs/screenshots
  export SCREENSHOT_DIR="$PWD/docs/screenshots"
fi
mkdir -p "$KEYRING_HOME"
xvfb-run -a -s "-screen 0 1400x900x24" dbus-run-session -- bash -c '
  set -euo pipefail
  export XDG_DATA_HOME="$KEYRING_HOME" XDG_CONFIG_HOME="$KEYRING_HOME/config" HOME_KEEP="$HOME"
  printf lifeline-test | gnome-keyring-daemon --unlock --components=secrets --daemonize >/dev/null
  dunst >/dev/null 2>&1 &
  dbus-monitor --session "interface=org.freedesktop.Notifications" >"$NOTIFY_LOG" 2>&1 &
  cd ui && node --test --test-concurrency=1 e2e/
'
