package stream_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/fault"
	"github.com/tidemark/tidemark/internal/stream"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

const secret = "test-webhook-secret-0001"

// receiver is a real HTTP server on loopback that verifies signatures and
// records every event it accepts, in arrival order.
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	mu     sync.Mutex
	events []stream.Item
	sizes  []int // events per accepted request
	reqs   int
	bad    []string
	// answer decides the response of request n (1-based); nil: 200.
	answer func(n int, w http.ResponseWriter) bool
}

func newReceiver(t testing.TB) *receiver {
	r := &receiver{t: t}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

// verify checks a Tidemark-Signature header the way docs/streaming.md tells
// receivers to.
func verify(secret string, header string, body []byte) bool {
	var ts, sig string
	for _, kv := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sig = v
		}
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := hex.EncodeToString(m.Sum(nil))
	n, err := strconv.ParseInt(ts, 10, 64)
	return err == nil && hmac.Equal([]byte(sig), []byte(want)) && time.Since(time.Unix(n, 0)).Abs() < 5*time.Minute
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.reqs++
	n := r.reqs
	answer := r.answer
	r.mu.Unlock()
	if answer != nil && answer(n, w) {
		return
	}
	if !verify(secret, req.Header.Get(stream.SignatureHeader), body) {
		r.mu.Lock()
		r.bad = append(r.bad, "bad signature")
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var rq stream.Request
	if err := json.Unmarshal(body, &rq); err != nil || req.Header.Get(stream.IdempotencyHeader) != rq.IdempotencyKey {
		r.mu.Lock()
		r.bad = append(r.bad, fmt.Sprintf("bad body (%v): %.200s", err, body))
		r.mu.Unlock()
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	r.events = append(r.events, rq.Events...)
	r.sizes = append(r.sizes, len(rq.Events))
	r.mu.Unlock()
}

func (r *receiver) got() []stream.Item {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]stream.Item(nil), r.events...)
}

type env struct {
	dir string
	log *eventlog.Log
	reg *prometheus.Registry
	st  *stream.Stream
	hub *stream.Hub
}

func newEnv(t *testing.T, hooks []stream.Webhook, faults fault.Set) *env {
	t.Helper()
	return newEnvTail(t, hooks, faults, 0)
}

