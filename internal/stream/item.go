package stream

import (
	"encoding/json"
	"time"

	"github.com/tidemark/tidemark/internal/event"
)

// Item is one event as streaming consumers see it: the data of a live-tail
// SSE event and an element of a webhook request's "events". Field names
// follow the lake's events table; absent values are left out.
type Item struct {
	EventID      string          `json:"event_id"`
	OrgID        string          `json:"org_id"`
	DeviceID     string          `json:"device_id"`
	AnonymousID  string          `json:"anonymous_id,omitempty"`
	UserID       string          `json:"user_id,omitempty"`
	Type         string          `json:"type"`
	EventName    string          `json:"event_name,omitempty"`
	EventTime    time.Time       `json:"event_time"`
	ReceivedAt   time.Time       `json:"received_at"`
	URL          string          `json:"url,omitempty"`
	Path         string          `json:"path,omitempty"`
	Referrer     string          `json:"referrer,omitempty"`
	Title        string          `json:"title,omitempty"`
	UserAgent    string          `json:"user_agent,omitempty"`
	GroupID      string          `json:"group_id,omitempty"`
	PreviousID   string          `json:"previous_id,omitempty"`
	Properties   json.RawMessage `json:"properties,omitempty"`
	Traits       json.RawMessage `json:"traits,omitempty"`
	Context      json.RawMessage `json:"context,omitempty"`
	LogPartition int             `json:"log_partition"`
	LogOffset    uint64          `json:"log_offset"`
}

// NewItem converts the event at partition p, offset off.
func NewItem(e *event.Event, p int, off uint64) Item {
	return Item{
		EventID: e.ID, OrgID: e.Org, DeviceID: e.Device, AnonymousID: e.AnonymousID, UserID: e.UserID,
		Type: e.Type, EventName: e.Name,
		EventTime: time.Unix(0, e.EventTime).UTC(), ReceivedAt: time.Unix(0, e.ReceivedAt).UTC(),
		URL: e.URL, Path: e.Path, Referrer: e.Referrer, Title: e.Title, UserAgent: e.UserAgent,
		GroupID: e.GroupID, PreviousID: e.PreviousID,
		Properties: raw(e.Properties), Traits: raw(e.Traits), Context: raw(e.Context),
		LogPartition: p, LogOffset: off,
	}
}

// raw returns b as JSON; bytes that are not valid JSON (never written by
// the collector) become a JSON string, so that one record cannot break a batch.
func raw(b []byte) json.RawMessage {
	if len(b) == 0 {
		return nil
	}
	if !json.Valid(b) {
		s, _ := json.Marshal(string(b))
		return s
	}
	return json.RawMessage(b)
}

// Request is the JSON body of one webhook request.
type Request struct {
	Org     string `json:"org"`
	Webhook string `json:"webhook"`
	// IdempotencyKey names the batch (also the Idempotency-Key header):
	// <org>.<webhook>.p<partition>.<first offset>-<last offset>. A batch sent
	// again after a crash may hold more events than the first time; each
	// event's event_id is the idempotency key to deduplicate on.
	IdempotencyKey string `json:"idempotency_key"`
	Events         []Item `json:"events"`
}

// Filter selects events. Empty sets match everything; Org "" matches every org.
type Filter struct {
	Org     string
	Types   map[string]bool
	Events  map[string]bool // event names
	Devices map[string]bool
}

// NewFilter builds a filter from lists (nil or empty: match all).
func NewFilter(org string, types, events, devices []string) Filter {
	return Filter{Org: org, Types: set(types), Events: set(events), Devices: set(devices)}
}

func set(l []string) map[string]bool {
	if len(l) == 0 {
		return nil
	}
	m := make(map[string]bool, len(l))
	for _, s := range l {
		m[s] = true
	}
	return m
}

// Match reports whether f selects e.
func (f *Filter) Match(e *event.Event) bool {
	return (f.Org == "" || f.Org == e.Org) &&
		(f.Types == nil || f.Types[e.Type]) &&
		(f.Events == nil || f.Events[e.Name]) &&
		(f.Devices == nil || f.Devices[e.Device])
}
