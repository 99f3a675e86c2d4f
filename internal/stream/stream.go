package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/fault"
	"github.com/tidemark/tidemark/internal/redact"
	"github.com/tidemark/tidemark/internal/retry"
)

// Log is what the stream reads: *eventlog.Log.
type Log interface {
	Partitions() int
	LastOffset(p int) uint64
	FirstOffset(p int) (uint64, error)
	Scan(p int, from, to uint64, fn func(off uint64, val []byte) error) error
	Notify() <-chan struct{}
	Tail(from uint64, dst []eventlog.Committed) ([]eventlog.Committed, uint64, bool)
	TailSeq() uint64
}

// Options configure New.
type Options struct {
	Log      Log
	DataDir  string // the stream keeps its state in DataDir/store/stream and DataDir/stream
	Webhooks []Webhook
	// PageIdle and SessionIdle define the active pages and sessions gauges.
	PageIdle, SessionIdle time.Duration
	Hub                   *Hub // live-tail subscribers; may be nil
	Sender                *Sender
	Registerer            prometheus.Registerer
	Logger                *slog.Logger
	Now                   func() time.Time
	// Faults are the test-only fault switches (parsed once by the caller,
	// fault.FromEnv); the stream applies StreamPanicOnEvent.
	Faults fault.Set
	// MinBackoff is the first retry delay of a webhook batch (default 500ms);
	// it doubles per attempt up to MaxBackoff (default 1m), with jitter.
	MinBackoff, MaxBackoff time.Duration
}

// Stream is the streaming pipeline stage. Run it under a supervisor: it
// returns an error on failure and resumes from its durable cursors.
type Stream struct {
	o      Options
	hooks  []*hook
	dirty  atomic.Bool // a cursor was written since the last sync
	m      metrics
	active *active
	// Where the live follower is: the last offset it handled per
	// partition and the log's tail sequence number it reads next. Taken
	// at New, before the server answers requests, so that every event
	// committed after start-up is seen however late Run starts, and kept
	// across restarts of Run. Used only by runLive.
	livePos []uint64
	liveSeq uint64
}

type hook struct {
	Webhook
	cursor  []atomic.Uint64 // per partition: last handled offset
	start   []uint64        // per partition: the log's last offset at New, where a new webhook starts
	pending []atomic.Int64  // per partition: received_at of the oldest undelivered event, 0 if none
	loaded  atomic.Bool

	delivered, failed, retries, dead prometheus.Counter

	mu        sync.Mutex // guards the fields below
	lastErr   string
	lastErrAt time.Time
	counts    [3]int64 // delivered, dead-lettered events, failed requests since start
}

// WebhookStatus is one webhook's state for the status API.
type WebhookStatus struct {
	Org, Name, URL        string // URL without user info or query
	LagSeconds            float64
	Delivered, DeadLetter int64 // events since start
	FailedRequests        int64 // since start
	LastError             string
	LastErrorAt           time.Time
	// Behind is the number of log records (all kinds) past the webhook's
	// cursor, summed over partitions.
	Behind uint64
}

// Status returns the state of every webhook.
func (s *Stream) Status() []WebhookStatus {
	var out []WebhookStatus
	for _, h := range s.hooks {
		st := WebhookStatus{Org: h.Org, Name: h.Name, URL: redact.URL(h.URL, nil), LagSeconds: s.lag(h)}
		if h.loaded.Load() {
			for p := range h.cursor {
				last, cur := s.o.Log.LastOffset(p), h.cursor[p].Load()
				st.Behind += last - min(cur, last)
			}
		}
		h.mu.Lock()
		st.Delivered, st.DeadLetter, st.FailedRequests = h.counts[0], h.counts[1], h.counts[2]
		st.LastError, st.LastErrorAt = h.lastErr, h.lastErrAt
		h.mu.Unlock()
		out = append(out, st)
	}
	return out
}

func (h *hook) count(i int, n int64) {
	h.mu.Lock()
	h.counts[i] += n
	h.mu.Unlock()
}

type metrics struct {
	live       *prometheus.CounterVec
	poison     *prometheus.CounterVec
	missed     *prometheus.CounterVec
	liveOrgs   map[[2]string]prometheus.Counter
	liveRecent [4]liveEntry // runLive's goroutine only
	pages      *prometheus.GaugeVec
	sessions   *prometheus.GaugeVec
	webhookDL  *prometheus.CounterVec
}

