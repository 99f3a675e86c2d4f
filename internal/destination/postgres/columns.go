package postgres

import (
	"github.com/tidemark/tidemark/internal/format"
)

// kind is a column's SQL type.
type kind int

const (
	kText kind = iota
	kJSON
	kTime // int64 microseconds UTC -> timestamptz
	kBigint
	kInteger
)

var sqlTypes = [...]string{kText: "text", kJSON: "jsonb", kTime: "timestamptz", kBigint: "bigint", kInteger: "integer"}

// column is one column of a table: its name, type, nullability and how a
// row's value is encoded for COPY. The lists below are the lake's columns
// in the lake's order (format.EventRow, PageRow, SessionRow; a test checks
// them against the Parquet schema), followed by tidemark's own columns.
type column[T any] struct {
	name string
	kind kind
	null bool
	put  func(w *copyWriter, r *T)
}

// Tidemark's own columns, after the lake's in every table.
const (
	colBatch   = "_tidemark_batch"   // text NOT NULL: the batch that loaded the row
	colEscaped = "_tidemark_escaped" // jsonb: the originals of values altered to be storable
)

var eventColumns = []column[format.EventRow]{
	{"event_id", kText, false, func(w *copyWriter, r *format.EventRow) { w.text(r.EventID) }},
	{"org_id", kText, false, func(w *copyWriter, r *format.EventRow) { w.text(r.OrgID) }},
	{"device_id", kText, false, func(w *copyWriter, r *format.EventRow) { w.text(r.DeviceID) }},
	{"anonymous_id", kText, true, func(w *copyWriter, r *format.EventRow) { w.textPtr(r.AnonymousID) }},
	{"user_id", kText, true, func(w *copyWriter, r *format.EventRow) { w.textPtr(r.UserID) }},
	{"session_id", kText, false, func(w *copyWriter, r *format.EventRow) { w.text(r.SessionID) }},
	{"page_id", kText, true, func(w *copyWriter, r *format.EventRow) { w.textPtr(r.PageID) }},
	{"type", kText, false, func(w *copyWriter, r *format.EventRow) { w.text(r.Type) }},
	{"event_name", kText, true, func(w *copyWriter, r *format.EventRow) { w.textPtr(r.EventName) }},
	{"event_time", kTime, false, func(w *copyWriter, r *format.EventRow) { w.time(r.EventTime) }},
	{"received_at", kTime, false, func(w *copyWriter, r *format.EventRow) { w.time(r.ReceivedAt) }},
	{"client_timestamp", kTime, true, func(w *copyWriter, r *format.EventRow) { w.timePtr(r.ClientTimestamp) }},
	{"sent_at", kTime, true, func(w *copyWriter, r *format.EventRow) { w.timePtr(r.SentAt) }},
	{"url", kText, true, func(w *copyWriter, r *format.EventRow) { w.textPtr(r.URL) }},
	{"path", kText, true, func(w *copyWriter, r *format.EventRow) { w.textPtr(r.Path) }},
	{"referrer", kText, true, func(w *copyWriter, r *format.EventRow) { w.textPtr(r.Referrer) }},
	{"title", kText, true, func(w *copyWriter, r *format.EventRow) { w.textPtr(r.Title) }},
	{"user_agent", kText, true, func(w *copyWriter, r *format.EventRow) { w.textPtr(r.UserAgent) }},
	{"group_id", kText, true, func(w *copyWriter, r *format.EventRow) { w.textPtr(r.GroupID) }},
	{"previous_id", kText, true, func(w *copyWriter, r *format.EventRow) { w.textPtr(r.PreviousID) }},
	{"properties", kJSON, true, func(w *copyWriter, r *format.EventRow) { w.json(r.Properties) }},
	{"traits", kJSON, true, func(w *copyWriter, r *format.EventRow) { w.json(r.Traits) }},
	{"context", kJSON, true, func(w *copyWriter, r *format.EventRow) { w.json(r.Context) }},
	{"log_partition", kInteger, false, func(w *copyWriter, r *format.EventRow) { w.int32(r.LogPartition) }},
	{"log_offset", kBigint, false, func(w *copyWriter, r *format.EventRow) { w.int64(r.LogOffset) }},
	{"original_timestamp", kTime, true, func(w *copyWriter, r *format.EventRow) { w.timePtr(r.OriginalTimestamp) }},
}

