package server

import (
	"crypto/subtle"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/destination/registry"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/pipeline"
	"github.com/tidemark/tidemark/internal/stream"
	"github.com/tidemark/tidemark/internal/transport"
)

// statusResponse is the body of GET /api/v1/status. Its field names are part
// of the API; add fields, never rename them.
type statusResponse struct {
	Version string    `json:"version"`
	Now     time.Time `json:"now"`
	// Org is the org an org's read key sees (its destinations and webhooks
	// only, and no log section: the log's offsets count every org's
	// records); absent for an admin key, which sees every org.
	Org          string              `json:"org,omitempty"`
	Log          logStatus           `json:"log"`
	Destinations []destinationStatus `json:"destinations"`
	Audit        struct {
		LastRunAt       *time.Time `json:"last_run_at,omitempty"`
		IntervalSeconds float64    `json:"interval_seconds"`
		LookbackSeconds float64    `json:"lookback_seconds"`
	} `json:"audit"`
	// Stream is the streaming pipeline; absent when stream.enabled is false.
	Stream *streamStatus `json:"stream,omitempty"`
}

// destinationAudit is the last background audit of a destination.
type destinationAudit struct {
	Hours         []audit.Hour `json:"hours"`
	Total         audit.Hour   `json:"total"`
	OldestMissing *time.Time   `json:"oldest_missing,omitempty"`
}

type streamStatus struct {
	Webhooks []webhookStatus `json:"webhooks"`
}

type webhookStatus struct {
	Org              string     `json:"org"`
	Name             string     `json:"name"`
	URL              string     `json:"url"` // without user info or query
	LagSeconds       float64    `json:"lag_seconds"`
	BehindRecords    uint64     `json:"behind_records"`
	DeliveredEvents  int64      `json:"delivered_since_start"`
	DeadLetterEvents int64      `json:"dead_lettered_since_start"`
	FailedRequests   int64      `json:"failed_requests_since_start"`
	LastError        string     `json:"last_error,omitempty"`
	LastErrorAt      *time.Time `json:"last_error_at,omitempty"`
}

type logStatus struct {
	Partitions            int      `json:"partitions"`
	LastOffsets           []uint64 `json:"last_offsets"`
	SessionizerCursors    []uint64 `json:"sessionizer_cursors"`
	SessionizerLagRecords uint64   `json:"sessionizer_lag_records"`
	// UnreadableRecords are the log records the sessionizer skipped since
	// start because they cannot be decoded (at most 100); Gaps are the
	// offsets the log lost (docs/operations.md, Damage). Both absent on a healthy log.
	UnreadableRecords []pipeline.Unreadable `json:"unreadable_records,omitempty"`
	Gaps              []logGap              `json:"lost_offsets,omitempty"`
}

// logGap is a range of offsets a partition's log lost (eventlog.Gap).
type logGap struct {
	Partition int    `json:"log_partition"`
	From      uint64 `json:"from"`
	To        uint64 `json:"to"`
}

type destinationStatus struct {
	Org          string     `json:"org"`
	Name         string     `json:"name"`
	URL          string     `json:"url"`   // redacted
	State        string     `json:"state"` // "up" or "failing"
	LastError    string     `json:"last_error,omitempty"`
	LastErrorOp  string     `json:"last_error_op,omitempty"`
	LastErrorAt  *time.Time `json:"last_error_at,omitempty"`
	LastCommitAt *time.Time `json:"last_commit_at,omitempty"`
	// OldestUndeliveredAgeSeconds and FreshnessSLASeconds are the events
	// table's (the shortest SLA); Tables has every table's.
	OldestUndeliveredAgeSeconds float64                   `json:"oldest_undelivered_age_seconds"`
	FreshnessSLASeconds         float64                   `json:"freshness_sla_seconds"`
	Tables                      map[string]tableFreshness `json:"tables"`
	// PendingEvents are the events of the audited hours not in the
	// destination yet and not yet due (last audit; 0 before it).
	PendingEvents int64             `json:"pending_events"`
	Audit         *destinationAudit `json:"audit,omitempty"`
	// AuditError is why the last audit of this destination failed.
	AuditError string `json:"audit_error,omitempty"`
	// AuditingSince is when the background audit of this destination now
	// in progress started (absent when none is).
	AuditingSince       *time.Time `json:"auditing_since,omitempty"`
	DeliveredSinceStart struct {
		Events   int64 `json:"events"`
		Pages    int64 `json:"pages"`
		Sessions int64 `json:"sessions"`
	} `json:"delivered_since_start"`
}

// tableFreshness is one table's freshness in a destination.
type tableFreshness struct {
	OldestUndeliveredAgeSeconds float64 `json:"oldest_undelivered_age_seconds"`
	FreshnessSLASeconds         float64 `json:"freshness_sla_seconds"`
	Stale                       bool    `json:"stale"` // age above the SLA: the stalled alert's condition
}

