package pipeline

import (
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/sessionize"
)

// TestDedupeUpgradeFromOrgMessageIDKey starts on a data dir as an earlier
// version leaves it: dedupe entries keyed by org and messageId alone. A
// client retry that straddles the upgrade is still a duplicate; once a window
// has passed the old entries are swept, no longer looked up, and the same
// messageId from another device is its own event.
func TestDedupeUpgradeFromOrgMessageIDKey(t *testing.T) {
	const window = time.Hour
	cfg := sessionize.Config{PageIdle: time.Minute, SessionIdle: time.Minute, DedupeWindow: window}
	t0 := int64(1_700_000_000) * 1e9
	track := func(at time.Duration, device, id string) event.Record {
		ts := t0 + int64(at)
		return event.Record{Kind: event.KindEvent, Time: ts, Event: event.Event{Type: "track", Name: "Order",
			ReceivedAt: ts, EventTime: ts, Org: "o", Device: device, AnonymousID: device, ID: id}}
	}
	tick := func(at time.Duration) event.Record { return event.Record{Kind: event.KindTick, Time: t0 + int64(at)} }

	dir := t.TempDir()
	l := openLog(t, dir)
	run := func(recs ...event.Record) dedupeSweep {
		t.Helper()
		if err := l.AppendRecords(t.Context(), 0, recs); err != nil {
			t.Fatal(err)
		}
		s, err := NewSessionizers(l, cfg, prometheus.NewRegistry(), slog.Default())
		if err != nil {
			t.Fatal(err)
		}
		h, err := readHeader(l.DB(), 0)
		if err != nil {
			t.Fatal(err)
		}
		var ds dedupeSweep
		if ds.legacy, err = hasLegacyDedupe(l.DB(), 0); err != nil {
			t.Fatal(err)
		}
		sz := sessionize.New(cfg, nil, h.Watermark)
		for {
			n, err := s.chunk(0, &h, sz, newDeviceCache(), &ds)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				return ds
			}
		}
	}
	newKey, _ := appendDedupeKey(nil, nil, 0, "o", "a", "order-1")
	oldKey := append(stateKey(0, kindDedupeLegacy), "o\x00order-1"...)

	// The earlier version processed device a's order-1: the same outputs and
	// header, its dedupe entry under the old key.
	if ds := run(track(0, "a", "order-1")); ds.legacy {
		t.Fatal("a fresh data dir reports old-key dedupe entries")
	}
	v, c, err := l.DB().Get(newKey)
	if err != nil {
		t.Fatalf("dedupe entry of (o, a, order-1): %v", err)
	}
	at := append([]byte(nil), v...)
	c.Close()
	b := l.DB().NewBatch()
	b.Delete(newKey, nil)
	b.Set(oldKey, at, nil)
	if err := b.Commit(pebble.Sync); err != nil {
		t.Fatal(err)
	}

	// Upgraded: a's retry is a duplicate; so, within the window, is b's
	// order-1 (what the old version did; the audit reports it missing).
	if ds := run(track(time.Second, "a", "order-1"), track(2*time.Second, "b", "order-1"), track(3*time.Second, "c", "other")); !ds.legacy {
		t.Fatal("old-key dedupe entries not found")
	}
	// A window later the old entry is swept and no longer looked up.
	ds := run(tick(window+time.Minute), track(window+2*time.Minute, "b", "order-1"), track(window+2*time.Minute, "a", "order-1"))
	if ds.legacy {
		t.Error("old-key dedupe entries still looked up a window after the upgrade")
	}
	if _, _, err := l.DB().Get(oldKey); !errors.Is(err, pebble.ErrNotFound) {
		t.Errorf("old-key dedupe entry not swept: %v", err)
	}
	var offs []uint64
	for _, o := range outputs(t, l.DB(), 0) {
		if o.Kind == sessionize.KindEvent {
			offs = append(offs, o.Offset)
		}
	}
	// 1: a's original; 4: c; 6, 7: b and a again after the window.
	if want := []uint64{1, 4, 6, 7}; !slices.Equal(offs, want) {
		t.Errorf("events delivered at offsets %v, want %v", offs, want)
	}
	l.Close()
}
