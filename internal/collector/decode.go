package collector

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/tidemark/tidemark/internal/event"
)

// Rejection reports one event of a request that was not accepted.
type Rejection struct {
	Index     int    `json:"index"`               // position in the batch (0 for single calls)
	MessageID string `json:"messageId,omitempty"` // the client's messageId, if it sent one
	Error     string `json:"error"`               // "batch[3]: missing anonymousId or userId"
}

// RequestError is a problem with the whole request body other than its JSON
// syntax (no batch, batch-level context not an object, ...). Nothing in such
// a request is accepted.
type RequestError struct{ Msg string }

func (e *RequestError) Error() string { return e.Msg }

// rawEvent is one event as found by the scan: positions in the body, not yet
// copied or checked beyond JSON syntax and field types.
type rawEvent struct {
	size int    // bytes of the event's JSON
	err  string // first problem found while scanning, without the "batch[i]: " prefix

	typ, messageID, anonymousID, userID, event, name, groupID, previousID str
	timestamp, sentAt, originalTimestamp                                  str

	props, traits, ctx span
	prop               [4]str // properties.{url,path,referrer,title}
	cpage              [4]str // context.page.{url,path,referrer,title}
	ua                 str    // context.userAgent
	ctxHasPage         bool
	ctxHasUA           bool
}

func (re *rawEvent) problem(format string, args ...any) {
	if re.err == "" {
		re.err = fmt.Sprintf(format, args...)
	}
}

// decoder turns one request body into events in two steps: parse scans the
// JSON once and records positions; finalize (after the write key has been
// resolved to an org) checks each event and builds the event.Event values.
// A decoder is reused through a pool: evs and rejected are valid until the
// next parse. The events' strings and byte slices never alias the body.
type decoder struct {
	p        parser
	single   string // the call type of a single-call endpoint; "" for a batch
	raws     []rawEvent
	reqErr   string
	writeKey str
	sentAt   event.ClientTime // batch-level sentAt
	ctx      span             // batch-level context
	bctx     rawEvent
	bkeys    []ctxKey // batch-level context members, for merging

	// charge, when set, is called with chargeEvery*EventCost every
	// chargeEvery events scanned; an error stops the scan and is kept in over.
	charge func(int64) error
	over   error

	evs      []event.Event
	rejected []Rejection
	scratch  []byte
	tmp      []byte
	ekeys    []string
}

// ctxKey is one member of the batch-level context.
type ctxKey struct {
	name   string
	rawKey span // the quoted name as written
	val    span
}

// stamp is what finalize adds to every event.
type stamp struct {
	org      string
	now      int64 // received_at, Unix ns
	maxEvent int
	newID    func() string
}

// parse scans body. single is the call type implied by the path, or "" for a
// batch. A returned error (*SyntaxError or *RequestError) concerns the whole
// request.
func (d *decoder) parse(body []byte, single string) error {
	d.p.reset(body)
	d.single = single
	d.raws = d.raws[:0]
	d.reqErr, d.over = "", nil
	d.writeKey, d.sentAt, d.ctx = str{}, event.ClientTime{}, span{}
	d.bctx = rawEvent{}
	p := &d.p
	if p.ws(); p.i >= len(p.b) {
		return &RequestError{"empty body"}
	}
	if p.b[p.i] != '{' {
		p.value()
		if p.ws(); p.err == nil && p.i < len(p.b) {
			p.failChar("after top-level value")
		}
		if p.err != nil {
			return p.err
		}
		return &RequestError{"body must be a JSON object"}
	}
	if single != "" {
		d.raws = append(d.raws, rawEvent{})
		re := &d.raws[0]
		start := p.i
		d.event(re, true)
		re.size = p.i - start
	} else {
		d.batchBody()
	}
	if p.ws(); p.err == nil && p.i < len(p.b) {
		p.failChar("after top-level value")
	}
	if p.err != nil {
		return p.err
	}
	if d.reqErr != "" {
		return &RequestError{d.reqErr}
	}
	return nil
}

func (d *decoder) problem(re *rawEvent, format string, args ...any) {
	if re != nil {
		re.problem(format, args...)
	} else if d.reqErr == "" {
		d.reqErr = fmt.Sprintf(format, args...)
	}
}

