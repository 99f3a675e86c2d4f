package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/tidemark/tidemark/internal/assemble"
	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/retry"
	"github.com/tidemark/tidemark/internal/stream"
)

// multi is a repeatable string flag.
type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

// tailCmd prints the live tail (GET /v1/live) of a running server.
func tailCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tail", flag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", "http://127.0.0.1:8080", "tidemark base URL")
	key := fs.String("key", os.Getenv("TIDEMARK_KEY"), "a read key of the org (orgs[].read_keys; write keys cannot read), or an admin key with --org (default $TIDEMARK_KEY)")
	org := fs.String("org", "", "org (with an admin key; default with an admin key: every org)")
	var events, types, devices multi
	fs.Var(&events, "event", "only events with this name (track event, page name); repeatable")
	fs.Var(&types, "type", "only events of this type (track, page, ...); repeatable")
	fs.Var(&devices, "device", "only events of this device (anonymousId, else userId); repeatable")
	raw := fs.Bool("json", false, "print each event as one JSON line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *key == "" {
		return errors.New("a key is required: --key or $TIDEMARK_KEY")
	}
	q := url.Values{}
	if *org != "" {
		q.Set("org", *org)
	}
	q["event"], q["type"], q["device"] = events, types, devices
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(*base, "/")+"/v1/live?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+*key)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("connect: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	fmt.Fprintf(stderr, "tidemark tail: connected to %s, waiting for events (Ctrl-C to stop)\n", *base)
	err = readSSE(resp.Body, func(kind, data string) error {
		switch kind {
		case "event":
			if *raw {
				_, err := fmt.Fprintln(stdout, data)
				return err
			}
			var it stream.Item
			if err := json.Unmarshal([]byte(data), &it); err != nil {
				return fmt.Errorf("bad event from server: %w", err)
			}
			_, err := fmt.Fprintln(stdout, tailLine(&it))
			return err
		case "dropped":
			fmt.Fprintf(stderr, "tidemark tail: the server dropped events this terminal did not read fast enough: %s\n", data)
		}
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// tailLine formats one event: time, type, name (or url), device, properties.
func tailLine(it *stream.Item) string {
	name := it.EventName
	if name == "" {
		name = it.URL
	}
	if name == "" {
		name = "-"
	}
	props := string(it.Properties)
	if props == "" {
		props = string(it.Traits)
	}
	return strings.TrimRight(fmt.Sprintf("%s  %-8s  %-24s  %-20s  %s", it.ReceivedAt.Format("2006-01-02T15:04:05.000Z07:00"),
		it.Type, name, it.DeviceID, props), " ")
}

// readSSE calls fn for each Server-Sent Event (its "event" name, default
// "message", and its data lines joined by "\n"); comments are skipped.
func readSSE(r io.Reader, fn func(kind, data string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	kind, data := "", []string(nil)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if data != nil {
				if kind == "" {
					kind = "message"
				}
				if err := fn(kind, strings.Join(data, "\n")); err != nil {
					return err
				}
			}
			kind, data = "", nil
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			kind = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(line[len("data:"):], " "))
		}
	}
	return sc.Err()
}

const webhooksUsage = `usage: tidemark webhooks <command> [flags]

commands:
  dead-letters  list the batches webhooks did not accept within their retry window
  replay        send dead letters again; each accepted one is removed
`

func webhooks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, webhooksUsage)
		return flag.ErrHelp
	}
	fs := flag.NewFlagSet("webhooks "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "YAML config file of the server (its data_dir and webhooks)")
	org := fs.String("org", "", "only this org")
	hook := fs.String("webhook", "", "only this webhook")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	cfg := config.Default()
	if *cfgPath != "" {
		var err error
		if cfg, err = config.Load(*cfgPath); err != nil {
			return err
		}
	}
	dls, listErr := stream.ListDeadLetters(stream.DeadLetterDir(cfg.DataDir), *org, *hook)
	switch args[0] {
	case "dead-letters":
		events := 0
		for _, d := range dls {
			what := fmt.Sprintf("%d events", d.Events)
			if d.Poison {
				what = "poison event " + d.EventID
			}
			fmt.Fprintf(stdout, "%s/%s  p%d %d-%d  %s  failed %s after %d attempts: %s\n  %s\n",
				d.Org, d.Webhook, d.Partition, d.FirstOffset, d.LastOffset, what, d.FailedAt.Format(time.RFC3339), d.Attempts, d.Error, d.Path)
			events += d.Events
		}
		fmt.Fprintf(stdout, "%d dead letters, %d events\n", len(dls), events)
		return listErr
	case "replay":
		if listErr != nil {
			return listErr
		}
		return replay(ctx, cfg, dls, stdout)
	default:
		fmt.Fprint(stderr, webhooksUsage)
		return fmt.Errorf("unknown command %q", args[0])
	}
}

// replayPolicy: up to 3 attempts, 1s then 2s apart, or the receiver's
// Retry-After when longer, up to a minute.
var replayPolicy = retry.Policy{Initial: time.Second, Max: time.Minute, Attempts: 3, HintAtLeast: true, MaxHint: time.Minute}

// replay sends each dead letter once more (up to 3 attempts, honouring
// Retry-After up to a minute), in partition and offset order, and removes
// those the receiver accepts.
func replay(ctx context.Context, cfg *config.Config, dls []stream.StoredDeadLetter, stdout io.Writer) error {
	hooks := map[string]*stream.Webhook{}
	for _, w := range assemble.Webhooks(cfg) {
		hooks[w.Org+"/"+w.Name] = &w
	}
	sender := stream.NewSender("tidemark-webhook-replay/"+versionString(), time.Now)
	var sent, failed, skipped, events int
	for _, d := range dls {
		w := hooks[d.Org+"/"+d.Webhook]
		switch {
		case d.Poison:
			fmt.Fprintf(stdout, "skip %s: poison event %s cannot be replayed (fix the cause, then delete the file)\n", d.Path, d.EventID)
			skipped++
			continue
		case w == nil:
			fmt.Fprintf(stdout, "skip %s: webhook %s/%s is not in the config\n", d.Path, d.Org, d.Webhook)
			skipped++
			continue
		}
		req, err := d.Request()
		if err != nil {
			return fmt.Errorf("%s: %w", d.Path, err)
		}
		err = retry.Do(ctx, replayPolicy, func(attempt int) error {
			err := sender.Send(ctx, w, req.IdempotencyKey, d.Body, attempt)
			var se *stream.SendError
			if err != nil && !(errors.As(err, &se) && se.Retryable) {
				return retry.Stop(err)
			}
			return err
		})
		if err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			fmt.Fprintf(stdout, "failed %s: %v\n", d.Path, err)
			failed++
			continue
		}
		if err := os.Remove(d.Path); err != nil {
			return fmt.Errorf("remove replayed dead letter: %w", err)
		}
		fmt.Fprintf(stdout, "sent %s (%d events)\n", d.Path, d.Events)
		sent++
		events += d.Events
	}
	fmt.Fprintf(stdout, "replayed %d dead letters (%d events), %d failed, %d skipped\n", sent, events, failed, skipped)
	if failed > 0 {
		return fmt.Errorf("%d dead letters were not accepted; they are kept", failed)
	}
	return nil
}
