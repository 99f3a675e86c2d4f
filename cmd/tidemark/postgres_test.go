package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// The PostgreSQL destination through the real binary, against real
// PostgreSQL servers (docs/destinations.md): one org delivers to a lake and
// to PostgreSQL, and what PostgreSQL's tables hold is compared with what the
// independent Parquet reader reads from the lake.

// pgSchema is the schema of the tests' PostgreSQL destinations.
const pgSchema = "tidemark_acme"

// pgDB is a PostgreSQL database of a test's own.
type pgDB struct {
	admin string // a superuser URL of the database: the test's reads and damage
	name  string
}

// newPGDB creates a database on the script's server, dropped when t ends.
func newPGDB(t *testing.T) pgDB {
	admin, name := testenv.PostgresDB(t)
	return pgDB{admin: admin, name: name}
}

// destURL is the URL of a destination in schema pgSchema of the database
// that connects as user ("": the superuser).
func (d pgDB) destURL(t testing.TB, user string) string {
	t.Helper()
	u, err := url.Parse(d.admin)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		u.User = url.User(user)
	}
	q := u.Query()
	q.Set("schema", pgSchema)
	u.RawQuery = q.Encode()
	return u.String()
}

// pgConfig is incidentConfig's org acme (lake at lakeURL, audited every
// second, admin key incidentAdminKey) with a second destination, pg, at
// pgURL, whose batches hold at most maxEvents events.
func pgConfig(t *testing.T, dir string, port int, lakeURL, pgURL string, maxEvents int) string {
	return incidentConfig(t, dir, port, lakeURL, time.Second, fmt.Sprintf(`      - name: pg
        url: %q
        flush: {max_events: %d, max_age: 500ms}
        freshness_grace: 1s
`, pgURL, maxEvents))
}

// tables is what a reader sees of one destination's tables: multisets of
// the fields that the lake and PostgreSQL both hold.
type tables struct {
	IDs        map[string]int // event id -> rows
	Events     map[string]int // "event_id session_id page_id received_at(µs)" -> rows
	Pages      map[string]int // "page_id session_id event_count" -> rows
	Sessions   map[string]int // "session_id event_count page_count" -> rows
	InSessions int64          // the events the sessions account for
}

func newTables() tables {
	return tables{IDs: map[string]int{}, Events: map[string]int{}, Pages: map[string]int{}, Sessions: map[string]int{}}
}

func (tb *tables) addEvent(id, session, page string, receivedAt time.Time) {
	tb.IDs[id]++
	tb.Events[fmt.Sprintf("%s %s %s %d", id, session, page, receivedAt.UnixMicro())]++
}

func (tb *tables) addPage(page, session string, events int64) {
	tb.Pages[fmt.Sprintf("%s %s %d", page, session, events)]++
}

func (tb *tables) addSession(session string, events, pages int64) {
	tb.Sessions[fmt.Sprintf("%s %d %d", session, events, pages)]++
	tb.InSessions += events
}

// pgEventID selects an events row's event_id and, when PostgreSQL could not
// store it as it was (a NUL), the base64 of the original from
// _tidemark_escaped (else ""): see eventID.
const pgEventID = "event_id, coalesce(_tidemark_escaped->>'event_id', '')"

// eventID returns the event id a row selected with pgEventID stands for,
// as a user reads it back.
func eventID(stored, escaped string) (string, error) {
	if escaped == "" {
		return stored, nil
	}
	b, err := base64.StdEncoding.DecodeString(escaped)
	return string(b), err
}

// readPG reads the tables of schema pgSchema as a user of the database does.
func readPG(ctx context.Context, dbURL string) (tables, error) {
	tb := newTables()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return tb, err
	}
	defer conn.Close(ctx)
	var id, escaped, session, page string
	var at time.Time
	var events, pages int64
	for _, q := range []struct {
		sql  string
		scan []any
		add  func() error
	}{
		{"SELECT " + pgEventID + ", session_id, coalesce(page_id, ''), received_at FROM " + pgSchema + ".events",
			[]any{&id, &escaped, &session, &page, &at}, func() error {
				id, err := eventID(id, escaped)
				tb.addEvent(id, session, page, at)
				return err
			}},
		{"SELECT page_id, session_id, event_count FROM " + pgSchema + ".pages",
			[]any{&page, &session, &events}, func() error { tb.addPage(page, session, events); return nil }},
		{"SELECT session_id, event_count, page_count FROM " + pgSchema + ".sessions",
			[]any{&session, &events, &pages}, func() error { tb.addSession(session, events, pages); return nil }},
	} {
		rows, err := conn.Query(ctx, q.sql)
		if err != nil {
			return tb, fmt.Errorf("%s: %w", q.sql, err)
		}
		if _, err := pgx.ForEachRow(rows, q.scan, q.add); err != nil {
			return tb, fmt.Errorf("%s: %w", q.sql, err)
		}
	}
	return tb, nil
}

