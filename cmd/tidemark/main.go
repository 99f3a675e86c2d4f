// Command tidemark is a self-hosted product-analytics event pipeline: a
// Segment-compatible collector, a durable log, deterministic sessions and pages,
// and exactly-once delivery to object storage. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/tidemark/tidemark/internal/config"
	lg "github.com/tidemark/tidemark/internal/loadgen"
	"github.com/tidemark/tidemark/internal/server"
)

// defaultMemHeadroom is the soft memory limit above log.cache_bytes when
// GOMEMLIMIT is not set: memtables, request and batch buffers.
const defaultMemHeadroom = 176 << 20

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

const usage = `usage: tidemark <command> [flags]

commands:
  serve     run the collector and pipeline (no flags: embedded defaults)
  audit     compare the events accepted with what each destination holds, per hour
  backfill  deliver exactly the events the audit finds missing
  erase     find a person's events to erase, per destination and hour (--dry-run only so far)
  tail      print the live tail of a running tidemark (events as they arrive)
  webhooks  list (dead-letters) or re-send (replay) webhook dead letters
  loadgen   send Segment batches to a running tidemark and report throughput
  version   print the version
Run 'tidemark <command> -h' for a command's flags.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stdout, stderr)
	case "tail":
		err = tailCmd(ctx, args[1:], stdout, stderr)
	case "webhooks":
		err = webhooks(ctx, args[1:], stdout, stderr)
	case "loadgen":
		err = loadgen(ctx, args[1:], stdout, stderr)
	case "audit":
		return auditCmd(ctx, args[1:], stdout, stderr)
	case "backfill":
		return backfillCmd(ctx, args[1:], stdout, stderr)
	case "erase":
		return eraseCmd(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "tidemark %s\n", versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "tidemark: unknown command %q\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "tidemark %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML config file (default: embedded defaults; see tidemark.example.yaml)")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	pprof := fs.Bool("pprof", false, "serve Go profiles under /debug/pprof/ and the stores' Pebble metrics under /debug/pebble on the listen address")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	cfg := config.Default()
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// Without cgo, Pebble's cache and memtables live in the Go heap, so
		// the GC's default headroom (GOGC=100) would double them in RSS. A
		// soft limit makes the GC collect before that; GOMEMLIMIT overrides.
		debug.SetMemoryLimit(int64(cfg.Log.CacheBytes) + defaultMemHeadroom)
	}
	logger.Info("starting", "version", versionString())
	return server.Run(ctx, cfg, server.Options{Logger: logger, Out: stdout, Pprof: *pprof, Version: versionString()})
}

func loadgen(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o lg.Options
	fs.StringVar(&o.URL, "url", lg.DefaultURL, "tidemark base URL")
	fs.StringVar(&o.WriteKey, "write-key", os.Getenv("TIDEMARK_WRITE_KEY"), "write key (default $TIDEMARK_WRITE_KEY)")
	fs.IntVar(&o.Connections, "connections", lg.DefaultConnections, "concurrent connections")
	fs.IntVar(&o.BatchSize, "batch", lg.DefaultBatchSize, "events per /v1/batch request")
	fs.IntVar(&o.EventBytes, "event-bytes", lg.DefaultEventBytes, "approximate JSON size of one event")
	fs.DurationVar(&o.Duration, "duration", lg.DefaultDuration, "how long to send (ignored when -events is set)")
	fs.Int64Var(&o.Events, "events", 0, "total events to send (0: send for -duration)")
	fs.IntVar(&o.Devices, "devices", lg.DefaultDevices, "distinct anonymousIds")
	fs.Float64Var(&o.PageRatio, "page-ratio", lg.DefaultPageRatio, "share of page calls")
	fs.BoolVar(&o.Gzip, "gzip", false, "gzip request bodies")
	fs.Float64Var(&o.Rate, "rate", 0, "events per second (0: as fast as possible)")
	fs.StringVar(&o.RunID, "run-id", "", "messageId prefix (default: random); reuse it to resend the same ids")
	fs.StringVar(&o.AckedFile, "acked-file", "", "write the messageIds of acknowledged events here, one per line")
	lake := fs.String("lake", "", "after sending, wait for the acknowledged events in this local lake directory and report end-to-end latency and duplicates")
	lakeWait := fs.Duration("lake-timeout", 10*time.Minute, "how long -lake waits for the events")
	send := fs.Bool("send", true, "send load; -send=false only waits for -events events of -run-id, sent by another client, in -lake")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the load generator itself to this file (while sending)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*send {
		if *lake == "" || o.RunID == "" || o.Events <= 0 {
			return errors.New("-send=false needs -lake, -run-id and -events")
		}
		_, err := lg.MeasureLake(ctx, *lake, o.RunID, o.Events, *lakeWait, stdout)
		return err
	}
	if o.WriteKey == "" {
		return errors.New("a write key is required: -write-key or $TIDEMARK_WRITE_KEY")
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return fmt.Errorf("cpuprofile: %w", err)
		}
	}
	res, err := lg.Run(ctx, o, stdout)
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil || *lake == "" {
		return err
	}
	_, err = lg.MeasureLake(ctx, *lake, res.RunID, res.Acked, *lakeWait, stdout)
	return err
}
