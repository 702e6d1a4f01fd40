#!/usr/bin/env bash
# Runs one pre-built libFuzzer target for a bounded time from its seed corpus (used by the
# fuzz.run.* ctest tests and by scripts/fuzz). Exit 0 = no crash, leak, timeout or broken
# invariant; otherwise the crashing input is kept under <work>/artifacts/.
#   run_target.sh BINARY SEEDS_DIR WORK_DIR SECONDS [MAX_LEN]
set -euo pipefail
bin=$1 seeds=$2 work=$3 secs=$4 maxlen=${5:-4096}
mkdir -p "$work/corpus" "$work/artifacts"
export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
# A fixed seed (FUZZ_SEED) makes a CI run repeatable; long runs may vary it.
if "$bin" "$work/corpus" "$seeds" -seed="${FUZZ_SEED:-1}" -max_total_time="$secs" -max_len="$maxlen" -timeout=10 \
     -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" >"$work/log" 2>&1; then
  grep -E '^stat::(number_of_executed_units|new_units_added)' "$work/log" | tr '\n' ' '; echo
  exit 0
fi
echo "fuzz target $(basename "$bin") FAILED; last lines of $work/log:"
tail -n 40 "$work/log"
ls -1 "$work/artifacts" 2>/dev/null | sed "s|^|artifact: $work/artifacts/|"
exit 1
