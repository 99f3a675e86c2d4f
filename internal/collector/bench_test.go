package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tidemark/tidemark/internal/event"
)

type nopAppender struct{}

func (nopAppender) Append(context.Context, []event.Event) error { return nil }

// benchBatch returns a batch of n analytics.js-like events of about 300 bytes
// each.
func benchBatch(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"batch":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"type":"track","event":"Button Clicked","messageId":"ajs-next-1f8e2c0a9b7d4e6f%08d",`+
			`"anonymousId":"6d2a1f0e-4b3c-4d5e-8f70-91a2b3c4d5e6","timestamp":"2026-03-01T12:00:%02d.123Z",`+
			`"properties":{"button":"signup","plan":"pro","price":49.5},`+
			`"context":{"page":{"path":"/pricing","url":"https://example.com/pricing"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"}}`, i, i%60)
	}
	b.WriteString(`],"sentAt":"2026-03-01T12:01:00.000Z","writeKey":"wk"}`)
	return b.Bytes()
}

type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

// BenchmarkBatch measures ServeHTTP on a 50-event batch of about 360 bytes per
// event with a no-op Appender: decoding, validation, responses and metrics.
func BenchmarkBatch(b *testing.B) {
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("gzip=%v", gz), func(b *testing.B) {
			const n = 50
			body := benchBatch(n)
			if gz {
				var z bytes.Buffer
				zw := gzip.NewWriter(&z)
				zw.Write(body)
				zw.Close()
				body = z.Bytes()
			}
			h := New(Options{Log: nopAppender{}, Org: func(string) (string, bool) { return "acme", true }})
			rd := bytes.NewReader(body)
			r := httptest.NewRequest(http.MethodPost, "/v1/batch", nil)
			if gz {
				r.Header.Set("Content-Encoding", "gzip")
			}
			w := &discard{h: http.Header{}}
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rd.Reset(body)
				r.Body = io.NopCloser(rd)
				r.ContentLength = int64(len(body))
				clear(w.h)
				h.ServeHTTP(w, r)
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
	// All cores (GOMAXPROCS), as a server runs it.
	b.Run("parallel", func(b *testing.B) {
		const n = 50
		body := benchBatch(n)
		h := New(Options{Log: nopAppender{}, Org: func(string) (string, bool) { return "acme", true }})
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			rd := bytes.NewReader(body)
			r := httptest.NewRequest(http.MethodPost, "/v1/batch", nil)
			w := &discard{h: http.Header{}}
			for pb.Next() {
				rd.Reset(body)
				r.Body = io.NopCloser(rd)
				r.ContentLength = int64(len(body))
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
		b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
