#!/usr/bin/env bash
# Whether exporting a long history holds sluice's memory flat: ROWS recorded requests (one
# million) of one channel, written into the SQLite ledger as bench/seed.sh does, then the
# channel's whole history fetched as NDJSON (`/channels/{id}/requests/export?format=ndjson`)
# while sluice's resident memory (VmRSS) is sampled every 0.2 s. Prints the rows received, the
# time taken, and the RSS before, at its highest during, and after the export.
#
#   bench/export_memory.sh                 # the release build, 1 million rows
#   ROWS=100000 bench/export_memory.sh     # a quick check that the script works
#
# Needs: curl, python3, sqlite3.
set -euo pipefail

ROWS=${ROWS:-1000000}
CHUNK=${CHUNK:-1000000}
SQLITE_ANALYZE=0
SINK_PORT=${SINK_PORT:-4551}
SLUICE_PORT=${SLUICE_PORT:-4553}
BACKEND=sqlite
CHANNELS=1

if [ -n "${BIN:-}" ] && [ -z "${SLUICE_BIN:-}" ]; then SLUICE_BIN=$(realpath "$BIN"); fi
source "$(dirname "$0")/lib.sh" curl python3 sqlite3
source "$(dirname "$0")/seed.sh"
DB_FILE=$work/data/sluice.db

start_sink
start_sluice export-memory
chans=("$(new_channel exported)")
curl -s -o /dev/null "http://127.0.0.1:$SLUICE_PORT/channels/${chans[0]}/warm-up"
snapshots=("$(api_get "/channels/${chans[0]}/snapshots" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')")
kill "$SLUICE_PID"; wait "$SLUICE_PID" 2>/dev/null || true
node=$(cat "$work/data/node.id")
seed_ledger

"$BIN" serve --data-dir "$work/data" --listen "127.0.0.1:$SLUICE_PORT" --health-interval 0 \
  >>"$work/sluice.log" 2>&1 &
SLUICE_PID=$!
pids+=($SLUICE_PID)
wait_port "$SLUICE_PORT"
rss() { awk '/^VmRSS/ { print $2 }' "/proc/$SLUICE_PID/status"; }
# A first small export, so what every request allocates once is there before measuring.
api_get "/channels/${chans[0]}/requests/export?format=ndjson&request_id=none" >/dev/null
before=$(rss)
started=$(date +%s.%N)
api_get "/channels/${chans[0]}/requests/export?format=ndjson" | wc -l >"$work/rows" &
export_pid=$!
peak=$before
samples=()
while kill -0 "$export_pid" 2>/dev/null; do
  now=$(rss); [ "$now" -gt "$peak" ] && peak=$now
  samples+=("$((now / 1024))")
  sleep 0.2
done
wait "$export_pid"
took=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
after=$(rss)
rows=$(cat "$work/rows")
echo "exported $rows rows of $((ROWS + 1)) in $took s"
echo "sluice RSS: before $((before / 1024)) MiB, highest during $((peak / 1024)) MiB, after $((after / 1024)) MiB"
# Every second's sample (MiB), to see whether it grows with the rows sent or levels off.
echo "RSS each second (MiB): $(printf '%s\n' "${samples[@]}" | awk 'NR % 5 == 1' | paste -sd' ')"
[ "$rows" -eq $((ROWS + 1)) ] || { echo "rows missing" >&2; exit 1; }
