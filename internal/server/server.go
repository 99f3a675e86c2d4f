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

	"github.com/tidemark/tidemark/internal/assemble"
	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/collector"
	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/fault"
	"github.com/tidemark/tidemark/internal/pipeline"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/series"
	"github.com/tidemark/tidemark/internal/stream"
	"github.com/tidemark/tidemark/internal/ui"
)

// Options are the parts of serving that are not configuration.
type Options struct {
	Logger *slog.Logger
	Out    io.Writer // the start banner (dev write key, address)
	Now    func() time.Time
	// Version is reported by the status API.
	Version string
	// Pprof serves net/http/pprof under /debug/pprof/ and the stores'
	// Pebble metrics under /debug/pebble (off by default: the ingest
	// listener may face the internet).
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
	var kafka *kafkaLog // nil: the embedded log
	if cfg.Log.Kafka.Enabled() {
		if kafka, err = openKafka(ctx, cfg, logger); err != nil {
			return err
		}
		defer kafka.Close()
	}
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return fmt.Errorf("create data_dir: %w", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	flt, err := fault.FromEnv()
	if err != nil {
		return err
	}
	for _, f := range flt.On {
		logger.Warn("TEST FAULT SWITCHED ON: this server loses or stalls data on purpose", "fault", f)
	}
	adminKeys := cfg.AdminKeys
	p, err := assemble.Build(ctx, cfg, assemble.Options{
		Logger: logger, Registerer: reg, Now: o.Now, Version: o.Version,
		Faults: flt,
		DefaultOrgKey: func(lg *eventlog.Log) (string, error) {
			key, err := storedKey(lg, devKeyMeta)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(o.Out, "tidemark: no orgs configured; org %q accepts the dev write key %s\n", config.DefaultOrgID, key)
			if len(adminKeys) == 0 {
				admin, err := storedKey(lg, devAdminKeyMeta)
				if err != nil {
					return "", err
				}
				adminKeys = []config.Secret{config.Secret(admin)}
				fmt.Fprintf(o.Out, "tidemark: status API: curl -H 'Authorization: Bearer %s' http://%s/api/v1/status\n", admin, cfg.Listen)
				fmt.Fprintf(o.Out, "tidemark: status page: http://%s/ (sign in with that admin key)\n", cfg.Listen)
			}
			c := *cfg
			c.WithDefaultOrg(key)
			fmt.Fprintf(o.Out, "tidemark: lake at %s\n", c.Orgs[0].Destinations[0].URL)
			return key, nil
		},
		Check: func(p *assemble.Pipeline) error {
			checks := make([]checked, len(p.Destinations))
			for i, d := range p.Destinations {
				cd, ok := d.Dest.(checkedDest)
				if !ok {
					return fmt.Errorf("org %s destination %s: the start-up check cannot read it", d.Org, d.Name)
				}
				checks[i] = checked{org: d.Org, name: d.Name, tr: d.Transport, dest: cd}
			}
			return storeError(checkStores(ctx, p.Log, p.Sessionizers, p.WebhookCursors, checks, logger))
		},
	})
	var se *assemble.StoreError
	if errors.As(err, &se) {
		return storeError(se.Err)
	}
	if err != nil {
		return err
	}
	defer p.Close()
	lg, sz := p.Log, p.Sessionizers
	// The configuration served: with org "default" and the dev keys when
	// it has no orgs (a copy: the caller's is not changed).
	eff := *p.Config
	eff.AdminKeys = adminKeys
	cfg = &eff
	keys := map[string]string{}
	live := stream.LiveKeys{Read: map[string]string{}, Write: keys,
		Admin: func(k string) bool { return adminAuth(cfg.AdminKeys, "Bearer "+k) }}
	for _, org := range cfg.Orgs {
		for _, k := range org.WriteKeys {
			keys[k.Reveal()] = org.ID
		}
		for _, k := range org.ReadKeys {
			live.Read[k.Reveal()] = org.ID
		}
	}
	transports, targets := p.Transports(), p.Targets()
	var urls []string           // of each transport's destination
	var slas [][3]time.Duration // of each transport's destination, per table
	for _, d := range p.Destinations {
		urls = append(urls, d.URL)
		slas = append(slas, d.SLAs)
	}

	var ingest collector.Appender = lg
	if kafka != nil {
		ingest = kafka.producer // 2xx once Kafka acknowledged; the copier brings the events to lg
	}
	coll := collector.New(collector.Options{
		Log:          ingest,
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
	st, hub := p.Stream, p.Hub
	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/v1/", coll)
	l := cfg.Stream.Live
	mux.Handle("GET /v1/live", stream.LiveHandler(hub, live, stream.LiveLimits{MaxStreamsPerOrg: l.MaxStreamsPerOrg,
		MaxStreamsPerKey: l.MaxStreamsPerKey, MaxAdminStreams: l.MaxAdminStreams}, logger))
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
	aud := audit.NewBackground(audit.Options{Log: lg, DedupeWindow: cfg.Log.DedupeWindow.D(), Now: o.Now}, targets,
		cfg.Audit.Interval.D(), cfg.Audit.Lookback.D(), reg, logger)
	api := &auditAPI{bg: aud, sessions: p.Sessions, logger: logger}
	admin := func(h http.Handler) http.Handler { return requireAdmin(cfg.AdminKeys, h) }
	reader := func(h http.Handler) http.Handler { return requireReader(cfg.AdminKeys, live.Read, h) }
	mux.Handle("GET /api/v1/status", reader(statusHandler(o.Version, lg, sz, transports, urls, slas, aud, st, o.Now)))
	mux.Handle("GET /api/v1/audit", reader(http.HandlerFunc(api.auditHandler)))
	mux.Handle("POST /api/v1/backfill", admin(http.HandlerFunc(api.backfillHandler)))
	smp := series.New(reg, o.Now)
	smp.Sample() // the first sample, before the first request; Run's falls in the same step
	mux.Handle("GET /api/v1/series", reader(seriesHandler(smp, o.Now)))
	for _, p := range ui.Paths {
		mux.Handle(p, ui.Handler()) // the status page (it reads the APIs above)
	}
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pebble", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, lg.StoreMetrics()) })
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
	for _, stage := range []string{"sessionizer", "transport", "auditor", "stream", "series"} {
		restarts.WithLabelValues(stage) // export 0 from the start, so increase() sees the first restart
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	stages, stagesCtx := errgroup.WithContext(runCtx)
	if kafka == nil {
		stages.Go(func() error { return lg.RunTicker(stagesCtx, cfg.Log.TickInterval.D(), o.Now) })
	} else {
		// The owner of the partitions (this node: all of them) produces
		// their ticks into the topic, and copies the topic into lg.
		stages.Go(func() error {
			return kafka.producer.RunTicker(stagesCtx, kafka.parts, cfg.Log.TickInterval.D(), o.Now, logger)
		})
		restarts.WithLabelValues("kafka_copy")
		cp := kafka.copier(lg, reg, logger)
		stages.Go(func() error { return supervise(stagesCtx, "kafka_copy", cp.Run, restarts, logger) })
	}
	stages.Go(func() error { return supervise(stagesCtx, "sessionizer", sz.Run, restarts, logger) })
	for _, t := range transports {
		stages.Go(func() error { return supervise(stagesCtx, "transport", t.Run, restarts, logger) })
	}
	stages.Go(func() error { return supervise(stagesCtx, "auditor", aud.Run, restarts, logger) })
	stages.Go(func() error { return supervise(stagesCtx, "series", smp.Run, restarts, logger) })
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

// supervise runs a stage until ctx ends. A stage that fails (or panics) is
// logged, counted and restarted after a capped backoff, so that one failing
// stage or destination never takes the others (or ingest) down with it. The
// stages resume from their durable progress, so a restart repeats nothing.
func supervise(ctx context.Context, stage string, run func(context.Context) error, restarts *prometheus.CounterVec, logger *slog.Logger) error {
	pol := retry.Policy{Initial: time.Second, Max: time.Minute, Failed: func(f *retry.Failure) {
		restarts.WithLabelValues(stage).Inc()
		logger.Error("stage failed; restarting it", "stage", stage, "err", f.Err, "after", f.Wait)
	}}
	_ = retry.Do(ctx, pol, func(int) error { return runRecovered(ctx, run) })
	return nil // only the end of ctx ends Do: runRecovered never returns nil
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
