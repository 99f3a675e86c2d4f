package pipeline

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/sessionize"
)

// Benchmarks of the sessionizer over the real log and Pebble store. Results and
// the commands that produced them are in BENCHMARKS.md at the repository root.
// Nothing here asserts a speed.

const (
	benchPartitions = 8        // the default log.partitions
	benchCacheBytes = 64 << 20 // the default log.cache_bytes
	benchGroup      = 8192     // records per AppendRecords call (one group commit)
	benchOrg        = "org_2dQm8cW1xkYfT7pLbN4r"
)

// benchGen makes realistic analytics.js-like records: UUID anonymousIds,
// "ajs-next-" messageIds, ~300 bytes of properties JSON, a context with page and
// user agent, and the fields the collector extracts from them.
type benchGen struct {
	rng *rand.Rand
	buf []byte
}

func newBenchGen(seed uint64) *benchGen {
	return &benchGen{rng: rand.New(rand.NewPCG(seed, 0x7469_6465_6d61_726b))}
}

func (g *benchGen) uuid() string {
	var u [16]byte
	for i := 0; i < 16; i += 8 {
		v := g.rng.Uint64()
		for j := range 8 {
			u[i+j] = byte(v >> (8 * j))
		}
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	x := hex.EncodeToString(u[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

func (g *benchGen) messageID() string {
	return "ajs-next-" + strings.ReplaceAll(g.uuid(), "-", "")
}

var benchPages = []struct{ path, title string }{
	{"/", "Home"}, {"/pricing", "Pricing"}, {"/docs/getting-started", "Getting started"},
	{"/blog/2026/03/release-notes", "Release notes"}, {"/signup", "Sign up"}, {"/app/dashboard", "Dashboard"},
}

var benchTracks = []string{"Button Clicked", "Product Viewed", "Signup Started", "Video Played", "Search Performed"}

const benchUA = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/134.0.0.0 Safari/537.36"

// record returns an event record of type typ ("track" or "page") for device at t.
func (g *benchGen) record(device, typ string, t int64) event.Record {
	pg := benchPages[g.rng.IntN(len(benchPages))]
	url := "https://www.example.com" + pg.path
	ref := "https://www.google.com/"
	e := event.Event{
		ID: g.messageID(), Org: benchOrg, Device: device, AnonymousID: device, Type: typ,
		ReceivedAt: t, Timestamp: event.At(t - 180e6), SentAt: event.At(t - 40e6), EventTime: t - 140e6,
		URL: url, Path: pg.path, Referrer: ref, Title: pg.title, UserAgent: benchUA,
	}
	b := g.buf[:0]
	if typ == "page" {
		e.Name = pg.title
		b = fmt.Appendf(b, `{"path":%q,"url":%q,"title":%q,"referrer":%q,"search":"?utm_source=newsletter&utm_medium=email&utm_campaign=spring-launch-2026",`+
			`"category":"marketing","experiment":"pricing-v3","variant":"b","viewport":{"width":1440,"height":900},"load_ms":%d}`,
			pg.path, url, pg.title, ref, 200+g.rng.IntN(3000))
	} else {
		e.Name = benchTracks[g.rng.IntN(len(benchTracks))]
		b = fmt.Appendf(b, `{"button":"signup","label":"Start free trial","plan":"pro","price":49.5,"currency":"USD",`+
			`"experiment":"pricing-v3","variant":"b","position":%d,"section":"hero",`+
			`"items":[{"sku":"SKU-%05d","qty":1},{"sku":"SKU-%05d","qty":2}],"cart_id":%q,"client_seq":%d}`,
			g.rng.IntN(12), g.rng.IntN(100000), g.rng.IntN(100000), g.uuid(), g.rng.IntN(1000))
	}
	e.Properties = bytes.Clone(b)
	b = fmt.Appendf(b[:0], `{"library":{"name":"analytics.js","version":"next-1.70.0"},"locale":"en-US","page":{"path":%q,"url":%q,"referrer":%q,"title":%q},"userAgent":%q}`,
		pg.path, url, ref, pg.title, benchUA)
	e.Context = bytes.Clone(b)
	g.buf = b
	return event.Record{Kind: event.KindEvent, Time: t, Event: e}
}

// benchAppender groups records per partition and appends them with
// AppendRecords in groups of benchGroup, each one group commit.
type benchAppender struct {
	tb    testing.TB
	l     *eventlog.Log
	parts [][]event.Record
	bytes int64
	n     int64
}

func newBenchAppender(tb testing.TB, l *eventlog.Log) *benchAppender {
	return &benchAppender{tb: tb, l: l, parts: make([][]event.Record, l.Partitions())}
}

func (a *benchAppender) add(p int, r event.Record) {
	a.parts[p] = append(a.parts[p], r)
	if len(a.parts[p]) >= benchGroup {
		a.flushPart(p)
	}
}

func (a *benchAppender) event(r event.Record) { a.add(a.l.Partition(r.Event.Org, r.Event.Device), r) }

// tick appends a tick with log time t to every partition.
func (a *benchAppender) tick(t int64) {
	for p := range a.parts {
		a.add(p, event.Record{Kind: event.KindTick, Time: t})
	}
}

func (a *benchAppender) flushPart(p int) {
	recs := a.parts[p]
	if len(recs) == 0 {
		return
	}
	for i := range recs {
		a.bytes += int64(len(event.Append(nil, &recs[i])))
	}
	a.n += int64(len(recs))
	if err := a.l.AppendRecords(context.Background(), p, recs); err != nil {
		a.tb.Fatal(err)
	}
	clear(recs)
	a.parts[p] = recs[:0]
}

func (a *benchAppender) flush() {
	for p := range a.parts {
		a.flushPart(p)
	}
}

// pending is the number of records added but not yet appended.
func (a *benchAppender) pending() int64 {
	var n int64
	for _, p := range a.parts {
		n += int64(len(p))
	}
	return n
}

func openBenchLog(tb testing.TB, dir string) *eventlog.Log {
	tb.Helper()
	l, err := eventlog.Open(dir, eventlog.Options{Partitions: benchPartitions, CacheBytes: benchCacheBytes,
		Registerer: prometheus.NewRegistry(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

// processed is the number of log records the sessionizers have processed.
func processed(s *Sessionizers, l *eventlog.Log) (done, total uint64) {
	for p := range l.Partitions() {
		done += s.Cursor(p)
		total += l.LastOffset(p)
	}
	return done, total
}

// runToEnd runs fresh sessionizers over l until every partition's cursor reaches
// the partition's last offset, calling progress (if not nil) while waiting. It
// returns the time from start to caught up.
func runToEnd(tb testing.TB, l *eventlog.Log, cfg sessionize.Config, progress func(done uint64)) time.Duration {
	tb.Helper()
	s, err := NewSessionizers(l, l.State(), cfg, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- s.Run(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var elapsed time.Duration
	for {
		notify := s.Notify()
		done, total := processed(s, l)
		if done >= total {
			elapsed = time.Since(start)
			break
		}
		if progress != nil {
			progress(done)
		}
		select {
		case <-notify:
		case <-tick.C:
		case err := <-errc:
			cancel()
			tb.Fatalf("sessionizers stopped early: %v", err)
		}
	}
	cancel()
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
	return elapsed
}

// memSample is the process's memory at one point.
type memSample struct {
	records      uint64 // log records processed so far
	heap         uint64 // Go heap live after a GC (HeapAlloc)
	heapSys      uint64 // Go heap obtained from the OS (HeapSys - HeapReleased)
	rss, hwm     uint64 // VmRSS, VmHWM
	cache, memtb uint64 // the state store's Pebble block cache and memtables (live and recycled); Go heap with CGO_ENABLED=0
	at           time.Duration
}

func (m memSample) String() string {
	return fmt.Sprintf("%9d records %6.1fs  heap %6.1f MiB (state cache %5.1f + state memtables %5.1f + other %5.1f)  heap_sys %6.1f MiB  rss %6.1f MiB  hwm %6.1f MiB",
		m.records, m.at.Seconds(), mib(m.heap), mib(m.cache), mib(m.memtb), mib(m.other()), mib(m.heapSys), mib(m.rss), mib(m.hwm))
}

// other is the Go heap not held by the block cache and memtables of the
// state store (l.State().Stats()): the sessionizers' own memory, batches,
// iterators, and whatever Pebble instances it does not show (the log's own
// store).
func (m memSample) other() uint64 { return m.heap - min(m.heap, m.cache+m.memtb) }

// slope fits y = a + b*records by least squares over samples and returns b,
// in bytes per record.
func slope(samples []memSample, y func(memSample) uint64) float64 {
	var n, sx, sy, sxx, sxy float64
	for _, m := range samples {
		x, v := float64(m.records), float64(y(m))
		n++
		sx += x
		sy += v
		sxx += x * x
		sxy += x * v
	}
	if d := n*sxx - sx*sx; d != 0 {
		return (n*sxy - sx*sy) / d
	}
	return 0
}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }

func sampleMem(l *eventlog.Log, records uint64, at time.Duration) memSample {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss, hwm := procRSS()
	m := l.State().Stats()
	return memSample{records: records, heap: ms.HeapAlloc, heapSys: ms.HeapSys - ms.HeapReleased, rss: rss, hwm: hwm,
		cache: uint64(m.CacheBytes), memtb: m.MemTableBytes + m.ZombieMemTableBytes, at: at}
}

// procRSS reads VmRSS and VmHWM (bytes) from /proc/self/status; 0 where absent.
func procRSS() (rss, hwm uint64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		n, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmRSS" {
			rss = n << 10
		} else {
			hwm = n << 10
		}
	}
	return rss, hwm
}

// resetHWM resets VmHWM to the current RSS (Linux: "5" to clear_refs), so the
// peak measured afterwards excludes the append phase.
func resetHWM() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func hitRate(hits, misses int64) float64 {
	if hits+misses == 0 {
		return 0
	}
	return 100 * float64(hits) / float64(hits+misses)
}

// loadAvg is /proc/loadavg's first three fields: other work on the machine
// skews the figures.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// cpuTime is the process's user plus system CPU time so far. Per record it is
// steadier than wall time on a shared machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countName names a count for a metric unit: 1M, 1.5M, 102k, 950.
func countName(n uint64) string {
	switch {
	case n >= 1e6:
		return strconv.FormatFloat(float64(n)/1e6, 'g', 3, 64) + "M"
	case n >= 1e3:
		return strconv.FormatUint((n+500)/1e3, 10) + "k"
	}
	return strconv.FormatUint(n, 10)
}

// BenchmarkSessionizerOpenSessions appends one track event for each of N
// devices (TIDEMARK_BENCH_SESSIONS, default 1,000,000; 100,000 with -short)
// within 17 minutes of log time, so with a 30 minute idle timeout every one
// of them is an open session at the end, then runs the sessionizers over the
// log. It samples memory (Go heap after a GC, VmRSS, VmHWM) before, at every
// 10% of the records and at the end, and reports the start, 10% and 100%
// figures and the growth per open session: with state on disk, memory must not
// grow with the open sessions. Run with -benchtime=1x: one iteration is one
// whole run.
func BenchmarkSessionizerOpenSessions(b *testing.B) {
	n := 1_000_000
	if testing.Short() {
		n = 100_000
	}
	if v := os.Getenv("TIDEMARK_BENCH_SESSIONS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 10 {
			b.Fatalf("TIDEMARK_BENCH_SESSIONS=%q: want a number >= 10", v)
		}
	}
	cfg := sessionize.Config{PageIdle: 30 * time.Minute, SessionIdle: 30 * time.Minute, DedupeWindow: 24 * time.Hour}
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		l := openBenchLog(b, dir)
		g := newBenchGen(1)
		a := newBenchAppender(b, l)
		appendStart := time.Now()
		var props int64
		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()
		const step = int64(time.Millisecond) // 1M events span 16.7 min of log time
		for i := range n {
			t := t0 + int64(i)*step
			if i > 0 && i%1000 == 0 {
				a.tick(t) // one tick per partition per second of log time, as the ticker does
			}
			r := g.record(g.uuid(), "track", t)
			props += int64(len(r.Event.Properties))
			a.event(r)
		}
		a.flush()
		a.parts = nil // the harness's buffers are not the sessionizer's memory
		appendTime := time.Since(appendStart)
		b.Logf("load average %s", loadAvg())
		b.Logf("appended %d records (%d events, %d ticks) in %v: %.0f bytes/record (properties %.0f bytes/event), log %.0f MiB",
			a.n, n, a.n-int64(n), appendTime.Round(time.Millisecond), float64(a.bytes)/float64(a.n), float64(props)/float64(n), mib(uint64(a.bytes)))

		// Baseline: log open and written, nothing sessionized. The append phase's
		// garbage is returned to the OS and the peak is reset, so the figures
		// below are the sessionizer's.
		debug.FreeOSMemory()
		resetHWM()
		samples := []memSample{sampleMem(l, 0, 0)}
		total := uint64(a.n)
		var marks []uint64 // every 10%
		for i := uint64(1); i < 10; i++ {
			marks = append(marks, total*i/10)
		}
		var start time.Time
		b.StartTimer()
		cpu0 := cpuTime()
		start = time.Now()
		elapsed := runToEnd(b, l, cfg, func(done uint64) {
			if len(marks) > 0 && done >= marks[0] {
				marks = marks[1:]
				samples = append(samples, sampleMem(l, done, time.Since(start)))
			}
		})
		b.StopTimer()
		cpu := cpuTime() - cpu0 // includes the memory samples' forced GCs
		end := sampleMem(l, total, elapsed)
		samples = append(samples, end)
		for _, s := range samples {
			b.Log(s)
		}

		// Every device must still be open: count the device states.
		open := 0
		for p := range l.Partitions() {
			o, err := l.State().OpenDevices(p)
			if err != nil {
				b.Fatal(err)
			}
			open += o
		}
		if open != n {
			b.Fatalf("%d open device states, want %d (a session closed?)", open, n)
		}
		pm := l.State().Stats()
		b.Logf("state store: block cache %d entries %.1f MiB, hits %d misses %d; memtables %d (%.0f MiB) + zombie %d (%.0f MiB); L0 %d tables; read amp %d; load average %s",
			pm.CacheEntries, mib(uint64(pm.CacheBytes)), pm.CacheHits, pm.CacheMisses,
			pm.MemTables, mib(pm.MemTableBytes), pm.ZombieMemTables, mib(pm.ZombieMemTableBytes),
			pm.L0Tables, pm.ReadAmp, loadAvg())
		disk := pm.DiskBytes
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}

		base := samples[0]
		first := samples[min(1, len(samples)-1)] // about 10% of the records processed
		var mid memSample                        // the first sample at or after half of them
		var late []memSample                     // samples from half the records to the end
		for _, m := range samples {
			if m.records >= total/2 {
				if late == nil {
					mid = m
				}
				late = append(late, m)
			}
		}
		b.ReportMetric(elapsed.Seconds(), "wall_s")
		b.ReportMetric(float64(total)/elapsed.Seconds(), "records/s")
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(total), "cpu_ns/record")
		b.ReportMetric(mib(base.rss), "rss_MiB@0")
		b.ReportMetric(mib(first.rss), "rss_MiB@"+countName(first.records))
		b.ReportMetric(mib(mid.rss), "rss_MiB@"+countName(mid.records))
		b.ReportMetric(mib(end.rss), "rss_MiB@"+countName(uint64(n)))
		b.ReportMetric(mib(end.hwm), "hwm_MiB")
		b.ReportMetric(mib(base.heap), "heap_MiB@0")
		b.ReportMetric(mib(first.heap), "heap_MiB@"+countName(first.records))
		b.ReportMetric(mib(end.heap), "heap_MiB@"+countName(uint64(n)))
		b.ReportMetric(mib(end.other()), "heap_other_MiB@"+countName(uint64(n)))
		// Growth per open session: least squares over the samples from half the
		// records to the end, when Pebble's block cache has filled up (it
		// grows during the first third of a 1M run). State kept in RAM would
		// cost hundreds of bytes per session; memtables filling and emptying
		// and the GC move rss and heap by MiBs, i.e. a few bytes per session
		// either way at 1M.
		b.ReportMetric(slope(late, func(m memSample) uint64 { return m.rss }), "rss_B/session")
		b.ReportMetric(slope(late, func(m memSample) uint64 { return m.heap }), "heap_B/session")
		b.ReportMetric(slope(late, memSample.other), "heap_other_B/session")
		b.ReportMetric(mib(disk), "state_disk_MiB")
		b.ReportMetric(hitRate(pm.CacheHits, pm.CacheMisses), "state_cache_hit_%")
	}
}

// BenchmarkSessionizerThroughput measures the sessionizers alone, in steady
// state: 10,000 devices that already have open sessions (a warm-up event each,
// processed before the timer), then b.N records, 20% page and 80% track events
// from uniformly chosen devices at 1,000 events per second of log time plus
// one tick per partition per second, appended before the timer. ns/op and
// allocs/op are per log record. idle=30m is the default configuration
// (sessions stay open; pages close by next_page); idle=10s makes most events
// close and reopen a page and session, to exercise the expiry path.
func BenchmarkSessionizerThroughput(b *testing.B) {
	const devices = 10_000
	for _, idle := range []time.Duration{30 * time.Minute, 10 * time.Second} {
		b.Run(fmt.Sprintf("idle=%v", idle), func(b *testing.B) {
			cfg := sessionize.Config{PageIdle: idle, SessionIdle: idle, DedupeWindow: 24 * time.Hour}
			l := openBenchLog(b, b.TempDir())
			defer l.Close()
			g := newBenchGen(2)
			ids := make([]string, devices)
			for i := range ids {
				ids[i] = g.uuid()
			}
			a := newBenchAppender(b, l)
			t := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).UnixNano()
			const step = int64(time.Millisecond)
			i := 0
			emit := func(typ, device string) {
				if i > 0 && i%1000 == 0 {
					a.tick(t)
				}
				a.event(g.record(device, typ, t))
				t += step
				i++
			}
			for _, d := range ids {
				emit("page", d)
			}
			a.flush()
			runToEnd(b, l, cfg, nil)

			before := a.n
			for a.n+a.pending()-before < int64(b.N) {
				typ := "track"
				if g.rng.IntN(5) == 0 {
					typ = "page"
				}
				emit(typ, ids[g.rng.IntN(devices)])
			}
			a.flush()
			recs := a.n - before
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			c0 := l.State().Stats()
			cpu0 := cpuTime()
			elapsed := runToEnd(b, l, cfg, nil)
			b.StopTimer()
			cpu := cpuTime() - cpu0
			c1 := l.State().Stats()
			b.ReportMetric(float64(recs)/elapsed.Seconds(), "records/s")
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(recs), "cpu_ns/record")
			b.ReportMetric(hitRate(c1.CacheHits-c0.CacheHits, c1.CacheMisses-c0.CacheMisses), "state_cache_hit_%")
			b.Logf("%d records; load average %s", recs, loadAvg())
		})
	}
}
