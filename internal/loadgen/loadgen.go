package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidemark/tidemark/internal/retry"
)

// Options configures a run. The zero value of a field means its default.
type Options struct {
	URL         string        // collector base URL; requests go to URL/v1/batch. Default http://127.0.0.1:8080
	WriteKey    string        // required; sent as the HTTP Basic user
	Connections int           // concurrent requests (one HTTP connection each); default 64
	BatchSize   int           // events per request; default 50
	EventBytes  int           // approximate JSON size of one event (padded up to it); default 300
	Duration    time.Duration // stop starting batches after this long
	Events      int64         // stop after this many events; if Duration and Events are both 0, Duration is 10s
	Devices     int           // distinct anonymousIds; default 10000
	PageRatio   float64       // fraction of calls that are page calls, in (0, 1]; default 0.2
	Gzip        bool          // gzip request bodies (Content-Encoding: gzip)
	Rate        float64       // events per second over all connections; 0 = as fast as possible
	RunID       string        // messageId prefix ("<run id>-<n>"); default random
	AckedFile   string        // if set, write the ids of acknowledged events there, one per line
	MaxRetries  int           // retries per batch before it counts as failed; default 10, -1 = none
	Timeout     time.Duration // per request; default 30s
	Seed        uint64        // seed of event contents; 0 = random

	// Transport sends the requests; nil means an http.Transport tuned for the
	// run (MaxIdleConnsPerHost = Connections, no response decompression).
	Transport http.RoundTripper
}

// Defaults of Options.
const (
	DefaultURL         = "http://127.0.0.1:8080"
	DefaultConnections = 64
	DefaultBatchSize   = 50
	DefaultEventBytes  = 300
	DefaultDuration    = 10 * time.Second
	DefaultDevices     = 10000
	DefaultPageRatio   = 0.2
	DefaultMaxRetries  = 10
	DefaultTimeout     = 30 * time.Second
)

func (o *Options) setDefaults() error {
	if o.URL == "" {
		o.URL = DefaultURL
	}
	if o.Connections == 0 {
		o.Connections = DefaultConnections
	}
	if o.BatchSize == 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.EventBytes == 0 {
		o.EventBytes = DefaultEventBytes
	}
	if o.Duration == 0 && o.Events == 0 {
		o.Duration = DefaultDuration
	}
	if o.Devices == 0 {
		o.Devices = DefaultDevices
	}
	if o.PageRatio == 0 {
		o.PageRatio = DefaultPageRatio
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = DefaultMaxRetries
	} else if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.RunID == "" {
		o.RunID = strings.ToLower(rand.Text()[:10])
	}
	if o.Seed == 0 {
		o.Seed = mrand.Uint64()
	}

	var errs []error
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url %q: want http://host:port or https://host:port", o.URL))
	}
	if o.WriteKey == "" {
		errs = append(errs, errors.New("write key: required"))
	}
	if o.Connections < 1 {
		errs = append(errs, fmt.Errorf("connections: must be at least 1, got %d", o.Connections))
	}
	if o.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("batch size: must be at least 1, got %d", o.BatchSize))
	}
	if o.EventBytes < 0 {
		errs = append(errs, fmt.Errorf("event bytes: must not be negative, got %d", o.EventBytes))
	}
	if o.Duration < 0 || o.Events < 0 {
		errs = append(errs, fmt.Errorf("duration and events: must not be negative, got %v and %d", o.Duration, o.Events))
	}
	if o.Devices < 1 {
		errs = append(errs, fmt.Errorf("devices: must be at least 1, got %d", o.Devices))
	}
	if !(o.PageRatio > 0 && o.PageRatio <= 1) {
		errs = append(errs, fmt.Errorf("page ratio: must be in (0, 1], got %v", o.PageRatio))
	}
	if o.Rate < 0 || math.IsInf(o.Rate, 0) || math.IsNaN(o.Rate) {
		errs = append(errs, fmt.Errorf("rate: must be 0 (unlimited) or a positive number of events per second, got %v", o.Rate))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: must be positive, got %v", o.Timeout))
	}
	if strings.ContainsFunc(o.RunID, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r > '~' }) {
		errs = append(errs, fmt.Errorf("run id %q: use printable ASCII without spaces, quotes or backslashes", o.RunID))
	}
	return errors.Join(errs...)
}

