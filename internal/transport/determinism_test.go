package transport_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"os"
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

const parts = 3

// recordedLog is a fixed log: two orgs, many devices and pages, ticks every
// 100 ms of log time, and a final tick an hour later so everything closes.
func recordedLog() map[int][]event.Record {
	rng := rand.New(rand.NewPCG(1, 2))
	out := map[int][]event.Record{}
	t := int64(1_750_000_000) * 1e9
	var prev event.Event
	for i := range 4000 {
		t += int64(rng.IntN(20)) * int64(time.Millisecond)
		org := []string{"a", "b"}[rng.IntN(2)]
		dev := fmt.Sprintf("d%03d", rng.IntN(150))
		typ := "track"
		if rng.IntN(5) == 0 {
			typ = "page"
		}
		e := event.Event{ID: fmt.Sprintf("m%05d", i), Org: org, Device: dev, AnonymousID: dev, Type: typ,
			ReceivedAt: t, EventTime: t, Properties: []byte(fmt.Sprintf(`{"i":%d}`, i))}
		if typ == "page" {
			e.URL = fmt.Sprintf("https://x.test/%d", rng.IntN(30))
		} else {
			e.Name = "Click"
		}
		if rng.IntN(50) == 0 && i > 0 {
			// A client retry: the previous call again, same messageId and
			// device, received later. The sessionizer drops it.
			e = prev
			e.ReceivedAt, e.EventTime = t, t
		}
		prev = e
		org, dev = e.Org, e.Device
		p := eventlog.PartitionOf(org, dev, parts)
		out[p] = append(out[p], event.Record{Kind: event.KindEvent, Time: t, Event: e})
		if i%10 == 0 {
			for p := range parts {
				out[p] = append(out[p], event.Record{Kind: event.KindTick, Time: t})
			}
		}
	}
	// An hour of silence closes every entity; a second tick later still
	// ages out the batches holding those closures.
	for p := range parts {
		out[p] = append(out[p], event.Record{Kind: event.KindTick, Time: t + int64(time.Hour)},
			event.Record{Kind: event.KindTick, Time: t + 2*int64(time.Hour)})
	}
	return out
}

type dest struct {
	org, name, format string
	flush             transport.Flush
}

var dests = []dest{
	{"a", "lake", "parquet", transport.Flush{MaxEvents: 97, MaxBytes: 1 << 20, MaxAge: 2 * time.Second}},
	{"b", "json", "ndjson", transport.Flush{MaxEvents: 1000, MaxBytes: 16 << 10, MaxAge: 5 * time.Second}},
}

var cfg = sessionize.Config{PageIdle: 3 * time.Second, SessionIdle: 5 * time.Second, DedupeWindow: time.Hour}

// runPipeline runs the sessionizers and transports over dir's log until every
// destination has delivered everything, or until stopAfter passes (0: never).
// It reports whether it finished.
func runPipeline(t *testing.T, dir string, stopAfter time.Duration) bool {
	t.Helper()
	return runPipelineWith(t, dir, stopAfter, nil)
}

// sideStage runs beside the batch pipeline on the same log until ctx ends
// (the streaming pipeline, in TestReplayIsByteIdenticalWithStreaming). fed
// is closed once it has appended what it appends; wait returns when it has
// stopped.
type sideStage func(ctx context.Context, l *eventlog.Log) (fed <-chan struct{}, wait func())

// runPipelineWith is runPipeline with a side stage (nil: none).
func runPipelineWith(t *testing.T, dir string, stopAfter time.Duration, side sideStage) bool {
	t.Helper()
	return runDests(t, dir, stopAfter, side, dests, nil)
}

