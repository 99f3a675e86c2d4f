package main

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	lg "github.com/tidemark/tidemark/internal/loadgen"
	"github.com/tidemark/tidemark/internal/testenv"
)

// TestIngestFirstBurst: a burst from many connections saturates ingest, so
// the batch pipeline yields the CPU (ingest.priority_lag) and the log buffers
// the burst; every acknowledged event still reaches the lake exactly once,
// and the yielding is visible in the metrics. With the setting off the
// sessionizer never pauses.
func TestIngestFirstBurst(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lag   string
		yield bool
	}{{"on", "20s", true}, {"off", "0s", false}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			port := testenv.FreePort(t)
			cfg := testConfig(t, dir, port, "ingest:\n  priority_lag: "+tc.lag+"\n")
			p := startProc(t, cfg, port)
			acked := filepath.Join(dir, "acked")
			res, err := lg.Run(t.Context(), lg.Options{URL: p.addr, WriteKey: testKey, Connections: 32, BatchSize: 50,
				Duration: 3 * time.Second, Devices: 2000, AckedFile: acked}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if res.Acked == 0 || res.Failed != 0 {
				t.Fatalf("load: %d acknowledged, %d failed", res.Acked, res.Failed)
			}
			yielded, ok := p.metric("tidemark_sessionizer_yield_seconds_total")
			if !ok {
				t.Fatal("no tidemark_sessionizer_yield_seconds_total metric")
			}
			t.Logf("%d events acknowledged at %.0f events/s (ack p50 %v, p99 %v); sessionizer yielded %.2fs",
				res.Acked, res.EventsPerSec, res.Latency.P50, res.Latency.P99, yielded)
			if tc.yield && yielded <= 0 {
				t.Errorf("32 connections saturating ingest, but the sessionizer never yielded")
			}
			if !tc.yield && yielded != 0 {
				t.Errorf("priority_lag: 0s, but the sessionizer yielded %.2fs", yielded)
			}
			want := readIDs(t, acked)
			if int64(len(want)) != res.Acked {
				t.Fatalf("%d ids in %s, %d acknowledged", len(want), acked, res.Acked)
			}
			waitLakeExact(t, filepath.Join(dir, "lake"), want, 3*time.Minute)
			// Once the burst is over nothing is queueing: no more pauses.
			after, _ := p.metric("tidemark_sessionizer_yield_seconds_total")
			time.Sleep(2 * time.Second) // the subject: 2s of idle ingest without a single yield
			if later, _ := p.metric("tidemark_sessionizer_yield_seconds_total"); later != after {
				t.Errorf("sessionizer still yielding with ingest idle: %.2fs then %.2fs", after, later)
			}
			p.stop()
		})
	}
}

// readIDs reads a loadgen -acked-file: one messageId per line.
func readIDs(t testing.TB, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ids := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ids[sc.Text()] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}