// lakeTables reads the lake's committed tables with the independent Parquet
// reader (hyparquet).
func lakeTables(t *testing.T, s store) tables {
	t.Helper()
	tb := newTables()
	str := func(v any) string {
		s, _ := v.(string) // null: ""
		return s
	}
	num := func(v any) int64 {
		n, ok := v.(int64)
		if !ok {
			t.Fatalf("lake: %v (%T) is not an integer", v, v)
		}
		return n
	}
	for _, r := range committedRows(t, s, format.Events, format.Pages, format.Sessions) {
		table, _, _ := strings.Cut(r.File, "/")
		switch table {
		case format.Events:
			at, err := time.Parse(time.RFC3339Nano, str(r.Row["received_at"]))
			if err != nil {
				t.Fatalf("lake: %s: received_at: %v", r.File, err)
			}
			tb.addEvent(str(r.Row["event_id"]), str(r.Row["session_id"]), str(r.Row["page_id"]), at)
		case format.Pages:
			tb.addPage(str(r.Row["page_id"]), str(r.Row["session_id"]), num(r.Row["event_count"]))
		case format.Sessions:
			tb.addSession(str(r.Row["session_id"]), num(r.Row["event_count"]), num(r.Row["page_count"]))
		}
	}
	return tb
}

// checkSame fails unless PostgreSQL holds the same events (with their
// session, page and received_at), pages and sessions as the lake.
func checkSame(t *testing.T, pg, lake tables) {
	t.Helper()
	for _, c := range []struct {
		table    string
		pg, lake map[string]int
	}{{"events", pg.Events, lake.Events}, {"pages", pg.Pages, lake.Pages}, {"sessions", pg.Sessions, lake.Sessions}} {
		bad := 0
		for k, n := range c.pg {
			if c.lake[k] != n {
				if bad++; bad <= 5 {
					t.Errorf("%s: PostgreSQL holds %q %d times, the lake %d times", c.table, k, n, c.lake[k])
				}
			}
		}
		for k, n := range c.lake {
			if _, ok := c.pg[k]; !ok {
				if bad++; bad <= 5 {
					t.Errorf("%s: the lake holds %q %d times, PostgreSQL never", c.table, k, n)
				}
			}
		}
		if bad > 0 {
			t.Fatalf("%s: %d rows differ between PostgreSQL (%d rows) and the lake (%d rows)", c.table, bad, len(c.pg), len(c.lake))
		}
	}
}

// waitBoth waits until PostgreSQL (the database of pg) and the lake both
// hold every acknowledged event and every session has closed, and returns
// what each holds (the lake read with the independent reader).
func waitBoth(t *testing.T, p *proc, pg pgDB, lake store, want map[string]bool) (pgT, lakeT tables) {
	t.Helper()
	root := strings.TrimPrefix(lake.url, "file://")
	probe.Until(t, 3*time.Minute, "every acknowledged event and closed session in PostgreSQL and the lake", func() (bool, string) {
		for _, d := range []string{"lake", "pg"} {
			if ok, state := p.settled("acme", d)(); !ok {
				return false, d + ": " + state
			}
		}
		var err error
		if pgT, err = readPG(t.Context(), pg.admin); err != nil {
			return false, err.Error()
		}
		l := readLake(t, root)
		var inSessions int64
		for _, s := range l.Sessions {
			inSessions += s.EventCount
		}
		m, lm := missingIn(pgT.IDs, want), missingIn(l.eventCounts(), want)
		return m == 0 && lm == 0 && pgT.InSessions >= int64(len(want)) && inSessions >= int64(len(want)),
			fmt.Sprintf("of %d acknowledged events PostgreSQL misses %d and its sessions hold %d; the lake misses %d and its sessions hold %d",
				len(want), m, pgT.InSessions, lm, inSessions)
	})
	return pgT, lakeTables(t, lake)
}

