package postgres

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/testenv"
)

// benchBatch is a batch as the transport cuts them under load: 10,000
// events (flush.max_events) of 500 devices, with the pages (2,000) and
// sessions (100) that closed meanwhile, and typical properties and context.
func benchBatch(partition int, seq uint64) *destination.Batch {
	const events, devices = 10000, 500
	s := func(v string) *string { return &v }
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC).UnixMicro() + int64(seq)*int64(time.Minute/time.Microsecond)
	b := &destination.Batch{ID: destination.BatchID(partition, seq, seq), Org: "acme", Partition: partition, FirstSeq: seq, LastSeq: seq}
	b.Events = make([]format.EventRow, events)
	ctx := s(`{"ip":"203.0.113.7","library":{"name":"analytics.js","version":"5.2.1"},"locale":"en-US","page":{"path":"/pricing","referrer":"https://www.google.com/","title":"Pricing","url":"https://acme.example/pricing"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"}`)
	for i := range b.Events {
		dev := fmt.Sprintf("dev-%d-%d-%d", partition, seq, i%devices)
		t := base + int64(i)*1000
		b.Events[i] = format.EventRow{
			EventID: fmt.Sprintf("%08d-4b1c-4f7a-9c%02d-%012d", seq, partition, i), OrgID: "acme", DeviceID: dev, AnonymousID: &dev,
			SessionID: "s-" + dev, PageID: s("pg-" + dev), Type: "track", EventName: s("Button Clicked"),
			EventTime: t, ReceivedAt: t, ClientTimestamp: &t, SentAt: &t,
			URL: s("https://acme.example/pricing"), Path: s("/pricing"), Title: s("Pricing"), UserAgent: s("Mozilla/5.0 (X11; Linux x86_64)"),
			Properties: s(fmt.Sprintf(`{"button":"signup","plan":"pro","position":%d,"experiment":"b","price":49.5}`, i%7)),
			Context:    ctx, LogPartition: int32(partition), LogOffset: int64(seq)*events + int64(i),
		}
	}
	// 0.2 pages per event, as the end-to-end benchmark's batches hold
	// (scripts/bench-warehouse.sh: ~1,630 pages per ~8,200 events).
	for i := range events / 5 {
		dev := fmt.Sprintf("dev-%d-%d-%d", partition, seq, i%devices)
		b.Pages = append(b.Pages, format.PageRow{PageID: fmt.Sprintf("pg-%s-%d", dev, i), SessionID: "s-" + dev, OrgID: "acme", DeviceID: dev, Type: "page",
			URL: s("https://acme.example/pricing"), Path: s("/pricing"), Title: s("Pricing"), StartedAt: base, EndedAt: base + 60e6,
			DurationMS: 60000, EventCount: 20, EndReason: "idle"})
	}
	for i := range devices / 5 {
		dev := fmt.Sprintf("dev-%d-%d-%d", partition, seq, i)
		b.Sessions = append(b.Sessions, format.SessionRow{SessionID: "s-" + dev, OrgID: "acme", DeviceID: dev, StartedAt: base, EndedAt: base + 60e6,
			DurationMS: 60000, PageCount: 1, EventCount: 20, EntryURL: s("https://acme.example/"), ExitURL: s("https://acme.example/pricing")})
	}
	return b
}

// BenchmarkWrite loads transport-sized batches into the real PostgreSQL
// of the test script: events/s is the rate one destination loads, with one
// Write at a time (serial) and with two and four partitions at once
// (parallel2 is the transport's default of two writes in flight per
// destination).
// pg-µs/event is the CPU the PostgreSQL server (every process of it, from
// /proc, those that exited meanwhile too: autovacuum workers) spent per
// event row during the writes: less disturbed by a busy machine than
// events/s. go-µs/event is the CPU of this process (tidemark's side:
// encoding, the socket, its garbage collector) per event row. On two cores
// shared by both, 2,000,000 / (pg + go) is the most events/s they allow.
// vacuum-µs/event is the CPU of the VACUUM of the three tables
// right after: the work that loading leaves to autovacuum (hint bits and
// the visibility map of every new page, BRIN summaries), done sooner or
// later for every row loaded on the same cores.
//
//	TIDEMARK_TEST_SERVERS=postgres TIDEMARK_TEST_RACE=0 ./scripts/test.sh ./internal/destination/postgres -run '^$' -bench Write -benchtime 60x
func BenchmarkWrite(b *testing.B) {
	for _, parallel := range []int{1, 2, 4} {
		name := "serial"
		if parallel > 1 {
			name = fmt.Sprintf("parallel%d", parallel)
		}
		b.Run(name, func(b *testing.B) { benchWrite(b, parallel) })
	}
}

