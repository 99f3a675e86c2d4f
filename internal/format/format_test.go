package format

import (
	"bytes"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/parquet-go/parquet-go"
)

func ptr[T any](v T) *T { return &v }

var t0 = time.Date(2024, 5, 1, 13, 4, 5, 123456000, time.UTC).UnixMicro()

func testEvents(n int) []EventRow {
	rows := make([]EventRow, n)
	for i := range rows {
		r := EventRow{
			EventID:      fmt.Sprintf("msg-%06d", i),
			OrgID:        "org_1",
			DeviceID:     fmt.Sprintf("dev-%d", i%7),
			SessionID:    fmt.Sprintf("s-%d", i%7),
			Type:         "track",
			EventTime:    t0 + int64(i)*1_000_003,
			ReceivedAt:   t0 + int64(i)*1_000_000,
			LogPartition: 3,
			LogOffset:    int64(1000 + i),
		}
		if i%2 == 0 { // every other row has every optional column set
			r.AnonymousID = ptr(fmt.Sprintf("anon-%d", i%7))
			r.UserID = ptr("") // empty, not nil
			r.PageID = ptr(fmt.Sprintf("pg-%d", i))
			r.EventName = ptr(`Clicked "Buy" <now> & \later/` + "\n\t\u2028é\x01")
			r.ClientTimestamp = ptr(t0 - 5)
			r.SentAt = ptr(int64(-1_500_000))   // before 1970
			r.OriginalTimestamp = ptr(int64(0)) // 1970-01-01T00:00:00Z: a time, not null
			r.URL = ptr("https://example.com/a?b=1&c=<2>")
			r.Path = ptr("/a")
			r.Referrer = ptr("https://ref.example/")
			r.Title = ptr("Title ✓")
			r.UserAgent = ptr("Mozilla/5.0")
			r.GroupID = ptr("g1")
			r.PreviousID = ptr("p0")
			r.Properties = ptr(`{"plan":"pro","n":1.5,"tags":["a","b"],"nested":{"x":null}}`)
			r.Traits = ptr(`{}`)
			r.Context = ptr(`{"ip":"10.0.0.1"}`)
		}
		rows[i] = r
	}
	return rows
}

func testPages() []PageRow {
	return []PageRow{
		{PageID: "pg-1", SessionID: "s-1", OrgID: "org_1", DeviceID: "dev-1", UserID: ptr("u1"), Type: "page",
			Name: ptr("Home"), URL: ptr("https://example.com/"), Path: ptr("/"), Title: ptr("Home"), Referrer: ptr(""),
			StartedAt: t0, EndedAt: t0 + 30_000_000, DurationMS: 30_000, EventCount: 4, EndReason: "next_page"},
		{PageID: "pg-2", SessionID: "s-1", OrgID: "org_1", DeviceID: "dev-1", Type: "screen",
			StartedAt: t0 + 30_000_000, EndedAt: t0 + 30_000_000, EndReason: "idle"},
	}
}

func testSessions() []SessionRow {
	return []SessionRow{
		{SessionID: "s-1", OrgID: "org_1", DeviceID: "dev-1", UserID: ptr("u1"), StartedAt: t0, EndedAt: t0 + 60_000_000,
			DurationMS: 60_000, PageCount: 2, EventCount: 9, EntryURL: ptr("https://example.com/"), ExitURL: ptr("https://example.com/x")},
		{SessionID: "s-2", OrgID: "org_1", DeviceID: "dev-2", StartedAt: t0, EndedAt: t0},
	}
}

func allCodecs(t testing.TB) []Codec {
	t.Helper()
	var cs []Codec
	for _, fc := range [][2]string{{"parquet", "zstd"}, {"parquet", "snappy"}, {"parquet", "gzip"}, {"parquet", "none"}, {"ndjson", ""}} {
		c, err := ParseCodec(fc[0], fc[1])
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	return cs
}

func encode[T Row](t testing.TB, c Codec, rows []T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, c, rows); err != nil {
		t.Fatalf("%s: %v", c, err)
	}
	return buf.Bytes()
}

