package postgres

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are what the destination counts of its own; delivery, failures
// and freshness are the transport's.
type metrics struct {
	rejected *prometheus.GaugeVec
	skipped  *prometheus.CounterVec
	escaped  *prometheus.CounterVec
}

// newMetrics registers the metrics on reg, or reuses those another
// destination registered there. A nil reg: unregistered metrics.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rejected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tidemark_destination_rejected_rows",
			Help: "Batches held because the destination rejects one of their rows, by table: the error on /api/v1/status names the row and the reason; the batch is retried until it loads. 0 when none is held."},
			[]string{"org", "destination", "table"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_destination_conflict_rows_skipped_total",
			Help: "Rows not loaded because the table already held a row with their key (a replayed or backfilled row already there), by table."},
			[]string{"org", "destination", "table"}),
		escaped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_destination_escaped_values_total",
			Help: "Values the destination cannot store as they are (a NUL, a lone surrogate, a number beyond its range), stored altered with the original in _tidemark_escaped, by table."},
			[]string{"org", "destination", "table"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.rejected, err = register(reg, m.rejected); err != nil {
		return nil, err
	}
	if m.skipped, err = register(reg, m.skipped); err != nil {
		return nil, err
	}
	if m.escaped, err = register(reg, m.escaped); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c on reg, or returns the equal collector registered
// there before (by another PostgreSQL destination).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(C); ok {
			return old, nil
		}
	}
	return c, err
}

// labels are the metric labels of d's rows of table.
func (d *Postgres) labels(table string) []string {
	if d.owner == nil {
		return []string{"", "", table}
	}
	return []string{d.owner.Org, d.owner.Destination, table}
}
