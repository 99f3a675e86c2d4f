package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// The PostgreSQL warehouse as docs/warehouse.md tells users to set it up
// and query it: the real binary loads two orgs into one real PostgreSQL,
// each into the schema of a role created with the documentation's own SQL,
// and the documented queries, schema reference and DuckDB recipe are run
// and checked against what tidemark really loaded.

const warehouseDoc = "docs/warehouse.md"

// warehouseNames makes the documentation's SQL runnable in a test: the
// documented org (acme) becomes org, and the role, schema and database
// names become unique to this run (roles are global to the server, which
// other tests share). Nothing else of the SQL changes.
type warehouseNames struct {
	org, suffix, db string
}

func (n warehouseNames) sql(doc string) string {
	if n.org != "acme" {
		doc = strings.ReplaceAll(doc, "acme", n.org)
	}
	return strings.NewReplacer(
		"tidemark_"+n.org, n.schema(),
		n.org+"_analyst", n.analyst(),
		"analytics", n.db,
	).Replace(doc)
}

func (n warehouseNames) schema() string  { return "tidemark_" + n.org + "_" + n.suffix }
func (n warehouseNames) analyst() string { return n.org + "_analyst_" + n.suffix }

// roleURL is dbURL (a superuser URL of the test's database) with user role
// (the test server trusts local connections: no password).
func roleURL(t testing.TB, dbURL, role string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(role)
	return u.String()
}

// warehouseOrg is one org of the test: its names, its data and what it
// acknowledged.
type warehouseOrg struct {
	warehouseNames
	key     string
	lake    string
	acked   map[string]bool
	devices int // one session each
}

