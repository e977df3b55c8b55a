#!/usr/bin/env bash
# Throughput of a Basic-auth channel against a public channel under the same load: the ratio
# shows what source authentication costs per request once a credential is verified (argon2 runs
# once; later requests hit the verified-credential cache). The issue's target is >= 0.9.
#
#   bench/auth_vs_public.sh                                 # 20 connections, 20 s per round, 2 rounds
#   DURATION=3s CONNECTIONS=4 ROUNDS=1 bench/auth_vs_public.sh   # a quick check that it works
#
# Needs: wrk, curl, python3 and a release build of sluice (cargo build --release; override the
# binary with SLUICE_BIN). Rounds alternate public and Basic so drift hits both alike.
set -euo pipefail

DURATION=${DURATION:-20s}
CONNECTIONS=${CONNECTIONS:-20}
THREADS=${THREADS:-1}
ROUNDS=${ROUNDS:-2}
SINK_PORT=${SINK_PORT:-4311}
SLUICE_PORT=${SLUICE_PORT:-4313}

source "$(dirname "$0")/lib.sh" wrk curl python3

start_sink --body-size 256
"$BIN" serve --data-dir "$work/data" --listen "127.0.0.1:$SLUICE_PORT" >"$work/sluice.log" 2>&1 &
pids+=($!)
wait_port "$SINK_PORT"; wait_port "$SLUICE_PORT"
TOKEN=$("$BIN" token create --name bench --data-dir "$work/data" 2>/dev/null | tail -n 1)
API="http://127.0.0.1:$SLUICE_PORT/api/v1"

post() { # path json -> the answer's id
  curl -sf -X POST "$API/$1" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' -d "$2" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

USER=bench
PASS=bench-password-$RANDOM$RANDOM
METHOD=$(post auth-methods "{\"name\":\"bench-basic\",\"type\":\"basic\",\"username\":\"$USER\",\"password\":\"$PASS\"}")
PUBLIC=$(post channels "{\"name\":\"public\",\"sink_url\":\"http://127.0.0.1:$SINK_PORT/\"}")
GUARDED=$(post channels "{\"name\":\"basic\",\"sink_url\":\"http://127.0.0.1:$SINK_PORT/\",\"source_auth_method_ids\":[\"$METHOD\"]}")
AUTH="Basic $(printf '%s:%s' "$USER" "$PASS" | base64 -w0)"

# Both channels must answer 200 before measuring (and the Basic one must refuse a wrong password).
check() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
[ "$(check "http://127.0.0.1:$SLUICE_PORT/channels/$PUBLIC/x")" = 200 ] || { echo "public channel does not answer 200" >&2; exit 1; }
[ "$(check -H "authorization: $AUTH" "http://127.0.0.1:$SLUICE_PORT/channels/$GUARDED/x")" = 200 ] || { echo "Basic channel does not admit" >&2; exit 1; }
[ "$(check -u "$USER:wrong" "http://127.0.0.1:$SLUICE_PORT/channels/$GUARDED/x")" = 404 ] || { echo "Basic channel admits a wrong password" >&2; exit 1; }

rps() { # url [header] -> requests/s
  local out
  if [ $# -gt 1 ]; then
    out=$(wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" -H "$2" "$1")
  else
    out=$(wrk -t "$THREADS" -c "$CONNECTIONS" -d "$DURATION" "$1")
  fi
  echo "$out" >>"$work/wrk.log"
  if echo "$out" | grep -q 'Non-2xx'; then echo "non-2xx answers during the run:" >&2; echo "$out" >&2; exit 1; fi
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}

pub_total=0; basic_total=0
for round in $(seq 1 "$ROUNDS"); do
  p=$(rps "http://127.0.0.1:$SLUICE_PORT/channels/$PUBLIC/bench")
  b=$(rps "http://127.0.0.1:$SLUICE_PORT/channels/$GUARDED/bench" "authorization: $AUTH")
  printf 'round %s: public %s req/s, basic %s req/s\n' "$round" "$p" "$b"
  pub_total=$(python3 -c "print($pub_total + $p)")
  basic_total=$(python3 -c "print($basic_total + $b)")
done
python3 - "$pub_total" "$basic_total" "$CONNECTIONS" "$DURATION" "$ROUNDS" <<'PY'
import sys
pub, basic, conns, dur, rounds = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
print(f"connections={conns} duration={dur} rounds={rounds}")
print(f"public  {pub / int(rounds):10.1f} req/s")
print(f"basic   {basic / int(rounds):10.1f} req/s")
print(f"ratio basic/public = {basic / pub:.3f}")
PY
