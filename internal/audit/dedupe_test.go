package audit_test

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/blob"
	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/sessionize"
)

// TestAuditSameMessageIDOtherDevice: ten devices send the same messageId (a
// client habit such as order-1), one of them twice (a real retry). The lake
// holds every event but one: that of a device sharing its log partition and
// its messageId with another whose row is there. The audit, default and
// deep, counts ten accepted and names exactly that event missing, with its
// device; backfill writes exactly it; the audit is then clean and a second
// backfill writes nothing.
func TestAuditSameMessageIDOtherDevice(t *testing.T) {
	dir := t.TempDir()
	lg, err := eventlog.Open(filepath.Join(dir, "data"), eventlog.Options{Partitions: parts, Registerer: prometheus.NewRegistry(), Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer lg.Close()
	dest, err := blob.Open(t.Context(), "file://"+filepath.Join(dir, "lake"), format.Codec{})
	if err != nil {
		t.Fatal(err)
	}
	defer dest.Close()

	// "kept" and the device after it share a partition; "lost" is its name.
	devices := []string{"kept"}
	for n := 0; len(devices) == 1; n++ {
		if d := fmt.Sprintf("lost%d", n); eventlog.PartitionOf("a", d, parts) == eventlog.PartitionOf("a", "kept", parts) {
			devices = append(devices, d)
		}
	}
	for i := 0; len(devices) < 10; i++ {
		devices = append(devices, fmt.Sprintf("dev%02d", i))
	}
	lost := devices[1]

	// The log: each device's order-1, then kept's retry 5 s later.
	t0 := start.Add(10 * time.Minute)
	var recs []event.Record
	add := func(at time.Time, device string) {
		ts := at.UnixNano()
		e := event.Event{ID: "order-1", Org: "a", Device: device, AnonymousID: device, Type: "track", Name: "Order Completed",
			ReceivedAt: ts, EventTime: ts, Properties: []byte(`{"total":1}`)}
		recs = append(recs, event.Record{Kind: event.KindEvent, Time: ts, Event: e})
	}
	for i, d := range devices {
		add(t0.Add(time.Duration(i)*time.Second), d)
	}
	add(t0.Add(15*time.Second), "kept")
	offsets := map[int]int64{} // next offset by partition
	rows := map[int][]format.EventRow{}
	for _, r := range recs {
		p := eventlog.PartitionOf("a", r.Event.Device, parts)
		if err := lg.AppendRecords(t.Context(), p, []event.Record{r}); err != nil {
			t.Fatal(err)
		}
		offsets[p]++
		if r.Event.Device == lost || (r.Event.Device == "kept" && r.Time > t0.UnixNano()) {
			continue // lost, and kept's retry (delivered once)
		}
		o := sessionize.Output{Kind: sessionize.KindEvent, Offset: uint64(offsets[p]), SessionID: "s-" + r.Event.Device}
		rows[p] = append(rows[p], format.NewEventRow(p, &o, &r.Event))
	}
	// The lake: one committed batch per partition, without lost's event.
	for p, rs := range rows {
		b := &destination.Batch{ID: destination.BatchID(p, 1, 1), Org: "a", Partition: p, FirstSeq: 1, LastSeq: 1, Events: rs}
		if err := dest.Write(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}

	tgt := audit.Target{Org: "a", Name: "lake", Dest: dest, SLA: time.Minute,
		Frontier: func(p int) (uint64, error) { return lg.LastOffset(p) + 1, nil }}
	now := func() time.Time { return t0.Add(2 * time.Hour) }
	from, to := start, start.Add(time.Hour)
	check := func(deep bool, wantMissing int64) {
		t.Helper()
		aud := audit.New(audit.Options{Log: lg, DedupeWindow: cfg.DedupeWindow, Now: now, Deep: deep})
		rep, err := aud.Run(t.Context(), from, to, []audit.Target{tgt})
		if err != nil {
			t.Fatal(err)
		}
		r := rep.Results[0]
		if r.Total.Accepted != 10 || r.Total.Delivered != 10-wantMissing || r.Total.Missing != wantMissing || r.Total.Duplicated != 0 || r.Total.Pending != 0 {
			t.Fatalf("deep=%v: audit total %+v, want 10 accepted, %d missing", deep, r.Total, wantMissing)
		}
		if wantMissing == 0 {
			if !rep.Clean() || len(r.Missing) != 0 {
				t.Fatalf("deep=%v: audit not clean: %+v", deep, r.Missing)
			}
			return
		}
		if len(r.Missing) != 1 || r.Missing[0].DeviceID != lost || r.Missing[0].EventID != "order-1" {
			t.Fatalf("deep=%v: missing events %+v, want order-1 of %s", deep, r.Missing, lost)
		}
	}
	check(false, 1)
	check(true, 1)

	aud := audit.New(audit.Options{Log: lg, DedupeWindow: cfg.DedupeWindow, Now: now})
	res, _, err := aud.Backfill(t.Context(), from, to, []audit.Target{tgt}, audit.BackfillOptions{Sessions: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Events != 1 {
		t.Fatalf("backfill wrote %+v, want lost's event only", res[0])
	}
	check(false, 0)
	check(true, 0)
	again, _, err := aud.Backfill(t.Context(), from, to, []audit.Target{tgt}, audit.BackfillOptions{Sessions: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Events != 0 {
		t.Fatalf("second backfill wrote %+v", again[0])
	}
}
