package event

import (
	"encoding/binary"
	"errors"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	recs := []Record{
		{Kind: KindTick, Time: 1700000000123456789},
		{Kind: KindEvent, Time: 5, Event: Event{ID: "m1", Org: "o", Device: "d", AnonymousID: "d", UserID: "u",
			Type: "page", Name: "Home", ReceivedAt: 5, Timestamp: At(-3), SentAt: At(4), EventTime: 2, OriginalTimestamp: At(-7),
			URL: "https://x/y", Path: "/y", Title: "T", Referrer: "r", UserAgent: "ua",
			Properties: []byte(`{"a":1}`), Context: []byte(`{"ip":"1"}`)}},
		// 1970-01-01T00:00:00Z is a time, not "not sent".
		{Kind: KindEvent, Time: 9, Event: Event{ID: "m2", Type: "track", ReceivedAt: 9, Timestamp: At(0), SentAt: At(0), OriginalTimestamp: At(0), EventTime: 9}},
		{Kind: KindEvent, Time: 9, Event: Event{ID: "m3", Type: "track", ReceivedAt: 9, OriginalTimestamp: At(0), EventTime: 9}},
	}
	for _, r := range recs {
		b := Append(nil, &r)
		got, err := Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
		}
		meta, err := DecodeMeta(b)
		r.Event.Properties, r.Event.Traits, r.Event.Context = nil, nil, nil
		if err != nil || !reflect.DeepEqual(meta, r) {
			t.Fatalf("DecodeMeta: %v\n got %+v\nwant %+v", err, meta, r)
		}
	}
}

// TestDecodeVersion1 reads a record as version 1 wrote it: no flags byte, no
// originalTimestamp, and a client time of 0 meaning not sent.
func TestDecodeVersion1(t *testing.T) {
	v1 := []byte{1, byte(KindEvent)}
	for _, ns := range []int64{10, 0, 7, 8} { // ReceivedAt, Timestamp, SentAt, EventTime
		v1 = binary.AppendVarint(v1, ns)
	}
	for _, s := range []string{"m", "o", "d", "d", "", "track", "Clicked", "", "", "", "", "", "", "", "", "", ""} {
		v1 = binary.AppendUvarint(v1, uint64(len(s)))
		v1 = append(v1, s...)
	}
	got, err := Decode(v1)
	if err != nil {
		t.Fatal(err)
	}
	want := Record{Kind: KindEvent, Time: 10, Event: Event{ID: "m", Org: "o", Device: "d", AnonymousID: "d", Type: "track",
		Name: "Clicked", ReceivedAt: 10, SentAt: At(7), EventTime: 8}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("version 1:\n got %+v\nwant %+v", got, want)
	}
	if h, err := Peek(v1); err != nil || h != (Head{Kind: KindEvent, Time: 10, ID: "m", Org: "o", Device: "d"}) {
		t.Fatalf("Peek version 1 = %+v, %v", h, err)
	}
}

func TestDecodeRejects(t *testing.T) {
	good := Append(nil, &Record{Kind: KindEvent, Event: Event{ID: "m", Type: "track"}})
	for name, b := range map[string][]byte{
		"empty":    nil,
		"version":  {9, 1, 0},
		"kind":     {1, 7, 0},
		"trailing": append(append([]byte(nil), good...), 0),
		"short":    good[:len(good)-2],
		"flags":    setByte(good, 3, 0x08),           // an unknown flag
		"unset":    setByte(good, 4, 2),              // Timestamp not flagged but not 0
		"noflags":  {Version, byte(KindEvent), 0x02}, // ends before the flags byte
	} {
		if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: err = %v, want ErrCorrupt", name, err)
		}
		if _, err := DecodeMeta(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: DecodeMeta err = %v, want ErrCorrupt", name, err)
		}
	}
}

// setByte returns a copy of b with b[i] = c.
func setByte(b []byte, i int, c byte) []byte {
	b = append([]byte(nil), b...)
	b[i] = c
	return b
}

func FuzzDecode(f *testing.F) {
	f.Add(Append(nil, &Record{Kind: KindTick, Time: 42}))
	f.Add(Append(nil, &Record{Kind: KindEvent, Event: Event{ID: "m", Org: "o", Type: "track", Properties: []byte("{}")}}))
	f.Add(Append(nil, &Record{Kind: KindEvent, Event: Event{ID: "m", Timestamp: At(0), OriginalTimestamp: At(-5), EventTime: 3}}))
	f.Add([]byte{1, 1, 20, 0, 14, 20, 1, 'm', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // version 1
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		m, merr := DecodeMeta(b)
		if (err == nil) != (merr == nil) {
			t.Fatalf("Decode: %v, DecodeMeta: %v", err, merr)
		}
		if err != nil {
			return
		}
		// DecodeMeta is Decode without the raw JSON fields.
		r2 := r
		r2.Event.Properties, r2.Event.Traits, r2.Event.Context = nil, nil, nil
		if !reflect.DeepEqual(m, r2) {
			t.Fatalf("DecodeMeta differs:\n%+v\n%+v", m, r2)
		}
		// Whatever decodes must re-encode to a record that decodes the same.
		again, err := Decode(Append(nil, &r))
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("re-decode mismatch: %v\n%+v\n%+v", err, r, again)
		}
	})
}

// FuzzPeek checks that Peek never panics and agrees with Decode on every
// record Decode accepts.
func FuzzPeek(f *testing.F) {
	f.Add(Append(nil, &Record{Kind: KindTick, Time: 42}))
	f.Add(Append(nil, &Record{Kind: KindEvent, Event: Event{ID: "m", Org: "o", Device: "d", Type: "track", ReceivedAt: 7}}))
	f.Add([]byte{1, 1, 2})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, perr := Peek(b)
		r, err := Decode(b)
		if err != nil {
			return
		}
		want := Head{Kind: r.Kind, Time: r.Time}
		if r.Kind == KindEvent {
			want.ID, want.Org, want.Device = r.Event.ID, r.Event.Org, r.Event.Device
		}
		if perr != nil || h != want {
			t.Fatalf("Peek = %+v, %v; Decode gives %+v", h, perr, want)
		}
	})
}

// benchRecord is an event of the load generator's shape (~300 bytes encoded).
var benchRecord = Record{Kind: KindEvent, Time: 1700000000123456789, Event: Event{
	ID: "4b6f1d0e-2f7a-4c56-9a51-6b7f0a3c9e21", Org: "bench", Device: "dev-000123", AnonymousID: "dev-000123",
	Type: "track", Name: "Button Clicked", ReceivedAt: 1700000000123456789, Timestamp: At(1700000000100000000),
	EventTime: 1700000000100000000, URL: "https://example.com/pricing", Path: "/pricing", Title: "Pricing",
	UserAgent:  "Mozilla/5.0 (X11; Linux x86_64)",
	Properties: []byte(`{"button":"signup","plan":"pro","position":3,"experiment":"b"}`),
	Context:    []byte(`{"page":{"url":"https://example.com/pricing","path":"/pricing","title":"Pricing"},"userAgent":"Mozilla/5.0 (X11; Linux x86_64)"}`)}}

func BenchmarkAppend(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		_ = Append(nil, &benchRecord)
	}
}

func BenchmarkDecodeMeta(b *testing.B) {
	buf := Append(nil, &benchRecord)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMeta(buf); err != nil {
			b.Fatal(err)
		}
	}
}
