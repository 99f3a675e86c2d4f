package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/tidemark/tidemark/internal/destination/registry"
)

// Limits enforced by Validate.
const (
	MaxPartitions   = 256
	MinRetention    = time.Hour
	MinTickInterval = 10 * time.Millisecond
	MaxTickInterval = time.Minute
	MinWriteKeyLen  = 16

	MinWebhookSecretLen = 16
	MaxWebhookBatch     = 10000
	MaxWebhookTimeout   = 5 * time.Minute
)

// idPattern is the charset of org ids and destination names: they appear in
// object keys, metric labels and URLs, so they are kept boring.
var idPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

const idHelp = `must be 1 to 63 lowercase letters, digits, "_" or "-", starting with a letter or digit`

// Destination URL schemes: those the registry opens.
var schemes = registry.Schemes()

var compressions = []string{"zstd", "snappy", "gzip", "none"}

// Validate checks c and returns every problem found, joined (errors.Join of
// *FieldError, each naming its key path). A config without orgs is valid.
// A password_env destination's variable is looked up in the process's
// environment.
func (c *Config) Validate() error { return joinErrs(c.validate(os.LookupEnv)) }

type problems []*FieldError

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *problems) positive(path string, v int64, show string) {
	if v <= 0 {
		p.add(path, "must be greater than 0, got %s", show)
	}
}

// name checks the name of a destination or webhook at path, unique among
// seen (name -> path) of its org.
func (p *problems) name(path, name, what string, seen map[string]string) {
	switch {
	case name == "":
		p.add(path, "must not be empty")
	case !idPattern.MatchString(name):
		p.add(path, "%s, got %q", idHelp, name)
	case seen[name] != "":
		p.add(path, "duplicate %s name %q in this org (also %s)", what, name, seen[name])
	default:
		seen[name] = path
	}
}

