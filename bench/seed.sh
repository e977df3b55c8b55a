# Shared by bench/ledger_reads.sh and bench/ui_speed.sh: writes recorded requests straight into a
# migrated ledger as its writer stores them (the proxy cannot backdate traffic): one `requests`
# row per request with its event in the same row, plus the per-minute roll-ups
# `request_minutes` and `latency_minutes` that the statistics, the channel list's 24 h counts,
# the dashboard and the charts read. `source "$(dirname "$0")/seed.sh"` after lib.sh, then
# `seed_ledger`.
#
# What the caller sets first: BACKEND (sqlite | postgres), DB_FILE (the SQLite ledger's file) or
# PG_URL (the PostgreSQL database), ROWS (requests to write), CHANNELS (how many channels),
# CHUNK (rows per seeding statement), SQLITE_ANALYZE (1: ANALYZE after seeding, as PostgreSQL's
# autovacuum would; 0: no statistics, as sluice leaves its SQLite ledger), the arrays `chans`
# and `snapshots` (channel k's id and its configuration's snapshot id, k = 0 … CHANNELS - 1) and
# `node` (the ledger's node id). The ledger holds one warm-up request per channel and nothing
# else (the first request through a channel records its snapshot); `seed_ledger` checks that
# the rows and both roll-ups then count ROWS + CHANNELS requests. Sluice must not be running.
#
# The seeded requests, each made from its number i: channel i % CHANNELS, started 7 days / ROWS
# apart up to now; 90% success (200), 6% failed (404, 500, 503), 2% timeout (~15 s), 2% error
# (econnrefused, no body sent, no response); 25% GET, 60% POST, 15% PUT; paths /api/orders/<n>,
# and /api/items for a tenth; request ids mostly `<32 hex>-sluice`, a tenth unique caller ids
# `order-<10 digits>`, one in a thousand a `retry-…` id that three requests share; latencies
# 1-50 ms skewed to the fast end (median 7 ms); a 1 KiB JSON request body preview, a 263-byte
# JSON response preview (both partly hex, so that PostgreSQL does not compress them much more
# than real payloads), request headers ~350 bytes and response headers ~130 bytes of JSON,
# random hex digests. The roll-ups come from the same definitions, one INSERT … SELECT … GROUP
# BY each; the latency bucket floor(8 * log2(latency_us)) is a nested CASE over the buckets'
# integer bounds, computed here with Python's math.log2 (the libm log2 that the writer's
# f64::log2 calls): SQLite has log2 only when built with its math functions, PostgreSQL none on
# integers. Needs python3 and sqlite3 or psql.

# ---------------------------------------------------------------------------------------------
# The backend: how to run SQL on the ledger, the few spellings that differ.

# sql: runs the SQL on stdin against the ledger, stopping at the first error; prints rows as
# `a|b|c`.
sql() {
  if [ "$BACKEND" = sqlite ]; then sqlite3 -bail "$DB_FILE"
  else psql -X -q -At -v ON_ERROR_STOP=1 "$PG_URL"; fi
}

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

# seed_ledger: ROWS requests over the 7 days up to now (the rows in chunks of CHUNK), the
# roll-ups, then the statistics; checks the counts and prints the rates.
seed_ledger() {
  local t0 t1 t2 lo hi now_us
  now_us=$(python3 -c 'import time; print(int(time.time() * 1e6))')
  step=$((7 * 86400 * 1000000 / ROWS))
  start_us=$((now_us - ROWS * step))
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
