package server

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/sessionize"
)

// auditAPI serves the admin API's audit and backfill: an admin key's with
// the background auditor's Auditor (and caches), a read key's with its
// org's own (readerAudits).
type auditAPI struct {
	bg       *audit.Background
	sessions sessionize.Config
	logger   *slog.Logger
	readers  readerAudits
}

// MaxReaderAuditHours is the longest range a read key may audit at once (the
// status page offers at most 168 hours); an admin key has no bound.
const MaxReaderAuditHours = 168

// readerRetryAfter is the Retry-After of a read key's audit refused because
// its org already has one running.
const readerRetryAfter = "5"

// readerAudits runs the audits asked for with an org's read key: at most
// one at a time per org, each org with an Auditor (and caches) of its own.
// So a read-key holder cannot hold the shared Auditor, which the background
// auditor and the admin API serialise on, nor run audits side by side: what
// it can cost the server is one audit of at most MaxReaderAuditHours of its
// own org's data at a time.
type readerAudits struct {
	mu       sync.Mutex
	auditors map[string]*audit.Auditor
	busy     map[string]bool
}

// claim returns org's Auditor and a func that releases it, or ok false
// while another audit of org holds it.
func (x *readerAudits) claim(org string, o audit.Options) (a *audit.Auditor, release func(), ok bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.busy[org] {
		return nil, nil, false
	}
	if x.auditors == nil {
		x.auditors, x.busy = map[string]*audit.Auditor{}, map[string]bool{}
	}
	if a = x.auditors[org]; a == nil {
		a = audit.New(o)
		x.auditors[org] = a
	}
	x.busy[org] = true
	return a, func() {
		x.mu.Lock()
		defer x.mu.Unlock()
		delete(x.busy, org)
	}, true
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
func (x *auditAPI) request(w http.ResponseWriter, r *http.Request) (from, to time.Time, targets []audit.Target, ok bool) {
	from, to, err := rangeParams(r)
	if err != nil {
		apiError(w, http.StatusBadRequest, err)
		return from, to, nil, false
	}
	q := r.URL.Query()
	org := q.Get("org")
	if o, scoped := readerOrg(r.Context()); scoped {
		org = o // requireReader refused a read key asking for another org
	}
	if targets, err = selectTargets(x.bg.Targets(), org, q.Get("destination")); err != nil {
		apiError(w, http.StatusNotFound, err)
		return from, to, nil, false
	}
	return from, to, targets, true
}

// auditHandler serves GET /api/v1/audit?from=&to=[&org=][&destination=][&deep=true]:
// the audit report as JSON (see docs/operations.md "Audit and backfill").
func (x *auditAPI) auditHandler(w http.ResponseWriter, r *http.Request) {
	from, to, targets, ok := x.request(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	a := x.bg.Auditor()
	o := x.bg.Options()
	if org, scoped := readerOrg(r.Context()); scoped {
		if hours := to.Sub(from.UTC().Truncate(time.Hour)); hours > MaxReaderAuditHours*time.Hour {
			apiError(w, http.StatusBadRequest, fmt.Errorf("a read key audits at most %d hours at a time; this range touches %d (audit it in parts, or with an admin key)",
				MaxReaderAuditHours, int64((hours+time.Hour-1)/time.Hour)))
			return
		}
		var release func()
		if a, release, ok = x.readers.claim(org, o); !ok {
			w.Header().Set("Retry-After", readerRetryAfter)
			apiError(w, http.StatusTooManyRequests, fmt.Errorf("an audit of org %s asked for with a read key is already running: one at a time per org; retry when it ends", org))
			return
		}
		defer release()
	}
	if q.Get("deep") == "true" {
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
func (x *auditAPI) backfillHandler(w http.ResponseWriter, r *http.Request) {
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
	res, rep, err := x.bg.Auditor().Backfill(r.Context(), from, to, targets, audit.BackfillOptions{
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
