package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/tidemark/tidemark/internal/fault"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// The status page (internal/ui, docs/status-page.md) in a real headless
// Chromium against the real binary. Screenshots of its views are written to
// $TIDEMARK_SCREENSHOTS when set (scripts/screenshots.sh sets it to
// docs/img), else to the test's temporary directory.

const (
	pageAdminKey      = "page-admin-key-0000000001"
	pageTimeout       = 90 * time.Second // a page condition, generous: 2 shared cores
	pageScreenshotEnv = "TIDEMARK_SCREENSHOTS"
)

// browserPage is one page of a real Chromium, steered through
// testenv/node/page.mjs one command at a time.
type browserPage struct {
	t      testing.TB
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Scanner
	stderr *syncBuf
}

func openBrowserPage(t testing.TB) *browserPage {
	t.Helper()
	chromium := testenv.Chromium(t)
	cmd := exec.Command("node", "page.mjs", "--chromium", chromium)
	cmd.Dir = testenv.NodeDir(t)
	cmd.WaitDelay = 10 * time.Second
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &browserPage{t: t, cmd: cmd, in: in, out: bufio.NewScanner(out), stderr: &syncBuf{}}
	p.out.Buffer(nil, 64<<20)
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if v, err := p.do("log", nil); err == nil {
				var l struct{ Console []string }
				json.Unmarshal(v, &l)
				t.Logf("browser console (last 30):\n  %s", strings.Join(l.Console[max(0, len(l.Console)-30):], "\n  "))
			}
		}
		in.Close()
		if err := cmd.Wait(); err != nil {
			t.Logf("page.mjs: %v\n%s", err, p.stderr.String())
		}
	})
	return p
}

// do sends one command and returns its value.
func (p *browserPage) do(op string, args map[string]any) (json.RawMessage, error) {
	c := map[string]any{"op": op}
	for k, v := range args {
		c[k] = v
	}
	b, _ := json.Marshal(c)
	if _, err := p.in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("page.mjs: %v\n%s", err, p.stderr.String())
	}
	if !p.out.Scan() {
		return nil, fmt.Errorf("page.mjs ended (%v):\n%s", p.out.Err(), p.stderr.String())
	}
	var a struct {
		OK    bool            `json:"ok"`
		Value json.RawMessage `json:"value"`
		Error string          `json:"error"`
	}
	if err := json.Unmarshal(p.out.Bytes(), &a); err != nil {
		return nil, fmt.Errorf("page.mjs answered %q: %v", p.out.Text(), err)
	}
	if !a.OK {
		return nil, fmt.Errorf("%s: %s", op, a.Error)
	}
	return a.Value, nil
}

func (p *browserPage) must(op string, args map[string]any) json.RawMessage {
	p.t.Helper()
	v, err := p.do(op, args)
	if err != nil {
		p.t.Fatal(err)
	}
	return v
}

// waitFor waits until the JavaScript expression js is truthy and decodes
// its value into v (when not nil); what names the condition in a failure.
func (p *browserPage) waitFor(what, js string, v any) {
	p.t.Helper()
	raw, err := p.do("wait", map[string]any{"js": js, "timeout_ms": pageTimeout.Milliseconds()})
	if err != nil {
		p.t.Fatalf("the page never showed %s: %v\nthe page said: %s", what, err, p.text("main"))
	}
	if v != nil {
		if err := json.Unmarshal(raw, v); err != nil {
			p.t.Fatalf("%s: %v", what, err)
		}
	}
}

// eval returns the value of the JavaScript expression js in v.
func (p *browserPage) eval(js string, v any) {
	p.t.Helper()
	if err := json.Unmarshal(p.must("eval", map[string]any{"js": js}), v); err != nil {
		p.t.Fatal(err)
	}
}

// text is the visible text of the first element matching sel ("" if none).
func (p *browserPage) text(sel string) string {
	v, err := p.do("eval", map[string]any{"js": fmt.Sprintf(`(document.querySelector(%q) || {}).innerText || ''`, sel)})
	if err != nil {
		return err.Error()
	}
	var s string
	json.Unmarshal(v, &s)
	return s
}

func (p *browserPage) content() string {
	var s string
	json.Unmarshal(p.must("content", nil), &s)
	return s
}

