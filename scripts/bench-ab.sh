#!/usr/bin/env bash
# scripts/bench-ab.sh — the same load against two tidemark binaries, alternated.
#
#   ./scripts/bench-ab.sh BINARY_A BINARY_B [ROUNDS] [SECONDS] [EXTRA_YAML]
#
# Runs A, B, A, B, ... (ROUNDS pairs, default 2) of the baseline load of
# scripts/bench.sh (8 partitions, 64 connections, 50-event batches, SECONDS of
# load, default 20) on a fresh data dir each, waits until every acknowledged
# event is in the lake, and prints one line per run: acknowledged events/s,
# ack latency, the server's user+system CPU per event during the SECONDS of
# load ("burst": what ingest, and the pipeline's share while it yields, costs
# per event) and from start until the lake is complete (from /proc/PID/stat:
# less disturbed by the machine's other load than wall time), delivered
# events/s (events in the lake over the time from the start of the load until
# the last one was committed), max RSS, and the lake check. EXTRA_YAML is
# added at the top level of both configs (for example
# 'ingest: {priority_lag: 0s}'). Alternating and comparing medians in one run
# is the only fair comparison on a shared, noisy machine.
set -euo pipefail
[ $# -ge 2 ] || { sed -n '2,18p' "$0"; exit 2; }
. "$(dirname "${BASH_SOURCE[0]}")/bench-lib.sh"
a=$(realpath "$1") b=$(realpath "$2") rounds=${3:-2} secs=${4:-20} extra=${5:-}
work=$(mktemp -d)
trap 'pkill -f "$work/.*/cfg.yaml" 2>/dev/null || true; rm -rf "$work"' EXIT
port=18183
clk=$(getconf CLK_TCK)

run() { # label binary
  local label=$1 bin=$2 dir="$work/$1"
  bench_serve "$bin" "$dir" $port 8 "$extra"
  local t0 t1 s0 s1
  t0=$(awk '{print $14+$15}' /proc/$BENCH_PID/stat)
  s0=$(date +%s.%N)
  ( sleep "$secs"; awk '{print $14+$15}' /proc/$BENCH_PID/stat > "$dir/cpu-burst" ) &
  "$bin" loadgen -url "http://127.0.0.1:$port" -write-key $BENCH_KEY -duration "${secs}s" \
    -connections 64 -batch 50 -lake "$dir/lake" > "$dir/lg.out" 2>&1 || true
  s1=$(date +%s.%N)
  t1=$(awk '{print $14+$15}' /proc/$BENCH_PID/stat)
  kill $BENCH_PID; wait $BENCH_PID 2>/dev/null || true
  local acked total lat e2e lake after maxrss
  bench_results "$dir"
  printf '| %s | %s | %s | %.1f | %.1f | %.0f | %d | %s |\n' "$label" "$acked" "$lat" \
    "$(echo "($(cat "$dir/cpu-burst") - $t0) * 1000000 / $clk / $total" | bc -l)" \
    "$(echo "($t1 - $t0) * 1000000 / $clk / $total" | bc -l)" "$(echo "$total / ($s1 - $s0)" | bc -l)" \
    "$maxrss" "$lake"
}

echo "A = $1, B = $2; ${secs}s of load per run; $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo '| run | acked events/s | ack latency p50 / p99 | burst CPU µs per event | CPU µs per event | delivered/s | max RSS MiB | in lake |'
echo '|---|---|---|---|---|---|---|---|'
for i in $(seq "$rounds"); do
  run "A$i" "$a"
  run "B$i" "$b"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
