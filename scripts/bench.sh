#!/usr/bin/env bash
# scripts/bench.sh — the end-to-end throughput benchmark behind BENCHMARKS.md.
#
#   ./scripts/bench.sh [SECONDS]      (default 20 s of load per configuration)
#
# For each configuration it starts a fresh `tidemark serve` on loopback, runs
# `tidemark loadgen` (64 connections, Segment batches of ~300-byte events) for
# SECONDS, waits until every acknowledged event is committed in the local lake
# (`loadgen -lake`: counts duplicates and end-to-end latency from sending to the
# batch's manifest), samples the server's RSS every second, and prints one
# table row. Every row runs with the default ingest.priority_lag (30s) but
# no-ingest-first, which sets it to 0s (the pipeline never yields to ingest).
# Destinations use flush.max_age 5s so end-to-end latency shows the
# pipeline, not the batching wait. The machine is shared and noisy: compare rows
# of one run as ratios, not across runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/bench-lib.sh
secs=${1:-20}
work=$(mktemp -d)
trap 'pkill -f "$work/tidemark serve" 2>/dev/null || true; rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/tidemark" ./cmd/tidemark
port=18181

run() { # name partitions batch gzip [priority_lag]
  local name=$1 parts=$2 batch=$3 gz=$4 plag=${5:-30s} dir="$work/$1"
  bench_serve "$work/tidemark" "$dir" $port "$parts" "ingest: {priority_lag: $plag}"
  local gzflag=()
  [ "$gz" = yes ] && gzflag=(-gzip)
  "$work/tidemark" loadgen -url "http://127.0.0.1:$port" -write-key $BENCH_KEY \
    -duration "${secs}s" -connections 64 -batch "$batch" "${gzflag[@]}" -lake "$dir/lake" > "$dir/lg.out" 2>&1 || true
  kill $BENCH_PID; wait $BENCH_PID 2>/dev/null || true
  local acked total lat e2e lake after maxrss
  bench_results "$dir"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |\n' "$name" "$parts" "$batch" "$gz" "$plag" "$acked" "$lat" "$after" "$e2e" "$lake" "$maxrss"
}

echo "tidemark end-to-end benchmark: ${secs}s per row, $(nproc) cores, $(go version | awk '{print $3}'), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo '| config | partitions | events/batch | gzip | priority_lag | acked events/s | ack latency p50 / p99 | lake complete after load | end-to-end p50 / p99 | in lake | max RSS MiB |'
echo '|---|---|---|---|---|---|---|---|---|---|---|'
run baseline 8 50 no
run no-ingest-first 8 50 no 0s
run batch-10 8 10 no
run batch-200 8 200 no
run partitions-1 1 50 no
run partitions-4 4 50 no
run partitions-16 16 50 no
run gzip 8 50 yes
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
