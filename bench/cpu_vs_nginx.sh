#!/usr/bin/env bash
# Where the machine's CPU goes per request, through nginx and through sluice: runs wrk against
# nginx and a fresh sluice (both in front of the same mock sink), alternating, and prints for
# each run the CPU time per request of every party (the proxy, split into user and kernel; for
# sluice also its history writer and checkpointer; the sink; wrk), the idle time and the time the
# VM's host stole, from /proc (`utime`/`stime` of each thread, wrk's rusage, /proc/stat).
#
#   bench/cpu_vs_nginx.sh                       # wrk -t1 -c20 -d10s POSTing 1 KiB, 2 rounds
#   DURATION=10 ROUNDS=3 bench/cpu_vs_nginx.sh
#   SLUICE_BIN=/tmp/a bench/cpu_vs_nginx.sh     # another build (the sink is always $SINK_BIN)
#
# The machine's two cores are shared by all parties, so a request's cost through a proxy is the
# sum of the rows: the ratio of the two sums is the throughput ratio the machine allows.
# Needs: nginx, wrk, curl, python3; a release build of sluice.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-2}
CONNECTIONS=${CONNECTIONS:-20}
PAYLOAD=${PAYLOAD:-1024}
SINK_PORT=${SINK_PORT:-4501}
NGINX_PORT=${NGINX_PORT:-4502}
SLUICE_PORT=${SLUICE_PORT:-4503}

source "$(dirname "$0")/lib.sh" nginx wrk curl python3
source "$(dirname "$0")/nginx.sh"

start_sink --body-size 256
start_nginx "$work/nginx" "$NGINX_PORT" "$SINK_PORT"
# No health probes: their rounds would land at random moments inside the measured runs.
"$BIN" serve --data-dir "$work/data" --listen "127.0.0.1:$SLUICE_PORT" --health-interval 0 \
  >"$work/sluice.log" 2>&1 &
SLUICE_PID=$!
pids+=($SLUICE_PID)
wait_port "$SINK_PORT"; wait_port "$NGINX_PORT"; wait_port "$SLUICE_PORT"
TOKEN=$("$BIN" token create --name bench --data-dir "$work/data" 2>/dev/null | tail -n 1)
CH=$(new_channel cpu)
post_lua "$PAYLOAD"

python3 - "$work" "$DURATION" "$ROUNDS" "$CONNECTIONS" "$SINK_PID" "$NGINX_PID" "$SLUICE_PID" \
  "http://127.0.0.1:$NGINX_PORT/" "http://127.0.0.1:$SLUICE_PORT/channels/$CH/" <<'PY'
import os, re, subprocess, sys

work, duration, rounds, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
sink, nginx, sluice = (int(p) for p in sys.argv[5:8])
urls = {"nginx": sys.argv[8], "sluice": sys.argv[9]}
tick = os.sysconf("SC_CLK_TCK")

def children(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]

def threads(pid):
    """(thread name, user s, kernel s) of each thread of `pid`."""
    rows = []
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            stat = open(f"/proc/{pid}/task/{t}/stat").read()
        except FileNotFoundError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        rows.append((name, int(fields[11]) / tick, int(fields[12]) / tick))
    return rows

def party(target, name):
    if target == "sluice":
        for prefix, label in (("sluice-proxy", "proxy threads"), ("sluice-history", "history writer"),
                              ("sluice-checkpoi", "checkpointer")):
            if name.startswith(prefix):
                return "sluice " + label
        return "sluice other threads"
    return "nginx workers"

def snapshot(target):
    """CPU seconds (user, kernel) per party."""
    acc = {}
    procs = [(sluice, target)] if target == "sluice" else [(p, target) for p in children(nginx)]
    for pid, t in procs + [(sink, "sink")]:
        for name, u, k in threads(pid):
            key = "mock sink" if t == "sink" else party(t, name)
            a = acc.setdefault(key, [0.0, 0.0])
            a[0] += u
            a[1] += k
    return acc

def machine():
    f = open("/proc/stat").readline().split()
    return (int(f[4]) + int(f[5])) / tick, int(f[8]) / tick

def wrk(url, secs, out):
    with open(out, "w") as fh:
        p = subprocess.Popen(["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--latency", "-s",
                              f"{work}/post.lua", url], stdout=fh)
        _, status, ru = os.wait4(p.pid, 0)
    if status != 0:
        sys.exit(f"wrk failed on {url}")
    return ru.ru_utime, ru.ru_stime

for target in ("nginx", "sluice"):
    wrk(urls[target], 3, f"{work}/warm.out")
cores = os.cpu_count()
for r in range(1, rounds + 1):
    for target in ("nginx", "sluice"):
        before, m0 = snapshot(target), machine()
        wu, wk = wrk(urls[target], duration, f"{work}/wrk.out")
        after, m1 = snapshot(target), machine()
        text = open(f"{work}/wrk.out").read()
        n = int(re.search(r"(\d+) requests in", text).group(1))
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
        us = lambda s: s * 1e6 / n
        print(f"round {r}, {target}: {n} requests, {rps:.0f} req/s; us of CPU per request (user + kernel)")
        total = 0.0
        rows = [(k, after[k][0] - before.get(k, [0, 0])[0], after[k][1] - before.get(k, [0, 0])[1]) for k in after]
        rows.append(("wrk", wu, wk))
        for k, u, s in sorted(rows, key=lambda row: -(row[1] + row[2])):
            if u + s > 0:
                print(f"  {k:<24} {us(u + s):7.1f}  ({us(u):5.1f} + {us(s):5.1f})")
            total += u + s
        idle, steal = m1[0] - m0[0], m1[1] - m0[1]
        print(f"  {'all of the above':<24} {us(total):7.1f}")
        print(f"  {'idle':<24} {us(idle):7.1f}   (stolen by the host: {100 * steal / (cores * duration):.1f}% of {cores} cores)")
PY
