package transport

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the transports' metrics, shared by every destination.
type Metrics struct {
	mu            sync.Mutex
	transports    []*Transport
	deliveredRows *prometheus.CounterVec
	batches       *prometheus.CounterVec
	failures      *prometheus.CounterVec
	lostEvents    *prometheus.CounterVec
}

// NewMetrics registers the transport metrics on reg.
func NewMetrics(reg prometheus.Registerer, now func() int64) (*Metrics, error) {
	m := &Metrics{
		deliveredRows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_delivered_events_total",
			Help: "Rows committed to a destination, by table (events, pages, sessions)."}, []string{"org", "destination", "table"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_destination_batches_total",
			Help: "Batches committed to a destination."}, []string{"org", "destination"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_destination_failures_total",
			Help: "Failed destination operations (each is retried)."}, []string{"org", "destination"}),
		lostEvents: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_destination_lost_events_total",
			Help: "Events the sessionizer had read that the log no longer holds intact when their batch was built (a damaged data directory); they cannot be delivered."}, []string{"org", "destination"}),
	}
	for _, c := range []prometheus.Collector{m.deliveredRows, m.batches, m.failures, m.lostEvents, gauges{m, now}} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) add(t *Transport) {
	m.mu.Lock()
	m.transports = append(m.transports, t)
	m.mu.Unlock()
	for _, table := range tables {
		m.deliveredRows.WithLabelValues(t.o.Org, t.o.Name, table)
	}
	m.batches.WithLabelValues(t.o.Org, t.o.Name)
	m.failures.WithLabelValues(t.o.Org, t.o.Name)
	m.lostEvents.WithLabelValues(t.o.Org, t.o.Name)
}

func (m *Metrics) lost(t *Transport, _ int) { m.lostEvents.WithLabelValues(t.o.Org, t.o.Name).Inc() }

func (m *Metrics) delivered(t *Transport, events, pages, sessions int) {
	m.deliveredRows.WithLabelValues(t.o.Org, t.o.Name, "events").Add(float64(events))
	m.deliveredRows.WithLabelValues(t.o.Org, t.o.Name, "pages").Add(float64(pages))
	m.deliveredRows.WithLabelValues(t.o.Org, t.o.Name, "sessions").Add(float64(sessions))
	m.batches.WithLabelValues(t.o.Org, t.o.Name).Inc()
}

func (m *Metrics) failed(t *Transport) { m.failures.WithLabelValues(t.o.Org, t.o.Name).Inc() }

// tables are the table label values, in the order of Options.SLA.
var tables = [3]string{"events", "pages", "sessions"}

// gauges computes the per-destination gauges at scrape time.
type gauges struct {
	m   *Metrics
	now func() int64
}

var (
	descOldest = prometheus.NewDesc("tidemark_oldest_undelivered_event_age_seconds",
		"Per table, how long ago the last event of the oldest row not yet committed to the destination was accepted (for events: also those the auditor found missing); 0 when nothing is pending.", []string{"org", "destination", "table"}, nil)
	descUp = prometheus.NewDesc("tidemark_destination_up",
		"1 when the destination's last operation succeeded, 0 while it is failing (events are held and retried).", []string{"org", "destination"}, nil)
	descSLA = prometheus.NewDesc("tidemark_destination_freshness_sla_seconds",
		"The destination's freshness SLA per table: flush.max_age + freshness_grace, plus sessions.page_idle for pages and sessions.session_idle for sessions. A row undelivered for longer is stale.", []string{"org", "destination", "table"}, nil)
	descLast = prometheus.NewDesc("tidemark_destination_last_commit_timestamp_seconds",
		"Unix time of the destination's last committed batch (0 before the first since start).", []string{"org", "destination"}, nil)
)

func (g gauges) Describe(ch chan<- *prometheus.Desc) {
	ch <- descOldest
	ch <- descUp
	ch <- descLast
	ch <- descSLA
}

func (g gauges) Collect(ch chan<- prometheus.Metric) {
	g.m.mu.Lock()
	ts := append([]*Transport(nil), g.m.transports...)
	g.m.mu.Unlock()
	now := g.now()
	for _, t := range ts {
		for i, o := range t.OldestPendingTables() {
			age := 0.0
			if o > 0 && now > o {
				age = float64(now-o) / 1e9
			}
			ch <- prometheus.MustNewConstMetric(descOldest, prometheus.GaugeValue, age, t.o.Org, t.o.Name, tables[i])
			ch <- prometheus.MustNewConstMetric(descSLA, prometheus.GaugeValue, t.o.SLA[i].Seconds(), t.o.Org, t.o.Name, tables[i])
		}
		up := 0.0
		if t.up.Load() {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up, t.o.Org, t.o.Name)
		ch <- prometheus.MustNewConstMetric(descLast, prometheus.GaugeValue, float64(t.lastOK.Load())/1e9, t.o.Org, t.o.Name)
	}
}
