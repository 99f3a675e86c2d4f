package sessionize

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/tidemark/tidemark/internal/event"
)

// Bucket is the granularity of the expiry index (see package doc).
const Bucket = int64(250 * time.Millisecond)

// Config holds the timeouts, all in log time.
type Config struct {
	PageIdle     time.Duration
	SessionIdle  time.Duration
	DedupeWindow time.Duration
}

// Device is the open state of one device: its session and current page.
type Device struct {
	Bucket  int64 // expiry index bucket the device is filed under
	Session Session
	Page    *Page // nil when no page is open
}

// Session is an open or closed session.
type Session struct {
	ID       string
	UserID   string
	EntryURL string
	ExitURL  string
	Start    int64
	Last     int64
	Pages    int64
	Events   int64
}

// Page is an open or closed page.
type Page struct {
	ID, Type, Name, URL, Path, Title, Referrer, UserID string
	Start, Last, Events                                int64
}

// Kind is the kind of an output item.
type Kind byte

const (
	KindEvent     Kind = 1
	KindPage      Kind = 2
	KindSession   Kind = 3
	KindWatermark Kind = 4
)

// Output is one item of a partition's output stream.
type Output struct {
	Kind    Kind
	LogTime int64 // the watermark when the item was produced
	Org     string
	Device  string

	// KindEvent: the log record and its assignment.
	Offset    uint64
	Size      int64 // encoded record size, for byte-based batch cuts
	SessionID string
	PageID    string // "" when the event belongs to no page

	// KindPage
	Page      *Page
	EndedAt   int64
	EndReason string // next_page, idle, session_end

	// KindSession
	Session *Session
}

// Store is the sessionizer's memory. Reads must see the writes made before
// them. Keys are org + "\x00" + device.
type Store interface {
	Device(key string) (*Device, error) // nil, nil when absent
	PutDevice(key string, d *Device)
	DeleteDevice(key string)
	Index(bucket int64, key string)
	Unindex(bucket int64, key string)
	// Due returns up to limit index entries with from <= bucket <= wm, in
	// (bucket, key) order.
	Due(from, wm int64, limit int) ([]IndexEntry, error)
	// FirstDue returns the smallest bucket >= from in the index.
	FirstDue(from int64) (bucket int64, ok bool, err error)
	// Seen returns the log time an event with this org, device and
	// messageId was last remembered at; the three together are the dedupe
	// key, compared exactly (any byte may occur in device and id).
	Seen(org, device, id string) (at int64, ok bool, err error)
	Remember(org, device, id string, at int64)
	Emit(o *Output) error // o is valid only during the call
}

// IndexEntry is one expiry index entry.
type IndexEntry struct {
	Bucket int64
	Key    string
}

// Sessionizer processes one partition's records in order.
type Sessionizer struct {
	cfg       Config
	st        Store
	wm        int64
	drained   int64 // every index entry at or below this bucket is closed (see closeDue)
	nextDue   int64 // smallest indexed bucket; valid when dueKnown
	dueKnown  bool
	hasDue    bool
	out       Output // the event output being built, see Process
	Dupes     int64  // duplicates skipped since creation (not persisted)
	Processed int64
}

// New returns a sessionizer continuing from watermark wm over st.
func New(cfg Config, st Store, wm int64) *Sessionizer {
	return &Sessionizer{cfg: cfg, st: st, wm: wm, drained: wm}
}

// SetStore points the sessionizer at the store of the next chunk.
func (s *Sessionizer) SetStore(st Store) { s.st = st }

// Reset forgets cached index knowledge and rewinds the watermark, after a chunk
// failed to commit.
func (s *Sessionizer) Reset(wm int64) { s.wm, s.drained, s.dueKnown = wm, wm, false }

// Watermark is the largest record time seen.
func (s *Sessionizer) Watermark() int64 { return s.wm }

// Process handles the record at offset off of size bytes.
func (s *Sessionizer) Process(off uint64, size int, rec *event.Record) error {
	s.Processed++
	advanced := rec.Time > s.wm
	if advanced {
		s.wm = rec.Time
		if err := s.closeDue(); err != nil {
			return err
		}
	}
	if rec.Kind == event.KindTick {
		if advanced {
			return s.st.Emit(&Output{Kind: KindWatermark, LogTime: s.wm})
		}
		return nil
	}
	ev := &rec.Event
	window := int64(s.cfg.DedupeWindow)
	if at, ok, err := s.st.Seen(ev.Org, ev.Device, ev.ID); err != nil {
		return err
	} else if ok && s.wm-at < window {
		s.Dupes++
		return nil
	}
	s.st.Remember(ev.Org, ev.Device, ev.ID, s.wm)

	key := ev.Org + "\x00" + ev.Device
	d, err := s.st.Device(key)
	if err != nil {
		return err
	}
	if d != nil && s.expired(d) {
		// Idle past a timeout but its bucket is not due yet: close now so the
		// timeout rule is exact.
		if err := s.expire(IndexEntry{Bucket: d.Bucket, Key: key}); err != nil {
			return err
		}
		if d, err = s.st.Device(key); err != nil {
			return err
		}
	}
	t := s.wm
	if d == nil {
		d = &Device{Bucket: -1, Session: Session{ID: entityID("s", ev, t), Start: t}}
	}
	out := &s.out // reused: one allocation less per event
	*out = Output{Kind: KindEvent, LogTime: t, Org: ev.Org, Offset: off, Size: int64(size)}
	if event.StartsPage(ev.Type) {
		if d.Page != nil {
			if err := s.emitPage(ev.Org, ev.Device, d, t, "next_page"); err != nil {
				return err
			}
		}
		d.Page = &Page{ID: entityID("p", ev, t), Type: ev.Type, Name: ev.Name, URL: ev.URL, Path: ev.Path,
			Title: ev.Title, Referrer: ev.Referrer, Start: t}
		d.Session.Pages++
		if d.Session.EntryURL == "" {
			d.Session.EntryURL = ev.URL
		}
		d.Session.ExitURL = ev.URL
	}
	if d.Page != nil {
		d.Page.Last = t
		d.Page.Events++
		if ev.UserID != "" {
			d.Page.UserID = ev.UserID
		}
		out.PageID = d.Page.ID
	}
	d.Session.Last = t
	d.Session.Events++
	if ev.UserID != "" {
		d.Session.UserID = ev.UserID
	}
	out.SessionID = d.Session.ID
	s.file(key, d)
	return s.st.Emit(out)
}

