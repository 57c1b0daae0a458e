#!/usr/bin/env bash
# One release build of everything that ships or is measured: the desktop app (UI embedded), the
# `lifeline` CLI, the benchmark harness and the simulator, in a single cargo invocation. Cargo
# resolves features per invocation, so building them one by one compiled the shared
# dependencies several times with slightly different feature sets; together they build once.
# scripts/test.sh (benchmarks) and scripts/package.sh (the .deb) both call it; a second call
# with nothing changed only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
install_missing nodejs npm
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeline/target}"
# The desktop app embeds the built UI (ui/dist).
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build -- --logLevel warn)
cargo build --release --locked -p lifeline -p lifeline-desktop -p lifeline-bench -p lifeline-sim \
  --features lifeline-desktop/custom-protocol
