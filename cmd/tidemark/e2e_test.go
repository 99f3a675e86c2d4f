package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

const (
	testKey     = "acme-test-write-key-0001"
	testReadKey = "acme-test-read-key-00001" // reads the live tail
)

func post(t testing.TB, url string, body []byte, gz bool) (int, string) {
	t.Helper()
	return postAs(t, url, testKey, body, gz)
}

// postAs is post with the write key key.
func postAs(t testing.TB, url, key string, body []byte, gz bool) (int, string) {
	t.Helper()
	if gz {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write(body)
		w.Close()
		body = b.Bytes()
	}
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.SetBasicAuth(key, "")
	req.Header.Set("Content-Type", "application/json")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(rb)
}

// getAuth GETs url with the Authorization header auth (none when empty)
// and returns the status and body.
func getAuth(t testing.TB, url, auth string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type sent struct {
	id, device, typ, url string
}

// TestServeEndToEnd sends events from many devices and pages over HTTP (batch
// with gzip, single calls, client retries of the same messageIds), waits for the
// sessions to close, and checks the lake holds every event exactly once with
// the right session and page, and the right page and session rows.
func TestServeEndToEnd(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	p := startProc(t, testConfig(t, dir, port, ""), port)

	const devices, perDevice = 40, 12
	var all []sent
	byDevice := map[string][]sent{}
	for d := range devices {
		dev := fmt.Sprintf("dev-%03d", d)
		var batch []map[string]any
		for i := range perDevice {
			typ := "track"
			if i%4 == 0 {
				typ = "page"
			}
			s := sent{id: fmt.Sprintf("e2e-%s-%02d", dev, i), device: dev, typ: typ}
			ev := map[string]any{"type": typ, "messageId": s.id, "anonymousId": dev,
				"timestamp": time.Now().UTC().Format(time.RFC3339Nano)}
			if typ == "page" {
				s.url = fmt.Sprintf("https://shop.test/%s/p%d", dev, i/4)
				ev["properties"] = map[string]any{"url": s.url, "title": "Page " + fmt.Sprint(i/4)}
			} else {
				ev["event"] = "Clicked"
				ev["properties"] = map[string]any{"n": i}
			}
			all = append(all, s)
			byDevice[dev] = append(byDevice[dev], s)
			batch = append(batch, ev)
		}
		// Devices alternate between one gzip batch and single calls per event.
		if d%2 == 0 {
			body, _ := json.Marshal(map[string]any{"batch": batch})
			for attempt := range 2 { // the second post is a client retry
				if code, resp := post(t, p.addr+"/v1/batch", body, true); code != 200 {
					t.Fatalf("batch attempt %d: %d %s", attempt, code, resp)
				}
			}
		} else {
			for i, ev := range batch {
				body, _ := json.Marshal(ev)
				if code, resp := post(t, p.addr+"/v1/"+ev["type"].(string), body, false); code != 200 {
					t.Fatalf("single %d: %d %s", i, code, resp)
				}
			}
		}
	}

	root := filepath.Join(dir, "lake")
	var l lake
	probe.Until(t, 90*time.Second, "every event, page and session in the lake", func() (bool, string) {
		l = readLake(t, root)
		state := fmt.Sprintf("events=%d pages=%d sessions=%d", len(l.Events), len(l.Pages), len(l.Sessions))
		return len(l.Events) >= len(all) && len(l.Sessions) >= devices && len(l.Pages) >= devices*perDevice/4, state
	})

	counts := l.eventCounts()
	for _, s := range all {
		if counts[s.id] != 1 {
			t.Errorf("event %s appears %d times, want exactly once", s.id, counts[s.id])
		}
	}
	if len(l.Events) != len(all) {
		t.Errorf("lake has %d events, sent %d distinct", len(l.Events), len(all))
	}
	// Assignments: one session per device; each event on the page its device last opened.
	rows := map[string]int{}
	for i, e := range l.Events {
		rows[e.EventID] = i
	}
	pageOf := map[string]string{} // page id -> url
	for dev, evs := range byDevice {
		session := l.Events[rows[evs[0].id]].SessionID
		var page string
		for _, s := range evs {
			e := l.Events[rows[s.id]]
			if e.SessionID != session {
				t.Errorf("%s: session %s, want the device's one session %s", s.id, e.SessionID, session)
			}
			if e.PageID == nil {
				t.Fatalf("%s: no page_id", s.id)
			}
			if s.typ == "page" {
				page = *e.PageID
				pageOf[page] = s.url
			}
			if *e.PageID != page {
				t.Errorf("%s: page %s, want %s", s.id, *e.PageID, page)
			}
			if e.DeviceID != dev || e.OrgID != "acme" {
				t.Errorf("%s: device %q org %q", s.id, e.DeviceID, e.OrgID)
			}
		}
	}
	if len(l.Pages) != devices*perDevice/4 {
		t.Errorf("pages: %d rows, want %d", len(l.Pages), devices*perDevice/4)
	}
	for _, pg := range l.Pages {
		if pg.URL == nil || pageOf[pg.PageID] != *pg.URL {
			t.Errorf("page %s: url %v, want %q", pg.PageID, pg.URL, pageOf[pg.PageID])
		}
		if pg.EventCount != 4 {
			t.Errorf("page %s: %d events, want 4", pg.PageID, pg.EventCount)
		}
	}
	if len(l.Sessions) != devices {
		t.Errorf("sessions: %d rows, want %d", len(l.Sessions), devices)
	}
	for _, s := range l.Sessions {
		if s.EventCount != perDevice || s.PageCount != perDevice/4 {
			t.Errorf("session %s: %d events %d pages, want %d and %d", s.SessionID, s.EventCount, s.PageCount, perDevice, perDevice/4)
		}
		if s.EntryURL == nil || *s.EntryURL != fmt.Sprintf("https://shop.test/%s/p0", s.DeviceID) {
			t.Errorf("session %s entry url %v", s.SessionID, s.EntryURL)
		}
	}
	// Metrics agree with the lake, and nothing is pending.
	probe.Until(t, 30*time.Second, "metrics to settle", func() (bool, string) {
		delivered, _ := p.metric(`tidemark_delivered_events_total{destination="lake",org="acme",table="events"}`)
		age, ok := p.metric(`tidemark_oldest_undelivered_event_age_seconds{destination="lake",org="acme",table="events"}`)
		return ok && delivered == float64(len(all)) && age == 0, fmt.Sprintf("delivered=%v age=%v", delivered, age)
	})
	p.stop()
}
