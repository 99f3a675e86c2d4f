package collector

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tidemark/tidemark/internal/event"
)

// gatedLog blocks Append for the orgs in hold until release is closed, so
// that a test can keep requests in flight.
type gatedLog struct {
	memLog
	hold    map[string]bool
	release chan struct{}
	waiting atomic.Int64
}

func (g *gatedLog) Append(ctx context.Context, evs []event.Event) error {
	if len(evs) > 0 && g.hold[evs[0].Org] {
		g.waiting.Add(1)
		<-g.release
	}
	return g.memLog.Append(ctx, evs)
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func TestUnknownHeaderKeyReadsNoBody(t *testing.T) {
	f := newFixture(t, nil)
	body := &countingReader{r: strings.NewReader(`{"batch":[` + strings.Repeat(`{},`, 10000) + `{}]}`)}
	r := httptest.NewRequest("POST", "/v1/batch", body)
	r.SetBasicAuth("wk-unknown", "")
	if res := f.serve(t, r); res.Code != 401 {
		t.Fatalf("%d %s", res.Code, res.Raw)
	}
	if n := body.n.Load(); n != 0 {
		t.Errorf("read %d bytes of a request with an unknown key", n)
	}
}

func TestKeylessBodyIsBounded(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Limits.MaxKeylessBody = 1 << 10 })
	small := `{"writeKey":"wk-acme","batch":[{"type":"track","anonymousId":"d","event":"E"}]}`
	if res := f.do(t, req{auth: "none", body: small}); res.Code != 200 {
		t.Fatalf("small keyless body: %d %s", res.Code, res.Raw)
	}
	big := `{"writeKey":"wk-acme","batch":[` + strings.Repeat(`{"type":"track","anonymousId":"d","event":"E"},`, 100) + `{}]}`
	res := f.do(t, req{auth: "none", body: big})
	if res.Code != 413 || !strings.Contains(res.Body.Error, "Authorization header") {
		t.Errorf("large keyless body: %d %s", res.Code, res.Raw)
	}
	// The same body with the key in a header is fine.
	if res := f.do(t, req{body: big}); res.Code != 400 || res.Body.Accepted != 100 {
		t.Errorf("large body with a header key: %d %s", res.Code, res.Raw)
	}
}

func TestRequestTooLargeForItsShare(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.Limits.MaxBytesPerOrg = 1 << 20 })
	res := f.do(t, req{body: `{"batch":[` + strings.Repeat(`{},`, 100000) + `{}]}`})
	if res.Code != 413 || !strings.Contains(res.Body.Error, "smaller batches") || res.Header.Get("Retry-After") != "" {
		t.Errorf("%d %s", res.Code, res.Raw)
	}
	if len(f.log.evs) != 0 {
		t.Errorf("%d events appended", len(f.log.evs))
	}
	// The budget was given back: a normal request passes.
	if res := f.do(t, req{body: `{"batch":[{"type":"track","anonymousId":"d","event":"E"}]}`}); res.Code != 200 {
		t.Errorf("after: %d %s", res.Code, res.Raw)
	}
}

// TestOrgShares: an org with all its requests in flight gets 429, another
// org is still served; past the server's limit, 503; both with Retry-After.
func TestOrgShares(t *testing.T) {
	g := &gatedLog{hold: map[string]bool{"acme": true}, release: make(chan struct{})}
	f := newFixture(t, func(o *Options) {
		o.Log = g
		o.Limits.MaxRequestsPerOrg = 2
		o.Limits.MaxRequests = 3
	})
	ev := `{"batch":[{"type":"track","anonymousId":"d","event":"E"}]}`
	var wg sync.WaitGroup
	send := func(q req) {
		wg.Add(1)
		go func() { defer wg.Done(); f.do(t, q) }()
	}
	waiting := func(n int64) {
		for g.waiting.Load() < n {
			runtime.Gosched()
		}
	}
	send(req{body: ev})
	send(req{body: ev})
	waiting(2)
	res := f.do(t, req{body: ev})
	if res.Code != http.StatusTooManyRequests || res.Header.Get("Retry-After") == "" || !strings.Contains(res.Body.Error, "org acme") {
		t.Errorf("acme over its share: %d %s %v", res.Code, res.Raw, res.Header)
	}
	if res := f.do(t, req{key: "wk-beta", body: ev}); res.Code != 200 {
		t.Errorf("beta while acme is at its share: %d %s", res.Code, res.Raw)
	}
	// A keyless request of acme (its own share) fills the server: 2 + 1 = 3.
	send(req{auth: "none", body: `{"writeKey":"wk-acme","batch":[{"type":"track","anonymousId":"d","event":"E"}]}`})
	waiting(3)
	if res := f.do(t, req{key: "wk-beta", body: ev}); res.Code != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
		t.Errorf("over the server's limit: %d %s", res.Code, res.Raw)
	}
	close(g.release)
	wg.Wait()
	if n := len(g.evs); n != 4 {
		t.Errorf("%d events appended, want 4 (3 acme, 1 beta)", n)
	}
	if res := f.do(t, req{key: "wk-beta", body: ev}); res.Code != 200 {
		t.Errorf("after the held requests ended: %d %s", res.Code, res.Raw)
	}
}
