#!/usr/bin/env bash
# Reads on a ledger of ten million recorded requests, on SQLite or PostgreSQL (issue 34's
# acceptance: each history filter's first page, a lookup by request id, /stats over 24 h and the
# channel list answer in under 50 ms at the median). Writes ROWS requests (10 million) over the
# last 7 days across 20 channels straight into the ledger as its writer stores them (one
# `requests` row per request with its event in the same row, plus the per-minute roll-ups
# `request_minutes` and `latency_minutes`; the proxy cannot backdate traffic) and prints the
# disk bytes per request, per table and index. Then fetches each endpoint REPS times with curl
# through the API (bearer token), another channel, window or id each time: median and p95 of
# the whole answer time, on a quiet server and then (LOAD=1) while `sluice bench load` drives
# the standard 20-connection happy_path load through a 21st channel. Every answer is checked
# (status 200, the rows match the filter).
#
#   bench/ledger_reads.sh                          # SQLite, the release build, 10 million rows
#   BACKEND=postgres bench/ledger_reads.sh         # the same on PostgreSQL
#   ROWS=200000 BIN=target/debug/sluice bench/ledger_reads.sh   # a quick check of the script
#
# Settings: BACKEND (sqlite | postgres), ROWS (10000000), REPS (21), LOAD (1; 0: quiet only),
# CHUNK (1000000 rows per seeding statement), SQLITE_ANALYZE (1: ANALYZE after seeding, as
# PostgreSQL's autovacuum would; 0: no statistics, as sluice leaves its SQLite ledger),
# PG_SERVER (postgres://postgres@127.0.0.1:5432: the script creates the database
# sluice_bench_reads there and drops it at the end), BIN or SLUICE_BIN (the sluice binary).
#
# The seeding is bench/seed.sh's (shared with ui_speed.sh; its header describes the requests):
# 90% success, 6% failed, 2% timeout, 2% error, 25% GET, 60% POST, 15% PUT, latencies 1-50 ms,
# 1 KiB request and 263-byte response previews; a tenth of the requests carry unique caller ids
# `order-<10 digits>`, which the lookups use. The roll-ups come from the same definitions, one
# INSERT … SELECT … GROUP BY each, the latency bucket floor(8 * log2(latency_us)) a generated
# CASE ladder.
#
# Needs: curl, python3, and sqlite3 or psql with a PostgreSQL server (trust auth) (apt-get install
# curl sqlite3 postgresql-client). For 10 million rows: about 32 GB of disk; seeding took about
# 1 min per million rows on SQLite and 3-5 min on PostgreSQL on this 2-core machine at 200 000
# rows (the script prints its rate), and reading the sizes (dbstat, VACUUM) a few minutes more.
set -euo pipefail

BACKEND=${BACKEND:-sqlite}
ROWS=${ROWS:-10000000}
REPS=${REPS:-21}
LOAD=${LOAD:-1}
CHUNK=${CHUNK:-1000000}
SQLITE_ANALYZE=${SQLITE_ANALYZE:-1}
PG_SERVER=${PG_SERVER:-postgres://postgres@127.0.0.1:5432}
PG_DB=sluice_bench_reads
SINK_PORT=${SINK_PORT:-4551}
SLUICE_PORT=${SLUICE_PORT:-4553}
CHANNELS=20

case $BACKEND in
  sqlite) tools=(curl python3 sqlite3) ;;
  postgres) tools=(curl python3 psql) ;;
  *) echo "BACKEND is sqlite or postgres" >&2; exit 1 ;;
esac
[ "$ROWS" -ge 20000 ] || { echo "ROWS must be at least 20000" >&2; exit 1; }
# BIN=… picks the binary as SLUICE_BIN=… does for the other scripts.
if [ -n "${BIN:-}" ] && [ -z "${SLUICE_BIN:-}" ]; then SLUICE_BIN=$(realpath "$BIN"); fi
source "$(dirname "$0")/lib.sh" "${tools[@]}"
# The seeding (`seed_ledger`) and `sql`, shared with ui_speed.sh.
source "$(dirname "$0")/seed.sh"

