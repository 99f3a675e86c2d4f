package server

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestSuperviseRestartsFailedStages: a stage that panics, then errors, is
// restarted each time and keeps running; shutdown ends it without an error.
func TestSuperviseRestartsFailedStages(t *testing.T) {
	restarts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "x"}, []string{"stage"})
	var calls atomic.Int32
	running := make(chan struct{})
	stage := func(ctx context.Context) error {
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
}