// runDests is runPipelineWith delivering to ds, whose transports share
// their batches through shared (nil: they do not).
func runDests(t *testing.T, dir string, stopAfter time.Duration, side sideStage, ds []dest, shared *transport.Shared) bool {
	t.Helper()
	l, sz, m := openPipeline(t, dir)
	defer l.Close()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var ts []*transport.Transport
	for _, d := range ds {
		codec, err := format.ParseCodec(d.format, "")
		if err != nil {
			t.Fatal(err)
		}
		bd, err := blob.Open(ctx, "file://"+filepath.Join(dir, d.org+"-"+d.name), codec)
		if err != nil {
			t.Fatal(err)
		}
		defer bd.Close()
		ts = append(ts, transport.New(transport.Options{Org: d.org, Name: d.name, Dest: bd, Flush: d.flush,
			Log: l, Outputs: sz, Metrics: m, Logger: slog.Default(), Shared: shared}))
	}
	errc := make(chan error, 1+len(ts))
	go func() { errc <- sz.Run(ctx) }()
	for _, tr := range ts {
		go func() { errc <- tr.Run(ctx) }()
	}
	fed := make(<-chan struct{})
	if side != nil {
		var wait func()
		fed, wait = side(ctx, l)
		defer wait()
	} else {
		fed = closedChan
	}
	start := time.Now()
	done := func() bool {
		select {
		case <-fed:
		default:
			return false
		}
		for p := range parts {
			if sz.Cursor(p) < l.LastOffset(p) {
				return false
			}
			for _, tr := range ts {
				if prog, _ := tr.Progress(p); prog < sz.NextSeq(p)-1 {
					return false
				}
			}
		}
		return true
	}
	finished := false
	for {
		if done() {
			finished = true
			break
		}
		if stopAfter > 0 && time.Since(start) > stopAfter {
			break
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatal("pipeline did not finish within 5 minutes")
		}
		select {
		case err := <-errc:
			t.Fatalf("stage ended early: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	for range 1 + len(ts) {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	return finished
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// openPipeline opens dir's log with its sessionizers and transport metrics.
func openPipeline(t *testing.T, dir string) (*eventlog.Log, *pipeline.Sessionizers, *transport.Metrics) {
	t.Helper()
	reg := prometheus.NewRegistry()
	l, err := eventlog.Open(filepath.Join(dir, "data"), eventlog.Options{Partitions: parts, Registerer: reg, Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	sz, err := pipeline.NewSessionizers(l, l.State(), cfg, reg, slog.Default())
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	m, err := transport.NewMetrics(reg, func() int64 { return 0 })
	if err != nil {
		l.Close()
		t.Fatal(err)
	}
	return l, sz, m
}

func appendLog(t *testing.T, dir string, recs map[int][]event.Record) {
	t.Helper()
	l, err := eventlog.Open(filepath.Join(dir, "data"), eventlog.Options{Partitions: parts, Registerer: prometheus.NewRegistry(), Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for p := range parts {
		if err := l.AppendRecords(t.Context(), p, recs[p]); err != nil {
			t.Fatal(err)
		}
	}
}

// tree maps every file under the destination roots to its bytes.
func tree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	return treeOf(t, dir, dests)
}

// treeOf is tree for the destinations ds.
func treeOf(t *testing.T, dir string, ds []dest) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, d := range ds {
		root := filepath.Join(dir, d.org+"-"+d.name)
		err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(dir, path)
			out[rel], err = os.ReadFile(path)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// maxInterruptions bounds the interrupted run of TestReplayIsByteIdentical.
const maxInterruptions = 200

// interrupted runs the pipeline over dir's log, stopping it after a random
// window and restarting it, until it finishes. The window is 5-65 ms on a
// machine where the uninterrupted run takes 2s (uninterrupted, the time it
// took here), proportionally longer where it took longer (the race detector
// makes a run 20 times slower), and it doubles every 20 restarts: a restart
// slower than the window would otherwise never finish. After
// maxInterruptions restarts the test fails.
func interrupted(t *testing.T, dir string, uninterrupted time.Duration) {
	t.Helper()
	scale := max(1, float64(uninterrupted)/float64(2*time.Second))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	start := time.Now()
	for i := range maxInterruptions {
		window := time.Duration(scale*float64(time.Duration(5+rng.IntN(60))*time.Millisecond)) << (i / 20)
		if runPipeline(t, dir, window) {
			t.Logf("finished after %d interruptions in %v (windows scaled by %.1f, the last %v)", i, time.Since(start).Round(time.Millisecond), scale, window)
			return
		}
	}
	t.Fatalf("pipeline did not finish after %d interruptions in %v (windows of 5-65 ms scaled by %.1f, doubled every 20 restarts)", maxInterruptions, time.Since(start).Round(time.Second), scale)
}

// TestReplayIsByteIdentical runs the same recorded log through the batch
// pipeline three times: once straight through, once again in a fresh store,
// and once interrupted and restarted at random moments. All three lakes must
// be byte-for-byte identical (same keys, same bytes).
func TestReplayIsByteIdentical(t *testing.T) {
	recs := recordedLog()
	var trees []map[string][]byte
	var took time.Duration // by the last uninterrupted run
	for run := range 3 {
		dir := t.TempDir()
		appendLog(t, dir, recs)
		if run == 2 {
			interrupted(t, dir, took)
		} else {
			start := time.Now()
			if !runPipeline(t, dir, 0) {
				t.Fatal("pipeline did not finish")
			}
			took = time.Since(start)
			t.Logf("run %d: uninterrupted in %v", run, took.Round(time.Millisecond))
		}
		trees = append(trees, tree(t, dir))
	}
	if len(trees[0]) < 10 {
		t.Fatalf("only %d files written", len(trees[0]))
	}
	for run := 1; run < 3; run++ {
		sameTree(t, fmt.Sprintf("run %d", run), trees[0], trees[run])
	}
}

// sameTree reports every file of want that got lacks or holds with other
// bytes, and every file of got that want lacks.
func sameTree(t *testing.T, run string, want, got map[string][]byte) {
	t.Helper()
	for k, v := range want {
		if w, ok := got[k]; !ok {
			t.Errorf("%s lacks %s", run, k)
		} else if !bytes.Equal(v, w) {
			t.Errorf("%s: %s differs", run, k)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s has extra file %s", run, k)
		}
	}
}
