#!/usr/bin/env bash
# The offline demo in one command: lifeline-sim on 127.0.0.1, a throwaway data dir with a few
# WebSocket accounts, and the desktop app on it. While the app is open, one random account is
# dropped every few seconds (and now and then the server refuses for a while), so cards can be
# watched going Recovering → Connected. Closing the app ends everything and deletes the data dir.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/desktop-test.sh --install-only
source scripts/deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeline/target}"

(cd ui && npm ci --no-audit --no-fund --loglevel=error && npx vite build --logLevel warn)
cargo build --locked -p lifeline-desktop --features lifeline-desktop/custom-protocol -p lifeline -p lifeline-sim
bin="$CARGO_TARGET_DIR/debug"

data=$(mktemp -d)
export LIFELINE_DATA_DIR="$data"
port=${DEMO_PORT:-9300}
control=$((port + 1))
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$data"
}
trap cleanup EXIT

"$bin/lifeline-sim" --listen "127.0.0.1:$port" --control "127.0.0.1:$control" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 50); do curl -fsS "127.0.0.1:$control/stats" >/dev/null 2>&1 && break; sleep 0.1; done

names=("Toko Mawar" "Gudang feed" "Support line" "Broadcast ID" "Toko Melati" "Kasir pusat" "Promo SG" "Order bot")
i=0
for name in "${names[@]}"; do
  i=$((i + 1))
  "$bin/lifeline" account add --kind websocket --name "$name" --url "ws://127.0.0.1:$port/s/demo$i" \
    --priority $((1000 - i * 100)) --country ID >/dev/null
done
# Alerts after 20 s instead of a minute, so a refused stretch shows a notification.
"$bin/lifeline" policy set alerts.grace_s=20 >/dev/null

# Chaos: a drop every 4 s; every 45 s the server refuses for 25 s (recovery waits, then alerts).
(
  n=0
  while sleep 4; do
    n=$((n + 1))
    curl -fsS -XPOST "127.0.0.1:$control/drop?path=/s/demo$((RANDOM % ${#names[@]} + 1))" >/dev/null 2>&1 || true
    if [ $((n % 11)) = 0 ]; then
      curl -fsS -XPOST "127.0.0.1:$control/refuse?secs=25" >/dev/null 2>&1 || true
      curl -fsS -XPOST "127.0.0.1:$control/drop?path=/s/demo1" >/dev/null 2>&1 || true
    fi
  done
) &
pids+=($!)

echo "Demo data dir: $data (deleted on exit). Simulator: ws://127.0.0.1:$port, control http://127.0.0.1:$control"
"$bin/lifeline-desktop"
