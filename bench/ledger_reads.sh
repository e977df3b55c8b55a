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
# The seeded requests, each made from its number i: channel i % 20, started 7 days / ROWS
# apart up to now; 90% success (200), 6% failed (404, 500, 503), 2% timeout (~15 s), 2% error
# (econnrefused, no body sent, no response); 25% GET, 60% POST, 15% PUT; paths /api/orders/<n>,
# and /api/items for a tenth; request ids mostly `<32 hex>-sluice`, a tenth unique caller ids
# `order-<10 digits>` (the lookups use these), one in a thousand a `retry-…` id that three
# requests share; latencies 1-50 ms skewed to the fast end (median 7 ms); a 1 KiB JSON request
# body preview, a 263-byte JSON response preview (both partly hex, so that PostgreSQL does not
# compress them much more than real payloads), request headers ~350 bytes and response headers
# ~130 bytes of JSON, random hex digests. The roll-ups come from the same definitions, one
# INSERT … SELECT … GROUP BY each; the latency bucket floor(8 * log2(latency_us)) is a nested
# CASE over the buckets' integer bounds, computed here with Python's math.log2 (the libm log2
# that the writer's f64::log2 calls): SQLite has log2 only when built with its math functions,
# PostgreSQL none on integers.
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

# ---------------------------------------------------------------------------------------------
# The backend: where the ledger is, how to run SQL on it, the few spellings that differ.

DB_FILE=$work/data/sluice.db
PG_URL=$PG_SERVER/$PG_DB

# sql: runs the SQL on stdin against the ledger, stopping at the first error; prints rows as
# `a|b|c`.
sql() {
  if [ "$BACKEND" = sqlite ]; then sqlite3 -bail "$DB_FILE"
  else psql -X -q -At -v ON_ERROR_STOP=1 "$PG_URL"; fi
}

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

# The SQL spellings that differ between the backends, as snippets for the seeding SQL.
# pad EXPR WIDTH: the integer EXPR in decimal, zero-padded to WIDTH.
pad() { if [ "$BACKEND" = sqlite ]; then echo "printf('%0$2d', $1)"; else echo "lpad(($1)::text, $2, '0')"; fi; }
# hex EXPR WIDTH: the integer EXPR in lower-case hex, zero-padded to WIDTH.
hex() { if [ "$BACKEND" = sqlite ]; then echo "printf('%0$2x', $1)"; else echo "lpad(to_hex($1), $2, '0')"; fi; }
# rhex N SALT: N (a multiple of 16) hex digits that look random: SQLite's randomblob; on
# PostgreSQL md5s of the row number (a volatile function would keep it from inlining the CTEs).
rhex() {
  if [ "$BACKEND" = sqlite ]; then echo "lower(hex(randomblob($(($1 / 2)))))"; return; fi
  local chain="md5(s.i::text || '${2}1')" n
  for n in $(seq 2 $((($1 + 31) / 32))); do chain+=" || md5(s.i::text || '$2$n')"; done
  echo "left($chain, $1)"
}
# pick LIST WIDTH EXPR: item EXPR (from 0) of LIST, a string of WIDTH-character items.
pick() { if [ "$BACKEND" = sqlite ]; then echo "substr('$1', 1 + $2 * ($3), $2)"; else echo "substr('$1', (1 + $2 * ($3))::int, $2)"; fi; }
# blob EXPR: the text EXPR as bytes (BLOB / BYTEA).
blob() { if [ "$BACKEND" = sqlite ]; then echo "CAST($1 AS BLOB)"; else echo "convert_to($1, 'UTF8')"; fi; }
# flag 0|1: a boolean column's value (INTEGER 0/1 on SQLite, BOOLEAN on PostgreSQL).
flag() { if [ "$BACKEND" = sqlite ]; then echo "$1"; elif [ "$1" = 1 ]; then echo true; else echo false; fi; }
# httpdate EXPR: the time EXPR (µs) as an HTTP date, `Mon, 07 Dec 2026 04:46:51 GMT`.
httpdate() {
  if [ "$BACKEND" = postgres ]; then
    echo "to_char(to_timestamp(($1) / 1000000) AT TIME ZONE 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS \"GMT\"')"
    return
  fi
  local secs="($1) / 1000000, 'unixepoch'"
  echo "substr('ThuFriSatSunMonTueWed', 1 + 3 * ((($1) / 86400000000) % 7), 3)" \
    "|| strftime(', %d ', $secs)" \
    "|| substr('JanFebMarAprMayJunJulAugSepOctNovDec', 3 * strftime('%m', $secs) - 2, 3)" \
    "|| strftime(' %Y %H:%M:%S GMT', $secs)"
}

