package eventlog

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"github.com/tidemark/tidemark/internal/event"
)

// Options configure Open.
type Options struct {
	Partitions int
	CacheBytes int64
	MaxPending int // events waiting for the writer before Append answers ErrOverloaded
	// MinFreeBytes: Append answers Backpressure when an append would leave
	// less free disk than this, or than StoreReserve if that is more; 0
	// turns the check off.
	MinFreeBytes int64
	TailRecords  int // records the tail keeps for Tail (default 4096)
	// MemTableBytes is each store's memtable size (default 8 MiB). Tests
	// make it small so that a few thousand events reach sstables and blob
	// files (the data directory fault-injection suite).
	MemTableBytes int64
	Registerer    prometheus.Registerer
	Logger        *slog.Logger
}

// Backpressure is returned by Append when the log cannot take more now; the
// caller should retry after RetryAfter. Nothing of the request was appended.
type Backpressure struct {
	Reason string
	After  time.Duration
}

func (e *Backpressure) Error() string             { return "log backpressure: " + e.Reason }
func (e *Backpressure) RetryAfter() time.Duration { return e.After }

// StoreReserve is the free disk that ingest never uses, whatever
// Options.MinFreeBytes says: room for what the stores write while ingest is
// refused (ticks, the pipeline's state and progress, memtable flushes).
// Pebble cannot survive a failed write of its write-ahead log: the process
// would stop, so ingest must stop well before the disk is full.
const StoreReserve = 64 << 20

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("event log closed")

// Log is the partitioned durable log. Safe for concurrent use.
type Log struct {
	db    *pebble.DB // log records and metadata
	state *pebble.DB // the other stages' state
	st    *State     // state's methods
	dir   string
	parts int
	opts  Options
	reqs  chan *appendReq
	quit  chan struct{}
	done  chan struct{}

	closeMu sync.RWMutex // held shared while enqueueing, exclusively by Close
	closed  bool

	pending  atomic.Int64
	diskLow  atomic.Bool
	mu       sync.Mutex
	next     []uint64      // next offset per partition; writer goroutine only after Open
	notify   chan struct{} // closed and replaced after every commit
	lastOffs []atomic.Uint64

	badSegs sync.Map // [partition, first offset] of corrupt segments logged

	gapMu sync.RWMutex
	gaps  [][]Gap // per partition, oldest first (see SkipTo)

	tailMu   sync.Mutex
	tail     []Committed // ring: the last TailRecords records committed
	tailNext uint64      // records ever put in tail: the next one's sequence number

	mAppended prometheus.Counter
	mBytes    prometheus.Counter
	mCommits  prometheus.Counter
	mGroup    prometheus.Histogram
	mSync     prometheus.Histogram
}

type appendReq struct {
	recs    [][]byte // encoded records
	part    []int
	brief   []Brief // recs' identities, for the tail
	done    chan error
	limited bool // ingest: refused when the disk is low (ticks never are)
}

// Brief is what the tail keeps of a record: its kind and time and, for an
// event, the fields that identify and classify it.
type Brief struct {
	Kind                        event.Kind
	Time                        int64  // the record's time: ReceivedAt for events
	ID, Org, Device, Type, Name string // events only
}

func briefOf(r *event.Record) Brief {
	e := &r.Event
	return Brief{Kind: r.Kind, Time: r.Time, ID: e.ID, Org: e.Org, Device: e.Device, Type: e.Type, Name: e.Name}
}

// Committed is one record of the tail: its partition, offset and Brief.
type Committed struct {
	Part int
	Off  uint64
	Brief
}

