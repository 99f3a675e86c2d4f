package collector

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// memLog is an in-memory Appender.
type memLog struct {
	mu    sync.Mutex
	evs   []event.Event
	calls int
	err   error
}

func (m *memLog) Append(_ context.Context, evs []event.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls++
	if m.err != nil {
		return m.err
	}
	m.evs = append(m.evs, evs...)
	return nil
}

type overload struct{ d time.Duration }

func (o overload) Error() string             { return "disk low" }
func (o overload) RetryAfter() time.Duration { return o.d }

var (
	now   = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	orgOf = map[string]string{"wk-acme": "acme", "wk-beta": "beta"}
)

type fixture struct {
	h   *Handler
	log *memLog
	reg *prometheus.Registry
}

func newFixture(t testing.TB, mod func(*Options)) *fixture {
	t.Helper()
	f := &fixture{log: &memLog{}, reg: prometheus.NewRegistry()}
	var ids atomic.Int32 // NewID is called by concurrent requests (TestOrgShares)
	o := Options{
		Log: f.log,
		Org: func(k string) (string, bool) {
			org, ok := orgOf[k]
			return org, ok
		},
		Now: func() time.Time { return now },
		NewID: func() string {
			return "gen-" + string(rune('0'+ids.Add(1)))
		},
		Registerer: f.reg,
	}
	if mod != nil {
		mod(&o)
	}
	f.h = New(o)
	return f
}

type response struct {
	Code   int
	Header http.Header
	Raw    string
	Body   struct {
		Success  bool        `json:"success"`
		Accepted int         `json:"accepted"`
		Error    string      `json:"error"`
		Rejected []Rejection `json:"rejected"`
	}
}

type req struct {
	method string
	path   string
	body   string
	auth   string // "basic", "bearer", "none" (default basic with wk-acme)
	key    string
	header map[string]string
}

func (f *fixture) do(t testing.TB, q req) response {
	t.Helper()
	if q.method == "" {
		q.method = http.MethodPost
	}
	if q.path == "" {
		q.path = "/v1/batch"
	}
	if q.key == "" {
		q.key = "wk-acme"
	}
	r := httptest.NewRequest(q.method, q.path, strings.NewReader(q.body))
	switch q.auth {
	case "", "basic":
		r.SetBasicAuth(q.key, "")
	case "bearer":
		r.Header.Set("Authorization", "Bearer "+q.key)
	case "none":
	default:
		r.Header.Set("Authorization", q.auth)
	}
	for k, v := range q.header {
		r.Header.Set(k, v)
	}
	return f.serve(t, r)
}

func (f *fixture) serve(t testing.TB, r *http.Request) response {
	t.Helper()
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	res := response{Code: w.Code, Header: w.Header(), Raw: w.Body.String()}
	if w.Code != http.StatusNoContent {
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		if err := json.Unmarshal(w.Body.Bytes(), &res.Body); err != nil {
			t.Fatalf("response %q: %v", w.Body.String(), err)
		}
	}
	return res
}

const (
	track = `{"type":"track","event":"Signed Up","anonymousId":"a1","messageId":"m1"}`
	bad   = `{"type":"track","event":"Signed Up","messageId":"m2"}` // no device
)

func TestEndpoints(t *testing.T) {
	tests := []struct {
		path, body string
		want       event.Event
	}{
		{"/v1/track", `{"event":"Signed Up","userId":"u1","messageId":"m1","properties":{"plan":"pro"}}`,
			event.Event{Type: "track", Name: "Signed Up", Device: "u1", UserID: "u1", ID: "m1", Properties: []byte(`{"plan":"pro"}`)}},
		{"/v1/page", `{"name":"Pricing","anonymousId":"a1","messageId":"m1","properties":{"url":"https://x.io/p","path":"/p","title":"P","referrer":"https://g.co"}}`,
			event.Event{Type: "page", Name: "Pricing", Device: "a1", AnonymousID: "a1", ID: "m1", URL: "https://x.io/p", Path: "/p", Title: "P", Referrer: "https://g.co",
				Properties: []byte(`{"url":"https://x.io/p","path":"/p","title":"P","referrer":"https://g.co"}`)}},
		{"/v1/screen", `{"name":"Home","anonymousId":"a1","messageId":"m1"}`,
			event.Event{Type: "screen", Name: "Home", Device: "a1", AnonymousID: "a1", ID: "m1"}},
		{"/v1/identify", `{"userId":"u1","anonymousId":"a1","messageId":"m1","traits":{"email":"x@y.z"}}`,
			event.Event{Type: "identify", Device: "a1", AnonymousID: "a1", UserID: "u1", ID: "m1", Traits: []byte(`{"email":"x@y.z"}`)}},
		{"/v1/group", `{"userId":"u1","groupId":"g1","messageId":"m1","traits":{"name":"Acme"}}`,
			event.Event{Type: "group", Device: "u1", UserID: "u1", GroupID: "g1", ID: "m1", Traits: []byte(`{"name":"Acme"}`)}},
		{"/v1/alias", `{"userId":"u1","previousId":"a1","messageId":"m1"}`,
			event.Event{Type: "alias", Device: "u1", UserID: "u1", PreviousID: "a1", ID: "m1"}},
		// The path wins over the body's type.
		{"/v1/track", `{"type":"page","event":"E","anonymousId":"a1","messageId":"m1"}`,
			event.Event{Type: "track", Name: "E", Device: "a1", AnonymousID: "a1", ID: "m1"}},
		{"/v1/batch", `{"batch":[` + track + `]}`,
			event.Event{Type: "track", Name: "Signed Up", Device: "a1", AnonymousID: "a1", ID: "m1"}},
		{"/v1/import", `{"batch":[` + track + `]}`,
			event.Event{Type: "track", Name: "Signed Up", Device: "a1", AnonymousID: "a1", ID: "m1"}},
		{"/v1/batch/", `{"batch":[` + track + `]}`,
			event.Event{Type: "track", Name: "Signed Up", Device: "a1", AnonymousID: "a1", ID: "m1"}},
		// analytics.js paths.
		{"/v1/b", `{"batch":[` + track + `]}`,
			event.Event{Type: "track", Name: "Signed Up", Device: "a1", AnonymousID: "a1", ID: "m1"}},
		{"/v1/t", `{"event":"E","anonymousId":"a1","messageId":"m1"}`,
			event.Event{Type: "track", Name: "E", Device: "a1", AnonymousID: "a1", ID: "m1"}},
		{"/v1/p", `{"name":"N","anonymousId":"a1","messageId":"m1"}`,
			event.Event{Type: "page", Name: "N", Device: "a1", AnonymousID: "a1", ID: "m1"}},
		{"/v1/s", `{"name":"N","anonymousId":"a1","messageId":"m1"}`,
			event.Event{Type: "screen", Name: "N", Device: "a1", AnonymousID: "a1", ID: "m1"}},
		{"/v1/i", `{"userId":"u1","messageId":"m1"}`,
			event.Event{Type: "identify", Device: "u1", UserID: "u1", ID: "m1"}},
		{"/v1/g", `{"userId":"u1","groupId":"g1","messageId":"m1"}`,
			event.Event{Type: "group", Device: "u1", UserID: "u1", GroupID: "g1", ID: "m1"}},
		{"/v1/a", `{"userId":"u1","previousId":"a1","messageId":"m1"}`,
			event.Event{Type: "alias", Device: "u1", UserID: "u1", PreviousID: "a1", ID: "m1"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			f := newFixture(t, nil)
			res := f.do(t, req{path: tt.path, body: tt.body})
			if res.Code != 200 || !res.Body.Success || res.Body.Accepted != 1 {
				t.Fatalf("got %d %s", res.Code, res.Raw)
			}
			if res.Raw != `{"success":true,"accepted":1}`+"\n" {
				t.Errorf("body %q", res.Raw)
			}
			want := tt.want
			want.Org = "acme"
			want.ReceivedAt = now.UnixNano()
			want.EventTime = now.UnixNano()
			if len(f.log.evs) != 1 {
				t.Fatalf("appended %d events", len(f.log.evs))
			}
			assertEvent(t, f.log.evs[0], want)
		})
	}
}

