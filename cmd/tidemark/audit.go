package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/tidemark/tidemark/internal/assemble"
	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/server"
	"github.com/tidemark/tidemark/internal/transport"
)

// adminKeyEnv names the environment variable that holds the admin key for
// --url, so that commands (and the repair command audit prints) need not
// show it.
const adminKeyEnv = "TIDEMARK_ADMIN_KEY"

// auditFlags are the flags audit and backfill share.
// inUseError is openOffline's error when the data dir's stores are locked,
// by a running tidemark as a rule; its advice is audit's and backfill's.
type inUseError struct {
	dir string
	err error
}

func (e *inUseError) Error() string {
	return fmt.Sprintf("the data dir %s is in use, probably by a running tidemark: use --url and --admin-key to go through its admin API (%v)", e.dir, e.err)
}

func (e *inUseError) Unwrap() error { return e.err }

type auditFlags struct {
	config, url, adminKey string
	from, to              string
	org, dest             string
}

func (f *auditFlags) register(fs *flag.FlagSet, defaultFrom string) {
	fs.StringVar(&f.config, "config", "", "YAML config file (default: embedded defaults); offline mode reads its data_dir")
	fs.StringVar(&f.url, "url", "", "base URL of a running tidemark (e.g. http://127.0.0.1:8080): use its admin API instead of opening the data dir")
	fs.StringVar(&f.adminKey, "admin-key", "", "admin key for --url (default $"+adminKeyEnv+"; prefer the variable: a flag shows in the process list and shell history)")
	fs.StringVar(&f.from, "from", defaultFrom, "start of the range: RFC 3339 time, YYYY-MM-DD[THH[:MM]] (UTC), or a duration ago like 24h")
	fs.StringVar(&f.to, "to", "now", "end of the range (exclusive), same forms as --from")
	fs.StringVar(&f.org, "org", "", "only this org")
	fs.StringVar(&f.dest, "destination", "", "only this destination")
}

// parseWhen reads a time of the CLI: RFC 3339, a UTC date or hour, "now", or
// a duration before now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if s == "now" {
		return now, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02T15", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time: want RFC 3339 (2026-11-29T10:00:00Z), YYYY-MM-DD[THH[:MM]] (UTC), now, or a duration ago (24h)", s)
}

func (f *auditFlags) times() (from, to time.Time, err error) {
	now := time.Now()
	if from, err = parseWhen(f.from, now); err != nil {
		return from, to, fmt.Errorf("--from: %w", err)
	}
	if to, err = parseWhen(f.to, now); err != nil {
		return from, to, fmt.Errorf("--to: %w", err)
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("--from (%s) must be before --to (%s)", from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	return from, to, nil
}

// offline is the data dir of a stopped server, opened for audit and backfill.
type offline struct {
	*assemble.Pipeline
	targets []audit.Target
}

func openOffline(ctx context.Context, f *auditFlags) (*offline, error) {
	cfg := config.Default()
	if f.config != "" {
		var err error
		if cfg, err = config.Load(f.config); err != nil {
			return nil, err
		}
	}
	// Never create a store here: a fresh empty log would make an audit
	// clean and a backfill a success while the real data is elsewhere.
	if _, err := os.Stat(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("data_dir %s: %w (%s)", cfg.DataDir, err, wrongDataDir(f))
	}
	if !eventlog.Exists(cfg.DataDir) {
		return nil, fmt.Errorf("data_dir %s holds no tidemark log (%s)", cfg.DataDir, wrongDataDir(f))
	}
	// Without orgs, serve runs org "default" with a lake under data_dir;
	// the assembly gives it that org's destination.
	p, err := assemble.Build(ctx, cfg, assemble.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Offline: true,
		Select: func(org, name string) bool { return (f.org == "" || org == f.org) && (f.dest == "" || name == f.dest) },
		Opened: func(p *assemble.Pipeline, d *assemble.Destination) error {
			// The owner id is a record too: serve ran this destination
			// from this data dir even if it never delivered (it was down,
			// or its place was another's).
			if err := hasRun(d.Transport, p.Log.Partitions()); err != nil && d.OwnerID == "" {
				return fmt.Errorf("data_dir %s has no record of org %s destination %s (%w): %s", cfg.DataDir, d.Org, d.Name, err, wrongDataDir(f))
			}
			return nil
		},
	})
	var se *assemble.StoreError
	if errors.As(err, &se) {
		err = se.Err
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock") {
			return nil, &inUseError{dir: cfg.DataDir, err: err}
		}
	}
	if err != nil {
		return nil, err
	}
	o := &offline{Pipeline: p, targets: p.Targets()}
	if len(o.targets) == 0 {
		p.Close()
		return nil, fmt.Errorf("no destination matches --org %q --destination %q", f.org, f.dest)
	}
	return o, nil
}