// New returns the stage and registers its metrics. Call it before the server
// accepts events: a webhook without a stored cursor starts with the events
// appended after New.
func New(o Options) (*Stream, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Sender == nil {
		o.Sender = NewSender("tidemark-webhook", o.Now)
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = 500 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Minute
	}
	s := &Stream{o: o, liveSeq: o.Log.TailSeq(), livePos: make([]uint64, o.Log.Partitions())}
	for p := range s.livePos {
		s.livePos[p] = o.Log.LastOffset(p) // after TailSeq: see Log.TailSeq
	}
	s.m = metrics{
		live: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_live_events_total",
			Help: "Events seen by the streaming pipeline, within milliseconds of their commit."}, []string{"org", "type"}),
		poison: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_stream_poison_events_total",
			Help: "Events whose streaming handler panicked; recorded, skipped, and processing continued."}, []string{"consumer"}),
		missed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_webhook_missed_records_total",
			Help: "Log records a webhook never saw because retention removed them first (only while the stream was disabled)."}, []string{"org", "webhook"}),
		liveOrgs: map[[2]string]prometheus.Counter{},
		pages: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tidemark_active_pages",
			Help: "Devices on a page with an event within page_idle of log time (the stream's approximation)."}, []string{"org"}),
		sessions: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tidemark_active_sessions",
			Help: "Devices with an event within session_idle of log time (the stream's approximation)."}, []string{"org"}),
	}
	delivered := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_webhook_delivered_events_total",
		Help: "Events a webhook receiver accepted (2xx)."}, []string{"org", "webhook"})
	failed := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_webhook_failed_requests_total",
		Help: "Webhook requests that failed (error, timeout or non-2xx answer)."}, []string{"org", "webhook"})
	retries := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_webhook_retries_total",
		Help: "Webhook requests sent again after a failure."}, []string{"org", "webhook"})
	dead := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_webhook_dead_letter_events_total",
		Help: "Events written to dead letters after the retry window or a permanent refusal."}, []string{"org", "webhook"})
	lag := prometheus.NewGaugeFunc // per webhook, below
	cs := []prometheus.Collector{s.m.live, s.m.poison, s.m.missed, s.m.pages, s.m.sessions, delivered, failed, retries, dead}
	parts := o.Log.Partitions()
	for _, w := range o.Webhooks {
		h := &hook{Webhook: w, cursor: make([]atomic.Uint64, parts), pending: make([]atomic.Int64, parts), start: make([]uint64, parts),
			delivered: delivered.WithLabelValues(w.Org, w.Name), failed: failed.WithLabelValues(w.Org, w.Name),
			retries: retries.WithLabelValues(w.Org, w.Name), dead: dead.WithLabelValues(w.Org, w.Name)}
		h.Filter.Org = w.Org
		for p := range parts {
			h.start[p] = o.Log.LastOffset(p)
		}
		s.m.missed.WithLabelValues(w.Org, w.Name)
		s.hooks = append(s.hooks, h)
		cs = append(cs, lag(prometheus.GaugeOpts{Name: "tidemark_webhook_lag_seconds",
			Help:        "Age of the oldest event a webhook has not delivered yet (0 when caught up).",
			ConstLabels: prometheus.Labels{"org": w.Org, "webhook": w.Name}}, func() float64 { return s.lag(h) }))
	}
	for _, c := range []string{"live", "webhook"} {
		s.m.poison.WithLabelValues(c)
	}
	for _, c := range cs {
		if err := o.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("register stream metrics: %w", err)
		}
	}
	s.active = newActive(o.PageIdle, o.SessionIdle, s.m.pages, s.m.sessions)
	return s, nil
}

func (s *Stream) lag(h *hook) float64 {
	now := s.o.Now().UnixNano()
	var oldest int64
	for p := range h.pending {
		if t := h.pending[p].Load(); t != 0 && (oldest == 0 || t < oldest) {
			oldest = t
		}
	}
	if oldest == 0 || oldest > now {
		return 0
	}
	return time.Duration(now - oldest).Seconds()
}

// Hold returns the lowest offset of partition p that a webhook still needs
// (retention must keep it and everything after it), and false when no
// webhook holds anything. Before the cursors are loaded it holds everything.
func (s *Stream) Hold(p int) (uint64, bool) {
	var keep uint64
	held := false
	for _, h := range s.hooks {
		if !h.loaded.Load() {
			return 0, true
		}
		c := h.cursor[p].Load() + 1
		if !held || c < keep {
			keep, held = c, true
		}
	}
	return keep, held
}

