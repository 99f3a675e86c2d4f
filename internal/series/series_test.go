package series

import (
	"fmt"
	"math"
	"runtime"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the families the sampler reads, with the names, labels and
// (for the latency) buckets the pipeline registers them with.
type metrics struct {
	reg       *prometheus.Registry
	ingest    *prometheus.CounterVec
	delivered *prometheus.CounterVec
	oldest    *prometheus.GaugeVec
	latency   *prometheus.HistogramVec
	failed    *prometheus.CounterVec
	dead      *prometheus.CounterVec
	lag       *prometheus.GaugeVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		ingest: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_ingest_events_total"},
			[]string{"org", "outcome"}),
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_delivered_events_total"},
			[]string{"org", "destination", "table"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tidemark_oldest_undelivered_event_age_seconds"},
			[]string{"org", "destination", "table"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "tidemark_ingest_request_duration_seconds",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}, []string{"endpoint"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_webhook_failed_requests_total"},
			[]string{"org", "webhook"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_webhook_dead_letter_events_total"},
			[]string{"org", "webhook"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tidemark_webhook_lag_seconds"}, []string{"org", "webhook"}),
	}
	m.reg.MustRegister(m.ingest, m.delivered, m.oldest, m.latency, m.failed, m.dead, m.lag)
	return m
}

func all(string) bool { return true }

// last returns the newest n points of series k in s (n+1 means: also the
// one before), failing t when the series is not there.
func last(t *testing.T, s *Sampler, k Key, n int) []float32 {
	t.Helper()
	_, ss := s.Snapshot(all)
	for _, x := range ss {
		if x.Key == k {
			if len(x.Points) != Points {
				t.Fatalf("%v: %d points, want %d", k, len(x.Points), Points)
			}
			return x.Points[Points-n:]
		}
	}
	t.Fatalf("no series %+v", k)
	return nil
}

// same compares points, NaN equal to NaN.
func same(got []float32, want ...float64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		g, w := float64(got[i]), want[i]
		if math.IsNaN(g) != math.IsNaN(w) || !math.IsNaN(w) && math.Abs(g-w) > 1e-6*math.Max(1, math.Abs(w)) {
			return false
		}
	}
	return true
}

var nan = math.NaN()

// TestRun samples on the ticker (synctest's fake clock): rates from the
// counters' increase over a step, gauges as read, the latency's p99 over
// the step, and what a reader sees at each step.
func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m := newMetrics()
		s := New(m.reg, time.Now)
		start := time.Now()
		go s.Run(t.Context())
		synctest.Wait() // the first sample, at once

		acme := Key{Name: Accepted, Org: "acme"}
		lake := Key{Name: Delivered, Org: "acme", Destination: "lake"}
		age := Key{Name: Oldest, Org: "acme", Destination: "lake"}
		p99 := Key{Name: LatencyP99}
		m.ingest.WithLabelValues("acme", "accepted").Add(500) // before the first sample: its rate is unknown
		m.delivered.WithLabelValues("acme", "lake", "events")
		m.oldest.WithLabelValues("acme", "lake", "events").Set(7)
		m.oldest.WithLabelValues("acme", "lake", "pages").Set(99) // not the events table: not sampled
		synctest.Wait()
		if end, ss := s.Snapshot(all); len(ss) != 0 || !end.Equal(start) {
			t.Fatalf("after the first sample of empty metrics: end %v (start %v), %d series", end, start, len(ss))
		}

		time.Sleep(Step)
		synctest.Wait()
		// The ingest and delivered counters first appeared in this step: they
		// started at 0 in this process.
		if got := last(t, s, acme, 2); !same(got, nan, 50) {
			t.Errorf("accepted: %v, want [NaN 50] (500 events in 10s)", got)
		}
		if got := last(t, s, lake, 1); !same(got, 0) {
			t.Errorf("delivered: %v, want [0]", got)
		}
		if got := last(t, s, age, 1); !same(got, 7) {
			t.Errorf("oldest: %v, want [7]", got)
		}

		m.ingest.WithLabelValues("acme", "accepted").Add(1000)
		m.ingest.WithLabelValues("acme", "rejected").Add(1e6) // not accepted: not counted
		m.ingest.WithLabelValues("globex", "accepted").Add(30)
		m.delivered.WithLabelValues("acme", "lake", "events").Add(250)
		m.delivered.WithLabelValues("acme", "lake", "pages").Add(1e6)
		m.oldest.WithLabelValues("acme", "lake", "events").Set(12.5)
		// 98 fast requests and 2 slow ones: the 99th of 100 is halfway
		// through the slow ones' bucket (2.5, 5].
		for range 49 {
			m.latency.WithLabelValues("batch").Observe(0.0007)
			m.latency.WithLabelValues("track").Observe(0.0007)
		}
		m.latency.WithLabelValues("batch").Observe(3)
		m.latency.WithLabelValues("track").Observe(3)
		time.Sleep(Step)
		synctest.Wait()
		if got := last(t, s, acme, 3); !same(got, nan, 50, 100) {
			t.Errorf("accepted: %v, want [NaN 50 100]", got)
		}
		if got := last(t, s, Key{Name: Accepted, Org: "globex"}, 2); !same(got, nan, 3) {
			t.Errorf("globex accepted: %v, want [NaN 3]", got)
		}
		if got := last(t, s, lake, 2); !same(got, 0, 25) {
			t.Errorf("delivered: %v, want [0 25]", got)
		}
		if got := last(t, s, age, 2); !same(got, 7, 12.5) {
			t.Errorf("oldest: %v, want [7 12.5]", got)
		}
		// The histogram appeared in this step: all its requests are new.
		if got := last(t, s, p99, 1); !same(got, 3.75) {
			t.Errorf("p99: %v, want [3.75]", got)
		}

		time.Sleep(Step) // no request in this step: no latency
		synctest.Wait()
		if got := last(t, s, p99, 2); !same(got, 3.75, nan) {
			t.Errorf("p99: %v, want [3.75 NaN]", got)
		}
		if got := last(t, s, acme, 1); !same(got, 0) {
			t.Errorf("accepted: %v, want [0]", got)
		}

		// An hour later the oldest samples have rolled out of the ring.
		time.Sleep(time.Hour)
		synctest.Wait()
		end, ss := s.Snapshot(all)
		if want := start.Add(3*Step + time.Hour); !end.Equal(want) {
			t.Errorf("end %v, want %v", end, want)
		}
		// 364 samples taken (steps 0 to 363), 360 kept: steps 4 to 363,
		// every one with a value.
		for _, x := range ss {
			if x.Key == age && !same(x.Points[:1], 12.5) {
				t.Errorf("oldest point of %v: %v, want 12.5 (step 4)", age, x.Points[0])
			}
			for i, v := range x.Points {
				if math.IsNaN(float64(v)) && x.Key != p99 {
					t.Errorf("%v: point %d is NaN", x.Key, i)
					break
				}
			}
		}
	})
}