// Open opens or creates the store under dir.
func Open(dir string, o Options) (*Log, error) {
	if o.Partitions <= 0 {
		return nil, fmt.Errorf("open log: partitions must be positive, got %d", o.Partitions)
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 100000
	}
	if o.TailRecords <= 0 {
		o.TailRecords = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	// Pebble reserves its memtables (two per store at most, the active one
	// and one being flushed) from the store's block cache, so each cache is
	// sized as the blocks it should hold plus 2 memtables. Separate caches:
	// the log's scans would otherwise evict the state's index and filter
	// blocks, which every point lookup needs.
	memtable := int64(8 << 20)
	if o.MemTableBytes > 0 {
		memtable = o.MemTableBytes
	}
	cache := pebble.NewCache(max(o.CacheBytes, 8<<20) + 2*memtable)
	defer cache.Unref()
	logCache := pebble.NewCache(4<<20 + 2*memtable)
	defer logCache.Unref()
	// The log is written sequentially and read by scans: no filters. The state
	// is read by point lookups (devices, dedupe): bloom filters, and a store of
	// its own so that the log's volume does not pile up L0 files in front of
	// its lookups.
	logOpts := &pebble.Options{Cache: logCache, MemTableSize: uint64(memtable), Logger: quietLogger{o.Logger.With("store", "log")}}
	// Every flush of the log spans all partitions (keys are partition
	// first), so each L0 compaction rewrites the overlapping Lbase, which is
	// most of it: compacting L0 rarely, in large steps, rewrites Lbase less
	// often (log write amplification ~2.8 -> ~1.9 in the end-to-end
	// benchmark). Reads are scans of few large segments, so the deeper L0
	// costs them little; writes never stall on L0 before 200 sublevels.
	logOpts.L0CompactionThreshold = 24
	logOpts.L0CompactionFileThreshold = 1000
	logOpts.L0StopWritesThreshold = 200
	logOpts.LBaseMaxBytes = 512 << 20
	storeFormat(logOpts)
	stateOpts := &pebble.Options{Cache: cache, MemTableSize: uint64(memtable), Logger: quietLogger{o.Logger.With("store", "state")}}
	for i := range stateOpts.Levels {
		stateOpts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	// The state's large values are the sessionizer's output segments, read
	// once by each transport and deleted once delivered: no reason to
	// rewrite them in every compaction of the device and dedupe keys.
	storeFormat(stateOpts)
	// Most of what stays in the state are dedupe keys, SHA-256 prefixes
	// spread over the whole key space: every L0 compaction rewrites most of
	// Lbase, which grows with the dedupe window's keys (and L0 carries many
	// versions of each device's state, dropped when compacted). So, as for
	// the log, L0 is compacted rarely, in large steps: the state's
	// compactions wrote 458 MB at 2M events with Pebble's default threshold
	// (4), 171 MB with 16, 90 MB with 32 (BENCHMARKS.md). Lookups pay little
	// for the deeper L0: dedupe lookups are nearly all answered by the
	// in-memory filter (dedupeFilter), device states by the device cache,
	// and every table has a bloom filter.
	stateOpts.L0CompactionThreshold = 32
	stateOpts.L0CompactionFileThreshold = 1000
	stateOpts.L0StopWritesThreshold = 200
	db, err := pebble.Open(filepath.Join(dir, "store", "log"), logOpts)
	if err != nil {
		return nil, fmt.Errorf("open log store: %w", err)
	}
	state, err := pebble.Open(filepath.Join(dir, "store", "state"), stateOpts)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open state store: %w", err)
	}
	l := &Log{db: db, state: state, st: newState(state, o.Partitions), dir: dir, parts: o.Partitions, opts: o,
		reqs: make(chan *appendReq, 1024), quit: make(chan struct{}), done: make(chan struct{}),
		notify: make(chan struct{}), tail: make([]Committed, o.TailRecords)}
	if err := l.checkPartitions(); err != nil {
		l.closeStores()
		return nil, err
	}
	if err := l.checkFormat(); err != nil {
		l.closeStores()
		return nil, err
	}
	l.next = make([]uint64, l.parts)
	l.lastOffs = make([]atomic.Uint64, l.parts)
	if err := l.loadGaps(); err != nil {
		l.closeStores()
		return nil, err
	}
	for p := range l.parts {
		last, err := l.lastOffset(p)
		if err != nil {
			l.closeStores()
			return nil, fmt.Errorf("open log store: %w", err)
		}
		l.next[p] = last + 1
		if g := l.gaps[p]; len(g) > 0 {
			l.next[p] = max(l.next[p], g[len(g)-1].To+1)
		}
		l.lastOffs[p].Store(last)
	}
	l.mAppended = prometheus.NewCounter(prometheus.CounterOpts{Name: "tidemark_log_appended_events_total", Help: "Events durably appended to the log."})
	l.mBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "tidemark_log_appended_bytes_total", Help: "Encoded bytes appended to the log (events and ticks)."})
	l.mCommits = prometheus.NewCounter(prometheus.CounterOpts{Name: "tidemark_log_commits_total", Help: "Group commits (one fsync each)."})
	l.mGroup = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tidemark_log_commit_group_requests", Help: "Append requests sharing one group commit.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)})
	l.mSync = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tidemark_log_commit_duration_seconds", Help: "Time to write and fsync one group commit.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)})
	pendingGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tidemark_log_pending_events", Help: "Events waiting for the log writer."}, func() float64 { return float64(l.pending.Load()) })
	diskGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tidemark_log_disk_low", Help: "1 when free disk is below log.min_free_bytes and ingest answers 503."}, func() float64 {
		if l.diskLow.Load() {
			return 1
		}
		return 0
	})
	for _, c := range []prometheus.Collector{l.mAppended, l.mBytes, l.mCommits, l.mGroup, l.mSync, pendingGauge, diskGauge} {
		if err := o.Registerer.Register(c); err != nil {
			l.closeStores()
			return nil, fmt.Errorf("register log metrics: %w", err)
		}
	}
	l.checkDisk()
	go l.writer()
	return l, nil
}

