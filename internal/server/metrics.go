package server

import (
	"net/http"

	"github.com/tidemark/tidemark/internal/config"
)

// requireToken guards GET /metrics with metrics.token (as a Bearer token);
// without a token it serves h as is, as single-tenant deployments expect.
func requireToken(token config.Secret, h http.Handler) http.Handler {
	if token.Reveal() == "" {
		return h
	}
	keys := []config.Secret{token}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !adminAuth(keys, r.Header.Get("Authorization")) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tidemark metrics"`)
			http.Error(w, "missing or wrong metrics token: send Authorization: Bearer TOKEN (metrics.token)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
