// Package redact makes URLs fit for logs, errors and status pages: it is
// the one place that knows how (destination URLs, webhook URLs and the
// request URLs that client errors quote all go through URL).
package redact

import (
	"net/url"
	"slices"
	"strings"
)

// URL returns rawURL without user info, fragment and the values of query
// parameters that may hold secrets: the value of every parameter not in
// safe is replaced by "REDACTED" (a safe value that is itself a URL loses
// its user info). With no safe parameters (nil), the query is dropped
// altogether: a webhook's URL has no parameters known to be harmless, and
// its query often is the token. An unparsable URL keeps at most its
// scheme, and an opaque one ("scheme:anything") only its scheme.
func URL(rawURL string, safe []string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		// The parser's own error quotes the input; show only the scheme.
		if scheme, _, ok := strings.Cut(rawURL, "://"); ok && !strings.ContainsAny(scheme, "/@:?#") {
			return scheme + "://<unparsable>"
		}
		return "<unparsable URL>"
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if u.Opaque != "" {
		// "scheme:opaque" may carry anything; keep only the scheme.
		return u.Scheme + ":<opaque>"
	}
	if safe == nil {
		u.RawQuery, u.ForceQuery = "", false
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k, vs := range q {
			for i, v := range vs {
				if !slices.Contains(safe, k) {
					vs[i] = "REDACTED"
				} else if strings.Contains(v, "@") {
					// endpoint=https://user:secret@host
					if vu, err := url.Parse(v); err == nil && vu.User != nil {
						vu.User = nil
						vs[i] = vu.String()
					} else {
						vs[i] = "REDACTED"
					}
				}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
