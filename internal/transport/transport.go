package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/sessionize"
)

// Flush holds a destination's batch cut rules (log time).
type Flush struct {
	MaxEvents int
	MaxBytes  int64
	MaxAge    time.Duration
}

// Options configure one destination's transport.
type Options struct {
	Org, Name string
	Dest      destination.Destination
	Flush     Flush
	Log       Log
	Outputs   Outputs
	// Progress keeps the local progress records; nil: the log's own when
	// it has one (State, as *eventlog.Log).
	Progress ProgressStore
	Metrics  *Metrics
	Logger   *slog.Logger
	Now      func() time.Time
	// Parallel bounds concurrent batch writes of this destination (memory). Default 2.
	Parallel int
	// Permanent reports errors that retrying soon will not fix (a missing
	// bucket, denied access): they are retried at the slowest backoff rather
	// than hot-looping, and the destination is reported down. Nil: none.
	Permanent func(error) bool
	// SLA is the destination's freshness SLA per table (events, pages,
	// sessions), exported as a metric for the stale-destination alert.
	SLA [3]time.Duration
	// Shared, when set, builds each batch once for the transports of this
	// org with equal Flush rules that use it. Nil: this transport builds
	// its own.
	Shared *Shared
}

// Log is what a transport reads of the log: the events its outputs name,
// by partition and offset (*eventlog.Log on the embedded store).
type Log interface {
	Partitions() int
	// OpenReader returns a reader of partition p's records. Its Get
	// returns the record at an offset (valid until the next call), fastest
	// when offsets increase, and an error wrapping eventlog.ErrNotInLog
	// for a record the log does not hold (removed by retention, or past
	// its last committed offset).
	OpenReader(p int) (Reader, error)
}

// Reader reads one partition's records by offset (see Log.OpenReader). An
// alias of eventlog.RecordReader's unnamed interface, so that any log whose
// OpenReader returns that interface meets Log.
type Reader = interface {
	Get(off uint64) ([]byte, error)
	Close() error
}

// Outputs is what a transport delivers: the sessionizers' output streams,
// one per log partition (*pipeline.Sessionizers).
type Outputs interface {
	// Notify returns a channel closed when any partition has new outputs.
	Notify() <-chan struct{}
	// NextSeq is partition p's next output sequence number: outputs
	// 1..NextSeq-1 exist (those not yet deleted can be scanned).
	NextSeq(p int) uint64
	// Cursor is the last log offset of partition p the outputs cover.
	Cursor(p int) uint64
	// OldestUnprocessed is the record time (Unix ns) of the oldest log
	// record not yet turned into outputs; 0 when none.
	OldestUnprocessed() int64
	// ScanOutputs calls fn for partition p's outputs from..to, in order;
	// o is valid only during the call.
	ScanOutputs(p int, from, to uint64, fn func(seq uint64, o *sessionize.Output) error) error
	// FirstEventOffset is the log offset of the first event output of
	// partition p in from..to, 0 when none.
	FirstEventOffset(p int, from, to uint64) (uint64, error)
}

// ProgressStore keeps each destination's local progress record per
// partition: the sequence number of the last output item it committed
// (*eventlog.State). A write need not be durable at once: on start the
// transport takes the newer of the record and the destination's manifests.
type ProgressStore interface {
	Progress(org, name string, p int) (uint64, error)
	SetProgress(org, name string, p int, seq uint64) error
}

// Prober is implemented by destinations that can check, before delivering,
// that they are reachable and writable.
type Prober interface {
	Probe(ctx context.Context) error
}

// ProbeBounder is implemented by destinations whose probe may need longer
// than the transport's default bound for one attempt (30 s): a PostgreSQL
// destination upgrades its schema in its probe, and building an index on a
// large table takes minutes. ProbeBound is the bound of one attempt; the
// destination then bounds the probe's quick steps itself, so that an
// unreachable server is still reported within the default bound.
type ProbeBounder interface {
	ProbeBound() time.Duration
}

// Transport delivers one destination.
type Transport struct {
	o       Options
	sem     chan struct{}
	parts   []partState
	up      atomic.Bool
	lastOK  atomic.Int64
	lastErr atomic.Pointer[failure]
	rows    [3]atomic.Int64 // delivered events, pages, sessions since start
	// auditMissing is the received_at of the oldest event the auditor found
	// missing from the destination (0: none): the pipeline believes it
	// delivered it, so only the audit can tell it is still undelivered.
	auditMissing atomic.Int64
}

