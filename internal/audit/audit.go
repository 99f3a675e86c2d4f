package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/format"
)

// ReportVersion is the version of the JSON report (see docs/operations.md "Audit and backfill").
const ReportVersion = 1

// DefaultMaxListed bounds the missing events a Result lists.
const DefaultMaxListed = 100_000

// disorder bounds how far a record's time can be out of log order (the
// collector stamps received_at before the group commit): log scans for an
// hour start and stop this far outside it.
const disorder = 5 * time.Minute

// Destination is what the audit reads back from a destination, relying on
// the destination alone (not on the pipeline's bookkeeping), and what
// Backfill writes its batches to. The blob destination implements it; so
// must every destination that is audited.
type Destination interface {
	// Owned returns nil when the destination's place is this data
	// directory's, and an error wrapping destination.ErrClaimed when it is
	// another destination's: nothing in it then counts as delivered.
	Owned(ctx context.Context) error
	// EventFiles lists the events files of the UTC hour that starts at
	// hour, committed or not, with the size the destination reports and
	// the batch each belongs to.
	EventFiles(ctx context.Context, hour time.Time) ([]destination.StoredFile, error)
	// Manifest reads the manifest of batch id; ok is false when the batch
	// is not committed.
	Manifest(ctx context.Context, id string) (m destination.Manifest, ok bool, err error)
	// ReadFileEvents reads the rows of one events file of a committed
	// batch, checked against f, its entry in the manifest.
	ReadFileEvents(ctx context.Context, f destination.File) ([]format.EventRow, error)
	// Write commits a batch (destination.Destination.Write): Backfill's.
	Write(ctx context.Context, b *destination.Batch) error
}

// Log is what the audit reads of the event log (eventlog.Log).
type Log interface {
	Partitions() int
	FirstOffset(p int) (uint64, error)
	LastOffset(p int) uint64
	Scan(p int, from, to uint64, fn func(off uint64, val []byte) error) error
	// OpenReader returns a reader of partition p's records by offset
	// (as transport.Log's).
	OpenReader(p int) (Reader, error)
}

// Reader reads one partition's records by offset: Get returns the record
// at an offset, valid until the next call, or an error wrapping
// eventlog.ErrNotInLog. An alias of eventlog.RecordReader's unnamed
// interface.
type Reader = interface {
	Get(off uint64) ([]byte, error)
	Close() error
}

// Target is one destination to audit.
type Target struct {
	Org, Name string
	Dest      Destination
	// SLA is the freshness SLA of the destination's events table
	// (flush.max_age + freshness_grace): an absent event accepted less than
	// SLA ago is pending, older ones are missing.
	SLA time.Duration
	// Frontier returns the smallest log offset of partition p that the
	// pipeline has not yet delivered to this destination
	// (the transport's frontier). Backfill leaves missing events at or
	// above it to the pipeline. Needed by Backfill only.
	Frontier func(p int) (uint64, error)
	// Missing, when set, is told by the background auditor the received_at
	// (Unix ns) of the oldest event its last run found missing, 0 when
	// none: the pipeline believes it delivered them, so only the audit can
	// tell its freshness they are not.
	Missing func(oldestReceivedAt int64)
}

// Options configure an Auditor.
type Options struct {
	Log          Log
	DedupeWindow time.Duration
	Now          func() time.Time
	// Deep reads the event ids of every hour, not only of hours whose
	// counts differ: it also finds a missing event hidden by a duplicate of
	// another in the same hour and partition.
	Deep bool
	// MaxListed bounds Result.Missing; 0 means DefaultMaxListed, -1 no bound.
	MaxListed int
}

// Auditor compares the log with destinations. It caches what cannot change
// (log counts of past hours, committed manifests), so that repeated runs
// over recent hours, as the background auditor makes, read little again.
// Its methods may be called concurrently; runs are serialised.
type Auditor struct {
	o         Options
	mu        sync.Mutex
	counts    map[cellKey]int64
	manifests map[Destination]map[string]*manifestInfo
	bad       map[[2]uint64]string // unreadable records met in the current run
}

type cellKey struct {
	org  string
	p    int
	hour int64
}