func assertEvent(t testing.TB, got, want event.Event) {
	t.Helper()
	g, w := event.Append(nil, &event.Record{Kind: event.KindEvent, Event: got}), event.Append(nil, &event.Record{Kind: event.KindEvent, Event: want})
	if !bytes.Equal(g, w) {
		t.Errorf("event\n got %+v\nwant %+v", got, want)
	}
}

func TestAuth(t *testing.T) {
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	single := `{"event":"E","anonymousId":"a"`
	tests := []struct {
		name    string
		path    string
		auth    string
		body    string
		code    int
		org     string
		wantErr string
	}{
		{"basic", "/v1/batch", basic("wk-beta", ""), `{"batch":[` + track + `]}`, 200, "beta", ""},
		{"basic password only", "/v1/batch", basic("", "wk-beta"), `{"batch":[` + track + `]}`, 200, "beta", ""},
		{"bearer", "/v1/batch", "Bearer wk-beta", `{"batch":[` + track + `]}`, 200, "beta", ""},
		{"bearer lower case", "/v1/batch", "bearer wk-beta", `{"batch":[` + track + `]}`, 200, "beta", ""},
		{"batch body key", "/v1/batch", "none", `{"writeKey":"wk-beta","batch":[` + track + `]}`, 200, "beta", ""},
		{"batch body key after batch", "/v1/batch", "none", `{"batch":[` + track + `],"writeKey":"wk-beta"}`, 200, "beta", ""},
		{"single body key", "/v1/track", "none", single + `,"writeKey":"wk-beta"}`, 200, "beta", ""},
		{"header wins over body", "/v1/track", "Bearer wk-acme", single + `,"writeKey":"wk-beta"}`, 200, "acme", ""},
		{"missing", "/v1/batch", "none", `{"batch":[` + track + `]}`, 401, "", "missing write key"},
		{"empty body key", "/v1/track", "none", single + `,"writeKey":""}`, 401, "", "missing write key"},
		{"unknown basic", "/v1/batch", basic("nope", ""), `{"batch":[` + track + `]}`, 401, "", "unknown write key"},
		{"unknown bearer", "/v1/batch", "Bearer nope", `{"batch":[` + track + `]}`, 401, "", "unknown write key"},
		{"unknown body key", "/v1/batch", "none", `{"writeKey":"nope","batch":[` + track + `]}`, 401, "", "unknown write key"},
		{"unknown header key, body not read", "/v1/batch", "Bearer nope", `not json`, 401, "", "unknown write key"},
		{"unsupported scheme", "/v1/batch", "Digest x", `{"batch":[` + track + `]}`, 401, "", "missing write key"},
		{"writeKey not a string", "/v1/batch", "none", `{"writeKey":5,"batch":[` + track + `]}`, 400, "", "writeKey must be a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			res := f.do(t, req{path: tt.path, auth: tt.auth, body: tt.body})
			if res.Code != tt.code {
				t.Fatalf("code %d, want %d: %s", res.Code, tt.code, res.Raw)
			}
			if tt.wantErr != "" && !strings.Contains(res.Body.Error, tt.wantErr) {
				t.Errorf("error %q, want %q", res.Body.Error, tt.wantErr)
			}
			if tt.code != 200 {
				if f.log.calls != 0 {
					t.Errorf("appended on %d", tt.code)
				}
				if strings.Contains(res.Raw, "nope") {
					t.Errorf("response echoes the key: %s", res.Raw)
				}
				return
			}
			if got := f.log.evs[0].Org; got != tt.org {
				t.Errorf("org %q, want %q", got, tt.org)
			}
		})
	}
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return z.Bytes()
}

