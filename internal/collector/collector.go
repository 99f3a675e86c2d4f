package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/event"
)

// Appender durably appends events to the log.
//
// When Append returns nil every event of evs is fsynced in the log. An error
// that implements interface{ RetryAfter() time.Duration } means overload or
// backpressure (disk low, queue full): the collector answers 503 with a
// Retry-After header. Any other error answers 500. Either way the client is
// told that nothing was accepted, so Append should be all or nothing; if it
// is not, the client's retry relies on messageId dedupe.
//
// Append must not keep evs (the slice is reused) after it returns; it may
// keep the events' strings and byte slices, which are never reused. ctx is
// the HTTP request's context. Append is called concurrently.
type Appender interface {
	Append(ctx context.Context, evs []event.Event) error
}

// Default limits.
const (
	DefaultMaxBodyBytes  = 4 << 20
	DefaultMaxEventBytes = 32 << 10
)

// Options configures a Handler. Log and Org are required.
type Options struct {
	Log Appender
	// Org maps a write key to its org; ok is false for an unknown key.
	Org func(writeKey string) (org string, ok bool)
	// MaxBodyBytes bounds a request body after gunzip (and before); larger
	// bodies get 413. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxEventBytes bounds the JSON of one event; a larger event is rejected
	// (the rest of its batch is not). Default DefaultMaxEventBytes.
	MaxEventBytes int64
	// Now stamps received_at. Default time.Now.
	Now func() time.Time
	// NewID makes a messageId for events that have none. Default: a random
	// (version 4) UUID from crypto/rand.
	NewID func() string
	// Registerer receives the metrics; nil means not registered.
	Registerer prometheus.Registerer
	// Logger; nil means discard. Write keys are never logged.
	Logger *slog.Logger
	// Limits bound what requests hold at once; zero fields take defaults.
	Limits Limits
}

// Handler serves the Segment-compatible tracking API. See the package
// documentation for the endpoints and response bodies.
type Handler struct {
	o       Options
	m       *metrics
	decs    sync.Pool // *decoder
	bufs    sync.Pool // *[]byte
	gzips   sync.Pool // *gzip.Reader
	maxBody int
	busy    atomic.Int64 // requests being served now
	lim     *limiter
}

// InFlight is the number of requests being served now, waiting for the log
// included.
func (h *Handler) InFlight() int64 { return h.busy.Load() }