func (l *Log) closeStores() error {
	return errors.Join(l.db.Close(), l.state.Close())
}

// Partitions is the number of log partitions.
func (l *Log) Partitions() int { return l.parts }

// Partition returns the partition of a device.
func (l *Log) Partition(org, device string) int { return PartitionOf(org, device, l.parts) }

// PartitionOf hashes org and device to one of n partitions (FNV-1a).
func PartitionOf(org, device string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(org))
	h.Write([]byte{0})
	h.Write([]byte(device))
	return int(h.Sum32() % uint32(n))
}

var metaPartitions = metaKey("partitions")

func (l *Log) checkPartitions() error {
	v, closer, err := l.db.Get(metaPartitions)
	if errors.Is(err, pebble.ErrNotFound) {
		return l.db.Set(metaPartitions, []byte(strconv.Itoa(l.parts)), pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("read log metadata: %w", err)
	}
	defer closer.Close()
	n, _ := strconv.Atoi(string(v))
	if n != l.parts {
		return fmt.Errorf("open log: log.partitions is %d but the data in %s was written with %d partitions; set log.partitions: %d", l.parts, l.dir, n, n)
	}
	return nil
}

var metaFormat = metaKey("logformat")

// logFormat is the log's on-disk layout: "2" is segments (doc.go). Format 1
// (one store value per record, before segments) was never released.
const logFormat = "2"

func (l *Log) checkFormat() error {
	v, closer, err := l.db.Get(metaFormat)
	if errors.Is(err, pebble.ErrNotFound) {
		lo, hi := Key(0, 0)[:1], metaKey("")
		it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		old := it.First()
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		if old {
			// Format 1 was never released: log records without the
			// format's metadata mean the store lost its metadata (a
			// MANIFEST or marker file lost or damaged).
			return fmt.Errorf("open log store: it holds log records but not its format metadata: its MANIFEST or marker files were lost or damaged (or an unreleased build wrote it in log format 1)")
		}
		return l.db.Set(metaFormat, []byte(logFormat), pebble.Sync)
	}
	if err != nil {
		return fmt.Errorf("read log metadata: %w", err)
	}
	defer closer.Close()
	if string(v) != logFormat {
		return fmt.Errorf("open log: the data in %s has log format %q; this build reads log format %s", l.dir, v, logFormat)
	}
	return nil
}

// Meta reads a metadata value; ok is false when absent.
func (l *Log) Meta(name string) (val []byte, ok bool, err error) {
	v, closer, err := l.db.Get(metaKey(name))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), true, nil
}

// SetMeta durably stores a metadata value.
func (l *Log) SetMeta(name string, val []byte) error {
	return l.db.Set(metaKey(name), val, pebble.Sync)
}

func (l *Log) lastOffset(p int) (uint64, error) { return l.edgeOffset(p, true) }

