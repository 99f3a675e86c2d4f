package postgres

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/destinationtest"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/testenv"
)

// docSQL returns the sql block of docs/destinations.md that contains marker.
func docSQL(t *testing.T, marker string) string {
	t.Helper()
	raw, err := os.ReadFile("../../../docs/destinations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		if strings.Contains(m[1], marker) {
			return m[1]
		}
	}
	t.Fatalf("docs/destinations.md has no sql block containing %q", marker)
	return ""
}

// The documented queries run as written, on tables tidemark loaded, and
// give the right answers; the documented role recipe gives a role that
// loads its schema and cannot see another's.
func TestDocumentedSQL(t *testing.T) {
	dbURL, _ := testenv.PostgresDB(t)
	d := newDest(t, dbURL, "tidemark_acme")
	defer d.Close()
	// Three sessions today: page, click, sign-up; page, click; page.
	now := time.Now().UTC().Add(-time.Hour).UnixMicro()
	b := &destination.Batch{ID: destination.BatchID(0, 1, 1), Org: "acme", FirstSeq: 1, LastSeq: 1}
	steps := [][]string{{"page", "Clicked", "Signed Up"}, {"page", "Clicked"}, {"page"}}
	for s, names := range steps {
		sid := "s" + string(rune('1'+s))
		for i, name := range names {
			at := now + int64(s)*1e6 + int64(i)*1000
			e := format.EventRow{EventID: sid + "-" + name, OrgID: "acme", DeviceID: "d" + sid, SessionID: sid, Type: "track",
				EventTime: at, ReceivedAt: at, LogOffset: int64(len(b.Events))}
			if name == "page" {
				e.Type = "page"
			} else {
				e.EventName = &name
			}
			b.Events = append(b.Events, e)
		}
		b.Sessions = append(b.Sessions, format.SessionRow{SessionID: sid, OrgID: "acme", DeviceID: "d" + sid,
			StartedAt: now, EndedAt: now + int64(s+1)*60e6, DurationMS: int64(s+1) * 60000, EventCount: int64(len(names))})
	}
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	conn := testenv.PostgresConn(t, dbURL)

	var viewed, clicked, signedUp int
	if err := conn.QueryRow(t.Context(), docSQL(t, "-- A funnel")).Scan(&viewed, &clicked, &signedUp); err != nil {
		t.Fatal(err)
	}
	if viewed != 3 || clicked != 2 || signedUp != 1 {
		t.Errorf("funnel %d, %d, %d; want 3, 2, 1", viewed, clicked, signedUp)
	}
	var day time.Time
	var sessions int
	var median float64
	if err := conn.QueryRow(t.Context(), docSQL(t, "-- Sessions per day")).Scan(&day, &sessions, &median); err != nil {
		t.Fatal(err)
	}
	if sessions != 3 || median != 120 {
		t.Errorf("sessions per day: %v %d sessions, median %v s; want 3, 120", day, sessions, median)
	}
}

// The documented recipe, one role and one schema per org, run for two
// orgs: each loads its own schema, neither reads nor writes the other's.
func TestDocumentedRoles(t *testing.T) {
	base := testenv.PostgresURL(t)
	recipe := docSQL(t, "CREATE ROLE tidemark_acme")
	suffix := strings.ReplaceAll(testenv.BucketName(t), "-", "_")
	suffix = suffix[max(0, len(suffix)-20):]
	roles := []string{"tm_a_" + suffix, "tm_b_" + suffix}
	t.Cleanup(func() { // after the database is dropped
		for _, r := range roles {
			testenv.PostgresExec(t, base, "DROP ROLE IF EXISTS "+r)
		}
	})
	dbURL, _ := testenv.PostgresDB(t)
	dests := make([]*Postgres, len(roles))
	for i, r := range roles {
		testenv.PostgresExec(t, dbURL, strings.ReplaceAll(recipe, "tidemark_acme", r))
		d, err := Open(t.Context(), withSchema(strings.Replace(dbURL, "postgres@", r+"@", 1), r), destination.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		d.SetOwner(destination.Owner{Org: r, Destination: "pg", ID: "0123456789abcdef0123456789abcdef"})
		if err := d.Probe(t.Context()); err != nil {
			t.Fatalf("role %s: %v", r, err)
		}
		if err := d.Write(t.Context(), destinationtest.Batch(i, 1, 1, 3)); err != nil {
			t.Fatalf("role %s: %v", r, err)
		}
		dests[i] = d
	}
	for i, d := range dests {
		other := roles[1-i]
		for _, sql := range []string{
			"SELECT count(*) FROM " + other + ".events",
			"INSERT INTO " + other + "._tidemark_meta VALUES ('x', 'y')",
			"CREATE TABLE " + other + ".mine (x int)",
		} {
			_, err := d.pool.Exec(t.Context(), sql)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "42501" {
				t.Errorf("role %s: %s: %v; want permission denied", roles[i], sql, err)
			}
		}
	}
}
