// Package probe is how tests observe a running pipeline: poll a condition
// until it holds, read a counter from a Prometheus registry or from the
// /metrics text of a running binary, read the JSON of an HTTP endpoint
// (the status API).
//
// It is for tests only: no production package may import it (see
// TestNotImportedByProduction). It is a package of its own, apart from
// testenv, so that in-process tests do not link the cloud SDKs testenv
// needs.
//
// Inside a testing/synctest bubble, Until and Poll sleep on the bubble's
// fake clock: they then wait for a timer of the code under test without
// wall-clock time passing.
package probe

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Poll intervals: the first check is immediate, then the pause doubles from
// minPause up to maxPause, so that a condition that holds soon is seen soon
// and an expensive one (reading a lake) is not run in a tight loop.
const (
	minPause = 5 * time.Millisecond
	maxPause = 200 * time.Millisecond
)

// Poll checks cond until it holds (true) or timeout passes (false).
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for pause := minPause; !cond(); pause = min(2*pause, maxPause) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
	return true
}

// Until checks cond until it holds, and fails t when timeout passes first,
// naming what it waited for and the state cond last reported.
func Until(t testing.TB, timeout time.Duration, what string, cond func() (ok bool, state string)) {
	t.Helper()
	var state string
	if !Poll(timeout, func() bool {
		var ok bool
		ok, state = cond()
		return ok
	}) {
		t.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, state)
	}
}

// Sample returns the value of one sample line of a Prometheus text
// exposition, e.g. `tidemark_delivered_events_total{destination="lake",org="acme",table="events"}`
// (labels as the exposition writes them: sorted by name), and whether the
// line is there.
func Sample(text, sample string) (float64, bool) {
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), sample+" ")
		if !ok {
			continue
		}
		v, _, _ = strings.Cut(v, " ") // an optional timestamp follows
		f, err := strconv.ParseFloat(v, 64)
		return f, err == nil
	}
	return 0, false
}

// Metric scrapes url (a /metrics endpoint) and returns the value of one
// sample line (see Sample); false when the scrape fails or the line is
// missing.
func Metric(url, sample string) (float64, bool) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var b strings.Builder
	if _, err := bufio.NewReader(resp.Body).WriteTo(&b); err != nil || resp.StatusCode != http.StatusOK {
		return 0, false
	}
	return Sample(b.String(), sample)
}

// Value returns the sum of the values (counter, gauge or untyped) of the
// series of metric family name in g whose labels include labels (nil: every
// series), and fails t when no series matches.
func Value(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	sum, n := 0.0, 0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + m.GetUntyped().GetValue()
			n++
		}
	}
	if n == 0 {
		t.Fatalf("no metric %s%v", name, labels)
	}
	return sum
}

// JSON GETs url with "Authorization: Bearer token" (none when token is
// empty) and decodes the 200 answer's JSON into v.
func JSON(ctx context.Context, url, token string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", req.URL.Path, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: decode: %w", req.URL.Path, err)
	}
	return nil
}