// checkPGBatches checks PostgreSQL's own records against its tables: every
// event row belongs to a batch recorded in _tidemark_batches, and each
// recorded batch holds as many event rows as its record says (none was
// loaded twice, none partly).
func checkPGBatches(t *testing.T, conn *pgx.Conn) {
	t.Helper()
	var orphans, bad int64
	err := conn.QueryRow(t.Context(), `SELECT
  (SELECT count(*) FROM `+pgSchema+`.events e WHERE NOT EXISTS
     (SELECT 1 FROM `+pgSchema+`._tidemark_batches b WHERE b.batch_id = e._tidemark_batch)),
  (SELECT count(*) FROM `+pgSchema+`._tidemark_batches b LEFT JOIN
     (SELECT _tidemark_batch, count(*) AS n FROM `+pgSchema+`.events GROUP BY 1) e ON e._tidemark_batch = b.batch_id
   WHERE coalesce(e.n, 0) <> b.event_count)`).Scan(&orphans, &bad)
	if err != nil {
		t.Fatal(err)
	}
	if orphans != 0 || bad != 0 {
		t.Fatalf("%d event rows of no recorded batch; %d batches whose rows differ from their record", orphans, bad)
	}
}

// pgAudited waits for an audit run that started after at and found no
// pending events in either destination.
func (p *proc) pgAudited(t *testing.T, at time.Time) {
	t.Helper()
	probe.Until(t, 60*time.Second, "an audit run without pending events", func() (bool, string) {
		lake, _ := p.metric(`tidemark_audit_pending_events{destination="lake",org="acme"}`)
		pg, _ := p.metric(`tidemark_audit_pending_events{destination="pg",org="acme"}`)
		last, _ := p.metric("tidemark_audit_last_run_timestamp_seconds")
		return lake == 0 && pg == 0 && last > float64(at.Unix()+1), fmt.Sprintf("pending lake=%v pg=%v, last run=%v", lake, pg, last)
	})
}

