#!/usr/bin/env bash
# Installs everything needed, builds Lifeline and runs it. Without arguments it opens the desktop
# app (release build, UI embedded) on the default data dir; with arguments they go to the
# `lifeline` CLI instead, e.g. `./scripts/run.sh status`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
if [ $# -gt 0 ]; then
  exec cargo run --quiet --release --locked -p lifeline -- "$@"
fi
bash scripts/desktop-test.sh --install-only
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npx vite build --logLevel warn)
exec cargo run --quiet --release --locked -p lifeline-desktop --features lifeline-desktop/custom-protocol
