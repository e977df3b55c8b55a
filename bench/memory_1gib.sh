#!/usr/bin/env bash
# Streams a 1 GiB request body and a 1 GiB response body through one sluice channel and reports
# the sluice process's peak resident memory (VmHWM), plus what the ledger recorded.
#
#   bench/memory_1gib.sh              # SIZE=1073741824 LIMIT_MIB=64
#
# Needs curl, python3 and a release build (cargo build --release; or SLUICE_BIN=...).
set -euo pipefail

SIZE=${SIZE:-1073741824}
LIMIT_MIB=${LIMIT_MIB:-64}
SINK_PORT=${SINK_PORT:-4311}
SLUICE_PORT=${SLUICE_PORT:-4313}
source "$(dirname "$0")/lib.sh" curl python3

start_sink
"$BIN" serve --data-dir "$work/data" --listen "127.0.0.1:$SLUICE_PORT" >"$work/sluice.log" 2>&1 &
PID=$!
pids+=($PID)
wait_port "$SINK_PORT"; wait_port "$SLUICE_PORT"
TOKEN=$("$BIN" token create --name mem --data-dir "$work/data" 2>/dev/null | tail -n 1)
api() { curl -sf -H "authorization: Bearer $TOKEN" "$@"; }
CH=$(api -X POST "http://127.0.0.1:$SLUICE_PORT/api/v1/channels" -H 'content-type: application/json' \
  -d "{\"name\":\"mem\",\"sink_url\":\"http://127.0.0.1:$SINK_PORT/\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
URL="http://127.0.0.1:$SLUICE_PORT/channels/$CH"
hwm() { awk '/VmHWM/ {print int($2/1024)}' "/proc/$PID/status"; }
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$PID/status"; }

echo "sluice pid $PID, RSS at start $(rss) MiB (peak so far $(hwm) MiB)"
start=$(date +%s.%N)
head -c "$SIZE" /dev/zero | curl -sS -X POST -H 'x-request-id: memory-upload-0000000001' \
  -H 'content-type: application/octet-stream' -T - "$URL/upload?response_size=16" -o /dev/null
up_s=$(python3 -c "import time; print(f'{time.time()-$start:.1f}')")
echo "upload of $SIZE B: ${up_s} s, peak RSS $(hwm) MiB"
start=$(date +%s.%N)
got=$(curl -sS -H 'x-request-id: memory-download-000000001' "$URL/download?response_size=$SIZE" -o /dev/null -w '%{size_download}')
down_s=$(python3 -c "import time; print(f'{time.time()-$start:.1f}')")
peak=$(hwm)
echo "download of $got B: ${down_s} s, peak RSS $peak MiB, RSS now $(rss) MiB"

sleep 0.5
api "http://127.0.0.1:$SLUICE_PORT/api/v1/channels/$CH/requests" >"$work/history.json"
python3 - "$work/history.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["items"]:
    print("  ledger: {request_id} {state} status={response_status} request_body_size={request_body_size} "
          "response_body_size={response_body_size}".format(**r))
PY
if [ "$peak" -lt "$LIMIT_MIB" ]; then echo "PASS: peak RSS $peak MiB < $LIMIT_MIB MiB"; else echo "FAIL: peak RSS $peak MiB >= $LIMIT_MIB MiB"; exit 1; fi