// batchBody scans {"batch":[...], "context":{...}, "sentAt":"...", "writeKey":"..."}.
func (d *decoder) batchBody() {
	p := &d.p
	sawBatch := false
	var sentAt str
	for ok := p.objectBegin(); ok; ok = p.objectNext() {
		switch string(p.key()) {
		case "batch":
			switch p.peek() {
			case '[':
				sawBatch = true
				d.raws = d.raws[:0]
				d.batch()
				continue
			case 'n':
				p.literal("null")
				continue
			}
			p.value()
			if p.err == nil {
				d.problem(nil, "batch must be an array")
			}
		case "context":
			p.badUTF8 = false
			switch p.peek() {
			case '{':
				start := p.i
				d.bctx = rawEvent{}
				d.contextObject(&d.bctx)
				d.ctx = span{start, p.i}
				if p.badUTF8 {
					d.problem(nil, "invalid UTF-8 in context")
				}
				continue
			case 'n':
				p.literal("null")
				d.ctx, d.bctx = span{}, rawEvent{}
				continue
			}
			p.value()
			if p.err == nil {
				d.problem(nil, "context must be a JSON object")
			}
		case "sentAt":
			p.badUTF8 = false
			sentAt = d.strValue(nil, "sentAt", false)
			if p.badUTF8 {
				d.problem(nil, "invalid UTF-8 in sentAt")
			}
		case "writeKey":
			d.writeKey = d.strValue(nil, "writeKey", false)
		default:
			p.value()
		}
	}
	if p.err != nil {
		return
	}
	switch {
	case !sawBatch:
		d.problem(nil, "missing batch")
	case len(d.raws) == 0:
		d.problem(nil, "empty batch")
	}
	if sentAt.set && d.reqErr == "" {
		t, msg := parseTime(d.bytes(sentAt))
		if msg != "" {
			d.problem(nil, "sentAt: %s", msg)
		}
		d.sentAt = event.At(t)
	}
}

func (d *decoder) batch() {
	p := &d.p
	for ok := p.arrayBegin(); ok; ok = p.arrayNext() {
		if len(d.raws)%chargeEvery == chargeEvery-1 && d.charge != nil {
			if d.over = d.charge(chargeEvery * EventCost); d.over != nil {
				p.i = len(p.b) // stop here: the request is refused
				return
			}
		}
		d.raws = append(d.raws, rawEvent{})
		re := &d.raws[len(d.raws)-1]
		c := p.peek()
		start := p.i
		if c == '{' {
			d.event(re, false)
		} else {
			p.value()
			re.problem("not a JSON object")
		}
		re.size = p.i - start
	}
}

// event scans one event object. top is true for a single call, whose object
// may carry the writeKey.
func (d *decoder) event(re *rawEvent, top bool) {
	p := &d.p
	for ok := p.objectBegin(); ok; ok = p.objectNext() {
		p.badUTF8 = false
		k := p.key()
		name := p.lastKey
		if p.badUTF8 {
			re.problem("invalid UTF-8 in a field name")
		}
		switch string(k) {
		case "type":
			re.typ = d.strValue(re, "type", false)
		case "messageId":
			re.messageID = d.strValue(re, "messageId", true)
		case "anonymousId":
			re.anonymousID = d.strValue(re, "anonymousId", true)
		case "userId":
			re.userID = d.strValue(re, "userId", true)
		case "event":
			re.event = d.strValue(re, "event", false)
		case "name":
			re.name = d.strValue(re, "name", false)
		case "groupId":
			re.groupID = d.strValue(re, "groupId", true)
		case "previousId":
			re.previousID = d.strValue(re, "previousId", true)
		case "timestamp":
			re.timestamp = d.strValue(re, "timestamp", false)
		case "sentAt":
			re.sentAt = d.strValue(re, "sentAt", false)
		case "originalTimestamp":
			re.originalTimestamp = d.strValue(re, "originalTimestamp", false)
		case "properties":
			re.props = d.objectField(re, "properties")
		case "traits":
			re.traits = d.objectField(re, "traits")
		case "context":
			re.ctx = d.objectField(re, "context")
		case "writeKey":
			if top {
				d.writeKey = d.strValue(nil, "writeKey", false)
			} else {
				p.value()
			}
		default:
			p.value()
		}
		if p.badUTF8 && p.err == nil {
			re.problem("invalid UTF-8 in %s", quoteTrunc(d.bytes(name), maxEcho))
		}
	}
}

