#!/usr/bin/env bash
# The package as an operator meets it: build the .deb (scripts/package.sh), check what it holds,
# install it over an older Lifeline whose data dir was written by the previous schema, and prove
# the upgrade kept everything (migrations ran, every row still there, accounts reconnect on their
# own), the installed app opens a window (single instance), `lifeline --version` answers, and
# removing — even purging — the package leaves the operator's data dir alone.
# Needs root or sudo (apt). Prints package size, installed size and install-to-window time.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/lifeline/target}"
# Tools (cargo, tauri-driver) stay found after HOME moves to the operator's home below.
export PATH="$HOME/.cargo/bin:$PATH"
sudo=""
if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
# package.sh installs what building and this test need (scripts/desktop-test.sh --install-only).
deb=$(bash scripts/package.sh)
version=$(dpkg-deb -f "$deb" Version)
name=$(dpkg-deb -f "$deb" Package)
work=$(mktemp -d)
sim_pid=""
serve_pid=""
xvfb_pid=""
cleanup() {
  for pid in $serve_pid $sim_pid $xvfb_pid; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "package test: $*" >&2; exit 1; }
step() { echo "== package: $*"; }

step "contents of $(basename "$deb")"
contents=$(dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./||')
for f in usr/bin/lifeline usr/bin/lifeline-desktop usr/share/applications/Lifeline.desktop; do
  grep -qx "$f" <<<"$contents" || fail "$f is not in the package"
done
for size in 16x16 24x24 32x32 48x48 64x64 128x128 256x256 512x512; do
  grep -qx "usr/share/icons/hicolor/$size/apps/lifeline-desktop.png" <<<"$contents" ||
    fail "no $size icon in the package"
done
depends=$(dpkg-deb -f "$deb" Depends)
for d in libwebkit2gtk-4.1-0 libgtk-3-0 libayatana-appindicator3-1 libdbus-1-3 libssl3; do
  grep -q "$d" <<<"$depends" || fail "the package does not declare $d (Depends: $depends)"
done
dpkg-deb -x "$deb" "$work/unpacked"
desktop-file-validate "$work/unpacked/usr/share/applications/Lifeline.desktop" ||
  fail "the desktop entry does not validate"
# Every shared library the two binaries need must come from a declared dependency (or libc).
missing_libs=$(for b in lifeline lifeline-desktop; do ldd "$work/unpacked/usr/bin/$b"; done |
  awk '/=> not found/ {print $1}' | sort -u)
[ -z "$missing_libs" ] || fail "libraries not found on this machine: $missing_libs"

step "an older Lifeline, and a data dir written by the previous schema"
# The older package: this payload repacked at a lower version, so apt performs a real upgrade.
dpkg-deb -R "$deb" "$work/old"
sed -i 's/^Version: .*/Version: 0.0.1/' "$work/old/DEBIAN/control"
dpkg-deb -b "$work/old" "$work/${name}_0.0.1.deb" >/dev/null
$sudo apt-get purge -y -q "$name" >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$work/${name}_0.0.1.deb" >/dev/null
[ "$(dpkg-query -W -f='${Version}' "$name")" = 0.0.1 ] || fail "the older package did not install"

# lifeline-sim comes from the same release build as the package (scripts/release-build.sh).
"$CARGO_TARGET_DIR/release/lifeline-sim" --listen 127.0.0.1:0 --control 127.0.0.1:0 >"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!
for _ in $(seq 100); do grep -q "control at" "$work/sim.out" && break; sleep 0.1; done
sim_addr=$(grep -o "ws://127.0.0.1:[0-9]*" "$work/sim.out" | head -1 | sed 's|ws://||')
sim_control=$(grep -o "http://127.0.0.1:[0-9]*" "$work/sim.out" | head -1)
[ -n "$sim_addr" ] && [ -n "$sim_control" ] || fail "lifeline-sim did not start: $(cat "$work/sim.err")"

# The operator's home: the installed app and CLI find the data dir there, as on a laptop.
export HOME="$work/home"
unset XDG_DATA_HOME XDG_CONFIG_HOME LIFELINE_DATA_DIR
data="$HOME/.local/share/lifeline"
mkdir -p "$data"
chmod 700 "$data"
db="$data/lifeline.db"
migration=crates/engine/migrations/0001_initial.sql
sqlite3 "$db" <"$migration"
now_ms=$(($(date +%s) * 1000))
day_ms=86400000
{
  echo "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP, success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL, execution_time BIGINT NOT NULL);"
  echo "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
    VALUES (1, 'initial', 1, X'$(sha384sum "$migration" | cut -d' ' -f1)', 1);"
  echo "BEGIN;"
  for i in 1 2 3; do
    echo "INSERT INTO accounts (id, kind, name, url, desired_running, state, state_json, state_since, created_at)
      VALUES ($i, 'websocket', 'Toko $i', 'ws://$sim_addr/s/upgrade$i', 1, 'stopped', '{\"state\":\"stopped\"}',
              $((now_ms - day_ms)), $((now_ms - 7 * day_ms)));"
  done
  # A week of history per account: a session a day and the events that opened and closed it.
  for i in 1 2 3; do
    for d in 7 6 5 4 3 2; do
      start=$((now_ms - d * day_ms)); end=$((start + day_ms / 2))
      echo "INSERT INTO sessions (account_id, started_at, ended_at, end_reason) VALUES ($i, $start, $end, 'stalled');"
      echo "INSERT INTO events (account_id, at, from_state, to_state, reason, state_json, detail, triggered_by)
        VALUES ($i, $start, 'connecting', 'connected', NULL, '{\"state\":\"connected\"}', NULL, 'engine');"
      echo "INSERT INTO events (account_id, at, from_state, to_state, reason, state_json, detail, triggered_by)
        VALUES ($i, $end, 'connected', 'backoff', 'stalled',
        '{\"state\":\"backoff\",\"attempt\":1,\"retry_at\":\"2026-01-01T00:00:00Z\",\"reason\":{\"kind\":\"stalled\"}}',
        'no answer to a ping', 'engine');"
    done
  done
  echo "INSERT INTO runs (started_at, ended_at, clean, pid, version) VALUES ($((now_ms - day_ms)), $((now_ms - 60000)), 1, 1, '0.0.1');"
  echo "COMMIT;"
} | sqlite3 "$db"
chmod 600 "$db"
rows_before=$(sqlite3 "$db" "SELECT (SELECT COUNT(*) FROM events) || ' ' || (SELECT COUNT(*) FROM sessions) || ' ' || (SELECT COUNT(*) FROM accounts)")
sum_before=$(sqlite3 "$db" "SELECT group_concat(id || at || to_state, ',') FROM (SELECT * FROM events ORDER BY id)" | sha256sum)

step "upgrade: apt install ./$(basename "$deb") over 0.0.1"
t0=$(date +%s%N)
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$deb" >"$work/apt.log" 2>&1 ||
  fail "apt install failed: $(tail -20 "$work/apt.log")"
t_installed=$(date +%s%N)
[ "$(dpkg-query -W -f='${Version}' "$name")" = "$version" ] || fail "the upgrade did not land"
command -v lifeline >/dev/null || fail "lifeline is not on PATH after install"
[ "$(lifeline --version)" = "lifeline $version" ] || fail "lifeline --version says '$(lifeline --version)', not $version"

step "the upgraded Lifeline keeps every row and reconnects every account on its own"
lifeline serve >"$work/serve.log" 2>&1 &
serve_pid=$!
ok=""
for _ in $(seq 150); do
  # Connected as the store says, and as the server sees it: one live socket per account.
  if lifeline health --json 2>/dev/null | python3 -c '
import json, sys
sys.exit(0 if json.load(sys.stdin)["desired_connected"] == 3 else 1)' &&
    curl -sf "$sim_control/stats" | python3 -c '
import json, sys
s = json.load(sys.stdin)
sys.exit(0 if all(s["paths"].get(f"/s/upgrade{i}", {}).get("live") == 1 for i in (1, 2, 3)) else 1)'; then
    ok=1
    break
  fi
  sleep 0.2
done
[ -n "$ok" ] || fail "accounts did not reconnect after the upgrade: $(lifeline health 2>&1 | tail -5; tail -5 "$work/serve.log")"
kill -TERM "$serve_pid"
wait "$serve_pid" || fail "serve did not stop cleanly: $(tail -5 "$work/serve.log")"
serve_pid=""
[ "$(sqlite3 "$db" "SELECT MAX(version) FROM _sqlx_migrations")" = "$(ls crates/engine/migrations | wc -l)" ] ||
  fail "migrations did not run"
sqlite3 "$db" "SELECT last_seen FROM runs LIMIT 1" >/dev/null || fail "the new schema's columns are missing"
read -r events_after sessions_after accounts_after <<<"$(sqlite3 "$db" "SELECT (SELECT COUNT(*) FROM events) || ' ' || (SELECT COUNT(*) FROM sessions) || ' ' || (SELECT COUNT(*) FROM accounts)")"
read -r events_before sessions_before accounts_before <<<"$rows_before"
[ "$accounts_after" = "$accounts_before" ] || fail "accounts: $accounts_before before, $accounts_after after"
[ "$events_after" -gt "$events_before" ] && [ "$sessions_after" -gt "$sessions_before" ] ||
  fail "history lost or not extended: events $events_before → $events_after, sessions $sessions_before → $sessions_after"
sum_kept=$(sqlite3 "$db" "SELECT group_concat(id || at || to_state, ',') FROM (SELECT * FROM events WHERE id <= $events_before ORDER BY id)" | sha256sum)
[ "$sum_kept" = "$sum_before" ] || fail "rows written before the upgrade changed"
[ "$(sqlite3 "$db" "PRAGMA integrity_check")" = ok ] || fail "integrity check failed"

step "the installed app opens its window, once"
n=97
while [ -e "/tmp/.X$n-lock" ]; do n=$((n + 1)); done
export DISPLAY=":$n"
Xvfb "$DISPLAY" -screen 0 1280x800x24 >/dev/null 2>&1 &
xvfb_pid=$!
for _ in $(seq 50); do xdotool getdisplaygeometry >/dev/null 2>&1 && break; sleep 0.1; done
dbus-run-session -- bash -c '
  set -euo pipefail
  t_launch=$(date +%s%N)
  /usr/bin/lifeline-desktop >"$0/app.log" 2>&1 &
  app=$!
  xdotool search --sync --onlyvisible --name "^Lifeline$" >/dev/null &
  finder=$!
  for _ in $(seq 300); do kill -0 $finder 2>/dev/null || break; sleep 0.1; done
  kill -0 $finder 2>/dev/null && { echo "no Lifeline window within 30 s: $(tail -5 "$0/app.log")" >&2; exit 1; }
  # Painted: the screen is no longer one flat colour (the cards and header are drawn).
  painted=""
  for _ in $(seq 300); do
    if import -window root "$0/shot.png" 2>/dev/null &&
      [ "$(convert "$0/shot.png" -format "%[fx:standard_deviation>0.02]" info:)" = 1 ]; then
      painted=1
      break
    fi
    sleep 0.1
  done
  [ -n "$painted" ] || { echo "the window stayed blank for 30 s" >&2; exit 1; }
  t_painted=$(date +%s%N)
  echo $(( (t_painted - t_launch) / 1000000 )) >"$0/painted_ms"
  # A second launch only brings the first forward and exits.
  timeout 15 /usr/bin/lifeline-desktop >/dev/null 2>&1 || { echo "the second instance did not exit" >&2; exit 1; }
  kill -0 $app || { echo "the first instance died" >&2; exit 1; }
  kill -TERM $app
  wait $app || true
' "$work" || fail "the installed app did not open its window"
painted_ms=$(cat "$work/painted_ms")
# About and start at login, through the installed app's own window (WebDriver).
LIFELINE_INSTALLED_APP=/usr/bin/lifeline-desktop dbus-run-session -- \
  bash -c 'cd ui && node --test --test-concurrency=1 e2e/installed.test.mjs' >"$work/installed.log" 2>&1 ||
  fail "the installed app's About or start at login: $(grep -E "not ok|Error|error" "$work/installed.log" | head -10)"
grep -q "^# pass 1" "$work/installed.log" || fail "the installed-app test did not run: $(tail -5 "$work/installed.log")"
lifeline status --json | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["last_run"]["clean"] else 1)' ||
  fail "quitting the installed app did not mark the run clean"

