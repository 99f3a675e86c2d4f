package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/sessionize"
)

// ChunkRecords is how many log records one atomic sessionizer commit covers at most.
const ChunkRecords = 2048

// Log is what the sessionizers read: *eventlog.Log, or another log with
// the same offsets and guarantees (Scan never passes LastOffset, Notify is
// closed at the next commit).
type Log interface {
	Partitions() int
	LastOffset(p int) uint64
	Notify() <-chan struct{}
	Gaps(p int) []eventlog.Gap
	Scan(p int, from, to uint64, fn func(off uint64, val []byte) error) error
}

// State is where the sessionizers keep their state and their outputs:
// *eventlog.State (see its methods for the contract).
type State interface {
	SessionHeader(p int) (eventlog.SessionHeader, error)
	UpdateSessions(p int, h *eventlog.SessionHeader, window time.Duration, fn func(st sessionize.Store) (sweep int, err error)) (eventlog.Emitted, error)
	ScanOutputs(p int, from, to uint64, fn func(seq uint64, o *sessionize.Output) error) error
	FirstEventOffset(p int, from, to uint64) (uint64, error)
}

// Sessionizers runs one sessionizer per log partition and tells the transports
// when new outputs exist.
type Sessionizers struct {
	log      Log
	state    State
	cfg      sessionize.Config
	logger   *slog.Logger
	perChunk uint64 // records per commit; ChunkRecords unless a test changes it
	// sem bounds how many partitions process a chunk at once (see
	// NewSessionizers); a partition holds it for one chunk at a time.
	sem chan struct{}

	mu     sync.Mutex
	notify chan struct{}
	next   []atomic.Uint64 // next output seq per partition (committed)
	cursor []atomic.Uint64 // last processed log offset per partition
	wm     []atomic.Int64

	yield *Yield // nil: never pause (see SetYield)

	badMu sync.Mutex
	bad   []Unreadable // skipped since start, for the status API

	mRecords *prometheus.CounterVec
	mDupes   prometheus.Counter
	mOutputs *prometheus.CounterVec

	mUnreadable *prometheus.CounterVec
}

// NewSessionizers prepares the sessionizers of log l, keeping their state
// and outputs in st (on the embedded store: l and l.State()); Run starts
// them.
func NewSessionizers(l Log, st State, cfg sessionize.Config, reg prometheus.Registerer, logger *slog.Logger) (*Sessionizers, error) {
	// At most half the CPUs (at least one) sessionize at once, whatever the
	// number of partitions: the rest is left to ingest, the transports and
	// the stores' compactions. The log is the buffer: while a partition waits
	// for its turn its records accumulate, and the next chunk takes them in
	// one commit, which costs less per record than many small chunks racing
	// for the same cores. Turns are taken in arrival order (a channel's
	// waiting senders), so every partition advances and lag stays bounded.
	workers := max(1, runtime.GOMAXPROCS(0)/2)
	s := &Sessionizers{log: l, state: st, cfg: cfg, logger: logger, notify: make(chan struct{}), perChunk: ChunkRecords, sem: make(chan struct{}, workers),
		next: make([]atomic.Uint64, l.Partitions()), cursor: make([]atomic.Uint64, l.Partitions()), wm: make([]atomic.Int64, l.Partitions())}
	for p := range l.Partitions() {
		h, err := s.state.SessionHeader(p)
		if err != nil {
			return nil, err
		}
		s.next[p].Store(h.NextSeq)
		s.cursor[p].Store(h.Cursor)
		s.wm[p].Store(h.Watermark)
	}
	s.mRecords = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_sessionizer_records_total", Help: "Log records processed by the sessionizer."}, []string{"kind"})
	s.mDupes = prometheus.NewCounter(prometheus.CounterOpts{Name: "tidemark_sessionizer_duplicate_events_total", Help: "Events skipped because their org, device and messageId were seen within the dedupe window."})
	s.mOutputs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_sessionizer_outputs_total", Help: "Output items produced by the sessionizer."}, []string{"kind"})
	lag := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tidemark_sessionizer_lag_records", Help: "Log records not yet processed by the sessionizer, all partitions."}, func() float64 {
		var n uint64
		for p := range l.Partitions() {
			n += l.LastOffset(p) - min(s.cursor[p].Load(), l.LastOffset(p))
		}
		return float64(n)
	})
	yielded := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tidemark_sessionizer_yield_seconds_total", Help: "Time the sessionizer paused to leave the CPU to a saturated ingest (ingest.priority_lag)."}, func() float64 {
		return s.yield.Paused().Seconds()
	})
	s.mUnreadable = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_log_unreadable_records_total",
		Help: "Log records the sessionizer skipped because they cannot be decoded (a damaged store); each is logged with its partition and offset."}, []string{"partition"})
	for _, c := range []prometheus.Collector{s.mRecords, s.mDupes, s.mOutputs, lag, yielded, s.mUnreadable} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// SetYield makes the sessionizers pause for ingest as y says. Call it before Run.
