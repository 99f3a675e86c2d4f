package main

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/fault"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

const (
	seriesAdminKey  = "series-admin-key-0000001"
	globexWriteKey  = "globex-test-write-key-01"
	globexReadKey   = "globex-test-read-key-001"
	seriesStepCount = 360
)

// chartsConfig: orgs acme (a lake and webhook crm, whose receiver fails
// every request and dead-letters after 2s) and globex (a lake), each with
// a read key, an admin key, audited every second: a server on which every
// series of /api/v1/series and every metric family the dashboard and the
// alerts query appear.
func chartsConfig(t *testing.T, dir string, port int) string {
	r := newHookReceiver(t)
	r.setMode("500")
	org := func(id, write, read, extra string) string {
		return fmt.Sprintf("  - id: %s\n    write_keys: [%q]\n    read_keys: [%q]\n    destinations:\n"+
			"      - {name: lake, url: %q, flush: {max_events: 100, max_age: 500ms}}\n%s", id, write, read, "file://"+filepath.Join(dir, id), extra)
	}
	return orgsConfig(t, dir, port, fmt.Sprintf("audit: {interval: 1s, lookback: 2h}\nadmin_keys: [%q]\norgs:\n%s%s", seriesAdminKey,
		org("acme", testKey, testReadKey, webhookYAML("crm", r.srv.URL, "        timeout: 1s\n        retry_for: 2s\n")),
		org("globex", globexWriteKey, globexReadKey, "")))
}

// sendTracks posts n track events of org (its write key) in batches of 50.
func sendTracks(t *testing.T, addr, key, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i += 50 {
		var batch []map[string]any
		for j := i; j < min(i+50, n); j++ {
			batch = append(batch, map[string]any{"type": "track", "event": "Clicked", "messageId": fmt.Sprintf("%s-%05d", prefix, j),
				"anonymousId": fmt.Sprintf("%s-dev-%02d", prefix, j%20)})
		}
		body, _ := json.Marshal(map[string]any{"batch": batch})
		if code, resp := postAs(t, addr+"/v1/batch", key, body, false); code != 200 {
			t.Fatalf("batch of %s: %d %s", prefix, code, resp)
		}
	}
}

type seriesBody struct {
	StepSeconds int       `json:"step_seconds"`
	End         time.Time `json:"end"`
	Series      []struct {
		Name        string     `json:"name"`
		Org         string     `json:"org"`
		Destination string     `json:"destination"`
		Webhook     string     `json:"webhook"`
		Points      []*float64 `json:"points"`
	} `json:"series"`
}

// find returns the series name{org, dest-or-webhook} ("" matches a missing label).
func (b seriesBody) find(name, org, sub string) ([]*float64, bool) {
	for _, s := range b.Series {
		if s.Name == name && s.Org == org && s.Destination+s.Webhook == sub {
			return s.Points, true
		}
	}
	return nil, false
}

// total is what a rate series adds up to: the sum of rate × step.
func total(pts []*float64, step int) float64 {
	sum := 0.0
	for _, p := range pts {
		if p != nil {
			sum += *p * float64(step)
		}
	}
	return sum
}

func getSeries(t *testing.T, addr, key, query string) (int, string, seriesBody) {
	t.Helper()
	code, raw := getAuth(t, addr+"/api/v1/series"+query, "Bearer "+key)
	var b seriesBody
	if code == 200 {
		if err := json.Unmarshal([]byte(raw), &b); err != nil {
			t.Fatalf("series JSON: %v\n%s", err, tail(raw, 500))
		}
	}
	return code, raw, b
}

