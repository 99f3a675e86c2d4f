package loadgen

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
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
)

const testKey = "test-write-key-0000000001"

// collector is a fake /v1/batch endpoint. It checks every request and event,
// and records how often each messageId was stored.
type collector struct {
	t testing.TB

	// reply, when set, decides request n's fate (1-based): status 0 stores the
	// events and answers 200; another status answers it with retryAfter, after
	// storing the events when store is set (a response lost after commit).
	reply func(n int) (status int, retryAfter string, store bool)

	mu       sync.Mutex
	requests int
	times    []time.Time    // arrival of each request
	stored   map[string]int // messageId -> times stored
	types    map[string]int
	devices  map[string]bool
	sizes    []int // JSON size of each stored event
}

func newCollector(t testing.TB) *collector {
	return &collector{t: t, stored: map[string]int{}, types: map[string]int{}, devices: map[string]bool{}}
}

type batchBody struct {
	Batch  []json.RawMessage `json:"batch"`
	SentAt string            `json:"sentAt"`
}

type eventBody struct {
	Type        string `json:"type"`
	Event       string `json:"event"`
	Name        string `json:"name"`
	MessageID   string `json:"messageId"`
	AnonymousID string `json:"anonymousId"`
	Timestamp   string `json:"timestamp"`
	Properties  struct {
		SentNs json.Number `json:"lg_sent_ns"`
		Path   string      `json:"path"`
	} `json:"properties"`
	Context map[string]any `json:"context"`
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	t := c.t
	c.mu.Lock()
	c.requests++
	n := c.requests
	c.times = append(c.times, time.Now())
	c.mu.Unlock()

	if r.Method != http.MethodPost || r.URL.Path != "/v1/batch" {
		t.Errorf("request %s %s", r.Method, r.URL.Path)
	}
	if user, pass, ok := r.BasicAuth(); !ok || user != testKey || pass != "" {
		http.Error(w, "unknown write key", http.StatusUnauthorized)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			t.Errorf("gzip: %v", err)
			http.Error(w, "bad gzip", http.StatusBadRequest)
			return
		}
		body = zr
	}
	var b batchBody
	if err := json.NewDecoder(body).Decode(&b); err != nil {
		t.Errorf("decode batch: %v", err)
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	if _, err := time.Parse(time.RFC3339, b.SentAt); err != nil {
		t.Errorf("sentAt %q: %v", b.SentAt, err)
	}
	var events []eventBody
	for _, raw := range b.Batch {
		var e eventBody
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(&e); err != nil {
			t.Errorf("decode event: %v", err)
			continue
		}
		sent, err := e.Properties.SentNs.Int64()
		if _, terr := time.Parse(time.RFC3339, e.Timestamp); terr != nil || err != nil || sent <= 0 ||
			e.MessageID == "" || e.AnonymousID == "" || e.Context == nil ||
			(e.Type == "track") == (e.Event == "") || (e.Type == "page") == (e.Name == "" || e.Properties.Path == "") {
			t.Errorf("bad event: %s", raw)
		}
		events = append(events, e)
	}

	status, retryAfter, store := 0, "", true
	if c.reply != nil {
		status, retryAfter, store = c.reply(n)
	}
	if store || status == 0 {
		c.mu.Lock()
		for i, e := range events {
			c.stored[e.MessageID]++
			c.types[e.Type]++
			c.devices[e.AnonymousID] = true
			c.sizes = append(c.sizes, len(b.Batch[i]))
		}
		c.mu.Unlock()
	}
	if status != 0 {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		http.Error(w, "overloaded", status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"success":true}`)
}

func TestRunAgainstServer(t *testing.T) {
	for _, gz := range []bool{false, true} {
		t.Run(fmt.Sprintf("gzip=%v", gz), func(t *testing.T) {
			c := newCollector(t)
			c.reply = func(n int) (int, string, bool) {
				switch n {
				case 2, 5, 7:
					return http.StatusServiceUnavailable, "0", false
				case 9:
					return http.StatusTooManyRequests, "", false // backoff without Retry-After
				case 11:
					return http.StatusServiceUnavailable, "0", true // stored, but the 200 was lost
				}
				return 0, "", false
			}
			srv := httptest.NewServer(c)
			defer srv.Close()

			acked := filepath.Join(t.TempDir(), "acked.txt")
			var out strings.Builder
			res, err := Run(t.Context(), Options{
				URL:         srv.URL,
				WriteKey:    testKey,
				Connections: 4,
				BatchSize:   50,
				Events:      1000,
				Devices:     20,
				Gzip:        gz,
				RunID:       "run1",
				AckedFile:   acked,
			}, &out)
			if err != nil {
				t.Fatal(err)
			}
			t.Log("\n" + out.String())

			if res.Acked != 1000 || res.Failed != 0 || res.Requests != 25 || res.Retries != 5 ||
				res.NetErrors != 0 || len(res.ErrorsByStatus) != 2 ||
				res.ErrorsByStatus[503] != 4 || res.ErrorsByStatus[429] != 1 {
				t.Errorf("result %+v", res)
			}
			if res.Latency.Count != 20 || res.Latency.P50 <= 0 || res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
				t.Errorf("latency %+v", res.Latency)
			}
			if res.BytesSent <= 0 || res.Duration <= 0 || res.EventsPerSec <= 0 || res.RunID != "run1" {
				t.Errorf("result %+v", res)
			}
			for _, want := range []string{"acked      1000 events", "errors     429: 1 503: 4", "503 Service Unavailable: overloaded"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("summary lacks %q", want)
				}
			}

			// Every event stored, under its deterministic id; the batch whose
			// response was lost was stored twice with the same ids.
			c.mu.Lock()
			defer c.mu.Unlock()
			twice := 0
			for i := range 1000 {
				switch c.stored["run1-"+strconv.Itoa(i)] {
				case 1:
				case 2:
					twice++
				default:
					t.Errorf("run1-%d stored %d times", i, c.stored["run1-"+strconv.Itoa(i)])
				}
			}
			if len(c.stored) != 1000 || twice != 50 {
				t.Errorf("%d ids stored, %d twice; want 1000 and 50", len(c.stored), twice)
			}

			// The acked file lists every id exactly once.
			data, err := os.ReadFile(acked)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			slices.Sort(lines)
			var want []string
			for i := range 1000 {
				want = append(want, "run1-"+strconv.Itoa(i))
			}
			slices.Sort(want)
			if !slices.Equal(lines, want) {
				t.Errorf("acked file has %d lines, not the 1000 ids", len(lines))
			}

			// Realistic mix: ~20% page calls, on at most Devices devices, ~300 bytes.
			pages := float64(c.types["page"]) / float64(c.types["page"]+c.types["track"])
			if pages < 0.12 || pages > 0.35 || c.types["page"]+c.types["track"] != 1050 {
				t.Errorf("types %v: page ratio %.2f", c.types, pages)
			}
			if len(c.devices) < 15 || len(c.devices) > 20 {
				t.Errorf("%d devices", len(c.devices))
			}
			var total int
			for _, s := range c.sizes {
				total += s
			}
			if avg := total / len(c.sizes); avg < 280 || avg > 400 {
				t.Errorf("average event size %d", avg)
			}
		})
	}
}

func TestWrongKey(t *testing.T) {
	c := newCollector(t)
	srv := httptest.NewServer(c)
	defer srv.Close()
	res, err := Run(t.Context(), Options{URL: srv.URL, WriteKey: "wrong-key-000000000000", Connections: 2, BatchSize: 10, Events: 100}, nil)
	if err == nil || !strings.Contains(err.Error(), "no event acknowledged in 10 requests: 401 Unauthorized: unknown write key") {
		t.Errorf("error %v", err)
	}
	if res.Acked != 0 || res.Failed != 100 || res.Requests != 10 || res.Retries != 0 || res.ErrorsByStatus[401] != 10 {
		t.Errorf("result %+v", res)
	}
}

func TestUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	res, err := Run(t.Context(), Options{URL: url, WriteKey: testKey, Connections: 1, BatchSize: 10, Events: 10, MaxRetries: -1}, nil)
	if err == nil || res.NetErrors != 1 || res.Failed != 10 || res.Requests != 1 {
		t.Errorf("result %+v, error %v", res, err)
	}
}

// handlerTransport serves requests in memory, so that tests can run in a
// synctest bubble with fake time.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, req)
	req.Body.Close()
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

func TestRetryAfterHonoured(t *testing.T) {
	for _, tc := range []struct {
		name       string
		retryAfter func() string
		wait       time.Duration
	}{
		{"seconds", func() string { return "7" }, 7 * time.Second},
		{"date", func() string { return time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat) }, 3 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCollector(t)
				c.reply = func(n int) (int, string, bool) {
					if n == 1 {
						return http.StatusServiceUnavailable, tc.retryAfter(), false
					}
					return 0, "", false
				}
				res, err := Run(t.Context(), Options{WriteKey: testKey, Connections: 1, BatchSize: 50, Events: 50,
					Transport: handlerTransport{c}}, nil)
				if err != nil {
					t.Fatal(err)
				}
				if res.Acked != 50 || res.Retries != 1 || res.Requests != 2 {
					t.Errorf("result %+v", res)
				}
				if len(c.times) != 2 || c.times[1].Sub(c.times[0]) != tc.wait {
					t.Errorf("retried after %v, want %v", c.times[1].Sub(c.times[0]), tc.wait)
				}
			})
		})
	}
}

func TestMaxRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCollector(t)
		c.reply = func(int) (int, string, bool) { return http.StatusServiceUnavailable, "2", false }
		start := time.Now()
		res, err := Run(t.Context(), Options{WriteKey: testKey, Connections: 1, BatchSize: 50, Events: 50, MaxRetries: 3,
			Transport: handlerTransport{c}}, nil)
		if err == nil {
			t.Error("no error although nothing was acknowledged")
		}
		if res.Acked != 0 || res.Failed != 50 || res.Requests != 4 || res.Retries != 3 || res.ErrorsByStatus[503] != 4 {
			t.Errorf("result %+v", res)
		}
		if d := time.Since(start); d != 6*time.Second {
			t.Errorf("took %v, want 3 waits of 2s", d)
		}
	})
}

func TestRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCollector(t)
		start := time.Now()
		res, err := Run(t.Context(), Options{WriteKey: testKey, Connections: 8, BatchSize: 50, Events: 5000, Rate: 1000,
			Transport: handlerTransport{c}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// 100 batches of 50 at 1000 events/s: one every 50ms, the last at 4.95s.
		if d := time.Since(start); res.Acked != 5000 || d != 4950*time.Millisecond {
			t.Errorf("acked %d in %v", res.Acked, d)
		}
		for i := 1; i < len(c.times); i++ {
			if gap := c.times[i].Sub(c.times[i-1]); gap != 50*time.Millisecond {
				t.Fatalf("request %d came %v after the previous one", i, gap)
			}
		}
	})
}

func TestDuration(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCollector(t)
		start := time.Now()
		res, err := Run(t.Context(), Options{WriteKey: testKey, Connections: 4, BatchSize: 10, Duration: 2 * time.Second,
			Rate: 500, Transport: handlerTransport{c}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		// A batch every 20ms, starting at 0: 100 start before the 2s deadline.
		if res.Acked != 1000 || len(c.stored) != 1000 || time.Since(start) != 1980*time.Millisecond {
			t.Errorf("acked %d, stored %d, in %v", res.Acked, len(c.stored), time.Since(start))
		}
	})
}

func TestCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCollector(t)
		ctx, cancel := context.WithTimeout(t.Context(), time.Second+time.Millisecond)
		defer cancel()
		res, err := Run(ctx, Options{WriteKey: testKey, Connections: 2, BatchSize: 10, Duration: time.Hour,
			Rate: 1000, Transport: handlerTransport{c}}, nil)
		if err != nil {
			t.Errorf("cancelled run: %v", err)
		}
		if res.Acked != 1010 || res.Failed != 0 {
			t.Errorf("result %+v", res)
		}
	})
}

func TestOptionsErrors(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{}, "write key: required"},
		{Options{WriteKey: "k", URL: "ftp://x"}, `url "ftp://x"`},
		{Options{WriteKey: "k", Connections: -1}, "connections: must be at least 1"},
		{Options{WriteKey: "k", BatchSize: -1}, "batch size"},
		{Options{WriteKey: "k", PageRatio: 1.5}, "page ratio"},
		{Options{WriteKey: "k", Rate: -1}, "rate"},
		{Options{WriteKey: "k", Events: -1}, "must not be negative"},
		{Options{WriteKey: "k", RunID: "a b"}, "run id"},
	} {
		_, err := Run(t.Context(), tc.o, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.o, err, tc.want)
		}
	}
}

func TestHistogram(t *testing.T) {
	var h histogram
	if l := h.latency(); l != (Latency{}) {
		t.Errorf("empty: %+v", l)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var vals []time.Duration
	for range 100000 {
		v := time.Duration(math.Exp(rng.NormFloat64()*1.5 + 15)) // median ~3ms, long tail
		vals = append(vals, v)
		h.record(v)
	}
	slices.Sort(vals)
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
		exact := vals[int(math.Ceil(q*float64(len(vals))))-1]
		got := h.quantile(q)
		if rel := math.Abs(float64(got-exact)) / float64(exact); rel > 1.0/256 {
			t.Errorf("q%.3f: %v, exact %v (error %.4f)", q, got, exact, rel)
		}
	}
	if l := h.latency(); l.Max != vals[len(vals)-1] || l.Count != 100000 {
		t.Errorf("latency %+v", l)
	}
	// Small values are exact; every value maps into the table and back.
	for _, v := range []uint64{0, 1, 255, 256, 257, 1 << 20, math.MaxInt64, math.MaxUint64} {
		i := bucketOf(v)
		if i < 0 || i >= len(h.counts) {
			t.Fatalf("%d: bucket %d out of range", v, i)
		}
		if mid := bucketValue(i); v < 256 && mid != v || float64(max(mid, v)-min(mid, v)) > float64(v)/256+0.5 {
			t.Errorf("%d: bucket %d value %d", v, i, mid)
		}
	}
}

func TestEventSizeOption(t *testing.T) {
	for _, size := range []int{100, 300, 800, 4000} {
		o := Options{WriteKey: "k", EventBytes: size, Devices: 50, Connections: 1}
		if err := o.setDefaults(); err != nil {
			t.Fatal(err)
		}
		g := newGenerator(&o, 0)
		var b batchBody
		if err := json.Unmarshal(g.batch(0, 200, time.Now()), &b); err != nil {
			t.Fatal(err)
		}
		for _, e := range b.Batch {
			if !json.Valid(e) {
				t.Fatalf("invalid JSON %s", e)
			}
			// Exact when there is room for padding (at least 12 bytes), else
			// only the essential fields: somewhat below or above the target.
			if len(e) <= size-len(`,"lg_pad":""`) || size >= 500 && len(e) != size {
				t.Errorf("size %d: event of %d bytes: %s", size, len(e), e)
			}
		}
	}
}

// BenchmarkBatch measures the generator alone: it must not be what limits a run.
func BenchmarkBatch(b *testing.B) {
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("gzip=%v", gz), func(b *testing.B) {
			o := Options{WriteKey: "k", Connections: 1, Gzip: gz}
			if err := o.setDefaults(); err != nil {
				b.Fatal(err)
			}
			g := newGenerator(&o, 0)
			var n int64
			for b.Loop() {
				g.batch(n, o.BatchSize, time.Now())
				n += int64(o.BatchSize)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
