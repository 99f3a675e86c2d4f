package postgres

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/destinationtest"
	"github.com/tidemark/tidemark/internal/testenv"
)

// Every migration only adds: a table, an index or a column, each "IF NOT
// EXISTS", so that it never drops or rewrites a user's data, columns or
// views, and running it twice is harmless. The one exception: an index that
// an earlier migration created (tidemark's own) may be dropped.
func TestMigrationsOnlyAdd(t *testing.T) {
	add := regexp.MustCompile(`^(CREATE TABLE IF NOT EXISTS |CREATE INDEX IF NOT EXISTS (\S+) ON |ALTER TABLE \S+ ADD COLUMN IF NOT EXISTS )`)
	drop := regexp.MustCompile(`^DROP INDEX IF EXISTS "s"\.(\S+)$`)
	created := map[string]bool{}
	for i, m := range migrations {
		if m.version != i+1 {
			t.Errorf("migration %d has version %d: versions are 1, 2, 3...", i, m.version)
		}
		for _, stmt := range m.stmts(`"s"`) {
			if d := drop.FindStringSubmatch(stmt); d != nil {
				if !created[d[1]] {
					t.Errorf("migration %d: %q drops an index no earlier migration created", m.version, stmt)
				}
				continue
			}
			a := add.FindStringSubmatch(stmt)
			if a == nil || strings.Contains(strings.ToUpper(stmt), "DROP") {
				t.Errorf("migration %d: %q does not only add", m.version, firstLine(stmt))
				continue
			}
			if a[2] != "" {
				created[a[2]] = true
			}
		}
	}
}

// An older schema, with a user's own column and view on it, is upgraded by
// a newer tidemark: the migrations after its version run, and the user's
// column, view and rows stay.
func TestUpgradeKeepsUsersColumnsAndViews(t *testing.T) {
	dbURL, _ := testenv.PostgresDB(t)
	d := newDest(t, dbURL, "up")
	defer d.Close()
	b := destinationtest.Batch(1, 1, 5, 3)
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	testenv.PostgresExec(t, dbURL,
		`ALTER TABLE up.events ADD COLUMN my_note text DEFAULT 'mine'`,
		`CREATE VIEW up.my_view AS SELECT event_id, my_note, properties FROM up.events`,
	)
	// A newer tidemark: one more migration, adding a column and an index.
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	migrations = append(migrations[:len(migrations):len(migrations)], migration{len(saved) + 1, func(s string) []string {
		return []string{
			"ALTER TABLE " + s + ".events ADD COLUMN IF NOT EXISTS added_later text",
			"CREATE INDEX IF NOT EXISTS events_added_later ON " + s + ".events (added_later)",
		}
	}})
	if err := d.Probe(t.Context()); err != nil {
		t.Fatal(err)
	}
	conn := testenv.PostgresConn(t, dbURL)
	var n, notes int
	var version string
	err := conn.QueryRow(t.Context(), `SELECT count(*), count(*) FILTER (WHERE v.my_note = 'mine' AND e.added_later IS NULL),
		(SELECT value FROM up._tidemark_meta WHERE key = 'schema_version') FROM up.my_view v JOIN up.events e USING (event_id)`).Scan(&n, &notes, &version)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(b.Events) || notes != n || version != fmt.Sprint(len(saved)+1) {
		t.Errorf("after the upgrade: %d rows through the view, %d with the user's column; schema_version %s; want %d, %d, %d",
			n, notes, version, len(b.Events), len(b.Events), len(saved)+1)
	}
	// Loading still works, the user's column taking its default.
	if err := d.Write(t.Context(), destinationtest.Batch(1, 6, 9, 2)); err != nil {
		t.Fatal(err)
	}

	// An older tidemark refuses the newer schema.
	migrations = saved
	err = d.Probe(t.Context())
	if err == nil || !d.Permanent(err) || !strings.Contains(err.Error(), "newer than this tidemark") {
		t.Errorf("probe of a newer schema: %v; want a permanent error saying it is newer", err)
	}
}

