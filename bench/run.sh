#!/usr/bin/env bash
# Runs every benchmark against the freshly built palm binary. Usage: bench/run.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
"$build/bench/spawn_bench" "$build/src/palm/palm" "${PALM_BENCH_N:-1000}" "${PALM_BENCH_M:-50}"
