#!/usr/bin/env bash
# Instructions per proxied request, counted by valgrind's callgrind: a number that does not move
# with the machine's noise, for A/B comparisons of changes too small for wrk to see.
#
#   bench/callgrind.sh                         # the release build
#   SLUICE_BIN=/tmp/sluice-old bench/callgrind.sh
#   DURATION=20s CONNECTIONS=4 bench/callgrind.sh
#
# sluice runs under callgrind (~50x slower), wrk posts 1 KiB through one channel to the mock
# sink; the counters are zeroed after a warm-up and dumped after the measured run. Prints the
# total and the inclusive count per request of the proxy's main parts.
#
# Read with care: under valgrind the CPU reports no SHA extensions, so SHA-256 runs in software
# (tens of thousands of instructions per KiB that natively take SHA-NI instructions), and the
# request rate is ~50x lower, so the ledger threads' per-request counts (batching, checkpoints)
# are inflated. The worker-side counts (handler, hyper's connections) are per request and
# comparable between builds.
#
# Needs: valgrind, wrk, curl, python3 (apt-get install valgrind wrk curl).
set -euo pipefail

DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-4}
SINK_PORT=${SINK_PORT:-4311}
SLUICE_PORT=${SLUICE_PORT:-4313}

source "$(dirname "$0")/lib.sh" valgrind callgrind_control callgrind_annotate wrk curl python3

start_sink --body-size 256
"$BIN" migrate --data-dir "$work/data" >/dev/null 2>&1
TOKEN=$("$BIN" token create --name callgrind --data-dir "$work/data" 2>/dev/null | tail -n 1)
valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  "$BIN" serve --data-dir "$work/data" --listen "127.0.0.1:$SLUICE_PORT" >"$work/sluice.log" 2>&1 &
VG=$!
pids+=($VG)
for _ in $(seq 1 300); do curl -s -o /dev/null "http://127.0.0.1:$SLUICE_PORT/healthz" && break; sleep 0.2; done
CH=$(new_channel callgrind)
URL="http://127.0.0.1:$SLUICE_PORT/channels/$CH/bench"
post_lua 1024

wrk -t1 -c"$CONNECTIONS" -d5s -s "$work/post.lua" "$URL" >/dev/null
sleep 1
callgrind_control -z "$VG" >/dev/null
wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s "$work/post.lua" "$URL" >"$work/wrk.out"
sleep 0.5
callgrind_control -d "$VG" >/dev/null
requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
dump=$(ls "$work"/callgrind.out.* | head -n 1)
callgrind_annotate --inclusive=no --auto=no --threshold=100 "$dump" >"$work/annotated.txt" 2>/dev/null

python3 - "$work/annotated.txt" "$requests" <<'PY'
import collections, re, sys
text, n = open(sys.argv[1]).read(), max(int(sys.argv[2]), 1)
total = 0
groups = collections.Counter()
for m in re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+(\S[^\[]*?)(?: \[(.*)\])?$", text, re.M):
    count, where, obj = int(m.group(1).replace(",", "")), m.group(2), m.group(3) or ""
    if where == "PROGRAM TOTALS":
        total = count
        continue
    if count > total // 5:
        # Frames that were on a thread's stack when the counters were zeroed (thread starts,
        # the runtime's worker loop) are listed with everything below them: not self cost.
        continue
    file, _, symbol = where.partition(":")
    if file.endswith("sqlite3.c"):
        group = "sqlite (C)"
    elif "mimalloc" in file:
        group = "mimalloc (C)"
    elif "libc.so" in obj or file.startswith("./"):
        group = "libc"
    else:
        # Inlined code carries the source file it came from but the symbol of the function it
        # was inlined into: group by that function's crate.
        crate = re.sub(r"^[<&\s]*(mut\s+)?(dyn\s+)?", "", symbol).split("::")[0]
        group = crate.replace("_", "-") or "other"
    groups[group] += count
print(f"{int(sys.argv[2])} requests measured; instructions per request, by crate (self cost):")
print(f"  {'all threads':<28} {total // n:>9}")
for group, count in groups.most_common(18):
    print(f"  {group:<28} {count // n:>9}")
PY
