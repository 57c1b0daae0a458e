#!/usr/bin/env bash
# Installs everything needed, builds Lifeline and runs it. Extra arguments go to `lifeline`
# (default: `status`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
if [ $# -eq 0 ]; then set -- status; fi
exec cargo run --quiet --release --locked -p lifeline -- "$@"