func TestBody(t *testing.T) {
	const limit = 4096
	bomb := gz(t, append(append([]byte(`{"batch":[`+track+`],"pad":"`), bytes.Repeat([]byte("a"), 10<<20)...), `"}`...))
	big := `{"batch":[` + track + `],"pad":"` + strings.Repeat("a", limit) + `"}`
	tests := []struct {
		name     string
		body     []byte
		encoding string
		chunked  bool
		code     int
		wantErr  string
	}{
		{"gzip", gz(t, []byte(`{"batch":[`+track+`]}`)), "gzip", false, 200, ""},
		{"x-gzip", gz(t, []byte(`{"batch":[`+track+`]}`)), "x-gzip", false, 200, ""},
		{"gzip chunked", gz(t, []byte(`{"batch":[`+track+`]}`)), "gzip", true, 200, ""},
		{"gzip bomb", bomb, "gzip", false, 413, "over the limit of 4096 bytes"},
		{"gzip bomb chunked", bomb, "gzip", true, 413, "over the limit"},
		{"not gzip", []byte(`{"batch":[` + track + `]}`), "gzip", false, 400, "invalid gzip body"},
		{"truncated gzip", gz(t, []byte(`{"batch":[`+track+`]}`))[:20], "gzip", false, 400, "invalid gzip body"},
		{"brotli", []byte(`{}`), "br", false, 415, "unsupported Content-Encoding"},
		{"oversized", []byte(big), "", false, 413, "over the limit"},
		{"oversized chunked", []byte(big), "", true, 413, "over the limit"},
		{"exactly the limit", []byte(big[:limit-2] + `"}`), "", true, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.MaxBodyBytes = limit })
			r := httptest.NewRequest(http.MethodPost, "/v1/batch", bytes.NewReader(tt.body))
			if tt.chunked {
				r.ContentLength = -1
				r.Body = io.NopCloser(bytes.NewReader(tt.body))
			}
			r.SetBasicAuth("wk-acme", "")
			if tt.encoding != "" {
				r.Header.Set("Content-Encoding", tt.encoding)
			}
			res := f.serve(t, r)
			if res.Code != tt.code {
				t.Fatalf("code %d, want %d: %s", res.Code, tt.code, res.Raw)
			}
			if !strings.Contains(res.Body.Error, tt.wantErr) {
				t.Errorf("error %q, want %q", res.Body.Error, tt.wantErr)
			}
			if (tt.code == 200) != (len(f.log.evs) == 1) {
				t.Errorf("appended %d events", len(f.log.evs))
			}
		})
	}
}

func TestMethodsAndPaths(t *testing.T) {
	f := newFixture(t, nil)
	res := f.do(t, req{method: http.MethodGet, body: ""})
	if res.Code != 405 || res.Header.Get("Allow") != "POST, OPTIONS" {
		t.Errorf("GET: %d %v", res.Code, res.Header)
	}
	res = f.do(t, req{method: http.MethodOptions})
	if res.Code != 204 || res.Header.Get("Access-Control-Allow-Origin") != "*" ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("OPTIONS: %d %v", res.Code, res.Header)
	}
	res = f.do(t, req{path: "/v1/nope", body: `{}`})
	if res.Code != 404 {
		t.Errorf("unknown path: %d", res.Code)
	}
	// Content types are not checked: sendBeacon sends text/plain.
	res = f.do(t, req{body: `{"batch":[` + track + `]}`, header: map[string]string{"Content-Type": "text/plain;charset=UTF-8"}})
	if res.Code != 200 {
		t.Errorf("text/plain: %d %s", res.Code, res.Raw)
	}
}

func TestBadRequests(t *testing.T) {
	tests := []struct {
		name, path, body, wantErr string
	}{
		{"not JSON", "/v1/batch", `{"batch":[{"type":"track",}]}`, `invalid JSON at byte 26: invalid character '}' looking for beginning of object key string`},
		{"truncated", "/v1/batch", `{"batch":[` + track, `invalid JSON at byte 82: unexpected end of input`},
		{"trailing garbage", "/v1/batch", `{"batch":[` + track + `]} x`, `invalid JSON at byte 85: invalid character 'x' after top-level value`},
		{"raw control character", "/v1/track", "{\"event\":\"a\nb\"}", `invalid JSON at byte 11: invalid control character 0x0a in string`},
		{"bad escape", "/v1/track", `{"event":"\x"}`, `invalid JSON at byte 11: invalid character 'x' in string escape`},
		{"empty body", "/v1/batch", ``, "empty body"},
		{"white space", "/v1/batch", " \n", "empty body"},
		{"array", "/v1/batch", `[` + track + `]`, "body must be a JSON object"},
		{"single array", "/v1/track", `[]`, "body must be a JSON object"},
		{"missing batch", "/v1/batch", track, "missing batch"},
		{"null batch", "/v1/batch", `{"batch":null}`, "missing batch"},
		{"empty batch", "/v1/batch", `{"batch":[]}`, "empty batch"},
		{"batch not array", "/v1/batch", `{"batch":{}}`, "batch must be an array"},
		{"context not object", "/v1/batch", `{"batch":[` + track + `],"context":"x"}`, "context must be a JSON object"},
		{"batch sentAt", "/v1/batch", `{"batch":[` + track + `],"sentAt":"yesterday"}`, `sentAt: cannot parse "yesterday" as an ISO-8601 time`},
		{"batch context UTF-8", "/v1/batch", `{"batch":[` + track + "],\"context\":{\"a\":\"\xff\"}}", "invalid UTF-8 in context"},
		{"too deep", "/v1/track", strings.Repeat(`{"a":`, 10001), "invalid JSON at byte 50000: exceeded max depth 10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			res := f.do(t, req{path: tt.path, body: tt.body})
			if res.Code != 400 || res.Body.Success || res.Body.Error != tt.wantErr {
				t.Errorf("got %d %q, want 400 %q", res.Code, res.Body.Error, tt.wantErr)
			}
			if res.Body.Rejected != nil || f.log.calls != 0 {
				t.Errorf("rejected %v, %d appends", res.Body.Rejected, f.log.calls)
			}
		})
	}
}

