#!/usr/bin/env bash
# Runs every libFuzzer target of a PALM_FUZZ build for a set time over its seed corpus.
# Usage: scripts/fuzz.sh BUILD_DIR [SECONDS]   (default 60 s a target)
# New inputs go to BUILD_DIR/fuzz-work/<target>/ (the seeds in fuzz/corpus/ are not touched);
# a crash leaves its input as BUILD_DIR/fuzz-work/<target>/crash-* and fails the run.
# Prints one line a target (runs, execs/s) and closes with "fuzz: N passed, N failed".
set -uo pipefail
build=${1:?usage: scripts/fuzz.sh BUILD_DIR [SECONDS]}
seconds=${2:-60}
root=$(cd "$(dirname "$0")/.." && pwd)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

passed=0
failed=0
shopt -s nullglob
targets=("$build"/fuzz/*_fuzz)
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no targets in $build/fuzz (build them with: make fuzz)" >&2
  exit 1
fi
for bin in "${targets[@]}"; do
  name=$(basename "$bin")
  work="$build/fuzz-work/$name"
  mkdir -p "$work/corpus"
  seeds="$root/fuzz/corpus/$name"
  log="$work/last.log"
  args=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536
        -print_final_stats=1 -artifact_prefix="$work/" "$work/corpus")
  [ -d "$seeds" ] && args+=("$seeds")
  if "$bin" "${args[@]}" >"$log" 2>&1; then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$')
    printf '  %-24s ok   %10s runs  %7s/s  (%s s)\n' "$name" "${runs:-?}" "${rate:-?}" "$seconds"
    passed=$((passed + 1))
  else
    printf '  %-24s FAILED (see %s)\n' "$name" "$log"
    grep -E 'ERROR:|runtime error|SUMMARY|Test unit written' "$log" | head -10 | sed 's/^/    /'
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
