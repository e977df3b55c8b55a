#!/usr/bin/env bash
# Throughput on PostgreSQL against SQLite, and of two nodes sharing one PostgreSQL database
# against one: happy_path (`sluice bench load`, POST 1 KiB) for DURATION per run, ROUNDS rounds
# alternating the three set-ups on the same machine:
#   sqlite  one node on its SQLite ledger
#   pg1     one node on a fresh PostgreSQL database
#   pg2     two nodes on one database, each driven by its own load generator at the same
#           time with the same concurrency; their throughputs are added
# Prints each run and the medians, with the ratios pg1/sqlite and pg2/pg1.
#
#   bench/pg_nodes.sh                          # release build, 3 rounds of 20 s
#   ROUNDS=1 DURATION=5s bench/pg_nodes.sh     # a quick check
#
# Needs: a PostgreSQL server at $PG_ADMIN (default postgres://postgres@127.0.0.1:5432/postgres,
# trust auth), psql, curl.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-20s}
WARMUP=${WARMUP:-3s}
CONCURRENCY=${CONCURRENCY:-20}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
SINK_PORT=${SINK_PORT:-4561}

source "$(dirname "$0")/lib.sh" psql curl

start_sink
db=sluice_bench_nodes
pg_url="${PG_ADMIN%/*}/$db"

# node NAME PORT [LEDGER ARGS...]: starts a sluice node on PORT (health probes off), its data
# directory $work/NAME; prints its pid.
node() {
  local name=$1 port=$2
  shift 2
  "$BIN" serve --data-dir "$work/$name" --listen "127.0.0.1:$port" --health-interval 0 "$@" \
    >"$work/$name.log" 2>&1 &
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
  echo $!
}

# load PORT TOKEN DURATION: one happy_path run against the node on PORT; prints req/s.
load() {
  "$BIN" bench load --scenario happy_path --sink "http://127.0.0.1:$SINK_PORT" \
    --target "http://127.0.0.1:$1" --token "$2" --concurrency "$CONCURRENCY" --duration "$3" \
    | awk '!found && tolower($0) ~ /throughput/ { for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) { print $i; found = 1; break } }'
}

# setup NAME: starts the set-up's nodes (stopping the previous ones), leaving their ports in
# PORTS and a token per node in TOKENS.
setup() {
  for p in "${node_pids[@]:-}"; do
    [ -n "$p" ] || continue
    kill "$p" 2>/dev/null || true
    while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
  done
  node_pids=() PORTS=() TOKENS=()
  case $1 in
    sqlite)
      rm -rf "$work/sqlite"
      TOKENS+=("$("$BIN" token create --name bench --data-dir "$work/sqlite" | tail -n 1)")
      node_pids+=("$(node sqlite 4562)"); PORTS+=(4562); pids+=("${node_pids[@]}") ;;
    pg1|pg2)
      psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db" >/dev/null
      local n=1; [ "$1" = pg2 ] && n=2
      for i in $(seq 1 $n); do
        rm -rf "$work/pg-$i"
        TOKENS+=("$("$BIN" token create --name "bench-$i" --data-dir "$work/pg-$i" --database-url "$pg_url" | tail -n 1)")
        node_pids+=("$(node "pg-$i" $((4562 + i)) --database-url "$pg_url")"); PORTS+=($((4562 + i)))
      done
      pids+=("${node_pids[@]}") ;;
  esac
}

# run NAME: warms up, then drives every node of the set-up at once; leaves the total req/s in
# RPS (not printed: the set-up's nodes must stay this shell's, to be stopped by the next).
run() {
  setup "$1"
  local i out=()
  # The first node's load makes the bench channel, which every node then finds.
  load "${PORTS[0]}" "${TOKENS[0]}" 1s >/dev/null
  for i in "${!PORTS[@]}"; do load "${PORTS[$i]}" "${TOKENS[$i]}" "$WARMUP" >/dev/null & done
  wait_loads
  for i in "${!PORTS[@]}"; do load "${PORTS[$i]}" "${TOKENS[$i]}" "$DURATION" >"$work/out-$i" & done
  wait_loads
  for i in "${!PORTS[@]}"; do out+=("$(cat "$work/out-$i")"); done
  RPS=$(printf '%s\n' "${out[@]}" | awk '{ s += $1 } END { printf "%.0f\n", s }')
}

# Waits for the load generators (not the nodes or the sink, which are in `pids`).
wait_loads() { for j in $(jobs -p); do case " ${pids[*]} " in *" $j "*) ;; *) wait "$j" ;; esac; done; }

declare -A results=()
for r in $(seq 1 "$ROUNDS"); do
  for setup_name in sqlite pg1 pg2; do
    run "$setup_name"
    results[$setup_name]+="$RPS "
    echo "round $r  $setup_name  $RPS req/s"
  done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
s=$(echo "${results[sqlite]}" | median); p1=$(echo "${results[pg1]}" | median); p2=$(echo "${results[pg2]}" | median)
echo "medians: sqlite $s, pg one node $p1, pg two nodes $p2 req/s"
awk -v s="$s" -v a="$p1" -v b="$p2" 'BEGIN { printf "pg1/sqlite %.2f, pg2/pg1 %.2f\n", a / s, b / a }'
psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
