package eventlog

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/internal/event"
)

// retentionInterval is how often retention runs.
const retentionInterval = time.Minute

// Producer is what retention asks the sessionizers (*pipeline.Sessionizers):
// how far they have read the log and numbered their outputs.
type Producer interface {
	NextSeq(p int) uint64 // outputs 1..NextSeq-1 exist
	Cursor(p int) uint64  // last log offset processed
}

// Delivery is one destination's progress through the outputs
// (*transport.Transport): the last output item it committed.
type Delivery interface {
	Progress(p int) (uint64, error)
}

// Retention removes what no stage needs any more: the output items every
// destination has committed, and the log records older than Age that no
// stage still needs (invariant 6: nothing is deleted undelivered).
type Retention struct {
	Log        *Log
	Outputs    Producer
	Deliveries []Delivery
	// Hold, when not nil, is the streaming pipeline's floor: the lowest
	// offset of partition p a webhook still needs (false: none).
	Hold   func(p int) (uint64, bool)
	Age    time.Duration
	Now    func() time.Time
	Logger *slog.Logger
}

// Run applies Retain to every partition every minute until ctx ends.
func (r *Retention) Run(ctx context.Context) error {
	t := time.NewTicker(retentionInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			for p := range r.Log.Partitions() {
				if err := r.Retain(p, r.Now().Add(-r.Age).UnixNano()); err != nil {
					r.Logger.Error("retention failed", "partition", p, "err", err)
				}
			}
		}
	}
}

// Retain removes, in partition p, the output items every destination has
// handled and the log records older than cutoff that no stage still needs:
// not past the sessionizer's cursor, not referenced by an output item that
// some destination has not committed, and not at or after Hold(p).
func (r *Retention) Retain(p int, cutoff int64) error {
	lg, sz := r.Log, r.Outputs
	handled := sz.NextSeq(p) - 1
	for _, d := range r.Deliveries {
		prog, err := d.Progress(p)
		if err != nil {
			return err
		}
		handled = min(handled, prog)
	}
	if err := lg.st.DeleteOutputsThrough(p, handled); err != nil {
		return fmt.Errorf("delete delivered outputs: %w", err)
	}
	needed, err := lg.st.FirstEventOffset(p, handled+1, sz.NextSeq(p)-1)
	if err != nil {
		return err
	}
	if needed == 0 {
		needed = sz.Cursor(p) + 1
	}
	needed = min(needed, sz.Cursor(p)+1)
	if r.Hold != nil {
		if keep, ok := r.Hold(p); ok {
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