func roundTrip[T Row](t *testing.T, rows []T) {
	t.Helper()
	for _, c := range allCodecs(t) {
		data := encode(t, c, rows)
		if enc, err := Detect(data); err != nil || enc != c.Encoding() {
			t.Errorf("%s: Detect = %q, %v", c, enc, err)
		}
		got, err := Read[T](data)
		if err != nil {
			t.Fatalf("%s: read: %v", c, err)
		}
		if len(got) == 0 && len(rows) == 0 {
			continue
		}
		if !reflect.DeepEqual(got, rows) {
			for i := range min(len(got), len(rows)) {
				if !reflect.DeepEqual(got[i], rows[i]) {
					t.Fatalf("%s %s: row %d:\n got %+v\nwant %+v", c, Table[T](), i, got[i], rows[i])
				}
			}
			t.Fatalf("%s %s: got %d rows, want %d", c, Table[T](), len(got), len(rows))
		}
	}
}

func TestRoundTrip(t *testing.T) {
	t.Run("events", func(t *testing.T) { roundTrip(t, testEvents(101)) })
	t.Run("pages", func(t *testing.T) { roundTrip(t, testPages()) })
	t.Run("sessions", func(t *testing.T) { roundTrip(t, testSessions()) })
	t.Run("empty", func(t *testing.T) {
		roundTrip(t, []EventRow{})
		roundTrip(t, []PageRow(nil))
		roundTrip(t, []SessionRow{})
	})
}

func TestDeterministic(t *testing.T) {
	// Odd row counts leave partly filled bit-packed bytes (definition levels),
	// where stale pooled memory would show up.
	for _, n := range []int{1, 7, 13, 501} {
		rows := testEvents(n)
		for _, c := range allCodecs(t) {
			want := encode(t, c, rows)
			var wg sync.WaitGroup
			outs := make([][]byte, 16)
			for i := range outs {
				wg.Go(func() {
					var buf bytes.Buffer
					if err := Write(&buf, c, testEvents(n)); err != nil {
						t.Error(err)
					}
					outs[i] = buf.Bytes()
				})
			}
			wg.Wait()
			for i, got := range outs {
				if !bytes.Equal(got, want) {
					t.Fatalf("%s, %d rows: encoding %d differs (%d vs %d bytes)", c, n, i, len(got), len(want))
				}
			}
		}
	}
	// Encoding something else in between must not leak into the next file.
	a := encode(t, Default, testSessions())
	encode(t, Default, testEvents(333))
	if b := encode(t, Default, testSessions()); !bytes.Equal(a, b) {
		t.Fatal("sessions file changed after encoding events")
	}
}

func TestParquetMetadata(t *testing.T) {
	for _, c := range allCodecs(t)[:4] {
		data := encode(t, c, testEvents(3))
		f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		md := f.Metadata()
		if md.CreatedBy != createdBy {
			t.Errorf("%s: created_by = %q", c, md.CreatedBy)
		}
		if len(md.KeyValueMetadata) != 0 {
			t.Errorf("%s: key/value metadata %v", c, md.KeyValueMetadata)
		}
		if len(md.RowGroups) != 1 || md.NumRows != 3 {
			t.Errorf("%s: %d row groups, %d rows", c, len(md.RowGroups), md.NumRows)
		}
		want := map[Compression]string{Zstd: "ZSTD", Snappy: "SNAPPY", Gzip: "GZIP", None: "UNCOMPRESSED"}[c.Compression()]
		for _, col := range md.RowGroups[0].Columns {
			if got := col.MetaData.Codec.String(); got != want {
				t.Errorf("%s: column %v codec %s", c, col.MetaData.PathInSchema, got)
			}
		}
	}
}

// The json tags (NDJSON keys) and the parquet column names must agree, so
// that both encodings of a table have the same columns.
func TestColumnNames(t *testing.T) {
	check := func(t *testing.T, typ reflect.Type) {
		schema := parquet.SchemaOf(reflect.New(typ).Elem().Interface())
		fields := schema.Fields()
		cols := columnsOf(typ)
		if len(fields) != len(cols) {
			t.Fatalf("%s: %d parquet columns, %d json keys", typ, len(fields), len(cols))
		}
		for i, f := range fields {
			if f.Name() != cols[i].name {
				t.Errorf("%s column %d: parquet %q, json %q", typ, i, f.Name(), cols[i].name)
			}
		}
	}
	check(t, reflect.TypeFor[EventRow]())
	check(t, reflect.TypeFor[PageRow]())
	check(t, reflect.TypeFor[SessionRow]())
}

