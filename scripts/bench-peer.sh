#!/usr/bin/env bash
# scripts/bench-peer.sh — tidemark against a stateless pipeline, side by side
# in one run (issue 17's measure).
#
#   ./scripts/bench-peer.sh [EVENTS] [ROUNDS] [BINARY_A [BINARY_B]]
#
# EVENTS (default 5000000, a multiple of 50; 1000000 is the quick mode, a
# minute or two per run on a quiet machine) Segment events of ~340 bytes
# (every fifth event of a device a page call, the rest track calls; ~3,100
# devices) go in 50-event /v1/batch requests, from one client for both
# servers: wrk (Debian's, installed here if missing) with 2 threads and 64
# connections and scripts/bench-peer.lua, as fast as the server takes them,
# on the same two cores, each event once.
# Each round runs, alternated: tidemark A (BINARY_A; default a build of this
# tree), the peer, and tidemark B when BINARY_B is given (an A/B of two
# tidemark binaries against the same peer). ROUNDS defaults to 2.
#
# tidemark: `serve` as scripts/bench-lib.sh starts it (8 partitions, one file
# lake with flush.max_age 5s, durable acks, sessions and pages); the run ends
# when the manifests of the lake count every acknowledged event, and its
# "delivered" time is from the first request to the modification time of the
# last manifest with events; then `tidemark loadgen -send=false -lake` checks
# that every event is in the lake exactly once.
#
# The peer: Benthos v4.60.0 (github.com/redpanda-data/benthos/v4 from the Go
# module proxy, a main with only its io and pure components, built here), with
# this config: http_server input on /v1/batch (a request is answered once its
# events are written), the batch split into its events (mapping
# `root = this.batch` + unarchive json_array), file output batched by 1000
# events or 100ms, each batch one file of gzip NDJSON (archive lines + compress
# gzip), no fsync, no state. Its run ends when wrk has every response (each
# one means the request's events are written), and it delivered them then;
# then every messageId is counted in its files.
#
# Per run: delivered events/s (first request to last commit), acknowledged
# events/s (first request to last response), the server's user+system CPU
# per event (/proc/PID/stat, from before the first request to the end of the
# run), bytes it wrote to disk per event (/proc/PID/io write_bytes, same
# span), its peak RSS (VmHWM) and the check. Then the medians per server and
# the ratios tidemark/Benthos. The machine is shared and noisy: compare
# medians of one run, prefer CPU per event over rates.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/bench-lib.sh
events=${1:-5000000} rounds=${2:-2} bin_a=${3:-} bin_b=${4:-}
[ $((events % 50)) -eq 0 ] && [ "$events" -gt 0 ] || { echo "EVENTS must be a positive multiple of 50" >&2; exit 2; }
work=$(mktemp -d)
live= client= # the server and the wrk of the current run
trap 'for p in $live $client; do kill $p 2>/dev/null; done; rm -rf "$work"' EXIT
port=18187 peer_port=18188 devices=3100 benthos_version=v4.60.0
clk=$(getconf CLK_TCK)

if ! command -v wrk >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

# tidemark: the binaries under test, and a build of this tree for the checks
# (loadgen -send=false).
CGO_ENABLED=0 go build -o "$work/tidemark" ./cmd/tidemark
bin_a=$(realpath "${bin_a:-$work/tidemark}")
[ -z "$bin_b" ] || bin_b=$(realpath "$bin_b")

# The peer, built from the module proxy with only the components it needs.
mkdir -p "$work/benthos-src"
cat > "$work/benthos-src/main.go" <<'GO'
package main

import (
	"context"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
)

func main() { service.RunCLI(context.Background()) }
GO
( cd "$work/benthos-src" && printf 'module benchpeer\n\ngo 1.26\n' > go.mod &&
  go get "github.com/redpanda-data/benthos/v4@$benthos_version" && go mod tidy &&
  CGO_ENABLED=0 go build -o "$work/benthos" . ) > "$work/benthos-build.log" 2>&1 ||
  { cat "$work/benthos-build.log" >&2; exit 1; }

auth=$(printf '%s:' "$BENCH_KEY" | base64 -w0)
# send LABEL RUN_ID PORT: wrk until every batch has its response; sets t0 and
# t1 (first request, last response) and acked, failed (events).
send() {
  local dir=$work/$1
  : > "$dir/wrk.done"
  t0=$(date +%s.%N)
  wrk -t 2 -c 64 -d 1h --timeout 60s -s scripts/bench-peer.lua "http://127.0.0.1:$3" -- \
    "$2" "$events" $devices "$auth" 2 "$dir/wrk.done" > "$dir/wrk.out" 2>&1 &
  client=$!
  while [ "$(wc -l < "$dir/wrk.done")" -lt 2 ] && kill -0 $client 2>/dev/null; do sleep 0.05; done
  t1=$(date +%s.%N)
  kill -INT $client 2>/dev/null || true
  wait $client || true
  client=
  acked=$(sed -n 's/^bench-peer: [0-9]* sent, \([0-9]*\) acknowledged.*/\1/p' "$dir/wrk.out")
  failed=$(sed -n 's/.* \([0-9]*\) not acknowledged$/\1/p' "$dir/wrk.out")
  [ -n "$acked" ] && [ "$acked" -gt 0 ] || { echo "$1: wrk failed:" >&2; cat "$dir/wrk.out" >&2; exit 1; }
}

cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
written() { awk '/^write_bytes/ {print $2}' "/proc/$1/io"; }
hwm() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