// New returns a Handler. It panics if o.Log or o.Org is nil, or if the
// metrics cannot be registered (as prometheus.MustRegister does).
func New(o Options) *Handler {
	if o.Log == nil || o.Org == nil {
		panic("collector: Options.Log and Options.Org are required")
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if o.MaxEventBytes <= 0 {
		o.MaxEventBytes = DefaultMaxEventBytes
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.NewID == nil {
		o.NewID = NewUUID
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{o: o, m: newMetrics(o.Registerer), maxBody: int(min(o.MaxBodyBytes, math.MaxInt32)), lim: newLimiter(o.Limits)}
	h.m.registerLimits(o.Registerer, h.lim)
	h.decs.New = func() any { return new(decoder) }
	return h
}

// Endpoints, by path. The value is the call type implied by the path ("" for
// a batch) and the endpoint label of the metrics. The one-letter paths are
// the ones analytics.js (analytics-next) posts to.
var endpoints = map[string]struct{ typ, label string }{
	"/v1/batch":    {"", "batch"},
	"/v1/b":        {"", "batch"},
	"/v1/import":   {"", "import"},
	"/v1/track":    {"track", "track"},
	"/v1/t":        {"track", "track"},
	"/v1/page":     {"page", "page"},
	"/v1/p":        {"page", "page"},
	"/v1/screen":   {"screen", "screen"},
	"/v1/s":        {"screen", "screen"},
	"/v1/identify": {"identify", "identify"},
	"/v1/i":        {"identify", "identify"},
	"/v1/group":    {"group", "group"},
	"/v1/g":        {"group", "group"},
	"/v1/alias":    {"alias", "alias"},
	"/v1/a":        {"alias", "alias"},
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	h.busy.Add(1)
	defer h.busy.Add(-1)
	ep, found := endpoints[strings.TrimSuffix(r.URL.Path, "/")]
	label := ep.label
	if !found {
		label = "other"
	}
	code := h.serve(w, r, ep.typ, found)
	h.m.requests.WithLabelValues(label, strconv.Itoa(code)).Inc()
	h.m.duration.WithLabelValues(label).Observe(time.Since(start).Seconds())
}

// CORSAllowHeaders are the request headers a browser may send from any
// origin: those the tracking SDKs send. analytics.js (analytics-next) sends
// Authorization and, on every retry, X-Retry-Count; RudderStack's JavaScript
// SDK sends AnonymousId; RudderStack's mobile SDKs send the Rsa-* retry
// headers (not from a browser today, but they are the same requests). A
// header missing here makes the browser refuse the request before it is sent.
const CORSAllowHeaders = "Authorization, Content-Type, Content-Encoding, X-Retry-Count, AnonymousId, " +
	"Rsa-Retry-Attempt, Rsa-Since-Last-Attempt, Rsa-Retry-Reason"

// serve answers one request and returns the status code it wrote.
func (h *Handler) serve(w http.ResponseWriter, r *http.Request, typ string, found bool) int {
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Origin", "*")
	// Without this a browser SDK cannot read the Retry-After of a 503/429.
	hdr.Set("Access-Control-Expose-Headers", "Retry-After")
	if !found {
		return h.fail(w, http.StatusNotFound, "not found")
	}
	switch r.Method {
	case http.MethodPost:
	case http.MethodOptions: // CORS preflight from browser SDKs
		hdr.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
		hdr.Set("Access-Control-Allow-Headers", CORSAllowHeaders)
		hdr.Set("Access-Control-Max-Age", "86400")
		w.WriteHeader(http.StatusNoContent)
		return http.StatusNoContent
	default:
		hdr.Set("Allow", "POST, OPTIONS")
		return h.fail(w, http.StatusMethodNotAllowed, "method "+quoteTrunc([]byte(r.Method), maxEcho)+" not allowed; use POST")
	}

	// A key in the headers is checked before reading the body, so that a
	// request with an unknown key costs nothing. Without one, the body is
	// read (for its writeKey) only within the keyless requests' budget.
	key, fromHeader := headerKey(r)
	org, ok := "", false
	tk := ticket{own: h.lim.keyless, all: h.lim.all}
	limit := min(h.maxBody, int(min(h.lim.l.MaxKeylessBody, math.MaxInt32)))
	if fromHeader {
		if org, ok = h.o.Org(key); !ok {
			h.o.Logger.Debug("unknown write key", "key", redact(key))
			return h.fail(w, http.StatusUnauthorized, "unknown write key")
		}
		tk.own, limit = h.lim.org(org), h.maxBody
	}
	defer tk.done()
	if err := tk.start(0); err != nil {
		return h.overloaded(w, err)
	}

	bufp := h.getBuf()
	defer h.putBuf(bufp)
	body, code, err := h.readBody(w, r, bufp, limit, &tk)
	if err != nil {
		var ov *overBudget
		switch {
		case errors.As(err, &ov):
			return h.overloaded(w, err)
		case code == http.StatusRequestEntityTooLarge && !fromHeader:
			return h.fail(w, code, err.Error()+" for a request without an Authorization header: send the write key as the Basic auth user")
		}
		return h.fail(w, code, err.Error())
	}
	*bufp = body
	if err := tk.grow(int64(len(body))); err != nil { // the events' copies
		return h.overloaded(w, err)
	}

	d := h.decs.Get().(*decoder)
	defer h.putDecoder(d)
	d.charge = tk.grow
	err = d.parse(body, typ)
	if d.over != nil {
		return h.overloaded(w, d.over)
	}
	if err != nil {
		return h.fail(w, http.StatusBadRequest, err.Error())
	}
	if !fromHeader {
		if !d.writeKey.set || d.writeKey.end == d.writeKey.start {
			return h.fail(w, http.StatusUnauthorized, "missing write key: send it as the Basic auth user, a Bearer token or writeKey in the body")
		}
		key = string(d.bytes(d.writeKey))
		if org, ok = h.o.Org(key); !ok {
			h.o.Logger.Debug("unknown write key", "key", redact(key))
			return h.fail(w, http.StatusUnauthorized, "unknown write key")
		}
	}
	om := h.m.org(org)
	om.bytes.Add(float64(len(body)))

	d.finalize(stamp{org: org, now: h.o.Now().UnixNano(), maxEvent: int(min(h.o.MaxEventBytes, math.MaxInt32)), newID: h.o.NewID})
	if len(d.evs) > 0 {
		if err := h.o.Log.Append(r.Context(), d.evs); err != nil {
			om.failed.Add(float64(len(d.evs)))
			var ra interface{ RetryAfter() time.Duration }
			if errors.As(err, &ra) {
				secs := int64(math.Ceil(ra.RetryAfter().Seconds()))
				hdr.Set("Retry-After", strconv.FormatInt(max(secs, 1), 10))
				return h.fail(w, http.StatusServiceUnavailable, "overloaded, retry later")
			}
			if r.Context().Err() != nil {
				h.o.Logger.Debug("append canceled", "org", org, "err", err)
			} else {
				h.o.Logger.Error("append events", "org", org, "events", len(d.evs), "err", err)
			}
			return h.fail(w, http.StatusInternalServerError, "internal error, retry later")
		}
		om.accepted.Add(float64(len(d.evs)))
	}
	if len(d.rejected) > 0 {
		om.rejected.Add(float64(len(d.rejected)))
		return h.partial(w, d, typ)
	}
	hdr.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	out := d.scratch[:0]
	out = append(out, `{"success":true,"accepted":`...)
	out = strconv.AppendInt(out, int64(len(d.evs)), 10)
	out = append(out, "}\n"...)
	w.Write(out)
	d.scratch = out
	return http.StatusOK
}

// headerKey returns the write key sent as the Basic auth user (or, when the
// user is empty, the password) or as a Bearer token.
func headerKey(r *http.Request) (string, bool) {
	a := r.Header.Get("Authorization")
	if a == "" {
		return "", false
	}
	if user, pass, ok := r.BasicAuth(); ok {
		if user == "" {
			user = pass
		}
		return user, user != ""
	}
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		k := strings.TrimSpace(a[7:])
		return k, k != ""
	}
	return "", false
}

// redact shortens a write key for logs: its first 4 characters.
func redact(key string) string {
	if len(key) <= 4 {
		return "***"
	}
	return key[:4] + "***"
}

// overloaded answers a request refused by the limiter.
func (h *Handler) overloaded(w http.ResponseWriter, err error) int {
	ov := err.(*overBudget)
	if ov.code != http.StatusRequestEntityTooLarge {
		w.Header().Set("Retry-After", "1")
	}
	return h.fail(w, ov.code, ov.msg)
}

// readBody reads the request body into *bufp, gunzipping it if needed, and
// enforces limit on both the wire and the decompressed bytes. The buffer's
// memory is charged to tk as it grows; a refusal is an *overBudget.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request, bufp *[]byte, limit int, tk *ticket) ([]byte, int, error) {
	var gz bool
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		gz = true
	default:
		return nil, http.StatusUnsupportedMediaType, errors.New("unsupported Content-Encoding " + quoteTrunc([]byte(enc), maxEcho) + "; use gzip")
	}
	if r.ContentLength > int64(limit) {
		return nil, http.StatusRequestEntityTooLarge, tooLarge(limit)
	}
	var rd io.Reader = http.MaxBytesReader(w, r.Body, int64(limit))
	if err := tk.grow(int64(cap(*bufp))); err != nil {
		return nil, 0, err
	}
	if gz {
		if err := tk.grow(gzipCost); err != nil {
			return nil, 0, err
		}
		zr, err := h.gzipReader(rd)
		if err != nil {
			return nil, readStatus(err), readError("invalid gzip body", err, limit)
		}
		defer h.gzips.Put(zr)
		rd = zr
	}
	buf := (*bufp)[:0]
	if !gz && r.ContentLength > 0 && int(r.ContentLength) >= cap(buf) {
		if err := tk.grow(r.ContentLength + 1); err != nil {
			return nil, 0, err
		}
		buf = make([]byte, 0, int(r.ContentLength)+1) // +1 to see EOF without growing
	}
	for {
		if len(buf) == cap(buf) {
			// Grow, but never past max+1: that byte is enough to know the body is too large.
			n := min(max(2*cap(buf), 4096), limit+1)
			if err := tk.grow(int64(n)); err != nil {
				*bufp = buf
				return nil, 0, err
			}
			nb := make([]byte, len(buf), n)
			copy(nb, buf)
			buf = nb
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			*bufp = buf
			return nil, http.StatusRequestEntityTooLarge, tooLarge(limit)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			*bufp = buf
			if gz {
				return nil, readStatus(err), readError("invalid gzip body", err, limit)
			}
			return nil, readStatus(err), readError("read body", err, limit)
		}
	}
	return buf, 0, nil
}

