#!/usr/bin/env bash
# Installs everything needed, builds Lifeline and runs it. Without arguments it opens the desktop
# app (release build, UI embedded) on the default data dir; with arguments they go to the
# `lifeline` CLI instead, e.g. `./scripts/run.sh status`. Both come from the one release build
# (scripts/release-build.sh) that the tests and the package use too.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeline/target}"
bash scripts/desktop-test.sh --install-only
bash scripts/release-build.sh >&2
if [ $# -gt 0 ]; then
  exec "$CARGO_TARGET_DIR/release/lifeline" "$@"
fi
exec "$CARGO_TARGET_DIR/release/lifeline-desktop"
