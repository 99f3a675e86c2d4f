package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	lg "github.com/tidemark/tidemark/internal/loadgen"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// ackRecorder is the load generator's HTTP transport, recording when each
// event's batch was acknowledged (the 200 response arrived).
type ackRecorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	at   map[string]time.Time
}

func (a *ackRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, err
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	resp, err := a.next.RoundTrip(req)
	if err != nil || resp.StatusCode != 200 {
		return resp, err
	}
	now := time.Now()
	var b struct {
		Batch []struct {
			ID string `json:"messageId"`
		} `json:"batch"`
	}
	json.Unmarshal(body, &b)
	a.mu.Lock()
	for _, e := range b.Batch {
		if _, ok := a.at[e.ID]; !ok {
			a.at[e.ID] = now
		}
	}
	a.mu.Unlock()
	return resp, nil
}

// procCPU is the user+system CPU time the server process has used.
func procCPU(b *testing.B, p *proc) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64) // fields 14 and 15 of stat(5), in clock ticks (100 Hz)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// arrivals records when each event id first arrived.
type arrivals struct {
	mu sync.Mutex
	at map[string]time.Time
}

func (r *arrivals) add(ids []string) {
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, id := range ids {
		if _, ok := r.at[id]; !ok {
			r.at[id] = now
		}
	}
}

func (r *arrivals) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.at)
}

// percentiles of arrival - ack over the acknowledged events; an event that
// arrived before its client read the ack counts as 0.
func percentiles(acks map[string]time.Time, got *arrivals) (p50, p99 time.Duration, early, missing int) {
	got.mu.Lock()
	defer got.mu.Unlock()
	var d []time.Duration
	for id, ack := range acks {
		at, ok := got.at[id]
		if !ok {
			missing++
			continue
		}
		l := at.Sub(ack)
		if l < 0 {
			early++
			l = 0
		}
		d = append(d, l)
	}
	if len(d) == 0 {
		return 0, 0, early, missing
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100], early, missing
}

// streamConsumers starts a webhook receiver and returns its URL, and opens
// the arrivals at it and (see openLiveRecorder) at the live tail.
func streamConsumers(b *testing.B) (hookURL string, hook, live *arrivals) {
	hook, live = &arrivals{at: map[string]time.Time{}}, &arrivals{at: map[string]time.Time{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rq struct {
			Events []struct {
				ID string `json:"event_id"`
			} `json:"events"`
		}
		json.NewDecoder(r.Body).Decode(&rq)
		ids := make([]string, len(rq.Events))
		for i, e := range rq.Events {
			ids[i] = e.ID
		}
		hook.add(ids)
	}))
	b.Cleanup(srv.Close)
	return srv.URL, hook, live
}

func openLiveRecorder(b *testing.B, addr string, live *arrivals) {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", addr+"/v1/live", nil)
	req.SetBasicAuth(testReadKey, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("live tail: %v %v", resp, err)
	}
	rd := bufio.NewReaderSize(resp.Body, 1<<20)
	rd.ReadString('\n')
	go func() {
		defer resp.Body.Close()
		readSSE(rd, func(kind, data string) error {
			if kind == "event" {
				var it struct {
					ID string `json:"event_id"`
				}
				json.Unmarshal([]byte(data), &it)
				live.add([]string{it.ID})
			}
			return nil
		})
	}()
}

