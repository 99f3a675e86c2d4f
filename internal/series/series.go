package series

import (
	"context"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

const (
	// Step is the time between two samples.
	Step = 10 * time.Second
	// Points is how many samples a series keeps: the last hour.
	Points = 360
)

// The names of the series (the API's "name"), in the order they are served.
const (
	Accepted      = "accepted_events_per_second"
	Delivered     = "delivered_events_per_second"
	Oldest        = "oldest_undelivered_seconds"
	LatencyP99    = "ingest_latency_p99_seconds"
	WebhookLag    = "webhook_lag_seconds"
	WebhookFailed = "webhook_failures_per_second"
	WebhookDead   = "webhook_dead_letters"
)

var order = map[string]int{Accepted: 0, Delivered: 1, Oldest: 2, LatencyP99: 3, WebhookLag: 4, WebhookFailed: 5, WebhookDead: 6}

// Key names one series. Destination and Webhook are empty where the series
// has no such label; Org is empty for the process-wide latency.
type Key struct {
	Name, Org, Destination, Webhook string
}

// Sampler samples a Prometheus registry every Step. Its methods are safe
// for concurrent use.
type Sampler struct {
	g   prometheus.Gatherer
	now func() time.Time

	mu     sync.Mutex
	t0     time.Time // the first sample's time; zero before it
	tick   int       // the newest sample's number: its time is t0 + tick*Step
	series map[Key]*ring
	// The counters' values at the previous sample (rates are their increase
	// over the step), and the latency histogram's cumulative bucket counts.
	prev     map[Key]float64
	prevHist []uint64 // buckets..., then the sample count; nil before the first request
}

// ring holds one series' samples: the sample of tick k is at k % Points.
type ring struct {
	v    [Points]float32
	last int // the tick of the newest sample that is not NaN
}

// New returns a Sampler of g; now is the wall clock (time.Now).
func New(g prometheus.Gatherer, now func() time.Time) *Sampler {
	return &Sampler{g: g, now: now, series: map[Key]*ring{}, prev: map[Key]float64{}}
}

// Run samples at once and then every Step until ctx ends.
func (s *Sampler) Run(ctx context.Context) error {
	t := time.NewTicker(Step)
	defer t.Stop()
	for {
		if err := s.Sample(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Sample gathers the registry now and records one sample of every series.
// A sample that comes more than half a step late (a busy machine, a
// stopped clock) leaves the steps it skipped empty.
func (s *Sampler) Sample() error {
	mfs, err := s.g.Gather()
	if err != nil && len(mfs) == 0 {
		return err // a partial gather still samples what it got
	}
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.t0.IsZero()
	steps := 1
	if first {
		s.t0, s.tick = now, 0
	} else {
		k := int(math.Round(float64(now.Sub(s.t0)) / float64(Step)))
		if k <= s.tick {
			return nil // two samples in one step: keep the first
		}
		steps, s.tick = k-s.tick, k
	}
	dt := (time.Duration(steps) * Step).Seconds()
	vals := map[Key]float64{}
	counters := map[Key]float64{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "tidemark_ingest_events_total":
			for _, m := range mf.GetMetric() {
				if l := labels(m); l["outcome"] == "accepted" {
					counters[Key{Name: Accepted, Org: l["org"]}] += m.GetCounter().GetValue()
				}
			}
		case "tidemark_delivered_events_total":
			for _, m := range mf.GetMetric() {
				if l := labels(m); l["table"] == "events" {
					counters[Key{Name: Delivered, Org: l["org"], Destination: l["destination"]}] += m.GetCounter().GetValue()
				}
			}
		case "tidemark_oldest_undelivered_event_age_seconds":
			for _, m := range mf.GetMetric() {
				if l := labels(m); l["table"] == "events" {
					vals[Key{Name: Oldest, Org: l["org"], Destination: l["destination"]}] = m.GetGauge().GetValue()
				}
			}
		case "tidemark_webhook_lag_seconds":
			for _, m := range mf.GetMetric() {
				l := labels(m)
				vals[Key{Name: WebhookLag, Org: l["org"], Webhook: l["webhook"]}] = m.GetGauge().GetValue()
			}
		case "tidemark_webhook_failed_requests_total":
			for _, m := range mf.GetMetric() {
				l := labels(m)
				counters[Key{Name: WebhookFailed, Org: l["org"], Webhook: l["webhook"]}] += m.GetCounter().GetValue()
			}
		case "tidemark_webhook_dead_letter_events_total":
			for _, m := range mf.GetMetric() {
				l := labels(m)
				vals[Key{Name: WebhookDead, Org: l["org"], Webhook: l["webhook"]}] = m.GetCounter().GetValue()
			}
		case "tidemark_ingest_request_duration_seconds":
			vals[Key{Name: LatencyP99}] = s.p99(mf.GetMetric(), first)
		}
	}
	for k, v := range counters {
		p, seen := s.prev[k]
		// A counter not seen before starts at 0 in this process (the
		// collector creates an org's on its first request), unless this is
		// the first sample: then its start is unknown.
		switch {
		case first:
			vals[k] = math.NaN()
		case seen:
			vals[k] = max(v-p, 0) / dt
		default:
			vals[k] = v / dt
		}
		s.prev[k] = v
	}
	for k, v := range vals {
		r := s.series[k]
		if r == nil {
			r = &ring{}
			for i := range r.v {
				r.v[i] = nan32
			}
			s.series[k] = r
		}
		r.v[s.tick%Points] = float32(v)
		if !math.IsNaN(v) {
			r.last = s.tick
		}
	}
	for k, r := range s.series {
		if _, ok := vals[k]; !ok {
			r.v[s.tick%Points] = nan32
		}
		// The steps skipped, if any, hold no sample.
		for j := max(s.tick-steps+1, s.tick-Points+1); j < s.tick; j++ {
			r.v[j%Points] = nan32
		}
		if s.tick-r.last >= Points {
			delete(s.series, k)
			delete(s.prev, k)
		}
	}
	return nil
}

var nan32 = float32(math.NaN())

func labels(m *dto.Metric) map[string]string {
	l := make(map[string]string, len(m.GetLabel()))
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

// p99 is the 99th percentile of the requests that ended since the previous
// sample, summed over the endpoints, interpolated within a bucket as
// Prometheus' histogram_quantile does; NaN when there were none.
func (s *Sampler) p99(ms []*dto.Metric, first bool) float64 {
	var bounds []float64
	var cum []uint64 // per bucket, then the count
	for _, m := range ms {
		h := m.GetHistogram()
		if cum == nil {
			for _, b := range h.GetBucket() {
				bounds = append(bounds, b.GetUpperBound())
			}
			cum = make([]uint64, len(bounds)+1)
		}
		for i, b := range h.GetBucket() {
			if i < len(bounds) {
				cum[i] += b.GetCumulativeCount()
			}
		}
		cum[len(bounds)] += h.GetSampleCount()
	}
	prev := s.prevHist
	if cum != nil {
		s.prevHist = cum
	}
	if first || cum == nil {
		return math.NaN()
	}
	d := make([]float64, len(cum))
	for i := range cum {
		if len(prev) == len(cum) { // else nothing was observed before: 0
			d[i] = float64(cum[i] - min(prev[i], cum[i]))
		} else {
			d[i] = float64(cum[i])
		}
	}
	return quantile(0.99, bounds, d)
}

// quantile is histogram_quantile(q) of cumulative bucket counts cum (the
// last one is the total, the +Inf bucket) with upper bounds bounds.
func quantile(q float64, bounds, cum []float64) float64 {
	total := cum[len(cum)-1]
	if total == 0 {
		return math.NaN()
	}
	rank := q * total
	b := 0
	for b < len(bounds) && cum[b] < rank {
		b++
	}
	if b == len(bounds) { // in the +Inf bucket: its lower bound, as Prometheus does
		if b == 0 {
			return math.NaN()
		}
		return bounds[b-1]
	}
	lo, below := 0.0, 0.0
	if b > 0 {
		lo, below = bounds[b-1], cum[b-1]
	}
	n := cum[b] - below
	if n == 0 {
		return bounds[b]
	}
	return lo + (bounds[b]-lo)*(rank-below)/n
}

// End returns the time of the newest sample (zero before the first): a
// Snapshot taken while End is unchanged holds the same points.
func (s *Sampler) End() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t0.IsZero() {
		return time.Time{}
	}
	return s.t0.Add(time.Duration(s.tick) * Step)
}

// Series is one series' samples, oldest first: Points[i] was sampled at
// End - (len(Points)-1-i)*Step; NaN where there is no sample.
type Series struct {
	Key
	Points []float32
}

// Snapshot returns the series whose org keep accepts (the process-wide
// latency, whose org is "", is always kept), in a stable order, and the
// time of the newest sample (zero before the first).
func (s *Sampler) Snapshot(keep func(org string) bool) (end time.Time, out []Series) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.t0.IsZero() {
		return time.Time{}, nil
	}
	for k, r := range s.series {
		if k.Org != "" && !keep(k.Org) {
			continue
		}
		pts := make([]float32, Points)
		for i := range pts {
			if t := s.tick - (Points - 1) + i; t >= 0 {
				pts[i] = r.v[t%Points]
			} else {
				pts[i] = nan32
			}
		}
		out = append(out, Series{Key: k, Points: pts})
	}
	slices.SortFunc(out, func(a, b Series) int {
		if c := order[a.Name] - order[b.Name]; c != 0 {
			return c
		}
		if c := strings.Compare(a.Org, b.Org); c != 0 {
			return c
		}
		if c := strings.Compare(a.Destination, b.Destination); c != 0 {
			return c
		}
		return strings.Compare(a.Webhook, b.Webhook)
	})
	return s.t0.Add(time.Duration(s.tick) * Step), out
}
