package probe

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

const exposition = `# HELP tidemark_delivered_events_total Events delivered.
# TYPE tidemark_delivered_events_total counter
tidemark_delivered_events_total{destination="lake",org="acme",table="events"} 1234
tidemark_delivered_events_total{destination="lake",org="acme",table="pages"} 5
tidemark_up 1 1700000000000
tidemark_age_seconds 2.5e-01
`

func TestSample(t *testing.T) {
	for _, tc := range []struct {
		sample string
		want   float64
		ok     bool
	}{
		{`tidemark_delivered_events_total{destination="lake",org="acme",table="events"}`, 1234, true},
		{`tidemark_delivered_events_total{destination="lake",org="acme",table="pages"}`, 5, true},
		{`tidemark_delivered_events_total{destination="lake",org="acme",table="sessions"}`, 0, false},
		{`tidemark_delivered_events_total`, 0, false}, // a family is not a sample
		{`tidemark_up`, 1, true}, // the timestamp is not the value
		{`tidemark_age_seconds`, 0.25, true},
		{`tidemark_age`, 0, false}, // a prefix of a name is not the name
	} {
		if got, ok := Sample(exposition, tc.sample); got != tc.want || ok != tc.ok {
			t.Errorf("Sample(%s) = %v, %v; want %v, %v", tc.sample, got, ok, tc.want, tc.ok)
		}
	}
}

func TestMetricScrapes(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Write([]byte(exposition))
	}))
	defer srv.Close()
	if v, ok := Metric(srv.URL+"/metrics", "tidemark_up"); v != 1 || !ok {
		t.Errorf("Metric = %v, %v; want 1, true", v, ok)
	}
	if _, ok := Metric(srv.URL+"/other", "tidemark_up"); ok {
		t.Error("Metric of a 404 answer found a sample")
	}
}

func TestValue(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x_total", Help: "x"}, []string{"org", "outcome"})
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "y", Help: "y"})
	reg.MustRegister(c, g)
	c.WithLabelValues("a", "ok").Add(3)
	c.WithLabelValues("a", "bad").Add(4)
	c.WithLabelValues("b", "ok").Add(5)
	g.Set(7)
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"x_total", nil, 12},
		{"x_total", map[string]string{"org": "a"}, 7},
		{"x_total", map[string]string{"org": "a", "outcome": "ok"}, 3},
		{"y", nil, 7},
	} {
		if got := Value(t, reg, tc.name, tc.labels); got != tc.want {
			t.Errorf("Value(%s%v) = %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	for _, tc := range []struct {
		name   string
		labels map[string]string
	}{{"z_total", nil}, {"x_total", map[string]string{"org": "c"}}} {
		ft := &fatalT{TB: t}
		func() {
			defer func() { recover() }()
			Value(ft, reg, tc.name, tc.labels)
		}()
		if !ft.failed {
			t.Errorf("Value(%s%v) of no series did not fail the test", tc.name, tc.labels)
		}
	}
}

// fatalT records a Fatalf instead of failing the test, and panics to end
// the helper that called it.
type fatalT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fatalT) Helper() {}
func (f *fatalT) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	panic("fatal")
}

// TestPollOnFakeClock: in a synctest bubble Poll waits on the bubble's
// clock, so a condition that holds after a minute holds at once in wall
// time, and one that never holds gives up exactly at the timeout.
func TestPollOnFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		fired := make(chan struct{})
		time.AfterFunc(time.Minute, func() { close(fired) })
		held := Poll(2*time.Minute, func() bool {
			select {
			case <-fired:
				return true
			default:
				return false
			}
		})
		if !held || time.Since(start) < time.Minute || time.Since(start) > time.Minute+maxPause {
			t.Errorf("Poll = %v after %v, want true after 1m (+ at most one pause)", held, time.Since(start))
		}
		start = time.Now()
		if Poll(time.Minute, func() bool { return false }) {
			t.Error("Poll of a false condition = true")
		}
		if d := time.Since(start); d < time.Minute || d > time.Minute+maxPause {
			t.Errorf("Poll of a false condition gave up after %v, want 1m", d)
		}
	})
}

func TestUntilNamesTheLastState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ft := &fatalT{TB: t}
		func() {
			defer func() { recover() }()
			n := 0
			Until(ft, time.Second, "the answer", func() (bool, string) { n++; return false, fmt.Sprintf("tries=%d", n) })
		}()
		if !strings.Contains(ft.msg, "waiting for the answer; last state: tries=") {
			t.Errorf("Until failed with %q", ft.msg)
		}
		Until(t, time.Second, "a condition that holds", func() (bool, string) { return true, "" })
	})
}

func TestJSON(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		w.Write([]byte(`{"destinations":[{"name":"lake"}]}`))
	}))
	defer srv.Close()
	var st struct {
		Destinations []struct{ Name string } `json:"destinations"`
	}
	if err := JSON(t.Context(), srv.URL, "k", &st); err != nil || len(st.Destinations) != 1 || st.Destinations[0].Name != "lake" {
		t.Errorf("JSON = %v, %+v", err, st)
	}
	if err := JSON(context.Background(), srv.URL, "", &st); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("JSON without the key: %v, want the 401", err)
	}
}