// BenchmarkStreamPipeline measures the streaming pipeline against the real
// binary (run it once: -benchtime 1x; see BENCHMARKS.md):
//
//   - latency from ingest acknowledgement to webhook receipt and to live-tail
//     receipt at a nominal 5,000 events/s;
//   - ingest throughput (unpaced load) with the streaming pipeline on (one
//     webhook of every event, one live-tail subscriber) and off
//     (stream.enabled: false), alternating, TIDEMARK_BENCH_PAIRS times each
//     (default 3), with the server's CPU time per acknowledged event.
//
// TIDEMARK_BENCH_SECONDS sets the load duration of each run (default 20).
func BenchmarkStreamPipeline(b *testing.B) {
	secs := 20 * time.Second
	if v := os.Getenv("TIDEMARK_BENCH_SECONDS"); v != "" {
		d, err := time.ParseDuration(v + "s")
		if err != nil {
			b.Fatal(err)
		}
		secs = d
	}
	pairs := 3
	if v := os.Getenv("TIDEMARK_BENCH_PAIRS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		pairs = n
	}
	start := func(streamOn bool) (*proc, *arrivals, *arrivals) {
		dir := b.TempDir()
		port := testenv.FreePort(b)
		url, hook, live := streamConsumers(b)
		extra := webhookYAML("bench", url, "        batch_size: 100\n")
		if !streamOn {
			extra = ""
		}
		cfg := orgsConfig(b, dir, port, fmt.Sprintf(`stream:
  enabled: %v
orgs:
  - id: acme
    write_keys: [%q]
    read_keys: [%q]
    destinations:
      - name: lake
        url: file://%s/lake
        flush: {max_age: 5s}
%s`, streamOn, testKey, testReadKey, dir, extra))
		p := startProc(b, cfg, port)
		if streamOn {
			openLiveRecorder(b, p.addr, live)
		}
		return p, hook, live
	}
	for range b.N {
		// Latency at nominal load.
		p, hook, live := start(true)
		rec := &ackRecorder{next: http.DefaultTransport, at: map[string]time.Time{}}
		res, err := lg.Run(b.Context(), lg.Options{URL: p.addr, WriteKey: testKey, Connections: 16, BatchSize: 50,
			Duration: secs, Rate: 5000, Devices: 1000, Transport: rec}, io.Discard)
		if err != nil {
			b.Fatal(err)
		}
		probe.Until(b, 2*time.Minute, "webhook and live tail receipt", func() (bool, string) {
			return hook.len() >= int(res.Acked) && live.len() >= int(res.Acked), fmt.Sprintf("webhook %d, live %d of %d", hook.len(), live.len(), res.Acked)
		})
		h50, h99, hEarly, hMiss := percentiles(rec.at, hook)
		l50, l99, lEarly, lMiss := percentiles(rec.at, live)
		b.Logf("nominal load: %d events acked at %.0f events/s (ack latency p50 %v, p99 %v)", res.Acked, res.EventsPerSec, res.Latency.P50, res.Latency.P99)
		b.Logf("ack -> webhook receipt:   p50 %v  p99 %v  (%d arrived before the client read the ack, %d missing)", h50, h99, hEarly, hMiss)
		b.Logf("ack -> live-tail receipt: p50 %v  p99 %v  (%d arrived before the client read the ack, %d missing)", l50, l99, lEarly, lMiss)
		b.ReportMetric(float64(h50.Microseconds())/1000, "webhook-p50-ms")
		b.ReportMetric(float64(h99.Microseconds())/1000, "webhook-p99-ms")
		b.ReportMetric(float64(l50.Microseconds())/1000, "live-p50-ms")
		b.ReportMetric(float64(l99.Microseconds())/1000, "live-p99-ms")
		p.stop()

		// Throughput, streaming on versus off, alternating; and the server's
		// CPU time per acknowledged event, which a shared machine disturbs
		// less than wall-clock throughput.
		type sample struct{ rate, cpuPerEvent float64 }
		runs := map[bool][]sample{}
		for i := range 2 * pairs {
			on := i%2 == 1
			p, hook, _ := start(on)
			cpu0 := procCPU(b, p)
			res, err := lg.Run(b.Context(), lg.Options{URL: p.addr, WriteKey: testKey, Duration: secs}, io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			cpu := procCPU(b, p) - cpu0
			runs[on] = append(runs[on], sample{res.EventsPerSec, cpu.Seconds() * 1e6 / float64(res.Acked)})
			b.Logf("unpaced, streaming %-5v: %6.0f events/s acked (ack p50 %v, p99 %v), server CPU %.1f µs/event; webhook received %d by the end of the load",
				on, res.EventsPerSec, res.Latency.P50.Round(time.Millisecond), res.Latency.P99.Round(time.Millisecond),
				cpu.Seconds()*1e6/float64(res.Acked), hook.len())
			p.stop()
		}
		median := func(v []sample, f func(sample) float64) float64 {
			x := make([]float64, len(v))
			for i := range v {
				x[i] = f(v[i])
			}
			slices.Sort(x)
			return x[len(x)/2]
		}
		rate := func(s sample) float64 { return s.rate }
		cpu := func(s sample) float64 { return s.cpuPerEvent }
		b.Logf("ingest throughput (median of %d): streaming off %.0f events/s, on %.0f events/s: on/off = %.2f", pairs,
			median(runs[false], rate), median(runs[true], rate), median(runs[true], rate)/median(runs[false], rate))
		b.Logf("server CPU per event (median of %d): streaming off %.1f µs, on %.1f µs: on/off = %.2f", pairs,
			median(runs[false], cpu), median(runs[true], cpu), median(runs[true], cpu)/median(runs[false], cpu))
		b.ReportMetric(median(runs[true], rate)/median(runs[false], rate), "on/off-throughput")
		b.ReportMetric(median(runs[true], cpu)/median(runs[false], cpu), "on/off-cpu-per-event")
	}
}