func TestRejections(t *testing.T) {
	ok := `{"type":"track","event":"E","anonymousId":"a"}`
	tests := []struct {
		name, path, event, wantErr string
	}{
		{"missing ids", "", `{"type":"track","event":"E","messageId":"m9"}`, "missing anonymousId or userId"},
		{"empty ids", "", `{"type":"track","event":"E","anonymousId":"","userId":null}`, "missing anonymousId or userId"},
		{"id not string", "", `{"type":"track","event":"E","anonymousId":{}}`, "anonymousId must be a string or number"},
		{"missing type", "", `{"event":"E","anonymousId":"a"}`, "missing type"},
		{"bad type", "", `{"type":"Track","event":"E","anonymousId":"a"}`, `invalid type "Track" (want track, page, screen, identify, group or alias)`},
		{"type not string", "", `{"type":1,"event":"E","anonymousId":"a"}`, `type must be a string`},
		{"missing event", "", `{"type":"track","anonymousId":"a"}`, "missing event (required for track)"},
		{"event not string", "", `{"type":"track","event":["E"],"anonymousId":"a"}`, "event must be a string"},
		{"missing groupId", "", `{"type":"group","anonymousId":"a"}`, "missing groupId (required for group)"},
		{"missing previousId", "", `{"type":"alias","userId":"u"}`, "missing previousId (required for alias)"},
		{"bad timestamp", "", `{"type":"track","event":"E","anonymousId":"a","timestamp":"2026-02-30T00:00:00Z"}`, `timestamp: cannot parse "2026-02-30T00:00:00Z" as an ISO-8601 time`},
		{"timestamp number", "", `{"type":"track","event":"E","anonymousId":"a","timestamp":1700000000}`, `timestamp must be a string`},
		{"bad sentAt", "", `{"type":"track","event":"E","anonymousId":"a","sentAt":"now"}`, `sentAt: cannot parse "now" as an ISO-8601 time`},
		{"timestamp out of range", "", `{"type":"track","event":"E","anonymousId":"a","timestamp":"9999-01-01T00:00:00Z"}`, `timestamp: "9999-01-01T00:00:00Z" is out of range (accepted: 1677-09-21T00:12:45Z to 2262-04-11T23:47:15.999999999Z)`},
		{"properties not object", "", `{"type":"track","event":"E","anonymousId":"a","properties":[]}`, "properties must be a JSON object"},
		{"traits not object", "", `{"type":"identify","anonymousId":"a","traits":"x"}`, "traits must be a JSON object"},
		{"context not object", "", `{"type":"track","event":"E","anonymousId":"a","context":1}`, "context must be a JSON object"},
		{"element not object", "", `"x"`, "not a JSON object"},
		{"invalid UTF-8 in event", "", "{\"type\":\"track\",\"event\":\"E\xff\",\"anonymousId\":\"a\"}", `invalid UTF-8 in "event"`},
		{"invalid UTF-8 in properties", "", "{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a\",\"properties\":{\"k\":[\"\xff\"]}}", `invalid UTF-8 in "properties"`},
		{"invalid UTF-8 in unknown field", "", "{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a\",\"x\\u0079\":\"\xc3\"}", `invalid UTF-8 in "xy"`},
		{"invalid UTF-8 in a key", "", "{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a\",\"properties\":{\"\xff\":1}}", `invalid UTF-8 in "properties"`},
		{"invalid UTF-8 in a top-level key", "", "{\"type\":\"track\",\"event\":\"E\",\"anonymousId\":\"a\",\"\xed\xa0\x80\":1}", `invalid UTF-8 in a field name`},
		{"long bad type", "", `{"type":"` + strings.Repeat("é", 40) + `","anonymousId":"a"}`, `invalid type "` + strings.Repeat("é", 32) + `"…(80 bytes) (want track, page, screen, identify, group or alias)`},
		{"oversized event", "", `{"type":"track","event":"E","anonymousId":"a","properties":{"p":"` + strings.Repeat("x", 200) + `"}}`, "event is 268 bytes, over the limit of 200"},
		{"single call", "/v1/track", `{"anonymousId":"a"}`, "missing event (required for track)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, func(o *Options) { o.MaxEventBytes = 200 })
			body := `{"batch":[` + ok + `,` + tt.event + `,` + ok + `]}`
			wantErr, index, accepted := "batch[1]: "+tt.wantErr, 1, 2
			if tt.path != "" {
				body, wantErr, index, accepted = tt.event, tt.wantErr, 0, 0
			}
			res := f.do(t, req{path: tt.path, body: body})
			if res.Code != 400 || res.Body.Success || res.Body.Accepted != accepted || len(res.Body.Rejected) != 1 {
				t.Fatalf("got %d %s", res.Code, res.Raw)
			}
			r := res.Body.Rejected[0]
			if r.Index != index || r.Error != wantErr {
				t.Errorf("rejected %+v, want index %d %q", r, index, wantErr)
			}
			if len(f.log.evs) != accepted {
				t.Errorf("appended %d events, want %d", len(f.log.evs), accepted)
			}
			if tt.path == "" && res.Body.Error != "1 of 3 events rejected" {
				t.Errorf("error %q", res.Body.Error)
			}
			if tt.path != "" && res.Body.Error != wantErr {
				t.Errorf("error %q", res.Body.Error)
			}
		})
	}
}

