#!/usr/bin/env bash
# Installs everything needed, then runs every check: formatting, clippy (warnings are errors),
# all tests (the WhatsApp chaos soak among them: it needs the test build's peer-accepting
# client), the one release build (scripts/release-build.sh, run beside the tests at the lowest
# CPU priority) and the quick benchmark harness with the WebSocket chaos soak (SKIP_BENCH=1 skips
# these two), the desktop suite (SKIP_DESKTOP=1 skips it), then the Debian package's build,
# install and upgrade test (SKIP_PACKAGE=1 skips it). The tests run inside a private D-Bus
# session with an unlocked gnome-keyring, so they use a real Secret Service and never the
# operator's keyring.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeline/target}"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
# With the benchmark harness's WhatsApp soak, so its code is linted too (a check, not a build
# that ships).
cargo clippy --workspace --all-targets --locked --features lifeline-bench/test-peer -- -D warnings
settle_build_outputs
echo "== shipped builds carry no test-only certificate bypass"
# lifeline-wa-peer's tests enable whatsapp-rust's danger-skip-cert-chain-verify (dev-dependency);
# the packages we ship must resolve without it.
for pkg in lifeline lifeline-desktop; do
  cargo metadata --format-version 1 --no-deps --locked | grep -q "\"name\":\"$pkg\"" || continue
  # Inverted on the crate that owns the switch: lists every feature of it the package enables.
  if cargo tree -p "$pkg" -e features,no-dev -i wacore-noise --locked | grep -q danger-skip; then
    echo "$pkg would ship with a certificate-verification bypass" >&2
    exit 1
  fi
  echo "$pkg: ok"
done
echo "== independent checkers in a venv: Standard Webhooks' own library, openapi-spec-validator, schemathesis"
venv="$HOME/.cache/lifeline/venv"
python_tools=('standardwebhooks==1.1.0' 'openapi-spec-validator==0.9.0' 'schemathesis==4.32.5')
installed=$("$venv/bin/pip" freeze 2>/dev/null | grep -cxF "${python_tools[@]/#/-e}" || true)
if [ "$installed" != "${#python_tools[@]}" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "${python_tools[@]}"
fi
export LIFELINE_TEST_PYTHON="$venv/bin/python"
echo "== cargo test: build"
test_args=(--workspace --locked --no-fail-fast --features lifeline-bench/wa-soak)
cargo test "${test_args[@]}" --no-run 2>&1 | grep -v "^  Executable" || exit 1
settle_build_outputs
keyring_home=$(mktemp -d)
log=$(mktemp)
release_log=$(mktemp)
release_rc=$(mktemp)
trap 'rm -rf "$keyring_home" "$log" "$release_log" "$release_rc"' EXIT
release_pid=
if [ "${SKIP_BENCH:-0}" != 1 ]; then
  # The tests mostly wait (on sockets, timers, child processes, PostgreSQL), so the one release
  # build (scripts/release-build.sh: app, CLI, benchmarks, simulator) runs beside them at the
  # lowest CPU priority and takes only the time they leave idle. It starts once the test
  # binaries are built: it rebuilds the UI, which the desktop crate's build reads.
  echo "== release build started beside the tests (nice 19; its output follows the tests)"
  (nice -n 19 bash scripts/release-build.sh >"$release_log" 2>&1; echo $? >"$release_rc") &
  release_pid=$!
fi
echo "== cargo test"
status=0
KEYRING_HOME="$keyring_home" LOG="$log" TEST_ARGS="${test_args[*]}" dbus-run-session -- bash -c '
  set -o pipefail
  export XDG_DATA_HOME="$KEYRING_HOME"
  printf lifeline-test | gnome-keyring-daemon --unlock --components=secrets --daemonize >/dev/null
  LIFELINE_TEST_KEYRING=1 LIFELINE_REQUIRE_PROMTOOL=1 LIFELINE_REQUIRE_POSTGRES=1 cargo test $TEST_ARGS 2>&1 | tee "$LOG"
' 2> >(grep -v "Failed to set fd limit" >&2) || status=$?
settle_build_outputs
# One closing line for the whole workspace (cargo prints one per test binary).
summary=$(awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i == "passed;") p += $(i-1); if ($i == "failed;") f += $(i-1) } }
  END { printf "%d passed, %d failed", p, f }' "$log")
echo
echo "tests: $summary"
if [ -n "$release_pid" ]; then
  echo "== release build (scripts/release-build.sh: app, CLI, benchmarks, simulator, built once)"
  waited=$(date +%s)
  wait "$release_pid" || true
  cat "$release_log"
  echo "release build: finished $(( $(date +%s) - waited )) s after the tests"
  release_status=$(cat "$release_rc")
  release_status=${release_status:-1}
  if [ "$release_status" != 0 ] && [ "$status" = 0 ]; then status=$release_status; fi
  # The package stage packs these binaries instead of building them again (see release-build.sh).
  export LIFELINE_RELEASE_BUILT=1
fi
if [ "$status" = 0 ] && [ "${SKIP_BENCH:-0}" != 1 ]; then
  # The WhatsApp soak ran with the tests (crates/bench/tests/soak_whatsapp.rs): its client
  # accepts the offline peer's certificates, which the shipped binaries built here must not.
  # A release harness of its own would rebuild nearly every dependency with other features.
  echo "== benchmarks and the WebSocket chaos soak, quick sizes (fails on any soak invariant violation)"
  "$CARGO_TARGET_DIR/release/lifeline-bench" --quick || status=$?
fi
if [ "$status" = 0 ] && [ "${SKIP_DESKTOP:-0}" != 1 ]; then
  echo "== desktop app: vitest, shell tests, end to end under Xvfb (scripts/desktop-test.sh)"
  # The shell's and runtime's Rust tests already ran with the workspace's.
  LIFELINE_WORKSPACE_TESTED=1 bash scripts/desktop-test.sh || status=$?
  echo "desktop: $([ "$status" = 0 ] && echo passed || echo FAILED)"
fi
if [ "$status" = 0 ] && [ "${SKIP_PACKAGE:-0}" != 1 ]; then
  echo "== Debian package: build, contents, upgrade, installed app, remove (scripts/package-test.sh)"
  bash scripts/package-test.sh || status=$?
fi
exit "$status"
