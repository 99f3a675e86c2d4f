package stream

import (
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
)

// liveHeartbeat is how often an idle live-tail stream sends an SSE comment,
// so that proxies and clients see the connection is alive.
const liveHeartbeat = 15 * time.Second

// LiveKeys are the keys the live tail knows: read keys (secret) read their
// org's events, admin keys any org's; write keys are public (they ship in
// web pages) and are refused with a 403 that says so.
type LiveKeys struct {
	Read, Write map[string]string // key -> org
	// Admin reports whether key is an admin key (compared in constant time).
	Admin func(key string) bool
}

// LiveLimits bound the open live-tail streams (config stream.live).
type LiveLimits struct {
	MaxStreamsPerOrg, MaxStreamsPerKey, MaxAdminStreams int
}

// liveSlots counts the open streams per org, per key and of the admin keys,
// so that no org (or key) can use up another's share.
type liveSlots struct {
	lim  LiveLimits
	mu   sync.Mutex
	open map[string]int // "org:ID", "key:KEY", "admin"
}

// take reserves a stream for key (of org, or an admin key) and returns the
// func that frees it, or what is full.
func (s *liveSlots) take(org, key string, admin bool) (func(), string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := []string{"key:" + key, "org:" + org}
	if admin {
		names = []string{"admin"} // the admin keys share one budget
	}
	switch {
	case admin && s.open["admin"] >= s.lim.MaxAdminStreams:
		return nil, fmt.Sprintf("the admin keys have %d live-tail streams open, the most they may (stream.live.max_admin_streams)", s.lim.MaxAdminStreams)
	case admin:
	case s.open[names[0]] >= s.lim.MaxStreamsPerKey:
		return nil, fmt.Sprintf("this key has %d live-tail streams open, the most it may (stream.live.max_streams_per_key)", s.lim.MaxStreamsPerKey)
	case s.open[names[1]] >= s.lim.MaxStreamsPerOrg:
		return nil, fmt.Sprintf("org %s has %d live-tail streams open, the most it may (stream.live.max_streams_per_org)", org, s.lim.MaxStreamsPerOrg)
	}
	for _, n := range names {
		s.open[n]++
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, n := range names {
			if s.open[n]--; s.open[n] == 0 {
				delete(s.open, n)
			}
		}
	}, ""
}

// LiveHandler serves GET /v1/live: Server-Sent Events of the org's events as
// they are committed. Auth: a read key of the org (Basic user or Bearer), or
// an admin key with ?org= (without org, every org); a write key gets 403.
// Filters: type= and device= (repeated or comma-separated), event=
// (repeated).
// A nil hub (the stream is off) answers 503.
func LiveHandler(hub *Hub, keys LiveKeys, lim LiveLimits, logger *slog.Logger) http.Handler {
	slots := &liveSlots{lim: lim, open: map[string]int{}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hub == nil {
			http.Error(w, "the live tail is off: stream.enabled is false", http.StatusServiceUnavailable)
			return
		}
		q := r.URL.Query()
		key := requestKey(r)
		org, ok := KeyOrg(keys.Read, key)
		admin := !ok && key != "" && keys.Admin(key)
		_, public := KeyOrg(keys.Write, key)
		switch {
		case ok && q.Get("org") != "" && q.Get("org") != org:
			http.Error(w, "this read key belongs to another org", http.StatusForbidden)
			return
		case admin:
			org = q.Get("org")
		case !ok && public:
			http.Error(w, "a write key cannot read events: write keys are public (they ship in web pages); "+
				"use one of the org's read keys (orgs[].read_keys) or an admin key", http.StatusForbidden)
			return
		case !ok:
			w.Header().Set("WWW-Authenticate", `Basic realm="tidemark"`)
			http.Error(w, "missing or unknown key: send one of the org's read keys (Basic user or Bearer) or an admin key", http.StatusUnauthorized)
			return
		}
		free, full := slots.take(org, key, admin)
		if full != "" {
			w.Header().Set("Retry-After", "10")
			http.Error(w, full, http.StatusTooManyRequests)
			return
		}
		defer free()
		// The stream reads nothing after its headers: lift http.read_timeout,
		// which would otherwise end it.
		http.NewResponseController(w).SetReadDeadline(time.Time{})
		flusher, canFlush := w.(http.Flusher)
		if !canFlush {
			http.Error(w, "streaming unsupported", http.StatusInternalServerError)
			return
		}
		// Event names may contain commas: repeat event= for several.
		sub, cancel, err := hub.Subscribe(NewFilter(org, list(q["type"]), nonEmpty(q["event"]), list(q["device"])))
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

// KeyOrg finds the org of key in keys (key -> org), comparing with every
// key in constant time.
func KeyOrg(keys map[string]string, key string) (string, bool) {
	if key == "" {
		return "", false
	}
	var org string
	for k, o := range keys {
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
