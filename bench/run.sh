#!/usr/bin/env bash
# Runs every benchmark against the freshly built palm binary. Usage: bench/run.sh [BUILD_DIR]
set -euo pipefail
build=${1:-build}
"$build/bench/spawn_bench" "$build/src/palm/palm" "${PALM_BENCH_N:-1000}" "${PALM_BENCH_M:-50}"
"$build/bench/health_bench" "$build/src/palm/palm" "$build/bench/tiny_http_agent" \
  "${PALM_BENCH_N:-1000}" "${PALM_BENCH_WINDOW_S:-10}" "${PALM_BENCH_EVENTS:-200}"
"$build/bench/task_bench" "$build/src/palm/palm" "$build/bench/task_agent" \
  "${PALM_BENCH_AGENTS:-50}" "${PALM_BENCH_CONNS:-32}" "${PALM_BENCH_SECONDS:-10}"
"$build/bench/rollout_bench" "$build/src/palm/palm" \
  --replicas "${PALM_BENCH_REPLICAS:-100}" --repeats "${PALM_BENCH_REPEATS:-1}"
"$build/bench/log_burst_bench" "$build/src/palm/palm" "${PALM_BENCH_LOG_MIB:-1024}"
"$build/bench/http_idle_bench" "$build/src/palm/palm" \
  "${PALM_BENCH_HTTP_CONNS:-8}" "${PALM_BENCH_SECONDS:-5}" "${PALM_BENCH_IDLE:-2000}"
