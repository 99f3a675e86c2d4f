package config

import (
	"time"
)

// Config is the whole tidemark configuration: one YAML file, strictly decoded.
type Config struct {
	Listen   string   `yaml:"listen"`
	DataDir  string   `yaml:"data_dir"`
	Log      Log      `yaml:"log"`
	Ingest   Ingest   `yaml:"ingest"`
	Sessions Sessions `yaml:"sessions"`
	Orgs     []Org    `yaml:"orgs"`
}

// Log configures the partitioned durable log.
type Log struct {
	Partitions   int      `yaml:"partitions"`     // fixed once data exists; default 8
	Retention    Duration `yaml:"retention"`      // default 168h; never deletes undelivered events
	TickInterval Duration `yaml:"tick_interval"`  // default 1s
	MinFreeBytes ByteSize `yaml:"min_free_bytes"` // ingest answers 503 below this; default 512MiB
	DedupeWindow Duration `yaml:"dedupe_window"`  // default 24h
	CacheBytes   ByteSize `yaml:"cache_bytes"`    // Pebble block cache; default 64MiB
}

// Ingest configures the collector.
type Ingest struct {
	MaxBodyBytes  ByteSize `yaml:"max_body_bytes"`  // default 4MiB (after gunzip)
	MaxEventBytes ByteSize `yaml:"max_event_bytes"` // default 32KiB
	MaxPending    int      `yaml:"max_pending"`     // events queued for the log before 503; default 100000
}

// Sessions configures entity derivation. Times are log time, not wall time.
type Sessions struct {
	PageIdle    Duration `yaml:"page_idle"`    // default 30m
	SessionIdle Duration `yaml:"session_idle"` // default 30m
}

// Org is one tenant: its write keys and destinations.
type Org struct {
	ID           string        `yaml:"id"`
	WriteKeys    []Secret      `yaml:"write_keys"`
	Destinations []Destination `yaml:"destinations"`
}

// Destination is one place an org's tables are delivered to.
type Destination struct {
	Name        string `yaml:"name"`
	URL         string `yaml:"url"`         // file:///path or file://./relative
	Format      string `yaml:"format"`      // parquet (default) or ndjson
	Compression string `yaml:"compression"` // parquet: zstd (default), snappy, gzip, none
	Flush       Flush  `yaml:"flush"`
}

// Flush says when a destination cuts a batch, evaluated in log time.
type Flush struct {
	MaxEvents int      `yaml:"max_events"` // default 10000 rows
	MaxBytes  ByteSize `yaml:"max_bytes"`  // default 64MiB of encoded rows
	MaxAge    Duration `yaml:"max_age"`    // default 1m
}

// Duration is a time.Duration written as "30m", "1s".
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// ByteSize is a size written as a number of bytes or with a unit: "4MiB", "32KiB".
type ByteSize int64

// Secret is a credential (write key). It prints as "[redacted]".
type Secret string

func (s Secret) String() string { return "[redacted]" }