// Run follows the log until ctx ends. It returns nil only when ctx ends.
func (s *Stream) Run(ctx context.Context) error {
	db, err := eventlog.OpenCursors(s.o.DataDir, s.o.Logger)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, h := range s.hooks {
		if err := s.loadCursors(db, h); err != nil {
			return err
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	goSafe(g, func() error { return s.runLive(gctx) })
	if len(s.hooks) > 0 {
		goSafe(g, func() error { return s.syncCursors(gctx, db) })
	}
	for _, h := range s.hooks {
		for p := range s.o.Log.Partitions() {
			goSafe(g, func() error { return s.runWebhook(gctx, db, h, p) })
		}
	}
	err = g.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("stream stopped")
	}
	return err
}

// cursorSyncInterval bounds what a crash makes a webhook send again: cursor
// writes are not fsynced one by one, but the store's WAL is synced this often.
const cursorSyncInterval = 200 * time.Millisecond

func (s *Stream) syncCursors(ctx context.Context, db *eventlog.Cursors) error {
	t := time.NewTicker(cursorSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if s.dirty.Swap(false) {
				if err := db.Sync(); err != nil {
					return err
				}
			}
		}
	}
}

// goSafe runs fn in g, turning a panic into an error so that the supervisor
// restarts the stage instead of the process dying.
func goSafe(g *errgroup.Group, fn func() error) {
	g.Go(func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v\n%s", r, debug.Stack())
			}
		}()
		return fn()
	})
}

// loadCursors reads h's cursors. A webhook seen for the first time starts
// at the log's tail as it was at New (before the server accepted anything),
// so it gets every event accepted after it was added; that cursor is stored
// durably.
func (s *Stream) loadCursors(db *eventlog.Cursors, h *hook) error {
	if err := db.Load(h.Org, h.Name, h.start, func(p int, off uint64) { h.cursor[p].Store(off) }); err != nil {
		return err
	}
	h.loaded.Store(true)
	return nil
}

// handle runs fn for one event under recover: a panic, or an error from fn
// (an event that cannot be encoded), makes the event poison: it is counted
// and logged here, and the caller skips it.
func (s *Stream) handle(consumer string, p int, off uint64, e *event.Event, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
		if err != nil {
			s.m.poison.WithLabelValues(consumer).Inc()
			s.o.Logger.Error("poison event skipped: the stream could not process it", "consumer", consumer,
				"org", e.Org, "partition", p, "offset", off, "event_id", e.ID, "err", err)
		}
	}()
	if f := s.o.Faults.StreamPanicOnEvent; f != "" && e.Name == f {
		panic("test fault: stream-panic-on-event=" + f)
	}
	return fn()
}