var pageColumns = []column[format.PageRow]{
	{"page_id", kText, false, func(w *copyWriter, r *format.PageRow) { w.text(r.PageID) }},
	{"session_id", kText, false, func(w *copyWriter, r *format.PageRow) { w.text(r.SessionID) }},
	{"org_id", kText, false, func(w *copyWriter, r *format.PageRow) { w.text(r.OrgID) }},
	{"device_id", kText, false, func(w *copyWriter, r *format.PageRow) { w.text(r.DeviceID) }},
	{"user_id", kText, true, func(w *copyWriter, r *format.PageRow) { w.textPtr(r.UserID) }},
	{"type", kText, false, func(w *copyWriter, r *format.PageRow) { w.text(r.Type) }},
	{"name", kText, true, func(w *copyWriter, r *format.PageRow) { w.textPtr(r.Name) }},
	{"url", kText, true, func(w *copyWriter, r *format.PageRow) { w.textPtr(r.URL) }},
	{"path", kText, true, func(w *copyWriter, r *format.PageRow) { w.textPtr(r.Path) }},
	{"title", kText, true, func(w *copyWriter, r *format.PageRow) { w.textPtr(r.Title) }},
	{"referrer", kText, true, func(w *copyWriter, r *format.PageRow) { w.textPtr(r.Referrer) }},
	{"started_at", kTime, false, func(w *copyWriter, r *format.PageRow) { w.time(r.StartedAt) }},
	{"ended_at", kTime, false, func(w *copyWriter, r *format.PageRow) { w.time(r.EndedAt) }},
	{"duration_ms", kBigint, false, func(w *copyWriter, r *format.PageRow) { w.int64(r.DurationMS) }},
	{"event_count", kBigint, false, func(w *copyWriter, r *format.PageRow) { w.int64(r.EventCount) }},
	{"end_reason", kText, false, func(w *copyWriter, r *format.PageRow) { w.text(r.EndReason) }},
}

var sessionColumns = []column[format.SessionRow]{
	{"session_id", kText, false, func(w *copyWriter, r *format.SessionRow) { w.text(r.SessionID) }},
	{"org_id", kText, false, func(w *copyWriter, r *format.SessionRow) { w.text(r.OrgID) }},
	{"device_id", kText, false, func(w *copyWriter, r *format.SessionRow) { w.text(r.DeviceID) }},
	{"user_id", kText, true, func(w *copyWriter, r *format.SessionRow) { w.textPtr(r.UserID) }},
	{"started_at", kTime, false, func(w *copyWriter, r *format.SessionRow) { w.time(r.StartedAt) }},
	{"ended_at", kTime, false, func(w *copyWriter, r *format.SessionRow) { w.time(r.EndedAt) }},
	{"duration_ms", kBigint, false, func(w *copyWriter, r *format.SessionRow) { w.int64(r.DurationMS) }},
	{"page_count", kBigint, false, func(w *copyWriter, r *format.SessionRow) { w.int64(r.PageCount) }},
	{"event_count", kBigint, false, func(w *copyWriter, r *format.SessionRow) { w.int64(r.EventCount) }},
	{"entry_url", kText, true, func(w *copyWriter, r *format.SessionRow) { w.textPtr(r.EntryURL) }},
	{"exit_url", kText, true, func(w *copyWriter, r *format.SessionRow) { w.textPtr(r.ExitURL) }},
}

// names returns the column names of cols followed by tidemark's own.
func names[T any](cols []column[T]) []string {
	out := make([]string, 0, len(cols)+2)
	for _, c := range cols {
		out = append(out, c.name)
	}
	return append(out, colBatch, colEscaped)
}

// columnDefs returns the column definitions of a CREATE TABLE of cols.
func columnDefs[T any](cols []column[T]) string {
	var s string
	for _, c := range cols {
		s += "\n\t" + c.name + " " + sqlTypes[c.kind]
		if !c.null {
			s += " NOT NULL"
		}
		s += ","
	}
	return s + "\n\t" + colBatch + " text NOT NULL,\n\t" + colEscaped + " jsonb"
}
