package eventlog

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

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

	l, _ := open(t, t.TempDir(), Options{Partitions: 2})
	st := l.State()
	// run appends recs and sessionizes them as a freshly started
	// sessionizer would (its partition state read from the store), and
	// returns the partition state after them.
	run := func(recs ...event.Record) partState {
		t.Helper()
		if err := l.AppendRecords(t.Context(), 0, recs); err != nil {
			t.Fatal(err)
		}
		st.parts[0] = partState{cache: newDeviceCache()}
		h, err := st.SessionHeader(0)
		if err != nil {
			t.Fatal(err)
		}
		sessionizeAll(t, l, cfg, 0, &h)
		return st.parts[0]
	}
	newKey, _ := appendDedupeKey(nil, nil, 0, "o", "a", "order-1")
	oldKey := append(stateKey(0, kindDedupeLegacy), "o\x00order-1"...)

	// The earlier version processed device a's order-1: the same outputs and
	// header, its dedupe entry under the old key.
	if ds := run(track(0, "a", "order-1")); ds.legacy {
		t.Fatal("a fresh data dir reports old-key dedupe entries")
	}
	v, c, err := st.db.Get(newKey)
	if err != nil {
		t.Fatalf("dedupe entry of (o, a, order-1): %v", err)
	}
	at := append([]byte(nil), v...)
	c.Close()
	b := st.db.NewBatch()
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
	if _, _, err := st.db.Get(oldKey); !errors.Is(err, pebble.ErrNotFound) {
		t.Errorf("old-key dedupe entry not swept: %v", err)
	}
	var offs []uint64
	for _, o := range allOutputs(t, st, 0) {
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

// sessionizeAll runs partition p's sessionizer from h over the rest of the
// log in one chunk, as package pipeline does.
func sessionizeAll(t *testing.T, l *Log, cfg sessionize.Config, p int, h *SessionHeader) {
	t.Helper()
	sessionizeTo(t, l, cfg, p, h, 0)
}

// sessionizeTo runs partition p's sessionizer from h over the records up
// to offset to (0: the end) in one chunk, as package pipeline does
// (sweeping 2 dedupe entries per record).
func sessionizeTo(t *testing.T, l *Log, cfg sessionize.Config, p int, h *SessionHeader, to uint64) {
	t.Helper()
	sz := sessionize.New(cfg, nil, h.Watermark)
	_, err := l.State().UpdateSessions(p, h, cfg.DedupeWindow, func(st sessionize.Store) (int, error) {
		sz.SetStore(st)
		n := 0
		err := l.Scan(p, h.Cursor+1, to, func(off uint64, val []byte) error {
			rec, err := event.DecodeMeta(val)
			if err != nil {
				return err
			}
			n++
			h.Cursor = off
			return sz.Process(off, len(val), &rec)
		})
		h.Watermark = sz.Watermark()
		return 2*n + 64, err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// allOutputs reads partition p's whole output stream.
func allOutputs(t *testing.T, st *State, p int) []sessionize.Output {
	t.Helper()
	var out []sessionize.Output
	err := st.ScanOutputs(p, 0, 1<<62, func(_ uint64, o *sessionize.Output) error {
		out = append(out, *o)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