func (p *browserPage) click(sel string) { p.t.Helper(); p.must("click", map[string]any{"sel": sel}) }

func (p *browserPage) signIn(key string) {
	p.t.Helper()
	p.must("fill", map[string]any{"sel": "#key", "value": key})
	p.click("#signin-form button")
}

// screenshot writes name.png at desktop (1280 px) or phone (390 px) width
// to $TIDEMARK_SCREENSHOTS (or a temporary directory).
func (p *browserPage) screenshot(name string, width, height int) {
	p.t.Helper()
	dir := os.Getenv(pageScreenshotEnv)
	if dir == "" {
		dir = p.t.TempDir()
	}
	p.must("viewport", map[string]any{"width": width, "height": height})
	p.must("screenshot", map[string]any{"path": filepath.Join(dir, name+".png"), "full": true})
	p.must("viewport", map[string]any{"width": 1280, "height": 900})
}

// a11yCheck lists what the page, as it is now, lacks for WCAG AA: a visible
// form field without a label, a button without a name, text whose colour
// against its background has a contrast under 4.5 (3 for large text).
const a11yCheck = `(() => {
  const lum = (c) => {
    const [r, g, b] = c.match(/[\d.]+/g).slice(0, 3).map((v) => { v = v / 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4 })
    return 0.2126 * r + 0.7152 * g + 0.0722 * b
  }
  const opaque = (c) => !/rgba\(.*, 0\)$/.test(c) && c !== 'transparent'
  const bg = (el) => { for (; el; el = el.parentElement) { const c = getComputedStyle(el).backgroundColor; if (opaque(c)) return c } return 'rgb(255, 255, 255)' }
  const visible = (el) => el.offsetParent !== null && getComputedStyle(el).visibility !== 'hidden'
  const bad = []
  for (const el of document.querySelectorAll('input, select')) if (visible(el) && el.labels.length === 0) bad.push('no label: ' + el.outerHTML.slice(0, 80))
  for (const el of document.querySelectorAll('button')) if (visible(el) && !(el.getAttribute('aria-label') || el.textContent.trim())) bad.push('no name: ' + el.outerHTML.slice(0, 80))
  for (const el of document.querySelectorAll('body *')) {
    if (!visible(el) || el.closest('.sr')) continue
    if (![...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue
    const st = getComputedStyle(el)
    const [a, b] = [lum(st.color), lum(bg(el))]
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)
    const large = parseFloat(st.fontSize) >= 24 || (parseFloat(st.fontSize) >= 18.66 && Number(st.fontWeight) >= 700)
    if (ratio < (large ? 3 : 4.5)) bad.push('contrast ' + ratio.toFixed(2) + ': ' + el.tagName + '.' + el.className + ' "' + el.textContent.trim().slice(0, 30) + '"')
  }
  return bad
})()`

// checkAccessible fails t with what a11yCheck finds.
func (p *browserPage) checkAccessible(view string) {
	p.t.Helper()
	var bad []string
	p.eval(a11yCheck, &bad)
	if len(bad) > 0 {
		p.t.Errorf("%s: %d accessibility faults:\n  %s", view, len(bad), strings.Join(bad[:min(len(bad), 20)], "\n  "))
	}
}

// pageRequests are the URLs the page requested so far.
func (p *browserPage) requests() []string {
	var l struct{ Requests []string }
	json.Unmarshal(p.must("log", nil), &l)
	return l.Requests
}

// twoOrgsConfig: orgs acme and globex, each with a file lake, a read key
// and a write key, an admin key, audited every second.
func twoOrgsConfig(t *testing.T, dir string, port int) string {
	return orgsConfig(t, dir, port, fmt.Sprintf(`audit: {interval: 1s, lookback: 2h}
admin_keys: [%q]
orgs:
  - id: acme
    write_keys: [%q]
    read_keys: [%q]
    destinations:
      - name: lake
        url: file://%s
        flush: {max_events: 200, max_age: 500ms}
  - id: globex
    write_keys: [%q]
    read_keys: [%q]
    destinations:
      - name: warehouse-lake
        url: file://%s
        flush: {max_events: 200, max_age: 500ms}
`, pageAdminKey, testKey, testReadKey, filepath.Join(dir, "acme-lake"), globexWriteKey, globexReadKey, filepath.Join(dir, "globex-lake")))
}