// SetAuditMissing records the received_at (Unix ns) of the oldest event the
// last audit found missing, 0 when none. OldestPending counts it.
func (t *Transport) SetAuditMissing(receivedAt int64) { t.auditMissing.Store(receivedAt) }

type failure struct {
	msg string
	at  time.Time
	op  string
}

// Status is a destination's delivery state, for the status API.
type Status struct {
	Org, Name string
	Up        bool
	// LastError is the latest failure (redacted by the destination), kept
	// after recovery for context; zero if none since start.
	LastError     string
	LastErrorOp   string
	LastErrorAt   time.Time
	LastCommitAt  time.Time // zero before the first commit since start
	OldestPending time.Time // zero when nothing is pending
	// OldestPendingTable is OldestPending per table (events, pages,
	// sessions): when the oldest undelivered row's last event was accepted.
	OldestPendingTable [3]time.Time
	Delivered          [3]int64 // events, pages, sessions since start
}

// Status reports the destination's current state.
func (t *Transport) Status() Status {
	st := Status{Org: t.o.Org, Name: t.o.Name, Up: t.up.Load()}
	if f := t.lastErr.Load(); f != nil {
		st.LastError, st.LastErrorOp, st.LastErrorAt = f.msg, f.op, f.at
	}
	if v := t.lastOK.Load(); v > 0 {
		st.LastCommitAt = time.Unix(0, v).UTC()
	}
	if v := t.OldestPending(); v > 0 {
		st.OldestPending = time.Unix(0, v).UTC()
	}
	for i, v := range t.OldestPendingTables() {
		if v > 0 {
			st.OldestPendingTable[i] = time.Unix(0, v).UTC()
		}
	}
	for i := range st.Delivered {
		st.Delivered[i] = t.rows[i].Load()
	}
	return st
}

type partState struct {
	// oldest is, per table, the time of the oldest pending row (see
	// rowTime), 0 when none.
	oldest  [3]atomic.Int64
	readPos atomic.Uint64 // last output seq read
}

// table is the index of o's table in Options.SLA and Status, -1 for none.
func table(o *sessionize.Output) int {
	switch o.Kind {
	case sessionize.KindEvent:
		return 0
	case sessionize.KindPage:
		return 1
	case sessionize.KindSession:
		return 2
	}
	return -1
}

// rowTime is when the last event of o's row was accepted (log time), the
// start of its freshness SLA: the event's own time, or the page's or
// session's last activity (the row is due an idle timeout after it).
func rowTime(o *sessionize.Output) int64 {
	switch {
	case o.Kind == sessionize.KindPage && o.Page != nil:
		return o.Page.Last
	case o.Kind == sessionize.KindSession && o.Session != nil:
		return o.Session.Last
	}
	return o.LogTime
}

// New returns a transport; Run starts it.
func New(o Options) *Transport {
	if o.Parallel <= 0 {
		o.Parallel = 2
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if s, ok := o.Log.(interface{ State() *eventlog.State }); ok && o.Progress == nil {
		o.Progress = s.State()
	}
	t := &Transport{o: o, sem: make(chan struct{}, o.Parallel), parts: make([]partState, o.Log.Partitions())}
	t.up.Store(true)
	// Until Run has reconciled with the destination, pending work starts
	// after the local progress: the age metric counts it even if the
	// destination is unreachable from the start.
	for p := range t.parts {
		if prog, err := t.Progress(p); err == nil {
			t.parts[p].readPos.Store(prog)
		}
	}
	if o.Shared != nil {
		o.Shared.join(group{o.Org, o.Flush})
	}
	o.Metrics.add(t)
	return t
}

// Run delivers every partition until ctx ends. It returns nil on cancel; a
// destination error is retried forever and never ends Run.
func (t *Transport) Run(ctx context.Context) error {
	if pr, ok := t.o.Dest.(Prober); ok {
		bound := probeTimeout
		if b, ok := t.o.Dest.(ProbeBounder); ok {
			bound = b.ProbeBound()
		}
		probe := func() error {
			// Some clients retry an unreachable host until their context
			// ends; bound each attempt so the failure is reported.
			pctx, cancel := context.WithTimeout(ctx, bound)
			defer cancel()
			return pr.Probe(pctx)
		}
		if err := t.retry(ctx, -1, "probe destination", probe); err != nil {
			return nil // only ctx ends retry
		}
	}
	// Reconcile and clean up every partition before any writes: a cleanup
	// lists the destination, and must not race with this destination's uploads.
	starts := make([]uint64, t.o.Log.Partitions())
	for p := range starts {
		pos, err := t.start(ctx, p)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		starts[p] = pos
	}
	g, gctx := errgroup.WithContext(ctx)
	for p := range t.o.Log.Partitions() {
		g.Go(func() (err error) {
			defer func() {
				if r := recover(); r != nil {
					err = fmt.Errorf("transport %s/%s partition %d: panic: %v", t.o.Org, t.o.Name, p, r)
				}
			}()
			return t.runPartition(gctx, p, starts[p])
		})
	}
	err := g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		t.up.Store(false)
		t.lastErr.Store(&failure{msg: err.Error(), at: t.o.Now().UTC(), op: "deliver"})
	}
	return err
}

