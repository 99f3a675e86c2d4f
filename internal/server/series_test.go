package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/series"
)

// TestSeriesHandler: GET /api/v1/series in process: the JSON shape, who
// reads which org, gzip, and that every org's answer, written once per
// sample, changes with the next sample.
func TestSeriesHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	ingest := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_ingest_events_total"}, []string{"org", "outcome"})
	reg.MustRegister(ingest)
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	smp := series.New(reg, clock)
	h := requireReader([]config.Secret{"admin-key-000000000001"},
		map[string]string{"acme-read-key-00000001": "acme", "globex-read-key-000001": "globex"}, seriesHandler(smp, clock))
	get := func(key, query string, gz bool) (int, http.Header, string) {
		t.Helper()
		req := httptest.NewRequest("GET", "/api/v1/series"+query, nil)
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		if gz {
			req.Header.Set("Accept-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		body := rec.Body.Bytes()
		if rec.Header().Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if body, err = io.ReadAll(zr); err != nil {
				t.Fatal(err)
			}
		}
		return rec.Code, rec.Header(), string(body)
	}
	type answer struct {
		Step   int       `json:"step_seconds"`
		End    time.Time `json:"end"`
		Series []struct {
			Name, Org string
			Points    []*float64
		}
	}
	decode := func(body string) answer {
		t.Helper()
		var a answer
		if err := json.Unmarshal([]byte(body), &a); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		return a
	}

	// Before the first sample: no series, end is now.
	if code, _, body := get("admin-key-000000000001", "", false); code != 200 || body != `{"step_seconds":10,"end":"2026-12-07T10:00:00Z","series":[]}`+"\n" {
		t.Errorf("before the first sample: %d %s", code, body)
	}
	for i := range 3 {
		ingest.WithLabelValues("acme", "accepted").Add(float64(10 * i))
		ingest.WithLabelValues("globex", "accepted").Add(float64(20 * i))
		if err := smp.Sample(); err != nil {
			t.Fatal(err)
		}
		now = now.Add(series.Step)
	}
	_, _, plain := get("admin-key-000000000001", "", false)
	code, hdr, zipped := get("admin-key-000000000001", "", true)
	if code != 200 || hdr.Get("Content-Encoding") != "gzip" || zipped != plain || hdr.Get("Content-Type") != "application/json" {
		t.Errorf("gzip: %d %v, same body %v", code, hdr, zipped == plain)
	}
	a := decode(plain)
	if a.Step != 10 || !a.End.Equal(time.Date(2026, 12, 7, 10, 0, 20, 0, time.UTC)) || len(a.Series) != 2 {
		t.Fatalf("every org: step %d, end %v, %d series", a.Step, a.End, len(a.Series))
	}
	for i, want := range []struct {
		org  string
		last [3]any // the newest three points
	}{{"acme", [3]any{nil, 1.0, 2.0}}, {"globex", [3]any{nil, 2.0, 4.0}}} {
		s := a.Series[i]
		if s.Name != series.Accepted || s.Org != want.org || len(s.Points) != series.Points {
			t.Fatalf("series %d: %s %s, %d points", i, s.Name, s.Org, len(s.Points))
		}
		for j, p := range s.Points[series.Points-3:] {
			if (p == nil) != (want.last[j] == nil) || p != nil && *p != want.last[j] {
				t.Errorf("%s point %d: %v, want %v", want.org, j, p, want.last[j])
			}
		}
		if s.Points[0] != nil {
			t.Errorf("%s: the point an hour back is %v, want null", want.org, *s.Points[0])
		}
	}

	// The next sample changes every org's answer.
	ingest.WithLabelValues("acme", "accepted").Add(1000)
	if err := smp.Sample(); err != nil {
		t.Fatal(err)
	}
	_, _, after := get("admin-key-000000000001", "", true)
	if a := decode(after); after == plain || a.End.Sub(time.Date(2026, 12, 7, 10, 0, 30, 0, time.UTC)) != 0 ||
		*a.Series[0].Points[series.Points-1] != 100 {
		t.Errorf("after the next sample: %s", after[:min(len(after), 200)])
	}

	for _, c := range []struct {
		key, query string
		code       int
		orgs       string // the orgs of the answer's series
	}{
		{"admin-key-000000000001", "?org=globex", 200, "globex"},
		{"acme-read-key-00000001", "", 200, "acme"},
		{"acme-read-key-00000001", "?org=acme", 200, "acme"},
		{"acme-read-key-00000001", "?org=globex", 403, ""},
		{"globex-read-key-000001", "", 200, "globex"},
		{"", "", 401, ""},
		{"acme-write-key-0000001", "", 401, ""},
	} {
		code, _, body := get(c.key, c.query, true)
		var orgs []string
		if code == 200 {
			for _, s := range decode(body).Series {
				orgs = append(orgs, s.Org)
			}
		}
		if code != c.code || strings.Join(orgs, ",") != c.orgs {
			t.Errorf("key %q %s: %d, orgs %v; want %d, %s", c.key, c.query, code, orgs, c.code, c.orgs)
		}
	}
}

// BenchmarkSeriesHandler: every org's answer for 1,000 orgs with one
// destination each (3,000 series of 360 points, gzip), written after a
// new sample and served again from the cache within a step.
func BenchmarkSeriesHandler(b *testing.B) {
	reg := prometheus.NewRegistry()
	ingest := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_ingest_events_total"}, []string{"org", "outcome"})
	delivered := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_delivered_events_total"}, []string{"org", "destination", "table"})
	oldest := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tidemark_oldest_undelivered_event_age_seconds"}, []string{"org", "destination", "table"})
	reg.MustRegister(ingest, delivered, oldest)
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	smp := series.New(reg, clock)
	for step := range series.Points {
		for i := range 1000 {
			org := "org-" + strconv.Itoa(i)
			ingest.WithLabelValues(org, "accepted").Add(float64(step * i % 997))
			delivered.WithLabelValues(org, "lake", "events").Add(float64(step * i % 991))
			oldest.WithLabelValues(org, "lake", "events").Set(float64(step%60) + float64(i)/1000)
		}
		smp.Sample()
		now = now.Add(series.Step)
	}
	h := requireReader([]config.Secret{"admin-key-000000000001"}, nil, seriesHandler(smp, clock))
	serve := func(b *testing.B) int {
		req := httptest.NewRequest("GET", "/api/v1/series", nil)
		req.Header.Set("Authorization", "Bearer admin-key-000000000001")
		req.Header.Set("Accept-Encoding", "gzip")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
		return rec.Body.Len()
	}
	b.Run("new-sample", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			smp.Sample()
			now = now.Add(series.Step)
			b.StartTimer()
			b.ReportMetric(float64(serve(b)), "gzip-bytes")
		}
	})
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			serve(b)
		}
	})
}
