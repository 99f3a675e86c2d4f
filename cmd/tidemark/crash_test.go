package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestCrashExactlyOnce SIGKILLs the real process at random moments, over and
// over, while a client sends batches and retries every batch that was not
// acknowledged (same messageIds). At the end every event is in the lake
// exactly once: acknowledged events are never lost, and events that were
// appended but whose acknowledgement died with the process are not duplicated
// by the retry.
func TestCrashExactlyOnce(t *testing.T) {
	// Parallel: it overlaps TestDevKeyWithoutOrgs (parallel too), which
	// spends a minute waiting for the default flush, that would otherwise
	// run alone after every other test of the package.
	t.Parallel()
	const kills = 20
	dir := t.TempDir()
	port := testenv.FreePort(t)
	p := startProc(t, testConfig(t, dir, port, ""), port)

	// 4 clients, each retrying its batch of 50 until acknowledged, unpaced.
	ld := startLoad(t, p.addr, testKey, "crash-", 4, 50, time.Millisecond)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for k := range kills {
		// Kill at a random point: after a random number of further
		// acknowledged events, so every run between kills makes progress.
		target := len(ld.Acked()) + 500 + rng.IntN(20000)
		probe.Until(t, time.Minute, "events acknowledged before the next kill", func() (bool, string) {
			n := len(ld.Acked())
			return n >= target, fmt.Sprintf("%d of %d", n, target)
		})
		p.kill()
		t.Logf("kill %d: %d events acknowledged so far", k+1, len(ld.Acked()))
		p.start()
	}
	want := ld.Stop()
	if len(want) < 1000 {
		t.Fatalf("only %d events acknowledged; the test did not exercise much", len(want))
	}

	root := filepath.Join(dir, "lake")
	var l lake
	probe.Until(t, 2*time.Minute, "every acknowledged event in the lake", func() (bool, string) {
		l = readLake(t, root)
		c := l.eventCounts()
		missing := 0
		for id := range want {
			if c[id] == 0 {
				missing++
			}
		}
		var inSessions int64
		for _, s := range l.Sessions {
			inSessions += s.EventCount
		}
		// Once every session has closed, the sessions account for every event.
		return missing == 0 && inSessions >= int64(len(want)), fmt.Sprintf("%d of %d acknowledged events missing; closed sessions hold %d events", missing, len(want), inSessions)
	})
	var inSessions, inPages int64
	for _, s := range l.Sessions {
		inSessions += s.EventCount
	}
	for _, pg := range l.Pages {
		inPages += pg.EventCount
	}
	if inSessions != int64(len(want)) {
		t.Errorf("sessions hold %d events, want %d: a session row is missing or duplicated", inSessions, len(want))
	}
	if inPages == 0 || inPages > int64(len(want)) {
		t.Errorf("pages hold %d events of %d", inPages, len(want))
	}
	for id, n := range l.eventCounts() {
		if n != 1 {
			t.Errorf("event %s is in the lake %d times", id, n)
		}
		if !want[id] {
			t.Errorf("event %s in the lake was never sent", id)
		}
	}
	// Sessions and pages are exactly once too: no id twice.
	seen := map[string]bool{}
	for _, s := range l.Sessions {
		if seen[s.SessionID] {
			t.Errorf("session %s twice", s.SessionID)
		}
		seen[s.SessionID] = true
	}
	for _, pg := range l.Pages {
		if seen[pg.PageID] {
			t.Errorf("page %s twice", pg.PageID)
		}
		seen[pg.PageID] = true
	}
	t.Logf("%d kills, %d events, %d pages, %d sessions, %d batches", kills, len(want), len(l.Pages), len(l.Sessions), l.Manifests)
	p.stop()
}

func snapshot(mu *sync.Mutex, m map[string]bool) map[string]bool {
	mu.Lock()
	defer mu.Unlock()
	c := make(map[string]bool, len(m))
	for k := range m {
		c[k] = true
	}
	return c
}
