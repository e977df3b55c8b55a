#!/usr/bin/env bash
# sluice (recording to SQLite) vs nginx proxying the same mock sink, measured with wrk in one
# session on one machine; then counts the ledger to prove every request was recorded.
#
#   bench/wrk_vs_nginx.sh            # 20 keep-alive connections POSTing 1 KiB for 20 s each
#   DURATION=30s CONNECTIONS=20 PAYLOAD=1024 ROUNDS=2 bench/wrk_vs_nginx.sh
#
# Needs: nginx and wrk (apt-get install nginx-light wrk), a release build of sluice
# (cargo build --release; override the binary with SLUICE_BIN).
set -euo pipefail

DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-20}
THREADS=${THREADS:-1}
PAYLOAD=${PAYLOAD:-1024}
ROUNDS=${ROUNDS:-2}
SINK_PORT=${SINK_PORT:-4301}
NGINX_PORT=${NGINX_PORT:-4302}
SLUICE_PORT=${SLUICE_PORT:-4303}

source "$(dirname "$0")/lib.sh" nginx wrk curl python3
source "$(dirname "$0")/nginx.sh"

start_sink --body-size 256
start_nginx "$work/nginx" "$NGINX_PORT" "$SINK_PORT"
"$BIN" serve --data-dir "$work/data" --listen "127.0.0.1:$SLUICE_PORT" >"$work/sluice.log" 2>&1 &
SLUICE_PID=$!
pids+=($SLUICE_PID)
wait_port "$SINK_PORT"; wait_port "$NGINX_PORT"; wait_port "$SLUICE_PORT"
TOKEN=$("$BIN" token create --name bench --data-dir "$work/data" 2>/dev/null | tail -n 1)

post_lua "$PAYLOAD"

# run <url> -> prints "rps p50_ms p99_ms requests"
run() {
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$work/post.lua" "$1" >"$work/wrk.out"
  python3 - "$work/wrk.out" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"^\s*" + label + r"\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
n = int(re.search(r"(\d+) requests in", t).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
sock = re.search(r"Socket errors: (.*)", t)
print(f"{rps:.0f} {ms('50%'):.3f} {ms('99%'):.3f} {n} {errors.group(1) if errors else 0} {'socket-errors' if sock else ''}")
PY
}

warm=$(new_channel warmup)
wrk -t1 -c"$CONNECTIONS" -d3s -s "$work/post.lua" "http://127.0.0.1:$NGINX_PORT/warm" >/dev/null
wrk -t1 -c"$CONNECTIONS" -d3s -s "$work/post.lua" "http://127.0.0.1:$SLUICE_PORT/channels/$warm/warm" >/dev/null

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, POST $PAYLOAD B, sink body 256 B, $(nproc) cores"
printf "%-8s %-6s %10s %9s %9s %10s %7s\n" round target "req/s" "p50 ms" "p99 ms" requests non2xx
total_wrk=0
for round in $(seq 1 "$ROUNDS"); do
  read -r n_rps n_p50 n_p99 n_req n_err _ < <(run "http://127.0.0.1:$NGINX_PORT/r$round")
  printf "%-8s %-6s %10s %9s %9s %10s %7s\n" "$round" nginx "$n_rps" "$n_p50" "$n_p99" "$n_req" "$n_err"
  ch=$(new_channel "round-$round")
  rss_before=$(awk '/VmRSS/ {print $2}' /proc/$SLUICE_PID/status)
  read -r s_rps s_p50 s_p99 s_req s_err _ < <(run "http://127.0.0.1:$SLUICE_PORT/channels/$ch/r$round")
  rss_after=$(awk '/VmRSS/ {print $2}' /proc/$SLUICE_PID/status)
  printf "%-8s %-6s %10s %9s %9s %10s %7s\n" "$round" sluice "$s_rps" "$s_p50" "$s_p99" "$s_req" "$s_err"
  # Every request wrk completed must be in the ledger, finished (wrk may abandon a few in flight
  # at the end: those are recorded too, so the ledger may hold up to CONNECTIONS more).
  for _ in $(seq 1 50); do
    stats=$(curl -sf -H "authorization: Bearer $TOKEN" "http://127.0.0.1:$SLUICE_PORT/api/v1/channels/$ch/stats?since=2000-01-01T00:00:00Z")
    pending=$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["by_state"]["pending"])')
    [ "$pending" = 0 ] && break
    sleep 0.2
  done
  recorded=$(echo "$stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')
  python3 - "$s_rps" "$n_rps" "$s_p50" "$n_p50" "$s_p99" "$n_p99" "$s_req" "$recorded" "$pending" "$rss_before" "$rss_after" <<'PY'
import sys
s_rps, n_rps, s50, n50, s99, n99 = map(float, sys.argv[1:7])
wrk_n, recorded, pending, rb, ra = map(int, sys.argv[7:12])
print(f"         ratio sluice/nginx: throughput {s_rps/n_rps:.2f}x, p50 {s50/n50:.2f}x, p99 {s99/n99:.2f}x")
print(f"         ledger: {recorded} recorded for {wrk_n} completed by wrk, {pending} pending"
      f" -> {'OK' if recorded >= wrk_n and pending == 0 else 'MISSING RECORDS'}; sluice RSS {rb//1024} -> {ra//1024} MiB")
PY
done