// Result is what a run measured.
type Result struct {
	RunID          string
	Acked          int64         // events acknowledged by a 200 response
	Failed         int64         // events of batches given up: a permanent error status, retries exhausted or ctx cancelled
	Requests       int64         // HTTP requests sent, retries included
	Retries        int64         // requests that were retries
	ErrorsByStatus map[int]int64 // non-200 responses by status code
	NetErrors      int64         // requests without a response (connection error, timeout)
	BytesSent      int64         // request bodies as sent (compressed with Gzip), retries included
	Duration       time.Duration // from start until the last batch finished
	EventsPerSec   float64       // Acked / Duration
	Latency        Latency       // per acknowledged request: send to 200 response read
	ErrorSamples   []string      // the first few distinct errors, for the summary
}

const maxErrorSamples = 5

type runner struct {
	o        Options
	target   string
	client   *http.Client
	deadline time.Time // zero: none
	pace     *pacer    // nil: unlimited
	acks     *ackLog   // nil: not recorded
	cancel   context.CancelCauseFunc

	nextBatch atomic.Int64
	acked     atomic.Int64
	failed    atomic.Int64
	requests  atomic.Int64
	retries   atomic.Int64
	netErrs   atomic.Int64
	bytesSent atomic.Int64
	hist      histogram

	mu       sync.Mutex
	byStatus map[int]int64
	samples  []string
}

// Run sends load as o says until it is done or ctx is cancelled, prints a
// summary to out (nil: nowhere) and returns the measurements. The error is
// non-nil for invalid options, when the acknowledged ids cannot be written to
// o.AckedFile, or when no event at all was acknowledged although requests were
// answered (typically a wrong write key or URL); the Result is valid in every
// case but invalid options. Cancelling ctx ends the run early without error.
func Run(ctx context.Context, o Options, out io.Writer) (Result, error) {
	if err := o.setDefaults(); err != nil {
		return Result{}, fmt.Errorf("loadgen options: %w", err)
	}
	if out == nil {
		out = io.Discard
	}
	target, err := url.JoinPath(o.URL, "/v1/batch")
	if err != nil {
		return Result{}, fmt.Errorf("loadgen options: url: %w", err)
	}
	r := &runner{o: o, target: target, byStatus: map[int]int64{}}
	tr := o.Transport
	if tr == nil {
		t := newTransport(o.Connections)
		defer t.CloseIdleConnections()
		tr = t
	}
	r.client = &http.Client{Transport: tr}
	if o.Rate > 0 {
		r.pace = &pacer{perEvent: float64(time.Second) / o.Rate}
	}
	if o.AckedFile != "" {
		if r.acks, err = createAckLog(o.AckedFile, o.RunID); err != nil {
			return Result{}, err
		}
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.cancel = cancel
	start := time.Now()
	if o.Duration > 0 {
		r.deadline = start.Add(o.Duration)
	}
	var wg sync.WaitGroup
	for w := range o.Connections {
		wg.Go(func() { r.worker(ctx, w) })
	}
	wg.Wait()
	res := r.result(time.Since(start))

	var errs []error
	if r.acks != nil {
		if err := r.acks.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if cause := context.Cause(ctx); errors.Is(cause, errAckWrite) {
		errs = append(errs, cause)
	}
	writeSummary(out, &o, r.target, &res)
	if res.Acked == 0 && res.Requests > 0 && len(errs) == 0 && ctx.Err() == nil {
		errs = append(errs, fmt.Errorf("no event acknowledged in %d requests: %s", res.Requests, strings.Join(res.ErrorSamples, "; ")))
	}
	return res, errors.Join(errs...)
}

func newTransport(conns int) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          conns,
		MaxIdleConnsPerHost:   conns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true, // responses are tiny; we only compress requests
		WriteBufferSize:       64 << 10,
	}
}

