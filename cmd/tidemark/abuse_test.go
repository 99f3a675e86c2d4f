package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

const (
	abuseKeyA = "abuse-org-a-write-key-0001"
	abuseKeyB = "abuse-org-b-write-key-0001"
)

// gzipBomb is a 4 MiB (inflated) batch of empty events, about 4 KiB gzipped:
// cheap to send, and every event is an object the decoder must account for.
func gzipBomb(t testing.TB) []byte {
	t.Helper()
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	n := (4<<20 - 64) / 3
	io.WriteString(zw, `{"batch":[`+strings.Repeat(`{},`, n)+`{}]}`)
	zw.Close()
	return b.Bytes()
}

// peakRSS is the process's peak resident set (VmHWM), in MiB.
func peakRSS(t testing.TB, pid int) float64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(raw)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb float64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb / 1024
		}
	}
	t.Fatal("no VmHWM in /proc/PID/status")
	return 0
}

// flood posts body to url from n goroutines until stop, counting the answers
// by status code (0: the request failed).
func flood(url, key string, body []byte, n int, stop *atomic.Bool, wg *sync.WaitGroup, codes *sync.Map) {
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Timeout: 30 * time.Second}
			for !stop.Load() {
				req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
				req.Header.Set("Content-Encoding", "gzip")
				if key != "" {
					req.SetBasicAuth(key, "")
				}
				code := 0
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					code = resp.StatusCode
				}
				v, _ := codes.LoadOrStore(code, new(atomic.Int64))
				v.(*atomic.Int64).Add(1)
			}
		}()
	}
}

func countsOf(codes *sync.Map) string {
	var parts []string
	codes.Range(func(k, v any) bool {
		parts = append(parts, fmt.Sprintf("%d: %d", k, v.(*atomic.Int64).Load()))
		return true
	})
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// TestAbuseFlood: while keyless clients and one org (a) flood the real
// binary with gzip bombs (4 MiB of empty events in 4 KiB) and org a also
// floods it with valid batches, org b's requests are all accepted with a
// bounded latency, the process's peak RSS stays bounded, and every event
// acknowledged to either org is in its lake exactly once. Before the limits,
// 64 such requests took the server past 2.8 GiB and org b waited seconds.
func TestAbuseFlood(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	lakeA, lakeB := filepath.Join(dir, "lake-a"), filepath.Join(dir, "lake-b")
	p := startProc(t, orgsConfig(t, dir, port, fmt.Sprintf(`orgs:
  - id: a
    write_keys: [%q]
    destinations: [{name: lake, url: "file://%s", flush: {max_events: 5000, max_age: 1s}}]
  - id: b
    write_keys: [%q]
    destinations: [{name: lake, url: "file://%s", flush: {max_events: 5000, max_age: 1s}}]
`, abuseKeyA, lakeA, abuseKeyB, lakeB)), port)

	bomb := gzipBomb(t)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var keyless, bombsA sync.Map
	flood(p.addr+"/v1/batch", "", bomb, 32, &stop, &wg, &keyless)
	flood(p.addr+"/v1/batch", abuseKeyA, bomb, 16, &stop, &wg, &bombsA)
	loadA := startLoad(t, p.addr, abuseKeyA, "a-", 4, 50, 20*time.Millisecond)

	// Org b: one batch of 20 events every 100 ms from each of 2 clients.
	loadB := startLoad(t, p.addr, abuseKeyB, "b-", 2, 20, 100*time.Millisecond)
	var latMu sync.Mutex
	var lats []time.Duration
	var failedB atomic.Int64
	probeB := func() {
		body := []byte(`{"batch":[{"type":"track","anonymousId":"probe","event":"Probe"}]}`)
		req, _ := http.NewRequest("POST", p.addr+"/v1/batch", bytes.NewReader(body))
		req.SetBasicAuth(abuseKeyB, "")
		start := time.Now()
		resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
		d := time.Since(start)
		if err != nil || resp.StatusCode != 200 {
			failedB.Add(1)
		}
		if err == nil {
			resp.Body.Close()
		}
		latMu.Lock()
		lats = append(lats, d)
		latMu.Unlock()
	}
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		probeB()
		time.Sleep(100 * time.Millisecond) // pacing of the probe client, not a wait for a result
	}
	rss := peakRSS(t, p.cmd.Process.Pid)
	stop.Store(true)
	ackedA, ackedB := loadA.Stop(), loadB.Stop()
	wg.Wait()

	slices.Sort(lats)
	p50, worst := lats[len(lats)/2], lats[len(lats)-1]
	t.Logf("peak RSS %.0f MiB; org b probes: %d, p50 %v, max %v; keyless bombs: %s; org a bombs: %s; org a acked %d events (%d non-200 answers, last %q), org b %d (%d non-200)",
		rss, len(lats), p50, worst, countsOf(&keyless), countsOf(&bombsA), len(ackedA), loadA.non200.Load(), loadA.last, len(ackedB), loadB.non200.Load())
	if rss > 1024 {
		t.Errorf("peak RSS %.0f MiB under the flood, want under 1 GiB", rss)
	}
	if n := failedB.Load() + loadB.non200.Load(); n > 0 {
		t.Errorf("org b got %d answers other than 200 (last %q) while org a and keyless clients flooded", n, loadB.last)
	}
	if worst > 5*time.Second {
		t.Errorf("an org b request took %v under the flood, want under 5s", worst)
	}
	if len(ackedA) == 0 {
		t.Errorf("org a's valid batches were never accepted during its own flood")
	}
	for _, c := range []struct {
		root  string
		acked map[string]bool
	}{{lakeA, ackedA}, {lakeB, ackedB}} {
		probe.Until(t, 90*time.Second, "every acknowledged event in "+filepath.Base(c.root), func() (bool, string) {
			counts := readLake(t, c.root).eventCounts()
			missing := 0
			for id := range c.acked {
				if counts[id] == 0 {
					missing++
				}
			}
			return missing == 0, fmt.Sprintf("%d of %d missing", missing, len(c.acked))
		})
		for id, n := range readLake(t, c.root).eventCounts() {
			if n > 1 {
				t.Errorf("%s: event %s %d times", filepath.Base(c.root), id, n)
			}
		}
	}
}

