package eventlog_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
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
	sz, err := pipeline.NewSessionizers(l, sessionize.Config{PageIdle: time.Minute, SessionIdle: time.Minute, DedupeWindow: time.Hour}, reg, slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	m, _ := transport.NewMetrics(reg, func() int64 { return 0 })
	d, err := blob.Open(t.Context(), "file://"+filepath.Join(dir, "lake"), format.Default)
	if err != nil {
		t.Fatal(err)
	}
	tr := transport.New(transport.Options{Org: "o", Name: "lake", Dest: d, Log: l, Outputs: sz, Metrics: m, Logger: slog.Default(),
		Flush: transport.Flush{MaxEvents: 1000, MaxBytes: 1 << 30, MaxAge: time.Minute}})

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- sz.Run(ctx) }()
	waitUntil(t, func() bool { return sz.Cursor(0) == l.LastOffset(0) })
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
	waitUntil(t, func() bool { p, _ := tr.Progress(0); return p >= 100 })
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

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 30s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
