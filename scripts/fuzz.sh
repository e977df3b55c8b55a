#!/usr/bin/env bash
# Runs every property ("fuzz_…") test of the parsers and checks that face hostile input — the
# header pipeline, the URL join and path check, the request-id rule, the journal's line reader
# and encoder, the duration parser, credential injection and the preview scrub — for a fixed
# budget each: new random cases run after run (proptest draws a fresh seed each time) until
# BUDGET seconds (default 600) have passed per target. `cargo fuzz` needs a nightly toolchain,
# which this project's machines do not have; proptest needs none.
#
# A failing case is shrunk and written by proptest to `proptest-regressions/` beside its
# source, which is committed: it is the corpus, replayed first by every later `cargo test`, and
# a finding becomes a regression test. CASES (default 10000) is the cases per run.
set -euo pipefail
cd "$(dirname "$0")/.."
budget="${BUDGET:-600}"
cases="${CASES:-10000}"
targets=(
  "sluice-core fuzz_a_path_let_through_stays_under_the_sink_path"
  "sluice-core fuzz_the_path_check_takes_any_text"
  "sluice-core fuzz_a_kept_request_id_is_always_a_header_value"
  "sluice-core fuzz_no_hop_by_hop_or_connection_listed_header_is_forwarded"
  "sluice-core fuzz_no_secret_survives_a_scrub"
  "sluice-core fuzz_any_header_value_and_preview"
  "sluice-core fuzz_any_credential_body_yields_a_header_or_a_reason"
  "sluice-store fuzz_a_segment_line_is_read_or_refused"
  "sluice-store fuzz_any_record_encodes_as_serde_json_does_and_reads_back"
  "sluice:sluice fuzz_the_duration_parser_answers_any_text"
  "sluice:sluice fuzz_a_number_and_unit_read_back_exactly"
)
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in "${targets[@]}"; do
  read -r crate name <<<"$target"
  # `crate` names a library's tests, `crate:bin` a binary's.
  case "$crate" in
    *:*) which=(-p "${crate%%:*}" --bin "${crate#*:}") ;;
    *) which=(-p "$crate" --lib) ;;
  esac
  # Built before the clock starts, so the budget is spent on cases.
  cargo test -q "${which[@]}" --no-run >"$log" 2>&1 || { cat "$log"; exit 1; }
  end=$((SECONDS + budget))
  runs=0
  while [ "$SECONDS" -lt "$end" ]; do
    PROPTEST_CASES="$cases" cargo test -q "${which[@]}" "$name" >"$log" 2>&1 \
      || { cat "$log"; echo "FAILED: $crate $name"; exit 1; }
    grep -q "1 passed" "$log" || { cat "$log"; echo "NOT FOUND: $crate $name"; exit 1; }
    runs=$((runs + 1))
  done
  echo "$crate $name: $runs runs of $cases cases, no failure"
done
