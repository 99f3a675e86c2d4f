#!/usr/bin/env bash
# scripts/bench-audit.sh — the audit and backfill figures of BENCHMARKS.md.
#
#   ./scripts/bench-audit.sh [SECONDS]     (default 20 s of load)
#
# Starts a fresh `tidemark serve` (8 partitions, one file destination),
# loads it with `tidemark loadgen` for SECONDS and waits until the lake holds
# every acknowledged event, stops the server, then times on the stopped data
# dir: `tidemark audit` (counts only: listing, manifests, one log scan), `audit
# --deep` (also every event id of both sides), deletes every tenth events file,
# and times `audit` (finds them), `backfill` (replays the log for their
# devices and writes them back), a second `backfill` (nothing to do) and a
# final `audit` (clean). Wall times on a shared machine: compare within a run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs=${1:-20}
work=$(mktemp -d)
trap 'pkill -f "$work/tidemark serve" 2>/dev/null || true; rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -o "$work/tidemark" ./cmd/tidemark
port=18191
cat > "$work/cfg.yaml" <<CFG
listen: 127.0.0.1:$port
data_dir: $work/data
sessions: {page_idle: 2s, session_idle: 5s}
orgs:
  - id: bench
    write_keys: ["bench-write-key-000001"]
    destinations:
      - name: lake
        url: file://$work/lake
        flush: {max_age: 5s}
        freshness_grace: 1s
CFG
"$work/tidemark" serve --config "$work/cfg.yaml" > "$work/serve.log" 2>&1 &
pid=$!
for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
"$work/tidemark" loadgen -url "http://127.0.0.1:$port" -write-key bench-write-key-000001 \
  -duration "${secs}s" -connections 64 -batch 50 -lake "$work/lake" > "$work/lg.out" 2>&1
grep -E '^  (lake|acked|sent)|events/s' "$work/lg.out" || true
sleep 12 # past the freshness SLA (5s + 5s + 1s): absent events are missing, not pending
kill $pid; wait $pid 2>/dev/null || true

timed() { # label command...
  local label=$1 start end code
  shift
  start=$(date +%s.%N)
  set +e
  "$@" > "$work/out" 2>&1
  code=$?
  set -e
  end=$(date +%s.%N)
  printf '| %s | %.2f s | %s | %s |\n' "$label" "$(echo "$end - $start" | bc)" "$code" "$(grep -E 'total|wrote|clean|missing' "$work/out" | grep -v '^ *org' | tail -1 | tr -s ' ' | cut -c1-110)"
}
audit() { "$work/tidemark" audit --config "$work/cfg.yaml" --from 2h "$@"; }
backfill() { "$work/tidemark" backfill --config "$work/cfg.yaml" --from 2h "$@"; }

events=$(find "$work/lake/events" -name '*.parquet' | wc -l)
echo
echo "lake: $events events files, $(du -sh "$work/lake" | cut -f1); log: $(du -sh "$work/data" | cut -f1)"
echo
echo '| step | wall | exit | result |'
echo '|---|---|---|---|'
timed "audit" audit
timed "audit --deep" audit --deep
find "$work/lake/events" -name '*.parquet' | sort | awk 'NR % 10 == 0' | xargs rm -f
timed "audit after deleting every 10th events file" audit
timed "backfill" backfill
timed "backfill again" backfill
timed "audit after backfill" audit
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
