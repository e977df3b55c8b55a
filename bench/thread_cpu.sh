#!/usr/bin/env bash
# Where sluice's CPU goes, per request: runs wrk through a fresh sluice in front of the mock
# sink and prints each sluice thread's CPU time and page faults divided by the requests wrk
# completed (from /proc/<pid>/task/*/schedstat and stat), with the machine's idle share over the
# run and the share the VM's host stole (/proc/stat; a run with steal is not comparable with one
# without).
#
#   bench/thread_cpu.sh                      # wrk -t1 -c20 -d10s POSTing 1 KiB, after a 3 s warm-up
#   PERF=perf.data bench/thread_cpu.sh       # also `perf record -g` of sluice during the run
#   SLUICE_BIN=/tmp/a bench/thread_cpu.sh    # another build (the sink is always $SINK_BIN)
#
# Run builds alternately: this machine drifts by ±10% between runs of one build.
# Needs: wrk, curl, python3 (and perf for PERF=); a release build of sluice.
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-20}
PAYLOAD=${PAYLOAD:-1024}
SINK_PORT=${SINK_PORT:-4401}
SLUICE_PORT=${SLUICE_PORT:-4403}

source "$(dirname "$0")/lib.sh" wrk curl python3

start_sink --body-size 256
# No health probes: their rounds would land at random moments inside the measured run.
"$BIN" serve --data-dir "$work/data" --listen "127.0.0.1:$SLUICE_PORT" --health-interval 0 \
  >"$work/sluice.log" 2>&1 &
SLUICE_PID=$!
pids+=($SLUICE_PID)
wait_port "$SINK_PORT"; wait_port "$SLUICE_PORT"
TOKEN=$("$BIN" token create --name bench --data-dir "$work/data" 2>/dev/null | tail -n 1)
CH=$(new_channel cpu)
URL="http://127.0.0.1:$SLUICE_PORT/channels/$CH/"
post_lua "$PAYLOAD"

# threads: "<thread name> <ns on CPU> <minor page faults>" for each sluice thread name, summed
# over threads sharing it (the fault count is field 10 of stat; the name has no space once
# `tr` is through with it).
threads() {
  for t in /proc/"$SLUICE_PID"/task/*; do
    echo "$(tr ' ' _ <"$t/comm") $(cut -d' ' -f1 "$t/schedstat") $(cut -d')' -f2 "$t/stat" | awk '{print $8}')"
  done | awk '{ns[$1] += $2; pf[$1] += $3} END {for (k in ns) print k, ns[k], pf[k]}' | sort
}
idle() { awk '/^cpu / {print $5 + $6 " " $9}' /proc/stat; }

wrk -t1 -c"$CONNECTIONS" -d3s -s "$work/post.lua" "$URL" >/dev/null
threads >"$work/before"
idle_before=$(idle)
if [ -n "${PERF:-}" ]; then
  perf record -F 999 -g -p "$SLUICE_PID" -o "$PERF" -- sleep "$(( DURATION > 2 ? DURATION - 2 : 1 ))" >/dev/null 2>&1 &
  perf_pid=$!
fi
wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/post.lua" "$URL" >"$work/wrk.out"
idle_after=$(idle)
threads >"$work/after"
[ -n "${PERF:-}" ] && wait "$perf_pid"

python3 - "$work/wrk.out" "$work/before" "$work/after" "$idle_before" "$idle_after" "$DURATION" "$CONNECTIONS" <<'PY'
import os, re, sys
out, before, after = (open(p).read() for p in sys.argv[1:4])
(idle0, steal0), (idle1, steal1) = (map(int, a.split()) for a in sys.argv[4:6])
idle, steal = ((b - a) / os.sysconf("SC_CLK_TCK") for a, b in ((idle0, idle1), (steal0, steal1)))
n = int(re.search(r"(\d+) requests in", out).group(1))
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M).group(1)
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
print(f"wrk -t1 -c{sys.argv[7]} -d{sys.argv[6]}s: {n} requests, {rps:.0f} req/s, p99 {p99}, non-2xx {errors.group(1) if errors else 0}")
cores = os.cpu_count() * int(sys.argv[6])
print(f"machine idle: {100 * idle / cores:.0f}% of {os.cpu_count()} cores, stolen by the host: {100 * steal / cores:.1f}%")
b = {l.split()[0]: l.split()[1:] for l in before.splitlines()}
total, total_faults = 0.0, 0.0
for line in after.splitlines():
    name, ns, faults = line.split()
    ns0, faults0 = b.get(name, (0, 0))
    us = (int(ns) - int(ns0)) / 1000 / n
    pf = (int(faults) - int(faults0)) / n
    total += us
    total_faults += pf
    if us >= 0.01:
        print(f"  {name:<20} {us:6.2f} us/request  {pf:6.3f} page faults/request")
print(f"  {'sluice in all':<20} {total:6.2f} us/request  {total_faults:6.3f} page faults/request")
PY