# ---------------------------------------------------------------------------------------------
# The seeded rows, defined once for the rows and their roll-ups.

# rows_cte LO HI: `WITH RECURSIVE` CTEs whose last, `s`, has one row per request number LO..HI
# with the values everything else is made from: i, k (channel number), j (the request's
# number within its channel), u, v, x (pseudo-random: 0-99, 0-99, 0-48999), t (start, µs),
# minute, state, status, method, lat (latency, µs).
rows_cte() {
  local n
  if [ "$BACKEND" = sqlite ]; then n="n(i) AS (SELECT $1 UNION ALL SELECT i + 1 FROM n WHERE i < $2)"
  else n="n(i) AS (SELECT generate_series($1::bigint, $2::bigint))"; fi
  cat <<SQL
WITH RECURSIVE $n,
a AS (
  SELECT i, i % $CHANNELS AS k, i / $CHANNELS AS j,
    ((i * 2654435761) % 4294967296) * 100 / 4294967296 AS u,
    ((i * 2246822519) % 4294967296) * 100 / 4294967296 AS v,
    ((i * 3266489917) % 4294967296) * 49000 / 4294967296 AS x,
    $start_us + i * $step AS t
  FROM n),
s AS (
  SELECT a.*, t / 60000000 * 60000000 AS minute,
    CASE WHEN u < 90 THEN 'success' WHEN u < 96 THEN 'failed' WHEN u < 98 THEN 'timeout'
      ELSE 'error' END AS state,
    CASE WHEN u < 90 THEN 200 WHEN u < 92 THEN 404 WHEN u < 94 THEN 500 WHEN u < 96 THEN 503
      END AS status,
    CASE WHEN v < 25 THEN 'GET' WHEN v < 85 THEN 'POST' ELSE 'PUT' END AS method,
    CASE WHEN u < 96 THEN 1000 + x * x * x / 2401000000 WHEN u < 98 THEN 15000000 + x
      ELSE 1000 + x / 12 END AS lat
  FROM a)
SQL
}

