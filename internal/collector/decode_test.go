package collector

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tidemark/tidemark/internal/event"
)

func TestParseTime(t *testing.T) {
	tests := []struct {
		in   string
		want string // RFC 3339 in UTC, or "" for an error
	}{
		{"2026-03-01T12:00:00Z", "2026-03-01T12:00:00Z"},
		{"2026-03-01T12:00:00.123Z", "2026-03-01T12:00:00.123Z"},
		{"2026-03-01T12:00:00.123456789123Z", "2026-03-01T12:00:00.123456789Z"},
		{"2026-03-01t12:00:00z", "2026-03-01T12:00:00Z"},
		{"2026-03-01 12:00:00Z", "2026-03-01T12:00:00Z"},
		{"2026-03-01T12:00:00+02:00", "2026-03-01T10:00:00Z"},
		{"2026-03-01T12:00:00-0230", "2026-03-01T14:30:00Z"},
		{"2026-03-01T12:00:00+01", "2026-03-01T11:00:00Z"},
		{"2026-03-01T12:00:00,5Z", "2026-03-01T12:00:00.5Z"},
		{"2026-03-01T12:00", "2026-03-01T12:00:00Z"},
		{"2026-03-01T12:00:00", "2026-03-01T12:00:00Z"},
		{"2026-03-01", "2026-03-01T00:00:00Z"},
		{"2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z"},
		{"1970-01-01T00:00:00Z", "1970-01-01T00:00:00Z"},
		{"1900-01-01T00:00:00Z", "1900-01-01T00:00:00Z"},
		{"2025-02-29T00:00:00Z", ""},
		{"2026-13-01T00:00:00Z", ""},
		{"2026-00-01T00:00:00Z", ""},
		{"2026-03-01T24:00:00Z", ""},
		{"2026-03-01T12:60:00Z", ""},
		{"2026-03-01T12:00:60Z", ""},
		{"2026-03-01T12:00:00.Z", ""},
		{"2026-03-01T12:00:00+2:00", ""},
		{"2026-03-01T12:00:00+24:00", ""},
		{"2026-03-01T12:00:00 Z", ""},
		{"2026-03-01T12", ""},
		{"2026-3-01", ""},
		{"+2026-03-01", ""},
		{"1700000000", ""},
		{"", ""},
		{"1600-01-01T00:00:00Z", ""},
		{"2300-01-01T00:00:00Z", ""},
		// The edges of the accepted range (an int64 of nanoseconds).
		{"1677-09-21T00:12:45Z", "1677-09-21T00:12:45Z"},
		{"1677-09-21T00:12:44.999Z", ""},
		{"2262-04-11T23:47:15.999999999Z", "2262-04-11T23:47:15.999999999Z"},
		{"2262-04-11T23:47:16Z", ""},
	}
	for _, tt := range tests {
		got, msg := parseTime([]byte(tt.in))
		if tt.want == "" {
			if msg == "" {
				t.Errorf("parseTime(%q) = %v, want an error", tt.in, time.Unix(0, got).UTC())
			}
			continue
		}
		want, err := time.Parse(time.RFC3339Nano, tt.want)
		if err != nil {
			t.Fatal(err)
		}
		if msg != "" || got != want.UnixNano() {
			t.Errorf("parseTime(%q) = %v %q, want %v", tt.in, time.Unix(0, got).UTC(), msg, want)
		}
	}
}

func TestEventTime(t *testing.T) {
	const s = int64(time.Second)
	at, none := event.At, event.ClientTime{}
	tests := []struct {
		ts, orig, sent event.ClientTime
		now, want      int64
	}{
		{none, none, none, 100 * s, 100 * s},
		{none, none, at(50 * s), 100 * s, 100 * s},
		{at(40 * s), none, none, 100 * s, 40 * s},
		{at(40 * s), none, at(50 * s), 100 * s, 90 * s},   // client clock 50 s slow
		{at(140 * s), none, at(150 * s), 100 * s, 90 * s}, // client clock 50 s fast
		{none, at(40 * s), at(50 * s), 100 * s, 90 * s},   // originalTimestamp when timestamp is absent
		{none, at(40 * s), none, 100 * s, 40 * s},
		{at(10 * s), at(40 * s), at(50 * s), 100 * s, 60 * s}, // timestamp wins
		{at(0), none, none, 100 * s, 0},                       // the epoch is a time
		{at(0), none, at(0), 100 * s, 100 * s},
		// Overflow falls back to the client time.
		{at(1 << 62), none, at(-(1 << 62)), 1 << 62, 1 << 62},
		{at(-(1 << 62)), none, at(1 << 62), -(1 << 62), -(1 << 62)},
	}
	for _, tt := range tests {
		if got := eventTime(tt.ts, tt.orig, tt.sent, tt.now); got != tt.want {
			t.Errorf("eventTime(%+v, %+v, %+v, %d) = %d, want %d", tt.ts, tt.orig, tt.sent, tt.now, got, tt.want)
		}
	}
}