// edgeOffset is the newest (last) or oldest retained offset of partition p,
// 0 when it is empty.
func (l *Log) edgeOffset(p int, last bool) (uint64, error) {
	lo, hi := partitionBounds(p)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !last {
		if !it.First() {
			return 0, it.Error()
		}
		return keyOffset(it.Key()), nil
	}
	if !it.Last() {
		return 0, it.Error()
	}
	val, err := value(it)
	if err != nil {
		return 0, fmt.Errorf("partition %d offset %d: %w", p, keyOffset(it.Key()), err)
	}
	off, err := segmentLast(keyOffset(it.Key()), val)
	if err != nil {
		return 0, fmt.Errorf("partition %d: %w", p, err)
	}
	return off, nil
}

// LastOffset is the newest committed offset of a partition (0 when empty).
func (l *Log) LastOffset(p int) uint64 { return l.lastOffs[p].Load() }

// Notify returns a channel that is closed at the next commit. Take it before
// reading to the end, then wait on it.
func (l *Log) Notify() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.notify
}

// Append durably appends events, stamping nothing: the caller has set every
// field, including ReceivedAt. On nil every event is fsynced.
func (l *Log) Append(ctx context.Context, evs []event.Event) error {
	if len(evs) == 0 {
		return nil
	}
	req := &appendReq{recs: make([][]byte, len(evs)), part: make([]int, len(evs)), brief: make([]Brief, len(evs)), done: make(chan error, 1)}
	var rec event.Record
	for i := range evs {
		rec = event.Record{Kind: event.KindEvent, Time: evs[i].ReceivedAt, Event: evs[i]}
		req.recs[i] = event.Append(nil, &rec)
		req.part[i] = l.Partition(evs[i].Org, evs[i].Device)
		req.brief[i] = briefOf(&rec)
	}
	return l.submit(ctx, req, true)
}

// AppendTicks appends one tick record with time t to every partition.
func (l *Log) AppendTicks(ctx context.Context, t time.Time) error {
	req := &appendReq{recs: make([][]byte, l.parts), part: make([]int, l.parts), brief: make([]Brief, l.parts), done: make(chan error, 1)}
	for p := range l.parts {
		req.recs[p] = event.Append(nil, &event.Record{Kind: event.KindTick, Time: t.UnixNano()})
		req.part[p] = p
		req.brief[p] = Brief{Kind: event.KindTick, Time: t.UnixNano()}
	}
	return l.submit(ctx, req, false)
}

// AppendRecords appends already-built records to explicit partitions (tests and
// log import: recorded logs replayed into a fresh store).
func (l *Log) AppendRecords(ctx context.Context, part int, recs []event.Record) error {
	req := &appendReq{recs: make([][]byte, len(recs)), part: make([]int, len(recs)), brief: make([]Brief, len(recs)), done: make(chan error, 1)}
	for i := range recs {
		req.recs[i] = event.Append(nil, &recs[i])
		req.part[i] = part
		req.brief[i] = briefOf(&recs[i])
	}
	return l.submit(ctx, req, false)
}

// AppendEncoded appends records as encoded elsewhere (event.Append), byte
// for byte, to partition part: the Kafka log's local copy, which must hold
// exactly what the topic holds. A record that does not decode is refused
// whole (nothing of recs is appended).
func (l *Log) AppendEncoded(ctx context.Context, part int, recs [][]byte) error {
	req := &appendReq{recs: recs, part: make([]int, len(recs)), brief: make([]Brief, len(recs)), done: make(chan error, 1)}
	for i, b := range recs {
		r, err := event.DecodeMeta(b)
		if err != nil {
			return fmt.Errorf("partition %d: record %d of %d: %w", part, i, len(recs), err)
		}
		req.part[i] = part
		req.brief[i] = briefOf(&r)
	}
	return l.submit(ctx, req, false)
}

func (l *Log) submit(ctx context.Context, req *appendReq, limited bool) error {
	l.closeMu.RLock()
	if l.closed {
		l.closeMu.RUnlock()
		return ErrClosed
	}
	req.limited = limited
	err := l.enqueue(ctx, req, limited)
	l.closeMu.RUnlock()
	if err != nil {
		return err
	}
	// Once queued the request is committed or failed by the writer; waiting for
	// the answer even if ctx ends keeps "error means not durable" honest.
	return <-req.done
}

