#!/usr/bin/env bash
# scripts/test.sh: THE test command for tidemark (CI runs it through .ci/run).
#
# Usage (from any directory):
#   ./scripts/test.sh                          # everything: go vet ./... + go test ./...
#                                              # + go test -race (all but cmd/tidemark, blob)
#   ./scripts/test.sh ./internal/testenv/...   # only these packages (vet, test, race)
#   ./scripts/test.sh -run TestE2E ./internal/...
#   ./scripts/test.sh -v -run 'TestSend$'      # flags only: packages default to ./...
#   ./scripts/test.sh ./internal/x -args -custom-flag   # -args and the rest go last
#
# Arguments: every argument is passed to `go test` (and to the race step),
# after the defaults `-count=1 -timeout 25m` (a later flag wins, so
# `-timeout 5m` or `-count=3` override them). An argument that is a package
# pattern (it starts with ".", "./", "../" or "github.com/tidemark/tidemark")
# selects packages, for `go vet`, `go test` and the race step; when none is
# given, `./...` is used. Do not put a
# package-looking word as a flag's value in a separate argument (write
# `-run=./x` rather than `-run ./x`, which nobody needs anyway).
#
# What it does, printing each phase with a timestamp:
#   1. installs what is missing, reusing what is there (idempotent; safe to run
#      concurrently in one tree: installs are serialized with flock). The
#      installs run in parallel, each logging to .testenv/install-<name>.log:
#        - testenv/node/node_modules via `npm ci` (only when missing or stale:
#          package.json, package-lock.json or the node version changed)
#        - the Debian/Go/npm packages of each test server (install_<name>):
#            postgres         Debian postgresql
#            versitygw        go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 (S3)
#            fake-gcs-server  go install github.com/fsouza/fake-gcs-server@v1.56.1 (GCS)
#            azurite          npm ci in testenv/azurite (azurite 3.35.0, Azure Blob)
#            kafka            go build ./internal/testenv/kfakeserver into
#                             .testenv/bin (franz-go's kfake, pinned in go.mod;
#                             a Kafka-protocol cluster of three brokers)
#        - promtool: go install github.com/prometheus/prometheus/cmd/promtool@v0.316.0
#          (Prometheus 3.16.0; the alert rules check below, and
#          TestDeployMetricsExist's parse of the Grafana dashboard's queries)
#        - chromium: Debian chromium (/usr/bin/chromium), the real browser of
#          the browser SDK tests, driven by playwright-core from testenv/node
#          (which never downloads a browser)
#        - race: a C compiler for `go test -race` (cgo): Debian gcc and
#          libc6-dev, unless gcc and the C headers are already there
#          Go tools land in $(go env GOBIN) or $(go env GOPATH)/bin and are
#          reused when built from the pinned version. Cold, the two go installs
#          take ~3 min (in parallel, on 2 cores); azurite ~40 s; promtool
#          ~3.5 min alone (it compiles all of Prometheus's service discovery).
#        A server whose install fails is a failure with CI=true; otherwise a
#        warning, and the tests that need it fail naming it. Same for
#        promtool (without CI, the rules check is skipped with a warning) and
#        chromium. apt-get runs one at a time (flock), however many installs
#        need Debian packages.
#   2. starts each test server on 127.0.0.1 (start_<name>), on a free port,
#      data in a temp dir, waits until its port answers (clear error + log
#      tail on timeout), and stops it by PID on exit (trap), then removes the
#      temp dir;
#   3. exports the env vars the Go tests read (see internal/testenv):
#        TIDEMARK_TEST_NODE_DIR        absolute path of testenv/node (node_modules installed)
#        TIDEMARK_TEST_CHROMIUM        the Chromium binary (/usr/bin/chromium), when installed
#        TIDEMARK_TEST_POSTGRES_URL    postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable
#        TIDEMARK_TEST_S3_ENDPOINT     http://127.0.0.1:PORT (versitygw, region us-east-1, path style)
#        TIDEMARK_TEST_S3_ACCESS_KEY   its root access key (random per run)
#        TIDEMARK_TEST_S3_SECRET_KEY   its root secret key (random per run)
#        TIDEMARK_TEST_GCS_HOST        127.0.0.1:PORT (fake-gcs-server, plain HTTP; the
#                                      value for STORAGE_EMULATOR_HOST)
#        TIDEMARK_TEST_AZURE_ENDPOINT  http://127.0.0.1:PORT/devstoreaccount1 (Azurite's blob
#                                      service; account devstoreaccount1 with the well-known key)
#        TIDEMARK_TEST_KAFKA_BROKERS   127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3 (kfakeserver:
#                                      three in-memory brokers; kill tidemark nodes, not it)
#        TIDEMARK_TEST_VERSITYGW_BIN, TIDEMARK_TEST_FAKE_GCS_BIN, TIDEMARK_TEST_AZURITE_BIN
#                                      absolute paths of the server binaries, for
#                                      tests that run (and stop) a server of their own
#        TIDEMARK_TEST_POSTGRES_BIN    the directory of initdb and pg_ctl, likewise
#                                      (testenv.StartPostgres)
#      and CGO_ENABLED=0. Credentials are not logged.
#   4. checks the Prometheus alert rules: `promtool check rules
#      deploy/prometheus/alerts.yml` and `promtool test rules
#      deploy/prometheus/alerts_test.yml` (docs/operations.md "Alerts");
#   5. runs `go test` and, at the same time, `go vet` and the race step;
#      prints go test's output as it comes, then vet's and the race step's;
#      exits non-zero if any of them failed. The race step is
#        CGO_ENABLED=1 go test -race -p 1 -count=1 -timeout 25m ARGS PKGS
#      over the selected packages except cmd/tidemark and
#      internal/destination/blob: those hold the concurrency (collector, log,
#      sessionizers, transports, stream, server, audit) and their tests run
#      it in the test process. blob starts no goroutine of its own and its
#      tests are conformance runs against the three cloud emulators, whose
#      time goes into the SDKs: under -race 775 s of a 1213 s race step (CI
#      run of 451ec06), which made the whole command ~8 minutes slower. The
#      cmd/tidemark tests drive the real binary (built with CGO_ENABLED=0,
#      like the release) from outside: under -race they would test only the
#      harness, and a -race build of the binary makes that package (90% of
#      the suite's time) several times slower. `-p 1`: one package at a
#      time, so that it takes the CPU go test's cmd/tidemark leaves idle
#      (those tests mostly wait on the binary) rather than starving them;
#      for the same reason go vet and the race step run at nice 10: go test
#      keeps the CPU it needs and they take what it leaves. Both the process
#      nice and, where the kernel groups a session's processes for the
#      scheduler (autogroup, CONFIG_SCHED_AUTOGROUP, on by default in Debian),
#      the group's nice: each side job is a session of its own (setsid), and
#      an autogroup competes with go test's as an equal whatever its
#      processes' nice, so `nice` alone left go test half the CPU (measured:
#      two busy loops got 4.1 of 10 CPU-seconds beside a niced setsid pair,
#      8.9 with the group at nice 10).
#      Everything else runs with CGO_ENABLED=0.
#
# Knobs (environment):
#   TIDEMARK_TEST_SERVERS="postgres"  servers to start (space/comma separated;
#                                     default: all in SERVERS below; "none" = none)
#   TIDEMARK_TEST_POSTGRES_URL=...    already set: reuse that server, start none
#   TIDEMARK_TEST_S3_ENDPOINT=...     already set (with the two keys): reuse that S3 server
#   TIDEMARK_TEST_GCS_HOST=...        already set: reuse that GCS emulator
#   TIDEMARK_TEST_AZURE_ENDPOINT=...  already set: reuse that Azurite
#   TIDEMARK_TEST_KAFKA_BROKERS=h:p,..  already set: reuse that Kafka cluster (a real
#                                     one: Apache Kafka, Redpanda, MSK); start none
#   TIDEMARK_TEST_VET=0               skip go vet (quick local iteration)
#   TIDEMARK_TEST_RACE=0              skip the race step (quick local iteration)
#   TIDEMARK_TEST_KEEP=1              keep the temp dir (server data and logs)
#
# Adding a server (versitygw, fake-gcs-server, Azurite, ...): write
# install_<name> (idempotent; use need_apt / need_go_tool / ensure_node_modules
# DIR; it runs in a subshell in parallel with the other installs, so it must
# not set variables) and start_<name> (start it in the background with
# start_bg, wait_port, export its env var), then add <name> to SERVERS.
# Nothing else changes.