# request_body, response_body: the previews' JSON text (of constant length: every number in
# them has a fixed width), from the columns of `s`.
request_body() {
  local item='' n name
  for n in 0 1 2 3 4; do
    name=$(echo Widget Gadget Gizmo Doohickey Sprocket | cut -d' ' -f$((n + 1)))
    item+="'{\"sku\":\"SKU-' || $(pad "(s.x + $n * 7919) % 1000000" 6) || '\",\"name\":\"$name\",\"qty\":'"
    item+=" || (1 + (s.j + $n) % 9) || ',\"unit_price\":' || (10 + (s.x + $n) % 90) || '.'"
    item+=" || $(pad "(s.i + $n) % 100" 2) || '}$([ $n = 4 ] || echo ,)' || "
  done
  local cust; cust=$(pad "s.j % 100000" 8)
  echo "'{\"order_id\":\"ord-' || $(pad s.i 10) || '\",\"created_at\":' || s.t ||" \
    "',\"customer\":{\"id\":\"cus-' || $cust || '\",\"email\":\"customer.' || $cust ||" \
    "'@example.com\",\"name\":\"Customer ' || $cust || '\",\"tier\":\"' || $(pick goldbluepink 4 "s.j % 3") ||" \
    "'\"},\"currency\":\"EUR\",\"items\":[' || $item" \
    "'],\"shipping\":{\"method\":\"standard\",\"street\":\"' || $(pad "s.j % 1000" 3) ||" \
    "' Example Street\",\"city\":\"Brussels\",\"postcode\":\"' || $(pad "1000 + s.j % 9000" 4) ||" \
    "'\",\"country\":\"BE\"},\"payment\":{\"method\":\"card\",\"token\":\"tok_' || $(rhex 32 a) ||" \
    "'\",\"fingerprint\":\"' || $(rhex 32 b) || '\"},\"metadata\":{\"source\":\"shop\",\"session\":\"' ||" \
    "$(rhex 32 c) || '\",\"trace\":\"' || $(rhex 32 d) || '\"},\"notes\":\"' || $(rhex 128 e) || '\"}'"
}
response_body() {
  local order; order=$(pad "s.j % 100000" 8)
  echo "'{\"id\":\"ord-' || $(pad s.i 10) || '\",\"status\":\"' ||" \
    "CASE WHEN s.u < 90 THEN 'accepted' ELSE 'rejected' END || '\",\"received_at\":' || s.t ||" \
    "',\"links\":{\"self\":\"/api/orders/' || $order || '\",\"events\":\"/api/orders/' || $order ||" \
    "'/events\"},\"trace_id\":\"' || $(rhex 32 f) || '\",\"span_id\":\"' || $(rhex 16 g) ||" \
    "'\",\"region\":\"eu-west-1\",\"warnings\":[]}'"
}

# bucket_case EXPR: floor(8 * log2(EXPR)) for 1 <= EXPR < 2^27 µs (134 s), as a nested CASE
# (a binary search over the integer bounds of the buckets, each computed with math.log2).
bucket_case() {
  python3 - "$1" <<'PY'
import math, sys
expr = sys.argv[1]
b = lambda us: math.floor(math.log2(us) * 8)
lows = []                       # (smallest integer latency of a bucket, that bucket)
for k in range(0, 8 * 27):
    lo = max(1, math.ceil(2 ** (k / 8)))
    while lo > 1 and b(lo - 1) >= k: lo -= 1
    while b(lo) < k: lo += 1
    if not lows or lows[-1][0] != lo: lows.append((lo, b(lo)))
def tree(a, z):                 # the bucket of EXPR, knowing lows[a][0] <= EXPR < lows[z][0]
    if z - a == 1: return str(lows[a][1])
    m = (a + z) // 2
    return f"CASE WHEN {expr} < {lows[m][0]} THEN {tree(a, m)} ELSE {tree(m, z)} END"
print(tree(0, len(lows)))
PY
}

