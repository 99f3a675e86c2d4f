package format

import (
	"unsafe"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/sessionize"
)

func opt(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// optJSON returns b as a string without copying it: the row takes b over,
// so nothing may change b afterwards (event.Decode's raw fields are fresh
// copies that nothing else holds).
func optJSON(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := unsafe.String(&b[0], len(b))
	return &s
}

func micros(ns int64) int64 { return ns / 1000 }

// optMicros is a client time in microseconds, nil when the client sent none
// (1970-01-01T00:00:00Z is 0, not nil).
func optMicros(t event.ClientTime) *int64 {
	if !t.Set {
		return nil
	}
	v := t.NS / 1000
	return &v
}

// NewEventRow is the events table row of a log event of partition p and
// its assignment by the sessionizer. The
// row shares e's raw JSON fields (see optJSON): e must come from
// event.Decode and not be changed afterwards.
func NewEventRow(p int, o *sessionize.Output, e *event.Event) EventRow {
	name := e.Name
	return EventRow{
		EventID: e.ID, OrgID: e.Org, DeviceID: e.Device, AnonymousID: opt(e.AnonymousID), UserID: opt(e.UserID),
		SessionID: o.SessionID, PageID: opt(o.PageID), Type: e.Type, EventName: opt(name),
		EventTime: micros(e.EventTime), ReceivedAt: micros(e.ReceivedAt),
		ClientTimestamp: optMicros(e.Timestamp), SentAt: optMicros(e.SentAt), OriginalTimestamp: optMicros(e.OriginalTimestamp),
		URL: opt(e.URL), Path: opt(e.Path), Referrer: opt(e.Referrer), Title: opt(e.Title), UserAgent: opt(e.UserAgent),
		GroupID: opt(e.GroupID), PreviousID: opt(e.PreviousID),
		Properties: optJSON(e.Properties), Traits: optJSON(e.Traits), Context: optJSON(e.Context),
		LogPartition: int32(p), LogOffset: int64(o.Offset),
	}
}

// NewPageRow is the pages table row of a page closure.
func NewPageRow(o *sessionize.Output) PageRow {
	pg := o.Page
	return PageRow{
		PageID: pg.ID, SessionID: o.SessionID, OrgID: o.Org, DeviceID: o.Device, UserID: opt(pg.UserID),
		Type: pg.Type, Name: opt(pg.Name), URL: opt(pg.URL), Path: opt(pg.Path), Title: opt(pg.Title), Referrer: opt(pg.Referrer),
		StartedAt: micros(pg.Start), EndedAt: micros(o.EndedAt), DurationMS: (o.EndedAt - pg.Start) / 1e6,
		EventCount: pg.Events, EndReason: o.EndReason,
	}
}

// NewSessionRow is the sessions table row of a session closure.
func NewSessionRow(o *sessionize.Output) SessionRow {
	s := o.Session
	return SessionRow{
		SessionID: s.ID, OrgID: o.Org, DeviceID: o.Device, UserID: opt(s.UserID),
		StartedAt: micros(s.Start), EndedAt: micros(s.Last), DurationMS: (s.Last - s.Start) / 1e6,
		PageCount: s.Pages, EventCount: s.Events, EntryURL: opt(s.EntryURL), ExitURL: opt(s.ExitURL),
	}
}