func tooLarge(max int) error {
	return errors.New("body over the limit of " + strconv.Itoa(max) + " bytes")
}

func readStatus(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusRequestTimeout
	}
	return http.StatusBadRequest
}

func readError(what string, err error, max int) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return tooLarge(max)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return errors.New("the body did not arrive within the server's read timeout (http.read_timeout)")
	}
	return errors.New(what + ": " + err.Error())
}

func (h *Handler) gzipReader(rd io.Reader) (*gzip.Reader, error) {
	if zr, ok := h.gzips.Get().(*gzip.Reader); ok {
		if err := zr.Reset(rd); err != nil {
			h.gzips.Put(zr)
			return nil, err
		}
		return zr, nil
	}
	return gzip.NewReader(rd)
}

// Buffers larger than this are not kept in the pools, so that one big body
// does not pin memory for ever.
const maxPooled = 1 << 20

func (h *Handler) getBuf() *[]byte {
	if b, ok := h.bufs.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 0, 32<<10)
	return &b
}

func (h *Handler) putBuf(b *[]byte) {
	if cap(*b) <= maxPooled {
		*b = (*b)[:0]
		h.bufs.Put(b)
	}
}

func (h *Handler) putDecoder(d *decoder) {
	clear(d.evs) // do not pin the last request's events
	clear(d.rejected)
	d.p.b = nil
	if cap(d.raws) > 1<<12 || cap(d.evs) > 1<<12 || cap(d.scratch) > maxPooled {
		return
	}
	h.decs.Put(d)
}

// errorBody is the response to a request of which nothing was accepted.
type errorBody struct {
	Success bool   `json:"success"`
	Error   string `json:"error"`
}

// partialBody is the 400 response when some events were rejected.
type partialBody struct {
	Success  bool        `json:"success"`
	Accepted int         `json:"accepted"`
	Error    string      `json:"error"`
	Rejected []Rejection `json:"rejected"`
}

func (h *Handler) fail(w http.ResponseWriter, code int, msg string) int {
	writeJSON(w, code, errorBody{Error: msg})
	return code
}

func (h *Handler) partial(w http.ResponseWriter, d *decoder, typ string) int {
	msg := d.rejected[0].Error
	if typ == "" {
		msg = strconv.Itoa(len(d.rejected)) + " of " + strconv.Itoa(len(d.raws)) + " events rejected"
	}
	writeJSON(w, http.StatusBadRequest, partialBody{Accepted: len(d.evs), Error: msg, Rejected: d.rejected})
	return http.StatusBadRequest
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v) // cannot fail for these types
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// NewUUID returns a random (version 4) UUID in its canonical text form.
func NewUUID() string {
	var u [16]byte
	rand.Read(u[:]) // never fails (crypto/rand panics instead)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}
