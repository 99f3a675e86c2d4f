package server

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSuperviseRestartsFailedStages: a stage that panics, then errors, is
// restarted each time (after 1s, then 2s: the backoff, on synctest's clock)
// and keeps running; shutdown ends it without an error.
func TestSuperviseRestartsFailedStages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		restarts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"stage"})
		var calls atomic.Int32
		running := make(chan struct{})
		start := time.Now()
		var at []time.Duration
		stage := func(ctx context.Context) error {
			at = append(at, time.Since(start))
			switch calls.Add(1) {
			case 1:
				panic("poison")
			case 2:
				return errors.New("broken")
			}
			close(running)
			<-ctx.Done()
			return nil
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- supervise(ctx, "test", stage, restarts, slog.Default()) }()
		select {
		case <-running:
		case <-time.After(30 * time.Second):
			t.Fatal("stage not restarted after a panic and an error")
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("supervise after shutdown: %v", err)
		}
		if calls.Load() != 3 {
			t.Fatalf("%d runs, want 3", calls.Load())
		}
		if len(at) != 3 || at[1] != time.Second || at[2] != 3*time.Second {
			t.Errorf("runs at %v, want 0s, 1s, 3s", at)
		}
		if n := testutil.ToFloat64(restarts.WithLabelValues("test")); n != 2 {
			t.Errorf("%v restarts counted, want 2", n)
		}
	})
}
