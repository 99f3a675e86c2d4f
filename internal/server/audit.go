package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/sessionize"
	"github.com/tidemark/tidemark/internal/transport"
)

// auditor is the background auditor of serve: every interval it audits the
// last lookback hours of every destination and exports the result.
type auditor struct {
	a          *audit.Auditor
	o          audit.Options
	targets    []audit.Target
	transports []*transport.Transport // by target
	sessions   sessionize.Config
	interval   time.Duration
	lookback   time.Duration
	now        func() time.Time
	logger     *slog.Logger

	results  []atomic.Pointer[audit.Result] // by target: the last successful audit
	errs     []atomic.Pointer[string]       // by target: the last run's error, nil if it succeeded
	lastAt   atomic.Pointer[time.Time]      // when the last run finished
	missing  *prometheus.GaugeVec
	dups     *prometheus.GaugeVec
	pending  *prometheus.GaugeVec
	lastRun  prometheus.Gauge
	failures *prometheus.CounterVec
}

func newAuditor(o audit.Options, targets []audit.Target, ts []*transport.Transport, cfg *config.Config,
	reg prometheus.Registerer, logger *slog.Logger) *auditor {
	x := &auditor{
		a: audit.New(o), o: o, targets: targets, transports: ts, now: o.Now, logger: logger,
		sessions: sessionize.Config{PageIdle: cfg.Sessions.PageIdle.D(), SessionIdle: cfg.Sessions.SessionIdle.D(),
			DedupeWindow: cfg.Log.DedupeWindow.D()},
		interval: cfg.Audit.Interval.D(), lookback: cfg.Audit.Lookback.D(),
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
		results: make([]atomic.Pointer[audit.Result], len(targets)),
		errs:    make([]atomic.Pointer[string], len(targets)),
	}
	interval := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tidemark_audit_interval_seconds",
		Help: "Configured time between audit runs (audit.interval)."})
	interval.Set(x.interval.Seconds())
	reg.MustRegister(x.missing, x.dups, x.pending, x.lastRun, x.failures, interval)
	for _, t := range targets {
		x.missing.WithLabelValues(t.Org, t.Name)
		x.dups.WithLabelValues(t.Org, t.Name)
		x.pending.WithLabelValues(t.Org, t.Name)
		x.failures.WithLabelValues(t.Org, t.Name)
	}
	return x
}

// run audits every interval until ctx ends.
func (x *auditor) run(ctx context.Context) error {
	for {
		x.once(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(x.interval):
		}
	}
}

// once audits each destination on its own: one that cannot be read (it is
// down) is logged and counted and keeps its previous result, while the
// others are audited.
func (x *auditor) once(ctx context.Context) {
	now := x.now()
	failed := false
	for i, t := range x.targets {
		rep, err := x.a.Run(ctx, now.Add(-x.lookback), now.Add(time.Nanosecond), []audit.Target{t})
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
		x.transports[i].SetAuditMissing(oldest)
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
		done := x.now().UTC()
		x.lastAt.Store(&done)
		x.lastRun.Set(float64(done.UnixNano()) / 1e9)
	}
}

// selectTargets returns the targets of org and destination ("" matches all).
func selectTargets(targets []audit.Target, org, dest string) ([]audit.Target, error) {
	var out []audit.Target
	for _, t := range targets {
		if (org == "" || t.Org == org) && (dest == "" || t.Name == dest) {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no destination matches org %q and destination %q", org, dest)
	}
	return out, nil
}

// rangeParams reads from and to (RFC 3339) of an admin API request.
func rangeParams(r *http.Request) (from, to time.Time, err error) {
	q := r.URL.Query()
	for _, p := range []struct {
		name string
		v    *time.Time
	}{{"from", &from}, {"to", &to}} {
		s := q.Get(p.name)
		if s == "" {
			return from, to, fmt.Errorf("query parameter %q is required (RFC 3339 time)", p.name)
		}
		if *p.v, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return from, to, fmt.Errorf("query parameter %q: want an RFC 3339 time like 2026-11-29T10:00:00Z, got %q", p.name, s)
		}
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("from (%s) must be before to (%s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	return from, to, nil
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func apiError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, map[string]string{"error": err.Error()})
}

// request reads the range and the destinations of an audit or backfill
// request; on a bad request it answers it and returns false.
func (x *auditor) request(w http.ResponseWriter, r *http.Request) (from, to time.Time, targets []audit.Target, ok bool) {
	from, to, err := rangeParams(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return from, to, nil, false
	}
	q := r.URL.Query()
	if targets, err = selectTargets(x.targets, q.Get("org"), q.Get("destination")); err != nil {
		apiError(w, http.StatusNotFound, err)
		return from, to, nil, false
	}
	return from, to, targets, true
}

// auditHandler serves GET /api/v1/audit?from=&to=[&org=][&destination=][&deep=true]:
// the audit report as JSON (see docs/operations.md "Audit and backfill").
func (x *auditor) auditHandler(w http.ResponseWriter, r *http.Request) {
	from, to, targets, ok := x.request(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	a := x.a
	if q.Get("deep") == "true" {
		o := x.o
		o.Deep = true
		a = audit.New(o) // its own caches; audits only read
	}
	rep, err := a.Run(r.Context(), from, to, targets)
	if err != nil {
		apiError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// BackfillLine is one line of the NDJSON stream of POST /api/v1/backfill:
// a progress update, or the final result, or an error.
type BackfillLine struct {
	Progress *Progress              `json:"progress,omitempty"`
	Results  []audit.BackfillResult `json:"results,omitempty"`
	Report   *audit.Report          `json:"audit,omitempty"`
	Error    string                 `json:"error,omitempty"`
}

// Progress is how many of the planned events a backfill has written.
type Progress struct {
	Done  int `json:"done"`
	Total int `json:"total"`
}

// backfillHandler serves POST /api/v1/backfill?from=&to=[&org=][&destination=][&dry_run=true]
// as a stream of BackfillLine.
func (x *auditor) backfillHandler(w http.ResponseWriter, r *http.Request) {
	from, to, targets, ok := x.request(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	send := func(l BackfillLine) {
		enc.Encode(l)
		if flusher != nil {
			flusher.Flush()
		}
	}
	res, rep, err := x.a.Backfill(r.Context(), from, to, targets, audit.BackfillOptions{
		DryRun: q.Get("dry_run") == "true", Sessions: x.sessions,
		Progress: func(done, total int) { send(BackfillLine{Progress: &Progress{Done: done, Total: total}}) },
	})
	if err != nil {
		x.logger.Error("backfill failed", "err", err)
		send(BackfillLine{Error: err.Error()})
		return
	}
	for _, b := range res {
		if b.Events > 0 && b.Written {
			x.logger.Info("backfill delivered missing events", "org", b.Org, "destination", b.Destination,
				"events", b.Events, "batches", len(b.Batches))
		}
	}
	// The audit's lists of missing events are what was just written: leave
	// them out of the answer, which could otherwise run to megabytes.
	for i := range rep.Results {
		rep.Results[i].Missing = nil
	}
	send(BackfillLine{Results: res, Report: rep})
}