// newEnvTail is newEnv with a log whose tail keeps tail records (0: the
// default).
func newEnvTail(t *testing.T, hooks []stream.Webhook, faults fault.Set, tail int) *env {
	t.Helper()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	l, err := eventlog.Open(dir, eventlog.Options{Partitions: 3, TailRecords: tail, Registerer: reg, Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	hub, err := stream.NewHub(reg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stream.New(stream.Options{Log: l, DataDir: dir, Webhooks: hooks, Hub: hub, Registerer: reg,
		PageIdle: time.Minute, SessionIdle: time.Minute, Faults: faults,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return &env{dir: dir, log: l, reg: reg, st: st, hub: hub}
}

// run runs the stage until the returned stop is called.
func (e *env) run(t *testing.T) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- e.st.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("stream run: %v", err)
		}
	}
}

func hook(url string, batch int, retryFor time.Duration) stream.Webhook {
	return stream.Webhook{Org: "acme", Name: "crm", URL: url, Secret: []byte(secret),
		Filter: stream.NewFilter("acme", nil, nil, nil), BatchSize: batch, Timeout: 2 * time.Second, RetryFor: retryFor}
}

// send appends n events per device for devices d0..d(devs-1), interleaved.
func send(t *testing.T, l *eventlog.Log, prefix string, devs, n int, name func(i int) string) []string {
	t.Helper()
	var ids []string
	for i := range n {
		var evs []event.Event
		for d := range devs {
			id := fmt.Sprintf("%s-d%d-%04d", prefix, d, i)
			now := time.Now().UnixNano()
			evs = append(evs, event.Event{ID: id, Org: "acme", Device: fmt.Sprintf("d%d", d), AnonymousID: fmt.Sprintf("d%d", d),
				Type: "track", Name: name(i), ReceivedAt: now, EventTime: now, Properties: []byte(fmt.Sprintf(`{"i":%d}`, i))})
			ids = append(ids, id)
		}
		if err := l.Append(t.Context(), evs); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func click(int) string { return "Click" }

// waitUntil polls cond until it holds; it fails t after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !probe.Poll(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// checkOrder fails unless every id arrived and each device's events arrived
// in the order they were appended (duplicates from retries are allowed).
func checkOrder(t *testing.T, got []stream.Item, want []string) {
	t.Helper()
	seen := map[string]bool{}
	last := map[string]int{}
	for _, it := range got {
		seen[it.EventID] = true
		i, _ := strconv.Atoi(it.EventID[strings.LastIndex(it.EventID, "-")+1:])
		if prev, ok := last[it.DeviceID]; ok && i < prev && !seen[it.EventID] {
			t.Errorf("device %s: event %d after %d", it.DeviceID, i, prev)
		}
		last[it.DeviceID] = max(last[it.DeviceID], i)
	}
	for _, id := range want {
		if !seen[id] {
			t.Errorf("event %s never delivered", id)
		}
	}
}

func TestWebhookDeliversSignedInOrder(t *testing.T) {
	r := newReceiver(t)
	e := newEnv(t, []stream.Webhook{hook(r.srv.URL, 7, time.Minute)}, fault.Set{})
	stop := e.run(t)
	defer stop()
	waitUntil(t, 10*time.Second, "cursors loaded", func() bool { keep, _ := e.st.Hold(0); return keep > 0 })
	want := send(t, e.log, "a", 5, 40, click)
	waitUntil(t, 30*time.Second, "every event delivered", func() bool { return len(r.got()) >= len(want) })
	got := r.got()
	if len(got) != len(want) {
		t.Errorf("%d events delivered, want %d (no failures, so no duplicates)", len(got), len(want))
	}
	// Strict per-device order: the events of a device arrive in append order.
	last := map[string]int{}
	for _, it := range got {
		i, _ := strconv.Atoi(it.EventID[strings.LastIndex(it.EventID, "-")+1:])
		if prev, ok := last[it.DeviceID]; ok && i != prev+1 {
			t.Errorf("device %s: event %d after %d", it.DeviceID, i, prev)
		}
		last[it.DeviceID] = i
	}
	checkOrder(t, got, want)
	if len(r.bad) > 0 {
		t.Errorf("receiver rejected requests: %v", r.bad)
	}
	// The sender counts a batch once the receiver has answered it, so the
	// count may trail what the receiver holds by the last answers.
	delivered := func() float64 { return probe.Value(t, e.reg, "tidemark_webhook_delivered_events_total", nil) }
	waitUntil(t, 30*time.Second, "every delivery counted", func() bool { return delivered() >= float64(len(want)) })
	if v := delivered(); v != float64(len(want)) {
		t.Errorf("delivered metric %v, want %d", v, len(want))
	}
}

func TestWebhookRetriesHonouringRetryAfter(t *testing.T) {
	r := newReceiver(t)
	var times []time.Time
	r.answer = func(n int, w http.ResponseWriter) bool {
		times = append(times, time.Now())
		switch n {
		case 1, 2:
			http.Error(w, "down", http.StatusInternalServerError)
			return true
		case 3:
			w.Header().Set("Retry-After", "1")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return true
		}
		return false
	}
	e := newEnv(t, []stream.Webhook{hook(r.srv.URL, 100, time.Minute)}, fault.Set{})
	stop := e.run(t)
	defer stop()
	waitUntil(t, 10*time.Second, "cursors loaded", func() bool { keep, _ := e.st.Hold(0); return keep > 0 })
	want := send(t, e.log, "r", 1, 5, click) // one device: one partition, one batch
	waitUntil(t, 30*time.Second, "delivery after retries", func() bool { return len(r.got()) >= len(want) })
	checkOrder(t, r.got(), want)
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(times) < 4 {
		t.Fatalf("%d requests, want at least 4", len(times))
	}
	if gap := times[3].Sub(times[2]); gap < 900*time.Millisecond {
		t.Errorf("retry %v after a Retry-After: 1 answer, want about 1s", gap)
	}
	if v := probe.Value(t, e.reg, "tidemark_webhook_retries_total", nil); v < 3 {
		t.Errorf("retries metric %v, want >= 3", v)
	}
	if v := probe.Value(t, e.reg, "tidemark_webhook_failed_requests_total", nil); v < 3 {
		t.Errorf("failed metric %v, want >= 3", v)
	}
}

func TestWebhookDeadLetterAfterRetryWindow(t *testing.T) {
	r := newReceiver(t)
	var down sync.Mutex
	failing := true
	r.answer = func(n int, w http.ResponseWriter) bool {
		down.Lock()
		defer down.Unlock()
		if failing {
			http.Error(w, "down", http.StatusServiceUnavailable)
		}
		return failing
	}
	e := newEnv(t, []stream.Webhook{hook(r.srv.URL, 4, 300*time.Millisecond)}, fault.Set{})
	stop := e.run(t)
	waitUntil(t, 10*time.Second, "cursors loaded", func() bool { keep, _ := e.st.Hold(0); return keep > 0 })
	want := send(t, e.log, "x", 3, 6, click)
	var dls []stream.StoredDeadLetter
	waitUntil(t, 30*time.Second, "every event in dead letters", func() bool {
		dls, _ = stream.ListDeadLetters(stream.DeadLetterDir(e.dir), "acme", "crm")
		n := 0
		for _, d := range dls {
			n += d.Events
		}
		return n == len(want)
	})
	stop()
	// The cursors moved past the dead letters: the log is not held.
	for p := range 3 {
		if keep, _ := e.st.Hold(p); keep != e.log.LastOffset(p)+1 {
			t.Errorf("partition %d: webhook holds %d, want %d", p, keep, e.log.LastOffset(p)+1)
		}
	}
	if v := probe.Value(t, e.reg, "tidemark_webhook_dead_letter_events_total", nil); v != float64(len(want)) {
		t.Errorf("dead-letter metric %v, want %d", v, len(want))
	}
	st := e.st.Status()
	if len(st) != 1 || st[0].DeadLetter != int64(len(want)) || st[0].Delivered != 0 || st[0].FailedRequests == 0 ||
		!strings.Contains(st[0].LastError, "503") || st[0].Behind != 0 || st[0].LagSeconds != 0 {
		t.Errorf("status %+v", st)
	}
	// Every dead letter holds its request, signed again on replay.
	// The window runs from each batch's oldest event: the first batch of a
	// partition was retried through it; later ones, already older than the
	// window when their turn came, got one attempt.
	var items []stream.Item
	retried := 0
	for _, d := range dls {
		if d.Attempts < 1 || d.Error == "" {
			t.Errorf("dead letter %s: %d attempts, error %q", d.Path, d.Attempts, d.Error)
		}
		if d.Attempts > 1 {
			retried++
		}
		req, err := d.Request()
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, req.Events...)
	}
	checkOrder(t, items, want)
	if retried == 0 {
		t.Error("no dead letter was retried before the window passed")
	}
}

func TestPoisonEventIsSkippedAndRecorded(t *testing.T) {
	r := newReceiver(t)
	e := newEnv(t, []stream.Webhook{hook(r.srv.URL, 3, time.Minute)}, fault.Set{StreamPanicOnEvent: "Poison"})
	sub, unsub := subscribe(t, e.hub, stream.NewFilter("acme", nil, nil, nil))
	defer unsub()
	stop := e.run(t)
	defer stop()
	waitUntil(t, 10*time.Second, "cursors loaded", func() bool { keep, _ := e.st.Hold(0); return keep > 0 })
	name := func(i int) string {
		if i == 5 {
			return "Poison"
		}
		return "Click"
	}
	ids := send(t, e.log, "p", 2, 10, name)
	var want []string
	for _, id := range ids {
		if !strings.HasSuffix(id, "-0005") {
			want = append(want, id)
		}
	}
	waitUntil(t, 30*time.Second, "the other events delivered", func() bool { return len(r.got()) >= len(want) })
	checkOrder(t, r.got(), want)
	for _, it := range r.got() {
		if strings.HasSuffix(it.EventID, "-0005") {
			t.Errorf("poison event %s was delivered", it.EventID)
		}
	}
	// The live tail skipped it too and carried on.
	live := map[string]bool{}
	waitUntil(t, 10*time.Second, "live tail events", func() bool {
		for {
			select {
			case data := <-sub.C():
				var it stream.Item
				json.Unmarshal(data, &it)
				live[it.EventID] = true
			default:
				return len(live) >= len(want)
			}
		}
	})
	// Two poison events (one per device), each seen by live and webhook.
	waitUntil(t, 10*time.Second, "poison recorded", func() bool {
		dls, _ := stream.ListDeadLetters(stream.DeadLetterDir(e.dir), "", "")
		return len(dls) == 2 && dls[0].Poison && dls[1].Poison
	})
	if v := probe.Value(t, e.reg, "tidemark_stream_poison_events_total", map[string]string{"consumer": "live"}); v == 0 {
		t.Error("poison metric is 0")
	}
}

// TestHubDropsForSlowSubscriberAndReports runs in a synctest bubble:
// synctest.Wait returns once the follower has published everything appended
// and waits for the log again, so the drops are counted after the fact, not
// after a guessed pause.
func TestHubDropsForSlowSubscriberAndReports(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, nil, fault.Set{})
		slow, unsub := subscribe(t, e.hub, stream.NewFilter("acme", nil, nil, nil))
		defer unsub()
		other, unsub2 := subscribe(t, e.hub, stream.NewFilter("acme", nil, nil, []string{"d1"}))
		defer unsub2()
		stop := e.run(t)
		defer stop()
		// The follower starts at the tail: wait until it sees a first event.
		waitUntil(t, 30*time.Second, "the follower running", func() bool {
			send(t, e.log, "probe", 1, 1, click)
			synctest.Wait()
			return len(slow.C()) > 0
		})
		for len(slow.C()) > 0 {
			<-slow.C()
		}
		n := stream.SubscriberBuffer + 500
		send(t, e.log, "h", 1, n, click)
		waitUntil(t, 30*time.Second, "drops reported", func() bool { return len(slow.C()) == stream.SubscriberBuffer })
		synctest.Wait()
		if d := slow.TakeDropped(); d != 500 {
			t.Errorf("dropped %d, want 500", d)
		}
		if len(other.C()) != 0 {
			t.Errorf("the device filter let %d events of d0 through", len(other.C()))
		}
	})
}