// getWithKey is method url with key as a Bearer token: code and body.
func getWithKey(t testing.TB, method, url, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), method, url, nil)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// heldAudit is an audit request that the server keeps running until release.
type heldAudit struct {
	cancel context.CancelFunc
	done   chan int // the answer's status code, or 0 when cancelled
}

// holdReaderAudit starts an audit of the hour 1970-01-01T00Z with key, which
// a server with the fault hang-audit on that key's destination runs until
// the request is cancelled, and returns once that audit holds the key's
// org's one read-key audit (a second one is refused with 429 and
// Retry-After: 5).
func holdReaderAudit(t *testing.T, addr, key string) *heldAudit {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	h := &heldAudit{cancel: cancel, done: make(chan int, 1)}
	t.Cleanup(h.release)
	go func() {
		for {
			req, _ := http.NewRequestWithContext(ctx, "GET", addr+"/api/v1/audit?from=1970-01-01T00:00:00Z&to=1970-01-01T01:00:00Z", nil)
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				h.done <- 0
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusTooManyRequests { // else the probe below held the org's audit: again
				h.done <- resp.StatusCode
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", addr+"/api/v1/audit?from=1970-01-01T01:00:00Z&to=1970-01-01T02:00:00Z", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("a second audit with the same read key while the first runs: %v (want 429 at once, not a wait behind it)", err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			if ra := resp.Header.Get("Retry-After"); ra != "5" {
				t.Errorf("429 with Retry-After %q, want 5", ra)
			}
			return h
		}
		select {
		case code := <-h.done:
			t.Fatalf("the audit of the hung hour ended with %d instead of running until cancelled", code)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("a second audit with the same read key still answers %d after 60 s, want 429 while the first runs", resp.StatusCode)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// release cancels the held audit and waits for its request to end.
func (h *heldAudit) release() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	<-h.done
}

// gzipStatus fetches GET /api/v1/status asking for gzip and returns the
// compressed size and the decompressed answer.
func gzipStatus(t testing.TB, addr, key string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", addr+"/api/v1/status", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Accept-Encoding", "gzip") // set by hand: the transport leaves the body compressed
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	zipped, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("status with Accept-Encoding gzip: %d %v", resp.StatusCode, resp.Header)
	}
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return len(zipped), string(plain)
}

