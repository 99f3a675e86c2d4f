package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvPostgresBin is the directory of the PostgreSQL server binaries
// (initdb, pg_ctl, postgres) that ./scripts/test.sh found, for tests that
// run a server of their own (to stop and restart it).
const EnvPostgresBin = "TIDEMARK_TEST_POSTGRES_BIN"

// Postgres is a private PostgreSQL server that a test starts, stops and
// restarts itself, on its own port and data directory (in t.TempDir()), to
// simulate an outage of a warehouse. Its superuser is postgres, with trust
// authentication on 127.0.0.1, like the script's server. When the test runs
// as root, the server runs as the postgres user (it refuses root), as the
// script does.
type Postgres struct {
	t    testing.TB
	bin  string
	as   []string // runuser -u postgres -- when root
	Port int
	Dir  string // the data directory; kept across restarts
	log  string

	mu      sync.Mutex
	running bool
}

// StartPostgres initialises a cluster with EnvPostgresBin's initdb on a free
// port and starts it; it stops it (immediately) when the test ends.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	bin := os.Getenv(EnvPostgresBin)
	if bin == "" {
		missing(t, EnvPostgresBin+" is not set (the directory of initdb and pg_ctl)")
	}
	dir := t.TempDir()
	p := &Postgres{t: t, bin: bin, Port: FreePort(t), Dir: filepath.Join(dir, "data"), log: filepath.Join(dir, "postgres.log")}
	if os.Geteuid() == 0 {
		// The server's user must reach its directory: t.TempDir's are 0700.
		// Open them (and only them) to others, up to the temp root.
		for d := dir; strings.HasPrefix(d, os.TempDir()+string(filepath.Separator)); d = filepath.Dir(d) {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatalf("testenv: postgres: %v", err)
			}
		}
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("testenv: postgres: running as root needs the postgres user (Debian's postgresql package): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("testenv: postgres: %v", err)
		}
		p.as = []string{"runuser", "-u", "postgres", "--"}
	}
	p.run(2*time.Minute, filepath.Join(bin, "initdb"), "-D", p.Dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8")
	t.Cleanup(p.Stop)
	p.Start()
	return p
}

// run runs a server command as the server's user and fails the test with
// its output if it fails.
func (p *Postgres) run(timeout time.Duration, name string, args ...string) {
	p.t.Helper()
	argv := append(append(append([]string{}, p.as...), name), args...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		p.t.Fatalf("testenv: postgres: %s did not finish within %v\n%s", filepath.Base(name), timeout, out.Bytes())
	}
	if err != nil {
		logs, _ := os.ReadFile(p.log)
		p.t.Fatalf("testenv: postgres: %s: %v\n%s\nserver log:\n%s", filepath.Base(name), err, out.Bytes(), logs)
	}
}

// Start starts the server (again, on the same port and data directory) and
// waits until it accepts connections (pg_ctl -w).
func (p *Postgres) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		p.t.Fatalf("testenv: postgres already running")
	}
	// The socket goes in the data directory: nothing outside the test's.
	// fsync off, as the script's server: a stopped server's writes stay in
	// the page cache. But synchronous_commit stays on: an immediate stop
	// loses the commits of the last moments without it (tidemark's audit
	// finds them missing), and a test of an outage wants a durable server.
	p.run(2*time.Minute, filepath.Join(p.bin, "pg_ctl"), "-D", p.Dir, "-l", p.log, "-w", "-t", "90",
		"-o", fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off -c full_page_writes=off", p.Port, p.Dir),
		"start")
	p.running = true
}

// Stop shuts the server down in immediate mode (an abrupt outage: clients'
// connections break, the next start recovers) and waits until it is gone.
// It does nothing if the server is not running.
func (p *Postgres) Stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.running {
		return
	}
	p.run(2*time.Minute, filepath.Join(p.bin, "pg_ctl"), "-D", p.Dir, "-m", "immediate", "-w", "-t", "90", "stop")
	p.running = false
}

// URL returns the superuser URL of database db on this server.
func (p *Postgres) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, db)
}
