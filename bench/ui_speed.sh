#!/usr/bin/env bash
# How fast the web UI's pages render on a big ledger: ROWS recorded requests (10 million) over
# the last 7 days across 20 channels, written straight into the SQLite ledger with sqlite3 (the
# proxy cannot backdate), then each page fetched REPS times with curl as a signed-in superuser:
# the median and the 95th percentile of the whole answer time, first on a quiet server, then
# while `sluice bench load` drives the standard 20-connection happy_path load through sluice
# (through a channel of another project, so the pages measured are the same ones).
#
#   bench/ui_speed.sh                       # the release build, 10 million rows
#   ROWS=100000 REPS=5 bench/ui_speed.sh    # a quick check that the script works
#
# Needs: curl, python3, sqlite3 (apt-get install curl sqlite3). About 4 GB of disk for 10M rows.
set -euo pipefail

ROWS=${ROWS:-10000000}
REPS=${REPS:-11}
SINK_PORT=${SINK_PORT:-4541}
SLUICE_PORT=${SLUICE_PORT:-4543}
PASSWORD=bench-password-for-ui-speed

source "$(dirname "$0")/lib.sh" curl python3 sqlite3

start_sink
start_sluice ui-speed
chans=()
for i in $(seq 0 19); do chans+=("$(new_channel "ch-$i")"); done
printf '%s\n' "$PASSWORD" | "$BIN" user create --username bench --superuser --password-stdin \
  --data-dir "$work/data" >/dev/null
snapshots=()
for c in "${chans[@]}"; do
  # The first request through a channel records its configuration's snapshot.
  curl -s -o /dev/null "http://127.0.0.1:$SLUICE_PORT/channels/$c/warm-up"
  snapshots+=("$(api_get "/channels/$c/snapshots" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')")
done
project=$(api_get /projects | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
load_project=$(curl -sf -X POST "http://127.0.0.1:$SLUICE_PORT/api/v1/projects" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' -d '{"name":"load"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
load_channel=$(curl -sf -X POST "http://127.0.0.1:$SLUICE_PORT/api/v1/channels" -H "authorization: Bearer $TOKEN" \
  -H 'content-type: application/json' \
  -d "{\"name\":\"load\",\"project_id\":\"$load_project\",\"sink_url\":\"http://127.0.0.1:$SINK_PORT/\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
kill "$SLUICE_PID"; wait "$SLUICE_PID" 2>/dev/null || true

echo "writing $ROWS requests over 7 days into the ledger…"
now_us=$(python3 -c 'import time; print(int(time.time() * 1e6))')
start_us=$((now_us - 7 * 86400 * 1000000))
step=$((7 * 86400 * 1000000 / ROWS))
{
  echo "PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;"
  echo "CREATE TEMP TABLE chans (k INTEGER PRIMARY KEY, id TEXT, snap TEXT);"
  for i in $(seq 0 19); do echo "INSERT INTO chans VALUES ($i, '${chans[$i]}', '${snapshots[$i]}');"; done
  cat <<SQL
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < $ROWS - 1)
INSERT INTO requests (id, request_id, channel_id, snapshot_id, node_id, state, started_at,
  completed_at, client_identity, method, path, response_status, error, latency_us, ttfb_us,
  request_body_size, response_body_size)
SELECT printf('00000000-0000-7000-8000-%012x', i), printf('seed-request-%012d', i), c.id, c.snap,
  'seed',
  CASE WHEN i % 50 = 7 THEN 'failed' WHEN i % 200 = 3 THEN 'error' ELSE 'success' END,
  $start_us + i * $step, $start_us + i * $step + 2000, '10.0.0.1', 'POST',
  printf('/api/events/%d', i % 1000),
  CASE WHEN i % 50 = 7 THEN 502 WHEN i % 200 = 3 THEN NULL ELSE 200 END,
  CASE WHEN i % 200 = 3 THEN 'econnrefused' END,
  1000 + i % 5000, 800 + i % 4000, 1024, 256
FROM n JOIN chans c ON c.k = i % 20;
SQL
} | sqlite3 "$work/data/sluice.db"
ls -l "$work/data/sluice.db" | awk '{ printf "ledger file: %.1f GB\n", $5 / 1e9 }'

"$BIN" serve --data-dir "$work/data" --listen "127.0.0.1:$SLUICE_PORT" --health-interval 0 \
  >>"$work/sluice.log" 2>&1 &
SLUICE_PID=$!
pids+=($SLUICE_PID)
wait_port "$SLUICE_PORT"
curl -sf -o /dev/null -c "$work/cookies" --data-urlencode username=bench \
  --data-urlencode "password=$PASSWORD" "http://127.0.0.1:$SLUICE_PORT/ui/sign-in"
# One real exchange, so the detail page has headers, previews and timings to draw.
curl -sf -o /dev/null -H 'x-request-id: ui-speed-detail-000001' -d '{"a":1}' \
  "http://127.0.0.1:$SLUICE_PORT/channels/${chans[0]}/detail"
sleep 1
detail=$(api_get "/channels/${chans[0]}/requests?request_id=ui-speed-detail-000001" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
day_ago=$(python3 -c 'import datetime; print((datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"))')

pages=(
  "dashboard|/ui/?project=$project"
  "channels index|/ui/channels?project=$project"
  "history, first page|/ui/channels/${chans[0]}"
  "history, failed in the last day|/ui/channels/${chans[0]}?state=failed&since=$day_ago"
  "request detail|/ui/requests/$detail"
)

# measure LABEL: REPS fetches of every page; prints median and p95 in ms.
measure() {
  echo "--- $1"
  for entry in "${pages[@]}"; do
    label=${entry%%|*}; path=${entry#*|}
    for _ in $(seq 1 "$REPS"); do
      curl -s -o /dev/null -b "$work/cookies" -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$SLUICE_PORT$path"
    done | python3 -c '
import sys
label = sys.argv[1]
rows = [l.split() for l in sys.stdin]
bad = [r[0] for r in rows if r[0] != "200"]
if bad: sys.exit(f"{label}: status {bad[0]}")
t = sorted(float(r[1]) * 1000 for r in rows)
p95 = t[min(len(t) - 1, int(round(0.95 * (len(t) - 1))))]
print(f"{label:<34} median {t[len(t) // 2]:8.1f} ms   p95 {p95:8.1f} ms")
' "$label"
  done
}

measure "quiet"
"$BIN" bench load --scenario happy_path --target "http://127.0.0.1:$SLUICE_PORT" \
  --sink "http://127.0.0.1:$SINK_PORT" --token "$TOKEN" --channel "$load_channel" \
  --concurrency 20 --duration 900s \
  >"$work/load.log" 2>&1 &
load_pid=$!
pids+=($load_pid)
sleep 5
measure "under the 20-connection happy_path load"
kill "$load_pid" 2>/dev/null || true