step "remove and purge leave the data dir"
DEBIAN_FRONTEND=noninteractive $sudo apt-get remove -y -q "$name" >/dev/null
[ ! -e /usr/bin/lifeline ] || fail "/usr/bin/lifeline is still there after remove"
[ -f "$db" ] || fail "remove deleted the data dir"
# The package has no conffiles, so remove already leaves nothing to purge: install it again and
# purge that, as an operator who purges straight away would.
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "$deb" >/dev/null
DEBIAN_FRONTEND=noninteractive $sudo apt-get purge -y -q "$name" >/dev/null
! dpkg-query -W "$name" >/dev/null 2>&1 || fail "purge left the package registered"
[ -f "$db" ] && [ "$(sqlite3 "$db" "SELECT COUNT(*) FROM events")" -ge "$events_after" ] &&
  [ "$(sqlite3 "$db" "PRAGMA integrity_check")" = ok ] || fail "purge touched the data dir"

install_ms=$(( (t_installed - t0) / 1000000 ))
echo "package: $(basename "$deb"), $(( $(stat -c %s "$deb") / 1024 )) KiB; installed size $(dpkg-deb -f "$deb" Installed-Size) KiB"
echo "package: apt install (upgrade) ${install_ms} ms; launch → painted window ${painted_ms} ms; install → window $((install_ms + painted_ms)) ms"
echo "package: passed"
