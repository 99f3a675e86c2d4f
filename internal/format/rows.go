package format

// The three output tables. Field order is column order. Times are UTC
// microseconds since the Unix epoch (Parquet TIMESTAMP(MICROS, UTC));
// nullable columns are pointers. JSON columns hold the raw JSON text.

// EventRow is one row of the events table: one accepted event, exactly once.
type EventRow struct {
	EventID         string  `parquet:"event_id" json:"event_id"`
	OrgID           string  `parquet:"org_id" json:"org_id"`
	DeviceID        string  `parquet:"device_id" json:"device_id"`
	AnonymousID     *string `parquet:"anonymous_id,optional" json:"anonymous_id"`
	UserID          *string `parquet:"user_id,optional" json:"user_id"`
	SessionID       string  `parquet:"session_id" json:"session_id"`
	PageID          *string `parquet:"page_id,optional" json:"page_id"`
	Type            string  `parquet:"type" json:"type"`
	EventName       *string `parquet:"event_name,optional" json:"event_name"`
	EventTime       int64   `parquet:"event_time,timestamp(microsecond)" json:"event_time"`
	ReceivedAt      int64   `parquet:"received_at,timestamp(microsecond)" json:"received_at"`
	ClientTimestamp *int64  `parquet:"client_timestamp,optional,timestamp(microsecond)" json:"client_timestamp"`
	SentAt          *int64  `parquet:"sent_at,optional,timestamp(microsecond)" json:"sent_at"`
	URL             *string `parquet:"url,optional" json:"url"`
	Path            *string `parquet:"path,optional" json:"path"`
	Referrer        *string `parquet:"referrer,optional" json:"referrer"`
	Title           *string `parquet:"title,optional" json:"title"`
	UserAgent       *string `parquet:"user_agent,optional" json:"user_agent"`
	GroupID         *string `parquet:"group_id,optional" json:"group_id"`
	PreviousID      *string `parquet:"previous_id,optional" json:"previous_id"`
	Properties      *string `parquet:"properties,optional,json" json:"properties"`
	Traits          *string `parquet:"traits,optional,json" json:"traits"`
	Context         *string `parquet:"context,optional,json" json:"context"`
	LogPartition    int32   `parquet:"log_partition" json:"log_partition"`
	LogOffset       int64   `parquet:"log_offset" json:"log_offset"`
	// Last, so that readers that match columns by position (DuckDB's
	// default over many files) still read lakes written before it.
	OriginalTimestamp *int64 `parquet:"original_timestamp,optional,timestamp(microsecond)" json:"original_timestamp"`
}

// PageRow is one closed page: started by a page/screen call, ended by the next
// page of its device, its session closing, or page idleness.
type PageRow struct {
	PageID     string  `parquet:"page_id" json:"page_id"`
	SessionID  string  `parquet:"session_id" json:"session_id"`
	OrgID      string  `parquet:"org_id" json:"org_id"`
	DeviceID   string  `parquet:"device_id" json:"device_id"`
	UserID     *string `parquet:"user_id,optional" json:"user_id"`
	Type       string  `parquet:"type" json:"type"` // page or screen
	Name       *string `parquet:"name,optional" json:"name"`
	URL        *string `parquet:"url,optional" json:"url"`
	Path       *string `parquet:"path,optional" json:"path"`
	Title      *string `parquet:"title,optional" json:"title"`
	Referrer   *string `parquet:"referrer,optional" json:"referrer"`
	StartedAt  int64   `parquet:"started_at,timestamp(microsecond)" json:"started_at"`
	EndedAt    int64   `parquet:"ended_at,timestamp(microsecond)" json:"ended_at"`
	DurationMS int64   `parquet:"duration_ms" json:"duration_ms"`
	EventCount int64   `parquet:"event_count" json:"event_count"`
	EndReason  string  `parquet:"end_reason" json:"end_reason"` // next_page, session_end, idle
}

// SessionRow is one closed session: a device's activity with no gap longer
// than the session idle timeout.
type SessionRow struct {
	SessionID  string  `parquet:"session_id" json:"session_id"`
	OrgID      string  `parquet:"org_id" json:"org_id"`
	DeviceID   string  `parquet:"device_id" json:"device_id"`
	UserID     *string `parquet:"user_id,optional" json:"user_id"`
	StartedAt  int64   `parquet:"started_at,timestamp(microsecond)" json:"started_at"`
	EndedAt    int64   `parquet:"ended_at,timestamp(microsecond)" json:"ended_at"`
	DurationMS int64   `parquet:"duration_ms" json:"duration_ms"`
	PageCount  int64   `parquet:"page_count" json:"page_count"`
	EventCount int64   `parquet:"event_count" json:"event_count"`
	EntryURL   *string `parquet:"entry_url,optional" json:"entry_url"`
	ExitURL    *string `parquet:"exit_url,optional" json:"exit_url"`
}
