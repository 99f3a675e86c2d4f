package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/destination/blob"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// cloudPartitions is log.partitions in testConfig and orgsConfig.
const cloudPartitions = 4

// loader sends batches of events for one org from a few workers, paced, and
// retries every batch until it is acknowledged with 200 (same messageIds),
// across restarts of the process.
type loader struct {
	addr, key, prefix string
	perBatch          int

	mu     sync.Mutex
	acked  map[string]bool
	next   atomic.Int64
	stop   atomic.Bool
	wg     sync.WaitGroup
	non200 atomic.Int64 // answers other than 200 (the process was reachable)
	last   string       // the last non-200 answer
	acks   []ack        // under mu
}

// ack is one acknowledged batch: when its first attempt was sent and how
// long it took until a 200 (retries included).
type ack struct {
	at   time.Time
	took time.Duration
}

// startLoad starts workers that each send a batch of perBatch events every
// `every`.
func startLoad(t testing.TB, addr, key, prefix string, workers, perBatch int, every time.Duration) *loader {
	l := &loader{addr: addr, key: key, prefix: prefix, perBatch: perBatch, acked: map[string]bool{}}
	for w := range workers {
		l.wg.Add(1)
		go l.work(w, every)
	}
	t.Cleanup(func() { l.stop.Store(true); l.wg.Wait() })
	return l
}

func (l *loader) work(worker int, every time.Duration) {
	defer l.wg.Done()
	client := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for !l.stop.Load() {
		n := l.next.Add(1)
		var batch []map[string]any
		var ids []string
		for i := range l.perBatch {
			dev := fmt.Sprintf("%sw%d-dev-%d", l.prefix, worker, (int(n)*7+i)%30)
			id := fmt.Sprintf("%s%07d-%03d", l.prefix, n, i)
			typ := "track"
			if i%10 == 0 {
				typ = "page"
			}
			batch = append(batch, map[string]any{"type": typ, "messageId": id, "anonymousId": dev, "event": "Tick",
				"properties": map[string]any{"url": "https://x.test/" + dev, "n": n}})
			ids = append(ids, id)
		}
		body, _ := json.Marshal(map[string]any{"batch": batch})
		sent := time.Now()
		for {
			req, _ := http.NewRequest("POST", l.addr+"/v1/batch", bytes.NewReader(body))
			req.SetBasicAuth(l.key, "")
			resp, err := client.Do(req)
			if err == nil {
				var b bytes.Buffer
				b.ReadFrom(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
				l.non200.Add(1)
				l.mu.Lock()
				l.last = fmt.Sprintf("%d %s", resp.StatusCode, b.String())
				l.mu.Unlock()
			}
			<-time.After(20 * time.Millisecond)
		}
		l.mu.Lock()
		for _, id := range ids {
			l.acked[id] = true
		}
		l.acks = append(l.acks, ack{sent, time.Since(sent)})
		l.mu.Unlock()
		<-tick.C
	}
}

// Stop stops the workers (each finishes its batch, acknowledged) and returns
// every acknowledged event id.
func (l *loader) Stop() map[string]bool {
	l.stop.Store(true)
	l.wg.Wait()
	return l.Acked()
}

func (l *loader) Acked() map[string]bool { return snapshot(&l.mu, l.acked) }

// latencies returns how long the batches first sent in [from, to) took to be
// acknowledged, retries included, sorted.
func (l *loader) latencies(from, to time.Time) []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ds []time.Duration
	for _, a := range l.acks {
		if !a.at.Before(from) && a.at.Before(to) {
			ds = append(ds, a.took)
		}
	}
	slices.Sort(ds)
	return ds
}

// cloudLake is what a reader of a cloud destination sees, read through
// blob.Open, Manifests and ReadEvents (which verify every file against its
// manifest).
type cloudLake struct {
	Counts       map[string]int  // event id -> times committed
	EventOrgs    map[string]int  // org_id of the committed events -> count
	ManifestOrgs map[string]int  // org of the manifests -> count
	Files        map[string]bool // data files named by a manifest
	Manifests    int
}

