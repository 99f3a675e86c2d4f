package server

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/tidemark/tidemark/internal/series"
)

// seriesHandler serves GET /api/v1/series: the last hour of the charts'
// series (internal/series). An admin key reads every org's (?org=O: O's
// only), an org's read key its own org's; the process-wide ingest latency
// is in every answer.
func seriesHandler(s *series.Sampler, now func() time.Time) http.Handler {
	// Every org's answer is the big one (3,000 series: ~9 MB of JSON, ~90 ms
	// to write and compress) and the same until the next sample: it is
	// written once per step, however many pages poll it.
	var cache struct {
		sync.Mutex
		end      time.Time
		body, gz []byte
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		org, scoped := readerOrg(r.Context())
		if !scoped {
			org = r.URL.Query().Get("org")
		}
		gzipOK := strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
		var body, gz []byte
		if org == "" {
			cache.Lock()
			defer cache.Unlock() // one writer of the big answer at a time
			if end := s.End(); end.IsZero() || !end.Equal(cache.end) {
				cache.end, cache.body, cache.gz = end, nil, nil
			}
			body, gz = cache.body, cache.gz
		}
		if body == nil {
			end, ss := s.Snapshot(func(o string) bool { return org == "" || o == org })
			if end.IsZero() {
				end = now() // before the first sample: no series
			}
			body = appendSeries(make([]byte, 0, 64+len(ss)*(80+series.Points*6)), end, ss)
		}
		if gzipOK && gz == nil && len(body) > 1024 {
			var b bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
			zw.Write(body)
			zw.Close()
			gz = b.Bytes()
		}
		if org == "" {
			cache.body, cache.gz = body, gz
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Vary", "Accept-Encoding")
		if gzipOK && gz != nil {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz)
			return
		}
		w.Write(body)
	})
}

// appendSeries appends the API's JSON of ss, sampled up to end: a point is
// a number, or null where there is no sample. Written by hand: a million
// numbers through encoding/json's reflection take several times longer.
func appendSeries(b []byte, end time.Time, ss []series.Series) []byte {
	b = append(b, `{"step_seconds":`...)
	b = strconv.AppendInt(b, int64(series.Step/time.Second), 10)
	b = append(b, `,"end":"`...)
	b = end.UTC().AppendFormat(b, time.RFC3339)
	b = append(b, `","series":[`...)
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, s.Name)
		for _, l := range [...][2]string{{"org", s.Org}, {"destination", s.Destination}, {"webhook", s.Webhook}} {
			if l[1] != "" {
				b = append(b, `,"`...)
				b = append(b, l[0]...)
				b = append(b, `":`...)
				b = appendString(b, l[1])
			}
		}
		b = append(b, `,"points":[`...)
		for j, v := range s.Points {
			if j > 0 {
				b = append(b, ',')
			}
			if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
				b = append(b, "null"...)
			} else {
				b = strconv.AppendFloat(b, f, 'g', -1, 32)
			}
		}
		b = append(b, "]}"...)
	}
	return append(b, "]}\n"...)
}

func appendString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}