# ---------------------------------------------------------------------------------------------
# The backend: where the ledger is (`sql` in seed.sh runs SQL on it).

DB_FILE=$work/data/sluice.db
PG_URL=$PG_SERVER/$PG_DB

drop_database() {
  [ "$BACKEND" = postgres ] || return 0
  psql -X -q -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" \
    "$PG_SERVER/postgres"
}
trap 'cleanup; drop_database' EXIT
if [ "$BACKEND" = postgres ]; then
  drop_database
  psql -X -q -c "CREATE DATABASE $PG_DB" "$PG_SERVER/postgres"
  export SLUICE_DATABASE_URL=$PG_URL   # read by `migrate`, `token create` and `serve`
fi

# ---------------------------------------------------------------------------------------------
# Disk.

disk_report() {
  echo
  echo "### Disk ($BACKEND, $ROWS requests)"
  echo
  local rows
  if [ "$BACKEND" = sqlite ]; then
    echo "PRAGMA wal_checkpoint(TRUNCATE);" | sql >/dev/null
    local total=0 f
    for f in "$DB_FILE" "$DB_FILE-wal"; do [ -f "$f" ] && total=$((total + $(stat -c %s "$f"))); done
    rows=$(printf 'file sluice.db (+ -wal)|%s\n' "$total"
      echo "SELECT name, SUM(pgsize) FROM dbstat GROUP BY name ORDER BY 2 DESC;" | sql 2>/dev/null || true)
  else
    rows=$(sql <<'SQL'
SELECT 'requests, request_minutes, latency_minutes (total)', pg_total_relation_size('requests')
  + pg_total_relation_size('request_minutes') + pg_total_relation_size('latency_minutes');
SELECT 'requests (heap, free space and visibility maps)',
  pg_table_size('requests') - COALESCE(pg_total_relation_size(NULLIF(reltoastrelid, 0)), 0)
  FROM pg_class WHERE oid = 'requests'::regclass;
SELECT 'requests (TOAST)', COALESCE(pg_total_relation_size(NULLIF(reltoastrelid, 0)), 0)
  FROM pg_class WHERE oid = 'requests'::regclass;
SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index
  WHERE indrelid = 'requests'::regclass ORDER BY 2 DESC;
SELECT 'request_minutes (with its key)', pg_total_relation_size('request_minutes');
SELECT 'latency_minutes (with its key)', pg_total_relation_size('latency_minutes');
SQL
)
  fi
  printf '%s\n' "$rows" | python3 -c '
import sys
rows = int(sys.argv[1])
print("| table or index | MB | bytes per request |\n|---|---:|---:|")
for line in sys.stdin:
    name, _, size = line.strip().rpartition("|")
    if int(size) / rows >= 0.5 or name.startswith(("file", "requests,")):
        print(f"| {name} | {int(size) / 1e6:,.1f} | {int(size) / rows:,.1f} |")
' "$ROWS"
}

# ---------------------------------------------------------------------------------------------
# Measurements.

