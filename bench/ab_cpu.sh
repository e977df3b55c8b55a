#!/usr/bin/env bash
# Two builds measured at the same moment: runs bench/thread_cpu.sh for build A and for build B
# side by side (each with its own mock sink and wrk, on ports of its own), ROUNDS times, and
# prints each round's CPU time per request of both builds' threads and their difference.
#
#   bench/ab_cpu.sh /tmp/sluice-a /tmp/sluice-b
#   ROUNDS=8 DURATION=10 bench/ab_cpu.sh /tmp/sluice-a /tmp/sluice-b
#
# Run one after the other, two builds differ by the machine's drift as much as by the change:
# these VMs slow down or speed up by a third within an hour, so a 3% change needs many
# alternations to show. Run at once, both see the same machine; the ports (and with them which
# build starts first) swap every round. Both share the two cores, so the absolute numbers are
# higher than thread_cpu.sh's alone; the difference is what to read, with the chance that a
# split of the rounds as lopsided as this one comes from noise alone (a two-sided sign test:
# 6 of 6 rounds, 0.03; 6 of 8, 0.29). Run a build against itself to see the noise. Both use
# build A's mock sink (override with SINK_BIN). To compare settings rather than builds, pass a
# wrapper script as a build, e.g.
# `printf '#!/bin/sh\nMIMALLOC_PURGE_DELAY=100 exec /tmp/sluice "$@"\n'`.
# Needs what thread_cpu.sh needs.
set -euo pipefail

A=${1:?usage: bench/ab_cpu.sh BUILD_A BUILD_B}
B=${2:?usage: bench/ab_cpu.sh BUILD_A BUILD_B}
ROUNDS=${ROUNDS:-6}
export SINK_BIN=${SINK_BIN:-$A} DURATION=${DURATION:-10}
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# run BUILD SINK_PORT SLUICE_PORT FILE: one thread_cpu.sh run in the background.
run() { SLUICE_BIN=$1 SINK_PORT=$2 SLUICE_PORT=$3 bash "$here/thread_cpu.sh" >"$4" 2>&1 & }

for i in $(seq 1 "$ROUNDS"); do
  if (( i % 2 )); then
    run "$A" 4421 4423 "$out/a.$i"; run "$B" 4431 4433 "$out/b.$i"
  else
    run "$B" 4421 4423 "$out/b.$i"; run "$A" 4431 4433 "$out/a.$i"
  fi
  wait
done

python3 - "$out" "$ROUNDS" "$A" "$B" <<'PY'
import math, re, statistics, sys
out, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:5]

def parse(path):
    """(req/s, proxy threads, history writer, all threads) in µs per request."""
    text = open(path).read()
    rate = re.search(r"(\d+) req/s", text)
    rows = dict(re.findall(r"^\s+(\S+(?: in all)?)\s+([\d.]+) us/request", text, re.M))
    if not rate or "sluice in all" not in rows:
        sys.exit(f"thread_cpu.sh failed:\n{text}")
    proxy = sum(float(v) for k, v in rows.items() if k.startswith("sluice-proxy"))
    return int(rate.group(1)), proxy, float(rows.get("sluice-history", 0)), float(rows["sluice in all"])

print(f"A = {names[0]}\nB = {names[1]}")
print(f"{'round':<6}{'A req/s':>9}{'B req/s':>9}   {'µs per request, A / B (B − A)':<30}")
diffs = {"proxy": [], "history": [], "all": []}
for i in range(1, rounds + 1):
    a, b = parse(f"{out}/a.{i}"), parse(f"{out}/b.{i}")
    cells = []
    for j, key in ((1, "proxy"), (2, "history"), (3, "all")):
        diffs[key].append(b[j] - a[j])
        cells.append(f"{key} {a[j]:.2f} / {b[j]:.2f} ({b[j] - a[j]:+.2f})")
    print(f"{i:<6}{a[0]:>9}{b[0]:>9}   " + "   ".join(cells))
def by_chance(k, n):
    """The chance that a coin lands the same way in k or more of n tosses (a sign test)."""
    k = max(k, n - k)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k, n + 1)) / 2 ** n)

for key, d in diffs.items():
    lower = sum(x < 0 for x in d)
    print(f"{key:<8} B − A: mean {statistics.mean(d):+.2f} µs, median {statistics.median(d):+.2f}; "
          f"B lower in {lower} of {len(d)} rounds (as lopsided by chance: {by_chance(lower, len(d)):.2f})")
PY
