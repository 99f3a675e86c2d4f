package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/fault"
	lg "github.com/tidemark/tidemark/internal/loadgen"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestFreshnessSLAPerTable, the stalled-destination alert with scaled-down
// timeouts (page_idle 20s, session_idle 30s, flush.max_age 500ms,
// freshness_grace 20s, ingest.priority_lag 2s: a tenth of the events SLA,
// against the defaults' sixth (30s of 3m), for a burst's catch-up on a
// machine shared by several builds): a destination whose writes hang crosses its events SLA
// (max_age + grace = 20.5s, not the session-long 50.5s) and the alert
// condition holds for its events table; the healthy destination beside it,
// under a burst that saturates ingest, never does on any table, and gets
// every acknowledged event exactly once. The status API and the audit use
// the same per-table SLAs.
func TestFreshnessSLAPerTable(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	cfg := incidentConfig(t, dir, port, "file://"+filepath.Join(dir, "lake"), 20*time.Second, fmt.Sprintf(`      - name: stuck
        url: file://%s
        flush: {max_age: 500ms}
        freshness_grace: 20s
`, filepath.Join(dir, "stuck")))
	raw, _ := os.ReadFile(cfg)
	raw = bytes.Replace(raw, []byte("page_idle: 2s"), []byte("page_idle: 20s"), 1)
	raw = bytes.Replace(raw, []byte("session_idle: 3s"), []byte("session_idle: 30s"), 1)
	raw = bytes.Replace(raw, []byte("audit: {"), []byte("ingest: {priority_lag: 2s}\naudit: {"), 1)
	if err := os.WriteFile(cfg, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProcEnv(t, cfg, port, []string{fault.Env + "=hang-destination=acme/stuck"})
	sample := func(dest, table string) (age, sla float64, ok bool) {
		labels := fmt.Sprintf(`{destination=%q,org="acme",table=%q}`, dest, table)
		age, ok1 := p.metric("tidemark_oldest_undelivered_event_age_seconds" + labels)
		sla, ok2 := p.metric("tidemark_destination_freshness_sla_seconds" + labels)
		return age, sla, ok1 && ok2
	}
	for table, want := range map[string]float64{"events": 20.5, "pages": 40.5, "sessions": 50.5} {
		if _, sla, ok := sample("lake", table); !ok || sla != want {
			t.Fatalf("lake %s SLA %v (metric found: %v), want %vs", table, sla, ok, want)
		}
	}

	// Watch the healthy destination from the start of the burst to the end.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	maxAge := map[string]float64{}
	var stale []string
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			for _, table := range []string{"events", "pages", "sessions"} {
				age, sla, ok := sample("lake", table)
				mu.Lock()
				maxAge[table] = max(maxAge[table], age)
				if ok && age > sla {
					stale = append(stale, fmt.Sprintf("%s %.1fs > %.1fs", table, age, sla))
				}
				mu.Unlock()
			}
			select {
			case <-stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	acked := filepath.Join(dir, "acked")
	res, err := lg.Run(t.Context(), lg.Options{URL: p.addr, WriteKey: testKey, Connections: 16, BatchSize: 50,
		Duration: 3 * time.Second, Devices: 500, PageRatio: 0.2, AckedFile: acked}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if res.Acked == 0 || res.Failed != 0 {
		t.Fatalf("burst: %d acknowledged, %d failed", res.Acked, res.Failed)
	}
	burstEnd := time.Now()

	// The stuck destination: its events are overdue after 20.5s; the alert
	// condition (age above the table's SLA) holds for its events table.
	probe.Until(t, 90*time.Second, "stuck's events table past its SLA", func() (bool, string) {
		age, sla, ok := sample("stuck", "events")
		return ok && sla == 20.5 && age > sla, fmt.Sprintf("age=%v sla=%v", age, sla)
	})
	st := statusTables(t, p.addr)
	if ev := st["stuck"]["events"]; !ev.Stale || ev.FreshnessSLASeconds != 20.5 {
		t.Errorf("status API, stuck events: %+v; want stale with SLA 20.5s", ev)
	}
	if pg := st["stuck"]["pages"]; pg.FreshnessSLASeconds != 40.5 {
		t.Errorf("status API, stuck pages: %+v; want SLA 40.5s", pg)
	}
	if rep, _ := auditJSON(t, []string{"TIDEMARK_ADMIN_KEY=" + incidentAdminKey}, "--url", p.addr, "--from", "1h",
		"--destination", "lake"); rep.Results[0].SLASeconds != 20.5 {
		t.Errorf("audit SLA %vs, want the events SLA 20.5s", rep.Results[0].SLASeconds)
	}

	waitLakeExact(t, filepath.Join(dir, "lake"), readIDs(t, acked), 3*time.Minute)
	// The healthy destination's events were delivered; keep watching it a
	// while longer than its events SLA after the burst.
	if d := 25*time.Second - time.Since(burstEnd); d > 0 {
		time.Sleep(d) // the subject: the sampler above watches the running binary meanwhile
	}
	close(stop)
	wg.Wait()
	t.Logf("burst of %d events at %.0f/s; lake's oldest undelivered ages at most: %v", res.Acked, res.EventsPerSec, maxAge)
	if len(stale) > 0 {
		t.Errorf("the healthy destination passed its SLA %d times under the burst: %v", len(stale), stale[:min(len(stale), 5)])
	}
	p.stop()
}

type tableState struct {
	OldestUndeliveredAgeSeconds float64 `json:"oldest_undelivered_age_seconds"`
	FreshnessSLASeconds         float64 `json:"freshness_sla_seconds"`
	Stale                       bool    `json:"stale"`
}

// statusTables returns the status API's per-table freshness by destination.
func statusTables(t *testing.T, addr string) map[string]map[string]tableState {
	t.Helper()
	var st struct {
		Destinations []struct {
			Name   string                `json:"name"`
			Tables map[string]tableState `json:"tables"`
		} `json:"destinations"`
	}
	if err := probe.JSON(t.Context(), addr+"/api/v1/status", incidentAdminKey, &st); err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string]tableState{}
	for _, d := range st.Destinations {
		out[d.Name] = d.Tables
	}
	return out
}