# seed_rows LO HI: writes requests LO..HI.
seed_rows() {
  local hexid="$(hex "s.t / 1000 / 65536" 8) || '-' || $(hex "(s.t / 1000) % 65536" 4) || '-7000-8000-' || $(hex s.i 12)"
  local rid_hex="$(hex "s.t / 1000 / 65536" 8) || $(hex "(s.t / 1000) % 65536" 4) || '70008000' || $(hex s.i 12)"
  local client="'10.1.' || s.k || '.' || (s.j % 250 + 1)"
  local req_headers="'[[\"content-length\",\"$body_bytes\"],[\"user-agent\",\"shop-backend/4.2.1\"],[\"accept\",\"application/json\"],[\"content-type\",\"application/json\"],[\"authorization\",\"[REDACTED]\"],[\"host\",\"orders.internal:8443\"],[\"x-request-id\",\"' || rid || '\"],[\"x-forwarded-for\",\"' || $client || '\"],[\"x-forwarded-host\",\"gateway.example.com\"],[\"x-forwarded-proto\",\"https\"]]'"
  local resp_headers="'[[\"content-type\",\"application/json\"],[\"content-length\",\"$resp_bytes\"],[\"date\",\"' || $(httpdate "s.t + s.lat") || '\"],[\"server\",\"orders-api/1.8.2\"]]'"
  { prelude; rows_cte "$1" "$2"; cat <<SQL
, r AS (
  SELECT s.*, CASE WHEN s.j % 10 = 3 THEN 'order-' || $(pad s.i 10)
      WHEN s.j % 1000 = 7 THEN 'retry-' || s.k || '-' || (s.j / 3000)
      ELSE $rid_hex || '-sluice' END AS rid
  FROM s)
INSERT INTO requests (id, request_id, channel_id, snapshot_id, node_id, state, started_at,
  completed_at, client_identity, source_auth_method_id, source_auth_type, method, path, query,
  response_status, error, latency_us, ttfb_us, request_body_size, response_body_size,
  request_headers, response_headers, request_body_sha256, request_body_preview,
  request_body_truncated, response_body_sha256, response_body_preview, response_body_truncated,
  connect_us, send_us, queue_us, reused_connection)
SELECT $hexid, s.rid, c.id, c.snap, '$node', s.state, s.t, s.t + s.lat, $client, NULL, NULL,
  s.method,
  CASE WHEN s.v < 10 THEN '/api/items' ELSE '/api/orders/' || (s.j % 100000) END,
  CASE WHEN s.j % 5 = 0 THEN 'source=shop' END,
  s.status,
  CASE s.state WHEN 'timeout' THEN 'response_timeout' WHEN 'error' THEN 'econnrefused' END,
  s.lat,
  CASE WHEN s.u < 96 THEN s.lat - s.lat / 10 END,
  CASE WHEN s.state = 'error' THEN 0 ELSE $body_bytes END,
  CASE WHEN s.u < 96 THEN $resp_bytes END,
  $req_headers,
  CASE WHEN s.u < 96 THEN $resp_headers ELSE '[]' END,
  CASE WHEN s.state = 'error' THEN '$EMPTY_SHA256' ELSE $(rhex 64 h) END,
  CASE WHEN s.state = 'error' THEN $(blob "''") ELSE $(blob "$(request_body)") END,
  $(flag 0),
  CASE WHEN s.u < 96 THEN $(rhex 64 i) END,
  CASE WHEN s.u < 96 THEN $(blob "$(response_body)") END,
  $(flag 0),
  CASE WHEN s.state <> 'error' AND s.j % 50 = 0 THEN 300 + s.x % 600 END,
  CASE WHEN s.state <> 'error' THEN 20 + s.x % 400 END,
  NULL,
  CASE WHEN s.state = 'error' THEN NULL WHEN s.j % 50 = 0 THEN $(flag 0) ELSE $(flag 1) END
FROM r AS s JOIN chans c ON c.k = s.k;
SQL
  } | sql
}
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

# prelude: the session settings of a seeding statement and the table `chans` (channel number →
# channel id and its snapshot).
prelude() {
  if [ "$BACKEND" = sqlite ]; then
    echo ".output /dev/null"   # the pragmas' answers
    echo "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA cache_size = -262144;"
    echo "CREATE TEMP TABLE chans (k INTEGER PRIMARY KEY, id TEXT, snap TEXT);"
  else
    echo "SET synchronous_commit = off; SET work_mem = '256MB'; SET jit = off;  -- JIT would compile the bucket CASE for a minute"
    echo "CREATE TEMP TABLE chans (k BIGINT PRIMARY KEY, id TEXT, snap TEXT);"
  fi
  for i in $(seq 0 $((CHANNELS - 1))); do echo "INSERT INTO chans VALUES ($i, '${chans[$i]}', '${snapshots[$i]}');"; done
}

