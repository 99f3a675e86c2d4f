package server

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/stream"
)

// readerOrgKey is the context key of the org a read key is scoped to.
type readerOrgKey struct{}

// readerOrg returns the org a request is scoped to: the org of the read key
// it was authenticated with. ok is false for an admin key (every org).
func readerOrg(ctx context.Context) (org string, ok bool) {
	org, ok = ctx.Value(readerOrgKey{}).(string)
	return org, ok
}

// requireReader serves h to an admin key (every org, as requireAdmin) and to
// an org's read key (orgs[].read_keys), scoped to that org: h finds the org
// with readerOrg and must answer with that org's data only. A read key that
// asks for another org (?org=) is refused with 403. The status page and the
// read side of the admin API use it; writes (backfill) stay admin-only.
func requireReader(admin []config.Secret, readKeys map[string]string, h http.Handler) http.Handler {
	asAdmin := requireAdmin(admin, h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		org, ok := bearerOrg(readKeys, r.Header.Get("Authorization"))
		if !ok {
			asAdmin.ServeHTTP(w, r)
			return
		}
		if q := r.URL.Query().Get("org"); q != "" && q != org {
			apiError(w, http.StatusForbidden, errOtherOrg)
			return
		}
		http.NewResponseController(w).SetReadDeadline(time.Time{}) // as requireAdmin: an audit may run long
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), readerOrgKey{}, org)))
	})
}

type accessError string

func (e accessError) Error() string { return string(e) }

const errOtherOrg accessError = "this read key belongs to another org"

// bearerOrg finds the org of the read key sent as "Authorization: Bearer KEY".
func bearerOrg(readKeys map[string]string, header string) (string, bool) {
	got, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return "", false
	}
	return stream.KeyOrg(readKeys, got)
}
