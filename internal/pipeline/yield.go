package pipeline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Yield makes the batch pipeline give the CPU to ingest during a burst.
//
// The log is the buffer (DESIGN.md): what the sessionizer has not read yet is
// durable and its delivery has the whole freshness SLA of its events
// (flush age + grace) to happen, while a client waiting for an acknowledgement
// holds its events in memory and retries or drops them. So while requests
// queue at the collector, each sessionizer turn (and through it the
// transports' and the state store's work, which follow the sessionizer's
// output) is followed by a pause that keeps the sessionizer busy at most
// Share of the time. Pausing stops as soon as the oldest unprocessed record
// is MaxLag old: past that the pipeline competes for the CPU as it does
// without Yield, so yielding adds at most MaxLag (and a pause) to any
// record's delay. A load above what the pipeline sustains even then builds
// a backlog either way; the lag metrics show it.
//
// Pauses change only when the sessionizer runs, never what it computes: the
// outputs are a function of the log alone.
type Yield struct {
	// Busy reports whether ingest is saturated now (requests queueing).
	Busy func() bool
	// Lag is the age of the oldest log record not yet sessionized, 0 when
	// caught up.
	Lag func() time.Duration
	// MaxLag ends pausing; 0 or less disables Yield.
	MaxLag time.Duration
	// Share is the fraction of the time the sessionizer may work while
	// ingest is busy, in (0, 1].
	Share float64

	mu     sync.Mutex
	lagAt  time.Time     // when lag was last computed
	lag    time.Duration // cached: Lag scans the log
	paused atomic.Int64  // total pause, ns
}

// lagRefresh bounds how often Lag is computed.
const lagRefresh = 100 * time.Millisecond

// maxPause bounds one pause, so that a long chunk cannot stall the
// sessionizer for long after the burst ends.
const maxPause = time.Second

// pause returns how long to wait after a turn of the given duration.
func (y *Yield) pause(worked time.Duration) time.Duration {
	if y == nil || y.MaxLag <= 0 || y.Share <= 0 || y.Share >= 1 || !y.Busy() {
		return 0
	}
	y.mu.Lock()
	if now := time.Now(); now.Sub(y.lagAt) >= lagRefresh {
		y.lag, y.lagAt = y.Lag(), now
	}
	lag := y.lag
	y.mu.Unlock()
	if lag >= y.MaxLag {
		return 0
	}
	return min(time.Duration(float64(worked)*(1-y.Share)/y.Share), maxPause)
}

// Pause waits after a turn that took worked, if ingest is busy and the
// backlog is young; it returns early when ctx ends.
func (y *Yield) Pause(ctx context.Context, worked time.Duration) {
	d := y.pause(worked)
	if d <= 0 {
		return
	}
	start := time.Now()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	y.paused.Add(int64(time.Since(start)))
}

// Paused is the total time spent pausing.
func (y *Yield) Paused() time.Duration {
	if y == nil {
		return 0
	}
	return time.Duration(y.paused.Load())
}
