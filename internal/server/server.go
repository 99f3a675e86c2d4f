package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/collector"
	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/registry"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/pipeline"
	"github.com/tidemark/tidemark/internal/sessionize"
	"github.com/tidemark/tidemark/internal/stream"
	"github.com/tidemark/tidemark/internal/transport"
)

// Options are the parts of serving that are not configuration.
type Options struct {
	Logger *slog.Logger
	Out    io.Writer // the start banner (dev write key, address)
	Now    func() time.Time
	// Version is reported by the status API.
	Version string
	// Pprof serves net/http/pprof under /debug/pprof/ (off by default: the
	// ingest listener may face the internet).
	Pprof bool
}

const (
	devKeyMeta      = "dev-write-key"
	devAdminKeyMeta = "dev-admin-key"
)

// Run serves until ctx ends, then shuts down within a bounded time.
func Run(ctx context.Context, cfg *config.Config, o Options) (err error) {
	defer func() {
		// A panic here is a decoder meeting damaged data at start (stages
		// recover their own): an error that says so, not a stack trace.
		if r := recover(); r != nil {
			err = storeError(fmt.Errorf("start: panic: %v", r))
		}
	}()
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	logger := o.Logger
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data_dir: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	flt, err := faultsFromEnv()
	if err != nil {
		return err
	}
	lg, err := eventlog.Open(cfg.DataDir, eventlog.Options{MemTableBytes: flt.memtable,
		Partitions: cfg.Log.Partitions, CacheBytes: int64(cfg.Log.CacheBytes), MaxPending: cfg.Ingest.MaxPending,
		MinFreeBytes: int64(cfg.Log.MinFreeBytes), Registerer: reg, Logger: logger,
	})
	if err != nil {
		return storeError(err)
	}
	defer lg.Close()

	if len(cfg.Orgs) == 0 {
		key, err := storedKey(lg, devKeyMeta)
		if err != nil {
			return err
		}
		cfg.WithDefaultOrg(key)
		fmt.Fprintf(o.Out, "tidemark: no orgs configured; org %q accepts the dev write key %s\n", config.DefaultOrgID, key)
		if len(cfg.AdminKeys) == 0 {
			admin, err := storedKey(lg, devAdminKeyMeta)
			if err != nil {
				return err
			}
			cfg.AdminKeys = []config.Secret{config.Secret(admin)}
			fmt.Fprintf(o.Out, "tidemark: status API: curl -H 'Authorization: Bearer %s' http://%s/api/v1/status\n", admin, cfg.Listen)
		}
		fmt.Fprintf(o.Out, "tidemark: lake at %s\n", cfg.Orgs[0].Destinations[0].URL)
	}
	keys := map[string]string{}
	live := liveKeys{read: map[string]string{}, write: keys, admin: cfg.AdminKeys}
	for _, org := range cfg.Orgs {
		for _, k := range org.WriteKeys {
			keys[k.Reveal()] = org.ID
		}
		for _, k := range org.ReadKeys {
			live.read[k.Reveal()] = org.ID
		}
	}

	sz, err := pipeline.NewSessionizers(lg, sessionize.Config{
		PageIdle: cfg.Sessions.PageIdle.D(), SessionIdle: cfg.Sessions.SessionIdle.D(), DedupeWindow: cfg.Log.DedupeWindow.D(),
	}, reg, logger)
	if err != nil {
		return storeError(err)
	}
	tm, err := transport.NewMetrics(reg, func() int64 { return o.Now().UnixNano() })
	if err != nil {
		return err
	}
	for _, f := range flt.switchedOn {
		logger.Warn("TEST FAULT SWITCHED ON: this server loses or stalls data on purpose", "fault", f)
	}
	var transports []*transport.Transport
	var checks []checked
	var targets []audit.Target
	var urls []string           // of each transport's destination
	var slas [][3]time.Duration // of each transport's destination, per table
	var dests []destination.Destination
	defer func() {
		for _, d := range dests {
			d.Close()
		}
	}()
	for _, org := range cfg.Orgs {
		for _, dc := range org.Destinations {
			codec, err := format.ParseCodec(dc.Format, dc.Compression)
			if err != nil {
				return fmt.Errorf("org %s destination %s: %w", org.ID, dc.Name, err)
			}
			d, err := registry.Open(ctx, dc.URL, destination.Options{Codec: codec})
			if err != nil {
				return fmt.Errorf("org %s destination %s: %w", org.ID, dc.Name, err)
			}
			dests = append(dests, d)
			id, err := OwnerID(lg, org.ID, dc.Name, true)
			if err != nil {
				return err
			}
			d.(destination.Claimer).SetOwner(destination.Owner{Org: org.ID, Destination: dc.Name, ID: id})
			urls = append(urls, dc.URL)
			slas = append(slas, cfg.FreshnessSLAs(&dc))
			sla := cfg.FreshnessSLAs(&dc)
			tr := transport.New(transport.Options{
				Org: org.ID, Name: dc.Name, Dest: flt.wrap(org.ID, dc.Name, d), Log: lg, Outputs: sz, Metrics: tm, Logger: logger, Now: o.Now,
				Flush:     transport.Flush{MaxEvents: dc.Flush.MaxEvents, MaxBytes: int64(dc.Flush.MaxBytes), MaxAge: dc.Flush.MaxAge.D()},
				Permanent: d.(destination.Classifier).Permanent, SLA: sla, DropPage: flt.dropPage(),
			})
			transports = append(transports, tr)
			checks = append(checks, checked{org: org.ID, name: dc.Name, tr: tr, dest: d.(checkedDest)})
			targets = append(targets, audit.Target{Org: org.ID, Name: dc.Name, Dest: d.(audit.Destination), SLA: sla[0], Frontier: tr.Frontier})
		}
	}

	webhookCursors, err := stream.Cursors(cfg.DataDir, lg.Partitions(), logger)
	if err != nil {
		return storeError(err)
	}
	if err := checkStores(ctx, lg, sz, webhookCursors, checks, logger); err != nil {
		return storeError(err)
	}

	coll := collector.New(collector.Options{
		Log:          lg,
		Org:          func(k string) (string, bool) { org, ok := keys[k]; return org, ok },
		MaxBodyBytes: int64(cfg.Ingest.MaxBodyBytes), MaxEventBytes: int64(cfg.Ingest.MaxEventBytes),
		Now: o.Now, Registerer: reg, Logger: logger,
		Limits: collector.Limits{
			MaxRequests: cfg.Ingest.MaxRequests, MaxRequestsPerOrg: cfg.Ingest.MaxRequestsPerOrg,
			MaxBytes: int64(cfg.Ingest.MaxInflightBytes), MaxBytesPerOrg: int64(cfg.Ingest.MaxInflightBytesPerOrg),
			MaxKeylessBody: int64(cfg.Ingest.MaxKeylessBodyBytes), MaxKeylessBytes: int64(cfg.Ingest.MaxKeylessInflightBytes),
		},
	})
	// Ingest first: during a burst the log is the buffer (pipeline.Yield).
	sz.SetYield(&pipeline.Yield{
		Share: yieldShare, MaxLag: cfg.PriorityLag(),
		Busy: func() bool { return coll.InFlight() >= yieldBusyRequests },
		Lag: func() time.Duration {
			if t := sz.OldestUnprocessed(); t > 0 {
				return max(o.Now().Sub(time.Unix(0, t)), 0)
			}
			return 0
		},
	})
	// The streaming pipeline: its own cursors and store, nothing the batch
	// pipeline reads. Off, it neither serves the live tail nor holds retention.
	var st *stream.Stream
	var hub *stream.Hub
	if cfg.Stream.Enabled {
		if hub, err = stream.NewHub(reg); err != nil {
			return err
		}
		l := cfg.Stream.Live
		hub.SetMaxSubscribers(l.MaxStreamsPerOrg*len(cfg.Orgs) + l.MaxAdminStreams)
		st, err = stream.New(stream.Options{
			Log: lg, DataDir: cfg.DataDir, Webhooks: Webhooks(cfg), Hub: hub,
			PageIdle: cfg.Sessions.PageIdle.D(), SessionIdle: cfg.Sessions.SessionIdle.D(),
			Sender:     stream.NewSender("tidemark-webhook/"+o.Version, o.Now),
			Registerer: reg, Logger: logger, Now: o.Now,
		})
		if err != nil {
			return err
		}
	}
	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/v1/", coll)
	mux.Handle("GET /v1/live", liveHandler(hub, live, cfg.Stream.Live, logger))
	metricsMux := mux
	if cfg.Metrics.Listen != "" {
		metricsMux = http.NewServeMux() // served on its own listener only
	}
	metricsMux.Handle("GET /metrics", requireToken(cfg.Metrics.Token, promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	aud := newAuditor(audit.Options{Log: lg, DedupeWindow: cfg.Log.DedupeWindow.D(), Now: o.Now}, targets, transports, cfg, reg, logger)
	admin := func(h http.Handler) http.Handler { return requireAdmin(cfg.AdminKeys, h) }
	mux.Handle("GET /api/v1/status", admin(statusHandler(o.Version, lg, sz, transports, urls, slas, aud, st, o.Now)))
	mux.Handle("GET /api/v1/audit", admin(http.HandlerFunc(aud.auditHandler)))
	mux.Handle("POST /api/v1/backfill", admin(http.HandlerFunc(aud.backfillHandler)))
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	hc := cfg.HTTP
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: hc.ReadHeaderTimeout.D(), ReadTimeout: hc.ReadTimeout.D(), IdleTimeout: hc.IdleTimeout.D()}
	if hub != nil {
		srv.RegisterOnShutdown(hub.Close) // end live-tail streams, or Shutdown would wait for them
	}
	fmt.Fprintf(o.Out, "tidemark: listening on http://%s\n", ln.Addr())
	limited := newLimitListener(ln, hc.MaxConnections, reg)
	servers := []*http.Server{srv}
	listeners := []net.Listener{limited}
	if cfg.Metrics.Listen != "" {
		mln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listen on %s (metrics.listen): %w", cfg.Metrics.Listen, err)
		}
		servers = append(servers, &http.Server{Handler: metricsMux, ReadHeaderTimeout: hc.ReadHeaderTimeout.D(),
			ReadTimeout: hc.ReadTimeout.D(), IdleTimeout: hc.IdleTimeout.D()})
		listeners = append(listeners, mln)
		fmt.Fprintf(o.Out, "tidemark: metrics on http://%s/metrics\n", mln.Addr())
	}
	logger.Info("serving", "addr", ln.Addr().String(), "data_dir", cfg.DataDir, "partitions", cfg.Log.Partitions, "destinations", len(transports))

	restarts := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tidemark_stage_restarts_total",
		Help: "Stages restarted after an error or panic (each is also logged)."}, []string{"stage"})
	reg.MustRegister(restarts)
	for _, stage := range []string{"sessionizer", "transport", "auditor", "stream"} {
		restarts.WithLabelValues(stage) // export 0 from the start, so increase() sees the first restart
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	stages, stagesCtx := errgroup.WithContext(runCtx)
	stages.Go(func() error { return lg.RunTicker(stagesCtx, cfg.Log.TickInterval.D(), o.Now) })
	stages.Go(func() error { return supervise(stagesCtx, "sessionizer", sz.Run, restarts, logger) })
	for _, t := range transports {
		stages.Go(func() error { return supervise(stagesCtx, "transport", t.Run, restarts, logger) })
	}
	stages.Go(func() error { return supervise(stagesCtx, "auditor", aud.run, restarts, logger) })
	var hold func(p int) (uint64, bool)
	if st != nil {
		stages.Go(func() error { return supervise(stagesCtx, "stream", st.Run, restarts, logger) })
		hold = st.Hold
	}
	stages.Go(func() error {
		// Supervised like the others: a damaged store value can make a
		// read panic, and that must not end the process with a stack trace.
		return supervise(stagesCtx, "retention", func(ctx context.Context) error {
			r := eventlog.Retention{Log: lg, Outputs: sz, Hold: hold, Age: cfg.Log.Retention.D(), Now: o.Now, Logger: logger}
			for _, t := range transports {
				r.Deliveries = append(r.Deliveries, t)
			}
			return r.Run(ctx)
		}, restarts, logger)
	})
	serveErr := make(chan error, len(servers))
	for i, s := range servers {
		go func() { serveErr <- s.Serve(listeners[i]) }()
	}
	ready.Store(true)

	var runErr error
	select {
	case <-stagesCtx.Done():
		// ctx cancelled, or a stage failed.
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	}
	stop()
	ready.Store(false)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	for _, s := range servers {
		if err := s.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Warn("http shutdown", "err", err)
		}
	}
	stageErr := stages.Wait()
	return errors.Join(runErr, stageErr)
}