// deleteEventRows deletes the rows of pgSchema.events that where (an SQL
// condition) selects, as a user would by hand, and returns their event ids
// and how many per hour.
func deleteEventRows(t *testing.T, conn *pgx.Conn, where string) (map[string]bool, map[time.Time]int64) {
	t.Helper()
	rows, err := conn.Query(t.Context(), "DELETE FROM "+pgSchema+".events WHERE "+where+" RETURNING "+pgEventID+", received_at")
	if err != nil {
		t.Fatal(err)
	}
	lost, byHour := map[string]bool{}, map[time.Time]int64{}
	var id, escaped string
	var at time.Time
	if _, err := pgx.ForEachRow(rows, []any{&id, &escaped, &at}, func() error {
		id, err := eventID(id, escaped)
		lost[id] = true
		byHour[at.UTC().Truncate(time.Hour)]++
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(lost) == 0 {
		t.Fatalf("no rows where %s", where)
	}
	return lost, byHour
}

// checkAudit fails unless rep names exactly the lost events as missing from
// pg, per hour, and the lake as clean.
func checkAudit(t *testing.T, rep *audit.Report, accepted int, lost map[string]bool, byHour map[time.Time]int64) {
	t.Helper()
	for _, res := range rep.Results {
		switch res.Destination {
		case "lake":
			if res.Total.Missing != 0 || res.Total.Duplicated != 0 {
				t.Fatalf("lake: audit total %+v, want clean", res.Total)
			}
		case "pg":
			if res.Total.Missing != int64(len(lost)) || res.Total.Duplicated != 0 || res.Total.Accepted != int64(accepted) {
				t.Fatalf("pg: audit total %+v; %d rows deleted of %d events", res.Total, len(lost), accepted)
			}
			for _, h := range res.Hours {
				if h.Missing != byHour[h.Hour] {
					t.Fatalf("pg: hour %s: audit says %d missing, %d deleted", h.Hour, h.Missing, byHour[h.Hour])
				}
			}
			if len(res.Missing) != len(lost) {
				t.Fatalf("pg: audit lists %d missing events, %d deleted", len(res.Missing), len(lost))
			}
			for _, m := range res.Missing {
				if !lost[m.EventID] {
					t.Fatalf("pg: audit names %s missing, which PostgreSQL holds", m.EventID)
				}
			}
		default:
			t.Fatalf("audit of an unknown destination %q", res.Destination)
		}
	}
}

// backfilled returns the event rows that backfill batches other than those
// of before loaded (event id -> rows), and all backfill batch ids.
func backfilled(t *testing.T, conn *pgx.Conn, before map[string]bool) (map[string]int, map[string]bool) {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT `+pgEventID+`, b.batch_id FROM `+pgSchema+`.events e
  JOIN `+pgSchema+`._tidemark_batches b ON b.batch_id = e._tidemark_batch WHERE b.backfill`)
	if err != nil {
		t.Fatal(err)
	}
	ids, batches := map[string]int{}, map[string]bool{}
	var id, escaped, batch string
	if _, err := pgx.ForEachRow(rows, []any{&id, &escaped, &batch}, func() error {
		batches[batch] = true
		id, err := eventID(id, escaped)
		if !before[batch] {
			ids[id]++
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ids, batches
}

var backfillLine = regexp.MustCompile(`acme/pg: wrote (\d+) backfill batches with (\d+) missing events`)

// checkBackfill checks backfill's output (stdout out, exit code) and that
// the rows of the backfill batches it wrote (those not in before) are
// exactly the lost events, once each; it returns every backfill batch.
func checkBackfill(t *testing.T, conn *pgx.Conn, out string, code int, lost map[string]bool, before map[string]bool) map[string]bool {
	t.Helper()
	m := backfillLine.FindStringSubmatch(out)
	if code != 0 || m == nil || m[2] != fmt.Sprint(len(lost)) || m[1] == "0" ||
		!strings.Contains(out, "acme/lake: wrote 0 backfill batches with 0 missing events") {
		t.Fatalf("backfill exit %d, want 1+ batches of %d events for pg and none for the lake:\n%s", code, len(lost), out)
	}
	ids, batches := backfilled(t, conn, before)
	if len(ids) != len(lost) {
		t.Fatalf("backfill loaded %d events, %d were deleted", len(ids), len(lost))
	}
	for id, n := range ids {
		if n != 1 || !lost[id] {
			t.Fatalf("backfill loaded event %s %d times (deleted: %v)", id, n, lost[id])
		}
	}
	return batches
}

// TestPostgresLakeAndAudit: one org delivers to a lake and to PostgreSQL.
// Every acknowledged event is in `events` exactly once, with the session,
// page and received_at the lake gives it (read by the independent Parquet
// reader), and pages and sessions are the lake's. Then rows deleted from
// `events` by hand: `tidemark audit` names the hours and counts, `tidemark
// backfill` loads exactly those events again, a second backfill writes
// nothing and the audit is clean, online (the server's auditor, whose
// caches knew the rows before) and offline.
func TestPostgresLakeAndAudit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	lake := stores(t, dir)["local"](t)
	pg := newPGDB(t)
	port := testenv.FreePort(t)
	cfg := pgConfig(t, dir, port, lake.url, pg.destURL(t, ""), 200)
	p := startProc(t, cfg, port)
	start := time.Now()
	// Ids PostgreSQL cannot store as they are (a NUL): the audit must read
	// back the originals.
	nul := []string{"pg-nul-\x00-1", "pg-nul-\x00-2"}
	var batch []map[string]any
	for _, id := range nul {
		batch = append(batch, map[string]any{"type": "track", "event": "Tick", "messageId": id, "anonymousId": "dev-\x00-nul"})
	}
	body, _ := json.Marshal(map[string]any{"batch": batch})
	if code, resp := post(t, p.addr+"/v1/batch", body, false); code != 200 {
		t.Fatalf("batch with NULs in ids: %d %s", code, resp)
	}
	load := startLoad(t, p.addr, testKey, "pg-", 2, 20, 50*time.Millisecond)
	load.waitAcked(t, 2000)
	acked := load.Stop()
	for _, id := range nul {
		acked[id] = true
	}
	stopped := time.Now()
	pgT, lakeT := waitBoth(t, p, pg, lake, acked)
	checkOnce(t, pgT.IDs, acked)
	checkSame(t, pgT, lakeT)
	conn := testenv.PostgresConn(t, pg.admin)
	checkPGBatches(t, conn)
	var escaped int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM "+pgSchema+".events WHERE _tidemark_escaped ? 'event_id' AND _tidemark_escaped ? 'device_id'").Scan(&escaped); err != nil || escaped != len(nul) {
		t.Fatalf("%d rows with escaped ids, want %d (%v)", escaped, len(nul), err)
	}
	t.Logf("%d events, %d pages, %d sessions in both", len(acked), len(pgT.Pages), len(pgT.Sessions))

	// Online: the running server's audit and backfill. The escaped rows
	// stay: each partition's ids are read, and theirs must be the log's.
	p.pgAudited(t, stopped.Add(3*time.Second)) // past the SLA: absent is missing, not pending
	lost, byHour := deleteEventRows(t, conn, "log_offset % 5 = 0 AND _tidemark_escaped IS NULL")
	t.Logf("deleted %d rows of %d hours", len(lost), len(byHour))
	env := []string{"TIDEMARK_ADMIN_KEY=" + incidentAdminKey}
	from := start.Add(-time.Minute).UTC().Format(time.RFC3339)
	rep, code := auditJSON(t, env, "--url", p.addr, "--from", from)
	if code != 1 {
		t.Fatalf("audit exit %d after deleting rows, want 1", code)
	}
	checkAudit(t, rep, len(acked), lost, byHour)
	if table, _, _ := cli(t, env, "audit", "--url", p.addr, "--from", from); !strings.Contains(table, fmt.Sprintf("acme/pg: %d missing, 0 duplicated", len(lost))) {
		t.Fatalf("audit table:\n%s", table)
	}
	out, errOut, code := cli(t, env, "backfill", "--url", p.addr, "--from", from)
	batches := checkBackfill(t, conn, out+errOut, code, lost, nil)
	out, _, _ = cli(t, env, "backfill", "--url", p.addr, "--from", from)
	if !strings.Contains(out, "acme/pg: wrote 0 backfill batches") {
		t.Fatalf("second backfill:\n%s", out)
	}
	if rep, code := auditJSON(t, env, "--url", p.addr, "--from", from); code != 0 {
		t.Fatalf("audit after backfill: exit %d, %+v", code, rep.Results)
	}
	pgT, err := readPG(t.Context(), pg.admin)
	if err != nil {
		t.Fatal(err)
	}
	checkOnce(t, pgT.IDs, acked)
	checkSame(t, pgT, lakeT) // the same sessions and pages as the pipeline gave them
	p.stop()

	// Offline, on the stopped server's data dir: the same, without caches,
	// and the escaped rows deleted and restored too.
	lost, byHour = deleteEventRows(t, conn, "log_offset % 7 = 3 OR _tidemark_escaped IS NOT NULL")
	for _, id := range nul {
		if !lost[id] {
			t.Fatalf("%q not among the deleted rows", id)
		}
	}
	rep, code = auditJSON(t, nil, "--config", cfg, "--from", from)
	if code != 1 {
		t.Fatalf("offline audit exit %d after deleting rows, want 1", code)
	}
	checkAudit(t, rep, len(acked), lost, byHour)
	out, errOut, code = cli(t, nil, "backfill", "--config", cfg, "--from", from)
	checkBackfill(t, conn, out+errOut, code, lost, batches)
	if out, _, _ := cli(t, nil, "backfill", "--config", cfg, "--from", from); !strings.Contains(out, "acme/pg: wrote 0 backfill batches") {
		t.Fatalf("second offline backfill:\n%s", out)
	}
	if rep, code := auditJSON(t, nil, "--config", cfg, "--from", from); code != 0 {
		t.Fatalf("offline audit after backfill: exit %d, %+v", code, rep.Results)
	}
	if pgT, err = readPG(t.Context(), pg.admin); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, pgT.IDs, acked)
	checkSame(t, pgT, lakeT)
}

