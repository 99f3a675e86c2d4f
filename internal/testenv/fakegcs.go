package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"google.golang.org/api/option"
)

// FakeGCS is a private GCS emulator (fake-gcs-server, filesystem backend)
// that a test starts, stops and restarts itself, on its own port and data
// directory, to simulate an outage of object storage. Buckets and objects
// are files under Dir, so they survive a restart.
type FakeGCS struct {
	Port int
	Dir  string // the filesystem backend's root; kept across restarts

	srv *stoppable
}

// StartFakeGCS starts a private fake-gcs-server (EnvFakeGCSBin) on a free
// port with a fresh data directory, and stops it when the test ends. It sets
// STORAGE_EMULATOR_HOST to this server in the process environment for the
// rest of the test (see Env), so the test must not be parallel.
func StartFakeGCS(t testing.TB) *FakeGCS {
	t.Helper()
	bin := os.Getenv(EnvFakeGCSBin)
	if bin == "" {
		missing(t, EnvFakeGCSBin+" is not set (the fake-gcs-server binary)")
	}
	dir := t.TempDir()
	g := &FakeGCS{Port: FreePort(t), Dir: filepath.Join(dir, "data")}
	if err := os.MkdirAll(g.Dir, 0o755); err != nil {
		t.Fatalf("testenv: fake-gcs-server: %v", err)
	}
	setEnv(t, g.Env())
	// -public-host must be the address clients use, or reads of written
	// objects fail with "object doesn't exist"; -external-url is the
	// Location of resumable uploads.
	g.srv = newStoppable(t, "fake-gcs-server", filepath.Join(dir, "fake-gcs-server.log"), g.Port, syscall.SIGKILL, func() *exec.Cmd {
		return exec.Command(bin, "-scheme", "http", "-host", "127.0.0.1", "-port", strconv.Itoa(g.Port),
			"-public-host", g.Host(), "-external-url", "http://"+g.Host(),
			"-backend", "filesystem", "-filesystem-root", g.Dir, "-log-level", "warn")
	})
	g.Start()
	return g
}

// Host is the server's host:port, the value for STORAGE_EMULATOR_HOST.
func (g *FakeGCS) Host() string { return "127.0.0.1:" + strconv.Itoa(g.Port) }

// Env returns the environment a process needs to open this server's URLs:
// STORAGE_EMULATOR_HOST (which makes the client skip authentication).
func (g *FakeGCS) Env() []string { return []string{"STORAGE_EMULATOR_HOST=" + g.Host()} }

// Start starts the server (again, on the same port and data directory) and
// waits until it accepts connections.
func (g *FakeGCS) Start() { g.srv.t.Helper(); g.srv.start() }

// Stop kills the server (an abrupt outage) and waits until it is gone. It
// does nothing if the server is not running.
func (g *FakeGCS) Stop() { g.srv.stop() }

// URL returns the gocloud URL of prefix in bucket on this server; open it
// with Env in the environment.
func (g *FakeGCS) URL(bucket, prefix string) string { return cloudURL("gs", bucket, prefix, nil) }

// Client returns a storage client of this server, closed when the test ends.
func (g *FakeGCS) Client(t testing.TB) *storage.Client {
	t.Helper()
	c, err := storage.NewClient(t.Context(), option.WithoutAuthentication(),
		option.WithEndpoint("http://"+g.Host()+"/storage/v1/"))
	if err != nil {
		t.Fatalf("testenv: fake-gcs-server client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// CreateBucket creates a bucket on this server.
func (g *FakeGCS) CreateBucket(t testing.TB, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	if err := g.Client(t).Bucket(bucket).Create(ctx, "tidemark-test", nil); err != nil {
		t.Fatalf("testenv: fake-gcs-server create bucket %s: %v", bucket, err)
	}
}

// stoppable runs a server process that a test stops and restarts on the
// same port (FakeGCS, Azurite): start waits until the port accepts
// connections, stop sends sig and waits until the process is gone (SIGKILL
// after 30s). It is stopped when the test ends.
type stoppable struct {
	t    testing.TB
	name string
	port int
	sig  syscall.Signal
	cmd  func() *exec.Cmd
	log  *os.File

	mu      sync.Mutex
	running *exec.Cmd
	done    chan struct{}
}

func newStoppable(t testing.TB, name, logPath string, port int, sig syscall.Signal, cmd func() *exec.Cmd) *stoppable {
	t.Helper()
	lf, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("testenv: %s: %v", name, err)
	}
	s := &stoppable{t: t, name: name, port: port, sig: sig, cmd: cmd, log: lf}
	t.Cleanup(func() {
		s.stop()
		lf.Close()
	})
	return s
}

func (s *stoppable) start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running != nil {
		s.t.Fatalf("testenv: %s already running", s.name)
	}
	cmd := s.cmd()
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("testenv: start %s: %v", s.name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			logs, _ := os.ReadFile(s.log.Name())
			s.t.Fatalf("testenv: %s exited at start: %s", s.name, logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			s.t.Fatalf("testenv: %s not listening on %d after 30s", s.name, s.port)
		}
	}
	s.running, s.done = cmd, done
}

func (s *stoppable) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running == nil {
		return
	}
	s.running.Process.Signal(s.sig)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.running.Process.Kill()
		<-s.done
	}
	s.running, s.done = nil, nil
}
