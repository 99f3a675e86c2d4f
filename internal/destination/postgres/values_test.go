package postgres

import (
	"encoding/base64"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/destinationtest"
	"github.com/tidemark/tidemark/internal/testenv"
)

// openWithMetrics is newDest with the destination's metrics on reg.
func openWithMetrics(t *testing.T, dbURL, schema string, reg prometheus.Registerer) *Postgres {
	t.Helper()
	d, err := Open(t.Context(), withSchema(dbURL, schema), destination.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	d.SetOwner(destination.Owner{Org: "org_test", Destination: "pg", ID: "0123456789abcdef0123456789abcdef"})
	if err := d.Probe(t.Context()); err != nil {
		t.Fatal(err)
	}
	return d
}

// Values PostgreSQL refuses are stored as the nearest value it accepts
// (NULL for a JSON number or nesting beyond its limits), and
// _tidemark_escaped gives back the exact original of each.
func TestBadValuesRoundTrip(t *testing.T) {
	dbURL, _ := testenv.PostgresDB(t)
	reg := prometheus.NewRegistry()
	d := openWithMetrics(t, dbURL, "bad", reg)
	deep := strings.Repeat("[", 15000) + strings.Repeat("]", 15000) // beyond the parser's stack (14538 here)
	type bad struct {
		column, value, stored string // stored: the text PostgreSQL holds ("" for NULL)
	}
	cases := []bad{
		{"event_name", "a\x00b", "a\uFFFDb"},
		{"url", "https://x.test/\xff", "https://x.test/\uFFFD"},
		{"properties", `{"a":"x\u0000y"}`, `{"a": "x` + "\uFFFD" + `y"}`},
		{"traits", `{"s":"\ud800 and \udc00"}`, `{"s": "` + "\uFFFD and \uFFFD" + `"}`},
		{"context", `{"n":1e131072}`, ""},
		{"properties", `{"n":-1.5e-16383}`, ""},
		{"properties", `{"n":1` + strings.Repeat("0", maxIntDigits) + `}`, ""},
		{"properties", deep, ""},
		{"properties", `{"both":"\u0000","n":1e200000}`, ""},
	}
	b := destinationtest.Batch(4, 1, 1, len(cases)+2) // two clean rows too
	for i, c := range cases {
		e := &b.Events[i]
		v := c.value
		switch c.column {
		case "event_name":
			e.EventName = &v
		case "url":
			e.URL = &v
		case "properties":
			e.Properties = &v
		case "traits":
			e.Traits = &v
		case "context":
			e.Context = &v
		}
	}
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	conn := testenv.PostgresConn(t, dbURL)
	for i, c := range cases {
		var stored *string
		var escaped map[string]string
		err := conn.QueryRow(t.Context(), `SELECT `+c.column+`::text, _tidemark_escaped FROM bad.events WHERE log_offset = $1`,
			b.Events[i].LogOffset).Scan(&stored, &escaped)
		if err != nil {
			t.Fatalf("row %d: %v", i, err)
		}
		got := ""
		if stored != nil {
			got = *stored
		}
		orig, err := base64.StdEncoding.DecodeString(escaped[c.column])
		if err != nil || string(orig) != c.value || len(escaped) != 1 {
			t.Errorf("%s %.40q: _tidemark_escaped %v does not give back the original", c.column, c.value, escaped)
		}
		if got != c.stored || (c.stored == "") != (stored == nil) {
			t.Errorf("%s %.40q stored as %.60q, want %.60q", c.column, c.value, got, c.stored)
		}
	}
	var clean int
	if err := conn.QueryRow(t.Context(), `SELECT count(*) FROM bad.events WHERE _tidemark_escaped IS NULL`).Scan(&clean); err != nil || clean != 2 {
		t.Errorf("%d rows without _tidemark_escaped (%v), want the 2 clean ones", clean, err)
	}
	if got := testutil.ToFloat64(d.m.escaped.WithLabelValues("org_test", "pg", "events")); got != float64(len(cases)) {
		t.Errorf("tidemark_destination_escaped_values_total = %v, want %d", got, len(cases))
	}
	// The original can be had in SQL, as bytes (a NUL cannot be text).
	var raw []byte
	if err := conn.QueryRow(t.Context(), `SELECT decode(_tidemark_escaped->>'event_name', 'base64') FROM bad.events WHERE log_offset = $1`,
		b.Events[0].LogOffset).Scan(&raw); err != nil || string(raw) != cases[0].value {
		t.Errorf("decode(_tidemark_escaped->>'event_name', 'base64') = %q, %v", raw, err)
	}
}

// A row PostgreSQL still rejects holds the batch: Write fails with a
// permanent error naming the table, the row's id and the reason, the
// metric counts the held batch, and nothing of the batch is loaded.
func TestRejectedRowHoldsTheBatch(t *testing.T) {
	dbURL, _ := testenv.PostgresDB(t)
	reg := prometheus.NewRegistry()
	d := openWithMetrics(t, dbURL, "held", reg)
	b := destinationtest.Batch(5, 1, 1, 3)
	b.Events[1].EventTime = -300_000_000_000_000_000 // 7537 BC: before timestamptz's range
	err := d.Write(t.Context(), b)
	if err == nil {
		t.Fatal("Write of a row PostgreSQL rejects: no error")
	}
	for _, want := range []string{"held", "events", b.Events[1].EventID, "event_time", "out of range"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if !d.Permanent(err) {
		t.Errorf("error %v is not permanent", err)
	}
	gauge := d.m.rejected.WithLabelValues("org_test", "pg", "events")
	if got := testutil.ToFloat64(gauge); got != 1 {
		t.Errorf("tidemark_destination_rejected_rows = %v, want 1", got)
	}
	if _, ok, err := d.Committed(t.Context(), 5); ok || err != nil {
		t.Errorf("held batch committed (%v, %v)", ok, err)
	}
	ids, err := d.EventIDs(t.Context(), 5)
	if err != nil || len(ids) != 0 {
		t.Errorf("held batch left rows %v (%v)", ids, err)
	}
	// Another partition goes on; the held batch stays counted until it loads.
	if err := d.Write(t.Context(), destinationtest.Batch(6, 1, 1, 3)); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(gauge); got != 1 {
		t.Errorf("tidemark_destination_rejected_rows = %v after another batch loaded, want 1", got)
	}
	b.Events[1].EventTime = b.Events[0].EventTime // fixed (a test can; the pipeline would retry the same)
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(gauge); got != 0 {
		t.Errorf("tidemark_destination_rejected_rows = %v once the batch loaded, want 0", got)
	}
}

// A batch whose rows are partly in the tables already (a damaged or
// replayed state; a backfill of events that are there) loads the others
// and skips those, counting them.
func TestConflictSkipsRowsAlreadyThere(t *testing.T) {
	dbURL, _ := testenv.PostgresDB(t)
	reg := prometheus.NewRegistry()
	d := openWithMetrics(t, dbURL, "conflict", reg)
	b1 := destinationtest.Batch(7, 1, 5, 4)
	if err := d.Write(t.Context(), b1); err != nil {
		t.Fatal(err)
	}
	b2 := destinationtest.Batch(7, 6, 9, 3)
	b2.Events = append(b2.Events, b1.Events[2]) // already there
	b2.Pages = append(b2.Pages, b1.Pages...)    // already there
	if err := d.Write(t.Context(), b2); err != nil {
		t.Fatal(err)
	}
	ids, err := d.EventIDs(t.Context(), 7)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, id := range ids {
		seen[id]++
	}
	for _, e := range append(b1.Events, b2.Events...) {
		if seen[e.EventID] != 1 {
			t.Errorf("event %s stored %d times", e.EventID, seen[e.EventID])
		}
	}
	if len(ids) != len(b1.Events)+len(b2.Events)-1 {
		t.Errorf("%d events stored, want %d", len(ids), len(b1.Events)+len(b2.Events)-1)
	}
	for table, want := range map[string]float64{"events": 1, "pages": 1, "sessions": 0} {
		if got := testutil.ToFloat64(d.m.skipped.WithLabelValues("org_test", "pg", table)); got != want {
			t.Errorf("tidemark_destination_conflict_rows_skipped_total{table=%q} = %v, want %v", table, got, want)
		}
	}
	if last, ok, err := d.Committed(t.Context(), 7); err != nil || !ok || last != 9 {
		t.Errorf("Committed = %d, %v, %v; want 9", last, ok, err)
	}
	// The rows skipped keep the batch that loaded them first.
	conn := testenv.PostgresConn(t, dbURL)
	var batch string
	if err := conn.QueryRow(t.Context(), `SELECT _tidemark_batch FROM conflict.events WHERE event_id = $1`, b1.Events[2].EventID).Scan(&batch); err != nil || batch != b1.ID {
		t.Errorf("the row already there now says batch %q (%v), want %q", batch, err, b1.ID)
	}
}
