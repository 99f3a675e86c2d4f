package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/internal/config"
)

// TestRequireReader: an admin key reads every org, an org's read key only
// its own (403 for ?org= of another), anything else is refused; writes
// stay with requireAdmin.
func TestRequireReader(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if org, ok := readerOrg(r.Context()); ok {
			io.WriteString(w, "org:"+org)
			return
		}
		io.WriteString(w, "admin")
	})
	read := map[string]string{"acme-read-key-0000000001": "acme", "globex-read-key-00000001": "globex"}
	h := requireReader([]config.Secret{"admin-key-000000000000001"}, read, echo)
	for _, c := range []struct {
		auth, query string
		code        int
		body        string
	}{
		{"Bearer admin-key-000000000000001", "", 200, "admin"},
		{"Bearer admin-key-000000000000001", "?org=globex", 200, "admin"},
		{"Bearer acme-read-key-0000000001", "", 200, "org:acme"},
		{"Bearer acme-read-key-0000000001", "?org=acme", 200, "org:acme"},
		{"Bearer acme-read-key-0000000001", "?org=globex", 403, "another org"},
		{"Bearer globex-read-key-00000001", "", 200, "org:globex"},
		{"Bearer acme-read-key-000000000", "", 401, "missing or unknown"}, // a prefix is not the key
		{"Bearer ", "", 401, "missing or unknown"},
		{"acme-read-key-0000000001", "", 401, "missing or unknown"}, // not as a Bearer token
		{"", "", 401, "missing or unknown"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/status"+c.query, nil)
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != c.code || !strings.Contains(w.Body.String(), c.body) {
			t.Errorf("%q %q: %d %q, want %d with %q", c.auth, c.query, w.Code, w.Body.String(), c.code, c.body)
		}
	}

	// Without admin keys the read keys still work; others learn the admin API is off.
	h = requireReader(nil, read, echo)
	for auth, want := range map[string]int{"Bearer acme-read-key-0000000001": 200, "Bearer other": 404} {
		r := httptest.NewRequest(http.MethodGet, "/api/v1/status", nil)
		r.Header.Set("Authorization", auth)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("no admin keys, %q: %d %q, want %d", auth, w.Code, w.Body.String(), want)
		}
	}
}