// requireAdmin serves h only to requests authenticated by an admin key as
// "Authorization: Bearer KEY".
func requireAdmin(keys []config.Secret, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if len(keys) == 0 {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"error": "the admin API is off: no admin_keys configured"})
			return
		}
		if !adminAuth(keys, r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tidemark"`)
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]string{"error": "missing or unknown admin key (Authorization: Bearer KEY)"})
			return
		}
		// An audit or a backfill may run longer than http.read_timeout, whose
		// expiry would cancel the request's context; these requests have no body.
		http.NewResponseController(w).SetReadDeadline(time.Time{})
		h.ServeHTTP(w, r)
	})
}

// statusHandler serves the operator status API.
func statusHandler(version string, lg *eventlog.Log, sz *pipeline.Sessionizers,
	ts []*transport.Transport, urls []string, slas [][3]time.Duration, aud *audit.Background, st *stream.Stream, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t := now().UTC()
		org, scoped := readerOrg(r.Context())
		resp := statusResponse{Version: version, Now: t, Org: org, Log: logStatus{Partitions: lg.Partitions()}}
		resp.Audit.IntervalSeconds = aud.Interval().Seconds()
		resp.Audit.LookbackSeconds = aud.Lookback().Seconds()
		resp.Audit.LastRunAt = aud.LastRunAt()
		if !scoped {
			resp.Log = logSection(lg, sz)
		}
		for i, tr := range ts {
			ds := tr.Status()
			if scoped && ds.Org != org {
				continue
			}
			d := destinationStatus{Org: ds.Org, Name: ds.Name, URL: registry.Redact(urls[i]), State: "up"}
			if !ds.Up {
				d.State = "failing"
			}
			if ds.LastError != "" {
				d.LastError, d.LastErrorOp, d.LastErrorAt = ds.LastError, ds.LastErrorOp, &ds.LastErrorAt
			}
			if !ds.LastCommitAt.IsZero() {
				d.LastCommitAt = &ds.LastCommitAt
			}
			d.Tables = map[string]tableFreshness{}
			for k, name := range config.Tables {
				tf := tableFreshness{FreshnessSLASeconds: slas[i][k].Seconds()}
				if at := ds.OldestPendingTable[k]; !at.IsZero() && t.After(at) {
					tf.OldestUndeliveredAgeSeconds = t.Sub(at).Seconds()
				}
				tf.Stale = tf.OldestUndeliveredAgeSeconds > tf.FreshnessSLASeconds
				d.Tables[name] = tf
			}
			d.OldestUndeliveredAgeSeconds = d.Tables["events"].OldestUndeliveredAgeSeconds
			d.FreshnessSLASeconds = d.Tables["events"].FreshnessSLASeconds
			d.DeliveredSinceStart.Events, d.DeliveredSinceStart.Pages, d.DeliveredSinceStart.Sessions = ds.Delivered[0], ds.Delivered[1], ds.Delivered[2]
			res, auditErr := aud.Last(i)
			if res != nil {
				d.Audit = &destinationAudit{Hours: res.Hours, Total: res.Total, OldestMissing: res.OldestMissing}
				d.PendingEvents = res.Total.Pending
			}
			if auditErr != nil {
				d.AuditError = *auditErr
			}
			d.AuditingSince = aud.Auditing(i)
			resp.Destinations = append(resp.Destinations, d)
		}
		if st != nil {
			resp.Stream = &streamStatus{Webhooks: []webhookStatus{}}
			for _, h := range st.Status() {
				if scoped && h.Org != org {
					continue
				}
				ws := webhookStatus{Org: h.Org, Name: h.Name, URL: h.URL, LagSeconds: h.LagSeconds, BehindRecords: h.Behind,
					DeliveredEvents: h.Delivered, DeadLetterEvents: h.DeadLetter, FailedRequests: h.FailedRequests, LastError: h.LastError}
				if !h.LastErrorAt.IsZero() {
					ws.LastErrorAt = &h.LastErrorAt
				}
				resp.Stream.Webhooks = append(resp.Stream.Webhooks, ws)
			}
		}
		// Gzip when the client takes it: with many destinations the answer
		// runs to megabytes (2.7 KB per destination), and the status page
		// asks for it every few seconds.
		var out io.Writer = w
		w.Header().Add("Vary", "Accept-Encoding")
		if strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed)
			defer zw.Close()
			out = zw
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		enc.Encode(resp)
	})
}

// logSection is the status of the log's partitions and the sessionizer.
func logSection(lg *eventlog.Log, sz *pipeline.Sessionizers) logStatus {
	ls := logStatus{Partitions: lg.Partitions()}
	for p := range lg.Partitions() {
		last, cur := lg.LastOffset(p), sz.Cursor(p)
		ls.LastOffsets = append(ls.LastOffsets, last)
		ls.SessionizerCursors = append(ls.SessionizerCursors, cur)
		ls.SessionizerLagRecords += last - min(cur, last)
		for _, g := range lg.Gaps(p) {
			ls.Gaps = append(ls.Gaps, logGap{Partition: p, From: g.From, To: g.To})
		}
	}
	ls.UnreadableRecords = sz.UnreadableRecords()
	return ls
}

func adminAuth(keys []config.Secret, header string) bool {
	got, ok := strings.CutPrefix(header, "Bearer ")
	if !ok || got == "" {
		return false
	}
	match := 0
	for _, k := range keys {
		match |= subtle.ConstantTimeCompare([]byte(got), []byte(k.Reveal()))
	}
	return match == 1
}
