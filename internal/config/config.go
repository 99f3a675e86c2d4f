package config

import (
	"crypto/rand"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Config is the whole tidemark configuration: one YAML file, strictly decoded.
type Config struct {
	Listen   string   `yaml:"listen"`
	DataDir  string   `yaml:"data_dir"`
	Log      Log      `yaml:"log"`
	Ingest   Ingest   `yaml:"ingest"`
	Sessions Sessions `yaml:"sessions"`
	Audit    Audit    `yaml:"audit"`
	Stream   Stream   `yaml:"stream"`
	HTTP     HTTP     `yaml:"http"`
	Metrics  Metrics  `yaml:"metrics"`
	// AdminKeys authenticate the operator API (GET /api/v1/status) as
	// "Authorization: Bearer KEY". None: the API answers 404.
	AdminKeys []Secret `yaml:"admin_keys,omitempty" json:",omitempty"`
	Orgs      []Org    `yaml:"orgs"`
}

// Log configures the partitioned durable log.
type Log struct {
	Partitions   int      `yaml:"partitions"`     // fixed once data exists; default 8
	Retention    Duration `yaml:"retention"`      // default 168h; never deletes undelivered events
	TickInterval Duration `yaml:"tick_interval"`  // default 1s
	MinFreeBytes ByteSize `yaml:"min_free_bytes"` // ingest answers 503 below this; default 512MiB
	DedupeWindow Duration `yaml:"dedupe_window"`  // default 24h
	CacheBytes   ByteSize `yaml:"cache_bytes"`    // Pebble block cache; default 64MiB
	// Kafka, when it names brokers, puts the log in a Kafka topic of
	// Partitions partitions instead of the embedded store (docs/kafka.md).
	Kafka Kafka `yaml:"kafka"`
}

// Kafka configures a log held by a Kafka-protocol cluster (Apache Kafka,
// Redpanda, MSK). Off unless Brokers is set. Credentials never appear here:
// the SASL user name and password are read from the environment variables
// that SASL names, and no value read from them is ever printed.
type Kafka struct {
	Brokers  []string `yaml:"brokers,omitempty" json:",omitempty"` // seed brokers, host:port
	Topic    string   `yaml:"topic"`                               // default tidemark-events
	ClientID string   `yaml:"client_id"`                           // default tidemark
	// ReplicationFactor of the topic when tidemark creates it; 0: the
	// brokers' default (default.replication.factor).
	ReplicationFactor int `yaml:"replication_factor"`
	// Roles this node plays: "ingest" (accept events, produce them to the
	// topic) and "pipeline" (read the topic, deliver). Default both.
	Roles []string  `yaml:"roles"`
	TLS   KafkaTLS  `yaml:"tls"`
	SASL  KafkaSASL `yaml:"sasl"`
}

// KafkaTLS configures TLS to the brokers. The files are read when the node
// starts; their contents are never part of the configuration.
type KafkaTLS struct {
	Enabled  bool   `yaml:"enabled"`
	CAFile   string `yaml:"ca_file,omitempty" json:",omitempty"`   // PEM; default: the system's roots
	CertFile string `yaml:"cert_file,omitempty" json:",omitempty"` // client certificate (mutual TLS), with key_file
	KeyFile  string `yaml:"key_file,omitempty" json:",omitempty"`
}

// KafkaSASL configures SASL authentication: the mechanism, and the names of
// the environment variables that hold the user name and the password.
type KafkaSASL struct {
	Mechanism   string `yaml:"mechanism,omitempty" json:",omitempty"` // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; empty: none
	UsernameEnv string `yaml:"username_env,omitempty" json:",omitempty"`
	PasswordEnv string `yaml:"password_env,omitempty" json:",omitempty"`
}

// Kafka roles.
const (
	RoleIngest   = "ingest"
	RolePipeline = "pipeline"
)

// Enabled reports whether the log is in Kafka (brokers are configured).
func (k *Kafka) Enabled() bool { return len(k.Brokers) > 0 }

// HasRole reports whether this node plays role (RoleIngest, RolePipeline).
func (k *Kafka) HasRole(role string) bool { return slices.Contains(k.Roles, role) }

func defaultKafka() Kafka {
	return Kafka{Topic: "tidemark-events", ClientID: "tidemark", Roles: []string{RoleIngest, RolePipeline}}
}

// Ingest configures the collector.
type Ingest struct {
	MaxBodyBytes  ByteSize `yaml:"max_body_bytes"`  // default 4MiB (after gunzip)
	MaxEventBytes ByteSize `yaml:"max_event_bytes"` // default 32KiB
	MaxPending    int      `yaml:"max_pending"`     // events queued for the log before 503; default 100000
	// PriorityLag: while requests queue at the collector, the batch
	// pipeline yields the CPU to ingest until its backlog is this old
	// (pipeline.Yield; capped by Config.PriorityLag); 0 turns it off.
	// Default 30s.
	PriorityLag Duration `yaml:"priority_lag"`

	// What requests may hold at once while they are read, decoded and
	// appended (see collector.Limits): beyond an org's share the collector
	// answers 429, beyond the server's 503, both with Retry-After.
	MaxRequests            int      `yaml:"max_requests"`               // all orgs; default 1024
	MaxRequestsPerOrg      int      `yaml:"max_requests_per_org"`       // default 256
	MaxInflightBytes       ByteSize `yaml:"max_inflight_bytes"`         // all orgs; default 128MiB
	MaxInflightBytesPerOrg ByteSize `yaml:"max_inflight_bytes_per_org"` // default 32MiB
	// A request without an Authorization header (writeKey in the body) is
	// read only up to this size, within its own budget of bytes in flight.
	MaxKeylessBodyBytes     ByteSize `yaml:"max_keyless_body_bytes"`     // default 64KiB
	MaxKeylessInflightBytes ByteSize `yaml:"max_keyless_inflight_bytes"` // default 8MiB
}

// HTTP configures the HTTP server's timeouts and connection limit.
type HTTP struct {
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"` // default 10s
	// ReadTimeout bounds reading a whole request, body included (not the
	// live tail's stream, which reads nothing after its headers).
	ReadTimeout    Duration `yaml:"read_timeout"`    // default 60s
	IdleTimeout    Duration `yaml:"idle_timeout"`    // keep-alive; default 2m
	MaxConnections int      `yaml:"max_connections"` // open at once; more are answered 503 and closed; default 2048
}

// Metrics configures GET /metrics.
type Metrics struct {
	// Listen, when set, serves /metrics on this address only (not on the
	// main listener).
	Listen string `yaml:"listen,omitempty" json:",omitempty"`
	// Token, when set, is required as "Authorization: Bearer TOKEN".
	Token Secret `yaml:"token,omitempty" json:",omitempty"`
}

// Sessions configures entity derivation. Times are log time, not wall time.
type Sessions struct {
	PageIdle    Duration `yaml:"page_idle"`    // default 30m
	SessionIdle Duration `yaml:"session_idle"` // default 30m
}

// Audit configures the background auditor of `tidemark serve`, which compares
// the log with what each destination holds (see package audit).
type Audit struct {
	Interval Duration `yaml:"interval"` // between runs; default 5m
	Lookback Duration `yaml:"lookback"` // hours audited by each run; default 6h
}

// Stream configures the streaming pipeline (live tail, webhooks, live
// metrics). It reads the log with its own cursors and keeps its own state; the
// batch pipeline never depends on it.
type Stream struct {
	Enabled bool `yaml:"enabled"` // default true
	Live    Live `yaml:"live"`
}

// Live bounds the live-tail streams (GET /v1/live) open at once. Each org has
// its own share and the admin keys theirs, so nobody can use up another's.
type Live struct {
	MaxStreamsPerOrg int `yaml:"max_streams_per_org"` // default 10
	MaxStreamsPerKey int `yaml:"max_streams_per_key"` // per read key; default 5
	MaxAdminStreams  int `yaml:"max_admin_streams"`   // all admin keys together; default 10
}

// Org is one tenant: its write keys, destinations and webhooks.
type Org struct {
	ID        string   `yaml:"id"`
	WriteKeys []Secret `yaml:"write_keys"`
	// ReadKeys read the org's events (the live tail). Unlike write keys,
	// which ship in web pages, they must stay secret.
	ReadKeys     []Secret      `yaml:"read_keys,omitempty" json:",omitempty"`
	Destinations []Destination `yaml:"destinations"`
	Webhooks     []Webhook     `yaml:"webhooks,omitempty" json:",omitempty"`
}

// Webhook is one HTTP endpoint that receives an org's events in real time
// (the streaming pipeline: at least once, in order per device).
type Webhook struct {
	Name      string   `yaml:"name"`
	URL       string   `yaml:"url"`        // http:// or https://, no user info
	Secret    Secret   `yaml:"secret"`     // HMAC-SHA256 signing key, at least 16 characters
	Filter    Filter   `yaml:"filter"`     // empty: every event of the org
	BatchSize int      `yaml:"batch_size"` // events per request; default 100
	Timeout   Duration `yaml:"timeout"`    // per request; default 10s
	RetryFor  Duration `yaml:"retry_for"`  // from an event's arrival; then its batch goes to dead letters; default 24h
}

// Filter selects events by type and event name; an empty list matches all.
type Filter struct {
	Types  []string `yaml:"types,omitempty" json:",omitempty"`
	Events []string `yaml:"events,omitempty" json:",omitempty"` // track event / page name
}

// Destination is one place an org's tables are delivered to.
type Destination struct {
	Name        string `yaml:"name"`
	URL         string `yaml:"url"`         // file:///path or file://./relative
	Format      string `yaml:"format"`      // parquet (default) or ndjson
	Compression string `yaml:"compression"` // parquet: zstd (default), snappy, gzip, none
	Flush       Flush  `yaml:"flush"`
	// FreshnessGrace is added to flush.max_age (and, for pages and sessions,
	// to their idle timeout) to make the destination's freshness SLA per
	// table: an event not delivered that long after it was accepted is
	// stale (alerts) and, if absent, missing (audit). See FreshnessSLA.
	FreshnessGrace Duration `yaml:"freshness_grace"` // default 2m
	// PasswordEnv names the environment variable that holds the password
	// of a postgres:// destination (else PGPASSWORD, PGPASSFILE...).
	PasswordEnv string `yaml:"password_env"`
}

// Tables are the output tables, in the order of the per-table values of
// FreshnessSLAs (and transport.Status).
var Tables = [3]string{"events", "pages", "sessions"}

// FreshnessSLA is how long after acceptance a row of table ("events",
// "pages" or "sessions") must be in destination d. An event is written
// when it is read, so it is due after flush.max_age + freshness_grace; a
// page or session row only after its entity closed, so its SLA adds
// sessions.page_idle or sessions.session_idle (counted from the entity's
// last event).
func (c *Config) FreshnessSLA(d *Destination, table string) time.Duration {
	sla := d.Flush.MaxAge.D() + d.FreshnessGrace.D()
	switch table {
	case "pages":
		sla += c.Sessions.PageIdle.D()
	case "sessions":
		sla += c.Sessions.SessionIdle.D()
	}
	return sla
}

// FreshnessSLAs is FreshnessSLA of each of Tables.
func (c *Config) FreshnessSLAs(d *Destination) [3]time.Duration {
	var s [3]time.Duration
	for i, t := range Tables {
		s[i] = c.FreshnessSLA(d, t)
	}
	return s
}

// PriorityLag is how old the sessionizer's backlog may grow while it yields
// to ingest: ingest.priority_lag, but at most half of the shortest freshness
// SLA of any destination (its events table's), so that yielding alone never
// makes a destination stale. 0: never yield.
func (c *Config) PriorityLag() time.Duration {
	lag := c.Ingest.PriorityLag.D()
	for _, org := range c.Orgs {
		for i := range org.Destinations {
			lag = min(lag, c.FreshnessSLA(&org.Destinations[i], "events")/2)
		}
	}
	return max(lag, 0)
}

// Flush says when a destination cuts a batch, evaluated in log time.
type Flush struct {
	MaxEvents int      `yaml:"max_events"` // default 10000 rows
	MaxBytes  ByteSize `yaml:"max_bytes"`  // default 64MiB of encoded rows
	MaxAge    Duration `yaml:"max_age"`    // default 1m
}

// Names used when the configuration has no orgs; see WithDefaultOrg.
const (
	DefaultOrgID           = "default"
	DefaultDestinationName = "lake"
)

// Output formats a destination accepts.
const (
	FormatParquet = "parquet"
	FormatNDJSON  = "ndjson" // newline-delimited JSON, always gzip-compressed
)

// Default returns the embedded defaults: what `tidemark serve` runs with when
// no file is given. It has no orgs; see WithDefaultOrg.
func Default() *Config {
	return &Config{
		Listen:  "127.0.0.1:8080",
		DataDir: "./tidemark-data",
		Log: Log{
			Partitions:   8,
			Retention:    Duration(168 * time.Hour),
			TickInterval: Duration(time.Second),
			MinFreeBytes: 512 * MiB,
			DedupeWindow: Duration(24 * time.Hour),
			CacheBytes:   64 * MiB,
			Kafka:        defaultKafka(),
		},
		Ingest: Ingest{
			MaxBodyBytes:  4 * MiB,
			MaxEventBytes: 32 * KiB,
			MaxPending:    100000,
			PriorityLag:   Duration(30 * time.Second),

			MaxRequests:             1024,
			MaxRequestsPerOrg:       256,
			MaxInflightBytes:        128 * MiB,
			MaxInflightBytesPerOrg:  32 * MiB,
			MaxKeylessBodyBytes:     64 * KiB,
			MaxKeylessInflightBytes: 8 * MiB,
		},
		Sessions: Sessions{
			PageIdle:    Duration(30 * time.Minute),
			SessionIdle: Duration(30 * time.Minute),
		},
		Audit: Audit{
			Interval: Duration(5 * time.Minute),
			Lookback: Duration(6 * time.Hour),
		},
		Stream: Stream{Enabled: true, Live: Live{MaxStreamsPerOrg: 10, MaxStreamsPerKey: 5, MaxAdminStreams: 10}},
		HTTP: HTTP{
			ReadHeaderTimeout: Duration(10 * time.Second),
			ReadTimeout:       Duration(time.Minute),
			IdleTimeout:       Duration(2 * time.Minute),
			MaxConnections:    2048,
		},
	}
}

// NewWebhook returns a webhook with the default batch size (100), timeout
// (10s) and retry window (24h).
func NewWebhook(name, url string, secret Secret) Webhook {
	return Webhook{Name: name, URL: url, Secret: secret, BatchSize: 100,
		Timeout: Duration(10 * time.Second), RetryFor: Duration(24 * time.Hour)}
}

// NewDestination returns a destination with the default format (parquet),
// compression (zstd) and flush rules.
func NewDestination(name, url string) Destination {
	return Destination{
		Name:        name,
		URL:         url,
		Format:      FormatParquet,
		Compression: "zstd",
		Flush: Flush{
			MaxEvents: 10000,
			MaxBytes:  64 * MiB,
			MaxAge:    Duration(time.Minute),
		},
		FreshnessGrace: Duration(2 * time.Minute),
	}
}

// WithDefaultOrg makes c usable without any org configured: when c has no
// orgs, it adds org "default" with writeKey as its only write key and one
// destination "lake" at file://<data_dir>/lake (parquet, default flush rules).
// When c already has orgs it does nothing. Call it after Load (which accepts
// a config without orgs); writeKey must pass Validate (16 characters or more,
// see NewWriteKey).
func (c *Config) WithDefaultOrg(writeKey string) {
	if len(c.Orgs) > 0 {
		return
	}
	c.Orgs = []Org{{
		ID:           DefaultOrgID,
		WriteKeys:    []Secret{Secret(writeKey)},
		Destinations: []Destination{NewDestination(DefaultDestinationName, FileURL(filepath.Join(c.DataDir, "lake")))},
	}}
}

// FileURL returns the file destination URL of a local directory: an absolute
// path becomes file:///abs/path, a relative one file://./rel/path (the form
// gocloud.dev/blob/fileblob reads as relative to the working directory).
func FileURL(dir string) string {
	dir = filepath.ToSlash(filepath.Clean(dir))
	if filepath.IsAbs(filepath.FromSlash(dir)) || strings.HasPrefix(dir, "/") {
		if !strings.HasPrefix(dir, "/") {
			dir = "/" + dir // Windows: C:/x -> file:///C:/x
		}
		return "file://" + dir
	}
	if dir == "." {
		return "file://./"
	}
	return "file://./" + dir
}

// NewWriteKey returns a fresh random write key (26 characters of base32,
// 130 bits), for example for the dev key `tidemark serve` prints at start.
func NewWriteKey() string { return rand.Text() }
