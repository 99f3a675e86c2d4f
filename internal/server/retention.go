package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/pipeline"
	"github.com/tidemark/tidemark/internal/transport"
)

// retentionInterval is how often retention runs.
const retentionInterval = time.Minute

// runRetention applies Retain every retentionInterval. hold, when not nil,
// is the streaming pipeline's floor: the lowest offset a webhook still needs.
func runRetention(ctx context.Context, lg *eventlog.Log, sz *pipeline.Sessionizers, ts []*transport.Transport,
	hold func(p int) (uint64, bool), retention time.Duration, now func() time.Time, logger *slog.Logger) error {
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for p := range lg.Partitions() {
				if err := Retain(lg, sz, ts, hold, p, now().Add(-retention).UnixNano()); err != nil {
					logger.Error("retention failed", "partition", p, "err", err)
				}
			}
		}
	}
}

// Retain removes, in partition p, the output items every transport has
// handled and the log records older than cutoff that no stage still needs:
// not past the sessionizer's cursor, not referenced by an output item that
// some destination has not committed, and not at or after hold(p) (a webhook's
// cursor; nil or false: no hold).
func Retain(lg *eventlog.Log, sz *pipeline.Sessionizers, ts []*transport.Transport, hold func(p int) (uint64, bool), p int, cutoff int64) error {
	handled := sz.NextSeq(p) - 1
	for _, t := range ts {
		prog, err := t.Progress(p)
		if err != nil {
			return err
		}
		handled = min(handled, prog)
	}
	db := lg.DB()
	if err := pipeline.DeleteOutputsThrough(db, p, handled); err != nil {
		return fmt.Errorf("delete delivered outputs: %w", err)
	}
	needed, err := pipeline.FirstEventOffset(db, p, handled+1, sz.NextSeq(p)-1)
	if err != nil {
		return err
	}
	if needed == 0 {
		needed = sz.Cursor(p) + 1
	}
	needed = min(needed, sz.Cursor(p)+1)
	if hold != nil {
		if keep, ok := hold(p); ok {
			needed = min(needed, keep)
		}
	}
	first, err := lg.FirstOffset(p)
	if err != nil || first == 0 || first >= needed {
		return err
	}
	stop := errStop{}
	var before uint64 = first
	err = lg.Scan(p, first, needed-1, func(off uint64, val []byte) error {
		r, err := event.DecodeMeta(val)
		if err != nil {
			return err
		}
		if r.Time >= cutoff {
			return stop
		}
		before = off + 1
		return nil
	})
	if err != nil && err != error(stop) {
		return err
	}
	if before > first {
		return lg.DeleteBefore(p, before)
	}
	return nil
}

type errStop struct{}

func (errStop) Error() string { return "stop" }