// A schema made by version 1 (btree indexes on received_at and
// _tidemark_batch), holding rows and a user's own index, upgrades to the
// current version: tidemark's replaced indexes go, the user's stays, and
// the read-back finds the same rows before and after, and rows loaded after.
func TestUpgradeFromVersion1(t *testing.T) {
	dbURL, _ := testenv.PostgresDB(t)
	saved := migrations
	t.Cleanup(func() { migrations = saved })
	migrations = saved[:1]
	d := newDest(t, dbURL, "v1")
	defer d.Close()
	b1, b2 := destinationtest.Batch(0, 1, 1, 12), destinationtest.Batch(1, 3, 4, 5)
	for _, b := range []*destination.Batch{b1, b2} {
		if err := d.Write(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	testenv.PostgresExec(t, dbURL, `CREATE INDEX my_index ON v1.events (event_name)`)
	migrations = saved
	if err := d.Probe(t.Context()); err != nil {
		t.Fatal(err)
	}
	b3 := destinationtest.Batch(0, 2, 2, 7)
	if err := d.Write(t.Context(), b3); err != nil {
		t.Fatal(err)
	}
	conn := testenv.PostgresConn(t, dbURL)
	rows, err := conn.Query(t.Context(), `SELECT indexname FROM pg_indexes WHERE schemaname = 'v1' AND tablename IN ('events', 'pages', 'sessions') ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	indexes, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"events_pkey", "events_received_at_brin", "events_session_id", "my_index", "pages_pkey", "pages_session_id", "sessions_pkey", "sessions_started_at"}
	if !slices.Equal(indexes, want) {
		t.Errorf("indexes after the upgrade: %v, want %v", indexes, want)
	}
	var hours []time.Time
	for _, b := range []*destination.Batch{b1, b2, b3} {
		for _, e := range b.Events {
			hours = append(hours, time.UnixMicro(e.ReceivedAt).UTC().Truncate(time.Hour))
		}
	}
	slices.SortFunc(hours, time.Time.Compare)
	got, _ := readBack(t, d, slices.Compact(hours))
	if want := idsByHour(b1, b2, b3); !equalSets(got, want) {
		t.Errorf("read back after the upgrade %v, want %v", got, want)
	}
}

// A role that may not create the schema is told which statement failed and
// what to grant; once the schema exists, with the tables and the grants the
// documentation gives, the same role starts and loads without CREATE.
func TestPrivileges(t *testing.T) {
	base := testenv.PostgresURL(t)
	role := "tidemark_" + strings.ReplaceAll(testenv.BucketName(t), "-", "_")
	role = role[:min(len(role), 63)]
	testenv.PostgresExec(t, base, "CREATE ROLE "+role+" LOGIN")
	t.Cleanup(func() { testenv.PostgresExec(t, base, "DROP ROLE IF EXISTS "+role) }) // after the database is dropped
	dbURL, db := testenv.PostgresDB(t)
	roleURL := strings.Replace(dbURL, "postgres@", role+"@", 1)
	if roleURL == dbURL {
		t.Fatal("cannot make the role's URL: no postgres@ in the database URL")
	}

	d, err := Open(t.Context(), withSchema(roleURL, "acme"), destination.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	owner := destination.Owner{Org: "acme", Destination: "pg", ID: "00112233445566778899aabbccddeeff"}
	d.SetOwner(owner)
	err = d.Probe(t.Context())
	var pe *pgconn.PgError
	want := "GRANT CREATE ON DATABASE " + db + " TO " + role
	if !errors.As(err, &pe) || pe.Code != "42501" || !d.Permanent(err) ||
		!strings.Contains(err.Error(), "CREATE SCHEMA") || !strings.Contains(err.Error(), want) {
		t.Fatalf("probe without CREATE: %v; want a permanent 42501 error naming CREATE SCHEMA and %q", err, want)
	}

	// The owner (here the superuser) creates the schema and the tables and
	// grants what the documentation says; the role has no CREATE anywhere.
	admin := newDest(t, dbURL, "acme")
	admin.Close()
	testenv.PostgresExec(t, dbURL,
		"GRANT USAGE ON SCHEMA acme TO "+role,
		"GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA acme TO "+role,
		// The claim: the role is this owner.
		`UPDATE acme._tidemark_meta SET value = '{"org":"acme","destination":"pg","id":"00112233445566778899aabbccddeeff"}' WHERE key = 'owner'`,
	)
	if err := d.Probe(t.Context()); err != nil {
		t.Fatalf("probe of existing tables without CREATE: %v", err)
	}
	b := destinationtest.Batch(3, 1, 2, 4)
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatalf("write without CREATE: %v", err)
	}
	if last, ok, err := d.Committed(t.Context(), 3); err != nil || !ok || last != 2 {
		t.Errorf("Committed = %d, %v, %v; want 2", last, ok, err)
	}

	// Without INSERT, the error says what to grant.
	testenv.PostgresExec(t, dbURL, "REVOKE INSERT ON acme.events FROM "+role)
	err = d.Write(t.Context(), destinationtest.Batch(3, 3, 4, 4))
	want = "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA acme TO " + role
	if !d.Permanent(err) || !strings.Contains(err.Error(), "COPY events") || !strings.Contains(err.Error(), want) {
		t.Errorf("write without INSERT: %v; want a permanent error naming COPY events and %q", err, want)
	}
}