// runLive follows every partition from where the follower is (the log's end
// at New on the first run): metrics and the live tail. While nobody tails it
// takes each committed record's identity from the log's tail in memory; it
// reads the store when somebody tails (the live tail needs the whole event)
// or when it fell further behind than the log's tail keeps.
func (s *Stream) runLive(ctx context.Context) error {
	n := s.o.Log.Partitions()
	pos, seq := s.livePos, s.liveSeq
	defer func() { s.liveSeq = seq }()
	var tail []eventlog.Committed
	for {
		notify := s.o.Log.Notify()
		ok := false
		if !s.o.Hub.Subscribed() {
			var next uint64
			tail, next, ok = s.o.Log.Tail(seq, tail[:0])
			for i := 0; ok && i < len(tail); i++ {
				c := &tail[i]
				if c.Off <= pos[c.Part] {
					continue // read by a scan already
				}
				if c.Off > pos[c.Part]+1 { // not expected: the tail has every commit
					if err := s.scanLive(c.Part, pos, c.Off-1); err != nil {
						return err
					}
				}
				pos[c.Part] = c.Off
				r := event.Record{Kind: c.Kind, Time: c.Time, Event: event.Event{
					ID: c.ID, Org: c.Org, Device: c.Device, Type: c.Type, Name: c.Name, ReceivedAt: c.Time}}
				s.live(c.Part, c.Off, &r, false)
			}
			seq = next
		}
		if !ok {
			// Records numbered below seq are at or below the LastOffset
			// each scan reads after it; later ones the tail skips.
			seq = s.o.Log.TailSeq()
			for p := range n {
				if err := s.scanLive(p, pos, 0); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
		}
	}
}

// scanLive reads partition p's records after pos[p] up to to (0: to the
// end) from the store for runLive.
func (s *Stream) scanLive(p int, pos []uint64, to uint64) error {
	err := s.o.Log.Scan(p, pos[p]+1, to, func(off uint64, val []byte) error {
		pos[p] = off
		// Only the record's identity and type are needed unless somebody
		// tails: the raw JSON fields are copied only then. A subscriber
		// that arrives between the two checks starts with the next record
		// (the live tail has no history).
		full := s.o.Hub.Subscribed()
		decode := event.DecodeMeta
		if full {
			decode = event.Decode
		}
		r, err := decode(val)
		if err != nil {
			s.m.poison.WithLabelValues("live").Inc()
			s.o.Logger.Error("undecodable log record skipped", "consumer", "live", "partition", p, "offset", off, "err", err)
			return nil
		}
		s.live(p, off, &r, full)
		return nil
	})
	if err != nil {
		return fmt.Errorf("follow log partition %d: %w", p, err)
	}
	return nil
}

// live counts one record, observes it for the active gauges and, when
// publish is set, sends it to the live tail.
func (s *Stream) live(p int, off uint64, r *event.Record, publish bool) {
	if r.Kind != event.KindEvent {
		s.active.observe(r)
		return
	}
	_ = s.handle("live", p, off, &r.Event, func() error {
		s.liveCounter(r.Event.Org, r.Event.Type).Inc()
		s.active.observe(r)
		if publish {
			return s.o.Hub.publish(&r.Event, p, off)
		}
		return nil
	})
}

func (s *Stream) liveCounter(org, typ string) prometheus.Counter {
	// The few (org, type) pairs of the last events answer most lookups
	// without hashing two strings per event.
	r := &s.m.liveRecent
	for i := range r {
		if e := &r[i]; e.c != nil && e.typ == typ && e.org == org {
			return e.c
		}
	}
	k := [2]string{org, typ}
	c := s.m.liveOrgs[k]
	if c == nil {
		c = s.m.live.WithLabelValues(org, typ)
		s.m.liveOrgs[k] = c
	}
	copy(r[1:], r[:len(r)-1])
	r[0] = liveEntry{org: strings.Clone(org), typ: strings.Clone(typ), c: c}
	return c
}

type liveEntry struct {
	org, typ string
	c        prometheus.Counter
}

var errBatchFull = errors.New("batch full")

// MaxRequestBytes bounds a webhook request's events (and the memory of a
// batch in flight): a batch is cut at batch_size events or once its encoded
// events reach this size, whichever comes first.
const MaxRequestBytes = 1 << 20

// runWebhook delivers h's events of partition p, one batch at a time, in
// offset order (so in order per device), until ctx ends.
func (s *Stream) runWebhook(ctx context.Context, db *eventlog.Cursors, h *hook, p int) error {
	cur := h.cursor[p].Load()
	if first, err := s.o.Log.FirstOffset(p); err == nil && first > cur+1 {
		s.m.missed.WithLabelValues(h.Org, h.Name).Add(float64(first - cur - 1))
		s.o.Logger.Warn("webhook missed log records removed by retention", "org", h.Org, "webhook", h.Name,
			"partition", p, "records", first-cur-1)
	}
	save := func(off uint64) error {
		h.cursor[p].Store(off)
		if err := db.Set(h.Org, h.Name, p, off); err != nil {
			return err
		}
		s.dirty.Store(true)
		return nil
	}
	for {
		notify := s.o.Log.Notify()
		var items []json.RawMessage
		var first uint64
		var oldest int64
		var poison *DeadLetter
		size := 0 // encoded bytes of items
		last := cur
		err := s.o.Log.Scan(p, cur+1, 0, func(off uint64, val []byte) error {
			r, err := event.Decode(val)
			if err != nil {
				// Not this build's record format (or damaged): recorded and
				// skipped, like a poison event, once the events before it
				// are delivered.
				s.m.poison.WithLabelValues("webhook").Inc()
				s.o.Logger.Error("undecodable log record skipped", "consumer", "webhook", "org", h.Org, "webhook", h.Name,
					"partition", p, "offset", off, "err", err)
				poison = &DeadLetter{Org: h.Org, Webhook: h.Name, Partition: p, FirstOffset: off, LastOffset: off,
					Error: err.Error(), Poison: true}
				return errBatchFull
			}
			if r.Kind != event.KindEvent || !h.Filter.Match(&r.Event) {
				last = off
				return nil
			}
			if len(items) == h.BatchSize || size >= MaxRequestBytes {
				return errBatchFull
			}
			var item []byte
			herr := s.handle("webhook", p, off, &r.Event, func() (err error) {
				item, err = json.Marshal(NewItem(&r.Event, p, off))
				return err
			})
			if herr != nil {
				// The events before it are delivered first (order); then it
				// is recorded as a dead letter and skipped.
				poison = &DeadLetter{Org: h.Org, Webhook: h.Name, Partition: p, FirstOffset: off, LastOffset: off,
					Error: herr.Error(), Poison: true, EventID: r.Event.ID}
				return errBatchFull
			}
			if first == 0 {
				first, oldest = off, r.Event.ReceivedAt
			}
			items = append(items, item)
			size += len(item)
			last = off
			return nil
		})
		if err != nil && !errors.Is(err, errBatchFull) {
			return fmt.Errorf("read log partition %d: %w", p, err)
		}
		if len(items) > 0 {
			h.pending[p].Store(oldest)
			if err := s.deliver(ctx, h, p, items, first, last, oldest); err != nil {
				if ctx.Err() != nil {
					return nil // the cursor stays: the batch is sent again after a restart
				}
				return err
			}
			h.pending[p].Store(0)
		}
		if poison != nil {
			poison.FailedAt = s.o.Now().UTC()
			if err := s.deadLetter(h, poison, 0); err != nil {
				return err
			}
			last = poison.LastOffset
		}
		if last != cur {
			if err := save(last); err != nil {
				return err
			}
			cur = last
		}
		if errors.Is(err, errBatchFull) {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
		}
	}
}

// wireRequest is Request with its events already encoded.
type wireRequest struct {
	Org            string            `json:"org"`
	Webhook        string            `json:"webhook"`
	IdempotencyKey string            `json:"idempotency_key"`
	Events         []json.RawMessage `json:"events"`
}

// deliver sends one batch until the receiver accepts it or the retry window
// passes (then it becomes a dead letter). The window runs from the arrival
// of the batch's oldest event (received_at), so during a long outage later
// batches are not each held for a whole window: events older than the window
// get one attempt, then become dead letters, and the webhook keeps up with
// the log. It returns an error only when ctx ends first.
func (s *Stream) deliver(ctx context.Context, h *hook, p int, items []json.RawMessage, first, last uint64, oldest int64) error {
	key := fmt.Sprintf("%s.%s.p%d.%d-%d", h.Org, h.Name, p, first, last)
	body, err := json.Marshal(wireRequest{Org: h.Org, Webhook: h.Name, IdempotencyKey: key, Events: items})
	if err != nil {
		return fmt.Errorf("encode webhook request: %w", err)
	}
	deadline := time.Unix(0, oldest).Add(h.RetryFor)
	pol := retry.Policy{Initial: s.o.MinBackoff, Max: s.o.MaxBackoff, Jitter: true}
	attempts := 0
	pol.Failed = func(f *retry.Failure) {
		h.failed.Inc()
		h.mu.Lock()
		h.counts[2]++
		h.lastErr, h.lastErrAt = f.Err.Error(), s.o.Now().UTC()
		h.mu.Unlock()
		var se *SendError
		left := deadline.Sub(s.o.Now())
		if !errors.As(f.Err, &se) || !se.Retryable || left <= 0 {
			f.Stop()
			return
		}
		f.Wait = min(f.Wait, left) // one last try at the end of the window
		if f.Attempt == 1 {
			s.o.Logger.Warn("webhook request failed; retrying", "org", h.Org, "webhook", h.Name, "partition", p, "err", f.Err, "after", f.Wait)
		}
	}
	err = retry.Do(ctx, pol, func(attempt int) error {
		if attempt > 1 {
			h.retries.Inc()
		}
		attempts = attempt
		return s.o.Sender.Send(ctx, &h.Webhook, key, body, attempt)
	})
	switch {
	case err == nil:
		h.delivered.Add(float64(len(items)))
		h.count(0, int64(len(items)))
		return nil
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return err
	}
	s.o.Logger.Error("webhook batch moved to dead letters", "org", h.Org, "webhook", h.Name, "partition", p,
		"events", len(items), "attempts", attempts, "err", err)
	return s.deadLetter(h, &DeadLetter{Org: h.Org, Webhook: h.Name, Partition: p, FirstOffset: first, LastOffset: last,
		Events: len(items), FailedAt: s.o.Now().UTC(), Attempts: attempts, Error: err.Error(), Body: body}, len(items))
}

func (s *Stream) deadLetter(h *hook, d *DeadLetter, events int) error {
	if _, err := WriteDeadLetter(DeadLetterDir(s.o.DataDir), d); err != nil {
		return err // the stage restarts and tries again: nothing moves past it unrecorded
	}
	h.dead.Add(float64(events))
	h.count(1, int64(events))
	return nil
}

// Cursors returns, per log partition, the largest webhook cursor in the
// stream's store under dataDir (every webhook's, also of webhooks no
// longer configured): the start-up check makes sure the log never hands
// out an offset that a webhook has already passed. No store: all zero.
func Cursors(dataDir string, partitions int, logger *slog.Logger) ([]uint64, error) {
	return eventlog.MaxCursors(dataDir, partitions, logger)
}
