package audit

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Background is the background auditor of serve: every Interval it audits
// the last Lookback hours of every target, exports the result as metrics
// and tells each target's Missing hook the oldest missing event.
type Background struct {
	a        *Auditor
	o        Options
	targets  []Target
	interval time.Duration
	lookback time.Duration
	logger   *slog.Logger

	results  []atomic.Pointer[Result]    // by target: the last successful audit
	errs     []atomic.Pointer[string]    // by target: the last run's error, nil if it succeeded
	auditing []atomic.Pointer[time.Time] // by target: when its audit in progress started, nil if none
	lastAt   atomic.Pointer[time.Time]
	missing  *prometheus.GaugeVec
	dups     *prometheus.GaugeVec
	pending  *prometheus.GaugeVec
	lastRun  prometheus.Gauge
	failures *prometheus.CounterVec
}

// NewBackground returns the background auditor of targets, registering its
// metrics on reg.
func NewBackground(o Options, targets []Target, interval, lookback time.Duration, reg prometheus.Registerer, logger *slog.Logger) *Background {
	if o.Now == nil {
		o.Now = time.Now
	}
	x := &Background{
		a: New(o), o: o, targets: targets, interval: interval, lookback: lookback, logger: logger,
		missing: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tidemark_audit_missing_events",
			Help: "Events accepted in the audited hours, due under the freshness SLA and absent from the destination (last audit run)."},
			[]string{"org", "destination"}),
		dups: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tidemark_audit_duplicated_events",
			Help: "Extra copies of events in the destination for the audited hours (last audit run)."}, []string{"org", "destination"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "tidemark_audit_pending_events",
			Help: "Events of the audited hours absent from the destination but not yet due under the freshness SLA (last audit run)."},
			[]string{"org", "destination"}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidemark_audit_last_run_timestamp_seconds",
			Help: "Unix time the last audit run that audited every destination finished (0 before the first)."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_audit_failures_total",
			Help: "Audits of a destination that failed, e.g. because it could not be listed (each is logged and retried at the next interval)."},
			[]string{"org", "destination"}),
		results:  make([]atomic.Pointer[Result], len(targets)),
		errs:     make([]atomic.Pointer[string], len(targets)),
		auditing: make([]atomic.Pointer[time.Time], len(targets)),
	}
	intervalGauge := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidemark_audit_interval_seconds",
		Help: "Configured time between audit runs (audit.interval)."})
	intervalGauge.Set(interval.Seconds())
	reg.MustRegister(x.missing, x.dups, x.pending, x.lastRun, x.failures, intervalGauge)
	for _, t := range targets {
		x.missing.WithLabelValues(t.Org, t.Name)
		x.dups.WithLabelValues(t.Org, t.Name)
		x.pending.WithLabelValues(t.Org, t.Name)
		x.failures.WithLabelValues(t.Org, t.Name)
	}
	return x
}

// Auditor is the auditor the background runs use; its caches serve the
// admin API's audits and backfills too.
func (x *Background) Auditor() *Auditor { return x.a }

// Options are the options of Auditor.
func (x *Background) Options() Options { return x.o }

// Targets are the audited targets.
func (x *Background) Targets() []Target { return x.targets }

// Interval and Lookback are the configured audit.interval and audit.lookback.
func (x *Background) Interval() time.Duration { return x.interval }
func (x *Background) Lookback() time.Duration { return x.lookback }

// LastRunAt is when the last run that audited every target finished (nil
// before the first).
func (x *Background) LastRunAt() *time.Time { return x.lastAt.Load() }

// Last returns target i's last successful result (nil before the first)
// and the error of its last run (nil when it succeeded).
func (x *Background) Last(i int) (*Result, *string) { return x.results[i].Load(), x.errs[i].Load() }

// Auditing returns when target i's audit now in progress started, nil when
// it is not being audited.
func (x *Background) Auditing(i int) *time.Time { return x.auditing[i].Load() }

// Run audits every interval until ctx ends.
func (x *Background) Run(ctx context.Context) error {
	for {
		x.once(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(x.interval):
		}
	}
}

// TargetTimeout bounds the audit of one destination in one run: a
// destination that hangs rather than failing (a server that accepts
// connections and never answers) fails its audit after this long, and the
// others are audited, instead of every destination's audit waiting on it.
func TargetTimeout(interval time.Duration) time.Duration { return max(2*interval, 10*time.Minute) }

// once audits each destination on its own: one that cannot be read (it is
// down, or it hangs past TargetTimeout) is logged and counted and keeps its
// previous result, while the others are audited.
func (x *Background) once(ctx context.Context) {
	now := x.o.Now()
	failed := false
	for i, t := range x.targets {
		tctx, cancel := context.WithTimeout(ctx, TargetTimeout(x.interval))
		start := x.o.Now().UTC()
		x.auditing[i].Store(&start)
		rep, err := x.a.Run(tctx, now.Add(-x.lookback), now.Add(time.Nanosecond), []Target{t})
		x.auditing[i].Store(nil)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			x.failures.WithLabelValues(t.Org, t.Name).Inc()
			msg := err.Error()
			x.errs[i].Store(&msg)
			x.logger.Error("audit failed", "org", t.Org, "destination", t.Name, "err", err)
			failed = true
			continue
		}
		res := &rep.Results[0]
		x.missing.WithLabelValues(t.Org, t.Name).Set(float64(res.Total.Missing))
		x.dups.WithLabelValues(t.Org, t.Name).Set(float64(res.Total.Duplicated))
		x.pending.WithLabelValues(t.Org, t.Name).Set(float64(res.Total.Pending))
		oldest := int64(0)
		if res.OldestMissing != nil {
			oldest = res.OldestMissing.UnixNano()
		}
		if t.Missing != nil {
			t.Missing(oldest)
		}
		if res.Total.Missing > 0 || res.Total.Duplicated > 0 {
			x.logger.Error("audit: destination does not hold exactly what was accepted", "org", t.Org, "destination", t.Name,
				"missing", res.Total.Missing, "duplicated", res.Total.Duplicated, "lookback", x.lookback)
		}
		x.results[i].Store(res)
		x.errs[i].Store(nil)
	}
	// A run counts as done only if every destination was audited: one that
	// cannot be read is not being checked, and the auditor-not-running
	// alert should say so.
	if !failed {
		done := x.o.Now().UTC()
		x.lastAt.Store(&done)
		x.lastRun.Set(float64(done.UnixNano()) / 1e9)
	}
}
