package sessionize

import (
	"errors"
	"reflect"
	"testing"
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

func FuzzUnmarshalOutput(f *testing.F) {
	for _, o := range sampleOutputs() {
		f.Add(MarshalOutput(nil, &o))
	}
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