// manifestInfo is what the audit keeps of a committed manifest.
type manifestInfo struct {
	partition int
	org       string
	files     map[string]destination.File // by path
	used      bool                        // seen in the current run
}

// New returns an Auditor.
func New(o Options) *Auditor {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxListed == 0 {
		o.MaxListed = DefaultMaxListed
	}
	return &Auditor{o: o, counts: map[cellKey]int64{}, manifests: map[Destination]map[string]*manifestInfo{}}
}

// Hour is one row of the audit: the events accepted into the log in one UTC
// hour (by received_at) and what the destination holds of them.
type Hour struct {
	Hour time.Time `json:"hour"`
	// InLog is false for an hour the log no longer holds completely
	// (retention): its accepted, pending and missing are 0 and unknown.
	InLog      bool  `json:"in_log"`
	Accepted   int64 `json:"accepted"`
	Delivered  int64 `json:"delivered"`
	Pending    int64 `json:"pending"`
	Missing    int64 `json:"missing"`
	Duplicated int64 `json:"duplicated"`
}

// Event is an accepted event absent from the destination.
type Event struct {
	EventID    string    `json:"event_id"`
	DeviceID   string    `json:"device_id"`
	Partition  int       `json:"log_partition"`
	Offset     uint64    `json:"log_offset"`
	ReceivedAt time.Time `json:"received_at"`
}

// Result is the audit of one destination.
type Result struct {
	Org         string  `json:"org"`
	Destination string  `json:"destination"`
	SLASeconds  float64 `json:"freshness_sla_seconds"`
	Hours       []Hour  `json:"hours"`
	Total       Hour    `json:"total"` // Hour is the start of the range; InLog: every hour is
	// Missing lists the missing events (not the pending ones), by partition
	// and offset, at most Options.MaxListed of them.
	Missing          []Event `json:"missing_events"`
	MissingTruncated bool    `json:"missing_events_truncated"`
	// OldestMissing is the received_at of the oldest missing event.
	OldestMissing *time.Time `json:"oldest_missing,omitempty"`
	// NotOwned says why the destination's place is another destination's
	// (destination.ErrClaimed): nothing in it is counted as delivered.
	NotOwned string `json:"not_owned,omitempty"`

	pending []Event // for backfill: absent but not yet due
}

// Report is the result of one audit run.
type Report struct {
	Version     int       `json:"version"`
	From        time.Time `json:"from"`
	To          time.Time `json:"to"`
	GeneratedAt time.Time `json:"generated_at"`
	// LogStart is the time from which the log holds every partition's
	// events (zero when the log is empty).
	LogStart *time.Time `json:"log_start,omitempty"`
	Results  []Result   `json:"destinations"`
	// Unreadable are the log records the audit met that cannot be decoded
	// (a damaged data directory): their event, org and hour are unknown,
	// the pipeline skipped them, and no destination holds them. Any makes
	// the report unclean. At most Options.MaxListed are listed.
	Unreadable []Unreadable `json:"unreadable_records,omitempty"`
}

// Unreadable is a log record that cannot be decoded.
type Unreadable struct {
	Partition int    `json:"log_partition"`
	Offset    uint64 `json:"log_offset"`
	Error     string `json:"error"`
}

// Clean reports whether no destination misses or duplicates an event and
// every log record read was readable.
func (r *Report) Clean() bool {
	if len(r.Unreadable) > 0 {
		return false
	}
	for _, res := range r.Results {
		if res.Total.Missing > 0 || res.Total.Duplicated > 0 {
			return false
		}
	}
	return true
}

// Hours returns the UTC hours that the range [from, to) touches.
func Hours(from, to time.Time) []time.Time {
	var hs []time.Time
	for h := from.UTC().Truncate(time.Hour); h.Before(to); h = h.Add(time.Hour) {
		hs = append(hs, h)
	}
	return hs
}

// Run audits the targets over the hours touching [from, to).
func (a *Auditor) Run(ctx context.Context, from, to time.Time, targets []Target) (*Report, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.run(ctx, from, to, targets, a.o.MaxListed)
}

