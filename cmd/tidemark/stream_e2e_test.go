package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/fault"
	"github.com/tidemark/tidemark/internal/stream"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

const (
	hookSecret = "e2e-webhook-secret-000001"
	adminKey   = "e2e-admin-key-00000000001"
)

// hookReceiver is a webhook receiver on loopback, in the test process. It
// verifies every request's signature as docs/streaming.md tells receivers to, and
// records the events of the requests it accepts in arrival order.
type hookReceiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	order    []stream.Item // accepted events, arrival order (duplicates included)
	requests int
	byMode   map[string]int // requests received, by mode
	// retried counts the requests that repeat one (same idempotency key)
	// answered in a mode, by that mode; last is the mode of each key's
	// latest answer.
	retried map[string]int
	last    map[string]string
	badSig  int
	// mode: "ok", "500" (answer 500), "hang" (never answer until released),
	// "retry-after" (429 with Retry-After: 1).
	mode    string
	release chan struct{}
}

func newHookReceiver(t testing.TB) *hookReceiver {
	r := &hookReceiver{mode: "ok", release: make(chan struct{}), byMode: map[string]int{},
		retried: map[string]int{}, last: map[string]string{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.setMode("ok")
		r.srv.Close()
	})
	return r
}

// verifySignature is docs/streaming.md's Go verification snippet.
func verifySignature(secret, header string, body []byte, now time.Time) bool {
	var ts, sig string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || now.Sub(time.Unix(t, 0)).Abs() > 5*time.Minute {
		return false // missing or stale timestamp: a replayed request
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return hmac.Equal([]byte(sig), []byte(hex.EncodeToString(mac.Sum(nil))))
}

func (r *hookReceiver) setMode(m string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mode == "hang" && m != "hang" {
		close(r.release)
		r.release = make(chan struct{})
	}
	r.mode = m
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.requests++
	mode, release := r.mode, r.release
	r.byMode[mode]++
	key := req.Header.Get(stream.IdempotencyHeader)
	if prev, ok := r.last[key]; ok {
		r.retried[prev]++
	}
	r.last[key] = mode
	r.mu.Unlock()
	switch mode {
	case "500":
		http.Error(w, "receiver down", http.StatusInternalServerError)
		return
	case "retry-after":
		w.Header().Set("Retry-After", "1")
		http.Error(w, "slow down", http.StatusTooManyRequests)
		return
	case "hang":
		select {
		case <-release:
		case <-req.Context().Done():
		}
		http.Error(w, "hung", http.StatusServiceUnavailable)
		return
	}
	if !verifySignature(hookSecret, req.Header.Get(stream.SignatureHeader), body, time.Now()) {
		r.mu.Lock()
		r.badSig++
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var rq stream.Request
	if err := json.Unmarshal(body, &rq); err != nil || rq.IdempotencyKey == "" || req.Header.Get(stream.IdempotencyHeader) != rq.IdempotencyKey {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.order = append(r.order, rq.Events...)
	r.mu.Unlock()
}

// received returns how many requests arrived while the receiver was in
// mode m.
func (r *hookReceiver) received(m string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byMode[m]
}

// waitCount waits until count() has grown by n, naming what it counts.
func waitCount(t testing.TB, what string, n int, count func() int) {
	t.Helper()
	want := count() + n
	probe.Until(t, 60*time.Second, fmt.Sprintf("%d more %s", n, what), func() (bool, string) {
		got := count()
		return got >= want, fmt.Sprintf("%d of %d", got, want)
	})
}

// retriedAfter returns how many requests repeated one answered in mode m.
func (r *hookReceiver) retriedAfter(m string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.retried[m]
}

func (r *hookReceiver) items() []stream.Item {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stream.Item(nil), r.order...)
}

// missing counts the ids of want the receiver has not accepted.
func (r *hookReceiver) missing(want map[string]bool) int {
	got := map[string]bool{}
	for _, it := range r.items() {
		got[it.EventID] = true
	}
	n := 0
	for id := range want {
		if !got[id] {
			n++
		}
	}
	return n
}

// checkDeviceOrder fails when a device's events first arrived out of log
// order. Re-sent events (at least once) may repeat earlier ones; only each
// event's first arrival counts.
func checkDeviceOrder(t testing.TB, items []stream.Item) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]stream.Item{}
	bad := 0
	for _, it := range items {
		if seen[it.EventID] {
			continue
		}
		seen[it.EventID] = true
		if prev, ok := last[it.DeviceID]; ok && (prev.LogPartition != it.LogPartition || it.LogOffset < prev.LogOffset) {
			if bad++; bad <= 5 {
				t.Errorf("device %s: %s (p%d@%d) arrived after %s (p%d@%d)", it.DeviceID, it.EventID, it.LogPartition, it.LogOffset,
					prev.EventID, prev.LogPartition, prev.LogOffset)
			}
		}
		last[it.DeviceID] = it
	}
}

