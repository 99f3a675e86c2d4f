package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, path string) (*http.Response, string) {
	t.Helper()
	mux := http.NewServeMux()
	for _, p := range Paths {
		mux.Handle(p, h)
	}
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(w.Result().Body)
	return w.Result(), string(body)
}

// TestHandler: the page at / and its assets under /ui/, each with the
// headers that keep other origins' code out of the page; nothing else.
func TestHandler(t *testing.T) {
	h := Handler()
	for _, c := range []struct{ path, ctype, contains string }{
		{"/", "text/html", `<script src="/ui/app.js" defer></script>`},
		{"/ui/app.js", "text/javascript", "Authorization: 'Bearer ' + key"},
		{"/ui/app.css", "text/css", "@media (max-width: 640px)"},
	} {
		resp, body := get(t, h, c.path)
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), c.ctype) {
			t.Errorf("GET %s: %d %q, want 200 %s", c.path, resp.StatusCode, resp.Header.Get("Content-Type"), c.ctype)
		}
		if !strings.Contains(body, c.contains) {
			t.Errorf("GET %s: no %q in the answer", c.path, c.contains)
		}
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "frame-ancestors 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("GET %s: Content-Security-Policy %q lacks %q", c.path, csp, want)
			}
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" || resp.Header.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("GET %s: headers %v", c.path, resp.Header)
		}
	}
	for _, path := range []string{"/ui/", "/ui/nope.js", "/index.html", "/static/app.js", "/other"} {
		if resp, body := get(t, h, path); resp.StatusCode == http.StatusOK {
			t.Errorf("GET %s: 200 (%.80q), want no page", path, body)
		}
	}
}

// TestNoRemoteOrInlineCode: the page loads nothing from another origin
// (it must work offline) and has no inline script or style, which the
// Content-Security-Policy would block anyway.
func TestNoRemoteOrInlineCode(t *testing.T) {
	for _, name := range []string{"index.html", "app.js", "app.css"} {
		b, err := static.ReadFile("static/" + name)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?(https?:)?//`).FindString(s); m != "" {
			t.Errorf("%s refers to another origin: %q", name, m)
		}
		if m := regexp.MustCompile(`(?i)<script>|<style|\sstyle=|\son[a-z]+=`).FindString(s); m != "" {
			t.Errorf("%s has inline code or style: %q", name, m)
		}
		if strings.Contains(s, "localStorage") || strings.Contains(s, "document.cookie") {
			t.Errorf("%s keeps something beyond the tab (localStorage or a cookie)", name)
		}
	}
}
