package testenv

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
)

type pqRow struct {
	MessageID  string    `parquet:"message_id"`
	Seq        int32     `parquet:"seq"`
	Big        int64     `parquet:"big"`
	Score      float64   `parquet:"score"`
	ReceivedAt time.Time `parquet:"received_at,timestamp(microsecond)"`
	UserID     *string   `parquet:"user_id,optional"`
	Tags       []string  `parquet:"tags,list"`
}

func writeParquet(t *testing.T, path string, rows []pqRow, opts ...parquet.WriterOption) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := parquet.WriteFile(path, rows, opts...); err != nil {
		t.Fatalf("writing %s: %v", path, err)
	}
}

// TestReadParquetDir proves the independent reader end to end: Parquet files
// written by parquet-go (ZSTD and SNAPPY) come back with exact values, and
// manifests and hidden files are skipped.
func TestReadParquetDir(t *testing.T) {
	dir := t.TempDir()
	alice := "alice"
	base := time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)
	const big = int64(1)<<53 + 1 // not representable as float64
	events := []pqRow{
		{MessageID: "m-0-0", Seq: 0, Big: big, Score: 1.5, ReceivedAt: base, UserID: &alice, Tags: []string{"a", "b"}},
		{MessageID: "m-0-1", Seq: 1, Big: -big, Score: -0.25, ReceivedAt: base.Add(time.Microsecond), Tags: []string{}},
		{MessageID: "m-1-0", Seq: 2, Big: 0, Score: 3, ReceivedAt: time.Date(1969, 12, 31, 23, 59, 59, 999999000, time.UTC)},
	}
	writeParquet(t, filepath.Join(dir, "events/dt=2026-01-02/hr=03/p00-000000000001-000000000003.parquet"), events,
		parquet.Compression(&parquet.Zstd))
	writeParquet(t, filepath.Join(dir, "pages/dt=2026-01-02/hr=03/p01-000000000001-000000000001.parquet"), events[:1],
		parquet.Compression(&parquet.Snappy))
	// Must be skipped: manifests and uncommitted/hidden files.
	writeParquet(t, filepath.Join(dir, "_manifests/decoy.parquet"), events)
	writeParquet(t, filepath.Join(dir, "events/dt=2026-01-02/hr=03/.tmp-upload.parquet"), events)
	if err := os.WriteFile(filepath.Join(dir, "_manifests/p00.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}

	rows := ReadParquetDirFiles(t, dir)
	if len(rows) != 4 {
		for _, r := range rows {
			t.Logf("%s: %v", r.File, r.Row)
		}
		t.Fatalf("got %d rows, want 4 (3 events + 1 page)", len(rows))
	}
	for i, r := range rows {
		want := "events/dt=2026-01-02/hr=03/p00-000000000001-000000000003.parquet"
		if i == 3 {
			want = "pages/dt=2026-01-02/hr=03/p01-000000000001-000000000001.parquet"
		}
		if r.File != want {
			t.Errorf("row %d file = %q, want %q", i, r.File, want)
		}
	}

	wantRows := []map[string]any{
		{"message_id": "m-0-0", "seq": int64(0), "big": big, "score": 1.5,
			"received_at": "2026-01-02T03:04:05.123456Z", "user_id": "alice", "tags": []any{"a", "b"}},
		{"message_id": "m-0-1", "seq": int64(1), "big": -big, "score": -0.25,
			"received_at": "2026-01-02T03:04:05.123457Z", "user_id": nil, "tags": []any{}},
		{"message_id": "m-1-0", "seq": int64(2), "big": int64(0), "score": int64(3), // 3.0 prints as 3
			"received_at": "1969-12-31T23:59:59.999999Z", "user_id": nil, "tags": []any{}},
		{"message_id": "m-0-0", "seq": int64(0), "big": big, "score": 1.5,
			"received_at": "2026-01-02T03:04:05.123456Z", "user_id": "alice", "tags": []any{"a", "b"}},
	}
	for i, want := range wantRows {
		got := rows[i].Row
		for k, w := range want {
			g, ok := got[k]
			if !ok && w == nil {
				continue // a null may be omitted
			}
			if fmt.Sprintf("%#v", g) != fmt.Sprintf("%#v", w) {
				t.Errorf("row %d %s = %#v, want %#v", i, k, g, w)
			}
		}
	}
	// The timestamps parse back to the written instants.
	for i, r := range rows[:3] {
		ts, err := time.Parse(time.RFC3339Nano, r.Row["received_at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if !ts.Equal(events[i].ReceivedAt) {
			t.Errorf("row %d received_at = %v, want %v", i, ts, events[i].ReceivedAt)
		}
	}

	// ReadParquetDir returns the same rows without files.
	if plain := ReadParquetDir(t, dir); len(plain) != 4 || plain[2]["message_id"] != "m-1-0" {
		t.Errorf("ReadParquetDir = %v", plain)
	}
}

func TestReadParquetDirEmpty(t *testing.T) {
	if rows := ReadParquetDir(t, t.TempDir()); len(rows) != 0 {
		t.Fatalf("got %v, want no rows", rows)
	}
}

func TestReadParquetDirCorruptFileFails(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bad.parquet"), []byte("not parquet at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := RunNodeErr(t, "readparquet.mjs", dir)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("err = %v, want exit status 1; stderr:\n%s", err, stderr)
	}
	if !strings.Contains(string(stderr), "bad.parquet") {
		t.Errorf("stderr does not name the file:\n%s", stderr)
	}
}

func TestDecodeParquetLines(t *testing.T) {
	in := `{"file":"a.parquet","row":{"i":9007199254740993,"u":18446744073709551615,"f":0.5,"e":1e300,"n":{"x":[1,2.5]},"s":"x"}}` + "\n"
	rows, err := decodeParquetLines([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	r := rows[0].Row
	if r["i"] != int64(9007199254740993) || r["u"] != uint64(18446744073709551615) || r["f"] != 0.5 || r["e"] != 1e300 || r["s"] != "x" {
		t.Errorf("row = %#v", r)
	}
	if xs := r["n"].(map[string]any)["x"].([]any); xs[0] != int64(1) || xs[1] != 2.5 {
		t.Errorf("nested = %#v", xs)
	}
	if f, ok := AsFloat64(r["i"]); !ok || f != 9007199254740992 {
		t.Errorf("AsFloat64 = %v %v", f, ok)
	}
}

// collector is a minimal stand-in for tidemark's /v1/batch used only to test
// the harness itself (real collector tests point send.mjs at tidemark).
type collector struct {
	mu       sync.Mutex
	ids      []string
	auth     []string
	status   int
	requests atomic.Int32
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.requests.Add(1)
	if r.Method != http.MethodPost || r.URL.Path != "/v1/batch" {
		http.Error(w, "unexpected "+r.Method+" "+r.URL.Path, http.StatusNotFound)
		return
	}
	if c.status != 0 {
		http.Error(w, "nope", c.status)
		return
	}
	var body struct {
		Batch []struct {
			Type        string `json:"type"`
			MessageID   string `json:"messageId"`
			AnonymousID string `json:"anonymousId"`
		} `json:"batch"`
		WriteKey string `json:"writeKey"`
	}
	data, _ := io.ReadAll(r.Body)
	if err := json.Unmarshal(data, &body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.auth = append(c.auth, r.Header.Get("Authorization"))
	for _, e := range body.Batch {
		c.ids = append(c.ids, e.Type+":"+e.AnonymousID+":"+e.MessageID)
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"success":true}`))
}

func TestSendSegment(t *testing.T) {
	c := &collector{}
	srv := httptest.NewServer(c)
	defer srv.Close()

	res := SendSegment(t, SendOptions{Host: srv.URL, WriteKey: "wk_test", Devices: 3, EventsPerDevice: 5, Prefix: "run1", FlushAt: 4})
	if res.Count != 15 || len(res.Sent) != 15 {
		t.Fatalf("result = %+v, want 15 sent", res)
	}
	if res.Types["page"] != 6 || res.Types["identify"] != 3 || res.Types["track"] != 6 {
		t.Errorf("types = %v, want page 6, identify 3, track 6", res.Types)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var got, want []string
	for _, s := range c.ids {
		got = append(got, s[strings.LastIndex(s, ":")+1:])
	}
	for d := range 3 {
		for i := range 5 {
			want = append(want, fmt.Sprintf("run1-%d-%d", d, i))
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("collector got ids %v, want %v", got, want)
	}
	if !slices.Equal(slices.Sorted(slices.Values(res.Sent)), want) {
		t.Errorf("send.mjs reported %v, want %v", res.Sent, want)
	}
	if !slices.Contains(c.ids, "identify:run1-dev-2:run1-2-1") || !slices.Contains(c.ids, "page:run1-dev-0:run1-0-4") {
		t.Errorf("unexpected event mix: %v", c.ids)
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("wk_test:"))
	for _, a := range c.auth {
		if a != wantAuth {
			t.Errorf("Authorization = %q, want %q", a, wantAuth)
		}
	}
	if len(c.auth) < 4 { // 15 events at flushAt 4
		t.Errorf("%d HTTP requests, want >= 4", len(c.auth))
	}
}

func TestSendSegmentReportsRejection(t *testing.T) {
	c := &collector{status: http.StatusUnauthorized}
	srv := httptest.NewServer(c)
	defer srv.Close()
	o := SendOptions{Host: srv.URL, WriteKey: "bad", Devices: 1, EventsPerDevice: 2}
	stdout, stderr, err := RunNodeErr(t, "send.mjs", o.args()...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("err = %v, want exit status 1; stdout %q stderr:\n%s", err, stdout, stderr)
	}
	if !strings.Contains(string(stderr), "401") {
		t.Errorf("stderr does not mention the 401:\n%s", stderr)
	}
	if len(stdout) != 0 {
		t.Errorf("stdout = %q, want nothing on failure", stdout)
	}
}

func TestFreePortAndWaitHTTP(t *testing.T) {
	port := FreePort(t)
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("FreePort gave %d, which cannot be bound: %v", port, err)
	}
	// Not ready for the first 3 probes: WaitHTTP must keep polling.
	var n atomic.Int32
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) <= 3 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	})}
	go func() { _ = srv.Serve(l) }()
	defer srv.Close()

	WaitHTTP(t, fmt.Sprintf("http://127.0.0.1:%d/healthz", port), 10*time.Second)
	if got := n.Load(); got != 4 {
		t.Errorf("%d probes, want 4", got)
	}
}

func TestWaitHTTPTimesOut(t *testing.T) {
	port := FreePort(t) // nothing listens there
	start := time.Now()
	err := waitHTTP(t.Context(), fmt.Sprintf("http://127.0.0.1:%d/", port), 300*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "not ready after 300ms") {
		t.Fatalf("err = %v, want a timeout naming the URL", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %v, want about 300ms", d)
	}
}

func TestPostgresURLFromEnv(t *testing.T) {
	t.Setenv(EnvPostgresURL, "postgres://postgres@127.0.0.1:1/postgres")
	if got := PostgresURL(t); got != "postgres://postgres@127.0.0.1:1/postgres" {
		t.Errorf("PostgresURL = %q", got)
	}
}

// TestPostgresReachable checks the server that scripts/test.sh starts speaks
// the PostgreSQL protocol (an SSLRequest is answered with 'N': no TLS), without
// needing a driver.
func TestPostgresReachable(t *testing.T) {
	u, err := url.Parse(PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", u.Host, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(conn, b); err != nil {
		t.Fatalf("reading SSLRequest answer: %v", err)
	}
	if b[0] != 'N' {
		t.Errorf("SSLRequest answer = %q, want 'N'", b)
	}
}

// fakeTB records the Fatalf of a missing component.
type fakeTB struct {
	testing.TB
	msg string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func fatalMessage(tb testing.TB, fn func(testing.TB)) string {
	f := &fakeTB{TB: tb}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.msg
}

func TestMissingComponentFailsWithHint(t *testing.T) {
	t.Setenv(EnvNodeDir, "")
	t.Setenv("CI", "")
	msg := fatalMessage(t, func(tb testing.TB) { NodeDir(tb) })
	if !strings.Contains(msg, EnvNodeDir+" is not set") || !strings.Contains(msg, "Run the tests with ./scripts/test.sh") {
		t.Errorf("message = %q", msg)
	}

	t.Setenv("CI", "true")
	t.Setenv(EnvNodeDir, t.TempDir()) // no node_modules
	msg = fatalMessage(t, func(tb testing.TB) { NodeDir(tb) })
	if !strings.Contains(msg, "node_modules lacks") || !strings.Contains(msg, "In CI the tests must run through ./scripts/test.sh") {
		t.Errorf("message = %q", msg)
	}

	t.Setenv(EnvPostgresURL, "")
	msg = fatalMessage(t, func(tb testing.TB) { PostgresURL(tb) })
	if !strings.Contains(msg, EnvPostgresURL+" is not set") {
		t.Errorf("message = %q", msg)
	}
}

func TestPostgresDB(t *testing.T) {
	u, name := PostgresDB(t)
	PostgresExec(t, u, "CREATE TABLE t (x int)", "INSERT INTO t VALUES (1), (2)")
	var n int
	if err := PostgresConn(t, u).QueryRow(context.Background(), "SELECT count(*) FROM t").Scan(&n); err != nil || n != 2 {
		t.Fatalf("count in %s = %d, %v; want 2", name, n, err)
	}
	var db string
	if err := PostgresConn(t, u).QueryRow(context.Background(), "SELECT current_database()").Scan(&db); err != nil || db != name {
		t.Fatalf("current_database() = %q, %v; want %q", db, err, name)
	}
}
