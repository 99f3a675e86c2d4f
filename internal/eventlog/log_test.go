package eventlog

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

func open(t *testing.T, dir string, o Options) (*Log, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	o.Registerer, o.Logger = reg, slog.Default()
	if o.Partitions == 0 {
		o.Partitions = 4
	}
	l, err := Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	return l, reg
}

func ev(i int) event.Event {
	return event.Event{ID: fmt.Sprintf("m%d", i), Org: "o", Device: fmt.Sprintf("d%d", i%13), Type: "track", ReceivedAt: int64(i + 1)}
}

// TestGroupCommit: many concurrent appends share fsyncs, every one is
// readable in order with dense offsets, and all survive a reopen.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	l, reg := open(t, dir, Options{})
	const writers, per = 32, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if err := l.Append(t.Context(), []event.Event{ev(w*per + i)}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	commits := probe.Value(t, reg, "tidemark_log_commits_total", nil)
	if commits >= writers*per {
		t.Errorf("%v commits for %d appends: no group commit", commits, writers*per)
	}
	t.Logf("%d appends in %v commits", writers*per, commits)
	l.Close()

	l, _ = open(t, dir, Options{})
	defer l.Close()
	seen := map[string]bool{}
	for p := range l.Partitions() {
		var want uint64 = 1
		err := l.Scan(p, 1, 0, func(off uint64, val []byte) error {
			if off != want {
				return fmt.Errorf("partition %d: offset %d, want %d", p, off, want)
			}
			want++
			r, err := event.Decode(val)
			if err != nil {
				return err
			}
			if PartitionOf(r.Event.Org, r.Event.Device, l.Partitions()) != p {
				return fmt.Errorf("event %s in partition %d", r.Event.ID, p)
			}
			seen[r.Event.ID] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if l.LastOffset(p) != want-1 {
			t.Errorf("LastOffset(%d) = %d, want %d", p, l.LastOffset(p), want-1)
		}
	}
	if len(seen) != writers*per {
		t.Fatalf("%d events after reopen, want %d", len(seen), writers*per)
	}
}

func TestPartitionCountIsFixed(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, Options{Partitions: 4})
	l.Close()
	_, err := Open(dir, Options{Partitions: 8, Registerer: prometheus.NewRegistry()})
	if err == nil || !strings.Contains(err.Error(), "log.partitions: 4") {
		t.Fatalf("reopen with other partition count: %v", err)
	}
}

// TestBackpressure: past MaxPending or below MinFreeBytes, Append refuses with
// a RetryAfter error and appends nothing.
func TestBackpressure(t *testing.T) {
	l, _ := open(t, t.TempDir(), Options{MaxPending: 10})
	defer l.Close()
	evs := make([]event.Event, 11)
	for i := range evs {
		evs[i] = ev(i)
	}
	var bp *Backpressure
	if err := l.Append(t.Context(), evs); !errors.As(err, &bp) || bp.RetryAfter() <= 0 {
		t.Fatalf("11 events with MaxPending 10: %v", err)
	}
	for p := range l.Partitions() {
		if l.LastOffset(p) != 0 {
			t.Fatalf("partition %d has records after a refused append", p)
		}
	}

	l2, _ := open(t, t.TempDir(), Options{MinFreeBytes: 1 << 62})
	defer l2.Close()
	if err := l2.Append(t.Context(), evs[:1]); !errors.As(err, &bp) || !strings.Contains(bp.Error(), "disk") {
		t.Fatalf("disk low: %v", err)
	}
}

func TestClosedAppendFails(t *testing.T) {
	l, _ := open(t, t.TempDir(), Options{})
	l.Close()
	if err := l.Append(t.Context(), []event.Event{ev(1)}); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
}

func TestTicksAndReader(t *testing.T) {
	l, _ := open(t, t.TempDir(), Options{Partitions: 2})
	defer l.Close()
	now := time.Unix(1700000000, 0)
	for i := range 3 {
		if err := l.AppendTicks(t.Context(), now.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := l.NewReader(1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, off := range []uint64{1, 2, 3, 2} {
		v, err := r.Get(off)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := event.Decode(v)
		if err != nil || rec.Kind != event.KindTick || rec.Time != now.Add(time.Duration(off-1)*time.Second).UnixNano() {
			t.Fatalf("offset %d: %+v %v", off, rec, err)
		}
	}
	if _, err := r.Get(9); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("missing offset: %v", err)
	}
	if err := l.DeleteBefore(1, 3); err != nil {
		t.Fatal(err)
	}
	if first, _ := l.FirstOffset(1); first != 3 {
		t.Fatalf("first offset after DeleteBefore(3) = %d", first)
	}
}

// TestSegments: records of many group commits and partitions read back by
// Scan over any range and by a Reader in any order, and DeleteBefore cuts
// inside a segment exactly.
func TestSegments(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, Options{Partitions: 2})
	want := map[uint64]string{} // partition 0 offset -> event id
	n := 0
	for c := range 20 { // commits of 1..20 records; some large enough to split
		var recs []event.Record
		for i := range c + 1 {
			e := ev(n)
			if c == 7 {
				e.Properties = []byte(strings.Repeat("x", maxSegmentBytes/4+i))
			}
			recs = append(recs, event.Record{Kind: event.KindEvent, Time: e.ReceivedAt, Event: e})
			n++
			want[uint64(len(want)+1)] = e.ID
		}
		if err := l.AppendRecords(t.Context(), 0, recs); err != nil {
			t.Fatal(err)
		}
	}
	last := uint64(len(want))
	if l.LastOffset(0) != last || l.LastOffset(1) != 0 {
		t.Fatalf("last offsets %d %d, want %d 0", l.LastOffset(0), l.LastOffset(1), last)
	}
	id := func(val []byte) string {
		t.Helper()
		r, err := event.Decode(val)
		if err != nil {
			t.Fatal(err)
		}
		return r.Event.ID
	}
	scan := func(from, to uint64) (offs []uint64) {
		t.Helper()
		err := l.Scan(0, from, to, func(off uint64, val []byte) error {
			if id(val) != want[off] {
				return fmt.Errorf("offset %d: %s, want %s", off, id(val), want[off])
			}
			offs = append(offs, off)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return offs
	}
	for _, r := range [][2]uint64{{1, 0}, {0, 0}, {2, 2}, {5, 40}, {37, 38}, {100, 0}, {last, 0}, {last + 1, 0}, {3, last + 5}} {
		got := scan(r[0], r[1])
		from, to := max(r[0], 1), r[1]
		if to == 0 || to > last {
			to = last
		}
		var exp []uint64
		for o := from; o <= to; o++ {
			exp = append(exp, o)
		}
		if fmt.Sprint(got) != fmt.Sprint(exp) {
			t.Errorf("Scan(%d, %d) = %v, want %v", r[0], r[1], got, exp)
		}
	}
	rd, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	for _, off := range []uint64{1, 2, 3, 50, 51, 52, 10, last, 1, last - 1, last} {
		v, err := rd.Get(off)
		if err != nil || id(v) != want[off] {
			t.Fatalf("Get(%d): %v", off, err)
		}
	}
	if _, err := rd.Get(last + 1); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("Get past the end: %v", err)
	}
	rd.Close()

	for _, cut := range []uint64{4, 4, 30, 31, 33} { // inside, at and between segments; repeated
		if err := l.DeleteBefore(0, cut); err != nil {
			t.Fatal(err)
		}
		if first, _ := l.FirstOffset(0); first != cut {
			t.Fatalf("FirstOffset after DeleteBefore(%d) = %d", cut, first)
		}
		if got := scan(1, 0); len(got) != int(last-cut+1) || got[0] != cut {
			t.Fatalf("after DeleteBefore(%d): scan from %v, %d records", cut, got[:1], len(got))
		}
	}
	l.Close()

	// Reopen: offsets continue after the last segment.
	l, _ = open(t, dir, Options{Partitions: 2})
	defer l.Close()
	if l.LastOffset(0) != last {
		t.Fatalf("LastOffset after reopen = %d, want %d", l.LastOffset(0), last)
	}
	if err := l.Append(t.Context(), []event.Event{{ID: "after", Org: "o", Device: "d0", Type: "track", ReceivedAt: 1}}); err != nil {
		t.Fatal(err)
	}
	p := l.Partition("o", "d0")
	if err := l.Scan(p, l.LastOffset(p), 0, func(off uint64, val []byte) error {
		if id(val) != "after" {
			return fmt.Errorf("offset %d: %s", off, id(val))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestOldFormatRefused: a store with records but no format marker (log
// format 1) is refused with an error that says what to do.
func TestOldFormatRefused(t *testing.T) {
	dir := t.TempDir()
	l, _ := open(t, dir, Options{Partitions: 1})
	if err := l.Append(t.Context(), []event.Event{ev(1)}); err != nil {
		t.Fatal(err)
	}
	if err := l.db.Delete(metaFormat, pebble.Sync); err != nil {
		t.Fatal(err)
	}
	l.Close()
	_, err := Open(dir, Options{Partitions: 1, Registerer: prometheus.NewRegistry()})
	if err == nil || !strings.Contains(err.Error(), "log format 1") {
		t.Fatalf("open of a format 1 store: %v", err)
	}
}

func FuzzSegment(f *testing.F) {
	var w segWriter
	w.reset(1)
	f.Add(append([]byte(nil), w.b...))
	w.add(event.Append(nil, &event.Record{Kind: event.KindTick, Time: 5}))
	f.Add(append([]byte(nil), w.b...))
	e := ev(3)
	w.add(event.Append(nil, &event.Record{Kind: event.KindEvent, Time: e.ReceivedAt, Event: e}))
	f.Add(append([]byte(nil), w.b...))
	f.Add([]byte{2, 1, 0})
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s segment
		if err := s.parse(7, b); err != nil {
			if !errors.Is(err, ErrCorruptSegment) {
				t.Fatalf("error not ErrCorruptSegment: %v", err)
			}
			return
		}
		// A valid segment's records re-encode to a segment with the same records.
		var w segWriter
		w.reset(7)
		for off := s.first; off <= s.last(); off++ {
			w.add(s.record(off))
		}
		var s2 segment
		if err := s2.parse(7, w.b); err != nil || s2.last() != s.last() {
			t.Fatalf("re-encoded segment: %v, last %d vs %d", err, s2.last(), s.last())
		}
		for off := s.first; off <= s.last(); off++ {
			if string(s2.record(off)) != string(s.record(off)) {
				t.Fatalf("record %d differs after re-encoding", off)
			}
		}
	})
}

// TestReadersStopAtLastOffset: a segment in the store past LastOffset — what
// Pebble shows readers between a batch's publish and its WAL fsync — is read
// neither by Scan (to the end or over an explicit range) nor by a Reader.
func TestReadersStopAtLastOffset(t *testing.T) {
	l, _ := open(t, t.TempDir(), Options{Partitions: 1})
	defer l.Close()
	var recs []event.Record
	for i := range 3 {
		e := ev(i)
		recs = append(recs, event.Record{Kind: event.KindEvent, Time: e.ReceivedAt, Event: e})
	}
	if err := l.AppendRecords(t.Context(), 0, recs); err != nil {
		t.Fatal(err)
	}
	// Offsets 4 and 5, in the store but not committed by the writer.
	var w segWriter
	w.reset(4)
	for i := 3; i < 5; i++ {
		e := ev(i)
		w.add(event.Append(nil, &event.Record{Kind: event.KindEvent, Time: e.ReceivedAt, Event: e}))
	}
	if err := l.db.Set(Key(0, 4), w.b, nil); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		from, to uint64
		want     string
	}{{1, 0, "[1 2 3]"}, {1, 5, "[1 2 3]"}, {2, 4, "[2 3]"}, {4, 0, "[]"}, {4, 5, "[]"}} {
		got := []uint64{}
		if err := l.Scan(0, c.from, c.to, func(off uint64, _ []byte) error {
			got = append(got, off)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != c.want {
			t.Errorf("Scan(%d, %d) read %v, want %s", c.from, c.to, got, c.want)
		}
	}
	rd, err := l.NewReader(0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	if _, err := rd.Get(3); err != nil {
		t.Fatalf("Get(3): %v", err)
	}
	if _, err := rd.Get(4); !errors.Is(err, ErrNotInLog) {
		t.Fatalf("Get(4) of an uncommitted record: %v, want ErrNotInLog", err)
	}
}

// TestTail: the tail numbers committed records in commit order and gives
// each one's partition, offset and identity as the store holds them, until
// it no longer keeps them.
func TestTail(t *testing.T) {
	l, _ := open(t, t.TempDir(), Options{Partitions: 2, TailRecords: 8})
	defer l.Close()
	if s := l.TailSeq(); s != 0 {
		t.Fatalf("TailSeq of a new log = %d", s)
	}
	var evs []event.Event
	for i := range 3 {
		evs = append(evs, ev(i))
	}
	if err := l.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	if err := l.AppendTicks(t.Context(), time.Unix(0, 99)); err != nil {
		t.Fatal(err)
	}
	got, next, ok := l.Tail(0, nil)
	if !ok || next != 5 || len(got) != 5 || l.TailSeq() != 5 {
		t.Fatalf("Tail(0) = %d records, next %d, ok %v; TailSeq %d", len(got), next, ok, l.TailSeq())
	}
	check := func(cs []Committed) {
		t.Helper()
		for _, c := range cs {
			var r event.Record
			if err := l.Scan(c.Part, c.Off, c.Off, func(_ uint64, val []byte) (err error) {
				r, err = event.Decode(val)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			if b := briefOf(&r); b != c.Brief {
				t.Errorf("tail partition %d offset %d: %+v, store has %+v", c.Part, c.Off, c.Brief, b)
			}
		}
	}
	check(got)
	for i, c := range got[:3] {
		if c.ID != evs[i].ID || c.Kind != event.KindEvent || c.Time != evs[i].ReceivedAt {
			t.Errorf("tail record %d = %+v, want event %s", i, c, evs[i].ID)
		}
	}
	for _, c := range got[3:] {
		if c.Kind != event.KindTick || c.Time != 99 {
			t.Errorf("tail tick = %+v", c)
		}
	}
	var more []event.Event
	for i := range 10 {
		more = append(more, ev(3+i))
	}
	if err := l.Append(t.Context(), more); err != nil {
		t.Fatal(err)
	}
	for _, from := range []uint64{0, 5, 6} {
		if _, next, ok := l.Tail(from, nil); ok || next != 15 {
			t.Errorf("Tail(%d) with 15 committed and 8 kept: ok %v, next %d", from, ok, next)
		}
	}
	got, next, ok = l.Tail(7, nil)
	if !ok || next != 15 || len(got) != 8 || got[7].ID != more[9].ID {
		t.Fatalf("Tail(7) = %d records, next %d, ok %v", len(got), next, ok)
	}
	check(got)
	if got, _, ok := l.Tail(15, nil); !ok || len(got) != 0 {
		t.Fatalf("Tail at the end = %d records, ok %v", len(got), ok)
	}
}

// TestStoreMetrics: the diagnostics report (serve --pprof's /debug/pebble)
// shows both stores with what was written to them.
func TestStoreMetrics(t *testing.T) {
	l, _ := open(t, t.TempDir(), Options{Partitions: 2})
	defer l.Close()
	if err := l.Append(t.Context(), []event.Event{ev(1), ev(2)}); err != nil {
		t.Fatal(err)
	}
	m := l.StoreMetrics()
	log, state, ok := strings.Cut(m, "store/state:")
	if !ok || !strings.HasPrefix(log, "store/log:") || !strings.Contains(log, "WAL:") || !strings.Contains(state, "WAL:") {
		t.Fatalf("report without both stores:\n%s", m)
	}
	if strings.Contains(log, "WAL: 0 files") {
		t.Errorf("the log store's report shows no WAL after an append:\n%s", log)
	}
}
