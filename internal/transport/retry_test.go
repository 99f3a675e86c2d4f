package transport_test

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/blob"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/transport"
)

// flaky wraps a real destination and fails its first probes and writes, the
// way a destination that is down for a while does.
type flaky struct {
	destination.Destination
	failProbes, failWrites atomic.Int32
	probes, writes         atomic.Int32
	down                   atomic.Bool // fail everything while set
}

var errDown = errors.New("destination down (test)")

func (f *flaky) Probe(ctx context.Context) error {
	f.probes.Add(1)
	if f.down.Load() || f.failProbes.Add(-1) >= 0 {
		return errDown
	}
	return nil
}

func (f *flaky) Write(ctx context.Context, b *destination.Batch) error {
	f.writes.Add(1)
	if f.down.Load() || f.failWrites.Add(-1) >= 0 {
		return errDown
	}
	return f.Destination.Write(ctx, b)
}

// TestFailingDestinationIsHeldAndRetried: a destination that fails its probe
// and its first writes gets every event once it recovers, exactly once, and is
// reported down meanwhile.
func TestFailingDestinationIsHeldAndRetried(t *testing.T) {
	// On synctest's clock: the backoff waits (up to a minute) pass as soon
	// as everything else is idle, and the polls below wait no wall time.
	synctest.Test(t, func(t *testing.T) {
		dir, recs, l, sz, m := recordedPipeline(t)
		bd, err := blob.Open(t.Context(), "file://"+filepath.Join(dir, "lake"), format.Default)
		if err != nil {
			t.Fatal(err)
		}
		f := &flaky{Destination: bd}
		f.failProbes.Store(2)
		f.failWrites.Store(3)
		f.down.Store(true) // down from the start, until the age metric shows it
		var permanentSeen atomic.Int32
		tr := transport.New(transport.Options{Org: "a", Name: "lake", Dest: f, Flush: dests[0].flush, Log: l, Outputs: sz, Metrics: m,
			Logger: slog.Default(), Permanent: func(err error) bool { permanentSeen.Add(1); return false }})
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 2)
		go func() { done <- sz.Run(ctx) }()
		go func() { done <- tr.Run(ctx) }()

		// While it is down, the oldest undelivered event ages (the recorded log's
		// times are in the past, so it is already old).
		downSince := time.Now()
		for tr.OldestPending() == 0 {
			if time.Since(downSince) > time.Minute {
				t.Fatal("oldest pending stays 0 while the destination is down")
			}
			time.Sleep(10 * time.Millisecond)
		}
		f.down.Store(false)

		deadline := time.Now().Add(2 * time.Minute)
		for {
			all := true
			for p := range parts {
				if prog, _ := tr.Progress(p); sz.Cursor(p) < l.LastOffset(p) || prog < sz.NextSeq(p)-1 {
					all = false
				}
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not delivered after the destination recovered (probes %d, writes %d)", f.probes.Load(), f.writes.Load())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if o := tr.OldestPending(); o != 0 {
			t.Errorf("oldest pending after full delivery = %d, want 0", o)
		}
		cancel()
		<-done
		<-done
		if f.probes.Load() < 3 || f.writes.Load() < 4 || permanentSeen.Load() < 5 {
			t.Fatalf("probes %d, writes %d, failures classified %d: the failures were not retried", f.probes.Load(), f.writes.Load(), permanentSeen.Load())
		}
		// Exactly once: every org-a event of the recorded log, once.
		deliveredOnce(t, bd, recs, "a")
	})
}

// slowProbe is a real destination whose probe takes a minute, as a
// PostgreSQL destination's does while it upgrades a large table's index.
type slowProbe struct {
	destination.Destination
	probes atomic.Int32
}

func (s *slowProbe) Probe(ctx context.Context) error {
	s.probes.Add(1)
	select {
	case <-time.After(time.Minute):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// boundedSlowProbe says its probe may take ten minutes (transport.ProbeBounder).
type boundedSlowProbe struct{ *slowProbe }

func (boundedSlowProbe) ProbeBound() time.Duration { return 10 * time.Minute }

// TestProbeBound: a probe that needs longer than the default 30 s succeeds
// at its first attempt when the destination says how long it may take, and
// everything is delivered exactly once; without that, every attempt is cut
// at 30 s and reported, and nothing is written.
func TestProbeBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir, recs, l, sz, m := recordedPipeline(t)
		bd, err := blob.Open(t.Context(), "file://"+filepath.Join(dir, "lake"), format.Default)
		if err != nil {
			t.Fatal(err)
		}
		unbounded := &slowProbe{Destination: bd}
		bounded := boundedSlowProbe{&slowProbe{Destination: bd}}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		done := make(chan error, 3)
		go func() { done <- sz.Run(ctx) }()
		tu := transport.New(transport.Options{Org: "a", Name: "slow", Dest: unbounded, Flush: dests[0].flush, Log: l, Outputs: sz, Metrics: m, Logger: slog.Default()})
		go func() { done <- tu.Run(ctx) }()
		tb := transport.New(transport.Options{Org: "a", Name: "lake", Dest: bounded, Flush: dests[0].flush, Log: l, Outputs: sz, Metrics: m, Logger: slog.Default()})
		go func() { done <- tb.Run(ctx) }()

		deadline := time.Now().Add(5 * time.Minute)
		for {
			all := true
			for p := range parts {
				if prog, _ := tb.Progress(p); sz.Cursor(p) < l.LastOffset(p) || prog < sz.NextSeq(p)-1 {
					all = false
				}
			}
			if all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("not delivered 5 minutes after start with a probe bound of 10 minutes (probes %d)", bounded.probes.Load())
			}
			time.Sleep(100 * time.Millisecond)
		}
		if n := bounded.probes.Load(); n != 1 {
			t.Errorf("the destination with a 10-minute probe bound was probed %d times, want once", n)
		}
		if n := unbounded.probes.Load(); n < 2 {
			t.Errorf("the destination without a bound was probed %d times in 5 minutes, want every attempt cut at 30 s and retried", n)
		}
		if st := tu.Status(); !strings.Contains(st.LastError, "deadline exceeded") || st.LastErrorOp != "probe destination" {
			t.Errorf("the unbounded slow probe's status: %q (%s), want the probe's deadline", st.LastError, st.LastErrorOp)
		}
		cancel()
		for range 3 {
			<-done
		}
		deliveredOnce(t, bd, recs, "a")
	})
}
