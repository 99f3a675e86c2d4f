package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestBrowserSDKRetriesThroughCORS loads the real analytics.js
// (@segment/analytics-next's browser bundle from npm, unchanged, served from
// a local page: no CDN) in a real headless Chromium, from another origin than
// tidemark's, in both of its delivery modes (one request per event to
// /v1/t and /v1/p; batches to /v1/b). A proxy in front of tidemark fails the
// first POST of each mode without forwarding it (the events must come by a
// retry) and forwards the second but answers it 500 (tidemark accepted it:
// the retry must be deduplicated). analytics.js retries with X-Retry-Count,
// which the browser sends only if tidemark's CORS preflight allows it. Every
// event the page sent must reach tidemark through a retry and be in the lake
// exactly once.
func TestBrowserSDKRetriesThroughCORS(t *testing.T) {
	chromium := testenv.Chromium(t)
	nodeDir := testenv.NodeDir(t)
	dir := t.TempDir()
	port := testenv.FreePort(t)
	p := startProc(t, testConfig(t, dir, port, ""), port)

	px := newFaultProxy(t, p.addr)
	api := serveLocal(t, px)
	bundles := filepath.Join(nodeDir, "node_modules", "@segment", "analytics-next", "dist", "umd")
	mux := http.NewServeMux()
	mux.Handle("/analytics-next/bundles/", http.StripPrefix("/analytics-next/bundles/", http.FileServer(http.Dir(bundles))))
	mux.HandleFunc("/shop.html", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, shopPage)
	})
	site := serveLocal(t, mux) // another origin (port) than api: every call is cross-origin
	page := func(mode string, n int) string {
		q := url.Values{"key": {testKey}, "api": {strings.TrimPrefix(api, "http://") + "/v1"}, "mode": {mode}, "n": {fmt.Sprint(n)}}
		return site + "/shop.html?" + q.Encode()
	}

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "browser.mjs", "--chromium", chromium,
		"--url", page("standard", 6), "--url", page("batch", 12))
	cmd.Dir = nodeDir
	cmd.WaitDelay = 10 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(nil, 16<<20)
	readLine := func(v any) {
		t.Helper()
		if !lines.Scan() {
			cmd.Wait()
			t.Fatalf("browser.mjs ended early (%v):\n%s", lines.Err(), stderr.String())
		}
		if err := json.Unmarshal(lines.Bytes(), v); err != nil {
			t.Fatalf("browser.mjs output %q: %v", lines.Text(), err)
		}
	}
	var opened struct {
		Pages []struct {
			URL string   `json:"url"`
			IDs []string `json:"ids"`
		} `json:"pages"`
	}
	readLine(&opened)
	var ids []string
	for _, pg := range opened.Pages {
		ids = append(ids, pg.IDs...)
	}
	if len(ids) != 18 {
		t.Fatalf("the pages sent %d events, want 18: %+v", len(ids), opened)
	}
	// finish closes the browser and returns what the pages reported.
	finish := func() (errs, console []string) {
		stdin.Close()
		var last struct {
			Errors  []string `json:"errors"`
			Console []string `json:"console"`
		}
		readLine(&last)
		if err := cmd.Wait(); err != nil {
			t.Errorf("browser.mjs: %v\n%s", err, stderr.String())
		}
		return last.Errors, last.Console
	}

	if !probe.Poll(90*time.Second, func() bool { return px.ackedAll(ids) }) {
		errs, console := finish()
		t.Fatalf("analytics.js's retries did not reach tidemark within 90 s (a CORS preflight refusing X-Retry-Count?)\nproxy: %s\nSDK errors: %q\nbrowser console (first 12 lines of %d):\n  %s",
			px.summary(), errs, len(console), strings.Join(console[:min(len(console), 12)], "\n  "))
	}
	root := filepath.Join(dir, "lake")
	probe.Until(t, 90*time.Second, "the browser's events in the lake", func() (bool, string) {
		l := readLake(t, root)
		return len(l.Events) >= len(ids), fmt.Sprintf("events=%d", len(l.Events))
	})
	errs, console := finish()
	if len(errs) > 0 {
		t.Errorf("analytics.js reported errors: %q\nbrowser console:\n  %s", errs, strings.Join(console, "\n  "))
	}
	t.Logf("proxy: %s", px.summary())
	for _, fam := range []string{"single", "batch"} {
		if px.retriesAcked(fam) == 0 {
			t.Errorf("%s mode: no retry (a POST with X-Retry-Count) was accepted by tidemark: %s", fam, px.summary())
		}
	}
	p.stop()
	count := map[string]int{}
	sent := map[string]bool{}
	for _, id := range ids {
		sent[id] = true
	}
	for _, e := range readLake(t, root).Events {
		count[e.EventID]++
		if !sent[e.EventID] {
			t.Logf("not sent by the page: %s %s %v props %s ctx %.300s", e.EventID, e.Type, e.EventName, str(e.Properties), str(e.Context))
		}
	}
	for _, id := range ids {
		if count[id] != 1 {
			t.Errorf("event %s is in the lake %d times, want exactly once", id, count[id])
		}
	}
	if len(count) != len(ids) {
		t.Errorf("the lake holds %d distinct events, the browser sent %d", len(count), len(ids))
	}
}

func str(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}