func TestNDJSONLayout(t *testing.T) {
	c, _ := ParseCodec("ndjson", "")
	row := SessionRow{SessionID: "s<1>", OrgID: "o", DeviceID: "d", UserID: nil, StartedAt: t0, EndedAt: 0,
		DurationMS: 5, PageCount: 1, EventCount: 2, EntryURL: ptr("https://x/?a=1&b=2")}
	data := encode(t, c, []SessionRow{row})

	// Fixed gzip header: no name, no mtime, no extra flags.
	if data[3] != 0 || !bytes.Equal(data[4:8], []byte{0, 0, 0, 0}) {
		t.Errorf("gzip header flags %#x, mtime % x", data[3], data[4:8])
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	text, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"session_id":"s<1>","org_id":"o","device_id":"d","user_id":null,` +
		`"started_at":"2024-05-01T13:04:05.123456Z","ended_at":"1970-01-01T00:00:00.000000Z",` +
		`"duration_ms":5,"page_count":1,"event_count":2,"entry_url":"https://x/?a=1&b=2","exit_url":null}` + "\n"
	if string(text) != want {
		t.Errorf("line:\n got %s\nwant %s", text, want)
	}
}

func TestNDJSONJSONColumns(t *testing.T) {
	c, _ := ParseCodec("ndjson", "")
	rows := testEvents(1)
	rows[0].Properties = ptr("{\n  \"a\": [1, 2],\n  \"b\": \"x y\"\n}")
	got, err := ReadEvents(encode(t, c, rows))
	if err != nil {
		t.Fatal(err)
	}
	if *got[0].Properties != `{"a":[1,2],"b":"x y"}` {
		t.Errorf("properties = %s, want compacted", *got[0].Properties)
	}

	rows[0].Properties = ptr(`{"a":`)
	if err := Write(&bytes.Buffer{}, c, rows); err == nil || !strings.Contains(err.Error(), "column properties") {
		t.Errorf("invalid JSON: err = %v", err)
	}
	rows[0].Properties = nil
	rows[0].ReceivedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMicro()
	if err := Write(&bytes.Buffer{}, c, rows); err == nil || !strings.Contains(err.Error(), "received_at") {
		t.Errorf("year 10000: err = %v", err)
	}
}

func gz(t *testing.T, s string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(s))
	zw.Close()
	return buf.Bytes()
}

func TestReadErrors(t *testing.T) {
	valid := `{"session_id":"s","org_id":"o","device_id":"d","user_id":null,"started_at":"2024-05-01T13:04:05Z",` +
		`"ended_at":"2024-05-01T13:04:05Z","duration_ms":0,"page_count":0,"event_count":0,"entry_url":null,"exit_url":null}`
	if _, err := ReadSessions(gz(t, valid+"\n")); err != nil {
		t.Fatalf("valid line: %v", err)
	}
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"empty":       {nil, "not a parquet or gzip file"},
		"text":        {[]byte("hello world"), "not a parquet or gzip file"},
		"bad parquet": {[]byte("PAR1\x00\x00\x00\x00\x04\x00\x00\x00PAR1"), "read parquet sessions"},
		// Found by FuzzReadEvents: parquet-go allocated the claimed footer size.
		"footer bomb":    {[]byte("PAR1\x15\x00\x15p\xff\xff\xff\x7fPAR1"), "footer length 2147483647 exceeds the file"},
		"truncated gzip": {gz(t, valid)[:20], "read ndjson"},
		"unknown column": {gz(t, strings.Replace(valid, `"org_id"`, `"org"`, 1)), `unknown column "org"`},
		"missing column": {gz(t, strings.Replace(valid, `,"exit_url":null`, ``, 1)), "exit_url: missing"},
		"null required":  {gz(t, strings.Replace(valid, `"org_id":"o"`, `"org_id":null`, 1)), "org_id: null"},
		"bad time":       {gz(t, strings.Replace(valid, `"started_at":"2024-05-01T13:04:05Z"`, `"started_at":"yesterday"`, 1)), "started_at"},
		"bad int":        {gz(t, strings.Replace(valid, `"page_count":0`, `"page_count":1.5`, 1)), "page_count"},
		"line 2":         {gz(t, valid+"\n{"), "line 2"},
		"not an object":  {gz(t, "[1]"), "line 1"},
		"no rows":        {gz(t, ""), ""},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ReadSessions(tc.data)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	ev := encode(t, mustCodec(t, "ndjson", ""), testEvents(1))
	zr, _ := gzip.NewReader(bytes.NewReader(ev))
	line, _ := io.ReadAll(zr)
	big := strings.Replace(string(line), `"log_partition":3`, `"log_partition":3000000000`, 1)
	if _, err := ReadEvents(gz(t, big)); err == nil || !strings.Contains(err.Error(), "log_partition") {
		t.Errorf("int32 overflow: err = %v", err)
	}
}

func mustCodec(t testing.TB, enc, comp string) Codec {
	t.Helper()
	c, err := ParseCodec(enc, comp)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseCodec(t *testing.T) {
	for _, tc := range []struct {
		enc, comp string
		want      string // Codec.String, or the error
		ext       string
	}{
		{"", "", "parquet+zstd", ".parquet"},
		{"parquet", "", "parquet+zstd", ".parquet"},
		{"parquet", "snappy", "parquet+snappy", ".parquet"},
		{"parquet", "gzip", "parquet+gzip", ".parquet"},
		{"parquet", "none", "parquet+none", ".parquet"},
		{"ndjson", "", "ndjson+gzip", ".ndjson.gz"},
		{"ndjson", "gzip", "ndjson+gzip", ".ndjson.gz"},
		{"parquet", "lz4", `unknown parquet compression "lz4"`, ""},
		{"ndjson", "zstd", `compression "zstd" is not available for ndjson`, ""},
		{"csv", "", `unknown format "csv"`, ""},
		{"Parquet", "", `unknown format "Parquet"`, ""},
	} {
		c, err := ParseCodec(tc.enc, tc.comp)
		if tc.ext == "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseCodec(%q, %q) err = %v, want %q", tc.enc, tc.comp, err, tc.want)
			}
			continue
		}
		if err != nil || c.String() != tc.want || c.Ext() != tc.ext {
			t.Errorf("ParseCodec(%q, %q) = %s %s, %v", tc.enc, tc.comp, c, c.Ext(), err)
		}
	}
	if err := Write(&bytes.Buffer{}, Codec{}, testPages()); err == nil {
		t.Error("zero Codec: no error")
	}
	if Table[EventRow]() != "events" || Table[PageRow]() != "pages" || Table[SessionRow]() != "sessions" {
		t.Error("Table names")
	}
}

func FuzzReadEvents(f *testing.F) {
	for _, c := range allCodecs(f) {
		f.Add(encode(f, c, testEvents(3)))
	}
	f.Add([]byte("PAR1PAR1"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rows, err := ReadEvents(data)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same rows.
		for _, c := range allCodecs(t)[:1] {
			var buf bytes.Buffer
			if err := Write(&buf, c, rows); err != nil {
				return
			}
			again, err := ReadEvents(buf.Bytes())
			if err != nil {
				t.Fatalf("re-read: %v", err)
			}
			if len(rows) > 0 && !reflect.DeepEqual(rows, again) {
				t.Fatal("re-encoded rows differ")
			}
		}
	})
}

// BenchmarkWriteEventsParquet encodes 10k events of about 300 bytes each.
func BenchmarkWriteEventsParquet(b *testing.B) {
	rows := make([]EventRow, 10_000)
	var size int64
	for i := range rows {
		rows[i] = EventRow{
			EventID:      fmt.Sprintf("01HZ%022d", i),
			OrgID:        "org_1",
			DeviceID:     fmt.Sprintf("anon-%08d", i%500),
			AnonymousID:  ptr(fmt.Sprintf("anon-%08d", i%500)),
			SessionID:    fmt.Sprintf("sess-%08d", i%800),
			PageID:       ptr(fmt.Sprintf("page-%08d", i%2000)),
			Type:         "track",
			EventName:    ptr([]string{"Clicked", "Viewed", "Signed Up"}[i%3]),
			EventTime:    t0 + int64(i)*1000,
			ReceivedAt:   t0 + int64(i)*1000,
			URL:          ptr(fmt.Sprintf("https://example.com/products/%d", i%300)),
			Path:         ptr(fmt.Sprintf("/products/%d", i%300)),
			UserAgent:    ptr("Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0"),
			Properties:   ptr(fmt.Sprintf(`{"sku":"SKU-%05d","price":%d.99,"qty":%d}`, i%1000, i%90, i%5)),
			Context:      ptr(`{"library":{"name":"analytics.js","version":"4.1.0"}}`),
			LogPartition: 3,
			LogOffset:    int64(i),
		}
		r := &rows[i]
		size += int64(len(r.EventID) + len(r.OrgID) + len(r.DeviceID) + len(*r.AnonymousID) + len(r.SessionID) +
			len(*r.PageID) + len(r.Type) + len(*r.EventName) + len(*r.URL) + len(*r.Path) + len(*r.UserAgent) + len(*r.Properties) +
			len(*r.Context) + 3*8 + 4)
	}
	var buf bytes.Buffer
	b.SetBytes(size)
	b.ReportAllocs()
	for b.Loop() {
		buf.Reset()
		if err := Write(&buf, Default, rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(size)/float64(len(rows)), "B/row")
	b.ReportMetric(float64(buf.Len())/float64(size), "ratio")
}

// parquet-go's own reflection reader must see the same rows: a second reader
// that does not share our column plan.
func TestParquetCrossRead(t *testing.T) {
	rows := testEvents(37)
	for _, c := range allCodecs(t)[:4] {
		data := encode(t, c, rows)
		got, err := parquet.Read[EventRow](bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, rows) {
			t.Fatalf("%s: parquet-go reads different rows", c)
		}
	}
}

// Files of other schema versions: extra columns are ignored, missing optional
// columns read as nil, a missing required column is an error.
func TestParquetSchemaEvolution(t *testing.T) {
	type newer struct {
		SessionID string  `parquet:"session_id"`
		OrgID     string  `parquet:"org_id"`
		DeviceID  string  `parquet:"device_id"`
		Country   *string `parquet:"country,optional"`
		StartedAt int64   `parquet:"started_at,timestamp(microsecond)"`
		EndedAt   int64   `parquet:"ended_at,timestamp(microsecond)"`
		Duration  int64   `parquet:"duration_ms"`
		Pages     int64   `parquet:"page_count"`
		Events    int64   `parquet:"event_count"`
	}
	var buf bytes.Buffer
	if err := parquet.Write(&buf, []newer{{SessionID: "s", OrgID: "o", DeviceID: "d", Country: ptr("NZ"), StartedAt: t0, EndedAt: t0 + 1, Events: 3}}); err != nil {
		t.Fatal(err)
	}
	got, err := ReadSessions(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	want := SessionRow{SessionID: "s", OrgID: "o", DeviceID: "d", StartedAt: t0, EndedAt: t0 + 1, EventCount: 3}
	if len(got) != 1 || !reflect.DeepEqual(got[0], want) {
		t.Fatalf("got %+v", got)
	}

	type older struct {
		SessionID string `parquet:"session_id"`
	}
	buf.Reset()
	if err := parquet.Write(&buf, []older{{SessionID: "s"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSessions(buf.Bytes()); err == nil || !strings.Contains(err.Error(), "org_id: missing") {
		t.Fatalf("missing required column: err = %v", err)
	}

	type wrongType struct {
		SessionID int64 `parquet:"session_id"`
	}
	buf.Reset()
	if err := parquet.Write(&buf, []wrongType{{SessionID: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSessions(buf.Bytes()); err == nil || !strings.Contains(err.Error(), "session_id: physical type") {
		t.Fatalf("wrong type: err = %v", err)
	}
}
