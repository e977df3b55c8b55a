#!/usr/bin/env bash
# Builds sluice's release binary with profile-guided optimisation (PGO): an instrumented build
# runs a training load in every role the binary has (the gateway, the mock sink, the load
# generator, the API's history readers), its profile is merged, and the release build is made
# again with that profile. The result is the binary docs/BENCHMARKS.md measures from session 25.
#
#   bench/pgo_build.sh                  # prints the optimised binary's path on its last line
#   TRAIN=15 bench/pgo_build.sh         # seconds of happy_path in the training (default 15)
#
# The two builds use target directories of their own inside $CARGO_TARGET_DIR (or ./target):
# `pgo-gen` and `pgo`, so the ordinary build's cache is left alone; each takes as long as a
# release build. Extra cargo settings pass through the environment (CARGO_PROFILE_RELEASE_LTO=fat).
# Needs: llvm-profdata reading the raw profiles of rustc's LLVM (format 10: LLVM 19 to 22; Debian's
# `apt-get install llvm-19`, or `rustup component add llvm-tools`), curl, python3.
set -euo pipefail

TRAIN=${TRAIN:-15}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
GEN_TARGET=$TARGET/pgo-gen
PGO_TARGET=$TARGET/pgo

# The rustup component matches rustc's LLVM; else the newest Debian LLVM; `llvm-profdata` on the
# PATH last (Debian's default is LLVM 14, too old for these profiles).
profdata=
for candidate in "$(rustc --print sysroot)"/lib/rustlib/*/bin/llvm-profdata \
  /usr/lib/llvm-{22,21,20,19}/bin/llvm-profdata "$(command -v llvm-profdata || true)"; do
  [ -x "$candidate" ] && { profdata=$candidate; break; }
done
[ -n "$profdata" ] || { echo "pgo_build.sh: no llvm-profdata (apt-get install llvm-19)" >&2; exit 1; }

# Fixed paths, so that a second run rebuilds only what changed.
raw="$GEN_TARGET/profiles"
mkdir -p "$PGO_TARGET"
echo "pgo_build.sh: instrumented build in $GEN_TARGET" >&2
(cd "$ROOT" && CARGO_TARGET_DIR="$GEN_TARGET" RUSTFLAGS="-Cprofile-generate=$raw" \
  cargo build --release --locked -p sluice >&2)
# Only the training's profiles: the build's own scripts, instrumented too, leave theirs here.
rm -rf "$raw"; mkdir -p "$raw"

# The training: every process is the instrumented binary and ends normally (SIGINT for the sink,
# SIGTERM for the gateway), which is when it writes its profile.
SLUICE_BIN="$GEN_TARGET/release/sluice" SINK_PORT=4901 SLUICE_PORT=4903 TRAIN=$TRAIN ROOT=$ROOT \
  bash -s >&2 <<'TRAINING'
set -euo pipefail
source "$ROOT/bench/lib.sh" curl python3
start_sink
start_sluice pgo
CH=$(new_channel pgo)
load() {
  "$BIN" bench load --target "http://127.0.0.1:$SLUICE_PORT" --sink "http://127.0.0.1:$SINK_PORT" \
    --token "$TOKEN" --channel "$CH" "$@" | grep -E "Requests:|Errors:"
}
load --scenario happy_path --concurrency 20 --duration "${TRAIN}s"
load --scenario direct_sink --concurrency 20 --duration 3s
load --scenario mixed_methods --concurrency 20 --duration 3s
load --scenario large_payload --concurrency 4 --duration 3s
load --scenario large_response --concurrency 4 --duration 3s
load --scenario slow_sink --concurrency 20 --duration 2s
ID=$(api_get "/channels/$CH/requests?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
for _ in 1 2 3; do
  for q in "/channels/$CH/requests?limit=50" "/channels/$CH/requests?limit=50&status=5xx" \
    "/channels/$CH/requests?limit=50&path_prefix=/none" "/requests/$ID" "/channels/$CH/stats" /channels; do
    api_get "$q" >/dev/null
  done
done
kill -TERM "$SLUICE_PID"; wait "$SLUICE_PID" || true
kill -INT "$SINK_PID"; wait "$SINK_PID" || true
TRAINING

"$profdata" merge -o "$raw/merged.profdata" "$raw"/*.profraw
# Named by its content: cargo does not watch the file, only the flags that name it. Earlier
# runs' profiles are no longer named by any flag, so they go.
profile="$PGO_TARGET/sluice-$(sha256sum "$raw/merged.profdata" | cut -c1-16).profdata"
rm -f "$PGO_TARGET"/sluice-*.profdata
mv "$raw/merged.profdata" "$profile"
echo "pgo_build.sh: optimised build in $PGO_TARGET" >&2
(cd "$ROOT" && CARGO_TARGET_DIR="$PGO_TARGET" RUSTFLAGS="-Cprofile-use=$profile" \
  cargo build --release --locked -p sluice >&2)
echo "$PGO_TARGET/release/sluice"
