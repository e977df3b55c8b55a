#!/usr/bin/env bash
# Runs every `sluice bench load` scenario in sequence against a running sluice and mock sink,
# writing a timestamped log and CSV (and optionally charts) under bench/results/.
# Stops at the first scenario that fails.
set -euo pipefail

usage() {
  cat <<USAGE
Usage: bench/run_all.sh [options]

Assumes sluice (sluice serve --egress-allow 127.0.0.1, the sink being on loopback) and the mock
sink (sluice bench sink) are already running.

  --target URL         sluice base URL             (env SLUICE_TARGET, default http://127.0.0.1:4000)
  --sink URL           mock sink base URL          (env SLUICE_SINK,   default http://127.0.0.1:4001)
  --token TOKEN        API token for the channels  (env SLUICE_TOKEN; required)
  --duration D         per scenario, e.g. 30s, 2m  (env DURATION,      default 30s)
  --concurrency N      virtual users               (env CONCURRENCY,   default 20)
  --delay MS           slow_sink delay             (env DELAY_MS,      default 100)
  --proxy-pid PID      sluice pid for memory sampling (default: read from /metrics)
  --charts             also write PNG charts into bench/results/<stamp>-charts/
  --results DIR        where logs/CSV go           (default bench/results)
  --scenarios "A B"    subset to run, in order     (default: all eight)
  -h, --help           this help

The sluice command is \$SLUICE_BIN (default: sluice on PATH); it may contain arguments,
e.g. SLUICE_BIN="target/release/sluice".
USAGE
}

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="${SLUICE_TARGET:-http://127.0.0.1:4000}"
sink="${SLUICE_SINK:-http://127.0.0.1:4001}"
token="${SLUICE_TOKEN:-}"
duration="${DURATION:-30s}"
concurrency="${CONCURRENCY:-20}"
delay="${DELAY_MS:-100}"
proxy_pid=""
charts=0
results="$here/results"
scenarios="direct_sink happy_path ramp_up large_payload large_response mixed_methods slow_sink saturation"

while [[ $# -gt 0 ]]; do
  case "$1" in
    --target) target="$2"; shift 2 ;;
    --sink) sink="$2"; shift 2 ;;
    --token) token="$2"; shift 2 ;;
    --duration) duration="$2"; shift 2 ;;
    --concurrency) concurrency="$2"; shift 2 ;;
    --delay) delay="$2"; shift 2 ;;
    --proxy-pid) proxy_pid="$2"; shift 2 ;;
    --charts) charts=1; shift ;;
    --results) results="$2"; shift 2 ;;
    --scenarios) scenarios="$2"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run_all.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

read -r -a sluice <<< "${SLUICE_BIN:-sluice}"
if ! command -v "${sluice[0]}" > /dev/null; then
  echo "run_all.sh: '${sluice[0]}' not found; build it (cargo build --release -p sluice) and set SLUICE_BIN" >&2
  exit 1
fi
if [[ -z "$token" && "$scenarios" != "direct_sink" ]]; then
  echo "run_all.sh: an API token is needed (--token or SLUICE_TOKEN); create one with: sluice token create --name bench" >&2
  exit 1
fi

mkdir -p "$results"
stamp="$(date +%Y.%m.%d-%H.%M.%S)"
log="$results/$stamp.log"
csv="$results/$stamp.csv"
common=(--target "$target" --sink "$sink" --concurrency "$concurrency" --duration "$duration" --csv "$csv")
[[ -n "$token" ]] && common+=(--token "$token")
[[ -n "$proxy_pid" ]] && common+=(--proxy-pid "$proxy_pid")
[[ "$charts" == 1 ]] && common+=(--charts "$results/$stamp-charts")

echo "run_all.sh: $scenarios" | tee "$log"
echo "run_all.sh: target=$target sink=$sink duration=$duration concurrency=$concurrency" | tee -a "$log"
for scenario in $scenarios; do
  extra=()
  case "$scenario" in
    large_payload) extra=(--payload-size 1048576) ;;
    large_response) extra=(--response-size 1048576) ;;
    slow_sink) extra=(--delay "$delay") ;;
  esac
  echo "=== $scenario ($(date +%H:%M:%S)) ===" | tee -a "$log"
  if ! "${sluice[@]}" bench load --scenario "$scenario" "${common[@]}" "${extra[@]}" 2>&1 | tee -a "$log"; then
    echo "run_all.sh: scenario $scenario failed; see $log" >&2
    exit 1
  fi
done
echo "run_all.sh: done; log $log, CSV $csv" | tee -a "$log"
