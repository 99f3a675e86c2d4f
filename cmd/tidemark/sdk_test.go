package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
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
	waitFor(t, 90*time.Second, "the SDK's events and sessions in the lake", func() (bool, string) {
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