// TestScanAgainstEncodingJSON checks that the scanner accepts exactly the
// bodies encoding/json accepts and unescapes strings the same way.
func TestScanAgainstEncodingJSON(t *testing.T) {
	for _, in := range scanCorpus {
		var p parser
		p.reset([]byte(in))
		p.value()
		if p.ws(); p.err == nil && p.i < len(p.b) {
			p.failChar("after top-level value")
		}
		if valid := json.Valid([]byte(in)); valid != (p.err == nil) {
			t.Errorf("%q: json.Valid %v, scanner error %v", in, valid, p.err)
		}
		if p.err != nil || len(in) == 0 || in[0] != '"' {
			continue
		}
		var want string
		if err := json.Unmarshal([]byte(in), &want); err != nil {
			t.Fatal(err)
		}
		got := string(appendUnescaped(nil, []byte(in[1:len(in)-1])))
		if got != want && utf8.ValidString(in) {
			t.Errorf("unescape %q = %q, want %q", in, got, want)
		}
	}
}

var scanCorpus = []string{
	``, ` `, `{}`, `[]`, `{"a":1}`, `{"a":1,}`, `[1,]`, `[1 2]`, `{"a" 1}`, `{1:2}`, `{"a":}`,
	`"abc"`, `"a\"b\\c\/d\b\f\n\r\t"`, `"\u00e9\ud83d\ude00"`, `"\ud800"`, `"\ud800\u0041"`, `"\udc00\ud800"`,
	`"\ud83d\ud83d\ude00"`, `"\u12"`, `"\u12G4"`, `"\x"`, "\"a\tb\"", "\"\x7f\"", "\"\xff\"", `"abc`, `"\`,
	`0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e`, `1e+`, `1E-5`, `-1.5e10`, `1.5e1.0`, `+1`, `0x10`,
	`true`, `tru`, `truex`, `false`, `null`, `nul`, `NULL`,
	`{"a":[1,{"b":null}],"c":"d"}`, ` {"a" : [ 1 , 2 ] } `, `{"a":1}}`, `[[[]]]`, `[[[]]`, `{"a":{"b":{}}`,
	"\x00", "{\"a\":1}\x00", "\ufeff{}",
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
}

// FuzzDecode feeds arbitrary bodies to the decoder. It must never panic; a
// body is rejected as a whole exactly when it is not JSON (as encoding/json
// judges it) or breaks a batch-level rule; otherwise every element of the
// batch is either accepted or rejected, and accepted events are well formed
// and agree with encoding/json on the fields they copy.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"batch":[` + track + `,` + bad + `]}`,
		`{"batch":[{"type":"page","anonymousId":1,"properties":{"url":"u","title":"\u00e9"},"context":{"page":{"path":"/p"}}}],"context":{"ip":"1"},"sentAt":"2026-03-01T12:00:00Z"}`,
		`{"batch":[{"type":"identify","userId":"u","traits":{"a":[1,2,{"b":null}]},"timestamp":"2026-03-01T12:00:00.5+01:00","sentAt":"2026-03-01T12:00:01Z"}]}`,
		`{"batch":[{"type":"alias","userId":"u","previousId":"p"},{"type":"group","anonymousId":"a","groupId":"g"},"x",null,[]]}`,
		"{\"batch\":[{\"type\":\"track\",\"event\":\"\xff\",\"anonymousId\":\"a\"}]}",
		`{"event":"E","anonymousId":"a","writeKey":"k","context":{"userAgent":"\ud83d\ude00"}}`,
		`{"batch":[{"type":"track","event":"E","userId":"u","originalTimestamp":"1970-01-01T00:00:00Z","sentAt":"1970-01-01T00:00:01Z"}]}`,
		`{"batch":[]}`, `{}`, `[]`, ``, `{"batch":[{"type":"track"`,
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	types := []string{"", "track", "page", "screen", "identify", "group", "alias"}
	f.Fuzz(func(t *testing.T, body []byte, ep uint8) {
		single := types[int(ep)%len(types)]
		var d decoder
		err := d.parse(body, single)
		var se *SyntaxError
		notJSON := errors.As(err, &se) || (err != nil && err.Error() == "empty body")
		if notJSON == json.Valid(body) {
			t.Fatalf("json.Valid %v, parse error %v", json.Valid(body), err)
		}
		if err != nil {
			return
		}
		d.finalize(stamp{org: "o", now: 1, maxEvent: 400, newID: func() string { return "gen" }})
		n := len(d.raws)
		if len(d.evs)+len(d.rejected) != n || n == 0 || (single != "" && n != 1) {
			t.Fatalf("%d raw events, %d accepted, %d rejected", n, len(d.evs), len(d.rejected))
		}
		last := -1
		for _, r := range d.rejected {
			if r.Index <= last || r.Index >= n || r.Error == "" || !utf8.ValidString(r.Error) || !utf8.ValidString(r.MessageID) ||
				len(r.MessageID) > maxEcho+len("…(1000000000 bytes)") {
				t.Fatalf("bad rejection %+v", r)
			}
			last = r.Index
		}
		var elems []json.RawMessage
		if single == "" {
			var b struct{ Batch []json.RawMessage }
			if err := json.Unmarshal(body, &b); err != nil {
				t.Fatal(err)
			}
			elems = b.Batch
		} else {
			elems = []json.RawMessage{body}
		}
		accepted := 0
		for i, elem := range elems {
			if len(d.rejected) > 0 && d.rejected[0].Index == i {
				d.rejected = d.rejected[1:]
				continue
			}
			e := d.evs[accepted]
			accepted++
			checkEvent(t, e, elem, single)
		}
	})
}

func checkEvent(t *testing.T, e event.Event, elem []byte, single string) {
	t.Helper()
	if e.ID == "" || e.Org == "" || e.Device == "" || !event.IsType(e.Type) || (single != "" && e.Type != single) {
		t.Fatalf("bad event %+v", e)
	}
	for _, s := range []string{e.ID, e.Org, e.Device, e.AnonymousID, e.UserID, e.Type, e.Name, e.GroupID,
		e.PreviousID, e.URL, e.Path, e.Referrer, e.Title, e.UserAgent} {
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 %q in %+v", s, e)
		}
	}
	for _, raw := range [][]byte{e.Properties, e.Traits, e.Context} {
		if raw != nil && (!json.Valid(raw) || raw[0] != '{' || !utf8.Valid(raw)) {
			t.Fatalf("bad raw object %q", raw)
		}
	}
	if len(elem) > 400 {
		t.Fatalf("accepted an event of %d bytes", len(elem))
	}
	// What encoding/json reads from the same element (a map: struct fields
	// would match names case-insensitively).
	var m map[string]json.RawMessage
	if err := json.Unmarshal(elem, &m); err != nil {
		t.Fatalf("encoding/json rejects an accepted event: %v", err)
	}
	str := func(k string) string {
		var v any
		if err := json.Unmarshal(m[k], &v); err != nil {
			return ""
		}
		switch v := v.(type) {
		case string:
			return v
		case float64: // a number id is kept as written
			return string(bytes.TrimSpace(m[k]))
		}
		return ""
	}
	if a := str("anonymousId"); a != e.AnonymousID {
		t.Fatalf("anonymousId %q, encoding/json %q", e.AnonymousID, a)
	}
	if u := str("userId"); u != e.UserID {
		t.Fatalf("userId %q, encoding/json %q", e.UserID, u)
	}
	if id := str("messageId"); id != "" && id != e.ID {
		t.Fatalf("messageId %q, encoding/json %q", e.ID, id)
	}
	name := ""
	switch e.Type {
	case "track":
		name = str("event")
	case "page", "screen":
		name = str("name")
	}
	if name != e.Name {
		t.Fatalf("name %q, encoding/json %q", e.Name, name)
	}
	if p := bytes.TrimSpace(m["properties"]); string(p) != "null" && !bytes.Equal(p, e.Properties) {
		t.Fatalf("properties %q, encoding/json %q", e.Properties, p)
	}
	if tr := bytes.TrimSpace(m["traits"]); string(tr) != "null" && !bytes.Equal(tr, e.Traits) {
		t.Fatalf("traits %q, encoding/json %q", e.Traits, tr)
	}
}