// strValue scans a value that must be a string or null (or, with number, a
// number). A type mismatch is a problem of re, or of the request if re is nil.
func (d *decoder) strValue(re *rawEvent, name string, number bool) str {
	p := &d.p
	switch c := p.peek(); {
	case c == '"':
		return p.str()
	case c == 'n':
		p.literal("null")
		return str{}
	case number && (c == '-' || isDigit(c)):
		return p.number()
	}
	p.value()
	if p.err == nil {
		if number {
			d.problem(re, "%s must be a string or number", name)
		} else {
			d.problem(re, "%s must be a string", name)
		}
	}
	return str{}
}

// objectField scans a value that must be a JSON object or null.
func (d *decoder) objectField(re *rawEvent, name string) span {
	p := &d.p
	// A repeated member replaces the earlier one, picks included.
	switch name {
	case "properties":
		re.prop = [4]str{}
	case "context":
		re.cpage, re.ua, re.ctxHasPage, re.ctxHasUA = [4]str{}, str{}, false, false
	}
	switch p.peek() {
	case '{':
		start := p.i
		switch name {
		case "properties":
			p.pageObject(&re.prop)
		case "context":
			d.contextObject(re)
		default:
			p.value()
		}
		return span{start, p.i}
	case 'n':
		p.literal("null")
		return span{}
	}
	p.value()
	if p.err == nil {
		re.problem("%s must be a JSON object", name)
	}
	return span{}
}

// contextObject scans a context object, picking context.userAgent and
// context.page.{url,path,referrer,title}.
func (d *decoder) contextObject(re *rawEvent) {
	p := &d.p
	for ok := p.objectBegin(); ok; ok = p.objectNext() {
		switch string(p.key()) {
		case "userAgent":
			re.ctxHasUA = true
			if p.peek() == '"' {
				re.ua = p.str()
				continue
			}
		case "page":
			re.ctxHasPage = true
			if p.peek() == '{' {
				p.pageObject(&re.cpage)
				continue
			}
		}
		p.value()
	}
}

// bytes returns the content of s with escapes resolved. The result is valid
// until the next call.
func (d *decoder) bytes(s str) []byte {
	b := d.p.b[s.start:s.end]
	if !s.esc {
		return b
	}
	d.tmp = appendUnescaped(d.tmp[:0], b)
	return d.tmp
}

// appendStr appends the content of s to d.scratch.
func (d *decoder) appendStr(s str) {
	if !s.set {
		return
	}
	b := d.p.b[s.start:s.end]
	if s.esc {
		d.scratch = appendUnescaped(d.scratch, b)
	} else {
		d.scratch = append(d.scratch, b...)
	}
}

// finalize checks every scanned event and builds d.evs (accepted) and
// d.rejected.
func (d *decoder) finalize(st stamp) {
	d.evs = d.evs[:0]
	d.rejected = d.rejected[:0]
	d.batchContextKeys()
	for i := range d.raws {
		re := &d.raws[i]
		d.evs = append(d.evs, event.Event{})
		e := &d.evs[len(d.evs)-1]
		msg := d.build(re, e, st)
		if msg == "" {
			continue
		}
		d.evs = d.evs[:len(d.evs)-1]
		if d.single == "" {
			msg = "batch[" + strconv.Itoa(i) + "]: " + msg
		}
		r := Rejection{Index: i, Error: msg}
		if re.messageID.set {
			if id := d.bytes(re.messageID); utf8.Valid(id) {
				r.MessageID = clip(id)
			}
		}
		d.rejected = append(d.rejected, r)
	}
}

