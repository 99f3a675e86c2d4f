package eventlog

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/event"
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
	commits := counter(t, reg, "tidemark_log_commits_total")
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

func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.Metric[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
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
