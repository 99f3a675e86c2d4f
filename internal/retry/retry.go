package retry

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Policy is how Do waits between attempts and when it gives up.
type Policy struct {
	// Initial is the backoff delay after the first failed attempt; it
	// doubles per attempt up to Max.
	Initial, Max time.Duration
	// Jitter makes a random half of each backoff delay jitter: the wait
	// after attempt n is in [d/2, d] for the delay d of n.
	Jitter bool
	// Rand returns a random number in [0, n) for the jitter; nil uses
	// math/rand/v2 (a caller with its own deterministic source sets it).
	Rand func(n int64) int64
	// Attempts bounds the attempts; 0 means no bound (until success, a
	// Stop error or the end of ctx).
	Attempts int
	// HintAtLeast makes a server's Retry-After a lower bound of the wait
	// (the backoff still applies when it is longer); otherwise the hint
	// replaces the backoff delay.
	HintAtLeast bool
	// MaxHint caps a server's Retry-After; 0 leaves it uncapped.
	MaxHint time.Duration
	// Failed, when set, is called after each failed attempt that Do will
	// retry, before the wait: it logs and counts, and may change the wait
	// (f.Wait, f.Slowest) or give up (f.Stop).
	Failed func(f *Failure)
}

// Failure is a failed attempt that Do is about to retry.
type Failure struct {
	Attempt int           // 1 for the first attempt
	Err     error         // what the attempt returned
	Wait    time.Duration // the wait before the next attempt; Failed may change it

	p       *Policy
	slowest *bool
	stop    bool
}

// Stop makes Do return f.Err now, without another attempt.
func (f *Failure) Stop() { f.stop = true }

// Slowest sets this wait and every later one of this Do to the backoff's
// longest (Max, with jitter), for errors that retrying soon will not fix.
func (f *Failure) Slowest() {
	*f.slowest = true
	f.Wait = f.p.wait(f.Attempt, f.Err, true)
}

// Do calls op with attempt = 1, 2, ... until it returns nil (Do returns
// nil), returns an error marked with Stop (Do returns the error it wraps),
// Policy.Attempts attempts failed or Failed gave up (Do returns the last
// error), or ctx ends (Do returns ctx.Err()). An error returned while ctx
// is done counts as the end of ctx, not as a failure.
func Do(ctx context.Context, p Policy, op func(attempt int) error) error {
	slowest := false
	for attempt := 1; ; attempt++ {
		err := op(attempt)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var s *stopError
		if errors.As(err, &s) {
			return s.err
		}
		if p.Attempts > 0 && attempt >= p.Attempts {
			return err
		}
		f := Failure{Attempt: attempt, Err: err, p: &p, slowest: &slowest}
		f.Wait = p.wait(attempt, err, slowest)
		if p.Failed != nil {
			p.Failed(&f)
			if f.stop {
				return err
			}
		}
		if !Sleep(ctx, f.Wait) {
			return ctx.Err()
		}
	}
}

// Delay is the backoff delay after failed attempt n (n >= 1), before
// jitter: Initial doubled n-1 times, at most Max.
func (p *Policy) Delay(n int) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// wait is the wait after failed attempt n that returned err.
func (p *Policy) wait(n int, err error, slowest bool) time.Duration {
	d := p.Delay(n)
	if slowest {
		d = p.Max
	}
	if p.Jitter {
		r := p.Rand
		if r == nil {
			r = rand.Int64N
		}
		d = d/2 + time.Duration(r(int64(d/2)+1))
	}
	if h := Hint(err); h > 0 {
		if p.MaxHint > 0 {
			h = min(h, p.MaxHint)
		}
		if !p.HintAtLeast || h > d {
			d = h
		}
	}
	return d
}

// Hint returns the Retry-After that err carries (an error in its chain with
// a RetryAfter() time.Duration method), 0 when none.
func Hint(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return max(ra.RetryAfter(), 0)
	}
	return 0
}

// After returns err carrying the server's Retry-After d (see Hint).
func After(err error, d time.Duration) error { return &hintError{err, d} }

type hintError struct {
	err error
	d   time.Duration
}

func (e *hintError) Error() string             { return e.err.Error() }
func (e *hintError) Unwrap() error             { return e.err }
func (e *hintError) RetryAfter() time.Duration { return e.d }

// Stop marks err as not worth retrying: Do returns err at once.
func Stop(err error) error { return &stopError{err} }

type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

// Sleep waits d or until ctx ends; it reports whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// ParseRetryAfter reads a Retry-After header value: delay seconds or an
// HTTP date (a date in the past is a delay of 0). ok is false when h is
// empty, negative or neither. The delay is not capped; seconds beyond what
// a time.Duration holds saturate.
func ParseRetryAfter(h string, now time.Time) (d time.Duration, ok bool) {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(h, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, int64(math.MaxInt64/time.Second))) * time.Second, true
	}
	if t, err := http.ParseTime(h); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
