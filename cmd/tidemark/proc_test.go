package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// binary builds the real tidemark binary once per test run.
func binary(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tidemark-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "tidemark")
		cmd := exec.Command("go", "build", "-o", binPath, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// proc is a running `tidemark serve`.
type proc struct {
	t      testing.TB
	cfg    string
	addr   string
	cmd    *exec.Cmd
	out    *syncBuf
	starts int
	exited chan struct{} // closed when the current process has been waited for
	// env is added to the child's environment (after os.Environ()), e.g.
	// testenv.S3Env(t) for a cloud destination.
	env []string
	// dir is the child's working directory (relative paths in its config
	// resolve against it); empty: the test's.
	dir string
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testConfig writes a config with short timeouts for tests, org acme
// delivering to dir/lake, and returns its path.
func testConfig(t testing.TB, dir string, port int, extra string) string {
	t.Helper()
	return orgsConfig(t, dir, port, fmt.Sprintf(`orgs:
  - id: acme
    write_keys: ["acme-test-write-key-0001"]
    read_keys: [%q]
    destinations:
      - name: lake
        url: file://%s
        flush: {max_events: 300, max_age: 1s}
%s`, testReadKey, filepath.Join(dir, "lake"), extra))
}

func startProc(t testing.TB, cfg string, port int) *proc {
	t.Helper()
	return startProcEnv(t, cfg, port, nil)
}

// startProcEnv is startProc with env added to the child's environment.
func startProcEnv(t testing.TB, cfg string, port int, env []string) *proc {
	t.Helper()
	return runProc(t, &proc{t: t, cfg: cfg, addr: fmt.Sprintf("http://127.0.0.1:%d", port), out: &syncBuf{}, env: env})
}

// startProcIn is startProc with the working directory dir.
func startProcIn(t testing.TB, dir, cfg string, port int) *proc {
	t.Helper()
	return runProc(t, &proc{t: t, cfg: cfg, addr: fmt.Sprintf("http://127.0.0.1:%d", port), out: &syncBuf{}, dir: dir})
}

// runProc starts p and stops it when the test ends.
func runProc(t testing.TB, p *proc) *proc {
	t.Helper()
	p.start()
	t.Cleanup(func() {
		if !p.done() {
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("tidemark output:\n%s", tail(p.out.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func (p *proc) start() {
	p.t.Helper()
	if !p.tryStart() {
		p.t.Fatalf("tidemark exited during start %d:\n%s", p.starts, tail(p.out.String(), 4000))
	}
}

// tryStart starts serve and waits until it is ready (true) or has exited
// (false).
func (p *proc) tryStart() bool {
	p.t.Helper()
	p.starts++
	p.cmd = exec.Command(binary(p.t), "serve", "--config", p.cfg)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Dir = p.dir
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	// Ready means this process answers: another test's server may hold the
	// port (FreePort's port can be taken by another test process before
	// ours binds), and its /readyz must not count as ours.
	mark := len(p.out.String())
	listening := "tidemark: listening on " + p.addr + "\n"
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	exited := make(chan struct{})
	p.exited = exited
	go func(c *exec.Cmd) { c.Wait(); close(exited) }(p.cmd)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(p.addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(p.out.String()[mark:], listening) {
				return true
			}
		}
		select {
		case <-exited:
			return false
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("tidemark not ready after 60s:\n%s", tail(p.out.String(), 4000))
		}
	}
}

// done reports whether the current process has exited and been waited for.
func (p *proc) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatal("tidemark did not stop within 30s of SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		p.t.Fatalf("tidemark exited with %d after SIGTERM:\n%s", code, tail(p.out.String(), 4000))
	}
}

// metric returns the value of one sample line of /metrics, e.g.
// `tidemark_delivered_events_total{destination="lake",org="acme",table="events"}`.
func (p *proc) metric(sample string) (float64, bool) {
	return probe.Metric(p.addr+"/metrics", sample)
}

// lake is what a reader of the destination sees: only files named by a manifest.
type lake struct {
	Events    []format.EventRow
	Pages     []format.PageRow
	Sessions  []format.SessionRow
	Manifests int
	Files     map[string]bool // committed data files, relative to the root
}

type manifestFiles struct {
	Files []struct {
		Path  string `json:"path"`
		Table string `json:"table"`
	} `json:"files"`
}

func readLake(t testing.TB, root string) lake {
	t.Helper()
	l := lake{Files: map[string]bool{}}
	ms, _ := filepath.Glob(filepath.Join(root, "_manifests", "*.json"))
	for _, m := range ms {
		raw, err := os.ReadFile(m)
		if err != nil {
			t.Fatal(err)
		}
		var mf manifestFiles
		if err := json.Unmarshal(raw, &mf); err != nil {
			t.Fatalf("manifest %s: %v", m, err)
		}
		l.Manifests++
		for _, f := range mf.Files {
			l.Files[f.Path] = true
			data, err := os.ReadFile(filepath.Join(root, f.Path))
			if err != nil {
				t.Fatalf("manifest %s names %s: %v", m, f.Path, err)
			}
			switch f.Table {
			case "events":
				rows, err := format.ReadEvents(data)
				if err != nil {
					t.Fatal(err)
				}
				l.Events = append(l.Events, rows...)
			case "pages":
				rows, err := format.ReadPages(data)
				if err != nil {
					t.Fatal(err)
				}
				l.Pages = append(l.Pages, rows...)
			case "sessions":
				rows, err := format.ReadSessions(data)
				if err != nil {
					t.Fatal(err)
				}
				l.Sessions = append(l.Sessions, rows...)
			default:
				t.Fatalf("manifest %s: unknown table %q", m, f.Table)
			}
		}
	}
	return l
}

// eventCounts maps event id to how many times the lake holds it.
func (l lake) eventCounts() map[string]int {
	c := make(map[string]int, len(l.Events))
	for _, e := range l.Events {
		c[e.EventID]++
	}
	return c
}

// orgsConfig writes a config like testConfig's but with the given orgs
// section (YAML, starting with "orgs:") instead of the acme file lake, and
// returns its path.
func orgsConfig(t testing.TB, dir string, port int, orgs string) string {
	t.Helper()
	cfg := fmt.Sprintf(`listen: 127.0.0.1:%d
data_dir: %s
log:
  partitions: 4
  tick_interval: 100ms
  min_free_bytes: 1MiB
sessions:
  page_idle: 2s
  session_idle: 3s
%s`, port, filepath.Join(dir, "data"), orgs)
	p := filepath.Join(dir, "tidemark.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var _ = testenv.FreePort
