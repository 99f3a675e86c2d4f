package sessionize

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/internal/event"
)

func sampleOutputs() []Output {
	return []Output{
		{Kind: KindEvent, LogTime: 7, Org: "o", Offset: 42, Size: 300, SessionID: "s", PageID: "p"},
		{Kind: KindPage, LogTime: 8, Org: "o", Device: "d", SessionID: "s", EndReason: "idle", EndedAt: 5,
			Page: &Page{ID: "p", Type: "page", URL: "/a", Start: 1, Last: 5, Events: 3}},
		{Kind: KindSession, LogTime: 9, Org: "o", Device: "d", Session: &Session{ID: "s", Start: 1, Last: 5, Pages: 1, Events: 3}},
		{Kind: KindWatermark, LogTime: 10},
	}
}

func TestOutputRoundTrip(t *testing.T) {
	for _, o := range sampleOutputs() {
		got, err := UnmarshalOutput(MarshalOutput(nil, &o))
		if err != nil || !reflect.DeepEqual(got, o) {
			t.Fatalf("round trip %+v: got %+v, %v", o, got, err)
		}
	}
	d := &Device{Bucket: 5, Session: Session{ID: "s", Last: 3}, Page: &Page{ID: "p"}}
	got, err := UnmarshalDevice(MarshalDevice(nil, d))
	if err != nil || !reflect.DeepEqual(got, d) {
		t.Fatalf("device round trip: %+v %v", got, err)
	}
	if _, err := UnmarshalOutput([]byte{1, 99, 0}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("unknown kind: %v", err)
	}
}

// TestIDs: ids entityID makes take 16 bytes and come back identical; other
// strings (uppercase, not UUIDs) are kept as they are; version 1 records,
// ids as strings, still decode.
func TestIDs(t *testing.T) {
	ev := &event.Event{ID: "m", Org: "o", Device: "d"}
	sid, pid := entityID("s", ev, 1), entityID("p", ev, 1)
	for _, ids := range [][2]string{{sid, pid}, {strings.ToUpper(sid), ""}, {"not-a-uuid", sid[:35] + "g"}, {sid[:35], sid + "0"}} {
		o := Output{Kind: KindEvent, LogTime: 7, Org: "o", Offset: 42, Size: 300, SessionID: ids[0], PageID: ids[1]}
		b := MarshalOutput(nil, &o)
		got, err := UnmarshalOutput(b)
		if err != nil || !reflect.DeepEqual(got, o) {
			t.Fatalf("round trip %+v: got %+v, %v", o, got, err)
		}
	}
	o := Output{Kind: KindEvent, LogTime: 7, Org: "o", Offset: 42, Size: 300, SessionID: sid, PageID: pid}
	if n := len(MarshalOutput(nil, &o)); n > 45 {
		t.Errorf("event output with two entity ids is %d bytes, want ids as 16 bytes each", n)
	}
	// Version 1: version, kind, log time, org, offset, size, session and page id as strings.
	v1 := []byte{1, byte(KindEvent), 14, 1, 'o', 42, 0x58, 4}
	v1 = append(append(v1, byte(len(sid))), sid...)
	v1 = append(append(v1, byte(len(pid))), pid...)
	v1[6], v1[7] = 0xd8, 4 // varint 300
	got, err := UnmarshalOutput(v1)
	if err != nil || !reflect.DeepEqual(got, o) {
		t.Fatalf("version 1 output: %+v, %v", got, err)
	}
}

func FuzzUnmarshalOutput(f *testing.F) {
	for _, o := range sampleOutputs() {
		f.Add(MarshalOutput(nil, &o))
	}
	ev := &event.Event{ID: "m", Org: "o", Device: "d"}
	f.Add(MarshalOutput(nil, &Output{Kind: KindEvent, SessionID: entityID("s", ev, 1), PageID: entityID("p", ev, 1)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := UnmarshalOutput(b)
		if err != nil {
			return
		}
		again, err := UnmarshalOutput(MarshalOutput(nil, &o))
		if err != nil || !reflect.DeepEqual(again, o) {
			t.Fatalf("re-decode mismatch %+v %+v %v", o, again, err)
		}
	})
}

func FuzzUnmarshalDevice(f *testing.F) {
	f.Add(MarshalDevice(nil, &Device{Bucket: 5, Session: Session{ID: "s"}, Page: &Page{ID: "p"}}))
	ev := &event.Event{ID: "m", Org: "o", Device: "d"}
	f.Add(MarshalDevice(nil, &Device{Bucket: 5, Session: Session{ID: entityID("s", ev, 1)}, Page: &Page{ID: entityID("p", ev, 1)}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := UnmarshalDevice(b)
		if err != nil {
			return
		}
		again, err := UnmarshalDevice(MarshalDevice(nil, d))
		if err != nil || !reflect.DeepEqual(again, d) {
			t.Fatalf("re-decode mismatch %+v %+v %v", d, again, err)
		}
	})
}
