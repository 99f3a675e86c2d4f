// Package assemble builds the pipeline of one configuration: the log, the
// sessionizers, one transport and audit target per destination, and the
// streaming pipeline. `serve` runs what it builds; the offline `audit` and
// `backfill` open a stopped server's data directory with it, so that both
// see the same destinations wired the same way. It is the one place where
// the configuration becomes sessionize.Config, transport.Options and
// audit.Target; it never changes the configuration it is given.
package assemble

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/registry"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/fault"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/pipeline"
	"github.com/tidemark/tidemark/internal/sessionize"
	"github.com/tidemark/tidemark/internal/stream"
	"github.com/tidemark/tidemark/internal/transport"
)

// Options are the parts of assembling that are not configuration.
type Options struct {
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	Now        func() time.Time
	// Version names the webhook sender (User-Agent).
	Version string
	// Offline opens the data directory of a stopped server for audit and
	// backfill: the log is opened for reading (no ingest limits), nothing
	// is created in it (owner ids are read, not made), and no stream is
	// built. The caller checks that the data directory exists.
	Offline bool
	// DefaultOrgKey returns the write key of org "default", which a
	// configuration without orgs gets (config.WithDefaultOrg). Nil: a
	// placeholder key (offline commands need the org's destination, not
	// its key).
	DefaultOrgKey func(lg *eventlog.Log) (string, error)
	// Select limits the destinations built to those it returns true for
	// (nil: all of them).
	Select func(org, name string) bool
	// Opened is called for each destination as it is built, in
	// configuration order; an error stops the assembly.
	Opened func(p *Pipeline, d *Destination) error
	// Check runs once the destinations are built and before the stream is:
	// the start-up check, which may change the log (eventlog.SkipTo).
	Check func(p *Pipeline) error

	// Faults are the test-only fault switches (fault.FromEnv): zero in
	// production.
	Faults fault.Set
}

// Pipeline is the assembled pipeline. Close releases what Build opened.
type Pipeline struct {
	// Config is the configuration the pipeline was built from: the one
	// given, or a copy of it with org "default" when it has no orgs.
	Config       *config.Config
	Log          *eventlog.Log
	Sessions     sessionize.Config
	Sessionizers *pipeline.Sessionizers
	Destinations []*Destination
	// WebhookCursors are the stream's cursors per partition as stored
	// (serve only; read before the stream starts, for the start-up check).
	WebhookCursors []uint64
	// Stream and Hub are the streaming pipeline, nil when it is off (and
	// offline).
	Stream *stream.Stream
	Hub    *stream.Hub

	closers []func() error
}

// Destination is one configured destination of an org, opened.
type Destination struct {
	Org, Name string
	URL       string
	// SLAs are the freshness SLAs of its events, pages and sessions tables.
	SLAs [3]time.Duration
	// Dest is the destination as opened, without test faults.
	Dest      destination.Destination
	Transport *transport.Transport
	Target    audit.Target
	// OwnerID is the id with which this data directory claims the
	// destination's place ("" offline when serve never stored one).
	OwnerID string
}

// StoreError is an error reading the data directory's stores (the log, the
// sessionizer state, the stream's cursors): the data directory may be
// damaged.
type StoreError struct{ Err error }

