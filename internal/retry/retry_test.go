package retry

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

var errDown = errors.New("down")

// TestDoBacksOff: the waits double from Initial up to Max, and Do returns
// once op succeeds.
func TestDoBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var at []time.Duration
		start := time.Now()
		err := Do(t.Context(), Policy{Initial: time.Second, Max: 5 * time.Second}, func(n int) error {
			at = append(at, time.Since(start))
			if n < 6 {
				return errDown
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []time.Duration{0, 1, 3, 7, 12, 17} // waits 1, 2, 4, 5, 5 seconds
		if len(at) != len(want) {
			t.Fatalf("attempts at %v, want %v s", at, want)
		}
		for i := range want {
			if at[i] != want[i]*time.Second {
				t.Fatalf("attempts at %v, want %v s", at, want)
			}
		}
	})
}

// TestDoJitter: with jitter each wait is in [d/2, d], from Rand.
func TestDoJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []time.Duration
		last := time.Now()
		p := Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: true, Attempts: 4,
			Rand: func(n int64) int64 { return n - 1 }} // the longest
		err := Do(t.Context(), p, func(n int) error {
			got = append(got, time.Since(last))
			last = time.Now()
			return errDown
		})
		if !errors.Is(err, errDown) {
			t.Fatalf("after the attempts: %v", err)
		}
		want := []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond}
		if len(got) != 4 || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
			t.Fatalf("waits %v, want %v", got, want)
		}
		p.Rand = func(int64) int64 { return 0 } // the shortest: half
		if w := p.wait(3, errDown, false); w != 200*time.Millisecond {
			t.Errorf("shortest jittered wait after attempt 3: %v, want 200ms", w)
		}
	})
}

// TestDoHint: a Retry-After replaces the backoff, or with HintAtLeast only
// lengthens it; MaxHint caps it; zero is no hint.
func TestDoHint(t *testing.T) {
	p := Policy{Initial: 2 * time.Second, Max: time.Minute}
	for _, tc := range []struct {
		atLeast bool
		max     time.Duration
		hint    time.Duration
		want    time.Duration
	}{
		{false, 0, time.Second, time.Second},
		{false, 0, time.Hour, time.Hour},
		{false, 0, 0, 2 * time.Second},
		{false, 0, -time.Second, 2 * time.Second},
		{true, 0, time.Second, 2 * time.Second},
		{true, 0, 5 * time.Second, 5 * time.Second},
		{true, time.Minute, time.Hour, time.Minute},
	} {
		p.HintAtLeast, p.MaxHint = tc.atLeast, tc.max
		if got := p.wait(1, After(errDown, tc.hint), false); got != tc.want {
			t.Errorf("%+v: wait %v, want %v", tc, got, tc.want)
		}
	}
	if err := After(errDown, time.Second); !errors.Is(err, errDown) || err.Error() != "down" {
		t.Errorf("After: %v", err)
	}
}

// TestDoStopsAndSlows: Stop ends Do with the wrapped error; Failed sees each
// failure and its wait, and Slowest makes every later wait the longest.
func TestDoStopsAndSlows(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		permanent := errors.New("permanent")
		if err := Do(t.Context(), Policy{Initial: time.Second, Max: time.Minute}, func(int) error { return Stop(permanent) }); err != permanent {
			t.Fatalf("Stop: %v", err)
		}
		var waits []time.Duration
		p := Policy{Initial: time.Second, Max: time.Minute, Failed: func(f *Failure) {
			if f.Attempt == 2 {
				f.Slowest()
			}
			waits = append(waits, f.Wait)
			if f.Attempt == 4 {
				f.Stop()
			}
		}}
		err := Do(t.Context(), p, func(int) error { return errDown })
		if !errors.Is(err, errDown) {
			t.Fatalf("Failed stopped: %v", err)
		}
		want := []time.Duration{time.Second, time.Minute, time.Minute, time.Minute}
		if len(waits) != 4 || waits[0] != want[0] || waits[1] != want[1] || waits[2] != want[2] {
			t.Fatalf("waits %v, want %v", waits, want)
		}
	})
}

// TestDoEndsWithContext: cancelling ctx during a wait ends Do with ctx's
// error, and an error while ctx is done is not retried.
func TestDoEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		start := time.Now()
		n := 0
		err := Do(ctx, Policy{Initial: time.Minute, Max: time.Hour}, func(int) error { n++; return errDown })
		if !errors.Is(err, context.DeadlineExceeded) || n != 2 || time.Since(start) != 90*time.Second {
			t.Fatalf("err %v after %d attempts and %v", err, n, time.Since(start))
		}
		ctx, cancel = context.WithCancel(t.Context())
		n = 0
		err = Do(ctx, Policy{Initial: time.Minute, Max: time.Hour}, func(int) error { n++; cancel(); return errDown })
		if !errors.Is(err, context.Canceled) || n != 1 {
			t.Fatalf("err %v after %d attempts", err, n)
		}
	})
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"":                              -1,
		"0":                             0,
		"5":                             5 * time.Second,
		" 120 ":                         2 * time.Minute,
		"-3":                            -1,
		"soon":                          -1,
		"Sun, 29 Nov 2026 10:00:30 GMT": 30 * time.Second,
		"Sun, 29 Nov 2026 09:00:00 GMT": 0,
	} {
		got, ok := ParseRetryAfter(in, now)
		if !ok {
			got = -1 // absent or invalid
		}
		if got != want {
			t.Errorf("%q: %v, want %v", in, got, want)
		}
	}
}