// TestPostgresCrashExactlyOnce SIGKILLs the real process again and again
// while it loads PostgreSQL in small batches (each time after a random
// number of events loaded since its start, so kills land during COPY and
// commit) and a client retries every batch until acknowledged. At the end
// every acknowledged event is in `events` exactly once, PostgreSQL's tables
// equal the lake's (read by the independent reader), and every row belongs
// to exactly one recorded batch.
func TestPostgresCrashExactlyOnce(t *testing.T) {
	t.Parallel()
	const kills = 20
	dir := t.TempDir()
	lake := stores(t, dir)["local"](t)
	pg := newPGDB(t)
	port := testenv.FreePort(t)
	p := startProc(t, pgConfig(t, dir, port, lake.url, pg.destURL(t, ""), 50), port)
	load := startLoad(t, p.addr, testKey, "pgcrash-", 4, 20, 25*time.Millisecond)

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	for k := range kills {
		// Kill once this start has loaded a random number of events (or
		// after 20s regardless).
		threshold := float64(1 + rng.IntN(400))
		probe.Poll(20*time.Second, func() bool { return p.dest("acme", "pg").Delivered >= threshold })
		p.kill()
		t.Logf("kill %d (after %v events loaded since start): %d events acknowledged so far", k+1, threshold, len(load.Acked()))
		p.start()
	}
	want := load.Stop()
	if len(want) < 1000 {
		t.Fatalf("only %d events acknowledged; the test did not exercise much", len(want))
	}
	pgT, lakeT := waitBoth(t, p, pg, lake, want)
	checkOnce(t, pgT.IDs, want)
	checkSame(t, pgT, lakeT)
	checkPGBatches(t, testenv.PostgresConn(t, pg.admin))
	t.Logf("%d kills, %d events, %d pages, %d sessions", kills, len(want), len(pgT.Pages), len(pgT.Sessions))
	p.stop()
}

