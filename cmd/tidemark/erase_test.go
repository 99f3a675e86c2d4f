package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// eraseWorld is what TestEraseDryRun sends: events of several people linked
// by identify and alias, each event tagged with its person.
type eraseWorld struct {
	owner  map[string]string // messageId -> person
	events []map[string]any
}

func (w *eraseWorld) add(person string, n int, fields map[string]any) {
	for range n {
		id := fmt.Sprintf("erase-%s-%03d", person, len(w.events))
		ev := map[string]any{"type": "track", "event": "Clicked", "messageId": id}
		for k, v := range fields {
			ev[k] = v
		}
		w.owner[id] = person
		w.events = append(w.events, ev)
	}
}

// TestEraseDryRun: `tidemark erase --dry-run` on a stopped node finds a
// person through identify and alias links and counts, per destination and
// hour, exactly that person's events in the log and in the lake, as an
// independent reader of the lake counts them; bad input gets a clear
// answer and changes nothing.
func TestEraseDryRun(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	cfg := testConfig(t, dir, port, "")
	p := startProc(t, cfg, port)

	w := &eraseWorld{owner: map[string]string{}}
	// alice: anonymous on a1, identified; anonymous on a2, aliased; and
	// server-side events under her user id alone.
	w.add("alice", 30, map[string]any{"anonymousId": "anon-a1"})
	w.add("alice", 1, map[string]any{"type": "identify", "userId": "alice", "anonymousId": "anon-a1"})
	w.add("alice", 30, map[string]any{"userId": "alice", "anonymousId": "anon-a1"})
	w.add("alice", 20, map[string]any{"anonymousId": "anon-a2"})
	w.add("alice", 1, map[string]any{"type": "alias", "userId": "alice", "previousId": "anon-a2"})
	w.add("alice", 15, map[string]any{"userId": "alice"})
	// bob: one identified device.
	w.add("bob", 25, map[string]any{"anonymousId": "anon-b1"})
	w.add("bob", 1, map[string]any{"type": "identify", "userId": "bob", "anonymousId": "anon-b1"})
	w.add("bob", 25, map[string]any{"userId": "bob", "anonymousId": "anon-b1"})
	// dave: renamed from dave-old by an alias of user ids.
	w.add("dave", 20, map[string]any{"userId": "dave-old"})
	w.add("dave", 1, map[string]any{"type": "alias", "userId": "dave", "previousId": "dave-old"})
	w.add("dave", 10, map[string]any{"userId": "dave"})
	// Anonymous devices never identified: nobody's to find by a user id.
	w.add("carol", 40, map[string]any{"anonymousId": "anon-c1"})
	w.add("stranger", 40, map[string]any{"anonymousId": "anon-x"})
	for i := 0; i < len(w.events); i += 50 {
		body, _ := json.Marshal(map[string]any{"batch": w.events[i:min(i+50, len(w.events))]})
		if code, resp := post(t, p.addr+"/v1/batch", body, i%100 == 0); code != 200 {
			t.Fatalf("batch %d: %d %s", i, code, resp)
		}
	}
	root := filepath.Join(dir, "lake")
	probe.Until(t, 90*time.Second, "every event in the lake", func() (bool, string) {
		n := len(readLake(t, root).Events)
		return n >= len(w.events), fmt.Sprintf("%d of %d events", n, len(w.events))
	})
	// The server holds the data dir: erase says so, and that it has no
	// --url mode to offer instead.
	if _, errOut, code := cli(t, nil, "erase", "--config", cfg, "--org", "acme", "--user", "alice", "--dry-run"); code != 2 ||
		!strings.Contains(errOut, "in use, probably by a running tidemark: stop it first") {
		t.Errorf("erase beside a running server: exit %d, %q", code, errOut)
	}
	p.stop()

	// The independent count: lake rows of the person's events, per hour
	// of ingestion, read from the files the manifests name.
	l := readLake(t, root)
	if len(l.Events) != len(w.events) {
		t.Fatalf("lake holds %d events, sent %d", len(l.Events), len(w.events))
	}
	lakeHours := func(person string) map[time.Time]int64 {
		out := map[time.Time]int64{}
		for _, r := range l.Events {
			if w.owner[r.EventID] == person {
				out[time.UnixMicro(r.ReceivedAt).UTC().Truncate(time.Hour)]++
			}
		}
		return out
	}
	files := func() []string {
		var out []string
		filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				out = append(out, path)
			}
			return nil
		})
		return out
	}
	before := files()

	for _, tc := range []struct {
		person string
		args   []string
		linked []string
	}{
		{"alice", []string{"--user", "alice"}, []string{"anon-a1", "anon-a2"}},
		{"alice", []string{"--device", "anon-a2"}, []string{"alice", "anon-a1"}},
		{"bob", []string{"--device", "anon-b1"}, []string{"bob"}},
		{"dave", []string{"--user", "dave"}, []string{"dave-old"}},
		{"carol", []string{"--device", "anon-c1"}, nil},
	} {
		t.Run(tc.person+strings.Join(tc.args, ""), func(t *testing.T) {
			args := append([]string{"erase", "--config", cfg, "--org", "acme", "--dry-run", "--json", "--show-linked"}, tc.args...)
			out, errOut, code := cli(t, nil, args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var rep eraseReport
			if err := json.Unmarshal([]byte(out), &rep); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			want := lakeHours(tc.person)
			var total int64
			for _, n := range want {
				total += n
			}
			if rep.Events != total || total == 0 {
				t.Errorf("events = %d, the lake holds %d of %s", rep.Events, total, tc.person)
			}
			if !slices.Equal(rep.Linked, tc.linked) || rep.LinkedIDs != len(tc.linked) {
				t.Errorf("linked = %v (%d), want %v", rep.Linked, rep.LinkedIDs, tc.linked)
			}
			if len(rep.Destinations) != 1 || rep.Destinations[0].Destination != "lake" || rep.Destinations[0].Error != "" {
				t.Fatalf("destinations = %+v", rep.Destinations)
			}
			got := map[time.Time]int64{}
			for _, h := range rep.Destinations[0].Hours {
				if h.InLog != h.InDestination {
					t.Errorf("hour %s: %d in log, %d in the lake", h.Hour, h.InLog, h.InDestination)
				}
				got[h.Hour.UTC()] = h.InDestination
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("per hour = %v, the lake's own count = %v", got, want)
			}
		})
	}

	// Without --show-linked the linked ids are counted, never printed.
	out, _, code := cli(t, nil, "erase", "--config", cfg, "--org", "acme", "--dry-run", "--user", "alice")
	if code != 0 || strings.Contains(out, "anon-a1") || !strings.Contains(out, "2 linked ids found") {
		t.Errorf("table (exit %d) prints linked ids or not their count:\n%s", code, out)
	}

	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--org", "nope", "--user", "alice", "--dry-run"}, 2, `unknown org "nope": the config has acme`},
		{[]string{"--org", "acme", "--user", "", "--dry-run"}, 2, "an id must not be empty"},
		{[]string{"--org", "acme", "--user", " ", "--dry-run"}, 2, "an id must not be empty"},
		{[]string{"--org", "acme", "--dry-run"}, 2, "give the person: --user ID or --device ANONYMOUSID"},
		{[]string{"--user", "alice", "--dry-run"}, 2, "--org is required"},
		{[]string{"--org", "acme", "--user", "nobody", "--dry-run"}, 1, "has no event of these ids: nothing to erase"},
		{[]string{"--org", "acme", "--user", "alice"}, 2, "not built yet: only --dry-run"},
	} {
		_, errOut, code := cli(t, nil, append([]string{"erase", "--config", cfg}, tc.args...)...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("erase %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
	if after := files(); !slices.Equal(before, after) {
		t.Errorf("the lake changed:\nbefore %v\nafter  %v", before, after)
	}
	if got := readLake(t, root); len(got.Events) != len(w.events) {
		t.Errorf("the lake holds %d events after the dry runs, want %d", len(got.Events), len(w.events))
	}
}
