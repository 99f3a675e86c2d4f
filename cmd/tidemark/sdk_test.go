package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestSegmentSDKAndIndependentReader sends with the real Segment Node SDK
// (@segment/analytics-node, unchanged, only its host pointed at tidemark) and
// reads the lake back with an independent Parquet reader (hyparquet, in Node):
// every call the SDK delivered is in the events table exactly once, with the
// identify's userId carried onto the session.
func TestSegmentSDKAndIndependentReader(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	p := startProc(t, testConfig(t, dir, port, ""), port)

	const devices, per = 25, 9
	res := testenv.SendSegment(t, testenv.SendOptions{Host: p.addr, WriteKey: testKey, Devices: devices, EventsPerDevice: per, Prefix: "sdk"})
	if res.Count != devices*per || len(res.Sent) != devices*per {
		t.Fatalf("SDK sent %d calls (%d ids), want %d", res.Count, len(res.Sent), devices*per)
	}
	root := filepath.Join(dir, "lake")
	probe.Until(t, 90*time.Second, "the SDK's events and sessions in the lake", func() (bool, string) {
		l := readLake(t, root)
		return len(l.Events) >= devices*per && len(l.Sessions) >= devices, fmt.Sprintf("events=%d sessions=%d", len(l.Events), len(l.Sessions))
	})
	p.stop()

	rows := testenv.ReadParquetDirFiles(t, root)
	committed := readLake(t, root).Files
	ids := map[string]int{}
	users := map[string]string{} // session_id -> user_id, from the sessions table
	for _, r := range rows {
		if !committed[r.File] {
			t.Errorf("file %s is not named by any manifest", r.File)
			continue
		}
		switch table, _, _ := strings.Cut(filepath.ToSlash(r.File), "/"); table {
		case "events":
			ids[fmt.Sprint(r.Row["event_id"])]++
		case "sessions":
			if u, ok := r.Row["user_id"].(string); ok {
				users[fmt.Sprint(r.Row["session_id"])] = u
			}
		}
	}
	for _, id := range res.Sent {
		if ids[id] != 1 {
			t.Errorf("independent reader: event %s appears %d times, want 1", id, ids[id])
		}
	}
	if len(ids) != len(res.Sent) {
		t.Errorf("independent reader: %d distinct events, SDK sent %d", len(ids), len(res.Sent))
	}
	if len(users) != devices {
		t.Errorf("independent reader: %d sessions with a user_id, want %d (one identify per device)", len(users), devices)
	}
}

// TestRudderStackSDKClientTime sends with the real RudderStack Node SDK
// (@rudderstack/rudder-sdk-node, unchanged) from a "device" whose clock is an
// hour ahead. The SDK sends originalTimestamp and sentAt, never timestamp:
// the independent reader must see original_timestamp and sent_at kept (by the
// wrong clock), client_timestamp null, and event_time corrected for the skew
// as the Segment spec says, receivedAt - (sentAt - originalTimestamp): back
// within the real time of the sends, not an hour ahead.
func TestRudderStackSDKClientTime(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	p := startProc(t, testConfig(t, dir, port, ""), port)

	const n, skew = 40, time.Hour
	res := testenv.SendRudder(t, testenv.RudderOptions{Host: p.addr, WriteKey: testKey, Events: n, Prefix: "rs", ClockOffset: skew})
	if res.Count != n || len(res.Sent) != n {
		t.Fatalf("SDK sent %d calls (%d ids), want %d", res.Count, len(res.Sent), n)
	}
	root := filepath.Join(dir, "lake")
	probe.Until(t, 90*time.Second, "the SDK's events in the lake", func() (bool, string) {
		l := readLake(t, root)
		return len(l.Events) >= n, fmt.Sprintf("events=%d", len(l.Events))
	})
	p.stop()

	ts := func(r map[string]any, col string) (time.Time, bool) {
		s, ok := r[col].(string)
		if !ok {
			if r[col] != nil {
				t.Fatalf("%s = %#v, want a timestamp or null", col, r[col])
			}
			return time.Time{}, false
		}
		v, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatalf("%s = %q: %v", col, s, err)
		}
		return v, true
	}
	// The real time of the sends, with a second of slack for the clocks'
	// millisecond truncation and the lake's microseconds.
	start, end := time.UnixMilli(res.StartMs).Add(-time.Second), time.UnixMilli(res.EndMs).Add(time.Second)
	seen := map[string]int{}
	for _, pr := range testenv.ReadParquetDirFiles(t, root) {
		if table, _, _ := strings.Cut(pr.File, "/"); table != "events" {
			continue
		}
		r := pr.Row
		id := fmt.Sprint(r["event_id"])
		seen[id]++
		orig, okO := ts(r, "original_timestamp")
		sent, okS := ts(r, "sent_at")
		recv, _ := ts(r, "received_at")
		et, _ := ts(r, "event_time")
		if _, ok := ts(r, "client_timestamp"); ok || !okO || !okS {
			t.Errorf("%s: client_timestamp %v, original_timestamp %v, sent_at %v: want null, set, set", id, r["client_timestamp"], r["original_timestamp"], r["sent_at"])
			continue
		}
		if orig.Before(start.Add(skew)) || orig.After(end.Add(skew)) {
			t.Errorf("%s: original_timestamp %s, want by the device's clock, %s..%s", id, orig, start.Add(skew), end.Add(skew))
		}
		if want := recv.Add(-sent.Sub(orig)); !et.Equal(want) {
			t.Errorf("%s: event_time %s, want received_at - (sent_at - original_timestamp) = %s", id, et, want)
		}
		if et.Before(start) || et.After(end) {
			t.Errorf("%s: event_time %s, want the real time of the send, %s..%s (skew corrected)", id, et, start, end)
		}
	}
	for _, id := range res.Sent {
		if seen[id] != 1 {
			t.Errorf("event %s appears %d times, want 1", id, seen[id])
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct events, SDK sent %d", len(seen), n)
	}
}