func TestStreamRestartResumesFromCursor(t *testing.T) {
	r := newReceiver(t)
	e := newEnv(t, []stream.Webhook{hook(r.srv.URL, 10, time.Minute)}, fault.Set{})
	stop := e.run(t)
	waitUntil(t, 10*time.Second, "cursors loaded", func() bool { keep, _ := e.st.Hold(0); return keep > 0 })
	want := send(t, e.log, "s1", 4, 10, click)
	waitUntil(t, 30*time.Second, "first events", func() bool { return len(r.got()) >= len(want) })
	stop()
	// Appended while the stage is down: delivered after it restarts.
	want = append(want, send(t, e.log, "s2", 4, 10, click)...)
	stop = e.run(t)
	defer stop()
	waitUntil(t, 30*time.Second, "events appended while stopped", func() bool { return len(r.got()) >= len(want) })
	checkOrder(t, r.got(), want)
}

// TestFaultsEnvPoisonsStream: the stream fault of the one fault variable
// (parsed at start, as serve does) makes its events poison.
func TestFaultsEnvPoisonsStream(t *testing.T) {
	t.Setenv(fault.Env, "stream-panic-on-event=Boom")
	flt, err := fault.FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	r := newReceiver(t)
	e := newEnv(t, []stream.Webhook{hook(r.srv.URL, 10, time.Minute)}, flt)
	stop := e.run(t)
	defer stop()
	waitUntil(t, 10*time.Second, "cursors loaded", func() bool { keep, _ := e.st.Hold(0); return keep > 0 })
	send(t, e.log, "f", 1, 3, func(i int) string { return []string{"Click", "Boom", "Click"}[i] })
	waitUntil(t, 30*time.Second, "delivery", func() bool { return len(r.got()) >= 2 })
	waitUntil(t, 10*time.Second, "poison record", func() bool {
		dls, _ := stream.ListDeadLetters(stream.DeadLetterDir(e.dir), "", "")
		return len(dls) == 1 && dls[0].Poison && strings.HasSuffix(dls[0].EventID, "-0001")
	})
	if _, err := os.Stat(filepath.Join(e.dir, "store", "stream")); err != nil {
		t.Errorf("the stream's own store: %v", err)
	}
}

