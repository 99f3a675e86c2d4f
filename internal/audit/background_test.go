package audit_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/destination/blob"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/format"
)

// hanging is a destination that accepts the audit's first request and
// never answers it, until the request's context ends.
type hanging struct {
	audit.Destination
	asked chan struct{}
}

func (h *hanging) Owned(ctx context.Context) error {
	select {
	case h.asked <- struct{}{}:
	default:
	}
	<-ctx.Done()
	return ctx.Err()
}

// TestBackgroundHungDestination: a destination that hangs fails its audit
// after audit.TargetTimeout and the next destination is still audited in
// the same run, instead of every audit waiting on the hung one.
func TestBackgroundHungDestination(t *testing.T) {
	dir := t.TempDir()
	// The log and the lake are opened outside the bubble: their background
	// goroutines are not the bubble's. Both are empty: the audit of the
	// healthy destination reads no Parquet (pooled zstd decoders would be
	// bound to the bubble).
	lg, err := eventlog.Open(filepath.Join(dir, "data"), eventlog.Options{Partitions: parts, Registerer: prometheus.NewRegistry(), Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	lake, err := blob.Open(t.Context(), "file://"+filepath.Join(dir, "lake"), format.Codec{})
	if err != nil {
		t.Fatal(err)
	}
	defer lake.Close()

	synctest.Test(t, func(t *testing.T) {
		hung := &hanging{Destination: lake, asked: make(chan struct{}, 1)}
		const interval = 5 * time.Minute
		bg := audit.NewBackground(audit.Options{Log: lg, DedupeWindow: cfg.DedupeWindow},
			[]audit.Target{
				{Org: "a", Name: "hung", Dest: hung, SLA: time.Minute},
				{Org: "a", Name: "lake", Dest: lake, SLA: time.Minute},
			}, interval, 6*time.Hour, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- bg.Run(ctx) }()

		<-hung.asked
		t0 := time.Now()
		synctest.Wait() // the hung audit waits on its deadline: the bubble's clock jumps to it
		if res, _ := bg.Last(1); res != nil {
			t.Fatalf("healthy destination audited while the hung one was being audited")
		}
		if at := bg.Auditing(0); at == nil || !at.Equal(t0.UTC()) {
			t.Errorf("hung destination: auditing since %v, want %v (its audit is in progress)", at, t0.UTC())
		}
		if at := bg.Auditing(1); at != nil {
			t.Errorf("healthy destination: auditing since %v while it waits its turn", at)
		}
		time.Sleep(audit.TargetTimeout(interval) - time.Since(t0) + time.Second)
		synctest.Wait()
		if res, errp := bg.Last(1); res == nil || errp != nil {
			t.Fatalf("healthy destination not audited %v after the hung one started (result %v, error %v)", time.Since(t0), res, errp)
		}
		res, errp := bg.Last(0)
		if res != nil || errp == nil || !strings.Contains(*errp, "deadline exceeded") {
			t.Fatalf("hung destination: result %v, error %v; want no result and a deadline error", res, errp)
		}
		if bg.LastRunAt() != nil {
			t.Errorf("a run with a failed destination counted as complete at %v", bg.LastRunAt())
		}
		for i := range 2 {
			if at := bg.Auditing(i); at != nil {
				t.Errorf("destination %d: auditing since %v after the run", i, at)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