// TestStatusPageAccess: sign-in is required (nothing of any org is in the
// page without it), a wrong key and a write key are refused with a message,
// and an org's read key sees its own org only: the API answers and the
// page (table, grid, live tail, every request it made) never hold another
// org's name or data, nor the key in a URL. An admin key sees both orgs.
func TestStatusPageAccess(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	// hang-audit: an audit of acme's lake's hour 1970-01-01T00Z runs until
	// cancelled; every other hour reads as usual.
	p := startProcEnv(t, twoOrgsConfig(t, dir, port), port, []string{fault.Env + "=hang-audit=acme/lake"})
	acme := sendEventsKey(t, p.addr, testKey, "acme-evt", 300)
	globex := sendEventsKey(t, p.addr, globexWriteKey, "globex-evt", 300)
	if len(acme) != 300 || len(globex) != 300 {
		t.Fatalf("acknowledged: acme %d, globex %d of 300", len(acme), len(globex))
	}
	waitInLake(t, filepath.Join(dir, "acme-lake"), acme, "acme's events")

	// The API: a read key reads its org only; backfill stays admin-only.
	from := time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339)
	to := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	for _, c := range []struct {
		method, path, key string
		code              int
		has, hasNot       string
	}{
		{"GET", "/api/v1/status", testReadKey, 200, `"org": "acme"`, "globex"},
		{"GET", "/api/v1/status", globexReadKey, 200, `"name": "warehouse-lake"`, "acme"},
		{"GET", "/api/v1/status?org=globex", testReadKey, 403, "another org", "warehouse-lake"},
		{"GET", "/api/v1/audit?from=" + from + "&to=" + to, testReadKey, 200, `"destination": "lake"`, "globex"},
		{"GET", "/api/v1/audit?org=globex&from=" + from + "&to=" + to, testReadKey, 403, "another org", "warehouse-lake"},
		{"POST", "/api/v1/backfill?dry_run=true&from=" + from + "&to=" + to, testReadKey, 401, "admin key", "acme"},
		{"GET", "/api/v1/status", testKey, 401, "unknown", "acme"}, // a write key
		{"GET", "/api/v1/status", "", 401, "missing", "acme"},
		{"GET", "/api/v1/status", pageAdminKey, 200, "warehouse-lake", "no such"},
	} {
		code, body := getWithKey(t, c.method, p.addr+c.path, c.key)
		if code != c.code || !strings.Contains(body, c.has) || strings.Contains(body, c.hasNot) {
			t.Errorf("%s %s with key %.10q: %d, want %d with %q and without %q:\n%.600s", c.method, c.path, c.key, code, c.code, c.has, c.hasNot, body)
		}
	}

	if n, body := gzipStatus(t, p.addr, testReadKey); !strings.Contains(body, `"org": "acme"`) || strings.Contains(body, "globex") {
		t.Errorf("the gzipped status (%d bytes) for acme's read key: %.300s", n, body)
	}

	b := openBrowserPage(t)
	b.must("goto", map[string]any{"url": p.addr + "/"})
	b.waitFor("the sign-in form", `!document.getElementById('signin').hidden && document.getElementById('app').hidden`, nil)
	if html := b.content(); strings.Contains(html, "acme") || strings.Contains(html, "globex") {
		t.Fatalf("the page shows an org before sign-in:\n%s", html)
	}
	b.screenshot("signin-desktop", 1280, 700)
	b.checkAccessible("sign-in")

	for _, wrong := range []string{"not-a-key-at-all-000001", testKey} {
		b.signIn(wrong)
		b.waitFor("the refusal of a wrong key", `document.getElementById('signin-error').textContent.includes('refused')`, nil)
		var hidden bool
		b.eval(`document.getElementById('app').hidden`, &hidden)
		if !hidden || strings.Contains(b.content(), "globex") {
			t.Fatalf("key %.10q: the app is shown (hidden=%v)", wrong, hidden)
		}
	}

	// A read key audits at most 168 hours, one audit at a time per org, on
	// an auditor of its org's own: acme's long audit neither lets a second
	// one of acme's start (429, and the page says so and asks again) nor
	// holds up globex's or an admin's.
	held := holdReaderAudit(t, p.addr, testReadKey)
	recent := "&from=" + time.Now().Add(-168*time.Hour).UTC().Truncate(time.Hour).Format(time.RFC3339) +
		"&to=" + time.Now().UTC().Truncate(time.Hour).Add(time.Hour).Format(time.RFC3339) // 169 hours
	for _, c := range []struct {
		path, key string
		code      int
		has       string
	}{
		{"/api/v1/audit?from=" + from + "&to=" + to, testReadKey, 429, "already running"},
		{"/api/v1/audit?from=" + from + "&to=" + to, globexReadKey, 200, `"destination": "warehouse-lake"`},
		{"/api/v1/audit?from=" + from + "&to=" + to, pageAdminKey, 200, `"destination": "lake"`},
		{"/api/v1/audit?from=2025-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", globexReadKey, 400, "at most 168 hours at a time; this range touches 8760"},
		{"/api/v1/audit?" + recent[1:], globexReadKey, 400, "this range touches 169"},
		{"/api/v1/audit?" + recent[1:], pageAdminKey, 200, `"destination": "lake"`},
	} {
		if code, body := getWithKey(t, "GET", p.addr+c.path, c.key); code != c.code || !strings.Contains(body, c.has) {
			t.Errorf("GET %s with key %.10q while acme's read key audits: %d, want %d with %q:\n%.400s", c.path, c.key, code, c.code, c.has, body)
		}
	}

	// acme's read key: acme only, everywhere in the page.
	b.signIn(testReadKey)
	b.waitFor("the page saying acme's audit waits for the other one", `document.getElementById('grid-status').textContent.includes('already running') &&
		document.getElementById('grid-status').textContent.includes('Asking again in 5 s')`, nil)
	held.release()
	b.waitFor("the page's audit, asked again once the other one ended", `document.getElementById('grid-status').textContent.startsWith('Audited 48 hours')`, nil)
	b.waitFor("acme's destination row", `document.querySelector('#dest-rows tr[data-org="acme"][data-dest="lake"]')`, nil)
	b.waitFor("the completeness grid", `document.querySelector('#grid button.cell.ok')`, nil)
	if who := b.text("#who"); !strings.Contains(who, "Org acme") || !strings.Contains(who, "backfill needs an admin key") {
		t.Errorf("the header says %q for acme's read key", who)
	}
	b.must("fill", map[string]any{"sel": "#live-event", "value": "Damage"})
	b.click("#live-toggle")
	b.waitFor("the live tail subscribed", `document.getElementById('live-status').textContent.includes('waiting')`, nil)
	liveAcme := sendEventsKey(t, p.addr, testKey, "acme-live", 100)
	sendEventsKey(t, p.addr, globexWriteKey, "globex-live", 100)
	if len(liveAcme) != 100 {
		t.Fatalf("acknowledged %d of 100", len(liveAcme))
	}
	var tailed int
	b.waitFor("acme's events in the live tail", `(() => { const n = document.querySelectorAll('#tail li .name').length; return n >= 90 && n })()`, &tailed)
	b.click("#grid button.cell.ok")
	b.waitFor("the cell's numbers", `document.querySelector('#cell dd[data-field="delivered"]')`, nil)
	if s := b.text("#cell-action"); !strings.Contains(s, "Backfill needs an admin key") {
		t.Errorf("a read key's cell panel says %q", s)
	}
	b.waitFor("a status refresh", `document.getElementById('updated').textContent.startsWith('Updated')`, nil)
	html := b.content()
	for _, other := range []string{"globex", "warehouse-lake", "Globex"} {
		if strings.Contains(html, other) {
			i := strings.Index(html, other)
			t.Errorf("acme's page holds %q: ...%s...", other, html[max(0, i-200):min(len(html), i+200)])
		}
	}
	if !strings.Contains(html, "acme-live-") {
		t.Errorf("the live tail shows %d events, none of acme's", tailed)
	}
	b.screenshot("org-desktop", 1280, 900)
	b.checkAccessible("acme's page")

	// Sign out: nothing of acme's stays in the page.
	b.click("#signout")
	b.waitFor("the sign-in form again", `!document.getElementById('signin').hidden`, nil)
	if html := b.content(); strings.Contains(html, "acme-live-") || strings.Contains(html, `data-org="acme"`) {
		t.Errorf("acme's data stays in the page after signing out")
	}

	// The admin key sees both orgs (so the checks above could fail).
	b.signIn(pageAdminKey)
	b.waitFor("both orgs' rows", `document.querySelector('#dest-rows tr[data-org="globex"]') && document.querySelector('#dest-rows tr[data-org="acme"]')`, nil)
	b.waitFor("both orgs in the grid", `document.querySelectorAll('#grid tbody tr').length == 2`, nil)
	var stored string
	b.eval(`sessionStorage.getItem('tidemark.key') + '|' + document.cookie`, &stored)
	if stored != pageAdminKey+"|" {
		t.Errorf("sessionStorage|cookie = %q, want the key and no cookie", stored)
	}
	for _, r := range b.requests() {
		for _, k := range []string{pageAdminKey, testReadKey, testKey, globexReadKey, "not-a-key"} {
			if strings.Contains(r, k) {
				t.Errorf("the page sent a key in a URL: %s", r)
			}
		}
	}
	if strings.Contains(b.content(), pageAdminKey) {
		t.Errorf("the admin key is in the page's HTML")
	}
	b.screenshot("admin-desktop", 1280, 900)
	b.screenshot("admin-phone", 390, 844)
}