func (r *runner) result(elapsed time.Duration) Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Result{
		RunID:          r.o.RunID,
		Acked:          r.acked.Load(),
		Failed:         r.failed.Load(),
		Requests:       r.requests.Load(),
		Retries:        r.retries.Load(),
		ErrorsByStatus: map[int]int64{},
		NetErrors:      r.netErrs.Load(),
		BytesSent:      r.bytesSent.Load(),
		Duration:       elapsed,
		Latency:        r.hist.latency(),
		ErrorSamples:   slices.Clone(r.samples),
	}
	for code, n := range r.byStatus {
		res.ErrorsByStatus[code] = n
	}
	if elapsed > 0 {
		res.EventsPerSec = float64(res.Acked) / elapsed.Seconds()
	}
	return res
}

func (r *runner) sample(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.samples) < maxErrorSamples && !slices.Contains(r.samples, s) {
		r.samples = append(r.samples, s)
	}
}

func (r *runner) pastDeadline() bool {
	return !r.deadline.IsZero() && !time.Now().Before(r.deadline)
}

func (r *runner) worker(ctx context.Context, w int) {
	g := newGenerator(&r.o, w)
	for ctx.Err() == nil && !r.pastDeadline() {
		k := r.nextBatch.Add(1) - 1
		first := k * int64(r.o.BatchSize)
		n := int64(r.o.BatchSize)
		if r.o.Events > 0 {
			if first >= r.o.Events {
				return
			}
			n = min(n, r.o.Events-first)
		}
		if r.pace != nil && !r.pace.wait(ctx, int(n), r.deadline) {
			return
		}
		body := g.batch(first, int(n), time.Now())
		r.send(ctx, body, first, n, g.rng)
	}
}

// send posts one batch until it is acknowledged or given up: a 429, 502,
// 503 or 504 or a request without a response is retried after the
// response's Retry-After or, without one, a backoff from 100ms up to 5s
// with jitter (from the worker's rng), at most MaxRetries times.
func (r *runner) send(ctx context.Context, body []byte, first, n int64, rng *mrand.Rand) {
	pol := retry.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Jitter: true, Rand: rng.Int64N,
		Attempts: r.o.MaxRetries + 1}
	err := retry.Do(ctx, pol, func(attempt int) error {
		if attempt > 1 {
			r.retries.Add(1)
		}
		status, retryAfter, latency, err := r.post(ctx, body)
		r.requests.Add(1)
		r.bytesSent.Add(int64(len(body)))
		switch {
		case err != nil && ctx.Err() != nil:
			return err
		case err != nil:
			r.netErrs.Add(1)
			r.sample(err.Error())
			return err
		case status == http.StatusOK:
			r.hist.record(latency)
			r.acked.Add(n)
			if r.acks != nil {
				if err := r.acks.write(first, n); err != nil {
					r.cancel(err)
				}
			}
			return nil
		case !retryable(status):
			return retry.Stop(errStatus)
		}
		return retry.After(errStatus, retryAfter)
	})
	if err != nil {
		r.failed.Add(n)
	}
}

// errStatus is a response that did not acknowledge a batch.
var errStatus = errors.New("not acknowledged")

func retryable(status int) bool {
	switch status {
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// post sends body once. It returns the status, the response's Retry-After
// (0 when absent) and the latency; err is set when there was no response.
func (r *runner) post(ctx context.Context, body []byte) (status int, retryAfter, latency time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.target, bytes.NewReader(body))
	if err != nil {
		return 0, 0, 0, err
	}
	req.SetBasicAuth(r.o.WriteKey, "")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tidemark-loadgen/1")
	if r.o.Gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	start := time.Now()
	resp, err := r.client.Do(req)
	if err != nil {
		return 0, 0, 0, err
	}
	var head []byte
	if resp.StatusCode != http.StatusOK {
		head, _ = io.ReadAll(io.LimitReader(resp.Body, 200))
	}
	// Drain (bounded) so that the connection is reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	latency = time.Since(start)
	retryAfter, _ = retry.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	if resp.StatusCode != http.StatusOK {
		r.mu.Lock()
		r.byStatus[resp.StatusCode]++
		r.mu.Unlock()
		r.sample(strings.TrimSpace(fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(head))))
	}
	return resp.StatusCode, retryAfter, latency, nil
}