// hasRun returns an error unless tr's pipeline has read the log of this data
// dir: every destination of a server that ran saves progress within a tick.
func hasRun(tr *transport.Transport, parts int) error {
	for p := range parts {
		prog, err := tr.Progress(p)
		if err != nil {
			return err
		}
		if prog > 0 {
			return nil
		}
	}
	return errors.New("no delivery progress")
}

// wrongDataDir says what to check when the data dir is not the one of the
// server that holds the events.
func wrongDataDir(f *auditFlags) string {
	if f.config == "" {
		return "without --config the embedded defaults are used: give the server's --config, or --url and $" + adminKeyEnv + " to go through the running server"
	}
	return "is --config the running server's config? Or use --url and $" + adminKeyEnv + " to go through the running server"
}

func (o *offline) close() { o.Pipeline.Close() }

// adminRequest calls the admin API of a running server.
func (f *auditFlags) adminRequest(ctx context.Context, method, path string, from, to time.Time, extra url.Values) (*http.Response, error) {
	key := f.adminKey
	if key == "" {
		key = os.Getenv(adminKeyEnv)
	}
	if key == "" {
		return nil, errors.New("--url needs an admin key: --admin-key or $" + adminKeyEnv)
	}
	q := url.Values{"from": {from.UTC().Format(time.RFC3339Nano)}, "to": {to.UTC().Format(time.RFC3339Nano)}}
	if f.org != "" {
		q.Set("org", f.org)
	}
	if f.dest != "" {
		q.Set("destination", f.dest)
	}
	for k, v := range extra {
		q[k] = v
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(f.url, "/")+path+"?"+q.Encode(), nil)
	if err != nil {
		return nil, fmt.Errorf("--url: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		var e struct {
			Error string `json:"error"`
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, e.Error)
		}
		return nil, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return resp, nil
}

// printJSON writes v as indented JSON: the --json output of a command.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// failer prints err for command name and returns exit status 2.
func failer(stderr io.Writer, name string) func(error) int {
	return func(err error) int {
		fmt.Fprintf(stderr, "tidemark %s: %v\n", name, err)
		return 2
	}
}

// parseArgs parses a command's flags; done is true when the command must
// exit with code (after -h, a flag error or a stray argument).
func parseArgs(fs *flag.FlagSet, args []string, fail func(error) int) (code int, done bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, true
		}
		return 2, true
	}
	if fs.NArg() > 0 {
		return fail(fmt.Errorf("unexpected argument %q", fs.Arg(0))), true
	}
	return 0, false
}

// auditCmd runs `tidemark audit` and returns its exit status: 0 when nothing
// is missing or duplicated, 1 otherwise, 2 on error.
func auditCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f auditFlags
	f.register(fs, "24h")
	asJSON := fs.Bool("json", false, "print the report as JSON (see docs/operations.md)")
	deep := fs.Bool("deep", false, "compare event ids of every hour, not only of hours whose counts differ")
	fail := failer(stderr, "audit")
	if code, done := parseArgs(fs, args, fail); done {
		return code
	}
	from, to, err := f.times()
	if err != nil {
		return fail(err)
	}
	var rep *audit.Report
	if f.url != "" {
		extra := url.Values{}
		if *deep {
			extra.Set("deep", "true")
		}
		resp, err := f.adminRequest(ctx, http.MethodGet, "/api/v1/audit", from, to, extra)
		if err != nil {
			return fail(err)
		}
		defer resp.Body.Close()
		rep = new(audit.Report)
		if err := json.NewDecoder(resp.Body).Decode(rep); err != nil {
			return fail(fmt.Errorf("read the audit report: %w", err))
		}
	} else {
		o, err := openOffline(ctx, &f)
		if err != nil {
			return fail(err)
		}
		defer o.close()
		a := audit.New(audit.Options{Log: o.Log, DedupeWindow: o.Config.Log.DedupeWindow.D(), Deep: *deep})
		if rep, err = a.Run(ctx, from, to, o.targets); err != nil {
			return fail(err)
		}
	}
	if *asJSON {
		if err := printJSON(stdout, rep); err != nil {
			return fail(err)
		}
	} else {
		printReport(stdout, rep, &f)
	}
	warnRetention(stderr, rep)
	if !rep.Clean() {
		return 1
	}
	return 0
}