// validate checks c; lookup reads the environment (password_env).
func (c *Config) validate(lookup func(string) (string, bool)) []*FieldError {
	var p problems

	if host, port, err := net.SplitHostPort(c.Listen); err != nil {
		p.add("listen", "want host:port, e.g. \"127.0.0.1:8080\" or \":8080\", got %q", c.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add("listen", "port must be a number from 0 to 65535, got %q", port)
	} else if strings.ContainsAny(host, " /") {
		p.add("listen", "invalid host %q", host)
	}
	if strings.TrimSpace(c.DataDir) == "" {
		p.add("data_dir", "must not be empty")
	}

	l := c.Log
	if l.Partitions < 1 || l.Partitions > MaxPartitions {
		p.add("log.partitions", "must be between 1 and %d, got %d", MaxPartitions, l.Partitions)
	}
	if l.Retention.D() < MinRetention {
		p.add("log.retention", "must be at least %s, got %s", Duration(MinRetention), l.Retention)
	}
	if l.TickInterval.D() < MinTickInterval || l.TickInterval.D() > MaxTickInterval {
		p.add("log.tick_interval", "must be between %s and %s, got %s",
			Duration(MinTickInterval), Duration(MaxTickInterval), l.TickInterval)
	}
	p.positive("log.min_free_bytes", int64(l.MinFreeBytes), l.MinFreeBytes.String())
	p.positive("log.dedupe_window", int64(l.DedupeWindow), l.DedupeWindow.String())
	p.positive("log.cache_bytes", int64(l.CacheBytes), l.CacheBytes.String())
	c.validateKafka(&p, lookup)

	in := c.Ingest
	p.positive("ingest.max_body_bytes", int64(in.MaxBodyBytes), in.MaxBodyBytes.String())
	p.positive("ingest.max_event_bytes", int64(in.MaxEventBytes), in.MaxEventBytes.String())
	if in.MaxBodyBytes > 0 && in.MaxEventBytes > in.MaxBodyBytes {
		p.add("ingest.max_event_bytes", "must not exceed ingest.max_body_bytes (%s), got %s", in.MaxBodyBytes, in.MaxEventBytes)
	}
	p.positive("ingest.max_pending", int64(in.MaxPending), strconv.Itoa(in.MaxPending))
	if in.PriorityLag < 0 {
		p.add("ingest.priority_lag", "must not be negative (0 turns it off), got %s", in.PriorityLag)
	}

	c.validateLimits(&p)

	s := c.Sessions
	p.positive("sessions.page_idle", int64(s.PageIdle), s.PageIdle.String())
	p.positive("sessions.session_idle", int64(s.SessionIdle), s.SessionIdle.String())
	if s.SessionIdle > 0 && s.PageIdle > s.SessionIdle {
		p.add("sessions.page_idle", "must not exceed sessions.session_idle (%s): a page cannot outlive its session, got %s",
			s.SessionIdle, s.PageIdle)
	}

	a := c.Audit
	p.positive("audit.interval", int64(a.Interval), a.Interval.String())
	if a.Lookback.D() < time.Hour {
		p.add("audit.lookback", "must be at least 1h (the audit works in whole hours), got %s", a.Lookback)
	}

	orgIDs := map[string]string{} // id -> path
	keys := map[string]string{}   // write and admin key -> path
	// addKey checks a key's form and that no other key (write or admin) is equal.
	addKey := func(kp string, k Secret, dup string) {
		if msg := checkWriteKey(k.Reveal()); msg != "" {
			p.add(kp, "%s", msg)
		} else if prev := keys[k.Reveal()]; prev != "" {
			p.add(kp, dup, prev)
		} else {
			keys[k.Reveal()] = kp
		}
	}
	for j, k := range c.AdminKeys {
		addKey(fmt.Sprintf("admin_keys[%d]", j), k, "duplicate key (also %s)")
	}
	for i, o := range c.Orgs {
		op := fmt.Sprintf("orgs[%d]", i)
		switch {
		case o.ID == "":
			p.add(op+".id", "must not be empty")
		case !idPattern.MatchString(o.ID):
			p.add(op+".id", "%s, got %q", idHelp, o.ID)
		case orgIDs[o.ID] != "":
			p.add(op+".id", "duplicate org id %q (also %s)", o.ID, orgIDs[o.ID])
		default:
			orgIDs[o.ID] = op + ".id"
		}

		if len(o.WriteKeys) == 0 {
			p.add(op+".write_keys", "an org needs at least one write key")
		}
		for j, k := range o.WriteKeys {
			addKey(fmt.Sprintf("%s.write_keys[%d]", op, j), k,
				"duplicate write key (also %s): a key must identify one org, and no admin key may be a write key")
		}
		for j, k := range o.ReadKeys {
			addKey(fmt.Sprintf("%s.read_keys[%d]", op, j), k,
				"duplicate key (also %s): a read key must differ from every write, read and admin key")
		}

		if len(o.Destinations) == 0 {
			p.add(op+".destinations", "an org needs at least one destination")
		}
		names := map[string]string{}
		for j, d := range o.Destinations {
			dp := fmt.Sprintf("%s.destinations[%d]", op, j)
			p.name(dp+".name", d.Name, "destination", names)
			if msg := checkURL(d.URL); msg != "" {
				p.add(dp+".url", "%s", msg)
			}
			if msg := checkPasswordEnv(&d, lookup); msg != "" {
				p.add(dp+".password_env", "%s", msg)
			}
			switch d.Format {
			case FormatParquet:
				if !slices.Contains(compressions, d.Compression) {
					p.add(dp+".compression", "must be one of %s, got %q", strings.Join(compressions, ", "), d.Compression)
				}
			case FormatNDJSON:
				if d.Compression != "gzip" {
					p.add(dp+".compression", "ndjson files are always gzip-compressed: remove compression or set it to gzip, got %q", d.Compression)
				}
			default:
				p.add(dp+".format", "must be parquet or ndjson, got %q", d.Format)
			}
			f := d.Flush
			p.positive(dp+".flush.max_events", int64(f.MaxEvents), strconv.Itoa(f.MaxEvents))
			p.positive(dp+".flush.max_bytes", int64(f.MaxBytes), f.MaxBytes.String())
			p.positive(dp+".flush.max_age", int64(f.MaxAge), f.MaxAge.String())
			if d.FreshnessGrace < 0 {
				p.add(dp+".freshness_grace", "must not be negative, got %s", d.FreshnessGrace)
			}
		}
		hooks := map[string]string{}
		for j, w := range o.Webhooks {
			wp := fmt.Sprintf("%s.webhooks[%d]", op, j)
			p.name(wp+".name", w.Name, "webhook", hooks)
			if msg := checkWebhookURL(w.URL); msg != "" {
				p.add(wp+".url", "%s", msg)
			}
			switch s := w.Secret.Reveal(); {
			case s == "":
				p.add(wp+".secret", "must not be empty: requests are signed with it (HMAC-SHA256)")
			case len(s) < MinWebhookSecretLen:
				p.add(wp+".secret", "must be at least %d characters, got %d", MinWebhookSecretLen, len(s))
			}
			for k, typ := range w.Filter.Types {
				if !slices.Contains(eventTypes, typ) {
					p.add(fmt.Sprintf("%s.filter.types[%d]", wp, k), "must be one of %s, got %q", strings.Join(eventTypes, ", "), typ)
				}
			}
			for k, name := range w.Filter.Events {
				if name == "" {
					p.add(fmt.Sprintf("%s.filter.events[%d]", wp, k), "must not be empty")
				}
			}
			if w.BatchSize < 1 || w.BatchSize > MaxWebhookBatch {
				p.add(wp+".batch_size", "must be between 1 and %d, got %d", MaxWebhookBatch, w.BatchSize)
			}
			if w.Timeout.D() <= 0 || w.Timeout.D() > MaxWebhookTimeout {
				p.add(wp+".timeout", "must be greater than 0 and at most %s, got %s", Duration(MaxWebhookTimeout), w.Timeout)
			}
			p.positive(wp+".retry_for", int64(w.RetryFor), w.RetryFor.String())
		}
	}
	p.overlaps(c)
	return p
}

// eventTypes are the Segment call types a webhook filter may name (the same
// list as event.Types; config does not import the record package).
var eventTypes = []string{"track", "page", "screen", "identify", "group", "alias"}

// checkWebhookURL returns what is wrong with a webhook URL, never its user info.
func checkWebhookURL(raw string) string {
	if raw == "" {
		return "must not be empty"
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "want an http:// or https:// URL with a host, e.g. https://hooks.example.com/tidemark"
	}
	if u.User != nil {
		return "must not contain credentials: the receiver authenticates requests by their signature (secret)"
	}
	return ""
}

// checkWriteKey returns what is wrong with k, never k itself.
func checkWriteKey(k string) string {
	switch {
	case k == "":
		return "must not be empty"
	case len(k) < MinWriteKeyLen:
		return fmt.Sprintf("must be at least %d characters, got %d", MinWriteKeyLen, len(k))
	case strings.ContainsFunc(k, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
		// Typically a trailing newline from `export KEY=$(cat keyfile)`.
		return "must not contain spaces, newlines or control characters"
	case strings.Contains(k, ":"):
		return `must not contain ":" (the key is sent as the HTTP Basic user name)`
	}
	return ""
}

// checkURL returns what is wrong with a destination URL's form, never its
// credentials. Where it writes is checked by overlaps.
func checkURL(raw string) string {
	if raw == "" {
		return "must not be empty"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "not a valid URL: want scheme://location, e.g. file:///var/lib/tidemark/lake or s3://bucket/prefix"
	}
	if !slices.Contains(schemes, u.Scheme) {
		return fmt.Sprintf("unsupported scheme %q: want one of %s", u.Scheme, strings.Join(schemes, ", "))
	}
	if postgresScheme(u.Scheme) {
		// The user name belongs in the URL, a password never.
		if _, err := registry.Locate(raw); err != nil {
			return err.Error()
		}
		return ""
	}
	if u.User != nil {
		return "must not contain credentials: use the environment or the instance's credentials"
	}
	if u.Opaque != "" {
		// Not the rest of the URL: "s3:KEY:SECRET@bucket" parses as opaque.
		return fmt.Sprintf("want %s://location: the URL has no \"//\" after %q", u.Scheme, u.Scheme+":")
	}
	p := strings.TrimRight(u.Path, "/")
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "." {
			return fmt.Sprintf("file URL host must be empty (file:///absolute/path) or \".\" (file://./relative/path), got %q", u.Host)
		}
		if p == "" {
			return "file URL needs a directory: file:///absolute/path or file://./relative/path"
		}
	default:
		if u.Host == "" {
			what := "bucket"
			if u.Scheme == "azblob" {
				what = "container"
			}
			return fmt.Sprintf("%s URL needs a %s: %s://%s/optional/prefix", u.Scheme, what, u.Scheme, what)
		}
	}
	return ""
}

func postgresScheme(s string) bool { return s == "postgres" || s == "postgresql" }

// checkPasswordEnv checks a destination's password_env: only for
// postgres:// URLs, naming a variable that is set. The message names the
// variable, never its value.
func checkPasswordEnv(d *Destination, lookup func(string) (string, bool)) string {
	if d.PasswordEnv == "" {
		return ""
	}
	if u, err := url.Parse(d.URL); err != nil || !postgresScheme(u.Scheme) {
		return "is only for postgres:// destinations (the others find their credentials in the cloud's own chain)"
	}
	if !envName.MatchString(d.PasswordEnv) {
		return fmt.Sprintf("must name an environment variable (letters, digits and _, not starting with a digit), got %q", d.PasswordEnv)
	}
	if v, _ := lookup(d.PasswordEnv); v == "" {
		return fmt.Sprintf("environment variable %s is not set or empty", d.PasswordEnv)
	}
	return ""
}

// validateLimits checks the ingest limits, the HTTP server's timeouts and
// connection limit, the live-tail limits and the metrics listener.
func (c *Config) validateLimits(p *problems) {
	in := c.Ingest
	p.positive("ingest.max_requests", int64(in.MaxRequests), strconv.Itoa(in.MaxRequests))
	p.positive("ingest.max_requests_per_org", int64(in.MaxRequestsPerOrg), strconv.Itoa(in.MaxRequestsPerOrg))
	p.positive("ingest.max_inflight_bytes", int64(in.MaxInflightBytes), in.MaxInflightBytes.String())
	p.positive("ingest.max_inflight_bytes_per_org", int64(in.MaxInflightBytesPerOrg), in.MaxInflightBytesPerOrg.String())
	p.positive("ingest.max_keyless_body_bytes", int64(in.MaxKeylessBodyBytes), in.MaxKeylessBodyBytes.String())
	p.positive("ingest.max_keyless_inflight_bytes", int64(in.MaxKeylessInflightBytes), in.MaxKeylessInflightBytes.String())
	if in.MaxInflightBytesPerOrg > 0 && in.MaxBodyBytes > in.MaxInflightBytesPerOrg/2 {
		p.add("ingest.max_body_bytes", "must be at most half of ingest.max_inflight_bytes_per_org (%s): a request holds twice its body while decoded, got %s",
			in.MaxInflightBytesPerOrg, in.MaxBodyBytes)
	}
	h := c.HTTP
	p.positive("http.read_header_timeout", int64(h.ReadHeaderTimeout), h.ReadHeaderTimeout.String())
	p.positive("http.read_timeout", int64(h.ReadTimeout), h.ReadTimeout.String())
	p.positive("http.idle_timeout", int64(h.IdleTimeout), h.IdleTimeout.String())
	p.positive("http.max_connections", int64(h.MaxConnections), strconv.Itoa(h.MaxConnections))
	l := c.Stream.Live
	p.positive("stream.live.max_streams_per_org", int64(l.MaxStreamsPerOrg), strconv.Itoa(l.MaxStreamsPerOrg))
	p.positive("stream.live.max_streams_per_key", int64(l.MaxStreamsPerKey), strconv.Itoa(l.MaxStreamsPerKey))
	p.positive("stream.live.max_admin_streams", int64(l.MaxAdminStreams), strconv.Itoa(l.MaxAdminStreams))
	if c.Metrics.Listen != "" {
		if _, _, err := net.SplitHostPort(c.Metrics.Listen); err != nil {
			p.add("metrics.listen", "want host:port, e.g. \"127.0.0.1:9091\", got %q", c.Metrics.Listen)
		} else if c.Metrics.Listen == c.Listen {
			p.add("metrics.listen", "must differ from listen (%s): leave it out to serve /metrics on the main listener", c.Listen)
		}
	}
	if t := c.Metrics.Token.Reveal(); t != "" && len(t) < MinWriteKeyLen {
		p.add("metrics.token", "must be at least %d characters, got %d", MinWriteKeyLen, len(t))
	}
}