func readCloud(ctx context.Context, url string) (cloudLake, error) {
	l := cloudLake{Counts: map[string]int{}, EventOrgs: map[string]int{}, ManifestOrgs: map[string]int{}, Files: map[string]bool{}}
	d, err := blob.Open(ctx, url, format.Codec{})
	if err != nil {
		return l, err
	}
	defer d.Close()
	for p := range cloudPartitions {
		ms, err := d.Manifests(ctx, p)
		if err != nil {
			return l, err
		}
		for _, m := range ms {
			l.Manifests++
			l.ManifestOrgs[m.Org]++
			for _, f := range m.Files {
				l.Files[f.Path] = true
			}
			rows, err := d.ReadEvents(ctx, m)
			if err != nil {
				return l, err
			}
			for _, r := range rows {
				l.Counts[r.EventID]++
				l.EventOrgs[r.OrgID]++
			}
		}
	}
	return l, nil
}

// missingOf returns how many ids of want the lake does not hold.
func (l cloudLake) missingOf(want map[string]bool) int { return missingIn(l.Counts, want) }

// missingIn returns how many ids of want counts (id -> copies) lacks.
func missingIn(counts map[string]int, want map[string]bool) int {
	n := 0
	for id := range want {
		if counts[id] == 0 {
			n++
		}
	}
	return n
}

// checkExactlyOnce reports every id of want not exactly once in the lake,
// and every id in the lake not in want.
func checkExactlyOnce(t testing.TB, what string, l cloudLake, want map[string]bool) {
	t.Helper()
	bad := 0
	for id := range want {
		if n := l.Counts[id]; n != 1 {
			if bad++; bad <= 10 {
				t.Errorf("%s: acknowledged event %s committed %d times, want 1", what, id, n)
			}
		}
	}
	for id := range l.Counts {
		if !want[id] {
			if bad++; bad <= 10 {
				t.Errorf("%s: event %s committed but never acknowledged", what, id)
			}
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d bad events in all", what, bad)
	}
}

// waitDelivered polls readCloud until every id of want is in the lake and
// returns the lake. It reads the destination only when gate (the metrics
// say nothing is pending) holds.
func waitDelivered(t testing.TB, timeout time.Duration, what, url string, want map[string]bool, gate func() (bool, string)) cloudLake {
	t.Helper()
	var l cloudLake
	probe.Until(t, timeout, what, func() (bool, string) {
		if ok, state := gate(); !ok {
			return false, state
		}
		var err error
		l, err = readCloud(t.Context(), url)
		if err != nil {
			return false, "read back: " + err.Error()
		}
		m := l.missingOf(want)
		return m == 0, fmt.Sprintf("%d of %d acknowledged events missing (%d manifests)", m, len(want), l.Manifests)
	})
	return l
}

// orphans lists the destination with the cloud's own SDK and returns the
// data objects no manifest names (the probe object, the claim marker and
// manifests aside).
func orphans(t testing.TB, url string) []string {
	t.Helper()
	objs := testenv.Objects(t, url) // list first: a file committed after is then in the lake
	l, err := readCloud(t.Context(), url)
	if err != nil {
		t.Fatalf("read back %s: %v", url, err)
	}
	var out []string
	for key := range objs {
		if strings.HasPrefix(key, "_manifests/") || key == blob.ProbeKey || key == blob.MarkerKey {
			continue
		}
		if !l.Files[key] {
			out = append(out, key)
		}
	}
	sort.Strings(out)
	return out
}

// destMetrics are the per-destination gauges and counters of /metrics.
type destMetrics struct {
	Up, Age, Delivered, Failures float64
	ok                           bool
}

func (d destMetrics) String() string {
	return fmt.Sprintf("up=%v age=%.1fs delivered=%v failures=%v", d.Up, d.Age, d.Delivered, d.Failures)
}

func (p *proc) dest(org, name string) destMetrics {
	labels := fmt.Sprintf(`{destination=%q,org=%q}`, name, org)
	var d destMetrics
	var ok1, ok2 bool
	d.Up, ok1 = p.metric("tidemark_destination_up" + labels)
	d.Age, ok2 = p.metric(fmt.Sprintf(`tidemark_oldest_undelivered_event_age_seconds{destination=%q,org=%q,table="events"}`, name, org))
	d.Delivered, _ = p.metric(fmt.Sprintf(`tidemark_delivered_events_total{destination=%q,org=%q,table="events"}`, name, org))
	d.Failures, _ = p.metric("tidemark_destination_failures_total" + labels)
	d.ok = ok1 && ok2
	return d
}

// settled is a waitDelivered gate: the destination is up and nothing is
// pending.
func (p *proc) settled(org, name string) func() (bool, string) {
	return func() (bool, string) {
		d := p.dest(org, name)
		return d.ok && d.Up == 1 && d.Age == 0, d.String()
	}
}