// build checks re and fills e; it returns the problem, or "".
func (d *decoder) build(re *rawEvent, e *event.Event, st stamp) string {
	if re.err != "" {
		return re.err
	}
	if re.size > st.maxEvent {
		return fmt.Sprintf("event is %d bytes, over the limit of %d", re.size, st.maxEvent)
	}
	typ := d.single
	if typ == "" {
		if !re.typ.set {
			return "missing type"
		}
		tb := d.bytes(re.typ)
		if typ = canonicalType(tb); typ == "" {
			return "invalid type " + quoteTrunc(tb, maxEcho) + " (want track, page, screen, identify, group or alias)"
		}
	}
	if re.anonymousID.end == re.anonymousID.start && re.userID.end == re.userID.start {
		return "missing anonymousId or userId"
	}
	switch typ {
	case "track":
		if re.event.end == re.event.start {
			return "missing event (required for track)"
		}
	case "group":
		if re.groupID.end == re.groupID.start {
			return "missing groupId (required for group)"
		}
	case "alias":
		if re.previousID.end == re.previousID.start {
			return "missing previousId (required for alias)"
		}
	}
	var ts, orig event.ClientTime
	sent := d.sentAt
	for _, f := range [...]struct {
		name string
		raw  str
		dst  *event.ClientTime
	}{{"timestamp", re.timestamp, &ts}, {"sentAt", re.sentAt, &sent}, {"originalTimestamp", re.originalTimestamp, &orig}} {
		if !f.raw.set {
			continue
		}
		ns, msg := parseTime(d.bytes(f.raw))
		if msg != "" {
			return f.name + ": " + msg
		}
		*f.dst = event.At(ns)
	}

	e.Type = typ
	e.Org = st.org
	e.ReceivedAt = st.now
	e.Timestamp = ts
	e.SentAt = sent
	e.OriginalTimestamp = orig
	e.EventTime = eventTime(ts, orig, sent, st.now)

	// All strings of the event share one allocation.
	name := re.name
	if typ == "track" {
		name = re.event
	} else if typ != "page" && typ != "screen" {
		name = str{}
	}
	cpage, ua := &re.cpage, re.ua
	if !re.ctxHasPage {
		cpage = &d.bctx.cpage
	}
	if !re.ctxHasUA {
		ua = d.bctx.ua
	}
	var page [4]str
	for j := range page {
		page[j] = cpage[j]
		if typ == "page" && re.prop[j].set {
			page[j] = re.prop[j]
		}
	}
	srcs := [...]str{re.messageID, re.anonymousID, re.userID, name, re.groupID, re.previousID,
		page[0], page[1], page[2], page[3], ua}
	var ends [len(srcs)]int
	d.scratch = d.scratch[:0]
	for j, s := range srcs {
		d.appendStr(s)
		ends[j] = len(d.scratch)
	}
	all := string(d.scratch)
	field := func(j int) string {
		if j == 0 {
			return all[:ends[0]]
		}
		return all[ends[j-1]:ends[j]]
	}
	e.ID = field(0)
	e.AnonymousID = field(1)
	e.UserID = field(2)
	e.Name = field(3)
	e.GroupID = field(4)
	e.PreviousID = field(5)
	e.URL, e.Path, e.Referrer, e.Title = field(6), field(7), field(8), field(9)
	e.UserAgent = field(10)
	e.Device = e.AnonymousID
	if e.Device == "" {
		e.Device = e.UserID
	}
	if e.ID == "" {
		e.ID = st.newID()
	}

	// So do its raw JSON objects.
	b := d.p.b
	n := re.props.end - re.props.start + re.traits.end - re.traits.start
	d.scratch = d.appendContext(d.scratch[:0], re)
	if n+len(d.scratch) > 0 {
		raw := make([]byte, 0, n+len(d.scratch))
		raw = append(raw, b[re.props.start:re.props.end]...)
		raw = append(raw, b[re.traits.start:re.traits.end]...)
		raw = append(raw, d.scratch...)
		p, t := re.props.end-re.props.start, re.traits.end-re.traits.start
		if p > 0 {
			e.Properties = raw[:p:p]
		}
		if t > 0 {
			e.Traits = raw[p : p+t : p+t]
		}
		if len(raw) > p+t {
			e.Context = raw[p+t:]
		}
	}
	return ""
}

