package ui

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed static
var static embed.FS

// Paths are the patterns Handler serves, for http.ServeMux.Handle.
var Paths = []string{"GET /{$}", "GET /ui/"}

// Handler serves the page at / and its assets under /ui/. Every answer
// forbids framing and any script, style or connection from another origin
// (Content-Security-Policy), so that nothing outside the binary runs in the
// page that holds the key.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	assets := http.StripPrefix("/ui", http.FileServerFS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; "+
			"img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		switch p := r.URL.Path; {
		case p == "/":
			http.ServeFileFS(w, r, sub, "index.html")
		case strings.HasSuffix(p, "/"):
			http.NotFound(w, r) // no directory listings
		default:
			assets.ServeHTTP(w, r)
		}
	})
}
