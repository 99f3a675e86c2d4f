package server

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/stream"
)

// liveHeartbeat is how often an idle live-tail stream sends an SSE comment,
// so that proxies and clients see the connection is alive.
const liveHeartbeat = 15 * time.Second

// liveHandler serves GET /v1/live: Server-Sent Events of the org's events as
// they are committed. Auth: a write key of the org (Basic user or Bearer, as
// the collector accepts it), or an admin key with ?org= (without org, every
// org). Filters: type= and device= (repeated or comma-separated), event=
// (repeated).
func liveHandler(hub *stream.Hub, writeKeys map[string]string, adminKeys []config.Secret, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hub == nil {
			http.Error(w, "the live tail is off: stream.enabled is false", http.StatusServiceUnavailable)
			return
		}
		q := r.URL.Query()
		key := requestKey(r)
		org, ok := keyOrg(writeKeys, key)
		switch {
		case ok && q.Get("org") != "" && q.Get("org") != org:
			http.Error(w, "this write key belongs to another org", http.StatusForbidden)
			return
		case !ok && key != "" && adminAuth(adminKeys, "Bearer "+key):
			org = q.Get("org")
		case !ok:
			w.Header().Set("WWW-Authenticate", `Basic realm="tidemark"`)
			http.Error(w, "missing or unknown key: send the org's write key (Basic user or Bearer) or an admin key", http.StatusUnauthorized)
			return
		}
		flusher, canFlush := w.(http.Flusher)
		if !canFlush {
			http.Error(w, "streaming unsupported", http.StatusInternalServerError)
			return
		}
		// Event names may contain commas: repeat event= for several.
		sub, cancel, err := hub.Subscribe(stream.NewFilter(org, list(q["type"]), nonEmpty(q["event"]), list(q["device"])))
		if err != nil {
			w.Header().Set("Retry-After", "10")
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer cancel()
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		w.WriteHeader(http.StatusOK)
		fmt.Fprint(w, ": subscribed\n\n") // tells the client the subscription is live
		flusher.Flush()
		logger.Debug("live tail opened", "org", org)
		beat := time.NewTicker(liveHeartbeat)
		defer beat.Stop()
		for {
			var err error
			select {
			case <-r.Context().Done():
				return
			case <-hub.Done():
				return
			case <-beat.C:
				_, err = fmt.Fprint(w, ": heartbeat\n\n")
			case data := <-sub.C():
				if n := sub.TakeDropped(); n > 0 {
					_, err = fmt.Fprintf(w, "event: dropped\ndata: {\"dropped\":%d}\n\n", n)
				}
				if err == nil {
					_, err = fmt.Fprintf(w, "event: event\ndata: %s\n\n", data)
				}
			}
			if err != nil {
				return
			}
			flusher.Flush()
		}
	})
}

// requestKey is the key sent as the Basic user (or password when the user is
// empty) or as a Bearer token.
func requestKey(r *http.Request) string {
	if user, pass, ok := r.BasicAuth(); ok {
		if user == "" {
			return pass
		}
		return user
	}
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

// keyOrg finds the org of a write key, comparing in constant time.
func keyOrg(writeKeys map[string]string, key string) (string, bool) {
	if key == "" {
		return "", false
	}
	var org string
	for k, o := range writeKeys {
		if subtle.ConstantTimeCompare([]byte(k), []byte(key)) == 1 {
			org = o
		}
	}
	return org, org != ""
}

// list splits repeated and comma-separated query values.
func list(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
	}
	return out
}

func nonEmpty(vals []string) []string {
	var out []string
	for _, v := range vals {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}
