#!/usr/bin/env bash
# The soak run of issue 38: DURATION (default 30m) of mixed traffic through one sluice, printing
# its resident memory, open file descriptors and threads each minute, then checking that every
# answered request is in the ledger. At once, all run for the whole time:
#   happy       `sluice bench load`, 4 users of 1 KiB POSTs the sink answers in 20 ms (a
#               steady ~200 requests/s: a full-speed run would write tens of GB in 30 minutes)
#   large       1 user of 1 MiB POSTs answered in 200 ms
#   slow        4 users whose sink takes 2 s to answer
#   failing     curl in a loop to a channel whose sink answers 503, and one whose sink refuses
#               connections (nothing listens there)
#   idle        50 connections at a time that send nothing until sluice closes them (the
#               header-read timeout), opened again and again
#   slow client curl uploading 64 KiB at 8 KiB/s in a loop
# Prints `minute rss_mib fds threads` lines, then the answered requests counted by the loaders
# and curl loops against the rows in the ledger. Needs curl, python3 and sqlite3.
#
#   bench/soak.sh                 # 30 minutes
#   DURATION=5m bench/soak.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh" curl python3 sqlite3
SINK_PORT=${SINK_PORT:-18181}
SLUICE_PORT=${SLUICE_PORT:-18180}
DURATION=${DURATION:-30m}
case "$DURATION" in
  *m) seconds=$((${DURATION%m} * 60)) ;;
  *s) seconds=${DURATION%s} ;;
  *) seconds=$DURATION ;;
esac

start_sink
start_sluice soak
channel() { # NAME SINK_URL: a channel keeping 1 KiB previews; prints its id
  curl -sf -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"name\":\"$1\",\"sink_url\":\"$2\",\"preview_bytes\":1024}" \
    "http://127.0.0.1:$SLUICE_PORT/api/v1/channels" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
happy=$(channel happy "http://127.0.0.1:$SINK_PORT/")
failing=$(channel failing "http://127.0.0.1:$SINK_PORT/?status=503")
refused=$(channel refused "http://127.0.0.1:9/")
base="http://127.0.0.1:$SLUICE_PORT"
end=$((SECONDS + seconds))

load() { # NAME USERS DELAY_MS PAYLOAD: a bench load for the whole run, its report in $work/NAME.out
  "$BIN" bench load --target "$base" --sink "http://127.0.0.1:$SINK_PORT" --token "$TOKEN" \
    --channel "$happy" --scenario slow_sink --concurrency "$2" --delay "$3" \
    --payload-size "$4" --duration "${seconds}s" >"$work/$1.out" 2>&1 &
  pids+=($!)
}
load happy 4 20 1024
load large 1 200 1048576
load slow 4 2000 1024

curl_loop() { # NAME URL [CURL_ARG...]: requests until the end, counting answered ones
  local name=$1 url=$2; shift 2
  ( n=0; while [ "$SECONDS" -lt "$end" ]; do
      code=$(curl -s -o /dev/null -w '%{http_code}' "$@" "$url" || true)
      [ "$code" != "000" ] && n=$((n + 1))
    done; echo "$n" >"$work/$name.count" ) &
  pids+=($!)
}
curl_loop failing "$base/channels/$failing/x"
curl_loop refused "$base/channels/$refused/x"
head -c 65536 /dev/zero >"$work/64k"
curl_loop slowclient "$base/channels/$happy/upload" --limit-rate 8k --data-binary "@$work/64k"

python3 - "$SLUICE_PORT" "$seconds" <<'PY' &
import socket, sys, time
port, seconds = int(sys.argv[1]), int(sys.argv[2])
end = time.time() + seconds
while time.time() < end:
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
    time.sleep(12)  # past the 10 s header-read timeout: sluice has closed them
    for s in socks:
        s.close()
PY
pids+=($!)

echo "minute rss_mib fds threads"
minute=0
while [ "$SECONDS" -lt "$end" ]; do
  sleep 60
  minute=$((minute + 1))
  rss=$(awk '/^VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/$SLUICE_PID/status")
  fds=$(ls "/proc/$SLUICE_PID/fd" | wc -l)
  threads=$(awk '/^Threads/ { print $2 }' "/proc/$SLUICE_PID/status")
  echo "$minute $rss $fds $threads"
done
sleep 15 # the loaders' last requests, the ledger's last commits
answered() { awk '/Requests:/ { r = $2 } END { print r + 0 }' "$work/$1.out"; }
sent=$(( $(answered happy) + $(answered large) + $(answered slow) + $(cat "$work/failing.count") \
  + $(cat "$work/refused.count") + $(cat "$work/slowclient.count") ))
rows=$(sqlite3 "$work/data/sluice.db" "select count(*) from requests")
pending=$(sqlite3 "$work/data/sluice.db" "select count(*) from requests where state = 'pending'")
echo "answered requests counted by the loaders and curl loops: $sent"
echo "rows in the ledger: $rows (pending: $pending)"
