#!/usr/bin/env bash
# sluice against nginx on the same machine: starts the mock sink, a fresh sluice and an nginx
# reverse proxy (both in front of that sink), drives the same scenario through each with
# `sluice bench load`, and prints throughput, p50 and p99 for both, the ratios sluice/nginx and
# sluice's memory delta. Every process it starts is stopped on exit.
set -euo pipefail
# The benchmark sinks listen on loopback, which the egress policy refuses by default.
export SLUICE_EGRESS_ALLOW="${SLUICE_EGRESS_ALLOW:-127.0.0.0/8,::1}"

usage() {
  cat <<USAGE
Usage: bench/compare.sh [options]

  --scenario NAME      load scenario                       (default happy_path)
  --concurrency N      virtual users                       (default 20)
  --duration D         length of each run, e.g. 30s        (default 30s)
  --warmup D           unmeasured run before each measured one (default: none)
  --only WHICH         run only "sluice" or "nginx"        (default: both)
  --rounds N           alternate the runs N times (sluice, nginx, sluice, ...) and report
                       each round's ratios and their median (default 1): the machine
                       drifts between runs, neighbouring runs drift less
  --charts             write PNG charts next to the results
  --results DIR        where logs and CSV go               (default bench/results)
  -h, --help           this help
  Any other option is passed to both 'sluice bench load' runs (e.g. --payload-size 1048576).

Ports: SINK_PORT (18081), SLUICE_PORT (18080), NGINX_PORT (18082).
The sluice command is \$SLUICE_BIN (default: target/release/sluice if built, else sluice on PATH).
Needs nginx (Debian: apt-get install nginx-light wrk).
USAGE
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
scenario=happy_path
concurrency=20
duration=30s
warmup=""
only=both
rounds=1
charts=0
results="$here/results"
passthrough=()
sink_port="${SINK_PORT:-18081}"
sluice_port="${SLUICE_PORT:-18080}"
nginx_port="${NGINX_PORT:-18082}"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --scenario) scenario="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --warmup) warmup="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --charts) charts=1; shift ;;
    --results) results="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) passthrough+=("$1"); shift ;;
  esac
done
case "$only" in both|sluice|nginx) ;; *) echo "compare.sh: --only takes sluice or nginx" >&2; exit 2 ;; esac
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: --rounds takes a whole number from 1" >&2; exit 2; }

default_bin="${CARGO_TARGET_DIR:-$repo/target}/release/sluice"
[[ -x "$default_bin" ]] || default_bin=sluice
read -r -a sluice <<< "${SLUICE_BIN:-$default_bin}"
if ! command -v "${sluice[0]}" > /dev/null; then
  echo "compare.sh: '${sluice[0]}' not found; build it with 'cargo build --release -p sluice' or set SLUICE_BIN" >&2
  exit 1
fi
source "$(dirname "$0")/nginx.sh"
if [[ "$only" != sluice ]] && ! command -v nginx > /dev/null; then
  echo "compare.sh: nginx is not installed. On Debian/Ubuntu: apt-get install nginx-light wrk" >&2
  exit 1
fi
if ! command -v wrk > /dev/null; then
  echo "compare.sh: note: wrk is not installed (optional cross-check tool): apt-get install wrk" >&2
fi

tmp="$(mktemp -d -t sluice-compare.XXXXXX)"
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "$pid" 2> /dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2> /dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# wait_port PORT PID NAME LOG: waits until PORT accepts connections while PID is alive.
wait_port() {
  local port="$1" pid="$2" name="$3" log="$4" tries=0
  until (exec 3<> "/dev/tcp/127.0.0.1/$port") 2> /dev/null; do
    if ! kill -0 "$pid" 2> /dev/null; then
      echo "compare.sh: $name exited during start-up:" >&2
      cat "$log" >&2 || true
      exit 1
    fi
    tries=$((tries + 1))
    if [[ $tries -gt 300 ]]; then
      echo "compare.sh: $name did not listen on port $port within 30 s" >&2
      exit 1
    fi
    sleep 0.1
  done
}

