package audit_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/blob"
	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/fault"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/pipeline"
	"github.com/tidemark/tidemark/internal/sessionize"
	"github.com/tidemark/tidemark/internal/transport"
)

const parts = 3

var cfg = sessionize.Config{PageIdle: 20 * time.Second, SessionIdle: time.Minute, DedupeWindow: 30 * time.Minute}

// start is an hour boundary; the log begins 10 minutes before it.
var start = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

// history is a log of about 2.5 hours: two orgs, client retries within the
// dedupe window (delivered once), one retry across an hour boundary and one
// after the window (delivered twice). It returns the records by partition
// and how many rows org "a" must have in its destination.
func history() (map[int][]event.Record, int) {
	rng := rand.New(rand.NewPCG(3, 4))
	recs := map[int][]event.Record{}
	t := start.Add(-10 * time.Minute).UnixNano()
	add := func(e event.Event) {
		e.ReceivedAt, e.EventTime = t, t
		p := eventlog.PartitionOf(e.Org, e.Device, parts)
		recs[p] = append(recs[p], event.Record{Kind: event.KindEvent, Time: t, Event: e})
	}
	ids := map[string]bool{}
	want := 0
	var prev event.Event
	var late []event.Event // resent after the dedupe window
	for i := range 3000 {
		t += int64(rng.IntN(6000)) * int64(time.Millisecond)
		org := []string{"a", "a", "b"}[rng.IntN(3)]
		dev := fmt.Sprintf("d%02d", rng.IntN(40))
		e := event.Event{ID: fmt.Sprintf("m%05d", i), Org: org, Device: dev, AnonymousID: dev, Type: "track", Name: "Click",
			Properties: []byte(fmt.Sprintf(`{"i":%d}`, i))}
		if rng.IntN(4) == 0 {
			e.Type, e.Name, e.URL = "page", "", fmt.Sprintf("https://x.test/%d", rng.IntN(9))
		}
		if rng.IntN(40) == 0 && i > 0 {
			e = prev // a client retry, seconds later
		}
		if i == 100 {
			late = append(late, e)
		}
		// Across the 11:00 boundary: sent at 10:59:59, retried at 11:00:01.
		if h := start.Add(time.Hour).UnixNano(); t < h && t+int64(6*time.Second) >= h {
			t = h - int64(time.Second)
			add(e)
			t += 2 * int64(time.Second)
		}
		if i == 1500 {
			for _, l := range late {
				add(l)
				if l.Org == "a" {
					want++
				}
			}
		}
		add(e)
		prev = e
		if e.Org == "a" && !ids[e.ID] {
			want++
		}
		ids[e.ID] = true
		for p := range parts {
			recs[p] = append(recs[p], event.Record{Kind: event.KindTick, Time: t})
		}
	}
	// An hour of silence closes every entity; a tick later still ages out
	// the batches holding those closures.
	for p := range parts {
		recs[p] = append(recs[p], event.Record{Kind: event.KindTick, Time: t + int64(time.Hour)},
			event.Record{Kind: event.KindTick, Time: t + 2*int64(time.Hour)})
	}
	return recs, want
}

type env struct {
	dir  string
	lg   *eventlog.Log
	sz   *pipeline.Sessionizers
	tr   *transport.Transport
	dest *blob.Blob
	aud  *audit.Auditor
	tgt  audit.Target
}