// TestGapsAndExpiry drives Sample by hand: a late sample leaves the steps
// it skipped empty, a series that stops being exported keeps its history
// and is dropped once it has none, and the org filter.
func TestGapsAndExpiry(t *testing.T) {
	m := newMetrics()
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s := New(m.reg, func() time.Time { return now })
	lag := Key{Name: WebhookLag, Org: "acme", Webhook: "crm"}
	fail := Key{Name: WebhookFailed, Org: "acme", Webhook: "crm"}
	dead := Key{Name: WebhookDead, Org: "acme", Webhook: "crm"}
	m.lag.WithLabelValues("acme", "crm").Set(1)
	m.failed.WithLabelValues("acme", "crm")
	m.dead.WithLabelValues("acme", "crm").Add(4)
	m.lag.WithLabelValues("globex", "erp").Set(2)
	sample := func(after time.Duration) {
		t.Helper()
		now = now.Add(after)
		if err := s.Sample(); err != nil {
			t.Fatal(err)
		}
	}
	sample(0)
	m.lag.WithLabelValues("acme", "crm").Set(2)
	m.failed.WithLabelValues("acme", "crm").Add(30)
	sample(Step + 4*time.Second)   // a little late: still the next step
	sample(500 * time.Millisecond) // in the same step: ignored
	m.lag.WithLabelValues("acme", "crm").Set(3)
	m.failed.WithLabelValues("acme", "crm").Add(60)
	m.dead.WithLabelValues("acme", "crm").Add(1)
	sample(25500 * time.Millisecond) // three steps after the previous one
	if got := last(t, s, lag, 5); !same(got, 1, 2, nan, nan, 3) {
		t.Errorf("lag: %v, want [1 2 NaN NaN 3]", got)
	}
	if got := last(t, s, fail, 5); !same(got, nan, 3, nan, nan, 2) {
		t.Errorf("failures/s: %v, want [NaN 3 NaN NaN 2] (60 in 30s)", got)
	}
	if got := last(t, s, dead, 5); !same(got, 4, 4, nan, nan, 5) {
		t.Errorf("dead letters: %v, want [4 4 NaN NaN 5] (the counter)", got)
	}
	if end, _ := s.Snapshot(all); !end.Equal(time.Date(2026, 12, 7, 10, 0, 40, 0, time.UTC)) {
		t.Errorf("end %v, want 10:00:40 (the first sample + 4 steps)", end)
	}

	_, ss := s.Snapshot(func(org string) bool { return org == "globex" })
	if len(ss) != 1 || ss[0].Key != (Key{Name: WebhookLag, Org: "globex", Webhook: "erp"}) {
		t.Errorf("globex's series: %+v", ss)
	}

	// The webhook is gone (a reload would do that): its series stay while
	// they have a sample in the hour, then go.
	m.lag.DeleteLabelValues("acme", "crm")
	for range Points - 1 {
		sample(Step)
	}
	if got := last(t, s, lag, 2); !same(got, nan, nan) || !same(last(t, s, lag, Points)[:1], 3) {
		t.Errorf("lag an hour later: first %v, last two %v", last(t, s, lag, Points)[:1], got)
	}
	sample(Step)
	_, ss = s.Snapshot(all)
	for _, x := range ss {
		if x.Key == lag {
			t.Errorf("%v still served after an hour without a sample", lag)
		}
	}
}