// TestSeriesAPI: GET /api/v1/series of the real binary, one of whose two
// lakes hangs. The accepted and delivered rates, summed over the hour, add
// up to the events sent and delivered (the sampler's rates are the
// counters' increase, and nothing is lost between samples); the stalled
// lake's oldest undelivered age is its events' age, the healthy one's
// small; the latency and the webhook's series are there; an admin key reads every org, an org's
// read key its own org only, any other key nothing.
func TestSeriesAPI(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	// globex's lake hangs on every write: a stalled destination.
	p := startProcEnv(t, chartsConfig(t, dir, port), port, []string{fault.Env + "=hang-destination=globex/lake"})
	const acmeN, globexN = 700, 300
	sendTracks(t, p.addr, testKey, "acme", acmeN)
	globexFrom := time.Now()
	sendTracks(t, p.addr, globexWriteKey, "globex", globexN)
	globexTo := time.Now()

	// Two samples after the last event was delivered, the rates have
	// counted every event.
	var b seriesBody
	probe.Until(t, 3*time.Minute, "the series to count every event sent and delivered", func() (bool, string) {
		var code int
		var raw string
		if code, raw, b = getSeries(t, p.addr, seriesAdminKey, ""); code != 200 {
			return false, fmt.Sprintf("%d %s", code, tail(raw, 300))
		}
		var state []string
		ok := true
		for _, c := range []struct {
			name, org, sub string
			want           int
		}{
			{"accepted_events_per_second", "acme", "", acmeN}, {"accepted_events_per_second", "globex", "", globexN},
			{"delivered_events_per_second", "acme", "lake", acmeN}, {"delivered_events_per_second", "globex", "lake", 0},
		} {
			pts, _ := b.find(c.name, c.org, c.sub)
			got := total(pts, b.StepSeconds)
			state = append(state, fmt.Sprintf("%s{%s,%s}=%.1f", c.name, c.org, c.sub, got))
			ok = ok && math.Abs(got-float64(c.want)) < 0.5
		}
		return ok, strings.Join(state, " ")
	})
	if b.StepSeconds != 10 || time.Since(b.End) > time.Minute || b.End.After(time.Now()) {
		t.Errorf("step_seconds %d, end %v (now %v)", b.StepSeconds, b.End, time.Now())
	}
	for _, s := range b.Series {
		if len(s.Points) != seriesStepCount {
			t.Errorf("%s{%s %s%s}: %d points, want %d", s.Name, s.Org, s.Destination, s.Webhook, len(s.Points), seriesStepCount)
		}
	}
	// The newest points are samples; those before the server started are null.
	for _, c := range [][3]string{
		{"oldest_undelivered_seconds", "acme", "lake"}, {"oldest_undelivered_seconds", "globex", "lake"},
		{"ingest_latency_p99_seconds", "", ""},
		{"webhook_lag_seconds", "acme", "crm"}, {"webhook_failures_per_second", "acme", "crm"}, {"webhook_dead_letters", "acme", "crm"},
	} {
		pts, ok := b.find(c[0], c[1], c[2])
		switch {
		case !ok:
			t.Errorf("no series %s{%s %s}", c[0], c[1], c[2])
		case pts[0] != nil:
			t.Errorf("%s{%s %s}: the point an hour before start is %v, want null", c[0], c[1], c[2], *pts[0])
		case c[0] != "ingest_latency_p99_seconds" && pts[len(pts)-1] == nil:
			t.Errorf("%s{%s %s}: the newest point is null", c[0], c[1], c[2])
		}
	}
	// The stalled lake's oldest undelivered event is as old as globex's
	// events at the newest sample (taken at end, or up to a second after
	// it on a busy machine); the healthy one's is young.
	if pts, _ := b.find("oldest_undelivered_seconds", "globex", "lake"); pts[len(pts)-1] != nil {
		age, lo, hi := *pts[len(pts)-1], b.End.Sub(globexTo).Seconds()-0.5, b.End.Sub(globexFrom).Seconds()+2
		t.Logf("stalled lake: oldest undelivered %.2fs at the newest sample, want %.2f-%.2fs", age, lo, hi)
		if age < lo || age > hi {
			t.Errorf("stalled lake: oldest undelivered %.2fs at %v, want %.2f-%.2fs (globex's events were sent %v-%v)",
				age, b.End, lo, hi, globexFrom, globexTo)
		}
	}
	if pts, _ := b.find("oldest_undelivered_seconds", "acme", "lake"); pts[len(pts)-1] != nil && *pts[len(pts)-1] > 5 {
		t.Errorf("healthy lake: oldest undelivered %.2fs", *pts[len(pts)-1])
	}
	// The latency of the steps with requests: a number of seconds.
	pts, _ := b.find("ingest_latency_p99_seconds", "", "")
	n := 0
	for _, v := range pts {
		if v != nil {
			if *v <= 0 || *v > 10 {
				t.Errorf("ingest p99 %v s", *v)
			}
			n++
		}
	}
	if n == 0 {
		t.Error("no sample of the ingest latency")
	}
	// The receiver fails every request: failures were counted, and every
	// acme event is a dead letter 2s after its arrival.
	probe.Until(t, 2*time.Minute, "the webhook's failures and dead letters in the series", func() (bool, string) {
		_, _, b = getSeries(t, p.addr, seriesAdminKey, "?org=acme")
		fails, _ := b.find("webhook_failures_per_second", "acme", "crm")
		dead, _ := b.find("webhook_dead_letters", "acme", "crm")
		var newest float64
		if len(dead) > 0 && dead[len(dead)-1] != nil {
			newest = *dead[len(dead)-1]
		}
		return total(fails, b.StepSeconds) > 0 && newest == acmeN, fmt.Sprintf("failures %.0f, dead letters %v", total(fails, b.StepSeconds), newest)
	})
	for _, s := range b.Series {
		if s.Org != "acme" && s.Org != "" {
			t.Errorf("?org=acme: a series of org %q", s.Org)
		}
	}

	// An org's read key: its own org only, whatever it asks for.
	for _, c := range []struct{ key, org, other string }{{testReadKey, "acme", "globex"}, {globexReadKey, "globex", "acme"}} {
		code, raw, b := getSeries(t, p.addr, c.key, "")
		if code != 200 || len(b.Series) == 0 {
			t.Errorf("%s's read key: %d, %d series", c.org, code, len(b.Series))
		}
		if strings.Contains(raw, c.other) {
			t.Errorf("%s's read key reads %q's series: %s", c.org, c.other, tail(raw, 300))
		}
		if _, ok := b.find("accepted_events_per_second", c.org, ""); !ok {
			t.Errorf("%s's read key: no accepted series of its org", c.org)
		}
		if code, _, _ := getSeries(t, p.addr, c.key, "?org="+c.org); code != 200 {
			t.Errorf("%s's read key, ?org=%s: %d", c.org, c.org, code)
		}
		if code, raw, _ := getSeries(t, p.addr, c.key, "?org="+c.other); code != 403 || strings.Contains(raw, "accepted_events") {
			t.Errorf("%s's read key, ?org=%s: %d %s, want 403", c.org, c.other, code, tail(raw, 200))
		}
	}
	// No key, a wrong key, a write key: refused.
	for _, key := range []string{"", "not-a-key-at-all-000000", testKey} {
		auth := "Bearer " + key
		if key == "" {
			auth = ""
		}
		if code, raw := getAuth(t, p.addr+"/api/v1/series", auth); code != 401 || strings.Contains(raw, "acme") {
			t.Errorf("key %q: %d %s, want 401", key, code, tail(raw, 200))
		}
	}
}