// setup writes the history to a log and delivers it to a local lake with the
// real pipeline.
func setup(t *testing.T, dropPage func(string) bool) (*env, int) {
	t.Helper()
	recs, want := history()
	e := &env{dir: t.TempDir()}
	reg := prometheus.NewRegistry()
	var err error
	e.lg, err = eventlog.Open(filepath.Join(e.dir, "data"), eventlog.Options{Partitions: parts, Registerer: reg, Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.lg.Close() })
	for p := range parts {
		if err := e.lg.AppendRecords(t.Context(), p, recs[p]); err != nil {
			t.Fatal(err)
		}
	}
	if e.sz, err = pipeline.NewSessionizers(e.lg, e.lg.State(), cfg, reg, slog.Default()); err != nil {
		t.Fatal(err)
	}
	m, err := transport.NewMetrics(reg, func() int64 { return 0 })
	if err != nil {
		t.Fatal(err)
	}
	if e.dest, err = blob.Open(t.Context(), "file://"+filepath.Join(e.dir, "lake"), format.Codec{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.dest.Close() })
	var dest destination.Destination = e.dest
	if dropPage != nil {
		dest = fault.DropPages(dest, dropPage)
	}
	e.tr = transport.New(transport.Options{Org: "a", Name: "lake", Dest: dest, Log: e.lg, Outputs: e.sz, Metrics: m,
		Logger: slog.Default(), Flush: transport.Flush{MaxEvents: 200, MaxBytes: 1 << 20, MaxAge: 5 * time.Minute}})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 2)
	go func() { errc <- e.sz.Run(ctx) }()
	go func() { errc <- e.tr.Run(ctx) }()
	// Generous: under the race step on a loaded 2-core machine a pipeline
	// run is ~20x slower than alone (2 minutes was seen to be too short).
	const within = 10 * time.Minute
	deadline := time.Now().Add(within)
	for !e.delivered(t) {
		if time.Now().After(deadline) {
			t.Fatalf("pipeline did not deliver the history within %v", within)
		}
		select {
		case err := <-errc:
			t.Fatalf("stage ended early: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	e.aud = audit.New(audit.Options{Log: e.lg, DedupeWindow: cfg.DedupeWindow,
		Now: func() time.Time { return start.Add(24 * time.Hour) }})
	e.tgt = audit.Target{Org: "a", Name: "lake", Dest: e.dest, SLA: time.Minute, Frontier: e.tr.Frontier}
	return e, want
}

func (e *env) delivered(t *testing.T) bool {
	for p := range parts {
		if e.sz.Cursor(p) < e.lg.LastOffset(p) {
			return false
		}
		if prog, err := e.tr.Progress(p); err != nil {
			t.Fatal(err)
		} else if prog < e.sz.NextSeq(p)-1 {
			return false
		}
	}
	return true
}

func (e *env) audit(t *testing.T) *audit.Result {
	t.Helper()
	rep, err := e.aud.Run(t.Context(), start.Add(-time.Hour), start.Add(4*time.Hour), []audit.Target{e.tgt})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || len(rep.Results[0].Hours) != 5 {
		t.Fatalf("report has %d results", len(rep.Results))
	}
	return &rep.Results[0]
}