func TestQuantile(t *testing.T) {
	bounds := []float64{1, 2, 4}
	for _, tc := range []struct {
		q    float64
		cum  []float64 // per bucket, then the total
		want float64
	}{
		{0.99, []float64{0, 0, 0, 0}, nan},
		{0.5, []float64{10, 10, 10, 10}, 0.5}, // first bucket: from 0
		{0.99, []float64{0, 100, 100, 100}, 1.99},
		{0.5, []float64{0, 0, 4, 4}, 3},        // (2, 4], halfway
		{0.99, []float64{50, 50, 50, 100}, 4},  // in +Inf: the highest bound
		{0.99, []float64{98, 98, 100, 100}, 3}, // the 99th of 100: halfway through (2, 4]
	} {
		if got := quantile(tc.q, bounds, tc.cum); !same([]float32{float32(got)}, tc.want) {
			t.Errorf("quantile(%v, %v) = %v, want %v", tc.q, tc.cum, got, tc.want)
		}
	}
}

// TestMemoryBound measures what the sampler holds for 1,000 orgs with one
// destination each (3,000 series: accepted, delivered, oldest), and holds
// it to the bound docs/api.md states.
func TestMemoryBound(t *testing.T) {
	const orgs = 1000
	m := newMetrics()
	for i := range orgs {
		org := fmt.Sprintf("org-%04d", i)
		m.ingest.WithLabelValues(org, "accepted").Add(float64(i))
		m.delivered.WithLabelValues(org, "lake", "events").Add(float64(i))
		m.oldest.WithLabelValues(org, "lake", "events").Set(float64(i))
	}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	before := heap()
	s := New(m.reg, func() time.Time { return now })
	// A ring is allocated whole with its series: what two samples (the
	// second has the counters' previous values) hold, an hour holds.
	for range 2 {
		if err := s.Sample(); err != nil {
			t.Fatal(err)
		}
		now = now.Add(Step)
	}
	held := heap() - before
	runtime.KeepAlive(s)
	_, ss := s.Snapshot(all)
	if len(ss) != 3*orgs {
		t.Fatalf("%d series, want %d", len(ss), 3*orgs)
	}
	t.Logf("%d series of %d points: %.2f MB held (%.0f bytes per series)", len(ss), Points, float64(held)/1e6, float64(held)/float64(len(ss)))
	if limit := 6e6; float64(held) > limit {
		t.Errorf("the sampler holds %d bytes for %d series, more than %.0f", held, len(ss), limit)
	}
}

func heap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// BenchmarkSample: one step's sample of 1,000 orgs with one destination
// each (the registry's gather included), the sampler's whole CPU cost.
func BenchmarkSample(b *testing.B) {
	m := newMetrics()
	for i := range 1000 {
		org := fmt.Sprintf("org-%04d", i)
		m.ingest.WithLabelValues(org, "accepted").Add(float64(i))
		m.delivered.WithLabelValues(org, "lake", "events").Add(float64(i))
		m.oldest.WithLabelValues(org, "lake", "events").Set(float64(i))
	}
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s := New(m.reg, func() time.Time { return now })
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Sample(); err != nil {
			b.Fatal(err)
		}
		now = now.Add(Step)
	}
}

// TestConcurrentReaders: readers (the API's requests) snapshot while the
// sampler samples; run under -race by scripts/test.sh.
func TestConcurrentReaders(t *testing.T) {
	m := newMetrics()
	var mu sync.Mutex
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s := New(m.reg, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for range 50 {
				end, ss := s.Snapshot(all)
				for _, x := range ss {
					if len(x.Points) != Points || end.IsZero() {
						t.Errorf("%v: %d points at %v", x.Key, len(x.Points), end)
					}
				}
			}
		})
	}
	for i := range 50 {
		m.ingest.WithLabelValues("acme", "accepted").Add(float64(i))
		m.oldest.WithLabelValues("acme", "lake", "events").Set(float64(i))
		if err := s.Sample(); err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		now = now.Add(Step)
		mu.Unlock()
	}
	wg.Wait()
	if got := last(t, s, Key{Name: Accepted, Org: "acme"}, 1); !same(got, 4.9) {
		t.Errorf("accepted: %v, want [4.9] (49 in 10s)", got)
	}
}