// TestPostgresOutage breaks the PostgreSQL destination of an org that also
// has a lake, under load, for a while, and mends it: its own PostgreSQL
// server stopped (immediate shutdown) and restarted, and on the script's
// server INSERT revoked from the destination's role and granted again. See
// testPGOutage for what holds.
func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	t.Run("stopped", func(t *testing.T) {
		srv := testenv.StartPostgres(t)
		testenv.PostgresExec(t, srv.URL("postgres"), "CREATE DATABASE acme")
		pg := pgDB{admin: srv.URL("acme"), name: "acme"}
		testPGOutage(t, pg, pg.destURL(t, ""), "", srv.Stop, srv.Start)
	})
	t.Run("revoked", func(t *testing.T) {
		// A role of the test's own, which creates and so owns the schema:
		// dropped after the database (cleanups run last-in first-out).
		role := strings.ReplaceAll(testenv.BucketName(t), "-", "_")
		testenv.PostgresExec(t, testenv.PostgresURL(t), "CREATE ROLE "+role+" LOGIN")
		t.Cleanup(func() { testenv.PostgresExec(t, testenv.PostgresURL(t), "DROP ROLE "+role) })
		pg := newPGDB(t)
		testenv.PostgresExec(t, pg.admin, "GRANT CREATE ON DATABASE "+pg.name+" TO "+role)
		testPGOutage(t, pg, pg.destURL(t, role), "permission denied",
			func() {
				testenv.PostgresExec(t, pg.admin, "REVOKE INSERT ON ALL TABLES IN SCHEMA "+pgSchema+" FROM "+role)
			},
			func() {
				testenv.PostgresExec(t, pg.admin, "GRANT INSERT ON ALL TABLES IN SCHEMA "+pgSchema+" TO "+role)
			})
	})
}

// percentile returns the q-quantile of sorted durations (0 when none).
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