// storedKey returns the key stored under name, creating it on first start.
func storedKey(lg *eventlog.Log, name string) (string, error) {
	v, ok, err := lg.Meta(name)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", name, err)
	}
	if ok {
		return string(v), nil
	}
	k := config.NewWriteKey()
	if err := lg.SetMeta(name, []byte(k)); err != nil {
		return "", fmt.Errorf("store %s: %w", name, err)
	}
	return k, nil
}

// OwnerID returns the random id with which this data directory claims the
// place of destination name of org (destination.Owner), creating it when create
// is set; without create an absent id is "" (it matches any id).
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

// supervise runs a stage until ctx ends. A stage that fails (or panics) is
// logged, counted and restarted after a capped backoff, so that one failing
// stage or destination never takes the others (or ingest) down with it. The
// stages resume from their durable progress, so a restart repeats nothing.
func supervise(ctx context.Context, stage string, run func(context.Context) error, restarts *prometheus.CounterVec, logger *slog.Logger) error {
	delay := time.Second
	for {
		err := runRecovered(ctx, run)
		if ctx.Err() != nil {
			return nil
		}
		restarts.WithLabelValues(stage).Inc()
		logger.Error("stage failed; restarting it", "stage", stage, "err", err, "after", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Minute)
	}
}

func runRecovered(ctx context.Context, run func(context.Context) error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	if err := run(ctx); err != nil {
		return err
	}
	return errors.New("stage returned before shutdown")
}

// While at least yieldBusyRequests requests are in flight at the collector
// (they are waiting for CPU or for a group commit, not trickling in), the
// sessionizer works at most yieldShare of the time, until its backlog is
// ingest.priority_lag old. The share was chosen by measurement: BENCHMARKS.md,
// "End to end" (a quarter, a tenth and a twentieth compared).
const (
	yieldBusyRequests = 8
	yieldShare        = 0.1
)

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