mkdir -p "$results"
stamp="$(date +%Y.%m.%d-%H.%M.%S)"
log="$results/compare-$stamp.log"
csv="$results/compare-$stamp.csv"
exec > >(tee "$log") 2>&1

echo "compare.sh: $scenario, $concurrency VUs, $duration per run, on $(nproc) cores"

"${sluice[@]}" bench sink --port "$sink_port" > "$tmp/sink.log" 2>&1 &
sink_pid=$!
pids+=("$sink_pid")
wait_port "$sink_port" "$sink_pid" "mock sink" "$tmp/sink.log"
sink_url="http://127.0.0.1:$sink_port"

load=("${sluice[@]}" bench load --scenario "$scenario" --sink "$sink_url"
  --concurrency "$concurrency" "${passthrough[@]}")

# cpu_ticks: the machine's stolen and total CPU ticks so far (/proc/stat; steal is the time the
# VM's host ran something else while this guest had work).
cpu_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print $9, t }' /proc/stat; }

# measure NAME ROUND ARGS...: optional warm-up (first round only), then one measured run
# appending to the CSV; the share of CPU stolen by the host during the run is appended to
# $tmp/steal, a line per run in the CSV's order.
measure() {
  local name="$1" round="$2"
  shift 2
  if [[ -n "$warmup" && "$round" == 1 ]]; then
    echo "--- $name: warm-up ($warmup) ---"
    "${load[@]}" --duration "$warmup" "$@" > /dev/null
  fi
  echo "--- $name ---"
  # Each side gets its own chart directory: the file names are per scenario, not per target.
  local charts_args=()
  [[ "$charts" == 1 ]] && charts_args=(--charts "$results/compare-$stamp-charts/$name-$round")
  local before after
  before="$(cpu_ticks)"
  "${load[@]}" --duration "$duration" --csv "$csv" "${charts_args[@]}" "$@"
  after="$(cpu_ticks)"
  awk -v b="$before" -v a="$after" 'BEGIN { split(b, x, " "); split(a, y, " ");
    printf "%.1f\n", (y[2] > x[2]) ? 100 * (y[1] - x[1]) / (y[2] - x[2]) : 0 }' >> "$tmp/steal"
}

if [[ "$only" != nginx ]]; then
  export SLUICE_DATA_DIR="$tmp/sluice-data"
  "${sluice[@]}" serve --data-dir "$SLUICE_DATA_DIR" --listen "127.0.0.1:$sluice_port" \
    > "$tmp/sluice.log" 2>&1 &
  sluice_pid=$!
  pids+=("$sluice_pid")
  wait_port "$sluice_port" "$sluice_pid" "sluice" "$tmp/sluice.log"
  token="$("${sluice[@]}" token create --name bench --data-dir "$SLUICE_DATA_DIR" | tail -n 1)"
fi

if [[ "$only" != sluice ]]; then
  start_nginx "$tmp/nginx" "$nginx_port" "$sink_port"
  wait_port "$nginx_port" "$NGINX_PID" "nginx" "$tmp/nginx/error.log"
fi

for round in $(seq 1 "$rounds"); do
  [[ "$rounds" -gt 1 ]] && echo "=== round $round of $rounds ==="
  if [[ "$only" != nginx ]]; then
    measure sluice "$round" --target "http://127.0.0.1:$sluice_port" --token "$token" --proxy-pid "$sluice_pid"
  fi
  if [[ "$only" != sluice ]]; then
    measure nginx "$round" --raw-url "http://127.0.0.1:$nginx_port"
  fi
done