// shopPage loads analytics.js from this origin with its settings given in
// code (no CDN), makes its calls and reports their messageIds in
// window.tidemarkTest (see testenv/node/browser.mjs).
const shopPage = `<!doctype html>
<meta charset="utf-8">
<title>shop</title>
<script src="/analytics-next/bundles/index.js"></script>
<script>
(async () => {
  const t = { ids: null, errors: [] }
  window.tidemarkTest = t
  try {
    const q = new URLSearchParams(location.search)
    const seg = { apiKey: q.get('key'), apiHost: q.get('api'), protocol: 'http' }
    if (q.get('mode') === 'batch') seg.deliveryStrategy = { strategy: 'batching', config: { size: 5, timeout: 300 } }
    const [analytics] = await window.AnalyticsNext.AnalyticsBrowser.load(
      { writeKey: q.get('key'), cdnURL: location.origin,
        cdnSettings: { integrations: { 'Segment.io': seg }, metrics: { sampleRate: 0 } } },
      { disableClientPersistence: true })
    analytics.on('error', (e) => t.errors.push(String(e.code) + ': ' + String(e.reason)))
    const calls = []
    for (let i = 0; i < Number(q.get('n')); i++) {
      calls.push(i === 0 ? analytics.page('Home', { seq: i }) : analytics.track('Clicked', { seq: i, mode: q.get('mode') }))
    }
    t.ids = (await Promise.all(calls)).map((ctx) => ctx.event.messageId)
  } catch (err) {
    t.fatal = String(err && err.stack || err)
  }
})()
</script>
`

// faultProxy stands between the browser and tidemark. It forwards every
// request, but of the POSTs of each family (single calls; batches to /v1/b)
// it answers the first with a 500 without forwarding it, and forwards the
// second but answers 500 whatever tidemark said (as if the response were
// lost). It records the messageIds of every POST tidemark answered 2xx.
type faultProxy struct {
	t       testing.TB
	target  string
	rp      *httputil.ReverseProxy
	mu      sync.Mutex
	posts   map[string]int      // family -> POSTs seen
	acked   map[string]int      // messageId -> 2xx answers from tidemark
	retries map[string][]string // family -> X-Retry-Count of forwarded POSTs answered 2xx
	log     []string
}

func newFaultProxy(t testing.TB, target string) *faultProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	return &faultProxy{t: t, target: target, rp: httputil.NewSingleHostReverseProxy(u),
		posts: map[string]int{}, acked: map[string]int{}, retries: map[string][]string{}}
}

func (px *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		px.note("%s %s (request headers %q)", r.Method, r.URL.Path, r.Header.Get("Access-Control-Request-Headers"))
		px.rp.ServeHTTP(w, r) // the preflight is answered by tidemark
		return
	}
	fam := "single"
	if strings.HasSuffix(r.URL.Path, "/b") {
		fam = "batch"
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	retry := r.Header.Get("X-Retry-Count")
	px.mu.Lock()
	px.posts[fam]++
	n := px.posts[fam]
	px.mu.Unlock()
	if n == 1 {
		px.note("POST %s #%d (X-Retry-Count %q): failed, not forwarded", r.URL.Path, n, retry)
		w.Header().Set("Access-Control-Allow-Origin", "*")
		http.Error(w, "test proxy: the first attempt fails", http.StatusInternalServerError)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodPost, px.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		px.note("POST %s #%d: forward: %v", r.URL.Path, n, err)
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 == 2 {
		px.mu.Lock()
		for _, id := range messageIDs(body) {
			px.acked[id]++
		}
		if retry != "" {
			px.retries[fam] = append(px.retries[fam], retry)
		}
		px.mu.Unlock()
	}
	code := resp.StatusCode
	if n == 2 {
		code = http.StatusInternalServerError // tidemark's answer is lost
	}
	px.note("POST %s #%d (X-Retry-Count %q): tidemark %d, browser gets %d", r.URL.Path, n, retry, resp.StatusCode, code)
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(code)
	w.Write(out)
}

func (px *faultProxy) note(format string, args ...any) {
	px.mu.Lock()
	defer px.mu.Unlock()
	px.log = append(px.log, fmt.Sprintf(format, args...))
}

func (px *faultProxy) ackedAll(ids []string) bool {
	px.mu.Lock()
	defer px.mu.Unlock()
	for _, id := range ids {
		if px.acked[id] == 0 {
			return false
		}
	}
	return true
}

func (px *faultProxy) retriesAcked(fam string) int {
	px.mu.Lock()
	defer px.mu.Unlock()
	return len(px.retries[fam])
}

func (px *faultProxy) summary() string {
	px.mu.Lock()
	defer px.mu.Unlock()
	return fmt.Sprintf("posts %v, accepted retries (X-Retry-Count) %v, log:\n  %s", px.posts, px.retries, strings.Join(px.log, "\n  "))
}

// messageIDs are the messageIds of a single call's or a batch's JSON body.
func messageIDs(body []byte) []string {
	var b struct {
		MessageID string `json:"messageId"`
		Batch     []struct {
			MessageID string `json:"messageId"`
		} `json:"batch"`
	}
	json.Unmarshal(body, &b)
	ids := []string{}
	if b.MessageID != "" {
		ids = append(ids, b.MessageID)
	}
	for _, e := range b.Batch {
		ids = append(ids, e.MessageID)
	}
	return ids
}

// serveLocal serves h on a new port of 127.0.0.1 until the test ends and
// returns its base URL.
func serveLocal(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}