// file stores d and files it in the expiry index under its current expiry.
func (s *Sessionizer) file(key string, d *Device) {
	// A device stays filed under the bucket it was first filed in. Its expiry
	// only grows with activity, so that bucket is never later than the real
	// expiry (beyond rounding); when it comes due, expire closes what has
	// timed out and files the device again under its new expiry. An active
	// device thus rewrites its index entry once per timeout, not per event.
	if d.Bucket < 0 {
		exp := d.Session.Last + int64(s.cfg.SessionIdle)
		if d.Page != nil {
			exp = min(exp, d.Page.Last+int64(s.cfg.PageIdle))
		}
		b := (exp + Bucket - 1) / Bucket * Bucket
		s.st.Index(b, key)
		d.Bucket = b
		if s.dueKnown && (!s.hasDue || b < s.nextDue) {
			s.nextDue, s.hasDue = b, true
		}
	}
	s.st.PutDevice(key, d)
}

func (s *Sessionizer) expired(d *Device) bool {
	return d.Session.Last+int64(s.cfg.SessionIdle) <= s.wm ||
		(d.Page != nil && d.Page.Last+int64(s.cfg.PageIdle) <= s.wm)
}

func (s *Sessionizer) closeDue() error {
	if !s.dueKnown {
		b, ok, err := s.st.FirstDue(s.drained + 1)
		if err != nil {
			return err
		}
		s.nextDue, s.hasDue, s.dueKnown = b, ok, true
	}
	if !s.hasDue || s.nextDue > s.wm {
		return nil
	}
	for {
		due, err := s.st.Due(s.drained+1, s.wm, 1024)
		if err != nil {
			return err
		}
		if len(due) == 0 {
			break
		}
		for _, e := range due {
			if err := s.expire(e); err != nil {
				return err
			}
		}
	}
	// Devices are always filed above the watermark at the time, so nothing
	// live is at or below it now: later scans start above it and step over
	// none of the entries just deleted.
	s.drained = s.wm
	b, ok, err := s.st.FirstDue(s.drained + 1)
	if err != nil {
		return err
	}
	s.nextDue, s.hasDue = b, ok
	return nil
}

func (s *Sessionizer) expire(e IndexEntry) error {
	s.st.Unindex(e.Bucket, e.Key)
	d, err := s.st.Device(e.Key)
	if err != nil {
		return err
	}
	if d == nil {
		return nil
	}
	d.Bucket = -1
	org, device := splitKey(e.Key)
	sessionDone := d.Session.Last+int64(s.cfg.SessionIdle) <= s.wm
	if d.Page != nil && (sessionDone || d.Page.Last+int64(s.cfg.PageIdle) <= s.wm) {
		reason := "idle"
		if sessionDone {
			reason = "session_end"
		}
		if err := s.emitPage(org, device, d, d.Page.Last, reason); err != nil {
			return err
		}
	}
	if !sessionDone {
		s.file(e.Key, d)
		return nil
	}
	s.st.DeleteDevice(e.Key)
	sess := d.Session
	return s.st.Emit(&Output{Kind: KindSession, LogTime: s.wm, Org: org, Device: device, Session: &sess})
}

func (s *Sessionizer) emitPage(org, device string, d *Device, ended int64, reason string) error {
	p := d.Page
	d.Page = nil
	return s.st.Emit(&Output{Kind: KindPage, LogTime: s.wm, Org: org, Device: device,
		SessionID: d.Session.ID, Page: p, EndedAt: ended, EndReason: reason})
}

func splitKey(k string) (org, device string) {
	for i := 0; i < len(k); i++ {
		if k[i] == 0 {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}

// entityID derives a stable UUID-shaped id from the event that opens the entity.
func entityID(kind string, ev *event.Event, t int64) string {
	h := sha256.New()
	for _, s := range []string{kind, ev.Org, ev.Device, ev.ID, strconv.FormatInt(t, 10)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	var sum [32]byte
	h.Sum(sum[:0])
	sum[6] = sum[6]&0x0f | 0x50 // version 5 style, name-based
	sum[8] = sum[8]&0x3f | 0x80
	x := hex.EncodeToString(sum[:16])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}
