#!/usr/bin/env bash
# How fast the web UI's pages render on a big ledger: ROWS recorded requests (10 million) over
# the last 7 days across 20 channels, written straight into the SQLite ledger with sqlite3 as
# its writer stores them (the proxy cannot backdate), then each page fetched REPS times with
# curl as a signed-in superuser: the median and the 95th percentile of the whole answer time,
# first on a quiet server, then while `sluice bench load` drives the standard 20-connection
# happy_path load through sluice (through a channel of another project, so the pages measured
# are the same ones).
#
# The seeding is bench/seed.sh's (its header describes the requests), shared with
# bench/ledger_reads.sh: one `requests` row per request with its event (headers, 1 KiB request
# and 263-byte response previews, digests, timings) in the same row, 90% success, 6% failed
# (404, 500, 503), 2% timeout, 2% error, latencies 1-50 ms; and the per-minute roll-ups that the
# writer keeps and that the dashboard, the channels index and the charts read instead of the
# rows: `request_minutes` (requests per channel, minute and state) and `latency_minutes` (their
# latency histogram, bucket floor(8 * log2(latency_us))), each one INSERT … SELECT … GROUP BY
# over the same definitions. Before measuring, the script checks that the dashboard and the
# channels index count the seeded last day (about ROWS / 7 requests in 24 h).
#
#   bench/ui_speed.sh                       # the release build, 10 million rows
#   ROWS=100000 REPS=5 bench/ui_speed.sh    # a quick check that the script works
#
# Settings: ROWS (10000000), REPS (11), CHUNK (1000000 rows per seeding
# statement), SQLITE_ANALYZE (0: no statistics, as sluice leaves its SQLite ledger; 1: ANALYZE
# after seeding), BIN or SLUICE_BIN (the sluice binary).
#
# Needs: curl, python3, sqlite3 (apt-get install curl sqlite3). For 10 million rows: about
# 32 GB of disk (some 3.2 KB per request), and seeding takes about 1 min per million rows on
# this 2-core machine (the script prints its rate).
set -euo pipefail

ROWS=${ROWS:-10000000}
REPS=${REPS:-11}
CHUNK=${CHUNK:-1000000}
SQLITE_ANALYZE=${SQLITE_ANALYZE:-0}
SINK_PORT=${SINK_PORT:-4541}
SLUICE_PORT=${SLUICE_PORT:-4543}
PASSWORD=bench-password-for-ui-speed
BACKEND=sqlite
CHANNELS=20

# BIN=… picks the binary as SLUICE_BIN=… does for the other scripts.
if [ -n "${BIN:-}" ] && [ -z "${SLUICE_BIN:-}" ]; then SLUICE_BIN=$(realpath "$BIN"); fi
source "$(dirname "$0")/lib.sh" curl python3 sqlite3
# The seeding (`seed_ledger`), shared with ledger_reads.sh.
source "$(dirname "$0")/seed.sh"
DB_FILE=$work/data/sluice.db

start_sink
start_sluice ui-speed
chans=()
for i in $(seq 0 $((CHANNELS - 1))); do chans+=("$(new_channel "ch-$i")"); done
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

node=$(cat "$work/data/node.id")
seed_ledger
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
# The dashboard's and the channels index's "requests, last 24 h" cards count the seeded last day
# (ROWS / 7 requests; the warm-ups alone would be 20).
for page in "/ui/?project=$project" "/ui/channels?project=$project"; do
  html=$(curl -sf -b "$work/cookies" "http://127.0.0.1:$SLUICE_PORT$page") ||
    { echo "$page answered an error" >&2; exit 1; }
  counted=$(printf '%s' "$html" | python3 -c '
import re, sys
m = re.search(r"<span class=\"n\">([^<]*)</span><span class=\"label\">requests, last 24 h<", sys.stdin.read())
print(re.sub(r"\D", "", m.group(1)) if m else 0)')
  [ "$counted" -ge $((ROWS / 8)) ] ||
    { echo "$page shows $counted requests in the last 24 h, not about $((ROWS / 7))" >&2; exit 1; }
done
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
