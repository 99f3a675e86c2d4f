package eventlog

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/sessionize"
)

// TestDedupeFilterNoFalseNegative: every added key is reported as maybe
// present, at the designed load and far past it (a filter at its memory
// bound); at the designed load few absent keys are.
func TestDedupeFilterNoFalseNegative(t *testing.T) {
	key := func(i int) []byte {
		s := sha256.Sum256(binary.AppendUvarint(nil, uint64(i)))
		return s[:16]
	}
	for _, tc := range []struct {
		name          string
		keys, maxByte int
		maxFalse      float64
	}{
		{"designed", 100_000, 1 << 30, 0.02},
		{"bounded", 100_000, 4096, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDedupeFilter(tc.keys, tc.maxByte)
			for i := range tc.keys {
				f.add(key(i))
			}
			for i := range tc.keys {
				if !f.mayContain(key(i)) {
					t.Fatalf("key %d added but ruled out", i)
				}
			}
			maybe := 0
			for i := tc.keys; i < 2*tc.keys; i++ {
				if f.mayContain(key(i)) {
					maybe++
				}
			}
			if rate := float64(maybe) / float64(tc.keys); rate > tc.maxFalse {
				t.Errorf("%.2f%% of absent keys maybe present, want at most %.0f%%", 100*rate, 100*tc.maxFalse)
			}
		})
	}
}

// TestDedupeFilterDecidesAsStore sessionizes one partition in small chunks
// (so that the sweep completes many passes and hands over rebuilt
// filters) through rounds of new events, client retries within the window,
// restarts (the filter rebuilt from the store) and retries after the
// window (swept: events again). Every retry within the window is a
// duplicate, every other event is delivered once: exactly what the store
// holds decides, with or without the filter in front of it.
func TestDedupeFilterDecidesAsStore(t *testing.T) {
	const window = time.Hour
	cfg := sessionize.Config{PageIdle: time.Minute, SessionIdle: time.Minute, DedupeWindow: window}
	t0 := int64(1_700_000_000) * 1e9
	l, _ := open(t, t.TempDir(), Options{Partitions: 1})
	defer l.Close()
	st := l.State()
	var h SessionHeader
	h.NextSeq = 1
	var off uint64    // last appended offset
	var want []uint64 // offsets of the events to deliver
	now := time.Duration(0)
	// send appends events with ids prefix-from..prefix-to and sessionizes
	// them in chunks of 97 records; new says whether they are to be
	// delivered.
	send := func(prefix string, from, to int, new bool) {
		t.Helper()
		var recs []event.Record
		for i := from; i < to; i++ {
			now += time.Millisecond
			ts := t0 + int64(now)
			dev := fmt.Sprintf("d%d", i%37)
			recs = append(recs, event.Record{Kind: event.KindEvent, Time: ts, Event: event.Event{Type: "track", Name: "x",
				ReceivedAt: ts, EventTime: ts, Org: "o", Device: dev, AnonymousID: dev, ID: fmt.Sprintf("%s-%d", prefix, i)}})
		}
		if err := l.AppendRecords(t.Context(), 0, recs); err != nil {
			t.Fatal(err)
		}
		for range recs {
			off++
			if new {
				want = append(want, off)
			}
		}
		for h.Cursor < off {
			sessionizeTo(t, l, cfg, 0, &h, h.Cursor+97)
		}
	}
	tick := func(d time.Duration) {
		now += d
		if err := l.AppendRecords(t.Context(), 0, []event.Record{{Kind: event.KindTick, Time: t0 + int64(now)}}); err != nil {
			t.Fatal(err)
		}
		off++
		sessionizeTo(t, l, cfg, 0, &h, h.Cursor+97)
	}
	restart := func() { st.parts[0] = partState{cache: newDeviceCache()} }

	send("a", 0, 3000, true)
	send("a", 0, 3000, false) // retries
	passes := st.parts[0].filter
	send("b", 0, 2000, true)
	if st.parts[0].filter == passes {
		t.Fatal("no sweep pass handed over a new filter")
	}
	send("a", 2500, 3000, false)
	for j := range 20 { // retries in the next chunk, before the sweep's pass ends
		send(fmt.Sprint("d", j), 0, 100, true)
		send(fmt.Sprint("d", j), 0, 100, false)
	}
	restart()
	send("b", 1000, 2000, false)
	send("c", 0, 1000, true)
	tick(window + time.Minute) // a, b and c expire
	send("a", 0, 500, true)
	send("a", 0, 500, false)
	restart()
	send("b", 0, 2000, true)
	send("c", 0, 1000, true)
	send("b", 1500, 2000, false)
	send("c", 0, 10, false)

	var got []uint64
	for _, o := range allOutputs(t, st, 0) {
		if o.Kind == sessionize.KindEvent {
			got = append(got, o.Offset)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("delivered %d events, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []uint64) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}