func (s *Sessionizers) SetYield(y *Yield) { s.yield = y }

// Notify returns a channel closed when any partition commits new outputs.
func (s *Sessionizers) Notify() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.notify
}

func (s *Sessionizers) signal() {
	s.mu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
}

// NextSeq is the next output sequence number of partition p: outputs 1..NextSeq-1 exist.
func (s *Sessionizers) NextSeq(p int) uint64 { return s.next[p].Load() }

// Cursor is the last log offset of partition p the sessionizer has processed.
func (s *Sessionizers) Cursor(p int) uint64 { return s.cursor[p].Load() }

// Watermark is partition p's watermark as of the last commit.
func (s *Sessionizers) Watermark(p int) int64 { return s.wm[p].Load() }

// Run runs every partition until ctx ends or one fails.
func (s *Sessionizers) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for p := range s.log.Partitions() {
		g.Go(func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("sessionize partition %d: panic: %v", p, r)
				}
			}()
			return s.runPartition(gctx, p)
		})
	}
	if err := g.Wait(); ctx.Err() == nil {
		return err
	}
	return nil
}

func (s *Sessionizers) runPartition(ctx context.Context, p int) error {
	h, err := s.state.SessionHeader(p)
	if err != nil {
		return err
	}
	sz := sessionize.New(s.cfg, nil, h.Watermark)
	for {
		wait := s.log.Notify()
		select {
		case s.sem <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		start := time.Now()
		n, err := s.chunk(p, &h, sz)
		if n > 0 {
			// Holding the turn: no other partition sessionizes meanwhile.
			s.yield.Pause(ctx, time.Since(start))
		}
		<-s.sem
		if err != nil {
			return fmt.Errorf("sessionize partition %d: %w", p, err)
		}
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wait:
		}
	}
}

// chunk processes up to ChunkRecords records after the cursor in one atomic
// commit of the state store.
func (s *Sessionizers) chunk(p int, h *eventlog.SessionHeader, sz *sessionize.Sessionizer) (int, error) {
	if s.log.LastOffset(p) <= h.Cursor {
		return 0, nil
	}
	next := *h
	to := crossGaps(s.log.Gaps(p), &next) + s.perChunk
	for _, g := range s.log.Gaps(p) {
		if next.Cursor < g.From && to >= g.From {
			to = g.From - 1 // the next chunk crosses the gap
			break
		}
	}
	dupes := sz.Dupes
	var events, ticks, skipped int
	emitted, err := s.state.UpdateSessions(p, &next, s.cfg.DedupeWindow, func(st sessionize.Store) (int, error) {
		sz.SetStore(st)
		err := s.log.Scan(p, next.Cursor+1, to, func(off uint64, val []byte) error {
			rec, err := event.DecodeMeta(val) // the sessionizer never reads the raw JSON fields
			if err != nil {
				// A damaged record: skipped, the same way on every replay
				// (the decision is a function of its bytes), so that it
				// stalls neither its partition nor anything after it.
				s.unreadable(p, off, err)
				next.Cursor = off
				skipped++
				return nil
			}
			if rec.Kind == event.KindTick {
				ticks++
			} else {
				events++
			}
			if err := sz.Process(off, len(val), &rec); err != nil {
				return err
			}
			next.Cursor = off
			return nil
		})
		next.Watermark = sz.Watermark()
		// Sweep twice as many dedupe entries as records processed, so the
		// sweep outpaces the inserts and each entry is forgotten within
		// about a window and a sweep after it expires.
		return 2*(events+ticks) + 64, err
	})
	if err != nil {
		sz.Reset(h.Watermark)
		return 0, err
	}
	*h = next
	s.cursor[p].Store(h.Cursor)
	s.wm[p].Store(h.Watermark)
	s.mRecords.WithLabelValues("event").Add(float64(events))
	s.mRecords.WithLabelValues("tick").Add(float64(ticks))
	s.mDupes.Add(float64(sz.Dupes - dupes))
	var n int
	for k, c := range emitted {
		if c > 0 {
			s.mOutputs.WithLabelValues(outputKinds[k]).Add(float64(c))
			n += c
		}
	}
	if n > 0 {
		s.next[p].Store(h.NextSeq)
		s.signal()
	}
	return events + ticks + skipped, nil
}

