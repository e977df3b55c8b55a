#!/usr/bin/env bash
# sluice's memory and listing time as the channel list is read again and again after a load:
# each `GET /api/v1/channels` counts every channel's requests of the last 24 hours, a scan of
# the ledger whose pages pass through the SQLite readers' page caches.
#
#   bench/listing_memory.sh                            # the release build
#   SLUICE_BIN=/tmp/sluice-old LISTINGS=60 bench/listing_memory.sh
#
# Loads one channel with `wrk -t1 -c20` POSTing 1 KiB for LOAD seconds (~30k requests a
# second here), then lists the channels LISTINGS times, printing sluice's anonymous memory
# (`RssAnon`) every ten listings and the listings' times.
#
# Needs: wrk, curl, python3 (apt-get install wrk curl).
set -euo pipefail

LOAD=${LOAD:-15}
LISTINGS=${LISTINGS:-60}
SINK_PORT=${SINK_PORT:-4521}
SLUICE_PORT=${SLUICE_PORT:-4523}

source "$(dirname "$0")/lib.sh" wrk curl python3

start_sink --body-size 256
start_sluice listing
CH=$(new_channel listing)
post_lua 1024

anon() { awk '/^RssAnon/ {printf "%.1f MiB", $2 / 1024}' "/proc/$SLUICE_PID/status"; }
wrk -t1 -c20 -d"${LOAD}s" -s "$work/post.lua" "http://127.0.0.1:$SLUICE_PORT/channels/$CH/" |
  awk '/requests in/ {print "load: " $1 " requests"}'
echo "after the load: $(anon) anonymous"
times=()
for i in $(seq 1 "$LISTINGS"); do
  t=$(curl -sf -o /dev/null -w '%{time_total}' -H "authorization: Bearer $TOKEN" \
    "http://127.0.0.1:$SLUICE_PORT/api/v1/channels")
  times+=("$t")
  if [ $((i % 10)) = 0 ]; then echo "after $i listings: $(anon) anonymous"; fi
done
echo "listing seconds, in order: ${times[*]}"