func webhookYAML(name, url, extra string) string {
	return fmt.Sprintf(`    webhooks:
      - name: %s
        url: %s
        secret: %s
%s`, name, url, hookSecret, extra)
}

// openLive opens GET /v1/live and returns the data of its events on a channel.
func openLive(t testing.TB, addr, key, query string) <-chan stream.Item {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", addr+"/v1/live?"+query, nil)
	req.SetBasicAuth(key, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET /v1/live: %s %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	ch := make(chan stream.Item, 10000)
	rd := bufio.NewReader(resp.Body)
	if line, err := rd.ReadString('\n'); err != nil || !strings.HasPrefix(line, ":") {
		t.Fatalf("first SSE line %q, %v", line, err) // ": subscribed": the subscription is live
	}
	go func() {
		defer resp.Body.Close()
		readSSE(rd, func(kind, data string) error {
			if kind == "event" {
				var it stream.Item
				json.Unmarshal([]byte(data), &it)
				ch <- it
			}
			return nil
		})
	}()
	return ch
}

// TestLiveTailEndToEnd: an event sent over HTTP appears on an open SSE
// stream and in `tidemark tail`, filtered, within a second or so.
func TestLiveTailEndToEnd(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	p := startProc(t, testConfig(t, dir, port, ""), port)

	all := openLive(t, p.addr, testReadKey, "")
	onlyBuy := openLive(t, p.addr, testReadKey, "event=Buy&device=dev-2")

	// The CLI, as a user runs it.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), "tail", "--url", p.addr, "--key", testReadKey, "--event", "Buy")
	out, _ := cmd.StdoutPipe()
	var cliErr syncBuf
	cmd.Stderr = &cliErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	probe.Until(t, 30*time.Second, "tidemark tail connected", func() (bool, string) {
		return strings.Contains(cliErr.String(), "connected"), cliErr.String()
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	start := time.Now()
	code, body := post(t, p.addr+"/v1/batch", []byte(`{"batch":[
		{"type":"track","anonymousId":"dev-1","event":"View","messageId":"live-1","properties":{"a":1}},
		{"type":"track","anonymousId":"dev-2","event":"Buy","messageId":"live-2","properties":{"sku":"A-1"}},
		{"type":"page","anonymousId":"dev-2","messageId":"live-3","properties":{"url":"https://x.test/p"}}]}`), false)
	if code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	acked := time.Since(start)
	recv := func(ch <-chan stream.Item) stream.Item {
		select {
		case it := <-ch:
			return it
		case <-time.After(20 * time.Second):
			t.Fatal("no event on the live tail within 20s")
		}
		return stream.Item{}
	}
	var ids []string
	for range 3 {
		it := recv(all)
		ids = append(ids, it.EventID)
		if it.EventID == "live-2" && (it.EventName != "Buy" || it.DeviceID != "dev-2" || string(it.Properties) != `{"sku":"A-1"}` || it.OrgID != "acme") {
			t.Errorf("live item %+v", it)
		}
	}
	t.Logf("ack after %v, all three on the live tail after %v", acked, time.Since(start))
	if strings.Join(ids, ",") != "live-1,live-2,live-3" {
		t.Errorf("live tail order %v", ids)
	}
	if it := recv(onlyBuy); it.EventID != "live-2" {
		t.Errorf("filtered stream got %s", it.EventID)
	}
	select {
	case it := <-onlyBuy:
		t.Errorf("filtered stream let %s through", it.EventID)
	case <-time.After(500 * time.Millisecond):
	}
	select {
	case line := <-lines:
		if !strings.Contains(line, "track") || !strings.Contains(line, "Buy") || !strings.Contains(line, "dev-2") || !strings.Contains(line, `{"sku":"A-1"}`) {
			t.Errorf("tidemark tail printed %q", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("tidemark tail printed nothing; stderr: %s", cliErr.String())
	}

	// Auth: no key, a wrong key, another org's org= with a read key, and the
	// org's write key, which is public and must not read events.
	for _, c := range []struct {
		key, query string
		want       int
		msg        string
	}{{"", "", 401, "read key"}, {"wrong-key-000000000000", "", 401, "read key"}, {testReadKey, "org=other", 403, "another org"},
		{testKey, "", 403, "write keys are public"}} {
		code, body := liveStatus(t, p.addr, c.key, c.query)
		if code != c.want || !strings.Contains(body, c.msg) {
			t.Errorf("key %q query %q: %d %q, want %d saying %q", c.key, c.query, code, body, c.want, c.msg)
		}
	}
	// The CLI with the write key exits non-zero and says why.
	if out, err := exec.Command(binary(t), "tail", "--url", p.addr, "--key", testKey).CombinedOutput(); err == nil || !strings.Contains(string(out), "write keys are public") {
		t.Errorf("tidemark tail with a write key: %v, %s", err, out)
	}
	if v, _ := p.metric(`tidemark_live_events_total{org="acme",type="track"}`); v < 2 {
		t.Errorf("tidemark_live_events_total{track} = %v", v)
	}
	p.stop() // open SSE streams must not hold up a clean shutdown
}

// TestWebhookEndToEnd: signed requests, per-device order, retries through
// 500s and Retry-After, dead letters after the retry window, then `tidemark
// webhooks dead-letters` lists them and `tidemark webhooks replay` delivers
// them; every event is received at least once.
func TestWebhookEndToEnd(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	r := newHookReceiver(t)
	cfg := orgsConfig(t, dir, port, fmt.Sprintf(`admin_keys: [%q]
orgs:
  - id: acme
    write_keys: [%q]
    destinations:
      - name: lake
        url: file://%s
        flush: {max_events: 300, max_age: 1s}
%s`, adminKey, testKey, filepath.Join(dir, "lake"), webhookYAML("crm", r.srv.URL, "        batch_size: 20\n        timeout: 2s\n        retry_for: 6s\n")))
	p := startProc(t, cfg, port)

	// Phase 1: healthy, then 500s and Retry-After for shorter than the retry
	// window. Each mode lasts until the receiver has seen what it is for:
	// accepted requests; a failure and its retry; a Retry-After and the
	// request after it.
	ld := startLoad(t, p.addr, testKey, "wh-", 3, 10, 20*time.Millisecond)
	waitCount(t, "requests answered ok", 3, func() int { return r.received("ok") })
	r.setMode("500")
	waitCount(t, "retries of a 500 answer", 1, func() int { return r.retriedAfter("500") })
	r.setMode("retry-after")
	waitCount(t, "retries of a Retry-After answer", 1, func() int { return r.retriedAfter("retry-after") })
	r.setMode("ok")
	phase1 := ld.Stop()
	probe.Until(t, 60*time.Second, "phase 1 delivered", func() (bool, string) {
		n := r.missing(phase1)
		return n == 0, fmt.Sprintf("%d of %d missing", n, len(phase1))
	})
	checkDeviceOrder(t, r.items())
	if v, _ := p.metric(`tidemark_webhook_retries_total{org="acme",webhook="crm"}`); v == 0 {
		t.Error("no retries counted")
	}
	if r.badSig != 0 {
		t.Errorf("%d requests with a bad signature", r.badSig)
	}

	// Phase 2: down for longer than the retry window: dead letters.
	r.setMode("500")
	ld2 := startLoad(t, p.addr, testKey, "dl-", 2, 10, 50*time.Millisecond)
	ld2.waitAcked(t, 100)
	phase2 := ld2.Stop()
	probe.Until(t, 60*time.Second, "phase 2 in dead letters", func() (bool, string) {
		v, _ := p.metric(`tidemark_webhook_dead_letter_events_total{org="acme",webhook="crm"}`)
		return v >= float64(len(phase2)), fmt.Sprintf("%v of %d dead-lettered", v, len(phase2))
	})
	if v, _ := p.metric(`tidemark_webhook_failed_requests_total{org="acme",webhook="crm"}`); v == 0 {
		t.Error("no failed requests counted")
	}
	// The status API shows it too.
	var status struct {
		Stream struct {
			Webhooks []struct {
				Name         string
				DeadLettered int64  `json:"dead_lettered_since_start"`
				Failed       int64  `json:"failed_requests_since_start"`
				LastError    string `json:"last_error"`
			}
		}
	}
	if err := probe.JSON(t.Context(), p.addr+"/api/v1/status", adminKey, &status); err != nil {
		t.Fatal(err)
	}
	if w := status.Stream.Webhooks; len(w) != 1 || w[0].Name != "crm" || w[0].DeadLettered != int64(len(phase2)) ||
		w[0].Failed == 0 || !strings.Contains(w[0].LastError, "HTTP 500") {
		t.Errorf("status API webhooks: %+v", w)
	}
	var list strings.Builder
	cmd := exec.Command(binary(t), "webhooks", "dead-letters", "--config", cfg)
	cmd.Stdout, cmd.Stderr = &list, &list
	if err := cmd.Run(); err != nil {
		t.Fatalf("webhooks dead-letters: %v\n%s", err, list.String())
	}
	if !strings.Contains(list.String(), "acme/crm") || !strings.Contains(list.String(), fmt.Sprintf("%d events\n", len(phase2))) {
		t.Errorf("dead-letters output:\n%s", list.String())
	}

	// Replay while the server runs; the receiver is back.
	r.setMode("ok")
	before := len(r.items())
	var rep strings.Builder
	cmd = exec.Command(binary(t), "webhooks", "replay", "--config", cfg)
	cmd.Stdout, cmd.Stderr = &rep, &rep
	if err := cmd.Run(); err != nil {
		t.Fatalf("webhooks replay: %v\n%s", err, rep.String())
	}
	t.Logf("replay: %s", lastLine(rep.String()))
	if n := r.missing(phase2); n != 0 {
		t.Errorf("%d of %d dead-lettered events not received after replay", n, len(phase2))
	}
	checkDeviceOrder(t, r.items()[before:]) // the replay keeps each device's order
	if dls, err := stream.ListDeadLetters(stream.DeadLetterDir(filepath.Join(dir, "data")), "", ""); err != nil || len(dls) != 0 {
		t.Errorf("after replay: %d dead letters left, %v", len(dls), err)
	}
	// The lake, meanwhile, got everything exactly once.
	want := phase1
	for id := range phase2 {
		want[id] = true
	}
	waitLakeExact(t, filepath.Join(dir, "lake"), want, 60*time.Second)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndex(s, "\n")+1:]
}

// waitLakeExact waits until the lake holds every id of want, then checks that
// it holds each exactly once and nothing else.
func waitLakeExact(t testing.TB, root string, want map[string]bool, timeout time.Duration) {
	t.Helper()
	var l lake
	probe.Until(t, timeout, "every acknowledged event in the lake", func() (bool, string) {
		l = readLake(t, root)
		c := l.eventCounts()
		missing := 0
		for id := range want {
			if c[id] == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d missing", missing, len(want))
	})
	for id, n := range l.eventCounts() {
		if n != 1 {
			t.Errorf("event %s in the lake %d times", id, n)
		}
		if !want[id] {
			t.Errorf("event %s in the lake was never sent", id)
		}
	}
}

// TestWebhookSurvivesKill SIGKILLs tidemark while webhook batches are in
// flight, again and again; after the last restart every acknowledged event
// has reached the receiver at least once (each one checked), in order per
// device.
func TestWebhookSurvivesKill(t *testing.T) {
	const kills = 6
	dir := t.TempDir()
	port := testenv.FreePort(t)
	r := newHookReceiver(t)
	// A slow receiver, so that kills land while requests are in flight.
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		time.Sleep(20 * time.Millisecond) // the receiver's slowness, not a wait for a result
		r.serve(w, req)
	}))
	defer slow.Close()
	p := startProc(t, testConfig(t, dir, port, webhookYAML("crm", slow.URL, "        batch_size: 25\n")), port)
	ld := startLoad(t, p.addr, testKey, "k-", 4, 20, 5*time.Millisecond)
	for k := range kills {
		// Kill once the load has gone on (at least 100 more events
		// acknowledged) and the restarted process is delivering again (a
		// few more requests at the receiver, more for each kill, so that
		// the kills land at different points of a batch's life).
		acked, reqs := len(ld.Acked()), r.received("ok")
		probe.Until(t, 60*time.Second, fmt.Sprintf("load and deliveries before kill %d", k+1), func() (bool, string) {
			a, q := len(ld.Acked()), r.received("ok")
			return a >= acked+100 && q >= reqs+2+k, fmt.Sprintf("%d more acknowledged, %d more requests", a-acked, q-reqs)
		})
		p.kill()
		t.Logf("kill %d: %d acknowledged, %d received", k+1, len(ld.Acked()), len(r.items()))
		p.start()
	}
	want := ld.Stop()
	if len(want) < 500 {
		t.Fatalf("only %d events acknowledged", len(want))
	}
	probe.Until(t, 2*time.Minute, "every acknowledged event received", func() (bool, string) {
		n := r.missing(want)
		return n == 0, fmt.Sprintf("%d of %d missing", n, len(want))
	})
	items := r.items()
	checkDeviceOrder(t, items)
	t.Logf("%d kills, %d events acknowledged, %d received (%d duplicates, at least once)", kills, len(want), len(items), len(items)-len(want))
	p.stop()
}

// TestStreamIsolationPoison: an event that makes the streaming handler
// panic. The batch pipeline delivers every event exactly once; the stream
// records the poison event (metric, dead-letter record), skips it and keeps
// delivering the others to the webhook and the live tail.
func TestStreamIsolationPoison(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	r := newHookReceiver(t)
	cfg := testConfig(t, dir, port, webhookYAML("crm", r.srv.URL, ""))
	p := startProcEnv(t, cfg, port, []string{fault.Env + "=stream-panic-on-event=Poison"})
	live := openLive(t, p.addr, testReadKey, "")
	var batch []string
	want := map[string]bool{}
	var poison []string
	for i := range 60 {
		name := "Click"
		if i%20 == 7 {
			name = "Poison"
		}
		id := fmt.Sprintf("iso-%03d", i)
		batch = append(batch, fmt.Sprintf(`{"type":"track","anonymousId":"dev-%d","event":%q,"messageId":%q}`, i%5, name, id))
		want[id] = true
		if name == "Poison" {
			poison = append(poison, id)
		}
	}
	code, body := post(t, p.addr+"/v1/batch", []byte(`{"batch":[`+strings.Join(batch, ",")+`]}`), false)
	if code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	// Batch: exact.
	waitLakeExact(t, filepath.Join(dir, "lake"), want, 60*time.Second)
	// Stream: everything but the poison events, and it carried on after them.
	others := map[string]bool{}
	for id := range want {
		others[id] = true
	}
	for _, id := range poison {
		delete(others, id)
	}
	probe.Until(t, 30*time.Second, "the other events at the webhook", func() (bool, string) {
		n := r.missing(others)
		return n == 0, fmt.Sprintf("%d missing", n)
	})
	gotLive := map[string]bool{}
	probe.Until(t, 30*time.Second, "the other events on the live tail", func() (bool, string) {
		for len(live) > 0 {
			gotLive[(<-live).EventID] = true
		}
		return len(gotLive) == len(others), fmt.Sprintf("%d of %d", len(gotLive), len(others))
	})
	for _, id := range poison {
		if gotLive[id] {
			t.Errorf("poison event %s on the live tail", id)
		}
	}
	for _, consumer := range []string{"live", "webhook"} {
		if v, _ := p.metric(`tidemark_stream_poison_events_total{consumer="` + consumer + `"}`); v != float64(len(poison)) {
			t.Errorf("poison events counted by %s: %v, want %d", consumer, v, len(poison))
		}
	}
	dls, _ := stream.ListDeadLetters(stream.DeadLetterDir(filepath.Join(dir, "data")), "acme", "crm")
	var recorded []string
	for _, d := range dls {
		if d.Poison {
			recorded = append(recorded, d.EventID)
		}
	}
	sort.Strings(recorded)
	if strings.Join(recorded, ",") != strings.Join(poison, ",") {
		t.Errorf("poison records %v, want %v", recorded, poison)
	}
	// Replay reports poison records and keeps them; nothing else to send.
	out, err := exec.Command(binary(t), "webhooks", "replay", "--config", cfg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "poison event "+poison[0]+" cannot be replayed") ||
		!strings.Contains(string(out), fmt.Sprintf("0 failed, %d skipped", len(poison))) {
		t.Errorf("replay of poison records: %v\n%s", err, out)
	}
	if v, _ := p.metric(`tidemark_stage_restarts_total{stage="sessionizer"}`); v != 0 {
		t.Errorf("the batch pipeline restarted %v times", v)
	}
	p.stop()
}

// TestStreamIsolationSlowWebhook: one webhook hangs and another answers 500
// for two minutes under load. Ingest keeps answering, the live tail keeps
// streaming, the lake keeps its normal latency throughout and gets every
// event exactly once.
func TestStreamIsolationSlowWebhook(t *testing.T) {
	t.Parallel() // two minutes of waiting for markers: beside the other parallel tests
	dir := t.TempDir()
	port := testenv.FreePort(t)
	hang, fail := newHookReceiver(t), newHookReceiver(t)
	hang.setMode("hang")
	fail.setMode("500")
	hooks := webhookYAML("hang", hang.srv.URL, "        timeout: 5m\n        retry_for: 1h\n") +
		strings.TrimPrefix(webhookYAML("fail", fail.srv.URL, "        retry_for: 1h\n"), "    webhooks:\n")
	p := startProc(t, testConfig(t, dir, port, hooks), port)
	live := openLive(t, p.addr, testReadKey, "")

	ld := startLoad(t, p.addr, testKey, "slow-", 4, 20, 100*time.Millisecond)
	// While the load runs and both receivers stay broken (2 minutes), a marker
	// event every 3 s must be acknowledged and reach the live tail (within a
	// generous 20 s), and the lake's oldest undelivered event must stay young
	// (under a generous 20 s; flush.max_age is 1s).
	var markers []string
	maxAge := 0.0
	for i := range 40 {
		time.Sleep(3 * time.Second) // the subject: a marker every 3s for 2 minutes of broken receivers
		id := fmt.Sprintf("marker-%d", i)
		sent := time.Now()
		code, body := post(t, p.addr+"/v1/track", []byte(fmt.Sprintf(`{"anonymousId":"marker","event":"Marker","messageId":%q}`, id)), false)
		if code != 200 {
			t.Fatalf("ingest: %d %s", code, body)
		}
		ack := time.Since(sent)
		deadline := time.After(20 * time.Second)
	wait:
		for {
			select {
			case it := <-live:
				if it.EventID == id {
					break wait
				}
			case <-deadline:
				t.Fatalf("%s not on the live tail within 20s", id)
			}
		}
		t.Logf("%s acknowledged after %v, on the live tail after %v", id, ack, time.Since(sent))
		markers = append(markers, id)
		age, ok := p.metric(`tidemark_oldest_undelivered_event_age_seconds{destination="lake",org="acme",table="events"}`)
		if !ok || age > 20 {
			t.Fatalf("lake delivery stalled while the webhooks are broken: oldest undelivered age %v (metric found: %v)", age, ok)
		}
		maxAge = max(maxAge, age)
	}
	t.Logf("lake's oldest undelivered age during the 2 minutes: at most %.1fs", maxAge)
	want := ld.Stop()
	for _, id := range markers {
		want[id] = true
	}
	if ld.non200.Load() != 0 {
		t.Errorf("ingest answered non-200 %d times: %s", ld.non200.Load(), ld.last)
	}
	stopped := time.Now()
	// Normal lake latency: flush.max_age is 1s; 60s is generous on a busy machine.
	waitLakeExact(t, filepath.Join(dir, "lake"), want, 60*time.Second)
	t.Logf("%d events in the lake %v after the load stopped", len(want), time.Since(stopped))
	if v, _ := p.metric(`tidemark_webhook_lag_seconds{org="acme",webhook="hang"}`); v <= 0 {
		t.Errorf("hung webhook's lag is %v", v)
	}
	if v, _ := p.metric(`tidemark_webhook_failed_requests_total{org="acme",webhook="fail"}`); v == 0 {
		t.Error("failing webhook: no failed requests counted")
	}
	if n := len(hang.items()) + len(fail.items()); n != 0 {
		t.Errorf("broken receivers accepted %d events", n)
	}
	os.Stdout.Sync()
}

// TestStreamDisabled: with stream.enabled false the live tail answers 503,
// no streaming state is created, webhooks are not called, and the batch
// pipeline delivers as usual.
func TestStreamDisabled(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	r := newHookReceiver(t)
	cfg := orgsConfig(t, dir, port, fmt.Sprintf(`stream:
  enabled: false
orgs:
  - id: acme
    write_keys: [%q]
    destinations:
      - name: lake
        url: file://%s
        flush: {max_events: 300, max_age: 1s}
%s`, testKey, filepath.Join(dir, "lake"), webhookYAML("crm", r.srv.URL, "")))
	p := startProc(t, cfg, port)
	req, _ := http.NewRequest("GET", p.addr+"/v1/live", nil)
	req.SetBasicAuth(testKey, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /v1/live with streaming disabled: %d, want 503", resp.StatusCode)
	}
	if code, body := post(t, p.addr+"/v1/track", []byte(`{"anonymousId":"d","event":"E","messageId":"off-1"}`), false); code != 200 {
		t.Fatalf("ingest: %d %s", code, body)
	}
	waitLakeExact(t, filepath.Join(dir, "lake"), map[string]bool{"off-1": true}, 60*time.Second)
	for _, sub := range []string{"store/stream", "stream"} {
		if _, err := os.Stat(filepath.Join(dir, "data", sub)); !os.IsNotExist(err) {
			t.Errorf("data/%s exists with streaming disabled (%v)", sub, err)
		}
	}
	if _, ok := p.metric(`tidemark_live_events_total{org="acme",type="track"}`); ok {
		t.Error("live metrics exported with streaming disabled")
	}
	r.mu.Lock()
	if r.requests != 0 {
		t.Errorf("webhook called %d times with streaming disabled", r.requests)
	}
	r.mu.Unlock()
	p.stop()
}
