package collector

import (
	"net/http"
	"strconv"
	"sync"
	"unsafe"

	"github.com/tidemark/tidemark/internal/event"
)

// Limits bound what requests may hold at once while they are read, decoded
// and appended, so that no client can exhaust the server's memory or take
// another org's share. A request holds its buffer (the body after gunzip),
// once more its body's size (the events' copies) and EventCost per event.
// Zero fields take the defaults below.
type Limits struct {
	MaxRequests       int   // all requests; default 1024
	MaxRequestsPerOrg int   // one org's (and the keyless requests'); default 256
	MaxBytes          int64 // all requests; default 128 MiB
	MaxBytesPerOrg    int64 // one org's; default 32 MiB
	// Requests without a key in a header (writeKey in the body): their body
	// is read only up to MaxKeylessBody, and together they hold at most
	// MaxKeylessBytes, before their key is known.
	MaxKeylessBody  int64 // default 64 KiB
	MaxKeylessBytes int64 // default 8 MiB
}

// Default limits; see Limits.
const (
	DefaultMaxRequests       = 1024
	DefaultMaxRequestsPerOrg = 256
	DefaultMaxBytes          = 128 << 20
	DefaultMaxBytesPerOrg    = 32 << 20
	DefaultMaxKeylessBody    = 64 << 10
	DefaultMaxKeylessBytes   = 8 << 20
)

// EventCost is what one event of a request is counted as, beyond the
// request's body: the decoder's and the record's structures for it.
const EventCost = int64(unsafe.Sizeof(rawEvent{}) + unsafe.Sizeof(event.Event{}) + 128)

// chargeEvery is how many events the decoder scans between charges.
const chargeEvery = 64

// gzipCost is the memory of a gzip reader (its window and tables).
const gzipCost = 48 << 10

func (l *Limits) fill() {
	def := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	if l.MaxRequests <= 0 {
		l.MaxRequests = DefaultMaxRequests
	}
	if l.MaxRequestsPerOrg <= 0 {
		l.MaxRequestsPerOrg = DefaultMaxRequestsPerOrg
	}
	def(&l.MaxBytes, DefaultMaxBytes)
	def(&l.MaxBytesPerOrg, DefaultMaxBytesPerOrg)
	def(&l.MaxKeylessBody, DefaultMaxKeylessBody)
	def(&l.MaxKeylessBytes, DefaultMaxKeylessBytes)
}

// pool is one budget of requests and bytes: the server's, an org's, or the
// keyless requests'.
type pool struct {
	who               string // in messages: "org acme"
	maxReqs, maxBytes int64
	code              int // the status beyond it: 429 for a share, 503 for the server

	mu          sync.Mutex
	reqs, bytes int64
}

func (p *pool) take(reqs, bytes int64) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reqs+reqs > p.maxReqs || p.bytes+bytes > p.maxBytes {
		return false
	}
	p.reqs += reqs
	p.bytes += bytes
	return true
}

func (p *pool) give(reqs, bytes int64) {
	p.mu.Lock()
	p.reqs -= reqs
	p.bytes -= bytes
	p.mu.Unlock()
}

// overBudget is a request refused for want of budget: 429 or 503 with
// Retry-After, or 413 when the request alone exceeds its share.
type overBudget struct {
	code int
	msg  string
}

func (e *overBudget) Error() string { return e.msg }

// limiter holds the pools. The orgs' pools are made on first use; orgs come
// from the configuration, so they are few.
type limiter struct {
	l       Limits
	all     *pool
	keyless *pool
	mu      sync.Mutex
	orgs    map[string]*pool
}

func newLimiter(l Limits) *limiter {
	l.fill()
	return &limiter{l: l, orgs: map[string]*pool{},
		all: &pool{who: "the server", maxReqs: int64(l.MaxRequests), maxBytes: l.MaxBytes, code: http.StatusServiceUnavailable},
		keyless: &pool{who: "requests without an Authorization header", maxReqs: int64(l.MaxRequestsPerOrg),
			maxBytes: l.MaxKeylessBytes, code: http.StatusTooManyRequests},
	}
}

func (lm *limiter) org(org string) *pool {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	p := lm.orgs[org]
	if p == nil {
		p = &pool{who: "org " + org, maxReqs: int64(lm.l.MaxRequestsPerOrg), maxBytes: lm.l.MaxBytesPerOrg, code: http.StatusTooManyRequests}
		lm.orgs[org] = p
	}
	return p
}

// ticket is one request's hold on its own pool (its org's, or the keyless
// one) and the server's.
type ticket struct {
	own, all *pool
	bytes    int64
	started  bool
}

// start counts the request and its first bytes.
func (t *ticket) start(bytes int64) error {
	if !t.own.take(1, 0) {
		return t.refuse(t.own, "requests")
	}
	if !t.all.take(1, 0) {
		t.own.give(1, 0)
		return t.refuse(t.all, "requests")
	}
	t.started = true
	return t.grow(bytes)
}

// grow adds n bytes to what the request holds.
func (t *ticket) grow(n int64) error {
	if t.bytes+n > t.own.maxBytes {
		return &overBudget{http.StatusRequestEntityTooLarge, "request needs more than the " + strconv.FormatInt(t.own.maxBytes, 10) +
			" bytes " + t.own.who + " may hold at once (about twice its body after gunzip plus " + strconv.FormatInt(EventCost, 10) +
			" bytes per event): send smaller batches"}
	}
	if !t.own.take(0, n) {
		return t.refuse(t.own, "bytes")
	}
	if !t.all.take(0, n) {
		t.own.give(0, n)
		return t.refuse(t.all, "bytes")
	}
	t.bytes += n
	return nil
}

func (t *ticket) refuse(p *pool, what string) error {
	return &overBudget{p.code, p.who + " has too many " + what + " in flight; retry after the Retry-After seconds"}
}

// done gives back everything the request held.
func (t *ticket) done() {
	if t.started {
		t.own.give(1, t.bytes)
		t.all.give(1, t.bytes)
	}
}