// liveOpen opens GET /v1/live with key as a Bearer token. A 200 stream stays
// open until the test ends (or close is called); otherwise body is the answer.
func liveOpen(t testing.TB, addr, key, query string) (code int, body string, close func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", addr+"/v1/live?"+query, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode == 200 {
		return 200, "", func() { cancel(); resp.Body.Close() }
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	cancel()
	return resp.StatusCode, string(b), func() {}
}

// liveStatus is the answer to GET /v1/live with key (a stream is closed at once).
func liveStatus(t testing.TB, addr, key, query string) (int, string) {
	t.Helper()
	code, body, close := liveOpen(t, addr, key, query)
	close()
	return code, body
}

// TestLiveTailSharesPerOrgAndKey: live-tail streams are limited per key, per
// org and for the admin keys, so that one org holding all it may still
// leaves every other org (and the admin) its share; a write key cannot tail.
func TestLiveTailSharesPerOrgAndKey(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	const (
		readA1, readA2, readB = "live-read-key-a1-00001", "live-read-key-a2-00001", "live-read-key-b1-00001"
		writeA, writeB        = "live-write-key-a-00001", "live-write-key-b-00001"
	)
	p := startProc(t, orgsConfig(t, dir, port, fmt.Sprintf(`stream:
  live: {max_streams_per_org: 3, max_streams_per_key: 2, max_admin_streams: 2}
admin_keys: [%q]
orgs:
  - id: a
    write_keys: [%q]
    read_keys: [%q, %q]
    destinations: [{name: lake, url: "file://%s/lake-a"}]
  - id: b
    write_keys: [%q]
    read_keys: [%q]
    destinations: [{name: lake, url: "file://%s/lake-b"}]
`, adminKey, writeA, readA1, readA2, dir, writeB, readB, dir)), port)

	want := func(key, query string, code int, msg string) {
		t.Helper()
		got, body, _ := liveOpen(t, p.addr, key, query)
		if got != code || !strings.Contains(body, msg) {
			t.Errorf("GET /v1/live?%s with %s: %d %q, want %d saying %q", query, key[:12], got, body, code, msg)
		}
	}
	// Org a takes everything it may: two streams on one key, one on the other.
	want(readA1, "", 200, "")
	want(readA1, "type=page", 200, "")
	want(readA1, "", 429, "max_streams_per_key")
	want(readA2, "", 200, "")
	want(readA2, "", 429, "max_streams_per_org")
	// ... and org b and the admin still get theirs.
	code, _, closeB := liveOpen(t, p.addr, readB, "")
	if code != 200 {
		t.Fatalf("org b's first stream: %d", code)
	}
	want(readB, "", 200, "")
	want(readB, "", 429, "max_streams_per_key")
	want(adminKey, "org=a", 200, "")
	want(adminKey, "", 200, "")
	want(adminKey, "org=b", 429, "max_admin_streams")
	// Write keys ship in web pages: they never read events.
	want(writeB, "", 403, "write keys are public")
	// A closed stream frees its slot.
	closeB()
	probe.Until(t, 30*time.Second, "org b's slot freed after its stream closed", func() (bool, string) {
		code, body, _ := liveOpen(t, p.addr, readB, "")
		return code == 200, fmt.Sprintf("%d %s", code, body)
	})
}