func TestPartialBatch(t *testing.T) {
	f := newFixture(t, nil)
	body := `{"batch":[` + track + `,` + bad + `,{"type":"page","anonymousId":"a2"},"nope"]}`
	res := f.do(t, req{body: body})
	want := `{"success":false,"accepted":2,"error":"2 of 4 events rejected","rejected":[` +
		`{"index":1,"messageId":"m2","error":"batch[1]: missing anonymousId or userId"},` +
		`{"index":3,"error":"batch[3]: not a JSON object"}]}` + "\n"
	if res.Code != 400 || res.Raw != want {
		t.Fatalf("got %d %s\nwant %s", res.Code, res.Raw, want)
	}
	if len(f.log.evs) != 2 || f.log.evs[0].ID != "m1" || f.log.evs[1].Type != "page" || f.log.evs[1].ID != "gen-1" {
		t.Errorf("appended %+v", f.log.evs)
	}
	assertCounter(t, f.reg, "tidemark_ingest_events_total", map[string]string{"org": "acme", "outcome": "accepted"}, 2)
	assertCounter(t, f.reg, "tidemark_ingest_events_total", map[string]string{"org": "acme", "outcome": "rejected"}, 2)
	assertCounter(t, f.reg, "tidemark_ingest_requests_total", map[string]string{"endpoint": "batch", "code": "400"}, 1)
	assertCounter(t, f.reg, "tidemark_ingest_bytes_total", map[string]string{"org": "acme"}, float64(len(body)))

	// Nothing valid: no append at all.
	f = newFixture(t, nil)
	res = f.do(t, req{body: `{"batch":[` + bad + `]}`})
	if res.Code != 400 || res.Body.Accepted != 0 || f.log.calls != 0 {
		t.Errorf("got %d %s, %d appends", res.Code, res.Raw, f.log.calls)
	}
}

func TestMessageID(t *testing.T) {
	f := newFixture(t, nil)
	body := `{"batch":[{"type":"track","event":"E","anonymousId":"a"},` +
		`{"type":"track","event":"E","anonymousId":"a","messageId":""},` +
		`{"type":"track","event":"E","anonymousId":"a","messageId":"m\u00e9"},` +
		`{"type":"track","event":"E","anonymousId":"a","messageId":12345}]}`
	if res := f.do(t, req{body: body}); res.Code != 200 {
		t.Fatalf("got %d %s", res.Code, res.Raw)
	}
	var ids []string
	for _, e := range f.log.evs {
		ids = append(ids, e.ID)
	}
	if want := []string{"gen-1", "gen-2", "mé", "12345"}; !slices.Equal(ids, want) {
		t.Errorf("ids %q, want %q", ids, want)
	}
	// The default generator makes version 4 UUIDs.
	a, b := NewUUID(), NewUUID()
	if a == b || len(a) != 36 || a[14] != '4' || !strings.ContainsRune("89ab", rune(a[19])) {
		t.Errorf("NewUUID: %q %q", a, b)
	}
}

func TestTimes(t *testing.T) {
	recv := now.UnixNano()
	ts := func(s string) event.ClientTime {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return event.At(tm.UnixNano())
	}
	none := event.ClientTime{}
	tests := []struct {
		name                  string
		body                  string
		timestamp, sent, orig event.ClientTime
		event                 int64
	}{
		{"none", `{"batch":[{"type":"track","event":"E","anonymousId":"a"}]}`, none, none, none, recv},
		{"timestamp only", `{"batch":[{"type":"track","event":"E","anonymousId":"a","timestamp":"2026-03-01T11:00:00Z"}]}`,
			ts("2026-03-01T11:00:00Z"), none, none, ts("2026-03-01T11:00:00Z").NS},
		// Client clock 5 minutes fast: sent at 12:05 by its clock, received at 12:00.
		{"skew", `{"batch":[{"type":"track","event":"E","anonymousId":"a","timestamp":"2026-03-01T12:04:00.5+00:00","sentAt":"2026-03-01T12:05:00Z"}]}`,
			ts("2026-03-01T12:04:00.5Z"), ts("2026-03-01T12:05:00Z"), none, ts("2026-03-01T11:59:00.5Z").NS},
		// Client clock 1 hour slow, in another zone; sentAt from the batch.
		{"batch sentAt", `{"sentAt":"2026-03-01T12:00:00+01:00","batch":[{"type":"track","event":"E","anonymousId":"a","timestamp":"2026-03-01T11:30:00+0100"}]}`,
			ts("2026-03-01T10:30:00Z"), ts("2026-03-01T11:00:00Z"), none, ts("2026-03-01T11:30:00Z").NS},
		{"event sentAt wins", `{"sentAt":"2020-01-01T00:00:00Z","batch":[{"type":"track","event":"E","anonymousId":"a","timestamp":"2026-03-01T11:59:00Z","sentAt":"2026-03-01T12:00:00Z"}]}`,
			ts("2026-03-01T11:59:00Z"), ts("2026-03-01T12:00:00Z"), none, ts("2026-03-01T11:59:00Z").NS},
		{"sentAt only", `{"batch":[{"type":"track","event":"E","anonymousId":"a","sentAt":"2026-03-01T13:00:00Z"}]}`,
			none, ts("2026-03-01T13:00:00Z"), none, recv},
		// RudderStack's SDKs: originalTimestamp and sentAt, no timestamp. Client
		// clock 2 minutes slow: receivedAt - (sentAt - originalTimestamp).
		{"originalTimestamp", `{"batch":[{"type":"track","event":"E","anonymousId":"a","originalTimestamp":"2026-03-01T11:57:30Z","sentAt":"2026-03-01T11:58:00Z"}]}`,
			none, ts("2026-03-01T11:58:00Z"), ts("2026-03-01T11:57:30Z"), ts("2026-03-01T11:59:30Z").NS},
		{"originalTimestamp only", `{"batch":[{"type":"track","event":"E","anonymousId":"a","originalTimestamp":"2026-03-01T11:57:30Z"}]}`,
			none, none, ts("2026-03-01T11:57:30Z"), ts("2026-03-01T11:57:30Z").NS},
		// Both: timestamp is the client time (a RudderStack user setting it by hand).
		{"timestamp and originalTimestamp", `{"batch":[{"type":"track","event":"E","anonymousId":"a","timestamp":"2026-02-01T00:00:00Z","originalTimestamp":"2026-03-01T11:59:50Z","sentAt":"2026-03-01T12:00:00Z"}]}`,
			ts("2026-02-01T00:00:00Z"), ts("2026-03-01T12:00:00Z"), ts("2026-03-01T11:59:50Z"), ts("2026-02-01T00:00:00Z").NS},
		// The Unix epoch is a time like any other, not "no timestamp".
		{"epoch", `{"batch":[{"type":"track","event":"E","anonymousId":"a","timestamp":"1970-01-01T00:00:00Z","sentAt":"1970-01-01T00:00:00Z","originalTimestamp":"1970-01-01T00:00:00Z"}]}`,
			event.At(0), event.At(0), event.At(0), recv},
		{"epoch without sentAt", `{"batch":[{"type":"track","event":"E","anonymousId":"a","timestamp":"1970-01-01T00:00:00Z"}]}`,
			event.At(0), none, none, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			if res := f.do(t, req{body: tt.body}); res.Code != 200 {
				t.Fatalf("got %d %s", res.Code, res.Raw)
			}
			e := f.log.evs[0]
			if e.ReceivedAt != recv || e.Timestamp != tt.timestamp || e.SentAt != tt.sent || e.OriginalTimestamp != tt.orig || e.EventTime != tt.event {
				t.Errorf("received %d timestamp %+v sent %+v original %+v event %d, want %d %+v %+v %+v %d",
					e.ReceivedAt, e.Timestamp, e.SentAt, e.OriginalTimestamp, e.EventTime, recv, tt.timestamp, tt.sent, tt.orig, tt.event)
			}
		})
	}
}

