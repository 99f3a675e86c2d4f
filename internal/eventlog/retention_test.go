package eventlog_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/destination/blob"
	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/pipeline"
	"github.com/tidemark/tidemark/internal/sessionize"
	"github.com/tidemark/tidemark/internal/transport"
)

// TestRetentionKeepsUndelivered: records past retention are kept while a
// destination has not committed them, and removed once it has.
func TestRetentionKeepsUndelivered(t *testing.T) {
	synctest.Test(t, testRetentionKeepsUndelivered)
}

// testRetentionKeepsUndelivered runs in a synctest bubble: each stage runs
// until synctest.Wait says it waits for the log again (or for a timer), so
// the offsets are read once they no longer move.
func testRetentionKeepsUndelivered(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	l, err := eventlog.Open(filepath.Join(dir, "data"), eventlog.Options{Partitions: 1, Registerer: reg, Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	var recs []event.Record
	for i := range 100 {
		ts := base + int64(i)*int64(time.Second)
		recs = append(recs, event.Record{Kind: event.KindEvent, Time: ts, Event: event.Event{
			ID: fmt.Sprintf("m%d", i), Org: "o", Device: "d", Type: "track", ReceivedAt: ts, EventTime: ts}})
	}
	recs = append(recs, event.Record{Kind: event.KindTick, Time: base + int64(time.Hour)})
	if err := l.AppendRecords(t.Context(), 0, recs); err != nil {
		t.Fatal(err)
	}
	sz, err := pipeline.NewSessionizers(l, l.State(), sessionize.Config{PageIdle: time.Minute, SessionIdle: time.Minute, DedupeWindow: time.Hour}, reg, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	m, _ := transport.NewMetrics(reg, func() int64 { return 0 })
	// Not format.Default: its zstd encoders are pooled for the whole
	// process, and one made in this bubble would belong to it (synctest
	// forbids using its channels from outside), breaking the next test that
	// writes zstd. Snappy starts no goroutines.
	codec, err := format.ParseCodec("parquet", "snappy")
	if err != nil {
		t.Fatal(err)
	}
	d, err := blob.Open(t.Context(), "file://"+filepath.Join(dir, "lake"), codec)
	if err != nil {
		t.Fatal(err)
	}
	tr := transport.New(transport.Options{Org: "o", Name: "lake", Dest: d, Log: l, Outputs: sz, Metrics: m, Logger: slog.Default(),
		Flush: transport.Flush{MaxEvents: 1000, MaxBytes: 1 << 30, MaxAge: time.Minute}})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sz.Run(ctx) }()
	synctest.Wait()
	if sz.Cursor(0) != l.LastOffset(0) {
		t.Fatalf("sessionizer at %d of %d", sz.Cursor(0), l.LastOffset(0))
	}
	cancel()
	<-done

	// Sessionized, but not delivered: nothing may go, however old.
	cutoff := base + 10*int64(time.Hour)
	if err := (&eventlog.Retention{Log: l, Outputs: sz, Deliveries: []eventlog.Delivery{tr}}).Retain(0, cutoff); err != nil {
		t.Fatal(err)
	}
	if first, _ := l.FirstOffset(0); first != 1 {
		t.Fatalf("retention removed undelivered records: first offset %d", first)
	}

	// The transport delivers the events (the tick an hour later ages the batch out)...
	ctx, cancel = context.WithCancel(t.Context())
	go func() { done <- tr.Run(ctx) }()
	synctest.Wait()
	if p, _ := tr.Progress(0); p < 100 {
		t.Fatalf("transport delivered up to %d, want 100", p)
	}
	cancel()
	<-done
	// A webhook that still needs offset 21 holds it and what follows...
	webhook := func(p int) (uint64, bool) { return 21, true }
	if err := (&eventlog.Retention{Log: l, Outputs: sz, Deliveries: []eventlog.Delivery{tr}, Hold: webhook}).Retain(0, base+50*int64(time.Second)); err != nil {
		t.Fatal(err)
	}
	if first, _ := l.FirstOffset(0); first != 21 {
		t.Fatalf("first offset with a webhook holding 21 = %d, want 21", first)
	}
	// ... and once it has moved on (or streaming is off), the delivered
	// records past retention go, the rest stay.
	if err := (&eventlog.Retention{Log: l, Outputs: sz, Deliveries: []eventlog.Delivery{tr}}).Retain(0, base+50*int64(time.Second)); err != nil {
		t.Fatal(err)
	}
	if first, _ := l.FirstOffset(0); first != 51 {
		t.Fatalf("first offset after retention = %d, want 51 (records older than the cutoff removed)", first)
	}
}