// Progress is the local progress record of partition p (0 when none).
func (t *Transport) Progress(p int) (uint64, error) {
	return t.o.Progress.Progress(t.o.Org, t.o.Name, p)
}

func (t *Transport) saveProgress(p int, seq uint64) error {
	return t.o.Progress.SetProgress(t.o.Org, t.o.Name, p, seq)
}

type pending struct {
	first, last uint64
	firstTime   int64
	rows        int
	bytes       int64
	tables      [3]int // rows per table (events, pages, sessions): the batch's capacities
}

func (t *Transport) runPartition(ctx context.Context, p int, saved uint64) error {
	ps := &t.parts[p]
	ps.readPos.Store(saved)
	var pend pending
	flush := func() error {
		if err := t.flush(ctx, p, &pend); err != nil {
			return err
		}
		saved = pend.last
		pend = pending{}
		for i := range ps.oldest {
			ps.oldest[i].Store(0)
		}
		return nil
	}
	for {
		wait := t.o.Outputs.Notify()
		end := t.o.Outputs.NextSeq(p) - 1
		if read := ps.readPos.Load(); read < end {
			err := t.scan(p, read+1, end, func(seq uint64, o *sessionize.Output) error {
				if pend.rows > 0 && o.LogTime-pend.firstTime >= int64(t.o.Flush.MaxAge) {
					if err := flush(); err != nil {
						return err
					}
				}
				if o.Org == t.o.Org && o.Kind != sessionize.KindWatermark {
					if pend.rows == 0 {
						pend.first, pend.firstTime = seq, o.LogTime
					}
					if tb := table(o); tb >= 0 {
						pend.tables[tb]++
						if ps.oldest[tb].Load() == 0 {
							ps.oldest[tb].Store(rowTime(o))
						}
					}
					pend.last = seq
					pend.rows++
					pend.bytes += rowBytes(o)
					if pend.rows >= t.o.Flush.MaxEvents || pend.bytes >= t.o.Flush.MaxBytes {
						if err := flush(); err != nil {
							return err
						}
					}
				}
				ps.readPos.Store(seq)
				return nil
			})
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("transport %s/%s partition %d: %w", t.o.Org, t.o.Name, p, err)
			}
			// With nothing pending, everything read is delivered or not ours.
			if read := ps.readPos.Load(); pend.rows == 0 && read > saved {
				if err := t.saveProgress(p, read); err != nil {
					return err
				}
				saved = read
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wait:
		}
	}
}

func rowBytes(o *sessionize.Output) int64 {
	if o.Kind == sessionize.KindEvent {
		return o.Size
	}
	return 256
}

// start reconciles local progress with the destination and cleans up.
func (t *Transport) start(ctx context.Context, p int) (uint64, error) {
	var pos uint64
	err := t.retry(ctx, p, "read committed progress", func() error {
		local, err := t.Progress(p)
		if err != nil {
			return err
		}
		remote, _, err := t.o.Dest.Committed(ctx, p)
		if err != nil {
			return err
		}
		pos = max(local, remote)
		if err := t.o.Dest.Cleanup(ctx, p, pos); err != nil {
			return err
		}
		if pos > local {
			return t.saveProgress(p, pos)
		}
		return nil
	})
	return pos, err
}

