package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestHandMadeOverlap: destinations that overlap where the configuration
// check cannot see it, because they belong to separate deployments (each
// with its own data directory). Deployment A (org acme) delivers to
// lake/events. Deployment B has the same org and destination names and
// reaches A's place through a symbolic link; deployment C (org globex)
// delivers to lake, which contains A's place. B and C refuse to run their
// destination (down, with a last_error saying whose place it is); A's
// events are all still there exactly once and none of its committed files
// is deleted; B's audit reports B's events missing instead of counting A's
// rows (same org, devices and hour) as its own, and its backfill refuses to
// write into A's place.
func TestHandMadeOverlap(t *testing.T) {
	dir := t.TempDir()
	lake := filepath.Join(dir, "lake")
	inner := filepath.Join(lake, "events")
	if err := os.MkdirAll(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(inner, filepath.Join(dir, "alias")); err != nil {
		t.Fatal(err)
	}
	deploy := func(name, org, url string) (*proc, string) {
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		port := testenv.FreePort(t)
		cfg := orgsConfig(t, d, port, fmt.Sprintf(`audit: {interval: 1s, lookback: 2h}
admin_keys: [%q]
orgs:
  - id: %s
    write_keys: [%q]
    destinations:
      - name: lake
        url: %q
        flush: {max_events: 200, max_age: 500ms}
        freshness_grace: 1s
`, incidentAdminKey, org, testKey, url))
		return startProc(t, cfg, port), cfg
	}
	// send posts 100 events of ten devices (the same devices in every
	// deployment: the same log partitions and hour, so that counts alone
	// cannot tell one deployment's rows from another's).
	send := func(p *proc, prefix string) map[string]bool {
		ids := map[string]bool{}
		var batch []map[string]any
		for i := range 100 {
			id := fmt.Sprintf("%s%03d", prefix, i)
			ids[id] = true
			batch = append(batch, map[string]any{"type": "track", "event": "Tick", "messageId": id,
				"anonymousId": fmt.Sprintf("dev-%d", i%10)})
		}
		body, _ := json.Marshal(map[string]any{"batch": batch})
		if code, resp := post(t, p.addr+"/v1/batch", body, false); code != 200 {
			t.Fatalf("POST /v1/batch: %d %s", code, resp)
		}
		return ids
	}

	a, _ := deploy("a", "acme", "file://"+inner)
	aIDs := send(a, "a-")
	probe.Until(t, 60*time.Second, "A delivers its events", func() (bool, string) {
		n := len(readLake(t, inner).Events)
		d := a.dest("acme", "lake")
		return n == len(aIDs) && d.ok && d.Up == 1 && d.Age == 0, fmt.Sprintf("%d events in A's lake; %s", n, d)
	})
	committed := readLake(t, inner).Files

	b, bCfg := deploy("b", "acme", "file://"+filepath.Join(dir, "alias"))
	bIDs := send(b, "b-")
	c, _ := deploy("c", "globex", "file://"+lake)

	lastError := func(p *proc) string {
		if st := status(t, p.addr); len(st.Destinations) == 1 {
			return st.Destinations[0].LastError
		}
		return ""
	}
	for _, tc := range []struct {
		p        *proc
		org      string
		want     []string
		whatFrom string
	}{
		{b, "acme", []string{`claimed by org "acme" destination "lake"`, "another data directory"}, "B (same names, through a symlink)"},
		{c, "globex", []string{`org "acme" destination "lake"`, "inside this destination's place"}, "C (containing A's place)"},
	} {
		probe.Until(t, 60*time.Second, tc.whatFrom+" refuses its destination", func() (bool, string) {
			d, msg := tc.p.dest(tc.org, "lake"), lastError(tc.p)
			ok := d.ok && d.Up == 0
			for _, w := range tc.want {
				ok = ok && strings.Contains(msg, w)
			}
			return ok, fmt.Sprintf("%s; last_error %q", d, msg)
		})
		if msg := lastError(tc.p); strings.Contains(msg, inner) {
			t.Errorf("%s: last_error names the other destination's directory: %q", tc.whatFrom, msg)
		}
	}
	// B's audit: its events are missing, not "clean" with A's rows.
	probe.Until(t, 60*time.Second, "B's audit reports its 100 events missing", func() (bool, string) {
		m := b.auditMetric("tidemark_audit_missing_events")
		return m == float64(len(bIDs)), fmt.Sprintf("missing=%v", m)
	})

	// A is untouched: its committed files are all there, its events once.
	for f := range committed {
		if _, err := os.Stat(filepath.Join(inner, filepath.FromSlash(f))); err != nil {
			t.Errorf("A's committed file %s: %v", f, err)
		}
	}
	checkOnce(t, readLake(t, inner).eventCounts(), aIDs)
	if d := a.dest("acme", "lake"); d.Up != 1 {
		t.Errorf("A's destination: %s", d)
	}
	// Nothing of B or C was written into the lake: C's place holds A's
	// directory only, A's place no events of B.
	if entries, err := os.ReadDir(lake); err != nil || len(entries) != 1 || entries[0].Name() != "events" {
		t.Errorf("C wrote into the lake: %v %v", entries, err)
	}
	for _, e := range readLake(t, inner).Events {
		if bIDs[e.EventID] {
			t.Fatalf("B's event %s in A's place", e.EventID)
		}
	}

	// Offline, B's audit and backfill see the same.
	b.stop()
	rep, code := auditJSON(t, nil, "--config", bCfg, "--from", "2h")
	if code != 1 || len(rep.Results) != 1 || rep.Results[0].Total.Missing != int64(len(bIDs)) || rep.Results[0].Total.Delivered != 0 ||
		!strings.Contains(rep.Results[0].NotOwned, `claimed by org "acme" destination "lake"`) {
		t.Errorf("offline audit of B: exit %d, %+v", code, rep.Results)
	}
	if out, _, code := cli(t, nil, "audit", "--config", bCfg, "--from", "2h"); code != 1 ||
		!strings.Contains(out, "acme/lake: 100 missing: nothing in its place counts as delivered") {
		t.Errorf("offline audit of B, text: exit %d\n%s", code, out)
	}
	_, errOut, code := cli(t, nil, "backfill", "--config", bCfg, "--from", "2h")
	if code == 0 || !strings.Contains(errOut, "claimed by") {
		t.Errorf("backfill of B: exit %d, stderr %q; want a refusal", code, errOut)
	}
	checkOnce(t, readLake(t, inner).eventCounts(), aIDs)
	c.stop()
	a.stop()
}