# seed_rollups: adds every seeded request to `request_minutes` and `latency_minutes` (added to,
# not replaced: the warm-up requests' minute may be among them).
seed_rollups() {
  { prelude; rows_cte 0 $((ROWS - 1)); cat <<SQL
INSERT INTO request_minutes (channel_id, minute, success, failed, timeout, error)
SELECT c.id, s.minute,
  SUM(CASE WHEN s.state = 'success' THEN 1 ELSE 0 END),
  SUM(CASE WHEN s.state = 'failed' THEN 1 ELSE 0 END),
  SUM(CASE WHEN s.state = 'timeout' THEN 1 ELSE 0 END),
  SUM(CASE WHEN s.state = 'error' THEN 1 ELSE 0 END)
FROM s JOIN chans c ON c.k = s.k WHERE true GROUP BY c.id, s.minute
ON CONFLICT (channel_id, minute) DO UPDATE SET
  success = request_minutes.success + excluded.success,
  failed = request_minutes.failed + excluded.failed,
  timeout = request_minutes.timeout + excluded.timeout,
  error = request_minutes.error + excluded.error;
SQL
    rows_cte 0 $((ROWS - 1)); cat <<SQL
, b AS (SELECT s.*, $(bucket_case s.lat) AS bucket FROM s)
INSERT INTO latency_minutes (channel_id, minute, bucket, requests)
SELECT c.id, b.minute, b.bucket, COUNT(*)
FROM b JOIN chans c ON c.k = b.k WHERE true GROUP BY c.id, b.minute, b.bucket
ON CONFLICT (channel_id, minute, bucket) DO UPDATE SET
  requests = latency_minutes.requests + excluded.requests;
SQL
  } | sql
}

# seed: the rows in chunks of CHUNK, the roll-ups, then the statistics.
seed() {
  local t0 t1 t2 lo hi
  body_bytes=0 resp_bytes=0
  read -r body_bytes resp_bytes < <({ rows_cte 0 0; echo "SELECT length($(request_body)), length($(response_body)) FROM s;"; } |
    sql | tr '|' ' ')
  echo "seeding $ROWS requests over 7 days into the $BACKEND ledger (request body $body_bytes bytes, response $resp_bytes)…"
  t0=$(now_ms)
  for ((lo = 0; lo < ROWS; lo += CHUNK)); do
    hi=$((lo + CHUNK < ROWS ? lo + CHUNK - 1 : ROWS - 1))
    seed_rows "$lo" "$hi"
    echo "  $((hi + 1)) rows, $((($(now_ms) - t0) / 1000)) s"
  done
  t1=$(now_ms)
  seed_rollups
  t2=$(now_ms)
  if [ "$BACKEND" = postgres ]; then echo "VACUUM ANALYZE;" | sql
  elif [ "$SQLITE_ANALYZE" = 1 ]; then echo "PRAGMA journal_mode = WAL; ANALYZE;" | sql >/dev/null
  else echo "PRAGMA journal_mode = WAL;" | sql >/dev/null; fi
  local counted
  counted=$(echo "SELECT (SELECT COUNT(*) FROM requests), (SELECT SUM(success + failed + timeout + error) FROM request_minutes), (SELECT SUM(requests) FROM latency_minutes);" | sql)
  # Each warm-up request is in the ledger and its roll-ups too.
  [ "$counted" = "$((ROWS + CHANNELS))|$((ROWS + CHANNELS))|$((ROWS + CHANNELS))" ] ||
    { echo "the ledger holds $counted requests (rows|request_minutes|latency_minutes), not $ROWS + $CHANNELS" >&2; exit 1; }
  python3 -c 'import sys; r, a, b, c, d = map(int, sys.argv[1:]); print(f"seeded: rows {(b - a) / 1e3:.0f} s ({(b - a) / r * 1e3:.0f} s per million), roll-ups {(c - b) / 1e3:.0f} s, statistics {(d - c) / 1e3:.0f} s")' \
    "$ROWS" "$t0" "$t1" "$t2" "$(now_ms)"
}
now_ms() { echo $(($(date +%s%N) / 1000000)); }

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

now_us=$(python3 -c 'import time; print(int(time.time() * 1e6))')
step=$((7 * 86400 * 1000000 / ROWS))
start_us=$((now_us - ROWS * step))
seed
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
