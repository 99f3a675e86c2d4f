// Package sessionizetest holds the sessionizer's golden-file format, shared by
// the pure tests and the tests of the Pebble-backed store.
//
// A golden file is: optional "config page_idle=.. session_idle=.. dedupe=.."
// line, input lines "TYPE TIME DEVICE MESSAGEID [key=value...]" (keys: org,
// user, name, url, path, title, ref) or "tick TIME", then "----" and the
// expected outputs as rendered by Render. Times are relative to a fixed base.
package sessionizetest

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/sessionize"
)

// base is the log time that golden files' relative times count from.
const base = int64(1_700_000_000) * 1e9

// Golden is one data-driven case: a config line, input records, and the
// expected outputs after "----".
type Golden struct {
	Path     string
	Config   sessionize.Config
	Records  []event.Record
	Input    []string
	Expected string
}

// LoadGolden parses a golden file.
func LoadGolden(t testing.TB, path string) Golden {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	in, exp, _ := strings.Cut(string(raw), "----\n")
	g := Golden{Path: path, Expected: exp, Config: sessionize.Config{PageIdle: 30 * time.Minute, SessionIdle: 30 * time.Minute, DedupeWindow: 24 * time.Hour}}
	sc := bufio.NewScanner(strings.NewReader(in))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			g.Input = append(g.Input, sc.Text())
			continue
		}
		g.Input = append(g.Input, sc.Text())
		f := strings.Fields(line)
		kv := map[string]string{}
		for _, x := range f {
			if k, v, ok := strings.Cut(x, "="); ok {
				kv[k] = v
			}
		}
		dur := func(s string) time.Duration {
			d, err := time.ParseDuration(s)
			if err != nil {
				t.Fatalf("%s: %q: %v", path, line, err)
			}
			return d
		}
		switch f[0] {
		case "config":
			for k, v := range kv {
				switch k {
				case "page_idle":
					g.Config.PageIdle = dur(v)
				case "session_idle":
					g.Config.SessionIdle = dur(v)
				case "dedupe":
					g.Config.DedupeWindow = dur(v)
				default:
					t.Fatalf("%s: unknown config key %q", path, k)
				}
			}
		case "tick":
			g.Records = append(g.Records, event.Record{Kind: event.KindTick, Time: base + int64(dur(f[1]))})
		default:
			if len(f) < 4 || !event.IsType(f[0]) {
				t.Fatalf("%s: bad line %q (want: TYPE TIME DEVICE MESSAGEID [k=v...])", path, line)
			}
			org := kv["org"]
			if org == "" {
				org = "o"
			}
			ts := base + int64(dur(f[1]))
			e := event.Event{Type: f[0], ReceivedAt: ts, EventTime: ts, Device: f[2], AnonymousID: f[2], ID: f[3], Org: org,
				UserID: kv["user"], Name: kv["name"], URL: kv["url"], Path: kv["path"], Title: kv["title"], Referrer: kv["ref"]}
			g.Records = append(g.Records, event.Record{Kind: event.KindEvent, Time: ts, Event: e})
		}
	}
	return g
}

// Render prints outputs with IDs replaced by stable aliases (S1, P1, ...).
func Render(outs []sessionize.Output) string {
	alias := map[string]string{}
	name := func(prefix, id string) string {
		if id == "" {
			return "-"
		}
		if a, ok := alias[id]; ok {
			return a
		}
		n := 0
		for _, v := range alias {
			if strings.HasPrefix(v, prefix) {
				n++
			}
		}
		alias[id] = fmt.Sprintf("%s%d", prefix, n+1)
		return alias[id]
	}
	rel := func(ns int64) string { return time.Duration(ns - base).String() }
	var b strings.Builder
	for _, o := range outs {
		switch o.Kind {
		case sessionize.KindEvent:
			fmt.Fprintf(&b, "event off=%d at=%s session=%s page=%s\n", o.Offset, rel(o.LogTime), name("S", o.SessionID), name("P", o.PageID))
		case sessionize.KindPage:
			p := o.Page
			fmt.Fprintf(&b, "page %s session=%s org=%s dev=%s start=%s end=%s events=%d reason=%s url=%s user=%s at=%s\n",
				name("P", p.ID), name("S", o.SessionID), o.Org, o.Device, rel(p.Start), rel(o.EndedAt), p.Events, o.EndReason, p.URL, p.UserID, rel(o.LogTime))
		case sessionize.KindSession:
			s := o.Session
			fmt.Fprintf(&b, "session %s org=%s dev=%s start=%s end=%s pages=%d events=%d entry=%s exit=%s user=%s at=%s\n",
				name("S", s.ID), o.Org, o.Device, rel(s.Start), rel(s.Last), s.Pages, s.Events, s.EntryURL, s.ExitURL, s.UserID, rel(o.LogTime))
		case sessionize.KindWatermark:
			fmt.Fprintf(&b, "watermark %s\n", rel(o.LogTime))
		}
	}
	return b.String()
}

// WriteGolden rewrites a golden file's expected section.
func WriteGolden(t testing.TB, g Golden, got string) {
	t.Helper()
	if err := os.WriteFile(g.Path, []byte(strings.Join(g.Input, "\n")+"\n----\n"+got), 0o644); err != nil {
		t.Fatal(err)
	}
}