// TestNewWebhookGetsEventsAcceptedBeforeRun: a new webhook starts at the log's
// tail as of New, so events accepted before the stage's first Run (it opens
// its store asynchronously) still reach it.
func TestNewWebhookGetsEventsAcceptedBeforeRun(t *testing.T) {
	r := newReceiver(t)
	e := newEnv(t, []stream.Webhook{hook(r.srv.URL, 10, time.Minute)}, fault.Set{})
	want := send(t, e.log, "early", 3, 5, click)
	stop := e.run(t)
	defer stop()
	waitUntil(t, 30*time.Second, "the early events", func() bool { return len(r.got()) >= len(want) })
	checkOrder(t, r.got(), want)
}

func subscribe(t *testing.T, h *stream.Hub, f stream.Filter) (*stream.Sub, func()) {
	t.Helper()
	sub, unsub, err := h.Subscribe(f)
	if err != nil {
		t.Fatal(err)
	}
	return sub, unsub
}

func TestHubLimitsSubscribers(t *testing.T) {
	e := newEnv(t, nil, fault.Set{})
	var unsubs []func()
	for range stream.MaxSubscribers {
		_, u := subscribe(t, e.hub, stream.Filter{})
		unsubs = append(unsubs, u)
	}
	if _, _, err := e.hub.Subscribe(stream.Filter{}); err != stream.ErrTooManySubscribers {
		t.Errorf("subscriber %d: %v", stream.MaxSubscribers+1, err)
	}
	unsubs[0]()
	_, u, err := e.hub.Subscribe(stream.Filter{})
	if err != nil {
		t.Errorf("after one left: %v", err)
	}
	u()
}