# shellcheck disable=SC2317 # functions are also called indirectly (trap, install_$name, start_$name)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SERVERS=(postgres versitygw fake-gcs-server azurite kafka)

export CGO_ENABLED=0
export TIDEMARK_TEST_NODE_DIR="$ROOT/testenv/node"

START_SECONDS=$SECONDS
log() { printf '[test.sh %s +%ss] %s\n' "$(date +%H:%M:%S)" "$((SECONDS - START_SECONDS))" "$*"; }
phase() { printf '\n'; log "=== $* ==="; }
die() { log "ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------------------
# Cleanup: stop every server we started (by PID), remove the temp dir.

TMP_ROOT=""
SERVER_PIDS=()    # PIDs to stop, in start order
SERVER_NAMES=()   # matching names
SERVER_SIGNALS=() # matching first signal (TERM; QUIT for postgres)
declare -A SIDE_PIDS=() SIDE_T0=() # go vet and the race step (see side below)

# alive PID: true while PID runs. A daemon (postgres) is not our child, so it
# stays a zombie until PID 1 reaps it: a zombie counts as stopped.
alive() {
  kill -0 "$1" 2>/dev/null || return 1
  local st
  st="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" || return 1
  [[ -n "$st" && "$st" != Z ]]
}

cleanup() {
  local rc=$?
  set +e
  local i pid name
  for name in "${!SIDE_PIDS[@]}"; do
    # A side job leads its own process group (setsid): stop it with its test
    # binaries if we exit before it ended.
    kill -TERM -- "-${SIDE_PIDS[$name]}" 2>/dev/null && wait "${SIDE_PIDS[$name]}" 2>/dev/null
  done
  for ((i = ${#SERVER_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${SERVER_PIDS[$i]} name=${SERVER_NAMES[$i]}
    if alive "$pid"; then
      kill "-${SERVER_SIGNALS[$i]}" "$pid" 2>/dev/null
      local waited=0
      while alive "$pid" && ((waited < 200)); do sleep 0.05; waited=$((waited + 1)); done
      if alive "$pid"; then
        log "$name (pid $pid) did not stop in 10s: SIGKILL"
        kill -KILL "$pid" 2>/dev/null
      else
        log "stopped $name (pid $pid)"
      fi
    fi
  done
  if [[ -n "$TMP_ROOT" && -d "$TMP_ROOT" ]]; then
    if [[ "${TIDEMARK_TEST_KEEP:-0}" == 1 ]]; then
      log "kept $TMP_ROOT (TIDEMARK_TEST_KEEP=1)"
    else
      rm -rf "$TMP_ROOT"
    fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

tmp_root() {
  if [[ -z "$TMP_ROOT" ]]; then
    TMP_ROOT="$(mktemp -d "${TMPDIR:-/tmp}/tidemark-test.XXXXXX")"
    chmod 755 "$TMP_ROOT" # servers that run as another user (postgres) must reach their subdir
  fi
}

# ---------------------------------------------------------------------------
# Install helpers (idempotent; reuse what is there).

APT_UPDATED=0
# need_apt PKG...: install the Debian packages that are not installed yet.
need_apt() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ $(id -u) == 0 ]] || die "need Debian packages ${missing[*]} (run as root, or install them)"
  # Installs run in parallel; dpkg takes one at a time.
  (
    flock 8
    log "apt-get install ${missing[*]}"
    if ((APT_UPDATED == 0)); then
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  ) 8>"$ROOT/.testenv/apt.lock"
  APT_UPDATED=1
}

# go_bin_dir: where `go install` puts binaries: $(go env GOBIN), else the
# first entry of $(go env GOPATH) + /bin.
go_bin_dir() {
  local d
  d="$(go env GOBIN)"
  if [[ -z "$d" ]]; then
    d="$(go env GOPATH)"
    d="${d%%:*}/bin"
  fi
  echo "$d"
}

# need_go_tool BIN MODULE/PATH@VERSION: go install unless $(go_bin_dir)/BIN
# is already built from that module version. BIN's path is "$(go_bin_dir)/BIN".
need_go_tool() {
  local bin=$1 spec=$2 gobin
  gobin="$(go_bin_dir)"
  local want_ver=${spec##*@}
  if [[ -x "$gobin/$bin" ]] && go version -m "$gobin/$bin" 2>/dev/null | awk '$1=="mod"{print $3}' | grep -qx "$want_ver"; then
    log "$bin $want_ver is installed ($gobin/$bin)"
    return 0
  fi
  log "go install $spec (cold: several minutes)"
  go install "$spec"
  [[ -x "$gobin/$bin" ]] || die "go install $spec did not produce $gobin/$bin"
}

# ensure_node_modules DIR: npm ci in DIR (an npm project with a committed
# package-lock.json) when DIR/node_modules is missing or stale. The stamp
# hashes package.json, package-lock.json and `node --version`.
ensure_node_modules() {
  local dir=$1 rel=${1#"$ROOT"/}
  command -v node >/dev/null || die "node is not installed (Node.js >= 20 is required; the machine image ships it)"
  command -v npm >/dev/null || die "npm is not installed (it comes with Node.js)"
  local want
  want="$( (cat "$dir/package.json" "$dir/package-lock.json"; node --version) | sha256sum | cut -d' ' -f1)"
  if [[ -f "$dir/node_modules/.tidemark-stamp" && "$(cat "$dir/node_modules/.tidemark-stamp")" == "$want" ]]; then
    log "$rel/node_modules is up to date (node $(node --version))"
    return 0
  fi
  log "npm ci in $rel (node $(node --version), npm $(npm --version))"
  (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$dir/node_modules/.tidemark-stamp"
}

# ---------------------------------------------------------------------------
# Server helpers.

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# free_port: print a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
  local p i
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + RANDOM % 30000))
    port_open 127.0.0.1 "$p" || { echo "$p"; return 0; }
  done
  die "no free port found on 127.0.0.1"
}

# register_pid NAME PID [SIGNAL]: stop PID with SIGNAL (default TERM) on exit.
register_pid() {
  SERVER_NAMES+=("$1")
  SERVER_PIDS+=("$2")
  SERVER_SIGNALS+=("${3:-TERM}")
}

# start_bg NAME LOGFILE CMD...: start CMD in the background (its own PID, not
# a subshell's), output to LOGFILE, stopped by PID on exit.
start_bg() {
  local name=$1 logfile=$2
  shift 2
  "$@" >"$logfile" 2>&1 </dev/null &
  register_pid "$name" "$!"
}

# wait_port NAME PORT TIMEOUT_S [LOGFILE] [PID]: wait until 127.0.0.1:PORT
# accepts connections; fail with the log's tail on timeout or if PID died.
wait_port() {
  local name=$1 port=$2 timeout=$3 logfile=${4:-} pid=${5:-}
  local deadline=$((SECONDS + timeout)) delay=0.02
  until port_open 127.0.0.1 "$port"; do
    if [[ -n "$pid" ]] && ! alive "$pid"; then
      [[ -n "$logfile" ]] && tail -n 30 "$logfile" >&2
      die "$name exited before listening on 127.0.0.1:$port (log: $logfile)"
    fi
    if ((SECONDS >= deadline)); then
      [[ -n "$logfile" ]] && tail -n 30 "$logfile" >&2
      die "$name did not listen on 127.0.0.1:$port within ${timeout}s (log: $logfile)"
    fi
    sleep "$delay"
    [[ $delay == 0.02 ]] && delay=0.1 || delay=0.25
  done
  log "$name ready on 127.0.0.1:$port"
}

# ---------------------------------------------------------------------------
# Servers. Each NAME in SERVERS has install_NAME and start_NAME.

pg_bindir() {
  local d
  d="$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  [[ -n "$d" && -x "$d/initdb" ]] && echo "$d"
}

install_postgres() {
  [[ -n "${TIDEMARK_TEST_POSTGRES_URL:-}" ]] && return 0
  pg_bindir >/dev/null && id postgres >/dev/null 2>&1 && return 0
  need_apt postgresql
  pg_bindir >/dev/null || die "postgresql installed but no /usr/lib/postgresql/*/bin/initdb"
}

start_postgres() {
  local bin dir port
  if [[ -n "${TIDEMARK_TEST_POSTGRES_URL:-}" ]]; then
    log "postgres: reusing TIDEMARK_TEST_POSTGRES_URL from the environment"
    # Tests that stop a server of their own still need the binaries.
    if bin="$(pg_bindir)"; then export TIDEMARK_TEST_POSTGRES_BIN="$bin"; fi
    return 0
  fi
  bin="$(pg_bindir)"
  tmp_root
  dir="$TMP_ROOT/postgres"
  mkdir -p "$dir"
  port="$(free_port)"
  # PostgreSQL refuses to run as root: run it as the postgres user.
  local as=()
  if [[ $(id -u) == 0 ]]; then
    as=(runuser -u postgres --)
    chown postgres:postgres "$dir"
  fi
  "${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$TMP_ROOT/postgres-initdb.log" 2>&1 ||
    { tail -n 30 "$TMP_ROOT/postgres-initdb.log" >&2; die "initdb failed"; }
  "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null ||
    { tail -n 30 "$dir/postgres.log" >&2; die "postgres did not start (log: $dir/postgres.log)"; }
  local pid
  pid="$(head -n 1 "$dir/data/postmaster.pid")"
  register_pid postgres "$pid" QUIT # SIGQUIT = immediate shutdown: the data is thrown away
  wait_port postgres "$port" 30 "$dir/postgres.log" "$pid"
  export TIDEMARK_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
  export TIDEMARK_TEST_POSTGRES_BIN="$bin"
}

# random_hex N: N random bytes as lowercase hex.
random_hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; }

# S3: versitygw (Apache-2.0), posix backend in the temp dir. Its root
# credentials are random per run, passed in its environment (not on its
# command line, where ps would show them).
VERSITYGW_SPEC=github.com/versity/versitygw/cmd/versitygw@v1.8.0

install_versitygw() {
  [[ -n "${TIDEMARK_TEST_S3_ENDPOINT:-}" ]] && return 0
  need_go_tool versitygw "$VERSITYGW_SPEC"
}

start_versitygw() {
  if [[ -n "${TIDEMARK_TEST_S3_ENDPOINT:-}" ]]; then
    [[ -n "${TIDEMARK_TEST_S3_ACCESS_KEY:-}" && -n "${TIDEMARK_TEST_S3_SECRET_KEY:-}" ]] ||
      die "TIDEMARK_TEST_S3_ENDPOINT is set but TIDEMARK_TEST_S3_ACCESS_KEY/TIDEMARK_TEST_S3_SECRET_KEY are not"
    log "versitygw: reusing TIDEMARK_TEST_S3_ENDPOINT from the environment"
    return 0
  fi
  local bin port dir
  bin="$(go_bin_dir)/versitygw"
  tmp_root
  dir="$TMP_ROOT/versitygw"
  mkdir -p "$dir/data"
  port="$(free_port)"
  TIDEMARK_TEST_S3_ACCESS_KEY="tm$(random_hex 9)"
  TIDEMARK_TEST_S3_SECRET_KEY="$(random_hex 20)"
  export TIDEMARK_TEST_S3_ACCESS_KEY TIDEMARK_TEST_S3_SECRET_KEY
  start_bg versitygw "$dir/versitygw.log" env ROOT_ACCESS_KEY_ID="$TIDEMARK_TEST_S3_ACCESS_KEY" \
    ROOT_SECRET_ACCESS_KEY="$TIDEMARK_TEST_S3_SECRET_KEY" \
    "$bin" --port "127.0.0.1:$port" --region us-east-1 --quiet posix "$dir/data"
  wait_port versitygw "$port" 60 "$dir/versitygw.log" "${SERVER_PIDS[-1]}"
  export TIDEMARK_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export TIDEMARK_TEST_VERSITYGW_BIN="$bin"
}

# GCS: fake-gcs-server over plain HTTP, filesystem backend in the temp dir.
# -public-host must be the address clients use, or reads of written objects
# fail with "object doesn't exist"; -external-url is the Location of
# resumable uploads.
FAKE_GCS_SPEC=github.com/fsouza/fake-gcs-server@v1.56.1

install_fake-gcs-server() {
  [[ -n "${TIDEMARK_TEST_GCS_HOST:-}" ]] && return 0
  need_go_tool fake-gcs-server "$FAKE_GCS_SPEC"
}

start_fake-gcs-server() {
  if [[ -n "${TIDEMARK_TEST_GCS_HOST:-}" ]]; then
    log "fake-gcs-server: reusing TIDEMARK_TEST_GCS_HOST from the environment"
    return 0
  fi
  local bin port dir
  bin="$(go_bin_dir)/fake-gcs-server"
  tmp_root
  dir="$TMP_ROOT/fake-gcs-server"
  mkdir -p "$dir/data"
  port="$(free_port)"
  start_bg fake-gcs-server "$dir/fake-gcs-server.log" "$bin" -scheme http -host 127.0.0.1 -port "$port" \
    -public-host "127.0.0.1:$port" -external-url "http://127.0.0.1:$port" \
    -backend filesystem -filesystem-root "$dir/data" -log-level warn
  wait_port fake-gcs-server "$port" 60 "$dir/fake-gcs-server.log" "${SERVER_PIDS[-1]}"
  export TIDEMARK_TEST_GCS_HOST="127.0.0.1:$port"
  export TIDEMARK_TEST_FAKE_GCS_BIN="$bin"
}

# Azure Blob: Azurite's blob service, from testenv/azurite (npm ci of the
# committed package-lock.json). --skipApiVersionCheck: the Go SDK speaks a
# newer API version than Azurite 3.35 knows, and every call would fail.
# --disableTelemetry: Azurite otherwise phones home (applicationinsights).
AZURITE_DIR="$ROOT/testenv/azurite"

install_azurite() {
  [[ -n "${TIDEMARK_TEST_AZURE_ENDPOINT:-}" ]] && return 0
  ensure_node_modules "$AZURITE_DIR"
}

start_azurite() {
  if [[ -n "${TIDEMARK_TEST_AZURE_ENDPOINT:-}" ]]; then
    log "azurite: reusing TIDEMARK_TEST_AZURE_ENDPOINT from the environment"
    return 0
  fi
  local bin port dir
  bin="$AZURITE_DIR/node_modules/.bin/azurite-blob"
  [[ -x "$bin" ]] || die "$bin is missing (install_azurite failed?)"
  tmp_root
  dir="$TMP_ROOT/azurite"
  mkdir -p "$dir/data"
  port="$(free_port)"
  start_bg azurite "$dir/azurite.log" "$bin" --blobHost 127.0.0.1 --blobPort "$port" \
    --location "$dir/data" --skipApiVersionCheck --disableTelemetry --silent
  wait_port azurite "$port" 60 "$dir/azurite.log" "${SERVER_PIDS[-1]}"
  export TIDEMARK_TEST_AZURE_ENDPOINT="http://127.0.0.1:$port/devstoreaccount1"
  export TIDEMARK_TEST_AZURITE_BIN="$bin"
}

# Kafka protocol: franz-go's kfake (pinned in go.mod) in a small server of
# our own, three brokers on free ports. No Kafka/JVM installs here. `go build`
# is the idempotence: its cache makes a warm build cheap.
KFAKE_BIN="$ROOT/.testenv/bin/kfakeserver"

install_kafka() {
  [[ -n "${TIDEMARK_TEST_KAFKA_BROKERS:-}" ]] && return 0
  log "go build ./internal/testenv/kfakeserver"
  CGO_ENABLED=0 go build -o "$KFAKE_BIN" ./internal/testenv/kfakeserver
}

start_kafka() {
  if [[ -n "${TIDEMARK_TEST_KAFKA_BROKERS:-}" ]]; then
    log "kafka: reusing TIDEMARK_TEST_KAFKA_BROKERS from the environment"
    return 0
  fi
  [[ -x "$KFAKE_BIN" ]] || die "$KFAKE_BIN is missing (install_kafka failed?)"
  local ports=() p dir brokers=""
  while ((${#ports[@]} < 3)); do
    p="$(free_port)"
    [[ " ${ports[*]-} " == *" $p "* ]] || ports+=("$p")
  done
  tmp_root
  dir="$TMP_ROOT/kafka"
  mkdir -p "$dir"
  start_bg kafka "$dir/kafka.log" "$KFAKE_BIN" -ports "$(IFS=,; echo "${ports[*]}")"
  for p in "${ports[@]}"; do
    wait_port kafka "$p" 60 "$dir/kafka.log" "${SERVER_PIDS[-1]}"
    brokers+="${brokers:+,}127.0.0.1:$p"
  done
  export TIDEMARK_TEST_KAFKA_BROKERS="$brokers"
}

# ---------------------------------------------------------------------------
# Tools (not servers): installed in parallel with the servers.

# promtool checks and unit-tests deploy/prometheus/alerts.yml. Prometheus
# v0.316.0 (= 3.16.0): the earlier 3.x modules carry replace directives,
# which `go install pkg@version` refuses; its go.mod wants go >= 1.26.7.
PROMTOOL_SPEC=github.com/prometheus/prometheus/cmd/promtool@v0.316.0

install_promtool() {
  need_go_tool promtool "$PROMTOOL_SPEC"
}

# Chromium for the browser SDK tests (TestBrowserSDKRetriesThroughCORS):
# Debian's package, never a browser a test tool downloads.
CHROMIUM_BIN=/usr/bin/chromium

install_chromium() {
  need_apt chromium
  [[ -x "$CHROMIUM_BIN" ]] || die "chromium installed but no $CHROMIUM_BIN"
  log "$("$CHROMIUM_BIN" --version 2>/dev/null | head -n 1)"
}

# go test -race needs cgo: a C compiler and the C library's headers.
install_race() {
  if command -v gcc >/dev/null && [[ -e /usr/include/stdlib.h ]]; then
    log "$(gcc --version | head -n 1)"
    return 0
  fi
  need_apt gcc libc6-dev
  command -v gcc >/dev/null || die "gcc installed but not on PATH"
}

# ---------------------------------------------------------------------------
# Arguments.

PKGS=()
GOTEST_ARGS=()
BINARY_ARGS=() # `-args` and everything after it: go test wants them last
for a in "$@"; do
  if ((${#BINARY_ARGS[@]} > 0)) || [[ "$a" == -args || "$a" == --args ]]; then
    BINARY_ARGS+=("$a")
    continue
  fi
  case "$a" in
    . | ./* | ../* | github.com/tidemark/tidemark | github.com/tidemark/tidemark/*) PKGS+=("$a") ;;
    *) GOTEST_ARGS+=("$a") ;;
  esac
done
((${#PKGS[@]} > 0)) || PKGS=(./...)

selected_servers() {
  local s=${TIDEMARK_TEST_SERVERS:-all}
  if [[ "$s" == all ]]; then
    echo "${SERVERS[@]}"
  elif [[ "$s" != none ]]; then
    echo "${s//,/ }"
  fi
}

# ---------------------------------------------------------------------------
# Main.

log "tidemark tests in $ROOT ($(go version | cut -d' ' -f3), CI=${CI:-false})"
log "packages: ${PKGS[*]}; go test flags: -count=1 -timeout 25m ${GOTEST_ARGS[*]}"

read -r -a RUN_SERVERS <<<"$(selected_servers)"
for s in ${RUN_SERVERS[@]+"${RUN_SERVERS[@]}"}; do
  declare -F "start_$s" >/dev/null || die "unknown server '$s' in TIDEMARK_TEST_SERVERS (known: ${SERVERS[*]})"
done

phase "install"
t0=$SECONDS
mkdir -p "$ROOT/.testenv"
# install_one NAME FUNC [ARGS]: run FUNC in the background, output to
# .testenv/install-NAME.log. Sets INSTALL_PIDS[NAME].
declare -A INSTALL_PIDS=()
install_one() {
  local name=$1
  shift
  (
    t=$SECONDS
    "$@"
    log "$name: install step done in $((SECONDS - t))s"
  ) >"$ROOT/.testenv/install-$name.log" 2>&1 </dev/null &
  INSTALL_PIDS[$name]=$!
}
exec 9>"$ROOT/.testenv/install.lock"
flock 9 # serialize installs across concurrent runs in this tree
install_one node ensure_node_modules "$TIDEMARK_TEST_NODE_DIR"
install_one promtool install_promtool
install_one chromium install_chromium
RACE=${TIDEMARK_TEST_RACE:-1}
[[ "$RACE" == 0 ]] || install_one race install_race
for s in ${RUN_SERVERS[@]+"${RUN_SERVERS[@]}"}; do
  if declare -F "install_$s" >/dev/null; then install_one "$s" "install_$s"; fi
done
INSTALL_FAILED=()
for name in node promtool chromium race ${RUN_SERVERS[@]+"${RUN_SERVERS[@]}"}; do
  [[ -n "${INSTALL_PIDS[$name]:-}" ]] || continue
  if wait "${INSTALL_PIDS[$name]}"; then
    log "$(tail -n 1 "$ROOT/.testenv/install-$name.log" | sed 's/^\[test.sh [^]]*\] //')"
  else
    tail -n 30 "$ROOT/.testenv/install-$name.log" >&2
    log "install of $name FAILED (log: .testenv/install-$name.log)"
    INSTALL_FAILED+=("$name")
  fi
done
flock -u 9
exec 9>&-
if ((${#INSTALL_FAILED[@]} > 0)); then
  for name in "${INSTALL_FAILED[@]}"; do
    [[ "$name" == node || "${CI:-}" == true ]] && die "could not install ${INSTALL_FAILED[*]} (see the logs above)"
  done
  log "WARNING: ${INSTALL_FAILED[*]}: install failed; not starting it (tests that need it will fail; without promtool the rules check is skipped, without race the race step)"
  kept=()
  for s in ${RUN_SERVERS[@]+"${RUN_SERVERS[@]}"}; do
    [[ " ${INSTALL_FAILED[*]} " == *" $s "* ]] || kept+=("$s")
  done
  RUN_SERVERS=(${kept[@]+"${kept[@]}"})
fi
if [[ " ${INSTALL_FAILED[*]-} " != *" chromium "* && -x "$CHROMIUM_BIN" ]]; then
  export TIDEMARK_TEST_CHROMIUM="$CHROMIUM_BIN"
fi
log "go mod download"
go mod download || log "go mod download failed: go vet/go test below will show why"
log "install done in $((SECONDS - t0))s"

phase "start servers: ${RUN_SERVERS[*]:-none}"
t0=$SECONDS
for s in ${RUN_SERVERS[@]+"${RUN_SERVERS[@]}"}; do "start_$s"; done
log "servers up in $((SECONDS - t0))s"
log "TIDEMARK_TEST_NODE_DIR=$TIDEMARK_TEST_NODE_DIR"
[[ -n "${TIDEMARK_TEST_POSTGRES_URL:-}" ]] && log "TIDEMARK_TEST_POSTGRES_URL=$TIDEMARK_TEST_POSTGRES_URL"
[[ -n "${TIDEMARK_TEST_S3_ENDPOINT:-}" ]] && log "TIDEMARK_TEST_S3_ENDPOINT=$TIDEMARK_TEST_S3_ENDPOINT (keys in TIDEMARK_TEST_S3_ACCESS_KEY/_SECRET_KEY)"
[[ -n "${TIDEMARK_TEST_GCS_HOST:-}" ]] && log "TIDEMARK_TEST_GCS_HOST=$TIDEMARK_TEST_GCS_HOST"
[[ -n "${TIDEMARK_TEST_AZURE_ENDPOINT:-}" ]] && log "TIDEMARK_TEST_AZURE_ENDPOINT=$TIDEMARK_TEST_AZURE_ENDPOINT"
[[ -n "${TIDEMARK_TEST_KAFKA_BROKERS:-}" ]] && log "TIDEMARK_TEST_KAFKA_BROKERS=$TIDEMARK_TEST_KAFKA_BROKERS"

phase "prometheus rules: deploy/prometheus"
t0=$SECONDS
rules_rc=0 rules_note="exit 0"
PROMTOOL="$(go_bin_dir)/promtool"
if [[ " ${INSTALL_FAILED[*]-} " == *" promtool "* || ! -x "$PROMTOOL" ]]; then
  if [[ "${CI:-}" == true ]]; then
    rules_rc=1 rules_note="FAILED: promtool is not installed (CI=true)"
    log "ERROR: rules check $rules_note" >&2
  else
    rules_note="skipped (promtool is not installed)"
    log "WARNING: rules check $rules_note"
  fi
else
  "$PROMTOOL" check rules deploy/prometheus/alerts.yml || rules_rc=$?
  if ((rules_rc == 0)); then
    "$PROMTOOL" test rules deploy/prometheus/alerts_test.yml || rules_rc=$?
  fi
  rules_note="exit $rules_rc"
  log "promtool check/test rules: exit $rules_rc in $((SECONDS - t0))s"
fi

# The race step's packages: the selected ones but cmd/tidemark and
# internal/destination/blob (see the header).
RACE_PKGS=()
race_note="skipped (TIDEMARK_TEST_RACE=0)"
if [[ "$RACE" != 0 ]]; then
  if [[ " ${INSTALL_FAILED[*]-} " == *" race "* ]]; then
    RACE=0 race_note="skipped (no C compiler: install failed)"
  else
    mapfile -t RACE_PKGS < <(go list "${PKGS[@]}" 2>/dev/null | grep -vx -e 'github.com/tidemark/tidemark/cmd/tidemark' -e 'github.com/tidemark/tidemark/internal/destination/blob' || true)
    ((${#RACE_PKGS[@]} > 0)) || RACE=0 race_note="skipped (no package but cmd/tidemark or blob selected)"
  fi
fi

# go vet and the race step run beside go test, each into its own log,
# printed once go test is done.
# side NAME CMD...: start CMD in the background, in its own process group
# (setsid does not fork here: a background job of this non-interactive shell
# is no group leader), output to $TMP_ROOT/NAME.log, at nice 10 both as
# processes and as a scheduler autogroup (see the header; without autogroup
# the write fails and the process nice does the work).
tmp_root
side() {
  local name=$1
  shift
  SIDE_T0[$name]=$SECONDS
  setsid sh -c '{ echo 10 >/proc/self/autogroup; } 2>/dev/null; exec nice -n 10 "$@"' "side-$name" "$@" \
    >"$TMP_ROOT/$name.log" 2>&1 </dev/null &
  SIDE_PIDS[$name]=$!
}
# side_wait NAME LABEL: wait for NAME, print its log, set SIDE_RC to its exit
# status.
side_wait() {
  local name=$1 label=$2
  SIDE_RC=0
  wait "${SIDE_PIDS[$name]}" || SIDE_RC=$?
  unset "SIDE_PIDS[$name]"
  cat "$TMP_ROOT/$name.log"
  log "$label: exit $SIDE_RC in $((SECONDS - SIDE_T0[$name]))s (started with go test)"
}

vet_rc=0 vet_note="skipped (TIDEMARK_TEST_VET=0)"
if [[ "${TIDEMARK_TEST_VET:-1}" != 0 ]]; then
  side vet go vet "${PKGS[@]}"
fi
race_rc=0
if [[ "$RACE" != 0 ]]; then
  side race env CGO_ENABLED=1 go test -race -p 1 -count=1 -timeout 25m \
    ${GOTEST_ARGS[@]+"${GOTEST_ARGS[@]}"} "${RACE_PKGS[@]}" ${BINARY_ARGS[@]+"${BINARY_ARGS[@]}"}
fi

beside=()
[[ -n "${SIDE_PIDS[vet]:-}" ]] && beside+=("go vet")
[[ "$RACE" != 0 ]] && beside+=("go test -race")
beside_list="$(IFS=,; echo "${beside[*]-}")"
phase "go test ${PKGS[*]}${beside_list:+ (beside it: ${beside_list//,/ and }; their output follows)}"
t0=$SECONDS
test_rc=0
go test -count=1 -timeout 25m ${GOTEST_ARGS[@]+"${GOTEST_ARGS[@]}"} "${PKGS[@]}" ${BINARY_ARGS[@]+"${BINARY_ARGS[@]}"} || test_rc=$?
log "go test: exit $test_rc in $((SECONDS - t0))s"

if [[ -n "${SIDE_PIDS[vet]:-}" ]]; then
  phase "go vet ${PKGS[*]}"
  side_wait vet "go vet"
  vet_rc=$SIDE_RC vet_note="exit $vet_rc"
fi
if [[ "$RACE" != 0 ]]; then
  phase "go test -race -p 1 ${RACE_PKGS[*]#github.com/tidemark/tidemark/}"
  side_wait race "go test -race"
  race_rc=$SIDE_RC race_note="exit $race_rc"
fi

phase "done in $((SECONDS - START_SECONDS))s: rules $rules_note, go vet $vet_note, go test exit $test_rc, go test -race $race_note"
for rc in "$test_rc" "$race_rc" "$vet_rc" "$rules_rc"; do
  if ((rc != 0)); then exit "$rc"; fi
done
exit 0