// lakeRows reads every committed event row of the lake, by event id, with
// the destination's own reader.
func (e *env) lakeRows(t *testing.T) map[string][]format.EventRow {
	t.Helper()
	rows := map[string][]format.EventRow{}
	objs, err := filepath.Glob(filepath.Join(e.dir, "lake", "_manifests", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		id := filepath.Base(o[:len(o)-len(".json")])
		m, ok, err := e.dest.Manifest(t.Context(), id)
		if err != nil || !ok {
			t.Fatalf("manifest %s: %v %v", id, ok, err)
		}
		for _, f := range m.Files {
			if f.Table != format.Events {
				continue
			}
			if _, err := os.Stat(filepath.Join(e.dir, "lake", f.Path)); os.IsNotExist(err) {
				continue // deleted by the test
			}
			got, err := e.dest.ReadFileEvents(t.Context(), f)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range got {
				rows[r.EventID] = append(rows[r.EventID], r)
			}
		}
	}
	return rows
}

func checkClean(t *testing.T, r *audit.Result, want int) {
	t.Helper()
	tot := r.Total
	if tot.Accepted != int64(want) || tot.Delivered != int64(want) || tot.Missing != 0 || tot.Pending != 0 || tot.Duplicated != 0 {
		t.Fatalf("audit total %+v, want %d accepted and delivered, nothing missing or duplicated", tot, want)
	}
	if !tot.InLog {
		t.Fatal("hours reported as not in the log")
	}
}

// TestAuditCleanLake: the pipeline's lake matches the log exactly, including
// retries within the window (once), across an hour boundary (once) and
// after the window (twice).
func TestAuditCleanLake(t *testing.T) {
	e, want := setup(t, nil)
	rows := e.lakeRows(t)
	n := 0
	for _, rs := range rows {
		n += len(rs)
	}
	if n != want {
		t.Fatalf("the pipeline delivered %d rows, the history says %d", n, want)
	}
	r := e.audit(t)
	checkClean(t, r, want)
	if len(r.Missing) != 0 {
		t.Fatalf("missing events listed: %v", r.Missing)
	}
}

// TestLostObjectsAuditAndBackfill deletes committed data files from the lake
// (a lifecycle rule, a bad cleanup): the audit names their events, backfill
// restores exactly those rows with the same sessions and pages, and a
// second backfill writes nothing.
func TestLostObjectsAuditAndBackfill(t *testing.T) {
	e, want := setup(t, nil)
	before := e.lakeRows(t)
	files, err := filepath.Glob(filepath.Join(e.dir, "lake", "events", "dt=*", "hr=*", "*.parquet"))
	if err != nil || len(files) < 6 {
		t.Fatalf("%d events files, %v", len(files), err)
	}
	lost := map[string]bool{}
	for _, f := range []string{files[1], files[len(files)/2], files[len(files)-2]} {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := format.ReadEvents(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got {
			lost[r.EventID] = true
		}
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}

	r := e.audit(t)
	if r.Total.Missing != int64(len(lost)) || r.Total.Accepted != int64(want) || r.Total.Duplicated != 0 {
		t.Fatalf("after deleting %d events: audit total %+v", len(lost), r.Total)
	}
	for _, m := range r.Missing {
		if !lost[m.EventID] {
			t.Fatalf("audit names %s missing, which was not deleted", m.EventID)
		}
	}
	if len(r.Missing) != len(lost) {
		t.Fatalf("audit lists %d missing events, %d were deleted", len(r.Missing), len(lost))
	}

	dry, _, err := e.aud.Backfill(t.Context(), start.Add(-time.Hour), start.Add(4*time.Hour), []audit.Target{e.tgt},
		audit.BackfillOptions{DryRun: true, Sessions: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if dry[0].Events != len(lost) || dry[0].Written || dry[0].Held != 0 {
		t.Fatalf("dry run: %+v", dry[0])
	}
	if r := e.audit(t); r.Total.Missing != int64(len(lost)) {
		t.Fatalf("a dry run changed the lake: %+v", r.Total)
	}

	var progress []int
	res, _, err := e.aud.Backfill(t.Context(), start.Add(-time.Hour), start.Add(4*time.Hour), []audit.Target{e.tgt},
		audit.BackfillOptions{Sessions: cfg, BatchSize: 50, Progress: func(done, total int) { progress = append(progress, done) }})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Events != len(lost) || len(res[0].Batches) < 2 || progress[len(progress)-1] != len(lost) {
		t.Fatalf("backfill: %+v, progress %v", res[0], progress)
	}
	checkClean(t, e.audit(t), want)
	after := e.lakeRows(t)
	for id, rs := range before {
		if len(after[id]) != len(rs) {
			t.Fatalf("event %s: %d rows after backfill, %d before", id, len(after[id]), len(rs))
		}
		for i := range rs {
			if !slices.ContainsFunc(after[id], func(r format.EventRow) bool { return equalRows(r, rs[i]) }) {
				t.Fatalf("event %s: backfilled row differs:\nbefore %+v\nafter  %+v", id, rs[i], after[id])
			}
		}
	}
	manifests, _ := filepath.Glob(filepath.Join(e.dir, "lake", "_manifests", "bf-*.json"))
	if len(manifests) != len(res[0].Batches) {
		t.Fatalf("%d backfill manifests for %d batches", len(manifests), len(res[0].Batches))
	}
	for _, b := range res[0].Batches {
		m, ok, err := e.dest.Manifest(t.Context(), b.ID)
		if err != nil || !ok || !m.Backfill {
			t.Fatalf("manifest of %s: %+v %v %v", b.ID, m, ok, err)
		}
	}

	again, _, err := e.aud.Backfill(t.Context(), start.Add(-time.Hour), start.Add(4*time.Hour), []audit.Target{e.tgt},
		audit.BackfillOptions{Sessions: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if again[0].Events != 0 || len(again[0].Batches) != 0 {
		t.Fatalf("second backfill wrote %+v", again[0])
	}
}

func equalRows(a, b format.EventRow) bool { return reflect.DeepEqual(a, b) }

// TestDroppedPagesAuditAndBackfill replays the seed incident: the transport
// silently leaves out the events of some pages. The audit finds exactly
// those events, and backfill restores them.
func TestDroppedPagesAuditAndBackfill(t *testing.T) {
	e, want := setup(t, func(page string) bool { return page[len(page)-1]%7 == 0 })
	r := e.audit(t)
	if r.Total.Missing == 0 || r.Total.Delivered+r.Total.Missing != int64(want) {
		t.Fatalf("audit with dropped pages: %+v (want %d accepted)", r.Total, want)
	}
	for _, m := range r.Missing {
		if m.EventID == "" || m.ReceivedAt.IsZero() {
			t.Fatalf("incomplete missing event %+v", m)
		}
	}
	res, _, err := e.aud.Backfill(t.Context(), start.Add(-time.Hour), start.Add(4*time.Hour), []audit.Target{e.tgt},
		audit.BackfillOptions{Sessions: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if int64(res[0].Events) != r.Total.Missing {
		t.Fatalf("backfilled %d, audit found %d missing", res[0].Events, r.Total.Missing)
	}
	checkClean(t, e.audit(t), want)
	for id, rs := range e.lakeRows(t) {
		for _, row := range rs {
			if row.PageID != nil && (*row.PageID)[len(*row.PageID)-1]%7 == 0 && row.SessionID == "" {
				t.Fatalf("backfilled event %s has no session", id)
			}
		}
	}
}

// TestDuplicateFound: a second copy of committed events is reported as
// duplicated.
func TestDuplicateFound(t *testing.T) {
	e, want := setup(t, nil)
	rows := e.lakeRows(t)
	var dup []format.EventRow
	for _, rs := range rows {
		if len(dup) < 5 && rs[0].LogPartition == 1 {
			dup = append(dup, rs[0])
		}
	}
	slices.SortFunc(dup, func(a, b format.EventRow) int { return int(a.LogOffset - b.LogOffset) })
	ids := make([]string, len(dup))
	for i := range dup {
		ids[i] = dup[i].EventID
	}
	b := &destination.Batch{ID: destination.BackfillBatchID(1, dup[0].LogOffset, dup[len(dup)-1].LogOffset, destination.EventIDsDigest(ids)),
		Org: "a", Partition: 1, Backfill: true, Events: dup}
	if err := e.dest.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	r := e.audit(t)
	if r.Total.Duplicated != int64(len(dup)) || r.Total.Missing != 0 || r.Total.Delivered != int64(want+len(dup)) {
		t.Fatalf("audit after duplicating %d events: %+v", len(dup), r.Total)
	}
}

// TestRetainedLogStart: hours before the oldest retained record are
// reported as not in the log, with the log's start, and never as missing;
// while retention has removed nothing, every hour is in the log.
func TestRetainedLogStart(t *testing.T) {
	e, _ := setup(t, nil)
	r := e.audit(t)
	if !r.Total.InLog {
		t.Fatal("an untrimmed log reports hours as not in the log")
	}
	// Remove each partition's records before 10:40, as retention would.
	cut := start.Add(40 * time.Minute)
	for p := range parts {
		first, err := e.lg.FirstOffset(p)
		if err != nil {
			t.Fatal(err)
		}
		off := first
		err = e.lg.Scan(p, first, 0, func(o uint64, val []byte) error {
			h, err := event.Peek(val)
			if err != nil || h.Time >= cut.UnixNano() {
				return errStop
			}
			off = o + 1
			return nil
		})
		if err != nil && err != errStop {
			t.Fatal(err)
		}
		if err := e.lg.DeleteBefore(p, off); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := e.aud.Run(t.Context(), start.Add(-time.Hour), start.Add(4*time.Hour), []audit.Target{e.tgt})
	if err != nil {
		t.Fatal(err)
	}
	if rep.LogStart == nil || rep.LogStart.Before(cut) || rep.LogStart.After(cut.Add(10*time.Second)) {
		t.Fatalf("log start %v, want just after %v", rep.LogStart, cut)
	}
	res := rep.Results[0]
	for _, h := range res.Hours {
		if want := !h.Hour.Before(cut); h.InLog != want {
			t.Errorf("hour %s: in_log %v, want %v", h.Hour, h.InLog, want)
		}
		if !h.InLog && (h.Accepted != 0 || h.Missing != 0) {
			t.Errorf("hour %s not in the log reports %+v", h.Hour, h)
		}
	}
	if res.Total.Missing != 0 || res.Total.Duplicated != 0 {
		t.Fatalf("retention made events missing or duplicated: %+v", res.Total)
	}
}

var errStop = errors.New("stop")