// TestWebhookRequestSizeIsBounded: large events cut a batch before
// batch_size, so a request (and a batch in memory) stays near
// MaxRequestBytes.
func TestWebhookRequestSizeIsBounded(t *testing.T) {
	r := newReceiver(t)
	e := newEnv(t, []stream.Webhook{hook(r.srv.URL, 10000, time.Minute)}, fault.Set{})
	pad := strings.Repeat("x", 100<<10)
	var want []string
	for i := range 25 {
		now := time.Now().UnixNano()
		id := fmt.Sprintf("big-d0-%04d", i)
		if err := e.log.Append(t.Context(), []event.Event{{ID: id, Org: "acme", Device: "d0", Type: "track", Name: "Big",
			ReceivedAt: now, EventTime: now, Properties: []byte(`{"pad":"` + pad + `"}`)}}); err != nil {
			t.Fatal(err)
		}
		want = append(want, id)
	}
	stop := e.run(t)
	defer stop()
	waitUntil(t, 30*time.Second, "every big event", func() bool { return len(r.got()) >= len(want) })
	checkOrder(t, r.got(), want)
	r.mu.Lock()
	defer r.mu.Unlock()
	limit := stream.MaxRequestBytes/(100<<10) + 1 // the item that reaches the limit is the last
	if len(r.sizes) < 3 || slices.Max(r.sizes) > limit {
		t.Errorf("events per request %v, want at most %d of ~100 KiB each", r.sizes, limit)
	}
}