func TestExtraction(t *testing.T) {
	ctx := `"context":{"userAgent":"UA/1","page":{"url":"https://x.io/c","path":"/c","referrer":"https://r.io","title":"C"}}`
	tests := []struct {
		name, body                     string
		url, path, referrer, title, ua string
	}{
		{"page from properties", `{"type":"page","anonymousId":"a","properties":{"url":"https://x.io/p","title":"P"},` + ctx + `}`,
			"https://x.io/p", "/c", "https://r.io", "P", "UA/1"},
		{"page property not a string", `{"type":"page","anonymousId":"a","properties":{"url":1},` + ctx + `}`,
			"https://x.io/c", "/c", "https://r.io", "C", "UA/1"},
		{"track ignores properties", `{"type":"track","event":"E","anonymousId":"a","properties":{"url":"https://x.io/p"},` + ctx + `}`,
			"https://x.io/c", "/c", "https://r.io", "C", "UA/1"},
		{"escaped", `{"type":"track","event":"E","anonymousId":"a","context":{"userAgent":"UA \"q\" \u00e9\ud83d\ude00","page":{"path":"\/a\\b"}}}`,
			"", `/a\b`, "", "", `UA "q" é😀`},
		{"repeated context replaces", `{"type":"track","event":"E","anonymousId":"a",` + ctx + `,"context":null}`,
			"", "", "", "", ""},
		{"nested keys ignored", `{"type":"track","event":"E","anonymousId":"a","context":{"x":{"userAgent":"no","page":{"url":"no"}}}}`,
			"", "", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			if res := f.do(t, req{body: `{"batch":[` + tt.body + `]}`}); res.Code != 200 {
				t.Fatalf("got %d %s", res.Code, res.Raw)
			}
			e := f.log.evs[0]
			got := []string{e.URL, e.Path, e.Referrer, e.Title, e.UserAgent}
			if want := []string{tt.url, tt.path, tt.referrer, tt.title, tt.ua}; !slices.Equal(got, want) {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}

func TestBatchContext(t *testing.T) {
	f := newFixture(t, nil)
	body := `{"context":{"library":{"name":"analytics-go"},"userAgent":"UA/batch","ip":"1.2.3.4"},"batch":[` +
		`{"type":"track","event":"E","anonymousId":"a"},` +
		`{"type":"track","event":"E","anonymousId":"a","context":{ "ip":"5.6.7.8" , "userAgent":"UA/own"}},` +
		`{"type":"track","event":"E","anonymousId":"a","context":{}}]}`
	if res := f.do(t, req{body: body}); res.Code != 200 {
		t.Fatalf("got %d %s", res.Code, res.Raw)
	}
	want := []string{
		`{"library":{"name":"analytics-go"},"userAgent":"UA/batch","ip":"1.2.3.4"}`,
		`{ "ip":"5.6.7.8" , "userAgent":"UA/own","library":{"name":"analytics-go"}}`,
		`{"library":{"name":"analytics-go"},"userAgent":"UA/batch","ip":"1.2.3.4"}`,
	}
	uas := []string{"UA/batch", "UA/own", "UA/batch"}
	for i, e := range f.log.evs {
		if string(e.Context) != want[i] || !json.Valid(e.Context) {
			t.Errorf("event %d context %s, want %s", i, e.Context, want[i])
		}
		if e.UserAgent != uas[i] {
			t.Errorf("event %d user agent %q, want %q", i, e.UserAgent, uas[i])
		}
	}
}

func TestAppendErrors(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		code  int
		retry string
	}{
		{"overload", overload{1200 * time.Millisecond}, 503, "2"},
		{"overload wrapped", errors.Join(errors.New("queue full"), overload{3 * time.Second}), 503, "3"},
		{"overload zero", overload{0}, 503, "1"},
		{"other", errors.New("fsync: input/output error"), 500, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.log.err = tt.err
			res := f.do(t, req{body: `{"batch":[` + track + `,` + bad + `]}`})
			if res.Code != tt.code || res.Header.Get("Retry-After") != tt.retry {
				t.Fatalf("got %d Retry-After %q, want %d %q", res.Code, res.Header.Get("Retry-After"), tt.code, tt.retry)
			}
			if res.Body.Success || res.Body.Accepted != 0 || res.Body.Rejected != nil || strings.Contains(res.Raw, "fsync") {
				t.Errorf("body %s", res.Raw)
			}
			assertCounter(t, f.reg, "tidemark_ingest_events_total", map[string]string{"org": "acme", "outcome": "failed"}, 1)
			assertCounter(t, f.reg, "tidemark_ingest_events_total", map[string]string{"org": "acme", "outcome": "accepted"}, 0)
		})
	}
}

func TestConcurrent(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.NewID = NewUUID })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				body := `{"batch":[{"type":"track","event":"E","anonymousId":"` + strings.Repeat("x", g*50+i+1) + `"}]}`
				if res := f.do(t, req{body: body}); res.Code != 200 {
					t.Errorf("got %d %s", res.Code, res.Raw)
				}
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, e := range f.log.evs {
		if strings.Trim(e.Device, "x") != "" || seen[e.ID] {
			t.Errorf("event %+v", e)
		}
		seen[e.ID] = true
	}
	if len(f.log.evs) != 400 {
		t.Errorf("%d events", len(f.log.evs))
	}
}