// openFDs counts the process's open file descriptors.
func openFDs(t testing.TB, pid int) int {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// TestSlowClientsAreCutOff: connections that dribble their headers or their
// body one byte at a time are closed after http.read_header_timeout and
// http.read_timeout; while they hold every slot of http.max_connections a
// new client is told 503 with Retry-After at once (never left hanging), the
// process's descriptors stay bounded, and once the slow ones are cut off
// valid requests are served again.
func TestSlowClientsAreCutOff(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	const maxConns = 40
	p := startProc(t, testConfig(t, dir, port, fmt.Sprintf(`http:
  read_header_timeout: 1s
  read_timeout: 2s
  idle_timeout: 2s
  max_connections: %d
`, maxConns)), port)
	fds0 := openFDs(t, p.cmd.Process.Pid)
	host := strings.TrimPrefix(p.addr, "http://")
	// A live-tail stream (one slot) must outlive http.read_timeout.
	live := openLive(t, p.addr, testReadKey, "")

	// Half dribble their headers, half a body they announced with a valid key.
	var closed atomic.Int64
	var slow sync.WaitGroup
	start := time.Now()
	for i := range maxConns {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		head := "POST /v1/batch HTTP/1.1\r\nHost: x\r\nX-Slow: "
		if i%2 == 1 {
			auth := base64.StdEncoding.EncodeToString([]byte(testKey + ":"))
			head = "POST /v1/batch HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + auth + "\r\nContent-Length: 100000\r\n\r\n{\"batch\":["
		}
		if _, err := io.WriteString(c, head); err != nil {
			t.Fatal(err)
		}
		slow.Add(2)
		done := make(chan struct{})
		go func() { // the server closing the connection ends this read
			defer slow.Done()
			io.Copy(io.Discard, c)
			closed.Add(1)
			close(done)
		}()
		go func() { // one byte every 200 ms, until closed
			defer slow.Done()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-done:
					return
				case <-tick.C:
					if _, err := c.Write([]byte(" ")); err != nil {
						return
					}
				}
			}
		}()
	}
	// Every slot is taken (the first few may already be cut off): a new
	// client gets an answer at once, 503 with Retry-After or, if a slot
	// freed meanwhile, 200; never a hang.
	probe.Until(t, 30*time.Second, "the slow connections open", func() (bool, string) {
		v, _ := p.metric("tidemark_http_open_connections")
		return v >= maxConns-5 || closed.Load() > 0, fmt.Sprintf("%v open", v)
	})
	if n := openFDs(t, p.cmd.Process.Pid); n > fds0+maxConns+20 {
		t.Errorf("%d open descriptors with %d connection slots (%d before)", n, maxConns, fds0)
	}
	req, _ := http.NewRequest("POST", p.addr+"/v1/batch", strings.NewReader(`{"batch":[{"type":"track","anonymousId":"d","event":"E","messageId":"full-1"}]}`))
	req.SetBasicAuth(testKey, "")
	resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("a client while the slots are full: %v (want an answer, 503 or 200)", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "" && strings.Contains(string(body), "max_connections"):
	case resp.StatusCode == 200:
	default:
		t.Errorf("a client while the slots are full: %d %q (Retry-After %q)", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}

	// The slow ones are cut off (timeouts of 1-2 s; generous bound).
	probe.Until(t, 60*time.Second, "the server closing every slow connection", func() (bool, string) {
		return closed.Load() == maxConns, fmt.Sprintf("%d of %d closed after %v", closed.Load(), maxConns, time.Since(start))
	})
	t.Logf("all %d slow connections closed within %v", maxConns, time.Since(start))
	slow.Wait()
	code, body2 := post(t, p.addr+"/v1/batch", []byte(`{"batch":[{"type":"track","anonymousId":"d","event":"E","messageId":"after-1"}]}`), false)
	if code != 200 {
		t.Fatalf("after the slow clients were cut off: %d %s", code, body2)
	}
	select {
	case it := <-live:
		if it.EventID != "after-1" && it.EventID != "full-1" {
			t.Errorf("live tail got %s", it.EventID)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the live-tail stream opened %v ago (read_timeout 2s) got nothing", time.Since(start))
	}
	if v, _ := p.metric("tidemark_http_refused_connections_total"); resp.StatusCode == 503 && v < 1 {
		t.Errorf("tidemark_http_refused_connections_total = %v after a refusal", v)
	}
}

// TestMetricsProtected: with metrics.listen and metrics.token, /metrics is
// not on the main listener and answers 401 without the token.
func TestMetricsProtected(t *testing.T) {
	dir := t.TempDir()
	port, mport := testenv.FreePort(t), testenv.FreePort(t)
	const token = "metrics-token-000000001"
	p := startProcEnv(t, testConfig(t, dir, port, fmt.Sprintf(`metrics:
  listen: 127.0.0.1:%d
  token: ${TEST_METRICS_TOKEN}
`, mport)), port, []string{"TEST_METRICS_TOKEN=" + token})
	get := func(url, tok string) (int, string) {
		if tok == "" {
			return getAuth(t, url, "")
		}
		return getAuth(t, url, "Bearer "+tok)
	}
	if code, body := post(t, p.addr+"/v1/track", []byte(`{"anonymousId":"d","event":"E"}`), false); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	murl := fmt.Sprintf("http://127.0.0.1:%d/metrics", mport)
	if code, body := get(p.addr+"/metrics", token); code != 404 || strings.Contains(body, "acme") {
		t.Errorf("main listener /metrics: %d, want 404 and no org id", code)
	}
	if code, body := get(murl, ""); code != 401 || strings.Contains(body, "acme") || strings.Contains(body, token) {
		t.Errorf("metrics listener without token: %d %q, want 401 without org ids", code, body)
	}
	if code, body := get(murl, "wrong-token-0000000001"); code != 401 {
		t.Errorf("metrics listener with a wrong token: %d %q, want 401", code, body)
	}
	if code, body := get(murl, token); code != 200 || !strings.Contains(body, `tidemark_ingest_events_total{org="acme",outcome="accepted"} 1`) {
		t.Errorf("metrics listener with the token: %d, want 200 with acme's count", code)
	}
	if strings.Contains(p.out.String(), token) {
		t.Errorf("the server's output shows the metrics token")
	}
}
