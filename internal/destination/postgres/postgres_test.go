package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/destinationtest"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/testenv"
)

// newDest opens and probes a destination on a fresh schema of dbURL.
func newDest(t *testing.T, dbURL, schema string) *Postgres {
	t.Helper()
	d, err := Open(t.Context(), withSchema(dbURL, schema), destination.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d.SetOwner(destination.Owner{Org: "org_test", Destination: "pg", ID: "0123456789abcdef0123456789abcdef"})
	if err := d.Probe(t.Context()); err != nil {
		d.Close()
		t.Fatal(err)
	}
	return d
}

func withSchema(dbURL, schema string) string {
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	return dbURL + sep + "schema=" + schema
}

func TestConformance(t *testing.T) {
	dbURL, _ := testenv.PostgresDB(t)
	var n atomic.Int32
	destinationtest.Run(t, func(t *testing.T) destination.Destination {
		return newDest(t, dbURL, fmt.Sprintf("conformance_%02d", n.Add(1)))
	})
}

// The tables' columns are the lake's, in the lake's order, with the lake's
// nullability, followed by tidemark's own.
func TestColumnsAreTheLakes(t *testing.T) {
	check := func(name string, typ reflect.Type, cols []string, nulls []bool) {
		t.Helper()
		var want []string
		var wantNull []bool
		for f := range typ.Fields() {
			tag := f.Tag.Get("parquet")
			n, opts, _ := strings.Cut(tag, ",")
			want = append(want, n)
			wantNull = append(wantNull, strings.Contains(","+opts+",", ",optional,"))
		}
		if !reflect.DeepEqual(cols, want) || !reflect.DeepEqual(nulls, wantNull) {
			t.Errorf("%s columns %v (nullable %v), the lake's %v (nullable %v)", name, cols, nulls, want, wantNull)
		}
	}
	check("events", reflect.TypeFor[format.EventRow](), colNames(eventColumns), nullable(eventColumns))
	check("pages", reflect.TypeFor[format.PageRow](), colNames(pageColumns), nullable(pageColumns))
	check("sessions", reflect.TypeFor[format.SessionRow](), colNames(sessionColumns), nullable(sessionColumns))
}

func colNames[T any](cols []column[T]) []string {
	n := names(cols)
	return n[:len(n)-2]
}

func nullable[T any](cols []column[T]) []bool {
	out := make([]bool, len(cols))
	for i, c := range cols {
		out[i] = c.null
	}
	return out
}

// Every field of every table comes back from PostgreSQL as written: the
// binary COPY encoding of each type, NULLs included.
func TestRoundTrip(t *testing.T) {
	dbURL, _ := testenv.PostgresDB(t)
	d := newDest(t, dbURL, "roundtrip")
	defer d.Close()
	b := destinationtest.Batch(2, 1, 3, 4)
	full := fullRows(b)
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	conn := testenv.PostgresConn(t, dbURL)
	gotEvents := readRows[format.EventRow](t, conn, `SELECT * FROM roundtrip.events ORDER BY log_offset`, eventColumns)
	canonicalJSON(b.Events)
	if !reflect.DeepEqual(gotEvents, b.Events) {
		t.Errorf("events:\n got %s\nwant %s", show(gotEvents), show(b.Events))
	}
	gotPages := readRows[format.PageRow](t, conn, `SELECT * FROM roundtrip.pages ORDER BY page_id`, pageColumns)
	if !reflect.DeepEqual(gotPages, b.Pages) {
		t.Errorf("pages:\n got %s\nwant %s", show(gotPages), show(b.Pages))
	}
	gotSessions := readRows[format.SessionRow](t, conn, `SELECT * FROM roundtrip.sessions ORDER BY session_id`, sessionColumns)
	if !reflect.DeepEqual(gotSessions, b.Sessions) {
		t.Errorf("sessions:\n got %s\nwant %s", show(gotSessions), show(b.Sessions))
	}
	if !full {
		t.Error("the batch does not set every field of some row")
	}
	var batch string
	var escaped *string
	if err := conn.QueryRow(t.Context(), `SELECT DISTINCT _tidemark_batch, _tidemark_escaped::text FROM roundtrip.events`).Scan(&batch, &escaped); err != nil {
		t.Fatal(err)
	}
	if batch != b.ID || escaped != nil {
		t.Errorf("_tidemark_batch %q, _tidemark_escaped %v; want %q, NULL", batch, escaped, b.ID)
	}
}

// fullRows sets every field of the batch's first event, page and session
// (and leaves the nullable ones of the others NULL), with values that test
// the encodings: negative times, times before 2000, non-ASCII text, nested
// JSON. It reports whether some row of each table has every field set.
func fullRows(b *destination.Batch) bool {
	s := func(v string) *string { return &v }
	i := func(v int64) *int64 { return &v }
	e := &b.Events[0]
	e.AnonymousID, e.UserID, e.EventName = s("anon-é"), s("user-1"), s("Signed Up ✓")
	e.ClientTimestamp, e.SentAt, e.OriginalTimestamp = i(-1_000_001), i(946684799_999_999), i(e.EventTime-1)
	e.URL, e.Path, e.Referrer, e.Title, e.UserAgent = s("https://x.test/a?b=c"), s("/a"), s("https://r.test/"), s("Title \"quoted\""), s("UA/1.0")
	e.GroupID, e.PreviousID = s("g1"), s("prev")
	e.Properties, e.Traits, e.Context = s(`{"a":[1,2.5,"x",null,true],"b":{"c":"ü"}}`), s(`{"plan":"pro"}`), s(`{"ip":"127.0.0.1"}`)
	e.LogPartition = int32(b.Partition)
	for j := range b.Events[1:] {
		b.Events[1+j].Properties = nil
	}
	p := &b.Pages[0]
	p.UserID, p.Name, p.URL, p.Path, p.Title, p.Referrer = s("user-1"), s("Home"), s("https://x.test/"), s("/"), s("Home"), s("https://r.test/")
	se := &b.Sessions[0]
	se.UserID, se.EntryURL, se.ExitURL = s("user-1"), s("https://x.test/"), s("https://x.test/bye")
	return allSet(*e) && allSet(*p) && allSet(*se)
}

func allSet(v any) bool {
	rv := reflect.ValueOf(v)
	for i := range rv.NumField() {
		if f := rv.Field(i); f.Kind() == reflect.Pointer && f.IsNil() {
			return false
		}
	}
	return true
}

// readRows reads rows of a SELECT * into T by the columns' names, checking
// that the table has exactly cols and tidemark's columns, in order.
func readRows[T any](t *testing.T, conn *pgx.Conn, sql string, cols []column[T]) []T {
	t.Helper()
	rows, err := conn.Query(t.Context(), sql)
	if err != nil {
		t.Fatal(err)
	}
	var fields []string
	for _, f := range rows.FieldDescriptions() {
		fields = append(fields, f.Name)
	}
	if want := names(cols); !reflect.DeepEqual(fields, want) {
		rows.Close()
		t.Fatalf("columns %v, want %v", fields, want)
	}
	typ := reflect.TypeFor[T]()
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) {
		var v T
		vals, err := r.Values()
		if err != nil {
			return v, err
		}
		rv := reflect.ValueOf(&v).Elem()
		for i := range typ.NumField() {
			setField(rv.Field(i), vals[i])
		}
		return v, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// setField sets a format row's field from a value pgx decoded.
func setField(f reflect.Value, v any) {
	if v == nil {
		return // NULL: a nil pointer
	}
	var x reflect.Value
	switch v := v.(type) {
	case map[string]any, []any:
		x = reflect.ValueOf(jsonText(v))
	default:
		if tm, ok := v.(interface{ UnixMicro() int64 }); ok {
			x = reflect.ValueOf(tm.UnixMicro())
		} else {
			x = reflect.ValueOf(v)
		}
	}
	if f.Kind() == reflect.Pointer {
		p := reflect.New(f.Type().Elem())
		p.Elem().Set(x.Convert(f.Type().Elem()))
		f.Set(p)
		return
	}
	f.Set(x.Convert(f.Type()))
}

func show[T any](rows []T) string {
	var sb strings.Builder
	for _, r := range rows {
		rv := reflect.ValueOf(r)
		sb.WriteString("{")
		for i := range rv.NumField() {
			f := rv.Field(i)
			if f.Kind() == reflect.Pointer {
				if f.IsNil() {
					sb.WriteString("nil ")
					continue
				}
				f = f.Elem()
			}
			fmt.Fprintf(&sb, "%v ", f.Interface())
		}
		sb.WriteString("} ")
	}
	return sb.String()
}

// A place claimed by another destination is refused, by Probe and Owned.
func TestClaim(t *testing.T) {
	dbURL, _ := testenv.PostgresDB(t)
	d := newDest(t, dbURL, "claimed")
	defer d.Close()
	if err := d.Owned(t.Context()); err != nil {
		t.Fatalf("Owned by its owner: %v", err)
	}
	other, err := Open(t.Context(), withSchema(dbURL, "claimed"), destination.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetOwner(destination.Owner{Org: "org_other", Destination: "pg", ID: "fedcba9876543210fedcba9876543210"})
	for name, err := range map[string]error{"Probe": other.Probe(t.Context()), "Owned": other.Owned(t.Context())} {
		if !errors.Is(err, destination.ErrClaimed) || !other.Permanent(err) || !strings.Contains(err.Error(), `org "org_test"`) {
			t.Errorf("%s of another owner's schema: %v; want a permanent ErrClaimed naming the owner", name, err)
		}
	}
	// A second probe of the owner changes nothing.
	if err := d.Probe(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// jsonText is v as canonical JSON (keys sorted, no spaces).
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// canonicalJSON rewrites the JSON columns of events as jsonText does, as
// jsonb normalises them.
func canonicalJSON(events []format.EventRow) {
	for i := range events {
		for _, p := range []**string{&events[i].Properties, &events[i].Traits, &events[i].Context} {
			if *p == nil {
				continue
			}
			var v any
			if err := json.Unmarshal([]byte(**p), &v); err != nil {
				panic(err)
			}
			s := jsonText(v)
			*p = &s
		}
	}
}
