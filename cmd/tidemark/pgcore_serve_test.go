package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestPostgresServeSmoke: `tidemark serve` with a lake and a PostgreSQL
// destination for one org loads every accepted event into both, once, with
// the same ids, sessions and pages, values PostgreSQL refuses included.
func TestPostgresServeSmoke(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := testenv.FreePort(t)
	dbURL, _ := testenv.PostgresDB(t)
	cfg := testConfig(t, dir, port, fmt.Sprintf(`      - name: warehouse
        url: %s&schema=acme
        flush: {max_events: 300, max_age: 1s}
`, dbURL))
	p := startProc(t, cfg, port)

	const devices, perDevice = 20, 10
	var ids []string
	for d := range devices {
		var batch []map[string]any
		for i := range perDevice {
			id := fmt.Sprintf("pg-%02d-%02d", d, i)
			ids = append(ids, id)
			ev := map[string]any{"type": "track", "event": "Clicked", "messageId": id, "anonymousId": fmt.Sprintf("dev-%02d", d),
				"properties": map[string]any{"n": i, "note": "a\u0000b"}}
			if i == 0 {
				ev["type"] = "page"
				ev["properties"] = map[string]any{"url": fmt.Sprintf("https://shop.test/%d", d)}
			}
			batch = append(batch, ev)
		}
		body, _ := json.Marshal(map[string]any{"batch": batch})
		if code, resp := post(t, p.addr+"/v1/batch", body, false); code != 200 {
			t.Fatalf("batch: %d %s", code, resp)
		}
	}

	conn := testenv.PostgresConn(t, dbURL)
	type row struct{ id, session, page string }
	var pg []row
	probe.Until(t, 2*time.Minute, "every event, page and session in PostgreSQL and the lake", func() (bool, string) {
		pg = pg[:0]
		rows, err := conn.Query(t.Context(), `SELECT event_id, session_id, coalesce(page_id, '') FROM acme.events ORDER BY event_id`)
		if err != nil {
			return false, err.Error()
		}
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.session, &r.page); err != nil {
				return false, err.Error()
			}
			pg = append(pg, r)
		}
		if rows.Err() != nil {
			return false, rows.Err().Error()
		}
		var pages, sessions int
		if err := conn.QueryRow(t.Context(), `SELECT (SELECT count(*) FROM acme.pages), (SELECT count(*) FROM acme.sessions)`).Scan(&pages, &sessions); err != nil {
			return false, err.Error()
		}
		l := readLake(t, filepath.Join(dir, "lake"))
		state := fmt.Sprintf("postgres: %d events %d pages %d sessions; lake: %d events", len(pg), pages, sessions, len(l.Events))
		return len(pg) >= len(ids) && pages >= devices && sessions >= devices && len(l.Events) >= len(ids), state
	})
	l := readLake(t, filepath.Join(dir, "lake"))
	var lk []row
	for _, e := range l.Events {
		page := ""
		if e.PageID != nil {
			page = *e.PageID
		}
		lk = append(lk, row{e.EventID, e.SessionID, page})
	}
	slices.SortFunc(lk, func(a, b row) int {
		if a.id < b.id {
			return -1
		}
		if a.id > b.id {
			return 1
		}
		return 0
	})
	if !slices.Equal(pg, lk) {
		t.Errorf("PostgreSQL and the lake differ:\npostgres %v\nlake     %v", pg[:min(5, len(pg))], lk[:min(5, len(lk))])
	}
	slices.Sort(ids)
	got := make([]string, len(pg))
	for i, r := range pg {
		got[i] = r.id
	}
	if !slices.Equal(got, ids) {
		t.Errorf("PostgreSQL holds %d events, want each of the %d sent once", len(got), len(ids))
	}
	var escaped int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM acme.events WHERE _tidemark_escaped ? 'properties'`).Scan(&escaped); err != nil || escaped != devices*(perDevice-1) {
		t.Errorf("%d rows with properties escaped (%v), want %d", escaped, err, devices*(perDevice-1))
	}
}