func (l *Log) enqueue(ctx context.Context, req *appendReq, limited bool) error {
	n := int64(len(req.recs))
	if limited {
		if l.diskLow.Load() {
			return errDiskLow()
		}
		if l.pending.Add(n) > int64(l.opts.MaxPending) {
			l.pending.Add(-n)
			return &Backpressure{Reason: "too many events waiting for the log writer", After: time.Second}
		}
	} else {
		l.pending.Add(n)
	}
	select {
	case l.reqs <- req:
		return nil
	case <-ctx.Done():
		l.pending.Add(-n)
		return ctx.Err()
	}
}

// writer is the single goroutine that assigns offsets and commits groups.
func (l *Log) writer() {
	defer close(l.done)
	var group []*appendReq
	segs := make([]segWriter, l.parts)
	batch := l.db.NewBatch()
	for {
		group = group[:0]
		select {
		case r := <-l.reqs:
			group = append(group, r)
		case <-l.quit:
			for {
				select {
				case r := <-l.reqs:
					r.done <- ErrClosed
				default:
					return
				}
			}
		}
	drain:
		for len(group) < 4096 {
			select {
			case r := <-l.reqs:
				group = append(group, r)
			default:
				break drain
			}
		}
		if group = l.admit(group); len(group) == 0 {
			continue
		}
		batch.Reset()
		var events, bytes int64
		next := slices.Clone(l.next)
		for p := range segs {
			segs[p].reset(next[p])
		}
		// One segment per partition per group commit (split past
		// maxSegmentBytes): a few large values instead of a key per record.
		for _, r := range group {
			for i, rec := range r.recs {
				p := r.part[i]
				w := &segs[p]
				if w.n > 0 && len(w.b)+len(rec) > maxSegmentBytes {
					batch.Set(Key(p, w.first), w.b, nil)
					w.reset(next[p])
				}
				w.add(rec)
				next[p]++
				bytes += int64(len(rec))
				if rec[1] == byte(event.KindEvent) {
					events++
				}
			}
		}
		for p := range segs {
			if w := &segs[p]; w.n > 0 {
				batch.Set(Key(p, w.first), w.b, nil)
			}
			if cap(segs[p].b) > 256<<10 {
				segs[p].b = nil // do not keep a burst's buffers
			}
		}
		start := time.Now()
		err := batch.Commit(pebble.Sync)
		l.mSync.Observe(time.Since(start).Seconds())
		if err != nil {
			err = fmt.Errorf("commit log batch: %w", err)
			l.opts.Logger.Error("log commit failed", "err", err)
		} else {
			start := l.next
			l.next = next
			for p := range l.parts {
				l.lastOffs[p].Store(next[p] - 1)
			}
			l.addTail(group, start)
			l.mAppended.Add(float64(events))
			l.mBytes.Add(float64(bytes))
			l.mCommits.Inc()
			l.mGroup.Observe(float64(len(group)))
			l.mu.Lock()
			close(l.notify)
			l.notify = make(chan struct{})
			l.mu.Unlock()
		}
		for _, r := range group {
			l.pending.Add(-int64(len(r.recs)))
			r.done <- err
		}
		clear(group) // release the answered requests' records
	}
}

func errDiskLow() error {
	return &Backpressure{Reason: "free disk space below log.min_free_bytes", After: 30 * time.Second}
}

// admit checks the free disk before a group commit and answers the ingest
// requests that would leave less than the minimum with Backpressure (nothing
// of them is written); it returns the rest. Checking every group, by the
// bytes it adds, rather than now and then keeps a fast burst from filling
// the disk between two checks.
func (l *Log) admit(group []*appendReq) []*appendReq {
	free, ok := l.checkDisk()
	if !ok {
		return group
	}
	room := free - l.minFree()
	kept := group[:0]
	for _, r := range group {
		var n int64
		for _, rec := range r.recs {
			n += int64(len(rec))
		}
		if r.limited && n > room {
			l.diskLow.Store(true)
			l.pending.Add(-int64(len(r.recs)))
			r.done <- errDiskLow()
			continue
		}
		room -= n
		kept = append(kept, r)
	}
	clear(group[len(kept):])
	return kept
}

// minFree is the free disk below which ingest is refused.
func (l *Log) minFree() int64 { return max(l.opts.MinFreeBytes, StoreReserve) }

