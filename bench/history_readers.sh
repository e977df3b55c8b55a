#!/usr/bin/env bash
# How long the history's readers take through the API after a load: the listings (newest page,
# a page from the middle, filters that match nothing and so read the whole channel), the
# lookups by request id and by record id, the channel's stats and the channel list.
#
#   bench/history_readers.sh                           # the release build
#   SLUICE_BIN=/tmp/sluice-old LOAD=20 REPS=7 bench/history_readers.sh
#
# Loads one channel with `wrk -t1 -c20` POSTing 1 KiB for LOAD seconds, then times each
# query REPS times with curl and prints the median and the slowest, in ms.
#
# Needs: wrk, curl, python3 (apt-get install wrk curl).
set -euo pipefail

LOAD=${LOAD:-20}
REPS=${REPS:-7}
SINK_PORT=${SINK_PORT:-4531}
SLUICE_PORT=${SLUICE_PORT:-4533}

source "$(dirname "$0")/lib.sh" wrk curl python3

start_sink --body-size 256
start_sluice readers
CH=$(new_channel readers)
post_lua 1024

rfc3339() { python3 -c 'import datetime,sys; print(datetime.datetime.fromtimestamp(float(sys.argv[1]), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"))' "$1"; }

start=$(date +%s.%N)
wrk -t1 -c20 -d"${LOAD}s" -s "$work/post.lua" "http://127.0.0.1:$SLUICE_PORT/channels/$CH/" |
  awk '/requests in/ {print "load: " $1 " requests"}'
sleep 1
mid=$(rfc3339 "$(python3 -c "print($start + $LOAD / 2)")")
# A request from the middle of the load: its record id and its (generated) request id.
read -r MID_ID MID_RID < <(api_get "/channels/$CH/requests?limit=1&until=$mid" |
  python3 -c 'import json,sys; r=json.load(sys.stdin)["items"][0]; print(r["id"], r["request_id"])')
echo "requests recorded: $(api_get "/channels/$CH/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')"

time_query() {
  local name=$1 path=$2 times=()
  for _ in $(seq 1 "$REPS"); do
    times+=("$(api_get "$path" -o /dev/null -w '%{time_total}')")
  done
  printf '%-44s %s\n' "$name" "$(printf '%s\n' "${times[@]}" |
    python3 -c 'import statistics,sys; t=[float(x)*1000 for x in sys.stdin]; print(f"median {statistics.median(t):8.2f} ms   max {max(t):8.2f} ms")')"
}

time_query "newest page (50)" "/channels/$CH/requests?limit=50"
time_query "a page from the middle (until=)" "/channels/$CH/requests?limit=50&until=$mid"
time_query "5xx (none: the whole channel)" "/channels/$CH/requests?limit=50&status=5xx"
time_query "path prefix /none (the whole channel)" "/channels/$CH/requests?limit=50&path_prefix=/none"
time_query "by request id (generated)" "/channels/$CH/requests?request_id=$MID_RID"
time_query "by request id (unknown)" "/channels/$CH/requests?request_id=order-42"
time_query "one request by id, with its event" "/requests/$MID_ID"
time_query "stats, last 24 h" "/channels/$CH/stats"
time_query "channel list (requests in 24 h)" "/channels"