func printReport(w io.Writer, rep *audit.Report, f *auditFlags) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "org\tdestination\thour (UTC)\taccepted\tdelivered\tpending\tmissing\tduplicated\t")
	row := func(res *audit.Result, label string, h audit.Hour) {
		acc := fmt.Sprint(h.Accepted)
		if !h.InLog && label != "total" {
			acc = "not in log"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t\n", res.Org, res.Destination, label, acc, h.Delivered, h.Pending, h.Missing, h.Duplicated)
	}
	for i := range rep.Results {
		res := &rep.Results[i]
		for _, h := range res.Hours {
			row(res, h.Hour.Format("2006-01-02 15:04"), h)
		}
		row(res, "total", res.Total)
	}
	tw.Flush()
	for i := range rep.Results {
		res := &rep.Results[i]
		switch {
		case res.NotOwned != "":
			fmt.Fprintf(w, "%s/%s: %d missing: nothing in its place counts as delivered: %s\n", res.Org, res.Destination, res.Total.Missing, res.NotOwned)
		case res.Total.Missing == 0 && res.Total.Duplicated == 0:
			fmt.Fprintf(w, "%s/%s: clean: every accepted event that is due is in the destination exactly once\n", res.Org, res.Destination)
		default:
			msg := fmt.Sprintf("%s/%s: %d missing, %d duplicated", res.Org, res.Destination, res.Total.Missing, res.Total.Duplicated)
			if res.OldestMissing != nil {
				msg += fmt.Sprintf(" (oldest missing event received %s)", res.OldestMissing.Format(time.RFC3339))
			}
			if res.Total.Missing > 0 {
				msg += "; repair with:\n  " + f.repairCommand(rep, res)
				if f.url != "" {
					msg += "\n  (with the admin key in $" + adminKeyEnv + ")"
				}
			}
			fmt.Fprintln(w, msg)
		}
	}
	if n := len(rep.Unreadable); n > 0 {
		fmt.Fprintf(w, "%d log records cannot be decoded (a damaged data directory; docs/operations.md, Damage): their events are in no destination and cannot be repaired:\n", n)
		for _, u := range rep.Unreadable {
			fmt.Fprintf(w, "  partition %d offset %d: %s\n", u.Partition, u.Offset, u.Error)
		}
	}
}

