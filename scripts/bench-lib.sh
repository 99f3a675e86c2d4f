# scripts/bench-lib.sh — shared by bench.sh and bench-ab.sh (source it).
#
# bench_serve BINARY DIR PORT PARTITIONS [EXTRA_YAML] [MORE_DESTINATIONS]
#   writes DIR/cfg.yaml (one org "bench", write key bench-write-key-000001,
#   one file lake DIR/lake with flush.max_age 5s; EXTRA_YAML at the top
#   level; MORE_DESTINATIONS, YAML list items indented by 6, after the
#   lake), starts BINARY serve on 127.0.0.1:PORT, waits until it is ready
#   and samples its RSS (KiB) every second into DIR/rss. Sets BENCH_PID.
# bench_results DIR
#   reads DIR/lg.out (tidemark loadgen -lake) and DIR/rss into the variables
#   acked (events/s), total (events), lat (p50 / p99), e2e (p50 / p99),
#   lake ("N of M, D dup"), after (lake complete after the load), maxrss (MiB).
# bench_lake FILE
#   reads the lines of `tidemark loadgen -lake` in FILE into e2e, lake and
#   after (as bench_results).
BENCH_KEY=bench-write-key-000001

bench_serve() {
  local bin=$1 dir=$2 port=$3 parts=$4 extra=${5:-} more=${6:-}
  mkdir -p "$dir"
  cat > "$dir/cfg.yaml" <<CFG
listen: 127.0.0.1:$port
data_dir: $dir/data
log: {partitions: $parts}
$extra
orgs:
  - id: bench
    write_keys: ["$BENCH_KEY"]
    destinations:
      - name: lake
        url: file://$dir/lake
        flush: {max_age: 5s}
$more
CFG
  "$bin" serve --config "$dir/cfg.yaml" > "$dir/serve.log" 2>&1 &
  BENCH_PID=$!
  for _ in $(seq 50); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  ( while kill -0 "$BENCH_PID" 2>/dev/null; do ps -o rss= -p "$BENCH_PID"; sleep 1; done ) > "$dir/rss" &
}

bench_results() {
  local out=$1/lg.out
  acked=$(grep -o '= [0-9]* events/s' "$out" | grep -o '[0-9]*')
  total=$(grep -o 'acked *[0-9]*' "$out" | grep -o '[0-9]*$')
  lat=$(grep '^  latency' "$out" | awk '{print $3" / "$7}')
  bench_lake "$out"
  maxrss=$(( $(sort -n "$1/rss" | tail -1) / 1024 ))
}

bench_lake() {
  e2e=$(grep '^  end-to-end' "$1" | awk '{print $3" / "$7}')
  lake=$(grep '^  lake' "$1" | awk '{print $2" of "$4", "$10" dup"}')
  after=$(grep '^  lake' "$1" | awk '{print $8}')
}