// run audits; a.mu is held.
func (a *Auditor) run(ctx context.Context, from, to time.Time, targets []Target, maxListed int) (*Report, error) {
	if !from.Before(to) {
		return nil, fmt.Errorf("empty range: --from %s is not before --to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	now := a.o.Now()
	rep := &Report{Version: ReportVersion, From: from.UTC(), To: to.UTC(), GeneratedAt: now.UTC()}
	a.bad = map[[2]uint64]string{}
	defer func() {
		for k, msg := range a.bad {
			if maxListed < 0 || len(rep.Unreadable) < maxListed {
				rep.Unreadable = append(rep.Unreadable, Unreadable{Partition: int(k[0]), Offset: k[1], Error: msg})
			}
		}
		slices.SortFunc(rep.Unreadable, func(x, y Unreadable) int {
			return cmp.Or(cmp.Compare(x.Partition, y.Partition), cmp.Compare(x.Offset, y.Offset))
		})
	}()
	start, complete, err := a.logStart()
	if err != nil {
		return nil, err
	}
	if !start.IsZero() {
		s := start.UTC()
		rep.LogStart = &s
	}
	hours := Hours(from, to)
	for _, t := range targets {
		res, err := a.audit(ctx, t, hours, start, complete, now, maxListed)
		if err != nil {
			return nil, fmt.Errorf("audit %s/%s: %w", t.Org, t.Name, err)
		}
		rep.Results = append(rep.Results, *res)
	}
	// Forget what the lookback no longer covers.
	oldest := hours[0].UnixNano()
	for k := range a.counts {
		if k.hour < oldest {
			delete(a.counts, k)
		}
	}
	return rep, nil
}

// logStart returns the time from which every partition's log is retained,
// and whether no partition has lost records to retention yet.
func (a *Auditor) logStart() (start time.Time, complete bool, err error) {
	lg := a.o.Log
	complete = true
	for p := range lg.Partitions() {
		first, err := lg.FirstOffset(p)
		if err != nil {
			return time.Time{}, false, err
		}
		if first == 0 {
			continue // empty
		}
		if first > 1 {
			complete = false
		}
		var h event.Head
		err = lg.Scan(p, first, 0, func(off uint64, val []byte) error {
			var err error
			if h, err = a.peek(p, off, val); err != nil {
				return nil // the first readable record tells the start
			}
			return errStop
		})
		if err != nil && err != errStop {
			return time.Time{}, false, fmt.Errorf("log partition %d offset %d: %w", p, first, err)
		}
		if t := time.Unix(0, h.Time); t.After(start) {
			start = t
		}
	}
	return start, complete, nil
}

// inLog reports whether the log holds all of hour h: always when retention
// has removed nothing yet, else for hours from the retained start on.
func inLog(h, start time.Time, complete bool) bool {
	return complete || start.IsZero() || !h.Before(start)
}

func (a *Auditor) audit(ctx context.Context, t Target, hours []time.Time, start time.Time, complete bool, now time.Time, maxListed int) (*Result, error) {
	res := &Result{Org: t.Org, Destination: t.Name, SLASeconds: t.SLA.Seconds(), Missing: []Event{}}
	res.Total.Hour, res.Total.InLog = hours[0], true
	cache := a.manifests[t.Dest]
	if cache == nil {
		cache = map[string]*manifestInfo{}
		a.manifests[t.Dest] = cache
	}
	for _, m := range cache {
		m.used = false
	}
	// A place that belongs to another destination (for blob, its marker)
	// holds nothing of this one's, whatever its manifests say.
	if err := t.Dest.Owned(ctx); errors.Is(err, destination.ErrClaimed) {
		res.NotOwned = err.Error()
	} else if err != nil {
		return nil, err
	}
	var absent []Event
	for _, h := range hours {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		row := Hour{Hour: h, InLog: inLog(h, start, complete)}
		files := map[int][]destination.File{}
		if res.NotOwned == "" {
			var err error
			if files, err = a.committedFiles(ctx, t.Dest, t.Org, cache, h); err != nil {
				return nil, err
			}
		}
		for p := range a.o.Log.Partitions() {
			c := cell{org: t.Org, p: p, hour: h, files: files[p]}
			for _, f := range c.files {
				c.delivered += f.Rows
			}
			row.Delivered += c.delivered
			if !row.InLog {
				continue
			}
			accepted, err := a.acceptedCount(c, now)
			if err != nil {
				return nil, err
			}
			row.Accepted += accepted
			if accepted == c.delivered && !a.o.Deep {
				continue
			}
			out, err := a.compare(ctx, t.Dest, c)
			if err != nil {
				return nil, err
			}
			row.Accepted += out.accepted - accepted
			row.Duplicated += out.duplicated
			absent = append(absent, out.absent...)
		}
		res.Hours = append(res.Hours, row)
	}
	for k, m := range cache {
		if !m.used {
			delete(cache, k)
		}
	}
	// An id retried across an hour boundary is accepted once, in its first
	// hour: drop the absent ones that an earlier occurrence accounts for.
	absent, retries, err := a.dropRetries(t.Org, absent)
	if err != nil {
		return nil, err
	}
	rowOf := func(e Event) *Hour {
		return &res.Hours[int(e.ReceivedAt.UTC().Truncate(time.Hour).Sub(hours[0])/time.Hour)]
	}
	for _, e := range retries {
		rowOf(e).Accepted--
	}
	for _, e := range absent {
		row := rowOf(e)
		if now.Sub(e.ReceivedAt) < t.SLA {
			row.Pending++
			res.pending = append(res.pending, e)
			continue
		}
		row.Missing++
		if maxListed < 0 || len(res.Missing) < maxListed {
			res.Missing = append(res.Missing, e)
		} else {
			res.MissingTruncated = true
		}
		if res.OldestMissing == nil || e.ReceivedAt.Before(*res.OldestMissing) {
			at := e.ReceivedAt.UTC()
			res.OldestMissing = &at
		}
	}
	slices.SortFunc(res.Missing, byOffset)
	for _, r := range res.Hours {
		res.Total.Accepted += r.Accepted
		res.Total.Delivered += r.Delivered
		res.Total.Pending += r.Pending
		res.Total.Missing += r.Missing
		res.Total.Duplicated += r.Duplicated
		res.Total.InLog = res.Total.InLog && r.InLog
	}
	return res, nil
}

func byOffset(a, b Event) int {
	if a.Partition != b.Partition {
		return a.Partition - b.Partition
	}
	return cmpU64(a.Offset, b.Offset)
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cell is one partition's part of one hour.
type cell struct {
	org       string
	p         int
	hour      time.Time
	files     []destination.File
	delivered int64
}

// committedFiles returns the committed events files of org in hour h by
// partition: files whose batch has a manifest of org that lists them with
// the size the destination reports. A file without a manifest is
// uncommitted; a file whose size differs is not what was committed; a
// manifest of another org is not this destination's (batch ids carry no
// org); none of them counts.
func (a *Auditor) committedFiles(ctx context.Context, d Destination, org string, cache map[string]*manifestInfo, h time.Time) (map[int][]destination.File, error) {
	objs, err := d.EventFiles(ctx, h)
	if err != nil {
		return nil, err
	}
	files := map[int][]destination.File{}
	for _, o := range objs {
		id := o.Batch
		m, fresh := cache[id], false
		f, ok := m.file(o)
		if !ok && m != nil {
			// A destination whose committed "files" are rows of a table
			// (PostgreSQL) reports a new size once rows are deleted by
			// hand, and its manifest then counts what is left: read it
			// again rather than count none of the file.
			m = nil
		}
		if m == nil {
			man, ok, err := d.Manifest(ctx, id)
			if err != nil {
				return nil, err
			}
			if !ok {
				delete(cache, id)
				continue // not committed (yet)
			}
			m, fresh = &manifestInfo{partition: man.Partition, org: man.Org, files: map[string]destination.File{}}, true
			for _, f := range man.Files {
				if f.Table == format.Events {
					m.files[f.Path] = f
				}
			}
			cache[id] = m
		}
		m.used = true
		if fresh {
			f, ok = m.file(o)
		}
		if ok && m.org == org {
			files[m.partition] = append(files[m.partition], f)
		}
	}
	return files, nil
}

// file returns the manifest's entry of the stored file o if the sizes
// agree (m may be nil: not known).
func (m *manifestInfo) file(o destination.StoredFile) (destination.File, bool) {
	if m == nil {
		return destination.File{}, false
	}
	f, ok := m.files[o.Path]
	return f, ok && f.Bytes == o.Size
}

// acceptedCount is the number of distinct events of the cell in the log.
// Counts of hours that can no longer change are cached.
func (a *Auditor) acceptedCount(c cell, now time.Time) (int64, error) {
	k := cellKey{c.org, c.p, c.hour.UnixNano()}
	if n, ok := a.counts[k]; ok {
		return n, nil
	}
	entries, err := a.logCell(c)
	if err != nil {
		return 0, err
	}
	n := int64(0)
	for _, e := range entries {
		n += int64(e.copies)
	}
	if now.Sub(c.hour) > time.Hour+2*disorder {
		a.counts[k] = n
	}
	return n, nil
}

// ident is what makes an event itself: the sessionizer's dedupe key within
// an org. The same messageId from two devices is two events; the
// destination's rows carry both parts (device_id, event_id), so the audit
// compares what it reads back from the destination's own files, whatever
// bookkeeping says.
type ident struct{ device, id string }

// logEntry is one distinct event of a cell in the log.
type logEntry struct {
	first  Event // its first occurrence
	copies int   // occurrences at least a dedupe window apart: each is delivered
	last   int64 // time of the last counted occurrence
}

// logCell reads the cell's events from the log: each (device, messageId)
// once, unless it recurs after the dedupe window.
func (a *Auditor) logCell(c cell) (map[ident]*logEntry, error) {
	lg := a.o.Log
	lo, hi := c.hour.UnixNano(), c.hour.Add(time.Hour).UnixNano()
	from, err := a.seek(c.p, lo-int64(disorder))
	if err != nil || from == 0 {
		return nil, err
	}
	entries := map[ident]*logEntry{}
	stop := errors.New("stop")
	window := int64(a.o.DedupeWindow)
	err = lg.Scan(c.p, from, 0, func(off uint64, val []byte) error {
		h, err := a.peek(c.p, off, val)
		if err != nil {
			return nil // listed in the report
		}
		if h.Time >= hi+int64(disorder) {
			return stop
		}
		if h.Kind != event.KindEvent || h.Org != c.org || h.Time < lo || h.Time >= hi {
			return nil
		}
		k := ident{h.Device, h.ID}
		e := entries[k]
		switch {
		case e == nil:
			entries[k] = &logEntry{first: Event{EventID: h.ID, DeviceID: h.Device, Partition: c.p, Offset: off,
				ReceivedAt: time.Unix(0, h.Time).UTC()}, copies: 1, last: h.Time}
		case h.Time-e.last >= window:
			e.copies++
			e.last = h.Time
		}
		return nil
	})
	if err != nil && err != stop {
		return nil, err
	}
	return entries, nil
}

// seek returns the first offset of partition p whose record time is at or
// after t, assuming times grow with offsets (up to disorder), or 0 when the
// partition has none.
func (a *Auditor) seek(p int, t int64) (uint64, error) {
	lg := a.o.Log
	first, err := lg.FirstOffset(p)
	if err != nil || first == 0 {
		return 0, err
	}
	r, err := lg.OpenReader(p)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	lo, hi := first, lg.LastOffset(p)+1
	for lo < hi {
		mid := lo + (hi-lo)/2
		val, err := r.Get(mid)
		if errors.Is(err, eventlog.ErrCorruptSegment) {
			val, err = nil, nil // unreadable: peek below lists it
		}
		if errors.Is(err, eventlog.ErrNotInLog) {
			// Removed by retention meanwhile: everything before is too.
			lo = mid + 1
			continue
		}
		if err != nil {
			return 0, err
		}
		h, err := a.peek(p, mid, val)
		if err != nil {
			// Unreadable: decide by the next readable record, as if
			// the unreadable one had its time.
			h, err = a.readableAfter(r, p, mid, hi)
			if err != nil {
				return 0, err
			}
		}
		if h.Time < t {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo > lg.LastOffset(p) {
		return 0, nil
	}
	return lo, nil
}

// errStop ends a scan early without an error.
var errStop = errors.New("stop")

// peek reads a record's head; an unreadable record is remembered for the
// report (Report.Unreadable) and its error returned.
func (a *Auditor) peek(p int, off uint64, val []byte) (event.Head, error) {
	// A record whose head reads but whose rest does not decode is not
	// listed: the sessionizer skipped it, so the audit finds its event
	// missing, by id.
	h, err := event.Peek(val)
	if err != nil {
		a.bad[[2]uint64{uint64(p), off}] = err.Error()
	}
	return h, err
}

// readableAfter returns the head of the first readable record of p in
// (off, hi), or a head with the largest time when there is none.
func (a *Auditor) readableAfter(r Reader, p int, off, hi uint64) (event.Head, error) {
	for k := off + 1; k < hi; k++ {
		val, err := r.Get(k)
		if errors.Is(err, eventlog.ErrNotInLog) {
			continue
		}
		if err != nil && !errors.Is(err, eventlog.ErrCorruptSegment) {
			return event.Head{}, err
		}
		if h, err := a.peek(p, k, val); err == nil {
			return h, nil
		}
	}
	return event.Head{Time: math.MaxInt64}, nil
}

// comparison is the id-level comparison of one cell.
type comparison struct {
	accepted   int64
	duplicated int64
	absent     []Event
}

// compare reads the cell's events, (device, messageId), from the log and
// from the destination's files and compares them.
func (a *Auditor) compare(ctx context.Context, d Destination, c cell) (*comparison, error) {
	entries, err := a.logCell(c)
	if err != nil {
		return nil, err
	}
	held := map[ident]int{}
	for _, f := range c.files {
		rows, err := d.ReadFileEvents(ctx, f)
		if err != nil {
			return nil, err
		}
		for i := range rows {
			held[ident{rows[i].DeviceID, rows[i].EventID}]++
		}
	}
	out := &comparison{}
	for k, e := range entries {
		out.accepted += int64(e.copies)
		n := held[k]
		delete(held, k)
		switch {
		case n < e.copies:
			out.absent = append(out.absent, e.first)
		case n > e.copies:
			out.duplicated += int64(n - e.copies)
		}
	}
	for _, n := range held {
		out.duplicated += int64(n) // rows the log does not have in this hour
	}
	return out, nil
}

// dropRetries separates from the absent events the retries: those whose
// (device, messageId) occurred in their partition's log earlier, within the
// dedupe window but before their hour. That earlier occurrence is the one delivered (or found
// missing in its own hour).
func (a *Auditor) dropRetries(org string, absent []Event) (kept, retries []Event, err error) {
	byPart := map[int][]Event{}
	for _, e := range absent {
		byPart[e.Partition] = append(byPart[e.Partition], e)
	}
	window := a.o.DedupeWindow
	drop := map[Event]bool{}
	for p, es := range byPart {
		want := map[ident][]Event{}
		earliest := es[0].ReceivedAt
		for _, e := range es {
			k := ident{e.DeviceID, e.EventID}
			want[k] = append(want[k], e)
			if e.ReceivedAt.Before(earliest) {
				earliest = e.ReceivedAt
			}
		}
		from, err := a.seek(p, earliest.Add(-window-disorder).UnixNano())
		if err != nil {
			return nil, nil, err
		}
		if from == 0 {
			continue
		}
		last := slices.MaxFunc(es, byOffset).Offset
		err = a.o.Log.Scan(p, from, last, func(off uint64, val []byte) error {
			h, err := a.peek(p, off, val)
			if err != nil {
				return nil // listed in the report
			}
			if h.Kind != event.KindEvent || h.Org != org {
				return nil
			}
			for _, e := range want[ident{h.Device, h.ID}] {
				t := time.Unix(0, h.Time)
				if off < e.Offset && t.Before(e.ReceivedAt.Truncate(time.Hour)) && e.ReceivedAt.Sub(t) < window {
					drop[e] = true
				}
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
	}
	for _, e := range absent {
		if drop[e] {
			retries = append(retries, e)
		} else {
			kept = append(kept, e)
		}
	}
	return kept, retries, nil
}