# Summary from the CSV (one row per measured run, sluice first in each round when both ran)
# and the steal of each run. Over several rounds each side's figure is the median of its runs
# and each ratio the median of the rounds' ratios.
awk -F, -v only="$only" -v stealfile="$tmp/steal" '
  function median(a, k,    i, j, t, b) {
    for (i = 1; i <= k; i++) b[i] = a[i]
    for (i = 2; i <= k; i++) for (j = i; j > 1 && b[j - 1] > b[j]; j--) { t = b[j]; b[j] = b[j - 1]; b[j - 1] = t }
    return (k % 2) ? b[(k + 1) / 2] : (b[k / 2] + b[k / 2 + 1]) / 2
  }
  NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
  {
    n++
    side = (only == "nginx" || (only == "both" && n % 2 == 0)) ? "nginx" : "sluice"
    k = ++runs[side]
    rps[side, k] = $col["throughput_rps"]; p50[side, k] = $col["p50_us"] / 1000; p99[side, k] = $col["p99_us"] / 1000
    err[side] += $col["errors"]; req[side] += $col["requests"]
    if ((getline line < stealfile) > 0) steal[side, k] = line
    if (side == "sluice" && $col["mem_start_kib"] != "") {
      if (k == 1) mstart = $col["mem_start_kib"]
      if ($col["mem_max_kib"] > mmax) mmax = $col["mem_max_kib"]
      mend = $col["mem_start_kib"] + $col["mem_delta_kib"]
      mem = 1
    }
  }
  END {
    m = 0
    for (si = 1; si <= 2; si++) {
      s = (si == 1) ? "sluice" : "nginx"
      if (!(s in runs)) continue
      names[++m] = s
      for (k = 1; k <= runs[s]; k++) { a[k] = rps[s, k]; b[k] = p50[s, k]; c[k] = p99[s, k] }
      mrps[s] = median(a, runs[s]); mp50[s] = median(b, runs[s]); mp99[s] = median(c, runs[s])
    }
    both = (m == 2)
    rounds = runs[names[1]]
    if (both) for (k = 1; k <= rounds; k++) {
      rr[k] = rps["sluice", k] / rps["nginx", k]; r50[k] = p50["sluice", k] / p50["nginx", k]; r99[k] = p99["sluice", k] / p99["nginx", k]
    }
    print ""
    if (both && rounds > 1) {
      printf "%-6s%14s%14s%10s%10s%10s%16s\n", "round", "sluice req/s", "nginx req/s", "ratio", "p50", "p99", "stolen s/n %"
      for (k = 1; k <= rounds; k++)
        printf "%-6d%14.1f%14.1f%10.2f%10.2f%10.2f%16s\n", k, rps["sluice", k], rps["nginx", k], rr[k], r50[k], r99[k], steal["sluice", k] "/" steal["nginx", k]
      print ""
    }
    label = (rounds > 1) ? "median of " rounds " runs" : ""
    printf "%-16s", label; for (i = 1; i <= m; i++) printf "%14s", names[i]
    if (both) printf "%16s", "sluice/nginx"; print ""
    printf "%-16s", "throughput req/s"; for (i = 1; i <= m; i++) printf "%14.1f", mrps[names[i]]
    if (both) printf "%16.2f", median(rr, rounds); print ""
    printf "%-16s", "p50 ms"; for (i = 1; i <= m; i++) printf "%14.3f", mp50[names[i]]
    if (both) printf "%16.2f", median(r50, rounds); print ""
    printf "%-16s", "p99 ms"; for (i = 1; i <= m; i++) printf "%14.3f", mp99[names[i]]
    if (both) printf "%16.2f", median(r99, rounds); print ""
    printf "%-16s", "errors/requests"; for (i = 1; i <= m; i++) printf "%14s", err[names[i]] "/" req[names[i]]; print ""
    if (mem) printf "sluice memory: start %.1f MiB, max %.1f MiB, delta %+.1f MiB\n", mstart / 1024, mmax / 1024, (mend - mstart) / 1024
    # Runs on a VM whose host takes CPU away are not comparable: the runs are sequential, so
    # steal during one of them moves the ratio (seen here: 0-25% in 5 s windows).
    line = ""; worst = 0
    for (i = 1; i <= m; i++) for (k = 1; k <= runs[names[i]]; k++) {
      v = steal[names[i], k]; if (v + 0 > worst) worst = v + 0
      if (rounds == 1) line = line (line == "" ? "" : ", ") names[i] " " v "%"
    }
    if (rounds == 1) print "CPU stolen by the VM'"'"'s host during the runs: " line
    if (worst > 2) print "compare.sh: warning: over 2% of the CPU was stolen during a run; its ratios are not comparable"
  }' "$csv"
echo
echo "compare.sh: log $log, CSV $csv"