func (e *StoreError) Error() string { return e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

func storeErr(err error) error {
	if err == nil {
		return nil
	}
	return &StoreError{err}
}

// SessionsConfig is the sessionizer configuration of cfg.
func SessionsConfig(cfg *config.Config) sessionize.Config {
	return sessionize.Config{PageIdle: cfg.Sessions.PageIdle.D(), SessionIdle: cfg.Sessions.SessionIdle.D(),
		DedupeWindow: cfg.Log.DedupeWindow.D()}
}

// Build assembles the pipeline of cfg, which it does not modify. On error
// everything it opened is closed again.
func Build(ctx context.Context, cfg *config.Config, o Options) (_ *Pipeline, err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	lo := eventlog.Options{MemTableBytes: o.Faults.MemTableBytes, Partitions: cfg.Log.Partitions, CacheBytes: int64(cfg.Log.CacheBytes),
		Registerer: o.Registerer, Logger: o.Logger}
	if !o.Offline {
		lo.MaxPending, lo.MinFreeBytes = cfg.Ingest.MaxPending, int64(cfg.Log.MinFreeBytes)
	}
	lg, err := eventlog.Open(cfg.DataDir, lo)
	if err != nil {
		return nil, storeErr(err)
	}
	p := &Pipeline{Config: cfg, Log: lg, Sessions: SessionsConfig(cfg), closers: []func() error{lg.Close}}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if len(cfg.Orgs) == 0 {
		key := placeholderKey
		if o.DefaultOrgKey != nil {
			if key, err = o.DefaultOrgKey(lg); err != nil {
				return nil, err
			}
		}
		c := *cfg
		c.WithDefaultOrg(key)
		p.Config = &c
	}
	cfg = p.Config
	if p.Sessionizers, err = pipeline.NewSessionizers(lg, lg.State(), p.Sessions, o.Registerer, o.Logger); err != nil {
		return nil, storeErr(err)
	}
	tm, err := transport.NewMetrics(o.Registerer, func() int64 { return o.Now().UnixNano() })
	if err != nil {
		return nil, err
	}
	// The destinations of an org with equal flush rules cut the same
	// batches: each is read from the log and decoded once for all of them.
	shared := transport.NewShared(0)
	for _, org := range cfg.Orgs {
		for _, dc := range org.Destinations {
			if o.Select != nil && !o.Select(org.ID, dc.Name) {
				continue
			}
			d, err := p.open(ctx, org.ID, &dc, tm, shared, o)
			if err != nil {
				return nil, err
			}
			p.Destinations = append(p.Destinations, d)
			if o.Opened != nil {
				if err := o.Opened(p, d); err != nil {
					return nil, err
				}
			}
		}
	}
	if o.Offline {
		return p, nil
	}
	if p.WebhookCursors, err = stream.Cursors(cfg.DataDir, lg.Partitions(), o.Logger); err != nil {
		return nil, storeErr(err)
	}
	if o.Check != nil {
		if err := o.Check(p); err != nil {
			return nil, err
		}
	}
	if cfg.Stream.Enabled {
		if err := p.buildStream(o); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// placeholderKey is org "default"'s write key when the caller does not need
// one: offline commands use its destination, never its key.
var placeholderKey = strings.Repeat("x", config.MinWriteKeyLen)

// open opens destination dc of org and builds its transport and audit
// target.
func (p *Pipeline) open(ctx context.Context, org string, dc *config.Destination, tm *transport.Metrics, shared *transport.Shared, o Options) (*Destination, error) {
	codec, err := format.ParseCodec(dc.Format, dc.Compression)
	if err != nil {
		return nil, fmt.Errorf("org %s destination %s: %w", org, dc.Name, err)
	}
	d, err := registry.Open(ctx, dc.URL, destination.Options{Codec: codec, PasswordEnv: dc.PasswordEnv, Registerer: o.Registerer})
	if err != nil {
		return nil, fmt.Errorf("org %s destination %s: %w", org, dc.Name, err)
	}
	p.closers = append(p.closers, d.Close)
	id, err := OwnerID(p.Log, org, dc.Name, !o.Offline)
	if err != nil {
		return nil, err
	}
	if c, ok := d.(destination.Claimer); ok {
		c.SetOwner(destination.Owner{Org: org, Destination: dc.Name, ID: id})
	}
	readBack, ok := d.(audit.Destination)
	if !ok {
		return nil, fmt.Errorf("org %s destination %s: %s destinations cannot be audited", org, dc.Name, registry.Redact(dc.URL))
	}
	readBack = o.Faults.ReadBack(org, dc.Name, readBack)
	var permanent func(error) bool
	if c, ok := d.(destination.Classifier); ok {
		permanent = c.Permanent
	}
	dest := o.Faults.Destination(org, dc.Name, d)
	cfg := p.Config
	sla := cfg.FreshnessSLAs(dc)
	tr := transport.New(transport.Options{
		Org: org, Name: dc.Name, Dest: dest, Log: p.Log, Outputs: p.Sessionizers, Metrics: tm, Logger: o.Logger, Now: o.Now,
		Flush:     transport.Flush{MaxEvents: dc.Flush.MaxEvents, MaxBytes: int64(dc.Flush.MaxBytes), MaxAge: dc.Flush.MaxAge.D()},
		Permanent: permanent, SLA: sla, Shared: shared,
	})
	return &Destination{Org: org, Name: dc.Name, URL: dc.URL, SLAs: sla, Dest: d, Transport: tr, OwnerID: id,
		Target: audit.Target{Org: org, Name: dc.Name, Dest: readBack, SLA: sla[0], Frontier: tr.Frontier, Missing: tr.SetAuditMissing}}, nil
}

// buildStream builds the streaming pipeline: its own cursors and store,
// nothing the batch pipeline reads.
func (p *Pipeline) buildStream(o Options) (err error) {
	cfg := p.Config
	if p.Hub, err = stream.NewHub(o.Registerer); err != nil {
		return err
	}
	l := cfg.Stream.Live
	p.Hub.SetMaxSubscribers(l.MaxStreamsPerOrg*len(cfg.Orgs) + l.MaxAdminStreams)
	p.Stream, err = stream.New(stream.Options{
		Log: p.Log, DataDir: cfg.DataDir, Webhooks: Webhooks(cfg), Hub: p.Hub,
		PageIdle: cfg.Sessions.PageIdle.D(), SessionIdle: cfg.Sessions.SessionIdle.D(),
		Sender:     stream.NewSender("tidemark-webhook/"+o.Version, o.Now),
		Registerer: o.Registerer, Logger: o.Logger, Now: o.Now, Faults: o.Faults,
	})
	return err
}

// Transports returns the destinations' transports, in order.
func (p *Pipeline) Transports() []*transport.Transport {
	out := make([]*transport.Transport, len(p.Destinations))
	for i, d := range p.Destinations {
		out[i] = d.Transport
	}
	return out
}

// Targets returns the destinations' audit targets, in order.
func (p *Pipeline) Targets() []audit.Target {
	out := make([]audit.Target, len(p.Destinations))
	for i, d := range p.Destinations {
		out[i] = d.Target
	}
	return out
}

// Close closes the destinations and then the log.
func (p *Pipeline) Close() error {
	var errs []error
	for i := len(p.closers) - 1; i >= 0; i-- {
		errs = append(errs, p.closers[i]())
	}
	p.closers = nil
	return errors.Join(errs...)
}

// OwnerID returns the random id with which this data directory claims the
// place of destination name of org (destination.Owner), creating it when
// create is set; without create an absent id is "" (it matches any id).
func OwnerID(lg *eventlog.Log, org, name string, create bool) (string, error) {
	meta := "destination-owner/" + org + "/" + name
	v, ok, err := lg.Meta(meta)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", meta, err)
	}
	if ok || !create {
		return string(v), nil
	}
	id := destination.NewOwnerID()
	if err := lg.SetMeta(meta, []byte(id)); err != nil {
		return "", fmt.Errorf("store %s: %w", meta, err)
	}
	return id, nil
}

// Webhooks returns the webhooks of cfg as the stream uses them.
func Webhooks(cfg *config.Config) []stream.Webhook {
	var out []stream.Webhook
	for _, org := range cfg.Orgs {
		for _, w := range org.Webhooks {
			out = append(out, stream.Webhook{Org: org.ID, Name: w.Name, URL: w.URL, Secret: []byte(w.Secret.Reveal()),
				Filter:    stream.NewFilter(org.ID, w.Filter.Types, w.Filter.Events, nil),
				BatchSize: w.BatchSize, Timeout: w.Timeout.D(), RetryFor: w.RetryFor.D()})
		}
	}
	return out
}