// assertCounter checks the sum of the series of counter name in reg whose
// labels include labels.
func assertCounter(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string, want float64) {
	t.Helper()
	if got := probe.Value(t, reg, name, labels); got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

// TestAnalyticsJS sends what analytics.js (analytics-next) sends: text/plain,
// no Authorization header, writeKey in the body and in every event, extra
// members tidemark ignores.
func TestAnalyticsJS(t *testing.T) {
	ev := `{"timestamp":"2026-03-01T11:59:59.000Z","integrations":{},"type":"page","properties":{"path":"/docs","referrer":"","search":"","title":"Docs","url":"https://x.io/docs"},` +
		`"context":{"page":{"path":"/docs","referrer":"","search":"","title":"Docs","url":"https://x.io/docs"},"userAgent":"Mozilla/5.0","locale":"en-US","library":{"name":"analytics.js","version":"next-1.70.0"}},` +
		`"messageId":"ajs-next-1740830399000-abc","anonymousId":"f3c1e2d4-0000-4000-8000-000000000001","userId":null,"writeKey":"wk-beta","sentAt":"2026-03-01T12:00:00.000Z","_metadata":{"bundled":["Segment.io"],"unbundled":[],"bundledIds":[]}}`
	f := newFixture(t, nil)
	for _, q := range []req{
		{path: "/v1/p", auth: "none", body: ev},
		{path: "/v1/b", auth: "none", body: `{"writeKey":"wk-beta","batch":[` + strings.Replace(ev, `"sentAt":"2026-03-01T12:00:00.000Z",`, "", 1) + `],"sentAt":"2026-03-01T12:00:00.000Z"}`},
	} {
		q.header = map[string]string{"Content-Type": "text/plain"}
		if res := f.do(t, q); res.Code != 200 {
			t.Fatalf("%s: %d %s", q.path, res.Code, res.Raw)
		}
	}
	for _, e := range f.log.evs {
		if e.Org != "beta" || e.Type != "page" || e.Title != "Docs" || e.Path != "/docs" || e.UserAgent != "Mozilla/5.0" ||
			e.EventTime != now.Add(-time.Second).UnixNano() || e.Device != "f3c1e2d4-0000-4000-8000-000000000001" || e.UserID != "" {
			t.Errorf("event %+v", e)
		}
	}
}

// TestPoolReuse runs requests of every kind through one handler, so that
// pooled decoders, buffers and gzip readers are reused after successes and
// failures alike.
func TestPoolReuse(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxBodyBytes = 1 << 10 })
	ok := gz(t, []byte(`{"batch":[`+track+`]}`))
	steps := []struct {
		body     []byte
		encoding string
		code     int
	}{
		{ok, "gzip", 200},
		{[]byte("not gzip"), "gzip", 400},
		{ok, "gzip", 200},
		{gz(t, bytes.Repeat([]byte(" "), 4<<10)), "gzip", 413},
		{ok, "gzip", 200},
		{[]byte(`{"batch":[` + track + `,` + bad + `]}`), "", 400},
		{[]byte(`{"batch":[` + track + `]}`), "", 200},
	}
	for i, s := range steps {
		r := httptest.NewRequest(http.MethodPost, "/v1/batch", bytes.NewReader(s.body))
		r.SetBasicAuth("wk-acme", "")
		r.Header.Set("Content-Encoding", s.encoding)
		if res := f.serve(t, r); res.Code != s.code {
			t.Errorf("step %d: %d %s, want %d", i, res.Code, res.Raw, s.code)
		}
	}
	if len(f.log.evs) != 5 {
		t.Errorf("%d events", len(f.log.evs))
	}
	for _, e := range f.log.evs {
		if e.ID != "m1" || e.Device != "a1" {
			t.Errorf("event %+v", e)
		}
	}
}