// eventTime is when the event happened, by the Segment spec: the client's
// time corrected for the skew of the client's clock,
//
//	receivedAt - (sentAt - client time) = client time + (receivedAt - sentAt)
//
// The client time is timestamp (analytics.js and Segment's server SDKs send
// the call's time there; Segment calls it originalTimestamp once received),
// else originalTimestamp (RudderStack's SDKs send the call's time there and
// leave timestamp to the user). Without sentAt it is the client time
// uncorrected; without a client time, receivedAt. A correction that would
// overflow is not applied.
func eventTime(ts, orig, sent event.ClientTime, now int64) int64 {
	c := ts
	if !c.Set {
		c = orig
	}
	switch {
	case !c.Set:
		return now
	case !sent.Set:
		return c.NS
	}
	skew, ok := sub(now, sent.NS)
	if !ok {
		return c.NS
	}
	et := c.NS + skew
	if (skew > 0 && et < c.NS) || (skew < 0 && et > c.NS) {
		return c.NS
	}
	return et
}

func sub(a, b int64) (int64, bool) {
	c := a - b
	if (b > 0 && c > a) || (b < 0 && c < a) {
		return 0, false
	}
	return c, true
}

func canonicalType(b []byte) string {
	switch string(b) {
	case "track":
		return "track"
	case "page":
		return "page"
	case "screen":
		return "screen"
	case "identify":
		return "identify"
	case "group":
		return "group"
	case "alias":
		return "alias"
	}
	return ""
}

// batchContextKeys lists the members of the batch-level context, once per
// request, when events will need it merged into their own context.
func (d *decoder) batchContextKeys() {
	d.bkeys = d.bkeys[:0]
	if d.ctx.end == 0 {
		return
	}
	q := parser{b: d.p.b, i: d.ctx.start}
	for ok := q.objectBegin(); ok; ok = q.objectNext() {
		k := q.key()
		raw := span{q.lastKey.start - 1, q.lastKey.end + 1}
		name := string(k)
		q.peek()
		start := q.i
		q.value()
		d.bkeys = append(d.bkeys, ctxKey{name: name, rawKey: raw, val: span{start, q.i}})
	}
}