func (t *Transport) scan(p int, from, to uint64, fn func(seq uint64, o *sessionize.Output) error) error {
	return t.o.Outputs.ScanOutputs(p, from, to, fn)
}

// flush builds the pending batch, writes it until it commits, and records progress.
func (t *Transport) flush(ctx context.Context, p int, pend *pending) error {
	// The semaphore bounds how many batches are in memory at once.
	select {
	case t.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-t.sem }()
	b, err := t.batch(p, pend)
	if err != nil {
		return err
	}
	if err := t.retry(ctx, p, "write batch", func() error { return t.o.Dest.Write(ctx, b) }); err != nil {
		return err
	}
	if err := t.saveProgress(p, b.LastSeq); err != nil {
		return err
	}
	t.lastOK.Store(t.o.Now().UnixNano())
	t.rows[0].Add(int64(len(b.Events)))
	t.rows[1].Add(int64(len(b.Pages)))
	t.rows[2].Add(int64(len(b.Sessions)))
	t.o.Metrics.delivered(t, len(b.Events), len(b.Pages), len(b.Sessions))
	return nil
}

// batch returns the pending batch: taken from another transport of the
// Shared group when it built it, else built here.
func (t *Transport) batch(p int, pend *pending) (*destination.Batch, error) {
	build := func() (*destination.Batch, []lostEvent, error) { return t.build(p, pend) }
	var (
		b    *destination.Batch
		lost []lostEvent
		err  error
	)
	if t.o.Shared != nil {
		b, lost, err = t.o.Shared.batch(sharedKey{group{t.o.Org, t.o.Flush}, p, pend.first, pend.last}, build)
	} else {
		b, lost, err = build()
	}
	if err != nil {
		return nil, err
	}
	for _, l := range lost {
		// The sessionizer read this record, but the log no longer holds it
		// intact (a damaged data directory: retention never removes an
		// undelivered record). Its event cannot be delivered; holding the
		// batch would stall everything after it. Skipped the same way on
		// every attempt, and reported.
		t.o.Metrics.lost(t, p)
		t.o.Logger.Error("event lost from the log skipped: it cannot be delivered", "org", t.o.Org, "destination", t.o.Name,
			"partition", p, "offset", l.offset, "err", l.err)
	}
	return b, nil
}