// TestWarehouseDocConfig: the documentation's destination config loads,
// with the password from the variable password_env names.
func TestWarehouseDocConfig(t *testing.T) {
	yml := docBlock(t, warehouseDoc, "yaml", "password_env:")
	t.Setenv("ACME_WRITE_KEY", "acme-doc-write-key-0001")
	t.Setenv("TIDEMARK_ACME_PG_PASSWORD", "not-a-real-password")
	cfg := filepath.Join(t.TempDir(), "tidemark.yaml")
	if err := os.WriteFile(cfg, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := config.Load(cfg)
	if err != nil {
		t.Fatalf("%s's destination config: %v", warehouseDoc, err)
	}
	var found bool
	for _, d := range loaded.Orgs[0].Destinations {
		if strings.HasPrefix(d.URL, "postgres://") {
			found = true
			if d.PasswordEnv != "TIDEMARK_ACME_PG_PASSWORD" {
				t.Errorf("password_env = %q", d.PasswordEnv)
			}
		}
	}
	if !found {
		t.Fatalf("%s's config has no postgres:// destination", warehouseDoc)
	}
}

// TestWarehouseDocs: two orgs (acme with the documented funnel's events,
// globex with others) on one PostgreSQL database, each org's role, schema
// and analyst role created by the documentation's SQL as written, each org
// delivering to a lake and to its schema. Then:
//   - each org's events, pages and sessions are in its own schema only and
//     equal its lake (same event, session and page ids), and tidemark
//     created nothing outside the two schemas;
//   - neither org's role nor its analyst can read, write or even list the
//     other's tables (PostgreSQL's errors are checked), and an analyst
//     cannot write its own org's tables;
//   - the documented queries, run as written by acme's analyst, give the
//     rows the events imply;
//   - the documented schema reference (columns, types, nullability, keys,
//     indexes) is what tidemark created;
//   - the documented DuckDB recipe, run as written on acme's lake, gives
//     the same funnel as PostgreSQL.
func TestWarehouseDocs(t *testing.T) {
	t.Parallel() // mostly waits for sessions to close
	suffix := randomSuffix(t)
	orgs := []*warehouseOrg{
		{warehouseNames: warehouseNames{org: "acme", suffix: suffix}, key: "acme-warehouse-key-0001"},
		{warehouseNames: warehouseNames{org: "globex", suffix: suffix}, key: "globex-warehouse-key-01"},
	}
	// Registered before the database exists, so it runs after its drop:
	// roles are global, and a role that owns objects cannot be dropped.
	base := testenv.PostgresURL(t)
	t.Cleanup(func() {
		var stmts []string
		for _, o := range orgs {
			stmts = append(stmts, "DROP ROLE IF EXISTS "+o.analyst(), "DROP ROLE IF EXISTS "+o.schema())
		}
		testenv.PostgresExec(t, base, stmts...)
	})
	dbURL, db := testenv.PostgresDB(t)
	pgURL, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	var orgYAML strings.Builder
	orgYAML.WriteString("orgs:\n")
	for i, o := range orgs {
		o.db = db
		if i == 0 {
			// Where the documented DuckDB recipe looks for the lake.
			o.lake = filepath.Join(dir, "tidemark-data", "lake")
			testenv.PostgresExec(t, dbURL, o.sql(docBlock(t, warehouseDoc, "sql", "Once per database")))
		} else {
			o.lake = filepath.Join(dir, o.org+"-lake")
		}
		testenv.PostgresExec(t, dbURL,
			o.sql(docBlock(t, warehouseDoc, "sql", "One org: a login role")),
			o.sql(docBlock(t, warehouseDoc, "sql", "Read-only access to acme")))
		fmt.Fprintf(&orgYAML, `  - id: %s
    write_keys: [%q]
    destinations:
      - name: lake
        url: file://%s
        flush: {max_events: 300, max_age: 1s}
      - name: warehouse
        url: postgres://%s@%s/%s?sslmode=disable&schema=%s
        password_env: TIDEMARK_%s_PG_PASSWORD
        flush: {max_events: 300, max_age: 1s}
`, o.org, o.key, o.lake, o.schema(), pgURL.Host, db, o.schema(), strings.ToUpper(o.org))
	}
	port := testenv.FreePort(t)
	cfg := orgsConfig(t, dir, port, orgYAML.String())
	// The test server trusts local connections; the variables must still be set.
	p := startProcEnv(t, cfg, port, []string{"TIDEMARK_ACME_PG_PASSWORD=change-me", "TIDEMARK_GLOBEX_PG_PASSWORD=change-me"})

	for i, evs := range [][]whEvent{funnelEvents(), globexEvents()} {
		orgs[i].acked, orgs[i].devices = sendWarehouseEvents(t, p.addr, orgs[i].key, evs)
	}

	admin := testenv.PostgresConn(t, dbURL)
	lakes := map[string]lake{}
	for _, o := range orgs {
		probe.Until(t, 120*time.Second, o.org+"'s events, pages and sessions in its lake and its schema", func() (bool, string) {
			l := readLake(t, o.lake)
			pg := readPGTables(t, admin, o.schema())
			lakes[o.org] = l
			wantSessions := o.devices
			ok := len(l.Events) == len(o.acked) && len(l.Sessions) == wantSessions &&
				len(pg.events) == len(o.acked) && len(pg.sessions) == wantSessions && len(pg.pages) == len(l.Pages)
			return ok, fmt.Sprintf("lake %d events %d sessions; postgres %d events %d pages %d sessions; want %d events %d sessions",
				len(l.Events), len(l.Sessions), len(pg.events), len(pg.pages), len(pg.sessions), len(o.acked), wantSessions)
		})
	}
	p.stop()

	t.Run("OwnSchemaOnly", func(t *testing.T) {
		for _, o := range orgs {
			pg := readPGTables(t, admin, o.schema())
			l := lakes[o.org]
			var lakeEvents, lakePages, lakeSessions []string
			for _, e := range l.Events {
				lakeEvents = append(lakeEvents, eventKey(e.EventID, e.OrgID, e.SessionID, e.PageID))
				if !o.acked[e.EventID] {
					t.Errorf("%s's lake holds %s, not acknowledged to %s", o.org, e.EventID, o.org)
				}
			}
			for _, pr := range l.Pages {
				lakePages = append(lakePages, pr.PageID+" "+pr.SessionID+" "+pr.OrgID)
			}
			for _, s := range l.Sessions {
				lakeSessions = append(lakeSessions, s.SessionID+" "+s.OrgID)
			}
			sameSet(t, o.org+" events (id, org, session, page): lake vs "+o.schema(), lakeEvents, pg.events)
			sameSet(t, o.org+" pages (id, session, org): lake vs "+o.schema(), lakePages, pg.pages)
			sameSet(t, o.org+" sessions (id, org): lake vs "+o.schema(), lakeSessions, pg.sessions)
		}
		// tidemark created its tables in the two schemas and nowhere else.
		var tables []string
		rows, err := admin.Query(t.Context(), `SELECT table_schema || '.' || table_name FROM information_schema.tables
			WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		tables, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, o := range orgs {
			for _, tb := range []string{"_tidemark_batches", "_tidemark_meta", "events", "pages", "sessions"} {
				want = append(want, o.schema()+"."+tb)
			}
		}
		sort.Strings(want)
		if !slices.Equal(tables, want) {
			t.Errorf("tables in the database:\n%v\nwant exactly:\n%v", tables, want)
		}
	})

	t.Run("NeitherSeesTheOther", func(t *testing.T) {
		for i, o := range orgs {
			other := orgs[1-i]
			for _, role := range []string{o.schema(), o.analyst()} {
				conn := testenv.PostgresConn(t, roleURL(t, dbURL, role))
				// Its own org's events: readable.
				var n int
				if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM "+o.schema()+".events").Scan(&n); err != nil || n != len(o.acked) {
					t.Errorf("%s reads its own org's events: %d, %v; want %d", role, n, err, len(o.acked))
				}
				// The other org's tables: not even listed.
				if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", other.schema()).Scan(&n); err != nil || n != 0 {
					t.Errorf("%s lists %d of %s's tables (%v), want 0", role, n, other.schema(), err)
				}
				denied := "permission denied for schema " + other.schema()
				for _, stmt := range []string{
					"SELECT count(*) FROM " + other.schema() + ".events",
					"SELECT * FROM " + other.schema() + "._tidemark_batches",
					"INSERT INTO " + other.schema() + ".events (event_id) VALUES ('forged')",
					"UPDATE " + other.schema() + ".sessions SET user_id = 'forged'",
					"DELETE FROM " + other.schema() + ".pages",
					"CREATE TABLE " + other.schema() + ".planted (a int)",
					"DROP TABLE " + other.schema() + ".events",
				} {
					checkDenied(t, conn, role, stmt, denied)
				}
			}
			// An analyst reads but never writes its own org's tables.
			conn := testenv.PostgresConn(t, roleURL(t, dbURL, o.analyst()))
			checkDenied(t, conn, o.analyst(), "DELETE FROM "+o.schema()+".events", "permission denied for table events")
			checkDenied(t, conn, o.analyst(), "INSERT INTO "+o.schema()+"._tidemark_batches (batch_id) VALUES ('forged')", "permission denied for table _tidemark_batches")
		}
		// Nothing the attempts did changed a table.
		for _, o := range orgs {
			if pg := readPGTables(t, admin, o.schema()); len(pg.events) != len(o.acked) || len(pg.pages) != len(lakes[o.org].Pages) || len(pg.sessions) != len(lakes[o.org].Sessions) {
				t.Errorf("%s changed: %d events %d pages %d sessions", o.schema(), len(pg.events), len(pg.pages), len(pg.sessions))
			}
		}
	})

	acme := orgs[0]
	analyst := testenv.PostgresConn(t, roleURL(t, dbURL, acme.analyst()))
	var pgFunnel map[string]string
	t.Run("Queries", func(t *testing.T) {
		l := lakes["acme"]
		funnel := pgQuery(t, analyst, acme.sql(docBlock(t, warehouseDoc, "sql", "Funnel: product view")))
		if len(funnel) != 1 {
			t.Fatalf("funnel: %v", funnel)
		}
		pgFunnel = funnel[0]
		if want := map[string]string{"viewed_product": "4", "added_to_cart": "2", "ordered": "1"}; !sameRow(pgFunnel, want) {
			t.Errorf("funnel = %v, want %v", pgFunnel, want)
		}

		days := pgQuery(t, analyst, acme.sql(docBlock(t, warehouseDoc, "sql", "-- Sessions per day.")))
		want := lakeSessionsPerDay(l.Sessions)
		if len(days) != len(want) {
			t.Fatalf("sessions per day: %v, want %d days %v", days, len(want), want)
		}
		for i, d := range days {
			w := want[i]
			avg, err := parseFloat(d["avg_seconds"])
			if d["day"] != w.day || d["sessions"] != fmt.Sprint(w.sessions) || d["pages"] != fmt.Sprint(w.pages) || err != nil || math.Abs(avg-w.avgSeconds) > 0.05+1e-9 {
				t.Errorf("sessions per day row %d = %v, want day %s sessions %d pages %d avg_seconds %.3f", i, d, w.day, w.sessions, w.pages, w.avgSeconds)
			}
		}

		session := pgQuery(t, analyst, acme.sql(docBlock(t, warehouseDoc, "sql", "Events of one session")))
		var got []string
		for _, r := range session {
			got = append(got, r["type"]+" "+r["event_name"]+" "+r["path"]+" "+r["properties"])
		}
		if wantRows := []string{
			`page <nil> /product/a {"path":"/product/a","title":"Product A","url":"https://shop.test/product/a"}`,
			`track Added to cart <nil> {"sku":"A-1"}`,
			`track Order completed <nil> {"order":"o-1"}`,
		}; !slices.Equal(got, wantRows) {
			t.Errorf("events of user-42's latest session:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantRows, "\n"))
		}

		hour := pgQuery(t, analyst, acme.sql(docBlock(t, warehouseDoc, "sql", "Last hour's events")))
		got = nil
		for _, r := range hour {
			got = append(got, fmt.Sprintf("%s %s %s %s", r["type"], r["event_name"], r["events"], r["skus"]))
		}
		if wantRows := []string{"page <nil> 6 0", "track Added to cart 4 3", "track Order completed 1 0"}; !slices.Equal(got, wantRows) {
			t.Errorf("last hour's events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantRows, "\n"))
		}

		escaped := pgQuery(t, analyst, acme.sql(docBlock(t, warehouseDoc, "sql", "Rows whose title had to be altered")))
		if len(escaped) != 1 || escaped[0]["event_id"] != "acme-nul-page" || escaped[0]["title"] != "a\uFFFDb" || escaped[0]["original_title"] != hex.EncodeToString([]byte("a\x00b")) {
			t.Errorf("escaped titles = %q, want acme-nul-page with title %q and original_title %x", escaped, "a\uFFFDb", "a\x00b")
		}
	})

	t.Run("SchemaReference", func(t *testing.T) {
		raw, err := os.ReadFile(filepath.Join("..", "..", warehouseDoc))
		if err != nil {
			t.Fatal(err)
		}
		doc := string(raw)
		lakeCols := map[string][]string{
			"events":   parquetColumns(reflect.TypeFor[format.EventRow]()),
			"pages":    parquetColumns(reflect.TypeFor[format.PageRow]()),
			"sessions": parquetColumns(reflect.TypeFor[format.SessionRow]()),
		}
		for _, table := range []string{"events", "pages", "sessions", "_tidemark_batches"} {
			section := docSection(t, doc, table)
			documented := docColumns(section)
			actual := pgColumns(t, admin, acme.schema(), table)
			if !slices.Equal(documented, actual) {
				t.Errorf("%s: %s documents the columns\n%s\nPostgreSQL has\n%s", table, warehouseDoc, strings.Join(documented, "\n"), strings.Join(actual, "\n"))
			}
			if cols, ok := lakeCols[table]; ok {
				var names []string
				for _, c := range documented {
					names = append(names, strings.Fields(c)[0])
				}
				if want := append(cols, "_tidemark_batch", "_tidemark_escaped"); !slices.Equal(names, want) {
					t.Errorf("%s: documented columns %v, want the lake's in its order, then tidemark's: %v", table, names, want)
				}
			}
			docIdx := docIndexes(t, section)
			if pgIdx := pgIndexes(t, admin, acme.schema(), table); !slices.Equal(docIdx, pgIdx) {
				t.Errorf("%s: %s documents the keys and indexes %v, PostgreSQL has %v", table, warehouseDoc, docIdx, pgIdx)
			}
		}
		// The index the upgrade guide says to build beforehand is the one
		// tidemark creates: run on a schema at the current version, it
		// changes nothing.
		before := pgIndexes(t, admin, acme.schema(), "events")
		if _, err := admin.Exec(context.Background(), acme.sql(docBlock(t, warehouseDoc, "sql", "CREATE INDEX CONCURRENTLY"))); err != nil {
			t.Fatalf("the upgrade guide's CREATE INDEX: %v", err)
		}
		if after := pgIndexes(t, admin, acme.schema(), "events"); !slices.Equal(before, after) {
			t.Errorf("the upgrade guide's CREATE INDEX changed the indexes of events from %v to %v: not the index tidemark creates", before, after)
		}
	})

	t.Run("DuckDBRecipe", func(t *testing.T) {
		out := testenv.RunNode(t, "duckdb.mjs", "--cwd", dir, "--sql="+docBlock(t, warehouseDoc, "sql", "read_parquet('tidemark-data/lake/events"))
		var results [][]map[string]any
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			var r struct {
				Rows []map[string]any `json:"rows"`
			}
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("duckdb output %q: %v", line, err)
			}
			results = append(results, r.Rows)
		}
		if len(results) != 6 {
			t.Fatalf("the DuckDB recipe has %d statements, the test expects 6 (3 views, funnel, sessions per day, SKUs)", len(results))
		}
		if f := results[3]; len(f) != 1 || pgFunnel == nil || !sameRow(stringify(f[0]), pgFunnel) {
			t.Errorf("DuckDB funnel on the lake = %v, PostgreSQL's = %v", f, pgFunnel)
		}
		want := lakeSessionsPerDay(lakes["acme"].Sessions)
		if d := results[4]; len(d) != len(want) {
			t.Errorf("DuckDB sessions per day = %v, want %v", d, want)
		} else {
			for i, r := range d {
				s := stringify(r)
				if s["day"] != want[i].day || s["sessions"] != fmt.Sprint(want[i].sessions) || s["pages"] != fmt.Sprint(want[i].pages) {
					t.Errorf("DuckDB sessions per day row %d = %v, want %+v", i, s, want[i])
				}
			}
		}
		var got []string
		for _, r := range results[5] {
			s := stringify(r)
			got = append(got, s["event_name"]+" "+s["events"]+" "+s["skus"])
		}
		if wantRows := []string{"Added to cart 4 3", "Order completed 1 0"}; !slices.Equal(got, wantRows) {
			t.Errorf("DuckDB SKUs per event: %v, want %v", got, wantRows)
		}
	})
}

func randomSuffix(t testing.TB) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// whEvent is one event the test sends: at is its client time in seconds
// after the request's base time (the requests' sentAt is base+60s, so
// event_time keeps this order).
type whEvent struct {
	id, device, user, typ, name string
	at                          int
	props                       map[string]any
}

// funnelEvents are acme's: four devices view a product page (one of them
// only after adding to the cart), two of them then add to the cart, one of
// them then orders; a fifth adds to the cart without viewing a product, a
// sixth views a page whose title holds a NUL character.
func funnelEvents() []whEvent {
	page := func(id, dev, user, path, title string, at int) whEvent {
		return whEvent{id: id, device: dev, user: user, typ: "page", at: at,
			props: map[string]any{"url": "https://shop.test" + path, "path": path, "title": title}}
	}
	track := func(id, dev, user, name string, at int, props map[string]any) whEvent {
		return whEvent{id: id, device: dev, user: user, typ: "track", name: name, at: at, props: props}
	}
	return []whEvent{
		page("acme-1", "dev-1", "user-42", "/product/a", "Product A", 1),
		track("acme-2", "dev-1", "user-42", "Added to cart", 2, map[string]any{"sku": "A-1"}),
		track("acme-3", "dev-1", "user-42", "Order completed", 3, map[string]any{"order": "o-1"}),
		page("acme-4", "dev-2", "", "/product/b", "Product B", 1),
		track("acme-5", "dev-2", "", "Added to cart", 2, map[string]any{"sku": "B-1"}),
		page("acme-6", "dev-3", "", "/product/c", "Product C", 1),
		track("acme-7", "dev-4", "", "Added to cart", 1, map[string]any{"sku": "D-1"}),
		page("acme-8", "dev-4", "", "/product/d", "Product D", 2),
		page("acme-9", "dev-5", "", "/", "Home", 1),
		track("acme-10", "dev-5", "", "Added to cart", 2, map[string]any{"sku": "A-1"}),
		page("acme-nul-page", "dev-6", "", "/nul", "a\x00b", 1),
	}
}

// globexEvents are globex's: three devices, none of acme's ids.
func globexEvents() []whEvent {
	var evs []whEvent
	for d := range 3 {
		dev := fmt.Sprintf("globex-dev-%d", d)
		evs = append(evs,
			whEvent{id: fmt.Sprintf("globex-%d-page", d), device: dev, typ: "page", at: 1, props: map[string]any{"url": "https://globex.test/", "path": "/"}},
			whEvent{id: fmt.Sprintf("globex-%d-track", d), device: dev, typ: "track", name: "Added to cart", at: 2, props: map[string]any{"sku": "G-1"}})
	}
	return evs
}

// sendWarehouseEvents posts evs in one batch with key and returns their ids
// and how many devices sent them.
func sendWarehouseEvents(t testing.TB, addr, key string, evs []whEvent) (map[string]bool, int) {
	t.Helper()
	base := time.Now().UTC()
	var batch []map[string]any
	ids, devices := map[string]bool{}, map[string]bool{}
	for _, e := range evs {
		devices[e.device] = true
		m := map[string]any{"type": e.typ, "messageId": e.id, "anonymousId": e.device,
			"timestamp": base.Add(time.Duration(e.at) * time.Second).Format(time.RFC3339Nano), "properties": e.props}
		if e.user != "" {
			m["userId"] = e.user
		}
		if e.name != "" {
			m["event"] = e.name
		}
		batch = append(batch, m)
		ids[e.id] = true
	}
	body, _ := json.Marshal(map[string]any{"batch": batch, "sentAt": base.Add(time.Minute).Format(time.RFC3339Nano)})
	if code, resp := postAs(t, addr+"/v1/batch", key, body, false); code != 200 || !strings.Contains(resp, fmt.Sprintf(`"accepted":%d`, len(evs))) {
		t.Fatalf("post %d events: %d %s", len(evs), code, resp)
	}
	return ids, len(devices)
}

func eventKey(id, org, session string, page *string) string {
	p := "<nil>"
	if page != nil {
		p = *page
	}
	return strings.Join([]string{id, org, session, p}, " ")
}

// pgTables is what one schema holds, as the keys OwnSchemaOnly compares.
type pgTables struct {
	events, pages, sessions []string
}

func readPGTables(t testing.TB, conn *pgx.Conn, schema string) pgTables {
	t.Helper()
	var r pgTables
	collect := func(sql string) []string {
		rows, _ := conn.Query(context.Background(), sql) // CollectRows returns its error
		out, err := pgx.CollectRows(rows, pgx.RowTo[string])
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
			return nil // tidemark has not created the table yet
		}
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	s := pgx.Identifier{schema}.Sanitize()
	r.events = collect("SELECT concat_ws(' ', event_id, org_id, session_id, coalesce(page_id, '<nil>')) FROM " + s + ".events")
	r.pages = collect("SELECT concat_ws(' ', page_id, session_id, org_id) FROM " + s + ".pages")
	r.sessions = collect("SELECT concat_ws(' ', session_id, org_id) FROM " + s + ".sessions")
	return r
}

// sameSet fails t unless a and b hold the same strings equally often.
func sameSet(t testing.TB, what string, a, b []string) {
	t.Helper()
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	if !slices.Equal(a, b) {
		t.Errorf("%s differ:\n%s\nvs\n%s", what, strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
}

// checkDenied runs stmt as role and checks PostgreSQL refuses it with
// SQLSTATE 42501 (insufficient_privilege) and a message containing msg.
func checkDenied(t testing.TB, conn *pgx.Conn, role, stmt, msg string) {
	t.Helper()
	_, err := conn.Exec(context.Background(), stmt)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, msg) {
		t.Errorf("as %s: %s\n  got %v\n  want ERROR: %s (SQLSTATE 42501)", role, stmt, err, msg)
		return
	}
	t.Logf("as %s: %s: %s (SQLSTATE %s)", role, stmt, pgErr.Message, pgErr.Code)
}

// pgQuery runs sql and returns its rows with every value as text (see
// pgText).
func pgQuery(t testing.TB, conn *pgx.Conn, sql string) []map[string]string {
	t.Helper()
	rows, err := conn.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s\n%v", sql, err)
	}
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		r := map[string]string{}
		for i, f := range rows.FieldDescriptions() {
			r[f.Name] = pgText(vals[i])
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s\n%v", sql, err)
	}
	return out
}

// pgText formats a value pgx decoded: numerics as their digits, dates
// (and times at midnight UTC) as YYYY-MM-DD, bytea as hex, JSON as
// compact JSON with sorted keys, NULL as <nil>.
func pgText(v any) string {
	switch v := v.(type) {
	case nil:
		return "<nil>"
	case pgtype.Numeric:
		b, _ := v.MarshalJSON()
		return string(b)
	case time.Time:
		if v.Equal(v.Truncate(24 * time.Hour)) {
			return v.UTC().Format(time.DateOnly)
		}
		return v.UTC().Format(time.RFC3339Nano)
	case []byte:
		return hex.EncodeToString(v)
	case map[string]any, []any:
		b, _ := json.Marshal(v)
		return string(b)
	default:
		return fmt.Sprint(v)
	}
}

// stringify is pgText's counterpart for DuckDB's JSON rows.
func stringify(r map[string]any) map[string]string {
	s := map[string]string{}
	for k, v := range r {
		switch v := v.(type) {
		case nil:
			s[k] = "<nil>"
		case string:
			s[k] = v
		default:
			s[k] = fmt.Sprint(v)
		}
	}
	return s
}

func sameRow(a, b map[string]string) bool {
	return reflect.DeepEqual(a, b)
}

func parseFloat(s string) (float64, error) {
	var f float64
	_, err := fmt.Sscan(s, &f)
	return f, err
}

type sessionDay struct {
	day             string
	sessions, pages int64
	avgSeconds      float64
}

// lakeSessionsPerDay is the documented sessions-per-day query computed from
// the lake's session rows.
func lakeSessionsPerDay(sessions []format.SessionRow) []sessionDay {
	byDay := map[string]*sessionDay{}
	var days []string
	for _, s := range sessions {
		day := time.UnixMicro(s.StartedAt).UTC().Format(time.DateOnly)
		d, ok := byDay[day]
		if !ok {
			d = &sessionDay{day: day}
			byDay[day] = d
			days = append(days, day)
		}
		d.sessions++
		d.pages += s.PageCount
		d.avgSeconds += float64(s.DurationMS) / 1000
	}
	sort.Strings(days)
	var out []sessionDay
	for _, day := range days {
		d := *byDay[day]
		d.avgSeconds /= float64(d.sessions)
		out = append(out, d)
	}
	return out
}

// parquetColumns lists the parquet column names of a format row type.
func parquetColumns(rt reflect.Type) []string {
	var cols []string
	for i := range rt.NumField() {
		cols = append(cols, strings.Split(rt.Field(i).Tag.Get("parquet"), ",")[0])
	}
	return cols
}

// docSection returns the text of warehouse.md's "### <table>" section (up
// to the next heading). _tidemark_batches's heading has a suffix.
func docSection(t testing.TB, doc, table string) string {
	t.Helper()
	m := regexp.MustCompile(`(?ms)^### ` + regexp.QuoteMeta(table) + `(?:\n|:[^\n]*\n)(.*?)(?:^#|\z)`).FindStringSubmatch(doc)
	if m == nil {
		t.Fatalf("%s has no section ### %s", warehouseDoc, table)
	}
	return m[1]
}

// docColumns reads a section's column table as "name type NULL|NOT NULL"
// lines, one per column (a row naming several columns, "a, b", is one
// line each). Tables without a null column (_tidemark_batches) give
// "name type".
func docColumns(section string) []string {
	var out []string
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if !strings.HasPrefix(line, "| ") || len(cells) < 3 || strings.TrimSpace(cells[0]) == "column" {
			continue
		}
		typ := strings.TrimSpace(cells[1])
		null := ""
		switch strings.TrimSpace(cells[2]) {
		case "null":
			null = " NULL"
		case "not null":
			null = " NOT NULL"
		}
		for _, name := range strings.Split(cells[0], ",") {
			out = append(out, strings.TrimSpace(name)+" "+typ+null)
		}
	}
	return out
}

// pgColumns lists a table's columns as docColumns does, with PostgreSQL's
// type names shortened to the documentation's; nullability only for the
// three data tables.
func pgColumns(t testing.TB, conn *pgx.Conn, schema, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT column_name, data_type, is_nullable FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position`, schema, table)
	if err != nil {
		t.Fatal(err)
	}
	short := map[string]string{"timestamp with time zone": "timestamptz"}
	var out []string
	for rows.Next() {
		var name, typ, nullable string
		if err := rows.Scan(&name, &typ, &nullable); err != nil {
			t.Fatal(err)
		}
		if s, ok := short[typ]; ok {
			typ = s
		}
		line := name + " " + typ
		if table != "_tidemark_batches" {
			if nullable == "YES" {
				line += " NULL"
			} else {
				line += " NOT NULL"
			}
		}
		out = append(out, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// docIndexes reads "Primary key `(a, b)`; indexes on `(c)`, `(d)` and
// `(e)` (BRIN)." of a section as ["primary key (a, b)", "(c)", "(d)",
// "(e) brin"] (the indexes sorted; an index is a B-tree unless its access
// method follows it in parentheses).
func docIndexes(t testing.TB, section string) []string {
	t.Helper()
	m := regexp.MustCompile("(?s)Primary key `(\\([^)]*\\))`; indexes on (.*?)\\.\n").FindStringSubmatch(section)
	if m == nil {
		t.Fatalf("no \"Primary key `(...)`; indexes on ...\" sentence in:\n%s", section)
	}
	var idx []string
	for _, c := range regexp.MustCompile("`(\\([^)]*\\))`( \\(([A-Za-z]+)\\))?").FindAllStringSubmatch(m[2], -1) {
		if c[3] != "" {
			c[1] += " " + strings.ToLower(c[3])
		}
		idx = append(idx, c[1])
	}
	sort.Strings(idx)
	return append([]string{"primary key " + m[1]}, idx...)
}

// pgIndexes lists a table's primary key and other indexes as docIndexes
// does.
func pgIndexes(t testing.TB, conn *pgx.Conn, schema, table string) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `
		SELECT i.indisprimary, '(' || string_agg(a.attname::text, ', ' ORDER BY k.ord) || ')' ||
			CASE WHEN min(am.amname) = 'btree' THEN '' ELSE ' ' || min(am.amname) END
		FROM pg_index i
		JOIN pg_class ic ON ic.oid = i.indexrelid
		JOIN pg_am am ON am.oid = ic.relam
		JOIN pg_class c ON c.oid = i.indrelid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
		JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
		WHERE n.nspname = $1 AND c.relname = $2
		GROUP BY i.indexrelid, i.indisprimary`, schema, table)
	if err != nil {
		t.Fatal(err)
	}
	var pk string
	var idx []string
	for rows.Next() {
		var primary bool
		var cols string
		if err := rows.Scan(&primary, &cols); err != nil {
			t.Fatal(err)
		}
		if primary {
			pk = "primary key " + cols
		} else {
			idx = append(idx, cols)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(idx)
	return append([]string{pk}, idx...)
}