// repairCommand is the backfill that repairs res: the audit's range, and the
// target the audit used (--url or --config), never the admin key itself.
func (f *auditFlags) repairCommand(rep *audit.Report, res *audit.Result) string {
	args := []string{"tidemark", "backfill"}
	if f.url != "" {
		args = append(args, "--url", f.url)
	} else if f.config != "" {
		cfg := f.config
		if abs, err := filepath.Abs(cfg); err == nil {
			cfg = abs // pasted in another directory, it still names the file
		}
		args = append(args, "--config", cfg)
	}
	args = append(args, "--from", rep.From.Format(time.RFC3339), "--to", rep.To.Format(time.RFC3339),
		"--org", res.Org, "--destination", res.Destination)
	for i, a := range args {
		args[i] = shellQuote(a)
	}
	return strings.Join(args, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@+,") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// warnRetention says which part of the range the log no longer holds.
func warnRetention(w io.Writer, rep *audit.Report) {
	for _, res := range rep.Results {
		if len(res.Hours) > 0 && !res.Hours[0].InLog && rep.LogStart != nil {
			fmt.Fprintf(w, "warning: the log holds events from %s on (retention): the range starts %s earlier, and those hours cannot be audited or backfilled\n",
				rep.LogStart.Format(time.RFC3339), rep.LogStart.Sub(rep.From).Round(time.Second))
			return
		}
	}
}

// backfillCmd runs `tidemark backfill`.
func backfillCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("backfill", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f auditFlags
	f.register(fs, "")
	dry := fs.Bool("dry-run", false, "print the batches it would write, and write nothing")
	fail := failer(stderr, "backfill")
	if code, done := parseArgs(fs, args, fail); done {
		return code
	}
	if f.from == "" {
		return fail(errors.New("--from is required (and --to, default now)"))
	}
	from, to, err := f.times()
	if err != nil {
		return fail(err)
	}
	bar := newProgress(stderr)
	var final server.BackfillLine
	if f.url != "" {
		extra := url.Values{}
		if *dry {
			extra.Set("dry_run", "true")
		}
		resp, err := f.adminRequest(ctx, http.MethodPost, "/api/v1/backfill", from, to, extra)
		if err != nil {
			return fail(err)
		}
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<30)
		for sc.Scan() {
			var l server.BackfillLine
			if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
				return fail(fmt.Errorf("read the backfill stream: %w", err))
			}
			switch {
			case l.Error != "":
				bar.done()
				return fail(errors.New(l.Error))
			case l.Progress != nil:
				bar.update(l.Progress.Done, l.Progress.Total)
			default:
				final = l
			}
		}
		if err := sc.Err(); err != nil {
			return fail(fmt.Errorf("read the backfill stream: %w", err))
		}
		if final.Report == nil {
			return fail(errors.New("the server ended the backfill stream without a result"))
		}
	} else {
		o, err := openOffline(ctx, &f)
		if err != nil {
			return fail(err)
		}
		defer o.close()
		a := audit.New(audit.Options{Log: o.Log, DedupeWindow: o.Config.Log.DedupeWindow.D()})
		final.Results, final.Report, err = a.Backfill(ctx, from, to, o.targets, audit.BackfillOptions{
			DryRun: *dry, Sessions: o.Sessions, Progress: bar.update})
		if err != nil {
			bar.done()
			return fail(err)
		}
	}
	bar.done()
	warnRetention(stderr, final.Report)
	for _, r := range final.Results {
		verb := "wrote"
		if !r.Written {
			verb = "would write"
			for _, b := range r.Batches {
				fmt.Fprintf(stdout, "%s/%s: batch %s: %d events, partition %d, hours %s\n", r.Org, r.Destination, b.ID, b.Events,
					b.Partition, hourList(b.Hours))
			}
		}
		fmt.Fprintf(stdout, "%s/%s: %s %d backfill batches with %d missing events", r.Org, r.Destination, verb, len(r.Batches), r.Events)
		if r.Held > 0 {
			fmt.Fprintf(stdout, "; %d missing events are still in the pipeline (destination down or behind): it delivers them itself", r.Held)
		}
		if r.Pending > 0 {
			fmt.Fprintf(stdout, "; %d events not yet due (pending)", r.Pending)
		}
		fmt.Fprintln(stdout)
	}
	return 0
}

func hourList(hs []time.Time) string {
	s := make([]string, len(hs))
	for i, h := range hs {
		s[i] = h.Format("2006-01-02T15")
	}
	return strings.Join(s, ",")
}

// progress shows a backfill's progress: a bar redrawn in place on a
// terminal, plain lines (at most one per 10%) otherwise.
type progress struct {
	w         io.Writer
	tty       bool
	lastTenth int
	shown     bool
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, lastTenth: -1}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			p.tty = true
		}
	}
	return p
}

func (p *progress) update(done, total int) {
	if total == 0 {
		return
	}
	frac := float64(done) / float64(total)
	if p.tty {
		const width = 30
		n := int(frac * width)
		fmt.Fprintf(p.w, "\rbackfill [%s%s] %3.0f%% %d/%d events", strings.Repeat("#", n), strings.Repeat(" ", width-n), frac*100, done, total)
		p.shown = true
		return
	}
	if tenth := int(frac * 10); tenth > p.lastTenth {
		p.lastTenth = tenth
		fmt.Fprintf(p.w, "backfill: %d/%d events (%.0f%%)\n", done, total, frac*100)
	}
}

func (p *progress) done() {
	if p.tty && p.shown {
		fmt.Fprintln(p.w)
	}
}