func TestNoKeysInLogs(t *testing.T) {
	var logs bytes.Buffer
	f := newFixture(t, func(o *Options) {
		o.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	f.do(t, req{key: "secret-header-key", body: `{"batch":[` + track + `]}`})
	f.do(t, req{auth: "none", body: `{"writeKey":"secret-body-key","batch":[` + track + `]}`})
	f.log.err = errors.New("disk on fire")
	f.do(t, req{body: `{"batch":[` + track + `]}`})
	out := logs.String()
	if strings.Contains(out, "secret-") || strings.Contains(out, "wk-acme") || !strings.Contains(out, "secr***") || !strings.Contains(out, "disk on fire") {
		t.Errorf("logs:\n%s", out)
	}
}

// TestRejectionsEchoABoundedPrefix: a rejection repeats at most the first 64
// bytes of a client's value, with its length, however long the value is.
func TestRejectionsEchoABoundedPrefix(t *testing.T) {
	f := newFixture(t, func(o *Options) { o.MaxEventBytes = 1 << 20 })
	long := strings.Repeat("é", 20<<10) // 40 KiB of two-byte runes
	body := `{"batch":[{"type":"track","event":"E","messageId":"` + long + `"},` +
		`{"type":"track","event":"E","anonymousId":"a","messageId":"m2","timestamp":"` + long + `"},` +
		`{"type":"` + long + `","event":"E","anonymousId":"a","messageId":"m3"}]}`
	res := f.do(t, req{body: body})
	if res.Code != 400 || len(res.Body.Rejected) != 3 {
		t.Fatalf("got %d %.300s", res.Code, res.Raw)
	}
	if len(res.Raw) > 2000 {
		t.Errorf("the 400 is %d bytes for a 120 KiB body, want a bounded echo: %.300s", len(res.Raw), res.Raw)
	}
	want := strings.Repeat("é", 32) + "…(40960 bytes)"
	if r := res.Body.Rejected[0]; r.MessageID != want || r.Error != "batch[0]: missing anonymousId or userId" {
		t.Errorf("rejection 0: %+v, want messageId %q", r, want)
	}
	for i, r := range res.Body.Rejected[1:] {
		if !strings.Contains(r.Error, `"`+strings.Repeat("é", 32)+`"…(40960 bytes)`) {
			t.Errorf("rejection %d: %q, want the value's first 64 bytes and its length", i+1, r.Error)
		}
	}
	// Header values too.
	res = f.do(t, req{body: `{}`, header: map[string]string{"Content-Encoding": strings.Repeat("x", 5000)}})
	if res.Code != 415 || len(res.Raw) > 300 || !strings.Contains(res.Raw, "(5000 bytes)") {
		t.Errorf("long Content-Encoding: %d %.400s", res.Code, res.Raw)
	}
}

// TestOutOfRangeTimeStatesTheRange: a time tidemark cannot store is refused
// with the range it can.
func TestOutOfRangeTimeStatesTheRange(t *testing.T) {
	f := newFixture(t, nil)
	for _, field := range []string{"timestamp", "sentAt", "originalTimestamp"} {
		body := `{"batch":[` + track + `,{"type":"track","event":"E","anonymousId":"a","` + field + `":"1600-01-01T00:00:00Z"}]}`
		res := f.do(t, req{body: body})
		if res.Code != 400 || res.Body.Accepted != 1 || len(res.Body.Rejected) != 1 {
			t.Fatalf("%s: got %d %s", field, res.Code, res.Raw)
		}
		want := `batch[1]: ` + field + `: "1600-01-01T00:00:00Z" is out of range (accepted: 1677-09-21T00:12:45Z to 2262-04-11T23:47:15.999999999Z)`
		if got := res.Body.Rejected[0].Error; got != want {
			t.Errorf("%s:\n got %s\nwant %s", field, got, want)
		}
	}
}

// TestPreflightAllowsSDKHeaders: every ingest path answers a browser's CORS
// preflight for the headers the tracking SDKs send (analytics.js's retries
// add X-Retry-Count; RudderStack's JavaScript SDK sends AnonymousId), and
// every response lets the SDK read Retry-After.
func TestPreflightAllowsSDKHeaders(t *testing.T) {
	f := newFixture(t, nil)
	requested := []string{"authorization", "content-type", "x-retry-count", "anonymousid", "content-encoding", "rsa-retry-attempt"}
	allowed := map[string]bool{}
	for path := range endpoints {
		for _, p := range []string{path, path + "/"} {
			res := f.do(t, req{method: http.MethodOptions, path: p, auth: "none", header: map[string]string{
				"Origin": "http://shop.test", "Access-Control-Request-Method": "POST",
				"Access-Control-Request-Headers": strings.Join(requested, ","),
			}})
			clear(allowed)
			for h := range strings.SplitSeq(res.Header.Get("Access-Control-Allow-Headers"), ",") {
				allowed[strings.ToLower(strings.TrimSpace(h))] = true
			}
			if res.Code != 204 || res.Header.Get("Access-Control-Allow-Origin") != "*" ||
				!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "POST") {
				t.Errorf("OPTIONS %s: %d %v", p, res.Code, res.Header)
			}
			for _, h := range requested {
				if !allowed[h] {
					t.Errorf("OPTIONS %s: %s not in Access-Control-Allow-Headers %q", p, h, res.Header.Get("Access-Control-Allow-Headers"))
				}
			}
		}
	}
	for _, res := range []response{f.do(t, req{body: `{"batch":[` + track + `]}`}), f.do(t, req{body: `{`}), f.do(t, req{auth: "none", body: `{}`})} {
		if res.Header.Get("Access-Control-Allow-Origin") != "*" || res.Header.Get("Access-Control-Expose-Headers") != "Retry-After" {
			t.Errorf("%d response: CORS headers %v", res.Code, res.Header)
		}
	}
}