// TestLiveFollowerCountsEveryRecordOnce: the live follower counts every
// committed event exactly once whether it takes them from the log's tail,
// falls behind the tail and scans the store, or scans because somebody
// tails, and switches between the three without a gap or a repeat.
func TestLiveFollowerCountsEveryRecordOnce(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail int
	}{{"tail", 0}, {"behind the tail", 8}} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnvTail(t, nil, fault.Set{}, tc.tail)
			stop := e.run(t)
			defer stop()
			live := func() float64 { // the one series: acme, track; 0 before it exists
				mfs, err := e.reg.Gather()
				if err != nil {
					t.Fatal(err)
				}
				for _, mf := range mfs {
					if mf.GetName() == "tidemark_live_events_total" && len(mf.Metric) > 0 {
						return mf.Metric[0].GetCounter().GetValue()
					}
				}
				return 0
			}
			// The follower starts where the log was at New: it counts
			// every event sent from here on.
			sent := 0
			for round := range 3 {
				// Rounds of 5-event commits (more than a tail of 8 holds
				// when two are pending), with a live-tail subscriber in
				// the middle round.
				var unsub func()
				if round == 1 {
					_, unsub = subscribe(t, e.hub, stream.NewFilter("acme", nil, nil, nil))
				}
				sent += len(send(t, e.log, fmt.Sprintf("r%d", round), 5, 200, click))
				if unsub != nil {
					unsub()
				}
			}
			// A last commit: once it is counted, so is everything before
			// it, a repeat included.
			sent += len(send(t, e.log, "last", 5, 1, click))
			waitUntil(t, 30*time.Second, "every event counted", func() bool { return live() >= float64(sent) })
			if got := live(); got != float64(sent) {
				t.Fatalf("live follower counted %v events, %d were committed", got, sent)
			}
		})
	}
}

// TestLiveFollowerStartsAtNew: events committed after New and before Run
// (the server answers requests before the stage is running) are seen by the
// live follower and its subscribers; those committed before New are not
// (the live tail has no history).
func TestLiveFollowerStartsAtNew(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	l, err := eventlog.Open(dir, eventlog.Options{Partitions: 3, Registerer: reg, Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	before := send(t, l, "before", 3, 2, click)
	hub, err := stream.NewHub(reg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := stream.New(stream.Options{Log: l, DataDir: dir, Hub: hub, Registerer: reg,
		PageIdle: time.Minute, SessionIdle: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	sub, unsub := subscribe(t, hub, stream.NewFilter("acme", nil, nil, nil))
	defer unsub()
	after := send(t, l, "after", 3, 4, click)
	e := &env{dir: dir, log: l, reg: reg, st: st, hub: hub}
	stop := e.run(t)
	defer stop()
	got := map[string]bool{}
	waitUntil(t, 30*time.Second, "every event committed after New on the live tail", func() bool {
		for len(sub.C()) > 0 {
			var it stream.Item
			if err := json.Unmarshal(<-sub.C(), &it); err != nil {
				t.Fatal(err)
			}
			got[it.EventID] = true
		}
		return len(got) >= len(after)
	})
	for _, id := range after {
		if !got[id] {
			t.Errorf("event %s (committed after New) not on the live tail", id)
		}
	}
	for _, id := range before {
		if got[id] {
			t.Errorf("event %s (committed before New) on the live tail", id)
		}
	}
}
