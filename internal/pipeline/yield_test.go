package pipeline

import (
	"context"
	"testing"
	"time"
)

func TestYieldPause(t *testing.T) {
	busy, lag := true, time.Duration(0)
	y := &Yield{Share: 0.25, MaxLag: 30 * time.Second,
		Busy: func() bool { return busy },
		Lag:  func() time.Duration { return lag }}
	// Busy and caught up: the sessionizer works a quarter of the time.
	if got := y.pause(10 * time.Millisecond); got != 30*time.Millisecond {
		t.Errorf("busy, no backlog: pause %v, want 30ms", got)
	}
	if got := y.pause(time.Minute); got != maxPause {
		t.Errorf("long turn: pause %v, want the cap %v", got, maxPause)
	}
	// Ingest not saturated: no pause whatever the backlog.
	busy = false
	if got := y.pause(10 * time.Millisecond); got != 0 {
		t.Errorf("not busy: pause %v, want 0", got)
	}
	// A backlog as old as MaxLag ends the pauses (after the cached lag expires).
	busy, lag = true, 30*time.Second
	y.lagAt = time.Time{}
	if got := y.pause(10 * time.Millisecond); got != 0 {
		t.Errorf("backlog at MaxLag: pause %v, want 0", got)
	}
	lag = 29 * time.Second
	y.lagAt = time.Time{}
	if got := y.pause(10 * time.Millisecond); got != 30*time.Millisecond {
		t.Errorf("backlog under MaxLag: pause %v, want 30ms", got)
	}
	// Off: no MaxLag, a full share, or no Yield at all.
	for _, off := range []*Yield{{Share: 0.25, Busy: y.Busy, Lag: y.Lag}, {Share: 1, MaxLag: time.Minute, Busy: y.Busy, Lag: y.Lag}, nil} {
		if got := off.pause(10 * time.Millisecond); got != 0 {
			t.Errorf("%+v: pause %v, want 0", off, got)
		}
	}
}

func TestYieldPauseEndsWithContext(t *testing.T) {
	y := &Yield{Share: 0.001, MaxLag: time.Hour, Busy: func() bool { return true }, Lag: func() time.Duration { return 0 }}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	y.Pause(ctx, time.Second) // would pause maxPause
	if d := time.Since(start); d > maxPause/2 {
		t.Errorf("Pause returned %v after its context ended", d)
	}
	if y.Paused() > maxPause/2 {
		t.Errorf("Paused %v, want only the time really waited", y.Paused())
	}
}