func benchWrite(b *testing.B, parallel int) {
	dbURL, _ := testenv.PostgresDB(b)
	d, err := Open(b.Context(), withSchema(dbURL, "bench"), destination.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer d.Close()
	if err := d.Probe(b.Context()); err != nil {
		b.Fatal(err)
	}
	runWrites(b, d, parallel)
}

// runWrites writes b.N batches into d, parallel partitions at once, and
// reports events/s.
func runWrites(b *testing.B, d *Postgres, parallel int) {
	batches := make([][]*destination.Batch, parallel)
	for p := range batches {
		for i := range (b.N + parallel - 1) / parallel {
			batches[p] = append(batches[p], benchBatch(p, uint64(i+1)))
		}
	}
	b.ReportAllocs()
	cpu0, cpuOK := serverCPU(b, d)
	own0 := ownCPU()
	b.ResetTimer()
	var wg sync.WaitGroup
	for p := range batches {
		wg.Go(func() {
			for _, bt := range batches[p] {
				if err := d.Write(b.Context(), bt); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	rows := 0
	for _, bs := range batches {
		rows += len(bs) * len(bs[0].Events)
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "events/s")
	b.StopTimer()
	b.ReportMetric(float64((ownCPU()-own0).Microseconds())/float64(rows), "go-µs/event")
	cpu1, ok := serverCPU(b, d)
	if !ok || !cpuOK {
		return
	}
	b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(rows), "pg-µs/event")
	if _, err := d.pool.Exec(b.Context(), "VACUUM "+d.ident(format.Events)+", "+d.ident(format.Pages)+", "+d.ident(format.Sessions)); err != nil {
		b.Fatal(err)
	}
	if cpu2, ok := serverCPU(b, d); ok {
		b.ReportMetric(float64((cpu2-cpu1).Microseconds())/float64(rows), "vacuum-µs/event")
	}
}

// BenchmarkEncode is the Go side of a load alone: one batch's events,
// pages and sessions in binary COPY format, written nowhere. Its ns/event
// is CPU that tidemark takes from PostgreSQL on a shared machine.
func BenchmarkEncode(b *testing.B) {
	bt := benchBatch(1, 1)
	buf := make([]byte, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		for _, r := range []io.Reader{
			newCopySource(bt.ID, eventColumns, bt.Events, nil),
			newCopySource(bt.ID, pageColumns, bt.Pages, nil),
			newCopySource(bt.ID, sessionColumns, bt.Sessions, nil),
		} {
			for {
				if _, err := r.Read(buf); err == io.EOF {
					break
				}
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(bt.Events)), "ns/event")
}

// serverCPU returns the user+system CPU time that the PostgreSQL server of
// d has used so far: its postmaster and every process it started (backends,
// WAL writer, checkpointer...), and those that exited (autovacuum workers:
// the postmaster's children's times), from /proc. ok is false when the server is
// not a process of this machine that /proc shows (a remote server).
func serverCPU(b *testing.B, d *Postgres) (cpu time.Duration, ok bool) {
	var dataDir string
	if err := d.pool.QueryRow(b.Context(), "SHOW data_directory").Scan(&dataDir); err != nil {
		return 0, false
	}
	pidFile, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	postmaster, _, _ := strings.Cut(string(pidFile), "\n")
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	var ticks int64
	for _, p := range procs {
		stat, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// Fields after the command (which may hold spaces): state ppid ... utime(14) stime(15).
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+2:]))
		pid := strings.TrimSuffix(strings.TrimPrefix(p, "/proc/"), "/stat")
		if pid != postmaster && f[1] != postmaster {
			continue
		}
		fields := []int{11, 12} // utime, stime
		if pid == postmaster {
			fields = append(fields, 13, 14) // cutime, cstime: children it waited for
		}
		for _, i := range fields {
			t, _ := strconv.ParseInt(f[i], 10, 64)
			ticks += t
		}
	}
	return time.Duration(ticks) * time.Second / clockTicks, true
}

// ownCPU returns the user+system CPU time this process has used so far.
func ownCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100
