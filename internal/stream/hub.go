package stream

import (
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/event"
)

// SubscriberBuffer is how many events a live-tail subscriber may have
// waiting; more are dropped for that subscriber and reported to it.
const SubscriberBuffer = 1024

// Hub fans events out to live-tail subscribers. Publishing never blocks.
// It outlives restarts of the stream stage. Safe for concurrent use.
type Hub struct {
	mu     sync.Mutex
	subs   map[*Sub]struct{}
	n      atomic.Int32
	closed chan struct{}
	once   sync.Once
	max    int // see SetMaxSubscribers

	mSubs    prometheus.Gauge
	mDropped prometheus.Counter
}

// Sub is one live-tail subscriber.
type Sub struct {
	filter  Filter
	ch      chan []byte // JSON of an Item
	dropped atomic.Int64
}

// C delivers the JSON of each matching event (an Item).
func (s *Sub) C() <-chan []byte { return s.ch }

// TakeDropped returns how many events were dropped since the last call
// because the subscriber's buffer was full.
func (s *Sub) TakeDropped() int64 { return s.dropped.Swap(0) }

// NewHub returns a hub registering its metrics with reg.
func NewHub(reg prometheus.Registerer) (*Hub, error) {
	h := &Hub{subs: map[*Sub]struct{}{}, closed: make(chan struct{}), max: MaxSubscribers,
		mSubs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidemark_live_subscribers", Help: "Open live-tail (SSE) subscriptions."}),
		mDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "tidemark_live_dropped_events_total",
			Help: "Events not sent to a live-tail subscriber because its buffer was full (the subscriber is told)."}),
	}
	for _, c := range []prometheus.Collector{h.mSubs, h.mDropped} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// MaxSubscribers bounds the open live-tail streams (each may buffer
// SubscriberBuffer events) unless SetMaxSubscribers says otherwise.
const MaxSubscribers = 100

// SetMaxSubscribers replaces MaxSubscribers for h. The server sets it to the
// sum of the orgs' and the admin keys' shares, which it enforces itself, so
// that this bound is only a backstop. Call it before Subscribe.
func (h *Hub) SetMaxSubscribers(n int) { h.max = n }

// ErrTooManySubscribers is returned by Subscribe beyond the limit.
var ErrTooManySubscribers = errors.New("too many live-tail subscribers")

// Subscribe adds a subscriber; call the returned func to remove it.
func (h *Hub) Subscribe(f Filter) (*Sub, func(), error) {
	s := &Sub{filter: f, ch: make(chan []byte, SubscriberBuffer)}
	h.mu.Lock()
	if len(h.subs) >= h.max {
		h.mu.Unlock()
		return nil, nil, ErrTooManySubscribers
	}
	h.subs[s] = struct{}{}
	h.n.Store(int32(len(h.subs)))
	h.mu.Unlock()
	h.mSubs.Inc()
	return s, func() {
		h.mu.Lock()
		if _, ok := h.subs[s]; ok {
			delete(h.subs, s)
			h.mSubs.Dec()
		}
		h.n.Store(int32(len(h.subs)))
		h.mu.Unlock()
	}, nil
}

// Done is closed by Close (server shutdown): subscribers should end.
func (h *Hub) Done() <-chan struct{} { return h.closed }

// Close tells every subscriber to end.
func (h *Hub) Close() { h.once.Do(func() { close(h.closed) }) }

// Subscribed reports whether anybody tails now; false for a nil Hub.
func (h *Hub) Subscribed() bool { return h != nil && h.n.Load() > 0 }

// publish sends the event to every matching subscriber without blocking.
func (h *Hub) publish(e *event.Event, p int, off uint64) error {
	if h.n.Load() == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var data []byte
	for s := range h.subs {
		if !s.filter.Match(e) {
			continue
		}
		if data == nil {
			var err error
			if data, err = json.Marshal(NewItem(e, p, off)); err != nil {
				return err
			}
		}
		select {
		case s.ch <- data:
		default:
			s.dropped.Add(1)
			h.mDropped.Inc()
		}
	}
	return nil
}