// testPGOutage runs org acme with a lake and destination pg at destURL (in
// the database of pg) under load, breaks pg with begin for at least 10s and
// mends it with end. Meanwhile ingest keeps answering 200 with its normal
// latency (the p99 of acknowledged batches during the outage against the
// one before, with a generous bound: ingest must not wait for the
// warehouse), the lake keeps delivering, pg reports down (its status naming
// errText, when not empty) and the age of its oldest undelivered event
// grows. Afterwards PostgreSQL holds every acknowledged event exactly once
// and equals the lake.
func testPGOutage(t *testing.T, pg pgDB, destURL, errText string, begin, end func()) {
	const outage = 10 * time.Second
	dir := t.TempDir()
	lake := stores(t, dir)["local"](t)
	port := testenv.FreePort(t)
	p := startProc(t, pgConfig(t, dir, port, lake.url, destURL, 200), port)
	loadStart := time.Now()
	load := startLoad(t, p.addr, testKey, "pgout-", 2, 20, 50*time.Millisecond)
	probe.Until(t, 60*time.Second, "5s of load, with delivery to PostgreSQL", func() (bool, string) {
		d := p.dest("acme", "pg")
		return d.Up == 1 && d.Delivered > 0 && time.Since(loadStart) >= 5*time.Second, d.String()
	})

	begin()
	broke := time.Now()
	ackedAtBreak := len(load.Acked())
	var sawDown bool
	var maxAge float64
	var lastErr string
	probe.Until(t, outage+30*time.Second, "pg down, its age growing, for the whole outage", func() (bool, string) {
		d := p.dest("acme", "pg")
		if d.Up == 0 {
			sawDown = true
		}
		maxAge = max(maxAge, d.Age)
		if errText != "" && !strings.Contains(lastErr, errText) {
			for _, s := range status(t, p.addr).Destinations {
				if s.Name == "pg" {
					lastErr = s.LastError
				}
			}
		}
		return sawDown && maxAge > 2 && (errText == "" || strings.Contains(lastErr, errText)) && time.Since(broke) >= outage,
			fmt.Sprintf("%s; seen down=%v, max age %.1fs, last error %q", d, sawDown, maxAge, lastErr)
	})
	// The lake keeps delivering: what was acknowledged while pg was down
	// reaches it before pg is back.
	heldBack := load.Acked()
	root := strings.TrimPrefix(lake.url, "file://")
	probe.Until(t, 2*time.Minute, "the lake holding what was acknowledged during the outage", func() (bool, string) {
		m := missingIn(readLake(t, root).eventCounts(), heldBack)
		return m == 0, fmt.Sprintf("%d of %d missing from the lake", m, len(heldBack))
	})
	if d := p.dest("acme", "pg"); d.Up != 0 {
		t.Fatalf("pg up again before it was mended: %s", d)
	}
	during := p.dest("acme", "pg")
	end()
	mended := time.Now()
	t.Logf("pg broken for %v: %s, %d events acknowledged meanwhile, last error %q",
		mended.Sub(broke).Round(time.Millisecond), during, len(heldBack)-ackedAtBreak, lastErr)

	probe.Until(t, 3*time.Minute, "pg up and loading again", func() (bool, string) {
		d := p.dest("acme", "pg")
		return d.Up == 1 && d.Delivered > during.Delivered, d.String()
	})
	t.Logf("pg loading again %v after it was mended", time.Since(mended).Round(time.Millisecond))
	want := load.Stop()
	if n := load.non200.Load(); n > 0 {
		t.Errorf("ingest answered non-200 %d times (last: %s); it must keep accepting while a destination is down", n, load.last)
	}
	before, in := load.latencies(loadStart, broke), load.latencies(broke, mended)
	if len(before) < 20 || len(in) < 20 {
		t.Fatalf("%d batches acknowledged before the outage and %d during it: too few to compare", len(before), len(in))
	}
	p99b, p99d := percentile(before, 0.99), percentile(in, 0.99)
	t.Logf("ingest latency (batch of 20, until acknowledged): before p50 %v p99 %v (%d), during the outage p50 %v p99 %v max %v (%d)",
		percentile(before, 0.5), p99b, len(before), percentile(in, 0.5), p99d, in[len(in)-1], len(in))
	// Generous (2 noisy cores, other tests beside): ingest that waited for
	// the warehouse would take the outage's seconds (or the client's 10s
	// timeout).
	if bound := max(5*time.Second, 10*p99b); p99d > bound {
		t.Errorf("ingest p99 %v during the outage, %v before: above %v, ingest waits for the destination", p99d, p99b, bound)
	}

	pgT, lakeT := waitBoth(t, p, pg, lake, want)
	checkOnce(t, pgT.IDs, want)
	checkSame(t, pgT, lakeT)
	checkPGBatches(t, testenv.PostgresConn(t, pg.admin))
	t.Logf("%d events, max age of pg during the outage %.1fs, %v failed attempts", len(want), maxAge, p.dest("acme", "pg").Failures)
	p.stop()
}
