package collector

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	events   *prometheus.CounterVec // org, outcome
	requests *prometheus.CounterVec // endpoint, code
	duration *prometheus.HistogramVec
	bytes    *prometheus.CounterVec // org
	orgs     sync.Map               // org -> *orgMetrics
}

// orgMetrics caches one org's counters: the label lookup is done once per
// org, not once per request.
type orgMetrics struct {
	accepted, rejected, failed, bytes prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_ingest_events_total",
			Help: "Events received by the collector, by org and outcome: accepted (in the log), rejected (invalid, reported to the client), failed (the log refused the batch; the client was told to retry).",
		}, []string{"org", "outcome"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_ingest_requests_total",
			Help: "HTTP requests to the collector, by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tidemark_ingest_request_duration_seconds",
			Help:    "Time to answer a collector request, including the durable append.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"endpoint"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tidemark_ingest_bytes_total",
			Help: "Request body bytes (after gunzip) of authenticated requests, by org.",
		}, []string{"org"}),
	}
	if reg != nil {
		reg.MustRegister(m.events, m.requests, m.duration, m.bytes)
	}
	return m
}

func (m *metrics) org(org string) *orgMetrics {
	if om, ok := m.orgs.Load(org); ok {
		return om.(*orgMetrics)
	}
	om := &orgMetrics{
		accepted: m.events.WithLabelValues(org, "accepted"),
		rejected: m.events.WithLabelValues(org, "rejected"),
		failed:   m.events.WithLabelValues(org, "failed"),
		bytes:    m.bytes.WithLabelValues(org),
	}
	v, _ := m.orgs.LoadOrStore(org, om)
	return v.(*orgMetrics)
}

// registerLimits exports what requests hold now (see Limits).
func (m *metrics) registerLimits(reg prometheus.Registerer, lm *limiter) {
	if reg == nil {
		return
	}
	held := func(p *pool, bytes bool) func() float64 {
		return func() float64 {
			p.mu.Lock()
			defer p.mu.Unlock()
			if bytes {
				return float64(p.bytes)
			}
			return float64(p.reqs)
		}
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tidemark_ingest_inflight_requests",
			Help: "Requests being read, decoded or appended now (at most ingest.max_requests)."}, held(lm.all, false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tidemark_ingest_inflight_bytes",
			Help: "Bytes the requests in flight are counted as holding (at most ingest.max_inflight_bytes)."}, held(lm.all, true)),
	)
}