// build reads the batch's items again and materialises the rows; the events
// that the log no longer holds intact are left out and returned in lost.
func (t *Transport) build(p int, pend *pending) (_ *destination.Batch, lost []lostEvent, _ error) {
	b := &destination.Batch{ID: destination.BatchID(p, pend.first, pend.last), Org: t.o.Org, Partition: p,
		FirstSeq: pend.first, LastSeq: pend.last,
		// Sized once: growing a slice of 10,000 rows copies them again and again.
		Events:   sized[format.EventRow](pend.tables[0]),
		Pages:    sized[format.PageRow](pend.tables[1]),
		Sessions: sized[format.SessionRow](pend.tables[2])}
	r, err := t.o.Log.OpenReader(p)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	err = t.scan(p, pend.first, pend.last, func(seq uint64, o *sessionize.Output) error {
		if o.Org != t.o.Org {
			return nil
		}
		switch o.Kind {
		case sessionize.KindEvent:
			val, err := r.Get(o.Offset)
			if err == nil {
				var rec event.Record
				if rec, err = event.Decode(val); err == nil {
					b.Events = append(b.Events, format.NewEventRow(p, o, &rec.Event))
					return nil
				}
			}
			if !errors.Is(err, eventlog.ErrNotInLog) && !errors.Is(err, eventlog.ErrCorruptSegment) && !errors.Is(err, event.ErrCorrupt) {
				return err
			}
			lost = append(lost, lostEvent{o.Offset, err})
		case sessionize.KindPage:
			b.Pages = append(b.Pages, format.NewPageRow(o))
		case sessionize.KindSession:
			b.Sessions = append(b.Sessions, format.NewSessionRow(o))
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("build batch %s: %w", b.ID, err)
	}
	return b, lost, nil
}

// sized returns an empty slice with room for n rows, nil when n is 0 (as
// appending nothing leaves it).
func sized[T any](n int) []T {
	if n == 0 {
		return nil
	}
	return make([]T, 0, n)
}

// probeTimeout bounds one probe of a destination at start, unless the
// destination is a ProbeBounder.
const probeTimeout = 30 * time.Second

// maxBackoff caps the wait between retries of a failing destination.
const maxBackoff = 60 * time.Second

// backoff is how a failing destination is retried: from 500ms doubling up
// to maxBackoff, with jitter; an error carrying a RetryAfter only lengthens
// the wait.
var backoff = retry.Policy{Initial: 500 * time.Millisecond, Max: maxBackoff, Jitter: true, HintAtLeast: true}

// retry calls fn until it succeeds or ctx ends (see backoff); errors that
// Options.Permanent reports are retried at the slowest backoff.
func (t *Transport) retry(ctx context.Context, p int, what string, fn func() error) error {
	pol := backoff
	pol.Failed = func(f *retry.Failure) {
		t.o.Metrics.failed(t)
		t.lastErr.Store(&failure{msg: f.Err.Error(), at: t.o.Now().UTC(), op: what})
		if t.up.Swap(false) || f.Attempt%20 == 0 {
			t.o.Logger.Error("destination failing; holding its events and retrying", "org", t.o.Org, "destination", t.o.Name,
				"partition", p, "op", what, "attempt", f.Attempt, "err", f.Err)
		}
		if t.o.Permanent != nil && t.o.Permanent(f.Err) {
			f.Slowest()
		}
	}
	err := retry.Do(ctx, pol, func(int) error { return fn() })
	if err == nil && !t.up.Swap(true) {
		t.o.Logger.Info("destination recovered", "org", t.o.Org, "destination", t.o.Name, "partition", p)
	}
	return err
}

// Frontier returns the smallest log offset of partition p that this
// transport has not yet delivered or passed: events below it were handed to
// the destination in committed batches (or belong to other orgs), events at
// or above it are still in the pipeline's hands and will be delivered.
// Backfill uses it so that it never writes what the pipeline still will.
func (t *Transport) Frontier(p int) (uint64, error) {
	prog, err := t.Progress(p)
	if err != nil {
		return 0, err
	}
	off, err := t.o.Outputs.FirstEventOffset(p, prog+1, t.o.Outputs.NextSeq(p)-1)
	if err != nil || off > 0 {
		return off, err
	}
	return t.o.Outputs.Cursor(p) + 1, nil
}

// OldestPending is the oldest of OldestPendingTables; 0 when nothing is
// pending.
func (t *Transport) OldestPending() int64 {
	var oldest int64
	for _, v := range t.OldestPendingTables() {
		if v > 0 && (oldest == 0 || v < oldest) {
			oldest = v
		}
	}
	return oldest
}

// OldestPendingTables returns per table (events, pages, sessions) the log
// time (Unix ns) from which the table's oldest undelivered row is counted
// against its freshness SLA (0 when nothing is pending): the oldest row
// this destination has read but not delivered (see rowTime), else the
// first unread output or the first unsessionized log record (the rows they
// hold or will make are at least that late), and for events the oldest
// event the auditor found missing from the destination.
func (t *Transport) OldestPendingTables() [3]int64 {
	var oldest [3]int64
	keep := func(i int, v int64) {
		if v > 0 && (oldest[i] == 0 || v < oldest[i]) {
			oldest[i] = v
		}
	}
	keepAll := func(v int64) {
		for i := range oldest {
			keep(i, v)
		}
	}
	for p := range t.parts {
		ps := &t.parts[p]
		unread := int64(-1) // the first unread output's time, read once when needed
		for i := range ps.oldest {
			if v := ps.oldest[i].Load(); v > 0 {
				keep(i, v) // the unread outputs come after the pending rows
				continue
			}
			if unread < 0 {
				unread = 0
				if read := ps.readPos.Load(); read+1 < t.o.Outputs.NextSeq(p) {
					unread = t.outputTime(p, read+1)
				}
			}
			keep(i, unread)
		}
	}
	keepAll(t.o.Outputs.OldestUnprocessed())
	keep(0, t.auditMissing.Load())
	return oldest
}

func (t *Transport) outputTime(p int, seq uint64) int64 {
	var at int64
	_ = t.scan(p, seq, seq, func(_ uint64, o *sessionize.Output) error {
		at = o.LogTime
		return nil
	})
	return at
}
