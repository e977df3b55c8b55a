# Shared by the bench scripts: `source "$(dirname "$0")/lib.sh" TOOL...`.
# Sets BIN (the sluice binary: $SLUICE_BIN, else the release build) and SINK_BIN (the mock
# sink's: $SINK_BIN, else BIN), checks that TOOL... and the sluice binary exist, makes the
# scratch directory `$work`, and on exit stops every process whose pid was added to `pids` and
# removes `$work`.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${SLUICE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice}
SINK_BIN=${SINK_BIN:-$BIN}
# The benchmark sinks listen on loopback, which the egress policy refuses by default.
export SLUICE_EGRESS_ALLOW="${SLUICE_EGRESS_ALLOW:-127.0.0.0/8,::1}"

for tool in "$@"; do
  command -v "$tool" >/dev/null || { echo "missing $tool (the script's header says what to install)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "no sluice binary at $BIN (cargo build --release)" >&2; exit 1; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# start_sink [ARG...]: starts the mock sink ($SINK_BIN) on $SINK_PORT with ARG..., logging to
# `$work/sink.log`; its pid joins `pids` and is left in SINK_PID.
start_sink() {
  "$SINK_BIN" bench sink --port "$SINK_PORT" "$@" >"$work/sink.log" 2>&1 &
  SINK_PID=$!
  pids+=($SINK_PID)
}

# start_sluice NAME: migrates a ledger in `$work/data`, makes an API token NAME (left in TOKEN),
# starts sluice on $SLUICE_PORT with health probes off, logging to `$work/sluice.log` (its pid
# joins `pids` and is left in SLUICE_PID), and waits for it and for the sink on $SINK_PORT.
start_sluice() {
  "$BIN" migrate --data-dir "$work/data" >/dev/null 2>&1
  TOKEN=$("$BIN" token create --name "$1" --data-dir "$work/data" 2>/dev/null | tail -n 1)
  "$BIN" serve --data-dir "$work/data" --listen "127.0.0.1:$SLUICE_PORT" --health-interval 0 \
    >"$work/sluice.log" 2>&1 &
  SLUICE_PID=$!
  pids+=($SLUICE_PID)
  wait_port "$SINK_PORT"; wait_port "$SLUICE_PORT"
}

# wait_port PORT: waits up to 10 s for an HTTP answer on 127.0.0.1:PORT.
wait_port() { for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0; sleep 0.1; done; echo "port $1 never answered" >&2; exit 1; }

# post_lua BYTES: writes `$work/post.lua`, a wrk script POSTing BYTES bytes of octet-stream.
post_lua() {
  cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = string.rep("a", $1)
wrk.headers["Content-Type"] = "application/octet-stream"
LUA
}

# api_get PATH [CURL_ARG...]: GETs PATH under sluice's API on $SLUICE_PORT with $TOKEN, failing on
# an error status; CURL_ARG... are passed to curl.
api_get() { local path=$1; shift; curl -sf -H "authorization: Bearer $TOKEN" "$@" "http://127.0.0.1:$SLUICE_PORT/api/v1$path"; }

# new_channel NAME: creates a channel NAME in front of the sink on $SINK_PORT through sluice's API
# on $SLUICE_PORT with $TOKEN, and prints its id.
new_channel() {
  curl -sf -X POST "http://127.0.0.1:$SLUICE_PORT/api/v1/channels" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' -d "{\"name\":\"$1\",\"sink_url\":\"http://127.0.0.1:$SINK_PORT/\"}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