# row LABEL: one table row from t0, t1, tc (last commit), c0, c1, w0, w1,
# peak (KiB), acked, failed and check; also appended to $work/rows.
row() {
  local r
  r=$(printf '%s\t%.0f\t%.0f\t%.1f\t%.0f\t%d\t%s' "$1" \
    "$(echo "$acked / ($tc - $t0)" | bc -l)" "$(echo "$acked / ($t1 - $t0)" | bc -l)" \
    "$(echo "($c1 - $c0) * 1000000 / $clk / $acked" | bc -l)" "$(echo "($w1 - $w0) / $acked" | bc -l)" \
    $((peak / 1024)) "$check")
  echo "$r" >> "$work/rows"
  echo "| ${r//$'\t'/ | } | $failed |"
}

run_tidemark() { # label binary
  local label=$1 dir=$work/$1 run=peer$RANDOM$RANDOM
  bench_serve "$2" "$dir" $port 8
  live=$BENCH_PID
  c0=$(cpu $live) w0=$(written $live)
  send "$label" $run $port
  local n=0 last
  until n=$(cat "$dir"/lake/_manifests/*.json 2>/dev/null | grep -o '"event_count": *[0-9]*' | awk -F: '{s+=$2} END {print s+0}'); [ "$n" -ge "$acked" ]; do
    sleep 0.2
    [ "$(echo "$(date +%s.%N) - $t1 > 1800" | bc)" = 0 ] || { echo "$label: only $n of $acked events in the lake after 30 minutes" >&2; break; }
  done
  c1=$(cpu $live) w1=$(written $live) peak=$(hwm $live)
  kill $live; wait $live 2>/dev/null || true; live=
  last=$(grep -l '"event_count": *[1-9]' "$dir"/lake/_manifests/*.json | xargs stat -c %.9Y | sort -n | tail -1)
  tc=$last
  "$work/tidemark" loadgen -send=false -lake "$dir/lake" -run-id $run -events "$acked" -lake-timeout 10s > "$dir/lg.out" 2>&1 || true
  local e2e lake after
  bench_lake "$dir/lg.out"
  check=$lake
  row "$label"
}

run_peer() {
  local label=benthos dir=$work/benthos-$1 run=peer$RANDOM$RANDOM
  mkdir -p "$dir/out"
  cat > "$dir/benthos.yaml" <<YAML
http: {enabled: false}
input:
  http_server:
    address: 127.0.0.1:$peer_port
    path: /v1/batch
    timeout: 60s
pipeline:
  processors:
    - mapping: root = this.batch
    - unarchive: {format: json_array}
output:
  broker:
    outputs:
      - file:
          path: $dir/out/\${! uuid_v4() }.ndjson.gz
          codec: all-bytes
    batching:
      count: 1000
      period: 100ms
      processors:
        - archive: {format: lines}
        - compress: {algorithm: gzip}
logger: {level: WARN}
YAML
  "$work/benthos" run "$dir/benthos.yaml" > "$dir/benthos.log" 2>&1 &
  live=$!
  for _ in $(seq 100); do [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$peer_port/bench-peer-idle")" = 404 ] && break; sleep 0.1; done
  c0=$(cpu $live) w0=$(written $live)
  send "benthos-$1" $run $peer_port
  tc=$t1
  c1=$(cpu $live) w1=$(written $live) peak=$(hwm $live)
  kill $live; wait $live 2>/dev/null || true; live=
  local ids uniq
  ids=$(find "$dir/out" -name '*.gz' -print0 | xargs -0 cat | gzip -dc | grep -o "\"messageId\":\"$run-[0-9]*\"" | sort -S 512M | uniq -c | awk '{n++; d += $1 - 1} END {print n+0, d+0}')
  check="${ids% *} of $acked, ${ids#* } dup"
  row "$label"
}

echo "tidemark against Benthos $benthos_version: $events events (~340 B, 50 per request, $devices devices), wrk 2 threads 64 connections; $rounds rounds; $(nproc) cores; $(go version | awk '{print $3}'); A = ${3:-this tree}${bin_b:+, B = $bin_b}; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo '| run | delivered events/s | acked events/s | CPU µs per event | disk bytes per event | peak RSS MiB | every event once | not acked |'
echo '|---|---|---|---|---|---|---|---|'
for i in $(seq "$rounds"); do
  run_tidemark "tidemark-A$i" "$bin_a"
  run_peer "$i"
  [ -z "$bin_b" ] || run_tidemark "tidemark-B$i" "$bin_b"
done
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
# Medians per server (runs labelled tidemark-A1, tidemark-A2, ...) and ratios.
awk -F'\t' '
  { l = $1; sub(/[0-9]+$/, "", l); n[l]++
    for (c = 2; c <= 6; c++) v[l, c, n[l]] = $c }
  function med(l, c,   k, i, j, t, a) {
    k = n[l]; for (i = 1; i <= k; i++) a[i] = v[l, c, i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
  END {
    print "| median | delivered events/s | acked events/s | CPU µs per event | disk bytes per event | peak RSS MiB |"
    print "|---|---|---|---|---|---|"
    for (l in n) printf "| %s (%d runs) | %.0f | %.0f | %.1f | %.0f | %.0f |\n", l, n[l], med(l, 2), med(l, 3), med(l, 4), med(l, 5), med(l, 6)
    print ""
    for (l in n) if (l != "benthos" && ("benthos" in n))
      printf "%s / Benthos: delivered %.2fx, acked %.2fx, CPU per event %.2fx, disk bytes per event %.2fx, peak RSS %.2fx\n", l,
        med(l, 2) / med("benthos", 2), med(l, 3) / med("benthos", 3), med(l, 4) / med("benthos", 4), med(l, 5) / med("benthos", 5), med(l, 6) / med("benthos", 6)
  }' "$work/rows"