// appendContext appends the event's context to dst with the batch-level
// context merged in: a member of the batch context is added when the event's
// own context has no member of that name (top level only; no deep merge).
func (d *decoder) appendContext(dst []byte, re *rawEvent) []byte {
	b := d.p.b
	if len(d.bkeys) == 0 {
		return append(dst, b[re.ctx.start:re.ctx.end]...)
	}
	if re.ctx.end == 0 {
		return append(dst, b[d.ctx.start:d.ctx.end]...)
	}
	d.ekeys = d.ekeys[:0]
	q := parser{b: b, i: re.ctx.start}
	for ok := q.objectBegin(); ok; ok = q.objectNext() {
		d.ekeys = append(d.ekeys, string(q.key()))
		q.value()
	}
	n := len(d.ekeys)
	dst = append(dst, b[re.ctx.start:re.ctx.end-1]...) // without the closing brace
	for _, k := range d.bkeys {
		if slices.Contains(d.ekeys, k.name) {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = append(dst, b[k.rawKey.start:k.rawKey.end]...)
		dst = append(dst, ':')
		dst = append(dst, b[k.val.start:k.val.end]...)
	}
	return append(dst, '}')
}

// maxEcho bounds how much of a client's value an error message or a
// rejection repeats: a 40 KB messageId must not come back whole in the 400.
const maxEcho = 64

// quoteTrunc quotes b, cut to its first n bytes (at a UTF-8 boundary) when
// longer, followed then by "…(L bytes)" with b's full length L.
func quoteTrunc(b []byte, n int) string {
	return strconv.Quote(string(prefix(b, n))) + more(b, n)
}

// clip is a client's string as a rejection repeats it: whole up to maxEcho
// bytes, else its first maxEcho bytes and "…(L bytes)".
func clip(b []byte) string { return string(prefix(b, maxEcho)) + more(b, maxEcho) }

func prefix(b []byte, n int) []byte {
	if len(b) <= n {
		return b
	}
	b = b[:n]
	for len(b) > 0 && !utf8.Valid(b) {
		b = b[:len(b)-1]
	}
	return b
}

func more(b []byte, n int) string {
	if len(b) <= n {
		return ""
	}
	return "…(" + strconv.Itoa(len(b)) + " bytes)"
}

// Unix-second bounds of an int64 count of nanoseconds: the times an event can
// carry are minTime to maxTime (the last second included, to the nanosecond).
const (
	minSec = math.MinInt64/1_000_000_000 + 1
	maxSec = math.MaxInt64/1_000_000_000 - 1
)

// timeRange is the accepted range as the 400 for a time outside it states it.
var timeRange = time.Unix(minSec, 0).UTC().Format(time.RFC3339Nano) + " to " + time.Unix(maxSec, 999_999_999).UTC().Format(time.RFC3339Nano)

// parseTime parses an ISO-8601 date-time as clients send it: YYYY-MM-DD,
// optionally followed by 'T' (or a space) and hh:mm[:ss[.fraction]], followed
// by 'Z', ±hh:mm, ±hhmm, ±hh or nothing (UTC). RFC 3339 is a subset. It
// returns Unix nanoseconds or a problem.
func parseTime(b []byte) (int64, string) {
	bad := func() (int64, string) { return 0, "cannot parse " + quoteTrunc(b, maxEcho) + " as an ISO-8601 time" }
	s := b
	if len(s) < 10 || s[4] != '-' || s[7] != '-' {
		return bad()
	}
	year, ok1 := atoi(s[0:4])
	month, ok2 := atoi(s[5:7])
	day, ok3 := atoi(s[8:10])
	if !ok1 || !ok2 || !ok3 {
		return bad()
	}
	s = s[10:]
	var hh, mm, ss, ns, off int
	if len(s) > 0 {
		if s[0] != 'T' && s[0] != 't' && s[0] != ' ' {
			return bad()
		}
		s = s[1:]
		if len(s) < 5 || s[2] != ':' {
			return bad()
		}
		var ok4, ok5 bool
		hh, ok4 = atoi(s[0:2])
		mm, ok5 = atoi(s[3:5])
		if !ok4 || !ok5 {
			return bad()
		}
		s = s[5:]
		if len(s) > 0 && s[0] == ':' {
			var ok bool
			if len(s) < 3 {
				return bad()
			}
			if ss, ok = atoi(s[1:3]); !ok {
				return bad()
			}
			s = s[3:]
			if len(s) > 0 && (s[0] == '.' || s[0] == ',') {
				s = s[1:]
				n, scale := 0, 100000000
				for n < len(s) && isDigit(s[n]) {
					ns += int(s[n]-'0') * scale
					scale /= 10
					n++
				}
				if n == 0 {
					return bad()
				}
				s = s[n:]
			}
		}
		switch {
		case len(s) == 0:
		case len(s) == 1 && (s[0] == 'Z' || s[0] == 'z'):
		case s[0] == '+' || s[0] == '-':
			z := s[1:]
			var oh, om int
			var ok, okm = false, true
			switch {
			case len(z) == 5 && z[2] == ':':
				oh, ok = atoi(z[0:2])
				om, okm = atoi(z[3:5])
			case len(z) == 4:
				oh, ok = atoi(z[0:2])
				om, okm = atoi(z[2:4])
			case len(z) == 2:
				oh, ok = atoi(z)
			}
			if !ok || !okm || oh > 23 || om > 59 {
				return bad()
			}
			off = oh*3600 + om*60
			if s[0] == '-' {
				off = -off
			}
		default:
			return bad()
		}
	}
	if month < 1 || month > 12 || day < 1 || hh > 23 || mm > 59 || ss > 59 {
		return bad()
	}
	t := time.Date(year, time.Month(month), day, hh, mm, ss, 0, time.UTC)
	if t.Day() != day {
		return bad() // February 30th and the like
	}
	sec := t.Unix() - int64(off)
	if sec < minSec || sec > maxSec {
		return 0, quoteTrunc(b, maxEcho) + " is out of range (accepted: " + timeRange + ")"
	}
	return sec*1e9 + int64(ns), ""
}

// atoi parses a fixed-width run of decimal digits.
func atoi(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