// addTail puts a committed group's records in the tail; start is the
// group's first offset per partition (consumed).
func (l *Log) addTail(group []*appendReq, start []uint64) {
	l.tailMu.Lock()
	defer l.tailMu.Unlock()
	n := uint64(len(l.tail))
	for _, r := range group {
		for i, b := range r.brief {
			p := r.part[i]
			l.tail[l.tailNext%n] = Committed{Part: p, Off: start[p], Brief: b}
			start[p]++
			l.tailNext++
		}
	}
}

// Tail appends to dst the records committed from sequence number from on
// (records are numbered in commit order from 0 at Open), and returns them
// with the sequence number to ask for next. It lets a follower of every
// commit (the live follower) see each record without reading the store.
// ok is false when some of them are no longer kept (the follower is more
// than Options.TailRecords behind): Scan to LastOffset instead, after
// taking TailSeq.
func (l *Log) Tail(from uint64, dst []Committed) (out []Committed, next uint64, ok bool) {
	l.tailMu.Lock()
	defer l.tailMu.Unlock()
	if l.tailNext-min(from, l.tailNext) > uint64(len(l.tail)) {
		return dst, l.tailNext, false
	}
	for s := from; s < l.tailNext; s++ {
		dst = append(dst, l.tail[s%uint64(len(l.tail))])
	}
	return dst, l.tailNext, true
}

// TailSeq is the sequence number of the next record to commit. Every record
// numbered below it is at or below LastOffset when LastOffset is read after
// TailSeq.
func (l *Log) TailSeq() uint64 {
	l.tailMu.Lock()
	defer l.tailMu.Unlock()
	return l.tailNext
}

// checkDisk updates the disk-low state and returns the free bytes; ok is
// false when the check is off or the file system cannot say.
func (l *Log) checkDisk() (free int64, ok bool) {
	if l.opts.MinFreeBytes <= 0 {
		return 0, false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(l.dir, &st); err != nil {
		return 0, false
	}
	free = int64(st.Bavail) * int64(st.Bsize)
	low := free < l.minFree()
	if low != l.diskLow.Swap(low) {
		l.opts.Logger.Warn("disk space state changed", "low", low, "free_bytes", free, "min_free_bytes", l.minFree())
	}
	return free, true
}

// RunTicker appends ticks every interval until ctx ends. It also refreshes the
// free-disk check when ingest is idle.
func (l *Log) RunTicker(ctx context.Context, interval time.Duration, now func() time.Time) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			l.checkDisk()
			if err := l.AppendTicks(ctx, now()); err != nil && ctx.Err() == nil {
				l.opts.Logger.Error("append ticks failed", "err", err)
			}
		}
	}
}

// Close stops the writer and closes the store. Appends in flight finish first.
func (l *Log) Close() error {
	l.closeMu.Lock()
	was := l.closed
	l.closed = true
	l.closeMu.Unlock()
	if was {
		return nil
	}
	close(l.quit)
	<-l.done
	return l.closeStores()
}

// storeFormat makes o's store keep values of 1 KiB and more (log
// segments, output segments) in blob files, written once at flush:
// compactions then rewrite only the keys and value handles. Without it each
// log byte was written three to four times (WAL, flush, then again by every
// L0 compaction, since every flush spans all partitions), and those
// compactions were the largest single CPU cost of ingest (BENCHMARKS.md).
//
// MaxBlobReferenceDepth is high on purpose: every flush overlaps the whole
// key space, so Pebble's estimate of how many blob files a table references
// grows by the number of L0 sublevels at each compaction, and with a limit
// of 10 nearly every compaction rewrote all the values it touched (the cost
// this is meant to remove). Readers scan each partition in offset order, so
// a table referencing many blob files costs them little. Retention's range
// deletions leave blob files partly unreferenced; Pebble rewrites a file
// once a fifth of it is garbage and it is 5 minutes old. Opening a data dir
// of an older build upgrades its store format (one way: older builds cannot
// open it again).
//
// Blocks and blob files are compressed with Pebble's fastest profile (MinLZ
// on amd64, Snappy on arm64) instead of its default Snappy: compressing the
// log's blob files at flush was ~7% of the server's CPU under a burst.
func storeFormat(o *pebble.Options) {
	o.FormatMajorVersion = pebble.FormatValueSeparation
	o.ApplyCompressionSettings(func() pebble.DBCompressionSettings { return pebble.DBCompressionFastest })
	o.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
		return pebble.ValueSeparationPolicy{
			Enabled:               true,
			MinimumSize:           1 << 10,
			MaxBlobReferenceDepth: 1000,
			RewriteMinimumAge:     5 * time.Minute,
			TargetGarbageRatio:    0.2,
		}
	}
}