// cellSel selects the grid cell of acme/lake's hour h.
func cellSel(h time.Time) string {
	return fmt.Sprintf(`#grid button.cell[data-org="acme"][data-dest="lake"][data-hour="%s"]`, h.UTC().Format("2006-01-02T15:04:05.000Z"))
}

// cellNumber is the number the open cell panel shows for field (missing, ...).
func (p *browserPage) cellNumber(field string) int64 {
	p.t.Helper()
	var n int64
	p.eval(fmt.Sprintf(`Number(document.querySelector('#cell dd[data-field=%q]').textContent.replace(/,/g, ''))`, field), &n)
	return n
}

// TestStatusPageBackfill deletes committed events files of the lake: the
// page's grid shows, for each audited hour, as many missing events as the
// deleted files held; "Backfill this hour" first says how many events a dry
// run would write (the same number), then runs the backfill with progress;
// the cells turn complete and the lake, read independently, holds every
// acknowledged event exactly once.
func TestStatusPageBackfill(t *testing.T) {
	s := stores(t, t.TempDir())["local"](t)
	port := testenv.FreePort(t)
	// Events SLA 10.5s: past it an absent event is missing, not pending.
	p := startProc(t, incidentConfig(t, t.TempDir(), port, s.url, 10*time.Second, ""), port)
	acked := sendEvents(t, p.addr, "grid", 3000)
	if len(acked) != 3000 {
		t.Fatalf("acknowledged %d of 3000", len(acked))
	}
	sent := time.Now()
	waitCommitted(t, s, acked, "delivery")
	p.waitAuditedAfter(t, sent.Add(14*time.Second))

	_, lost, lostByHour := deleteEventsFiles(t, s)
	t.Logf("deleted events files holding %d events, in %d hours", len(lost), len(lostByHour))

	b := openBrowserPage(t)
	b.must("goto", map[string]any{"url": p.addr + "/"})
	b.signIn(incidentAdminKey)
	b.waitFor("the grid with missing cells", `document.querySelector('#grid button.cell.missing')`, nil)
	var missingCells int
	b.eval(`document.querySelectorAll('#grid button.cell.missing').length`, &missingCells)
	if missingCells != len(lostByHour) {
		t.Errorf("the grid shows %d missing cells, files were deleted in %d hours", missingCells, len(lostByHour))
	}
	// The background audit's total reaches the destinations table too.
	b.waitFor("the table's audit column", fmt.Sprintf(`document.querySelector('#dest-rows tr[data-dest="lake"] td[data-label="Audit"]').textContent === %q`,
		fmt.Sprintf("%s missing", commas(len(lost)))), nil)

	b.waitFor("the row's reason naming the missing events", fmt.Sprintf(`document.querySelector('#dest-rows tr[data-dest="lake"] .reason').textContent.includes(%q)`,
		fmt.Sprintf("the audit finds %s events missing", commas(len(lost)))), nil)
	first := true
	for h, n := range lostByHour {
		b.must("press", map[string]any{"sel": cellSel(h), "key": "Enter"}) // the keyboard opens a cell
		b.waitFor("the cell's numbers", `document.querySelector('#cell dd[data-field="missing"]')`, nil)
		if got := b.cellNumber("missing"); got != n {
			t.Errorf("hour %s: the page shows %d missing, %d were deleted", h.Format(time.RFC3339), got, n)
		}
		if first {
			b.screenshot("missing-desktop", 1280, 900)
			b.screenshot("missing-phone", 390, 844)
		}
		b.click("#bf-dry")
		var planned string
		b.waitFor("the dry run's count", `(document.querySelector('#bf-run') || {}).dataset?.events`, &planned)
		if planned != fmt.Sprint(n) {
			t.Errorf("hour %s: the dry run plans %s events, %d are missing; it said: %s", h.Format(time.RFC3339), planned, n, b.text("#bf-msg"))
		}
		if first {
			b.checkAccessible("the dry run of a missing hour")
			b.screenshot("backfill-desktop", 1280, 900)
			first = false
		}
		b.click("#bf-run")
		b.waitFor("the backfill done and audited again", `document.getElementById('bf-msg').dataset.done === 'true'`, nil)
		if msg := b.text("#bf-msg"); !strings.Contains(msg, fmt.Sprintf("%s events written", commas(int(n)))) {
			t.Errorf("hour %s: after the backfill the page says %q", h.Format(time.RFC3339), msg)
		}
		if got := b.cellNumber("missing"); got != 0 {
			t.Errorf("hour %s: %d missing after the backfill", h.Format(time.RFC3339), got)
		}
		var kind string
		b.eval(fmt.Sprintf(`document.querySelector(%q).dataset.kind`, cellSel(h)), &kind)
		if kind != "ok" {
			t.Errorf("hour %s: the cell is %q after the backfill, want ok (complete)", h.Format(time.RFC3339), kind)
		}
	}
	var left int
	b.eval(`document.querySelectorAll('#grid button.cell.missing, #grid button.cell.dup').length`, &left)
	if left != 0 {
		t.Errorf("%d cells still missing or duplicated after the backfills", left)
	}
	p.stop()
	checkOnce(t, committedEvents(t, s), acked)
}

