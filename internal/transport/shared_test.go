package transport_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tidemark/tidemark/internal/destination/blob"
	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/pipeline"
	"github.com/tidemark/tidemark/internal/transport"
)

// sharing are the determinism test's destinations plus a second one of org
// a with the lake's flush rules, in another format: the two cut the same
// batches, org b's destination cuts its own.
var sharing = append(append([]dest{}, dests...), dest{"a", "copy", "ndjson", dests[0].flush})

// TestSharedBatchesAreByteIdentical: destinations that share their batches
// write the same keys and bytes as when each builds its own, straight
// through and interrupted at random moments; and they really share: every
// batch of org a's group is built once and taken by the other destination.
func TestSharedBatchesAreByteIdentical(t *testing.T) {
	recs := recordedLog()
	own := t.TempDir()
	appendLog(t, own, recs)
	if !runDests(t, own, 0, nil, sharing, nil) {
		t.Fatal("pipeline did not finish")
	}
	want := treeOf(t, own, sharing)
	if len(want) < 10 {
		t.Fatalf("only %d files written", len(want))
	}

	dir := t.TempDir()
	appendLog(t, dir, recs)
	// Room for every batch, so none is dropped before the other takes it.
	shared := transport.NewShared(1 << 20)
	start := time.Now()
	if !runDests(t, dir, 0, nil, sharing, shared) {
		t.Fatal("pipeline did not finish")
	}
	took := time.Since(start)
	sameTree(t, "shared", want, treeOf(t, dir, sharing))
	built, taken := shared.Counts()
	if built == 0 || taken != built {
		t.Errorf("shared: %d batches built for the group, %d taken by the other destination; want every one taken", built, taken)
	}
	t.Logf("shared: %d batches built once for two destinations", built)

	dir = t.TempDir()
	appendLog(t, dir, recs)
	scale := max(1, float64(took)/float64(2*time.Second))
	for i := 0; ; i++ {
		if i == maxInterruptions {
			t.Fatalf("pipeline did not finish after %d interruptions", i)
		}
		window := time.Duration(scale*float64(time.Duration(5+i%60)*time.Millisecond)) << (i / 20)
		if runDests(t, dir, window, nil, sharing, transport.NewShared(0)) {
			t.Logf("interrupted: finished after %d interruptions", i)
			break
		}
	}
	sameTree(t, "shared, interrupted", want, treeOf(t, dir, sharing))
}

// TestSharedDestinationDownDoesNotStallOther: of two destinations sharing
// their batches, the one that is down holds nothing up: the other delivers
// everything meanwhile, and the first delivers everything once it is back,
// each exactly once.
func TestSharedDestinationDownDoesNotStallOther(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir, recs, l, sz, m := recordedPipeline(t)
		shared := transport.NewShared(0)
		var lakes []*blob.Blob
		var ts []*transport.Transport
		down := &flaky{}
		down.down.Store(true)
		for i, name := range []string{"down", "up"} {
			bd, err := blob.Open(t.Context(), "file://"+filepath.Join(dir, name), format.Default)
			if err != nil {
				t.Fatal(err)
			}
			defer bd.Close()
			lakes = append(lakes, bd)
			var d = &flaky{Destination: bd}
			if i == 0 {
				down.Destination, d = bd, down
			}
			ts = append(ts, transport.New(transport.Options{Org: "a", Name: name, Dest: d, Flush: dests[0].flush, Log: l, Outputs: sz,
				Metrics: m, Logger: slog.Default(), Shared: shared}))
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 3)
		go func() { done <- sz.Run(ctx) }()
		for _, tr := range ts {
			go func() { done <- tr.Run(ctx) }()
		}
		delivered := func(tr *transport.Transport) bool {
			for p := range parts {
				if prog, _ := tr.Progress(p); sz.Cursor(p) < l.LastOffset(p) || prog < sz.NextSeq(p)-1 {
					return false
				}
			}
			return true
		}
		waitFor := func(what string, tr *transport.Transport) {
			t.Helper()
			deadline := time.Now().Add(5 * time.Minute)
			for !delivered(tr) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: not delivered", what)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		waitFor("the destination that is up, while the other is down", ts[1])
		if delivered(ts[0]) {
			t.Fatal("the destination that is down delivered everything")
		}
		down.down.Store(false)
		waitFor("the destination that was down, once it is back", ts[0])
		cancel()
		for range 3 {
			<-done
		}
		for _, bd := range lakes {
			deliveredOnce(t, bd, recs, "a")
		}
	})
}

// recordedPipeline opens the pipeline over a new directory holding the
// recorded log; the log closes when the test ends.
func recordedPipeline(t *testing.T) (string, map[int][]event.Record, *eventlog.Log, *pipeline.Sessionizers, *transport.Metrics) {
	t.Helper()
	dir := t.TempDir()
	recs := recordedLog()
	appendLog(t, dir, recs)
	l, sz, m := openPipeline(t, dir)
	t.Cleanup(func() { l.Close() })
	return dir, recs, l, sz, m
}

// deliveredOnce checks that bd's committed batches hold every event of org
// in recs once, and nothing else.
func deliveredOnce(t *testing.T, bd *blob.Blob, recs map[int][]event.Record, org string) {
	t.Helper()
	want := map[string]bool{}
	for _, rs := range recs {
		for _, r := range rs {
			if r.Event.Org == org {
				want[r.Event.ID] = true
			}
		}
	}
	got := map[string]int{}
	for p := range parts {
		ms, err := bd.Manifests(t.Context(), p)
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range ms {
			ids, err := bd.ReadEventIDs(t.Context(), mf)
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range ids {
				got[id]++
			}
		}
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("event %s delivered %d times", id, got[id])
		}
	}
	if len(got) != len(want) {
		t.Errorf("delivered %d distinct events, want %d", len(got), len(want))
	}
}
