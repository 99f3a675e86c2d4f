package fault

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/blob"
	"github.com/tidemark/tidemark/internal/destination/destinationtest"
	"github.com/tidemark/tidemark/internal/format"
)

func TestParse(t *testing.T) {
	s, err := Parse(" drop-pages=4, panic-destination=acme/broken,hang-destination=acme/stuck,hang-audit=acme/lake,stream-panic-on-event=Poison,memtable-bytes=65536")
	if err != nil {
		t.Fatal(err)
	}
	want := Set{DropPages: 4, PanicDestination: "acme/broken", HangDestination: "acme/stuck", HangAudit: "acme/lake", StreamPanicOnEvent: "Poison", MemTableBytes: 65536,
		On: []string{"drop-pages=4", "panic-destination=acme/broken", "hang-destination=acme/stuck", "hang-audit=acme/lake", "stream-panic-on-event=Poison", "memtable-bytes=65536"}}
	if s.DropPages != want.DropPages || s.PanicDestination != want.PanicDestination || s.HangDestination != want.HangDestination || s.HangAudit != want.HangAudit ||
		s.StreamPanicOnEvent != want.StreamPanicOnEvent || s.MemTableBytes != want.MemTableBytes || !slices.Equal(s.On, want.On) {
		t.Errorf("Parse = %+v, want %+v", s, want)
	}
	if s, err := Parse(""); err != nil || s.On != nil {
		t.Errorf("Parse(\"\") = %+v, %v", s, err)
	}
	for in, want := range map[string]string{
		"stream-panic-on-evnt=X":     `unknown fault "stream-panic-on-evnt"`,
		"drop-pages":                 `fault "drop-pages": want NAME=VALUE`,
		"drop-pages=":                `fault "drop-pages=": want NAME=VALUE`,
		"drop-pages=0":               `fault drop-pages: want a number >= 1, got "0"`,
		"drop-pages=x":               `fault drop-pages: want a number >= 1, got "x"`,
		"memtable-bytes=1024":        `fault memtable-bytes: want a number >= 65536, got "1024"`,
		"panic-destination=acme":     `fault panic-destination: want ORG/DESTINATION, got "acme"`,
		"hang-destination=/lake":     `fault hang-destination: want ORG/DESTINATION, got "/lake"`,
		"drop-pages=2,drop-pages=3":  "fault drop-pages given twice",
		"drop-pages=2;hang-dest=a/b": `fault drop-pages: want a number >= 1, got "2;hang-dest=a/b"`,
	} {
		if _, err := Parse(in); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("Parse(%q): %v, want %q", in, err, want)
		}
	}
	t.Setenv(Env, "nope=1")
	if _, err := FromEnv(); err == nil || !strings.HasPrefix(err.Error(), Env+": ") {
		t.Errorf("FromEnv: %v, want an error naming %s", err, Env)
	}
}

// TestDestinationFaults: the decorators make a real destination's writes
// panic, hang or lose pages; everything else goes through.
func TestDestinationFaults(t *testing.T) {
	open := func(t *testing.T) *blob.Blob {
		d, err := blob.Open(t.Context(), "file://"+filepath.ToSlash(t.TempDir()), format.Default)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		return d
	}
	s, err := Parse("panic-destination=acme/broken,hang-destination=acme/stuck")
	if err != nil {
		t.Fatal(err)
	}
	inner := open(t)
	if d := s.Destination("acme", "lake", inner); d != destination.Destination(inner) {
		t.Errorf("a destination without faults is wrapped: %T", d)
	}
	b := destinationtest.Batch(1, 1, 10, 5)
	broken := s.Destination("acme", "broken", inner)
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(r.(string), b.ID) {
				t.Errorf("panic-destination: recovered %v", r)
			}
		}()
		broken.Write(t.Context(), b)
	}()
	if err := broken.(interface{ Probe(context.Context) error }).Probe(t.Context()); err != nil {
		t.Errorf("probe through the fault: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := s.Destination("acme", "stuck", inner).Write(ctx, b); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hang-destination: %v", err)
	}
	if _, ok, err := inner.Committed(t.Context(), 1); ok || err != nil {
		t.Errorf("a faulty write committed: %v %v", ok, err)
	}

	// drop-pages: the pages whose id the predicate picks go, with their events.
	drop := func(id string) bool { return id == "pg-lost" }
	lost := "pg-lost"
	for i := range b.Events {
		if i%2 == 1 {
			b.Events[i].PageID = &lost
		}
	}
	dropped := DropPages(inner, drop)
	want := 0
	for _, r := range b.Events {
		if r.PageID == nil || !drop(*r.PageID) {
			want++
		}
	}
	n := len(b.Events)
	if err := dropped.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if len(b.Events) != n {
		t.Errorf("the caller's batch changed: %d events, was %d", len(b.Events), n)
	}
	ids, err := inner.EventIDs(t.Context(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != want || want == n {
		t.Errorf("%d events committed, want %d of %d", len(ids), want, n)
	}
}

// TestHangAudit: hang-audit hangs the audit's listing of the epoch hour of
// the destination it names, until cancelled; other hours, other
// destinations and the rest of the read-back go through.
func TestHangAudit(t *testing.T) {
	d, err := blob.Open(t.Context(), "file://"+filepath.ToSlash(t.TempDir()), format.Default)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	b := destinationtest.Batch(1, 1, 10, 5)
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	s, err := Parse("hang-audit=acme/lake")
	if err != nil {
		t.Fatal(err)
	}
	if rb := s.ReadBack("acme", "other", d); rb != audit.Destination(d) {
		t.Errorf("another destination is wrapped: %T", rb)
	}
	rb := s.ReadBack("acme", "lake", d)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := rb.EventFiles(ctx, time.Unix(0, 0)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the epoch hour: %v, want it to hang until the deadline", err)
	}
	hour := time.UnixMicro(b.Events[0].ReceivedAt).UTC().Truncate(time.Hour)
	files, err := rb.EventFiles(t.Context(), hour)
	if err != nil || len(files) == 0 {
		t.Errorf("hour %s through the fault: %d files, %v", hour, len(files), err)
	}
}