# samples: REPS lines `channel since until request-channel caller-id record-id`, one per
# repetition: a channel (each in turn), a 1-hour window about 3 days ago (5 minutes later each
# time), and a caller id that exists (spread over the week and the channels) with its request's
# channel and record id, read from the ledger.
samples() {
  local per_channel=$((ROWS / CHANNELS)) now_s r k j rids=() c since until
  now_s=$(date +%s)
  for ((r = 0; r < REPS; r++)); do
    k=$((r % CHANNELS)); j=$(((r * 7919 + 1) % (per_channel / 10) * 10 + 3))
    rids+=("$(printf 'order-%010d' $((j * CHANNELS + k)))")
  done
  local list; list=$(printf "'%s'," "${rids[@]}")
  declare -A found
  while IFS='|' read -r rid id ch; do found[$rid]="$ch $rid $id"; done < <(
    echo "SELECT request_id, id, channel_id FROM requests WHERE request_id IN (${list%,});" | sql)
  for ((r = 0; r < REPS; r++)); do
    c=${chans[$((r % CHANNELS))]}
    since=$(date -u -d "@$((now_s - 3 * 86400 + r * 300))" +%Y-%m-%dT%H:%M:%SZ)
    until=$(date -u -d "@$((now_s - 3 * 86400 + r * 300 + 3600))" +%Y-%m-%dT%H:%M:%SZ)
    [ -n "${found[${rids[$r]}]:-}" ] || { echo "caller id ${rids[$r]} is not in the ledger" >&2; exit 1; }
    echo "$c $since $until ${found[${rids[$r]}]}"
  done >"$work/samples"
}

endpoints=(
  "first page|/channels/{c}/requests?limit=50"
  "state=failed|/channels/{c}/requests?limit=50&state=failed"
  "state=error|/channels/{c}/requests?limit=50&state=error"
  "status=5xx|/channels/{c}/requests?limit=50&status=5xx"
  "status=404|/channels/{c}/requests?limit=50&status=404"
  "method=PUT|/channels/{c}/requests?limit=50&method=PUT"
  "since/until: 1 h, 3 days ago|/channels/{c}/requests?limit=50&since={since}&until={until}"
  "path_prefix=/api/items|/channels/{c}/requests?limit=50&path_prefix=/api/items"
  "request_id=<caller id>|/channels/{rc}/requests?limit=50&request_id={rid}"
  "lookup by id: /requests/{id}|/requests/{id}"
  "stats, last 24 h|/channels/{c}/stats"
  "channel list (24 h counts)|/channels?limit=50"
)

# judge.py LABEL URLS TIMES BODY…: checks every answer (status 200, and what it holds matches
# what was asked) and prints the endpoint's table row: median, p95, budget met, what it answered.
cat >"$work/judge.py" <<'PY'
import json, sys, datetime, urllib.parse
label, urls, times, bodies = sys.argv[1], open(sys.argv[2]).read().split(), open(sys.argv[3]).read().split("\n"), sys.argv[4:]
def ts(s): return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
answers = []
for url, line, body in zip(urls, times, bodies):
    code, secs = line.split()
    if code != "200": sys.exit(f"{label}: {url} answered {code}: {open(body).read()[:300]}")
    b = json.load(open(body))
    path, _, query = url.partition("?")
    q = dict(urllib.parse.parse_qsl(query))
    def bad(why): sys.exit(f"{label}: {url}: {why}")
    if path.endswith("/requests"):
        items = b["items"]
        # 50 on a big ledger; fewer when a small one has fewer matches in the channel.
        if not items or len(items) > 50 or ("request_id" in q and len(items) != 1): bad(f"{len(items)} items")
        channel = path.split("/")[2]
        for it in items:
            ok = (it["channel_id"] == channel
                and it["state"] == q.get("state", it["state"])
                and it["method"] == q.get("method", it["method"])
                and it["request_id"] == q.get("request_id", it["request_id"])
                and it["path"].startswith(q.get("path_prefix", ""))
                and ("status" not in q or str(it["response_status"] or "").startswith(q["status"].rstrip("x")))
                and ("since" not in q or ts(q["since"]) <= ts(it["started_at"]) < ts(q["until"])))
            if not ok: bad(f"item does not match: {it}")
        answers.append(f"{len(items)} row{'' if len(items) == 1 else 's'}")
    elif path.startswith("/requests/"):
        if b["id"] != path.split("/")[2] or not (b.get("event") or {}).get("request_headers"): bad("no such request or no event")
        answers.append(f"1 request with its event, {len(json.dumps(b))} bytes")
    elif path.endswith("/stats"):
        if b["total"] <= 0 or sum(b["by_state"].values()) != b["total"]: bad(f"implausible stats {b['by_state']}")
        answers.append(f"{b['total']} requests, {len(b['requests_per_minute'])} minutes")
    else:
        counted = [sum((it.get("requests_24h") or {}).values()) for it in b["items"]]
        if len(counted) < 20 or sum(counted) <= 0: bad("too few channels or no 24 h counts")
        answers.append(f"{len(counted)} channels, {sum(counted)} requests in 24 h")
