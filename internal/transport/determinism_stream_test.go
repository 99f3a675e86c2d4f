package transport_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/fault"
	"github.com/tidemark/tidemark/internal/stream"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestReplayIsByteIdenticalWithStreaming is the determinism test with the
// streaming pipeline beside the batch pipeline on the same log: disabled,
// enabled (live tail subscriber, webhooks delivering), and crashing (its
// handler panics on most events, its webhook receiver answers 500, and the
// stage is killed and restarted every few milliseconds). The log is appended
// while the streams run, so they really follow it. All lakes must be
// byte-identical to the one without streaming.
func TestReplayIsByteIdenticalWithStreaming(t *testing.T) {
	recs := recordedLog()
	base := t.TempDir()
	appendLog(t, base, recs)
	if !runPipeline(t, base, 0) {
		t.Fatal("pipeline did not finish")
	}
	want := tree(t, base)

	var received atomic.Int64
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		received.Add(int64(bytes.Count(b, []byte(`"event_id"`))))
	}))
	defer ok.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	defer failing.Close()

	for _, mode := range []string{"enabled", "crashing"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			url, faults := ok.URL, fault.Set{}
			if mode == "crashing" {
				url, faults = failing.URL, fault.Set{StreamPanicOnEvent: "Click"}
			}
			var hub *stream.Hub
			newStream := func(l *eventlog.Log) *stream.Stream {
				reg := prometheus.NewRegistry()
				var err error
				if hub, err = stream.NewHub(reg); err != nil {
					t.Fatal(err)
				}
				st, err := stream.New(stream.Options{Log: l, DataDir: dir, Hub: hub, Registerer: reg, Logger: slog.New(slog.DiscardHandler),
					PageIdle: time.Minute, SessionIdle: time.Minute, Faults: faults, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
					Webhooks: []stream.Webhook{{Org: "a", Name: "hook", URL: url, Secret: []byte("determinism-secret-01"),
						Filter: stream.NewFilter("a", nil, nil, nil), BatchSize: 50, Timeout: time.Second, RetryFor: 20 * time.Millisecond}}})
				if err != nil {
					t.Fatal(err)
				}
				return st
			}
			received.Store(0)
			var liveSeen atomic.Int64
			side := func(ctx context.Context, l *eventlog.Log) (<-chan struct{}, func()) {
				st := newStream(l)
				sub, unsub, err := hub.Subscribe(stream.NewFilter("", nil, nil, nil))
				if err != nil {
					t.Fatal(err)
				}
				var wg sync.WaitGroup
				wg.Add(3)
				go func() { // the live tail's one subscriber
					defer wg.Done()
					defer unsub()
					for {
						select {
						case <-ctx.Done():
							return
						case <-sub.C():
							liveSeen.Add(1)
						}
					}
				}()
				go func() { // the stage, restarted after every failure or kill
					defer wg.Done()
					rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
					for ctx.Err() == nil {
						runCtx, cancel := context.WithCancel(ctx)
						if mode == "crashing" {
							time.AfterFunc(time.Duration(2+rng.IntN(30))*time.Millisecond, cancel)
						}
						func() {
							defer func() { recover() }()
							st.Run(runCtx)
						}()
						cancel()
					}
				}()
				fed := make(chan struct{})
				go func() { // the log arrives while the streams run
					defer wg.Done()
					defer close(fed)
					for p := range parts {
						for i := 0; i < len(recs[p]); i += 200 {
							if err := l.AppendRecords(ctx, p, recs[p][i:min(i+200, len(recs[p]))]); err != nil {
								if ctx.Err() == nil {
									t.Error(err)
								}
								return
							}
							time.Sleep(time.Millisecond) // pacing: the streams follow a growing log, not a complete one
						}
					}
				}()
				return fed, wg.Wait
			}
			// A first run creates the webhook cursors at the (empty) log's
			// tail, so the webhook follows the whole log.
			if !runPipelineWith(t, dir, 0, func(ctx context.Context, l *eventlog.Log) (<-chan struct{}, func()) {
				st := newStream(l)
				runCtx, cancel := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() { st.Run(runCtx); close(done) }()
				if !probe.Poll(time.Minute, func() bool { keep, _ := st.Hold(0); return keep > 0 }) {
					t.Error("webhook cursors not loaded within a minute")
				}
				cancel()
				<-done
				return closedChan, func() {}
			}) {
				t.Fatal("empty pipeline did not finish")
			}
			if !runPipelineWith(t, dir, 0, side) {
				t.Fatal("pipeline did not finish")
			}
			got := tree(t, dir)
			if len(got) != len(want) {
				t.Errorf("%d files, want %d", len(got), len(want))
			}
			for k, v := range want {
				if !bytes.Equal(v, got[k]) {
					t.Errorf("%s differs from the lake without streaming", k)
				}
			}
			t.Logf("streaming %s: live tail saw %d events, webhook receiver %d", mode, liveSeen.Load(), received.Load())
			if mode == "enabled" && (liveSeen.Load() == 0 || received.Load() == 0) {
				t.Error("the streaming pipeline did not run")
			}
		})
	}
}