// quietLogger adapts a slog.Logger for pebble.Options.Logger: Pebble's info
// chatter is dropped, its errors logged.
type quietLogger struct{ l *slog.Logger }

func (q quietLogger) Infof(format string, args ...any) {}
func (q quietLogger) Errorf(format string, args ...any) {
	q.l.Error("pebble", "msg", fmt.Sprintf(format, args...))
}

// Fatalf is called when Pebble cannot go on: a write of its write-ahead log
// failed (a full disk that something other than tidemark filled, an I/O
// error), or a background job found the store damaged (a compaction reading
// a corrupt table). It must not return: Pebble would report the failed
// batch as committed. The process stops with a message instead of a stack
// trace; every acknowledged event was fsynced before.
func (q quietLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	q.l.Error("store failed; stopping", "err", msg)
	fmt.Fprintf(os.Stderr, "tidemark: the embedded store cannot continue (%s); stopping. Every acknowledged event is on disk: fix the cause (free disk space) and start tidemark again. If the store is damaged, restore data_dir from a backup taken while tidemark was stopped, or move the damaged store aside (docs/operations.md, Damage).\n", msg)
	os.Exit(1)
}

// Scan calls fn for the records of partition p with offsets from..to
// (inclusive; to 0 means to the end) in offset order. val is valid only during
// the call. fn returning a non-nil error stops the scan with that error.
//
// Scan never goes past LastOffset: Pebble makes a batch visible before its
// WAL fsync returns, so a record past it may be in the store without being
// durable yet, and a reader that acted on it (a sessionizer checkpointing
// past it, a webhook sending it) could be ahead of what a crash keeps.
func (l *Log) Scan(p int, from, to uint64, fn func(off uint64, val []byte) error) error {
	if last := l.LastOffset(p); to == 0 || to > last {
		to = last
	}
	if from > to || to == 0 {
		return nil
	}
	lo, _ := partitionBounds(p)
	hi := Key(p, to+1)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	// The segment holding from starts at or before it.
	ok := it.SeekLT(Key(p, from+1))
	if !ok {
		if err := it.Error(); err != nil {
			return err
		}
		ok = it.First()
	}
	var seg segment
	for ok {
		first := keyOffset(it.Key())
		val, err := value(it)
		if err == nil {
			err = seg.parse(first, val)
		}
		if err != nil && !errors.Is(err, ErrCorruptSegment) {
			return fmt.Errorf("partition %d offset %d: %w", p, first, err)
		}
		if err != nil {
			// A value the store cannot read back intact, or that is not
			// a segment: its records cannot be told apart, so
			// each offset up to the next segment is handed to fn as an
			// undecodable record (val nil), and readers skip them one by one
			// as they skip an undecodable record.
			l.corruptSegment(p, first, err)
			ok = it.Next()
			end := to
			if ok {
				end = min(to, keyOffset(it.Key())-1)
			}
			for off := max(first, from); off <= end; off++ {
				if err := fn(off, nil); err != nil {
					return err
				}
			}
			continue
		}
		last := min(seg.last(), to)
		for off := max(seg.first, from); off <= last; off++ {
			if err := fn(off, seg.record(off)); err != nil {
				return err
			}
		}
		ok = it.Next()
	}
	return it.Error()
}

// value reads the value under it. A value the store reports corrupt (a
// damaged blob file or block: its checksum fails, or Pebble panics
// reporting it) is an ErrCorruptSegment: the segment's records are skipped
// as undecodable instead of stalling every reader at it. Other errors (I/O)
// are returned as they are, and retried by the caller.
func value(it *pebble.Iterator) (val []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			val, err = nil, fmt.Errorf("%w: reading it failed: %v", ErrCorruptSegment, r)
		}
	}()
	val, err = it.ValueAndErr()
	if err != nil && pebble.IsCorruptionError(err) {
		return nil, fmt.Errorf("%w: %w", ErrCorruptSegment, err)
	}
	return val, err
}

