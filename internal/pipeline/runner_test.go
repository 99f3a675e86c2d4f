package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/sessionize"
	"github.com/tidemark/tidemark/internal/sessionize/sessionizetest"
)

// outputs reads partition p's whole output stream.
func outputs(t testing.TB, st *eventlog.State, p int) []sessionize.Output {
	t.Helper()
	var out []sessionize.Output
	var want uint64 = 1
	err := st.ScanOutputs(p, 0, 1<<62, func(seq uint64, o *sessionize.Output) error {
		if seq != want {
			return fmt.Errorf("output seq %d, want %d (gap)", seq, want)
		}
		want++
		out = append(out, *o)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGoldenOnPebble runs the sessionizer's golden files through the real log
// and the Pebble store, with chunk sizes that split the input at every point,
// both with a restart (reopen of the store, fresh sessionizer and device
// cache) between every chunk and without (one sessionizer and device cache
// across chunks, as Run): the outputs must equal the pure in-memory run's
// expected outputs.
func TestGoldenOnPebble(t *testing.T) {
	files, _ := filepath.Glob("../sessionize/testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		g := sessionizetest.LoadGolden(t, f)
		for _, chunk := range []uint64{1, 2, 3, 1000} {
			for _, restart := range []bool{true, false} {
				t.Run(fmt.Sprintf("%s/chunk=%d/restart=%v", filepath.Base(f), chunk, restart), func(t *testing.T) {
					dir := t.TempDir()
					l := openLog(t, dir)
					if err := l.AppendRecords(t.Context(), 0, g.Records); err != nil {
						t.Fatal(err)
					}
					// Without restarts, one sessionizer and its device cache
					// carry over from chunk to chunk, as in Run.
					var sz *sessionize.Sessionizer
					for {
						s, err := NewSessionizers(l, l.State(), g.Config, prometheus.NewRegistry(), slog.Default())
						if err != nil {
							t.Fatal(err)
						}
						s.perChunk = chunk
						h, err := l.State().SessionHeader(0)
						if err != nil {
							t.Fatal(err)
						}
						if restart || sz == nil {
							sz = sessionize.New(g.Config, nil, h.Watermark)
						}
						n, err := s.chunk(0, &h, sz)
						if err != nil {
							t.Fatal(err)
						}
						if n == 0 {
							break
						}
						if restart {
							// A fresh log handle and sessionizer from disk.
							l.Close()
							l = openLog(t, dir)
						}
					}
					got := sessionizetest.Render(outputs(t, l.State(), 0))
					l.Close()
					if got != g.Expected {
						t.Errorf("outputs differ from %s\n--- got\n%s--- want\n%s", f, got, g.Expected)
					}
				})
			}
		}
	}
}

func openLog(t testing.TB, dir string) *eventlog.Log {
	t.Helper()
	l, err := eventlog.Open(dir, eventlog.Options{Partitions: 2, Registerer: prometheus.NewRegistry(), Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestRunFollowsLog checks the running sessionizer picks up appends and ticks.
func TestRunFollowsLog(t *testing.T) {
	l := openLog(t, t.TempDir())
	defer l.Close()
	g := sessionizetest.LoadGolden(t, "../sessionize/testdata/basic.txt")
	s, err := NewSessionizers(l, l.State(), g.Config, prometheus.NewRegistry(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	if err := l.AppendRecords(ctx, 1, g.Records); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for s.Cursor(1) < uint64(len(g.Records)) {
		select {
		case <-s.Notify():
		case <-deadline:
			t.Fatalf("sessionizer stuck at cursor %d of %d", s.Cursor(1), len(g.Records))
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := sessionizetest.Render(outputs(t, l.State(), 1)); got != g.Expected {
		t.Errorf("got\n%s\nwant\n%s", got, g.Expected)
	}
}

// TestGapIsCrossed: after the log records a lost range (eventlog.SkipTo, as
// the start-up check does when the log lost its tail), the sessionizer
// passes the gap, processes every record after it, and numbers the outputs
// made after it from the gap's SeqFloor, so they never reuse the sequence
// numbers of batches committed before the loss.
func TestGapIsCrossed(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	g := sessionizetest.LoadGolden(t, "../sessionize/testdata/basic.txt")
	half := len(g.Records) / 2
	if err := l.AppendRecords(t.Context(), 1, g.Records[:half]); err != nil {
		t.Fatal(err)
	}
	s, err := NewSessionizers(l, l.State(), g.Config, prometheus.NewRegistry(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	s.perChunk = 3 // so that chunks end before, at and after the gap
	h, _ := l.State().SessionHeader(1)
	sz := sessionize.New(g.Config, nil, h.Watermark)
	run := func() {
		for {
			n, err := s.chunk(1, &h, sz)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return
			}
		}
	}
	run()
	before := h.NextSeq
	const floor = 1000
	gap, err := l.SkipTo(1, l.LastOffset(1)+50, floor)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.AppendRecords(t.Context(), 1, g.Records[half:]); err != nil {
		t.Fatal(err)
	}
	run()
	if want := gap.To + uint64(len(g.Records)-half); h.Cursor != want {
		t.Fatalf("cursor %d after the gap, want %d (every record after it)", h.Cursor, want)
	}
	var after int
	err = l.State().ScanOutputs(1, before, 1<<62, func(seq uint64, o *sessionize.Output) error {
		if seq < floor {
			t.Errorf("output %d made after the gap is numbered below its floor %d", seq, floor)
		}
		if o.Offset != 0 && o.Offset <= gap.To && o.Offset >= gap.From {
			t.Errorf("output %d refers to offset %d inside the gap", seq, o.Offset)
		}
		after++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if after == 0 {
		t.Fatal("no output after the gap")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The gap is durable: a reopened log appends after it.
	l = openLog(t, dir)
	defer l.Close()
	if gs := l.Gaps(1); len(gs) != 1 || gs[0] != gap {
		t.Fatalf("gaps after reopen: %+v, want [%+v]", gs, gap)
	}
}