t = sorted(float(l.split()[1]) * 1000 for l in times if l)
median, p95 = t[len(t) // 2], t[min(len(t) - 1, int(round(0.95 * (len(t) - 1))))]
print(f"| {label} | {median:.1f} | {p95:.1f} | {'yes' if median < 50 else '**no**'} | {answers[0]} |")
PY

# measure TITLE: every endpoint REPS times (placeholders filled from `samples`), one table row
# each.
measure() {
  echo
  echo "### $BACKEND, $ROWS requests, $REPS repetitions: $1"
  echo
  echo "| endpoint | median ms | p95 ms | median < 50 ms | answer (first repetition) |"
  echo "|---|---:|---:|---|---|"
  local entry label template url n c since until rc rid id
  for entry in "${endpoints[@]}"; do
    label=${entry%%|*}; template=${entry#*|}
    : >"$work/urls"; : >"$work/times"; n=0
    while read -r c since until rc rid id; do
      url=${template//\{c\}/$c}; url=${url//\{since\}/$since}; url=${url//\{until\}/$until}
      url=${url//\{rc\}/$rc}; url=${url//\{rid\}/$rid}; url=${url//\{id\}/$id}
      echo "$url" >>"$work/urls"
      curl -s -H "authorization: Bearer $TOKEN" -o "$work/body.$n" -w '%{http_code} %{time_total}\n' \
        "http://127.0.0.1:$SLUICE_PORT/api/v1$url" >>"$work/times"
      n=$((n + 1))
    done <"$work/samples"
    python3 "$work/judge.py" "$label" "$work/urls" "$work/times" $(for ((i = 0; i < n; i++)); do echo "$work/body.$i"; done)
  done
}

restart_sluice() {
  "$BIN" serve --data-dir "$work/data" --listen "127.0.0.1:$SLUICE_PORT" --health-interval 0 \
    >>"$work/sluice.log" 2>&1 &
  SLUICE_PID=$!
  pids+=($SLUICE_PID)
  wait_port "$SLUICE_PORT"
}

# ---------------------------------------------------------------------------------------------
# The run.

start_sink
start_sluice ledger-reads
chans=() snapshots=()
for i in $(seq 0 $((CHANNELS - 1))); do chans+=("$(new_channel "ch-$i")"); done
load_channel=$(new_channel load)
for c in "${chans[@]}"; do
  # The first request through a channel records its configuration's snapshot.
  curl -s -o /dev/null "http://127.0.0.1:$SLUICE_PORT/channels/$c/warm-up"
  snapshots+=("$(api_get "/channels/$c/snapshots" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')")
done
node=$(cat "$work/data/node.id")
kill "$SLUICE_PID"; wait "$SLUICE_PID" 2>/dev/null || true

seed_ledger
disk_report

restart_sluice
samples
measure quiet
if [ "$LOAD" = 1 ]; then
  "$BIN" bench load --scenario happy_path --target "http://127.0.0.1:$SLUICE_PORT" \
    --sink "http://127.0.0.1:$SINK_PORT" --token "$TOKEN" --channel "$load_channel" \
    --concurrency 20 --duration 900s >"$work/load.log" 2>&1 &
  load_pid=$!
  pids+=($load_pid)
  sleep 5
  measure "under the 20-connection happy_path load"
  kill "$load_pid" 2>/dev/null || true
fi