// corruptSegment logs a segment that cannot be parsed, once per segment
// and process.
func (l *Log) corruptSegment(p int, first uint64, err error) {
	k := [2]uint64{uint64(p), first}
	if _, seen := l.badSegs.LoadOrStore(k, true); !seen {
		l.opts.Logger.Error("corrupt log segment: its records are skipped as undecodable", "partition", p, "offset", first, "err", err)
	}
}

// FirstOffset is the oldest retained offset of a partition (0 when empty).
func (l *Log) FirstOffset(p int) (uint64, error) { return l.edgeOffset(p, false) }

// DeleteBefore removes the records of partition p with offsets below off. The
// segment holding off, if it starts before off, is rewritten to start at off.
func (l *Log) DeleteBefore(p int, off uint64) error {
	b := l.db.NewBatch()
	defer b.Close()
	lo, hi := partitionBounds(p)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	if it.SeekLT(Key(p, off)) {
		var seg segment
		val, err := value(it)
		if err == nil {
			err = seg.parse(keyOffset(it.Key()), val)
		}
		if err != nil {
			it.Close()
			return fmt.Errorf("partition %d: %w", p, err)
		}
		if seg.contains(off) {
			// Segments are immutable once written and the writer only
			// adds offsets past the last, so this copy cannot race a write.
			var w segWriter
			w.reset(off)
			for o := off; o <= seg.last(); o++ {
				w.add(seg.record(o))
			}
			b.Set(Key(p, off), w.b, nil)
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	if err := b.DeleteRange(Key(p, 0), Key(p, off), nil); err != nil {
		return err
	}
	return b.Commit(pebble.NoSync)
}

// Reader reads records of one partition by offset, cheaply when offsets
// increase. Close it when done.
type Reader struct {
	l   *Log
	it  *pebble.Iterator
	p   int
	seg segment
	ok  bool // seg is the segment under it
}

// NewReader returns a Reader over partition p.
func (l *Log) NewReader(p int) (*Reader, error) {
	lo, hi := partitionBounds(p)
	it, err := l.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	return &Reader{l: l, it: it, p: p}, nil
}

// RecordReader is a Reader as the log's consumers read it, through
// interfaces of their own (transport.Log, audit.Log): an alias of an
// unnamed interface, so that their interfaces, aliasing the same one, are
// met by OpenReader without naming this package's types.
type RecordReader = interface {
	Get(off uint64) ([]byte, error)
	Close() error
}

// OpenReader is NewReader as a RecordReader.
func (l *Log) OpenReader(p int) (RecordReader, error) {
	r, err := l.NewReader(p)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// ErrNotInLog means the record was removed by retention or never written.
var ErrNotInLog = errors.New("record not in log")

// Get returns the record at off; the bytes are valid until the next call.
// Like Scan it answers only offsets up to LastOffset.
func (r *Reader) Get(off uint64) ([]byte, error) {
	if off > r.l.LastOffset(r.p) {
		return nil, fmt.Errorf("partition %d offset %d: past the last committed offset: %w", r.p, off, ErrNotInLog)
	}
	if r.ok && r.seg.contains(off) {
		return r.seg.record(off), nil
	}
	var valid bool
	if r.ok && off == r.seg.last()+1 {
		valid = r.it.Next()
	} else {
		valid = r.it.SeekLT(Key(r.p, off+1))
	}
	r.ok = false
	if valid {
		first := keyOffset(r.it.Key())
		val, err := value(r.it)
		if err != nil {
			return nil, fmt.Errorf("partition %d offset %d: %w", r.p, first, err)
		}
		if err := r.seg.parse(first, val); err != nil {
			return nil, fmt.Errorf("partition %d offset %d: %w", r.p, off, err)
		}
		r.ok = true
	}
	if !r.ok || !r.seg.contains(off) {
		if err := r.it.Error(); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("partition %d offset %d: %w", r.p, off, ErrNotInLog)
	}
	return r.seg.record(off), nil
}

// Close releases the reader.
func (r *Reader) Close() error { return r.it.Close() }
