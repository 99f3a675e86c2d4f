package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/erase"
)

// idList is a repeatable flag of non-empty ids.
type idList []string

func (l *idList) String() string { return strings.Join(*l, ",") }

func (l *idList) Set(s string) error {
	if strings.TrimSpace(s) == "" {
		return errors.New("an id must not be empty")
	}
	*l = append(*l, s)
	return nil
}

// eraseReport is the JSON of `tidemark erase --dry-run --json`.
type eraseReport struct {
	Org    string `json:"org"`
	DryRun bool   `json:"dry_run"`
	// Events is the number of distinct events of the person in the log.
	Events int64 `json:"events"`
	// LinkedIDs counts the ids found linked to the ids given (user ids and
	// anonymous ids); Linked lists them only with --show-linked.
	LinkedIDs    int            `json:"linked_ids"`
	Linked       []string       `json:"linked,omitempty"`
	Destinations []erase.Result `json:"destinations"`
}

// eraseCmd runs `tidemark erase`: 0 when the person has events to erase,
// 1 when the retained log has none, 2 on error. Only --dry-run is built.
func eraseCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("erase", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var users, devices idList
	cfgPath := fs.String("config", "", "YAML config file of the stopped server (default: embedded defaults); its data_dir is read")
	org := fs.String("org", "", "the org whose person to erase (required)")
	fs.Var(&users, "user", "a user id of the person (repeatable)")
	fs.Var(&devices, "device", "an anonymous id (device) of the person (repeatable)")
	dryRun := fs.Bool("dry-run", false, "find the person's events and count them per destination and hour; change nothing (the only mode built yet)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	showLinked := fs.Bool("show-linked", false, "print the linked ids found (personal data the operator did not type; counted only by default)")
	fail := failer(stderr, "erase")
	if code, done := parseArgs(fs, args, fail); done {
		return code
	}
	switch {
	case *org == "":
		return fail(errors.New("--org is required"))
	case len(users)+len(devices) == 0:
		return fail(errors.New("give the person: --user ID or --device ANONYMOUSID (repeatable)"))
	case !*dryRun:
		return fail(errors.New("not built yet: only --dry-run (it changes nothing); see docs/erasure.md"))
	}
	if err := knownOrg(*cfgPath, *org); err != nil {
		return fail(err)
	}
	o, err := openOffline(ctx, &auditFlags{config: *cfgPath, org: *org})
	if err != nil {
		if inUse := (*inUseError)(nil); errors.As(err, &inUse) {
			// openOffline's advice (--url) is audit's and backfill's:
			// erase has no admin API yet.
			return fail(errors.New("the data dir is in use, probably by a running tidemark: stop it first (erase has no --url mode yet)"))
		}
		return fail(err)
	}
	defer o.close()
	id, err := erase.Find(o.Log, *org, append(users, devices...))
	if err != nil {
		return fail(err)
	}
	results, total, err := erase.DryRun(ctx, o.Log, *org, id, o.targets)
	if err != nil {
		return fail(err)
	}
	linked := id.Linked()
	rep := eraseReport{Org: *org, DryRun: true, Events: total, LinkedIDs: len(linked), Destinations: results}
	if *showLinked {
		rep.Linked = linked
	}
	if *asJSON {
		if err := printJSON(stdout, rep); err != nil {
			return fail(err)
		}
	} else {
		printErase(stdout, &rep)
	}
	if total == 0 {
		fmt.Fprintf(stderr, "tidemark erase: the retained log of org %s has no event of these ids: nothing to erase (events older than the log's retention are not searched)\n", *org)
		return 1
	}
	for _, r := range results {
		if r.Error != "" {
			fmt.Fprintf(stderr, "tidemark erase: destination %s: %s\n", r.Destination, r.Error)
			return 2
		}
	}
	return 0
}

// knownOrg returns an error naming the configured orgs unless org is one.
func knownOrg(path, org string) error {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return err
		}
	}
	ids := []string{config.DefaultOrgID} // serve's org when none is configured
	if len(cfg.Orgs) > 0 {
		ids = ids[:0]
		for _, o := range cfg.Orgs {
			ids = append(ids, o.ID)
		}
	}
	if !slices.Contains(ids, org) {
		return fmt.Errorf("unknown org %q: the config has %s", org, strings.Join(ids, ", "))
	}
	return nil
}

func printErase(w io.Writer, rep *eraseReport) {
	fmt.Fprintf(w, "dry run: nothing was changed\norg %s: %d events of this person in the retained log; %d linked ids found (listed with --show-linked)\n",
		rep.Org, rep.Events, rep.LinkedIDs)
	for _, l := range rep.Linked {
		fmt.Fprintf(w, "  linked %s\n", l)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "destination\thour (UTC)\tin log\tin destination\t")
	for _, r := range rep.Destinations {
		if r.Error != "" {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\n", r.Destination, "cannot read: "+r.Error)
			continue
		}
		for _, h := range r.Hours {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t\n", r.Destination, h.Hour.Format("2006-01-02 15:04"), h.InLog, h.InDestination)
		}
	}
	tw.Flush()
}