// commas writes n as the page does (1,234).
func commas(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TestStatusPageOutage stops the S3 server (a private versitygw) of a
// destination while a client keeps sending: the page's row for it turns
// down (or stalled) with the status API's reason; once the server is back
// it returns to up with no reason, and every acknowledged event is in the
// bucket exactly once.
func TestStatusPageOutage(t *testing.T) {
	v := testenv.StartVersitygw(t)
	bucket := testenv.BucketName(t)
	v.CreateBucket(t, bucket)
	url := v.URL(bucket, testenv.DefaultPrefix)
	port := testenv.FreePort(t)
	// Events SLA: 500ms max_age + 2s grace.
	cfg := incidentConfig(t, t.TempDir(), port, url, 2*time.Second, "")
	p := startProcEnv(t, cfg, port, testenv.S3Env(t))
	load := startLoad(t, p.addr, testKey, "page-outage-", 2, 20, 50*time.Millisecond)

	b := openBrowserPage(t)
	b.must("goto", map[string]any{"url": p.addr + "/"})
	b.signIn(incidentAdminKey)
	row := `document.querySelector('#dest-rows tr[data-org="acme"][data-dest="lake"]')`
	b.waitFor("the destination up and delivering", row+`?.dataset.state === 'up' && !`+row+`.querySelector('td[data-label="Last commit"]').textContent.includes('none')`, nil)

	v.Stop()
	stopped := time.Now()
	var state string
	b.waitFor("the destination down or stalled with a reason", `(() => { const r = `+row+`; return r && r.dataset.state !== 'up' && r.querySelector('.reason').textContent && r.dataset.state })()`, &state)
	shownAfter := time.Since(stopped)
	reason := b.text(`#dest-rows tr[data-dest="lake"] .reason summary`)
	t.Logf("the page showed %s %.1fs after the S3 server stopped (events SLA 2.5s, refresh 5s): %q", state, shownAfter.Seconds(), reason)
	// The page says it in the status API's words: the operation and the
	// cause, the last part of the error. The error may change from one
	// attempt to the next: compare the two until they agree.
	probe.Until(t, pageTimeout, "the page's reason equal to the status API's", func() (bool, string) {
		code, body := getWithKey(t, "GET", p.addr+"/api/v1/status", incidentAdminKey)
		var st struct {
			Destinations []struct {
				LastError   string `json:"last_error"`
				LastErrorOp string `json:"last_error_op"`
			} `json:"destinations"`
		}
		if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil || len(st.Destinations) != 1 {
			t.Fatalf("status: %d %v %.300s", code, err, body)
		}
		api := st.Destinations[0]
		reason = b.text(`#dest-rows tr[data-dest="lake"] .reason summary`)
		return api.LastError != "" && reason == api.LastErrorOp+": "+cause(api.LastError), fmt.Sprintf("page %q, API %q: %q", reason, api.LastErrorOp, api.LastError)
	})
	b.checkAccessible("a destination down")
	b.screenshot("outage-desktop", 1280, 700)
	b.screenshot("outage-phone", 390, 844)

	v.Start()
	b.waitFor("the destination up again, without a reason", `(() => { const r = `+row+`; return r && r.dataset.state === 'up' && !r.querySelector('.reason').textContent })()`, nil)
	want := load.Stop()
	l := waitDelivered(t, 90*time.Second, "every acknowledged event delivered after the outage", url, want, p.settled("acme", "lake"))
	checkExactlyOnce(t, "lake", l, want)
	p.stop()
}

// cause is the last part of an error message (after its last ": "), as the
// page shows it.
func cause(s string) string {
	if i := strings.LastIndex(s, ": "); i >= 0 {
		return s[i+len(": "):]
	}
	return s
}

// BenchmarkStatusPage1000 measures (it asserts no speed) the status page
// with 1,000 org/destination pairs (250 orgs of 4 file destinations; 50 of
// the orgs have events): from the sign-in click until the table shows its
// 1,000 rows, and until the completeness grid (a 48-hour audit of every
// destination, then drawn) is on the page; and, once, a reload of the
// signed-in tab until the table is complete. Run it with
//
//	./scripts/test.sh ./cmd/tidemark -run '^$' -bench StatusPage1000 -benchtime 5x
func BenchmarkStatusPage1000(b *testing.B) {
	const orgs, perOrg = 250, 4
	dir := b.TempDir()
	port := testenv.FreePort(b)
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "admin_keys: [%q]\norgs:\n", pageAdminKey)
	for o := range orgs {
		fmt.Fprintf(&cfg, "  - id: org-%03d\n    write_keys: [\"org-%03d-write-key-0000001\"]\n    destinations:\n", o, o)
		for d := range perOrg {
			fmt.Fprintf(&cfg, "      - name: lake-%d\n        url: file://%s\n", d, filepath.Join(dir, fmt.Sprintf("lake-%03d-%d", o, d)))
		}
	}
	p := startProc(b, orgsConfig(b, dir, port, cfg.String()), port)
	for o := range 50 {
		if n := len(sendEventsKey(b, p.addr, fmt.Sprintf("org-%03d-write-key-0000001", o), fmt.Sprintf("many-%03d", o), 20)); n != 20 {
			b.Fatalf("org %d: %d of 20 acknowledged", o, n)
		}
	}
	pg := openBrowserPage(b)
	pg.must("goto", map[string]any{"url": p.addr + "/"})
	// The times are taken in the page, by a MutationObserver, not polled.
	const observe = `(() => {
  const t0 = performance.now(); const tm = window.tm = {}
  if (window.tmObserver) window.tmObserver.disconnect()
  window.tmObserver = new MutationObserver(() => {
    if (!tm.rows && document.querySelectorAll('#dest-rows tr').length === 1000) tm.rows = performance.now() - t0
    if (!tm.grid && document.querySelector('#grid table')) tm.grid = performance.now() - t0
  })
  window.tmObserver.observe(document.body, { childList: true, subtree: true })
})()`
	var rows, grid []float64
	for b.Loop() {
		var ok bool
		pg.eval(`!document.getElementById('signout').hidden`, &ok)
		if ok {
			pg.click("#signout")
		}
		pg.must("eval", map[string]any{"js": observe})
		pg.signIn(pageAdminKey)
		var tm struct{ Rows, Grid float64 }
		pg.waitFor("1,000 rows and the grid", `window.tm.rows && window.tm.grid && window.tm`, &tm)
		rows, grid = append(rows, tm.Rows), append(grid, tm.Grid)
	}
	b.StopTimer()
	var gridRows int
	pg.eval(`document.querySelectorAll('#grid tbody tr').length`, &gridRows)
	if gridRows != 50 || !strings.Contains(pg.text("#grid-more"), "Show all 1,000 destinations") {
		b.Errorf("the grid draws %d rows (want the first 50) and offers %q", gridRows, pg.text("#grid-more"))
	}
	pg.must("goto", map[string]any{"url": p.addr + "/"}) // the key is in the tab: it signs in by itself
	var reload float64
	pg.waitFor("1,000 rows after a reload", `document.querySelectorAll('#dest-rows tr').length === 1000 && performance.now()`, &reload)
	t0 := time.Now()
	zipped, status := gzipStatus(b, p.addr, pageAdminKey)
	statusTook := time.Since(t0)
	b.ReportMetric(median(rows), "ms-to-rows")
	b.ReportMetric(median(grid), "ms-to-grid")
	b.ReportMetric(reload, "ms-reload-to-rows")
	b.ReportMetric(float64(len(status))/1024, "KiB-status")
	b.ReportMetric(float64(zipped)/1024, "KiB-status-gzip")
	b.Logf("sign-in to 1,000 rows: %.0f ms (median; all %v); to the grid: %.0f ms (%v); reload to rows: %.0f ms (polled, +-100 ms); status answer %d KiB (%d KiB gzipped) in %v",
		median(rows), rows, median(grid), grid, reload, len(status)/1024, zipped/1024, statusTook.Round(time.Millisecond))
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
