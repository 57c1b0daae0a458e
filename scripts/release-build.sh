#!/usr/bin/env bash
# One release build of everything that ships or is measured: the desktop app (UI embedded), the
# `lifeline` CLI, the benchmark harness and the simulator, in a single cargo invocation. Cargo
# resolves features per invocation, so building them one by one compiled the shared
# dependencies several times with slightly different feature sets; together they build once.
# scripts/test.sh (benchmarks) and scripts/package.sh (the .deb) both call it; a second call
# with nothing changed only checks, but the UI is built again (and the app relinked), so
# scripts/test.sh exports LIFELINE_RELEASE_BUILT=1 once it has built, and this script then
# leaves the binaries as they are.
set -euo pipefail
if [ "${LIFELINE_RELEASE_BUILT:-0}" = 1 ]; then
  echo "release build: already built by this run (LIFELINE_RELEASE_BUILT=1)"
  exit 0
fi
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_missing nodejs npm
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeline/target}"
# The desktop app embeds the built UI (ui/dist).
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build -- --logLevel warn)
cargo build --release --locked -p lifeline -p lifeline-desktop -p lifeline-bench -p lifeline-sim \
  --features lifeline-desktop/custom-protocol
settle_build_outputs