// crossGaps moves h past the log gaps (eventlog.Gap) its cursor has reached:
// the cursor to the gap's end (the gap's offsets hold no records), and the
// next output sequence number to at least the gap's SeqFloor, so that
// outputs made after a lost log tail never reuse the sequence numbers of
// batches committed before. It returns the new cursor. A function of the
// cursor and the recorded gaps, so replays cross them the same way.
func crossGaps(gaps []eventlog.Gap, h *eventlog.SessionHeader) uint64 {
	for _, g := range gaps {
		if h.Cursor+1 >= g.From {
			h.Cursor = max(h.Cursor, g.To)
			h.NextSeq = max(h.NextSeq, g.SeqFloor)
		}
	}
	return h.Cursor
}

// unreadable reports a log record that cannot be decoded; the sessionizer
// skips it.
func (s *Sessionizers) unreadable(p int, off uint64, err error) {
	s.mUnreadable.WithLabelValues(strconv.Itoa(p)).Inc()
	s.badMu.Lock()
	defer s.badMu.Unlock()
	if len(s.bad) < maxUnreadableListed { // then only counted: a damaged segment can hold thousands
		s.bad = append(s.bad, Unreadable{Partition: p, Offset: off, Error: err.Error()})
		s.logger.Error("undecodable log record skipped: its event cannot be delivered", "partition", p, "offset", off, "err", err)
	}
}

// maxUnreadableListed bounds the unreadable records kept for the status API.
const maxUnreadableListed = 100

// Unreadable is a log record the sessionizer skipped because it could not
// be decoded.
type Unreadable struct {
	Partition int    `json:"log_partition"`
	Offset    uint64 `json:"log_offset"`
	Error     string `json:"error"`
}

// UnreadableRecords returns the records skipped as undecodable since start
// (at most 100).
func (s *Sessionizers) UnreadableRecords() []Unreadable {
	s.badMu.Lock()
	defer s.badMu.Unlock()
	return slices.Clone(s.bad)
}

// outputKinds names sessionize.Kind values for the outputs metric.
var outputKinds = [...]string{sessionize.KindEvent: "event", sessionize.KindPage: "page",
	sessionize.KindSession: "session", sessionize.KindWatermark: "watermark", 0: "unknown"}

// OldestUnprocessed is the record time (Unix ns) of the oldest log record not
// yet processed by the sessionizer, over all partitions; 0 when caught up.
func (s *Sessionizers) OldestUnprocessed() int64 {
	var oldest int64
	for p := range s.log.Partitions() {
		c := s.cursor[p].Load()
		if s.log.LastOffset(p) <= c {
			continue
		}
		var t int64
		_ = s.log.Scan(p, c+1, c+1, func(_ uint64, val []byte) error {
			if r, err := event.DecodeMeta(val); err == nil {
				t = r.Time
			}
			return nil
		})
		if t > 0 && (oldest == 0 || t < oldest) {
			oldest = t
		}
	}
	return oldest
}

// ScanOutputs calls fn for the output items of partition p with sequence
// numbers from..to, in order (eventlog.State.ScanOutputs).
func (s *Sessionizers) ScanOutputs(p int, from, to uint64, fn func(seq uint64, o *sessionize.Output) error) error {
	return s.state.ScanOutputs(p, from, to, fn)
}

// FirstEventOffset returns the log offset of the first event output of
// partition p with a sequence number in from..to, or 0 when there is none.
func (s *Sessionizers) FirstEventOffset(p int, from, to uint64) (uint64, error) {
	return s.state.FirstEventOffset(p, from, to)
}