// pacer spaces batches so that events leave at a given rate. A batch of n
// events takes the next free slot and moves it n/rate later; slots missed
// while idle are not made up for (no bursts).
type pacer struct {
	mu       sync.Mutex
	next     time.Time
	perEvent float64 // nanoseconds
}

// wait blocks until the caller may send n events. It returns false when ctx
// is done first or the slot is at or after deadline (zero: none).
func (p *pacer) wait(ctx context.Context, n int, deadline time.Time) bool {
	p.mu.Lock()
	now := time.Now()
	if p.next.Before(now) {
		p.next = now
	}
	at := p.next
	p.next = at.Add(time.Duration(float64(n) * p.perEvent))
	p.mu.Unlock()
	if !deadline.IsZero() && !at.Before(deadline) {
		return false
	}
	return retry.Sleep(ctx, at.Sub(now))
}

var errAckWrite = errors.New("write acknowledged ids")

// ackLog appends acknowledged messageIds to a file, one per line.
type ackLog struct {
	mu    sync.Mutex
	f     *os.File
	w     *bufio.Writer
	runID string
	line  []byte
}

func createAckLog(path, runID string) (*ackLog, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errAckWrite, err)
	}
	return &ackLog{f: f, w: bufio.NewWriterSize(f, 1<<20), runID: runID}, nil
}

func (a *ackLog) write(first, n int64) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := first; i < first+n; i++ {
		a.line = append(a.line[:0], a.runID...)
		a.line = append(a.line, '-')
		a.line = strconv.AppendInt(a.line, i, 10)
		a.line = append(a.line, '\n')
		if _, err := a.w.Write(a.line); err != nil {
			return fmt.Errorf("%w to %s: %w", errAckWrite, a.f.Name(), err)
		}
	}
	return nil
}

func (a *ackLog) close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	err := a.w.Flush()
	if err == nil {
		err = a.f.Sync()
	}
	if cerr := a.f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w to %s: %w", errAckWrite, a.f.Name(), err)
	}
	return nil
}

func writeSummary(out io.Writer, o *Options, target string, r *Result) {
	gz := "off"
	if o.Gzip {
		gz = "on"
	}
	secs := r.Duration.Seconds()
	perSec := func(v float64) float64 {
		if secs <= 0 {
			return 0
		}
		return v / secs
	}
	var b strings.Builder
	fmt.Fprintf(&b, "loadgen run %s: POST %s, %d connections, %d events/batch, gzip %s", r.RunID, target, o.Connections, o.BatchSize, gz)
	if o.Rate > 0 {
		fmt.Fprintf(&b, ", rate %.0f events/s", o.Rate)
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "  acked      %d events in %s = %.0f events/s\n", r.Acked, r.Duration.Round(time.Millisecond), r.EventsPerSec)
	fmt.Fprintf(&b, "  failed     %d events (not acknowledged)\n", r.Failed)
	fmt.Fprintf(&b, "  requests   %d (%.0f/s), %d retries, %d without response\n", r.Requests, perSec(float64(r.Requests)), r.Retries, r.NetErrors)
	fmt.Fprintf(&b, "  sent       %s (%s/s)\n", formatBytes(float64(r.BytesSent)), formatBytes(perSec(float64(r.BytesSent))))
	if len(r.ErrorsByStatus) > 0 {
		codes := make([]int, 0, len(r.ErrorsByStatus))
		for c := range r.ErrorsByStatus {
			codes = append(codes, c)
		}
		slices.Sort(codes)
		b.WriteString("  errors    ")
		for _, c := range codes {
			fmt.Fprintf(&b, " %d: %d", c, r.ErrorsByStatus[c])
		}
		b.WriteByte('\n')
	}
	l := r.Latency
	fmt.Fprintf(&b, "  latency    p50 %s  p90 %s  p99 %s  max %s (%d acknowledged requests)\n",
		roundDur(l.P50), roundDur(l.P90), roundDur(l.P99), roundDur(l.Max), l.Count)
	for _, s := range r.ErrorSamples {
		fmt.Fprintf(&b, "  error      %s\n", s)
	}
	io.WriteString(out, b.String())
}

func roundDur(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func formatBytes(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.2f GB", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.1f MB", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1f kB", v/1e3)
	}
	return fmt.Sprintf("%.0f B", v)
}
