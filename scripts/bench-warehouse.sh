#!/usr/bin/env bash
# scripts/bench-warehouse.sh — end to end with a lake and a PostgreSQL
# destination both configured, against the lake alone.
#
#   ./scripts/bench-warehouse.sh [SECONDS] [PAIRS]
#
# Starts a PostgreSQL of its own (Debian's, as scripts/test.sh does: initdb
# and pg_ctl as user postgres, trust auth, 127.0.0.1 on a free port, data in a
# temporary directory, PostgreSQL's default durability: fsync and
# synchronous_commit on), then alternates PAIRS times (default 2) two runs of
# bench.sh's baseline load (8 partitions, 64 connections, 50-event batches,
# SECONDS of load, default 20) on a fresh data dir each: "lake" delivers to
# the file lake only, "lake+pg" to the lake and to a schema of that server
# (as user postgres; flush.max_age 5s for both). Per run: acknowledged
# events/s; for each destination how long after the load it held every
# acknowledged event and "delivered/s" (events over the time from the start
# of the load until the last one was committed); PostgreSQL's end-to-end
# latency (event sent -> its batch's committed_at, which is the loading
# transaction's start); rows and duplicate event ids in events; the
# server's and PostgreSQL's CPU per event (user + system, from /proc); max
# RSS. Alternating is the only fair comparison on a shared, noisy machine.
# After the table, per lake+pg run: PostgreSQL's WAL (pg_stat_wal: bytes,
# records and full-page images per event), checkpoints (timed / requested)
# and the batches it loaded (count; events, pages, sessions per batch).
#
# Knobs (environment): BENCH_PG_CONF, lines appended to the server's
# postgresql.conf before it starts (e.g. BENCH_PG_CONF='max_wal_size = 8GB');
# BENCH_PG_ONLY=1 skips the lake-only runs; BENCH_PG_STATEMENTS=1 loads
# pg_stat_statements and prints, per lake+pg run, the statements that took
# the most execution time; BENCH_PORT, tidemark's port (default 18185);
# BENCH_AB='BINARY_A BINARY_B' runs no lake-only runs and alternates lake+pg
# runs of the two tidemark binaries instead (rows a1, b1, a2, ...; the loads
# are sent by the tree's own binary). BENCH_SPLIT=1 gives PostgreSQL a core of its own,
# as when the warehouse is another machine: the server runs on CPU 1, and
# tidemark, the load generator and this script on CPU 0, in every run (the
# lake-only runs too, so that the pair compares tidemark on one core with and
# without the warehouse to load).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/bench-lib.sh
secs=${1:-20} pairs=${2:-2}
work=$(mktemp -d)
pgbin=$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
[ -x "$pgbin/initdb" ] || { echo "no PostgreSQL (apt-get install postgresql)" >&2; exit 1; }
as=()
[ "$(id -u)" = 0 ] && as=(runuser -u postgres --)
mkdir -p "$work/pg" && chmod 755 "$work" && { [ ${#as[@]} = 0 ] || chown postgres:postgres "$work/pg"; }
pgport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${as[@]}" "$pgbin/initdb" -D "$work/pg/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 > "$work/initdb.log" 2>&1
[ -z "${BENCH_PG_CONF:-}" ] || printf '%s\n' "$BENCH_PG_CONF" >> "$work/pg/data/postgresql.conf"
[ "${BENCH_PG_STATEMENTS:-}" != 1 ] || echo "shared_preload_libraries = 'pg_stat_statements'" >> "$work/pg/data/postgresql.conf"
cores=$(nproc) split=()
if [ "${BENCH_SPLIT:-}" = 1 ]; then
  [ "$cores" -ge 2 ] || { echo "BENCH_SPLIT=1 needs two cores" >&2; exit 1; }
  split=(taskset -c 1)
fi
"${split[@]}" "${as[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/postgres.log" -w -t 60 \
  -o "-c listen_addresses=127.0.0.1 -p $pgport -k $work/pg" start > /dev/null
pgpid=$(head -n 1 "$work/pg/data/postmaster.pid")
cleanup() {
  [ -n "${POLL_PID:-}" ] && kill "$POLL_PID" 2>/dev/null || true
  [ -n "${BENCH_PID:-}" ] && kill "$BENCH_PID" 2>/dev/null || true
  "${as[@]}" "$pgbin/pg_ctl" -D "$work/pg/data" -m immediate stop > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
psql() { "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U postgres -X -q -A -t "$@"; }
psql -d postgres -c "CREATE DATABASE bench"
[ "${BENCH_PG_STATEMENTS:-}" != 1 ] || psql -d bench -c "CREATE EXTENSION pg_stat_statements"
CGO_ENABLED=0 go build -o "$work/tidemark" ./cmd/tidemark
[ ${#split[@]} = 0 ] || taskset -cp 0 $$ > /dev/null # what this shell starts from now on
port=${BENCH_PORT:-18185}
clk=$(getconf CLK_TCK)

# pgcpu: CPU ticks (user + system) of the PostgreSQL server: the postmaster,
# its live children, and the children it has waited for.
pgcpu() {
  local t=0 p
  for p in $pgpid $(pgrep -P "$pgpid"); do
    t=$((t + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0)))
  done
  echo $((t + $(awk '{print $16+$17}' /proc/$pgpid/stat)))
}

run() { # label pg(yes|no) [server binary]
  local label=$1 pg=$2 bin=${3:-$work/tidemark} dir="$work/$1" schema="bench_$1" more=""
  if [ "$pg" = yes ]; then
    more="      - name: warehouse
        url: postgres://postgres@127.0.0.1:$pgport/bench?sslmode=disable&schema=$schema
        flush: {max_age: 5s}"
  fi
  bench_serve "$bin" "$dir" $port 8 "" "$more"
  psql -d postgres -c "SELECT pg_stat_reset_shared('wal'), pg_stat_reset_shared('bgwriter')" > /dev/null
  [ "${BENCH_PG_STATEMENTS:-}" != 1 ] || psql -d bench -c "SELECT pg_stat_statements_reset()" > /dev/null
  local t0 p0 p1 s0 slake
  t0=$(awk '{print $14+$15}' /proc/$BENCH_PID/stat)
  p0=$(pgcpu)
  s0=$(date +%s.%N)
  if [ "$pg" = yes ]; then # the moment PostgreSQL holds as many events as were sent
    ( while :; do
        n=$(psql -d bench -c "SELECT coalesce(sum(event_count), 0) FROM $schema._tidemark_batches" 2>/dev/null || echo 0)
        if [ -f "$dir/total" ] && [ "$n" -ge "$(cat "$dir/total")" ]; then date +%s.%N > "$dir/pg-done"; break; fi
        sleep 0.5
      done ) &
    POLL_PID=$!
  fi
  "$work/tidemark" loadgen -url "http://127.0.0.1:$port" -write-key $BENCH_KEY -duration "${secs}s" \
    -connections 64 -batch 50 -lake "$dir/lake" > "$dir/lg.out" 2>&1 || true
  slake=$(date +%s.%N)
  local acked total lat e2e lake after maxrss
  bench_results "$dir"
  echo "$total" > "$dir/total"
  local pgafter="-" pgrate="-" pge2e="-" pgrows="-"
  if [ "$pg" = yes ]; then
    for _ in $(seq 1200); do [ -f "$dir/pg-done" ] && break; sleep 0.5; done
    kill "$POLL_PID" 2>/dev/null || true
    wait "$POLL_PID" 2>/dev/null || true
    if [ -f "$dir/pg-done" ]; then
      pgafter=$(printf '%.1fs' "$(echo "$(cat "$dir/pg-done") - $s0 - $secs" | bc -l)")
      pgrate=$(printf '%.0f' "$(echo "$total / ($(cat "$dir/pg-done") - $s0)" | bc -l)")
    else
      pgafter="not complete after 10m"
    fi
    p1=$(pgcpu) # before the checks below, which scan the whole table
    pgrows=$(psql -d bench -F ' ' -c "SELECT count(*), count(*) - count(DISTINCT event_id) FROM $schema.events" | awk '{print $1" of '"$total"', "$2" dup"}')
    pge2e=$(psql -d bench -F ' / ' -c "SELECT round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l)::numeric, 1) || 's', round(percentile_cont(0.99) WITHIN GROUP (ORDER BY l)::numeric, 1) || 's'
      FROM (SELECT extract(epoch FROM b.committed_at) - (e.properties->>'lg_sent_ns')::bigint / 1e9 AS l
            FROM $schema.events e JOIN $schema._tidemark_batches b ON b.batch_id = e._tidemark_batch) x")
  fi
  if [ "$pg" = yes ]; then
    psql -d bench -F ' | ' -c "SELECT '$label', round(w.wal_bytes / $total), round(w.wal_records::numeric / $total, 2),
        round(w.wal_fpi::numeric / $total, 3), b.checkpoints_timed || ' / ' || b.checkpoints_req, x.n, x.e, x.p, x.s
      FROM pg_stat_wal w, pg_stat_bgwriter b,
        (SELECT count(*) n, round(avg(event_count)) e, round(avg(page_count)) p, round(avg(session_count)) s
         FROM $schema._tidemark_batches) x" | sed 's/^/| /; s/$/ |/' >> "$work/detail"
    [ "${BENCH_PG_STATEMENTS:-}" != 1 ] || psql -d bench -F ' | ' -c "SELECT '$label', calls, round(total_exec_time::numeric / 1000, 1) || ' s',
        round((total_exec_time * 1000 / $total)::numeric, 1), round(wal_bytes / $total), left(regexp_replace(query, '\s+', ' ', 'g'), 70)
      FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 6" | sed 's/^/| /; s/$/ |/' >> "$work/statements"
  fi
  local t1
  t1=$(awk '{print $14+$15}' /proc/$BENCH_PID/stat)
  [ "$pg" = yes ] || p1=$(pgcpu)
  kill $BENCH_PID; wait $BENCH_PID 2>/dev/null || true
  BENCH_PID=
  printf '| %s | %s | %.1fs | %.0f | %s | %s | %s | %s | %.1f | %.1f | %d | %s |\n' "$label" "$acked" \
    "$(echo "$slake - $s0 - $secs" | bc -l)" "$(echo "$total / ($slake - $s0)" | bc -l)" "$pgafter" "$pgrate" "$pge2e" "$pgrows" \
    "$(echo "($t1 - $t0) * 1000000 / $clk / $total" | bc -l)" "$(echo "($p1 - $p0) * 1000000 / $clk / $total" | bc -l)" \
    "$maxrss" "$lake"
}

if [ -n "${BENCH_AB:-}" ]; then
  read -r bin_a bin_b <<< "$BENCH_AB"
  bin_a=$(realpath "$bin_a") bin_b=$(realpath "$bin_b")
  echo "A = $bin_a, B = $bin_b"
fi
echo "tidemark end to end, lake vs lake + PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}'): ${secs}s of load per run, $cores cores$([ ${#split[@]} = 0 ] || echo " (PostgreSQL on CPU 1, the rest on CPU 0)"), $(go version | awk '{print $3}'), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo '| run | acked events/s | lake complete after load | lake delivered/s | postgres complete after load | postgres delivered/s | postgres end-to-end p50 / p99 | postgres events | server CPU µs per event | PostgreSQL CPU µs per event | max RSS MiB | in lake |'
echo '|---|---|---|---|---|---|---|---|---|---|---|---|'
for i in $(seq "$pairs"); do
  if [ -n "${BENCH_AB:-}" ]; then
    run "a$i" yes "$bin_a"
    run "b$i" yes "$bin_b"
    continue
  fi
  [ "${BENCH_PG_ONLY:-}" = 1 ] || run "lake$i" no
  run "lakepg$i" yes
done
echo
echo '| run | PostgreSQL WAL bytes per event | WAL records per event | full-page images per event | checkpoints timed / requested | batches | events per batch | pages per batch | sessions per batch |'
echo '|---|---|---|---|---|---|---|---|---|'
cat "$work/detail" 2>/dev/null || true
if [ "${BENCH_PG_STATEMENTS:-}" = 1 ]; then
  echo
  echo '| run | calls | execution time | µs per event | WAL bytes per event | statement |'
  echo '|---|---|---|---|---|---|'
  cat "$work/statements" 2>/dev/null || true
fi
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
