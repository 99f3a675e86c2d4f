package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// shell runs a command line in sh from directory dir, as a user pasting it
// would, with the tidemark under test first on PATH.
func shell(t *testing.T, dir string, env []string, line string) (string, string, int) {
	t.Helper()
	cmd := exec.Command("sh", "-c", line)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), append(env, "PATH="+filepath.Dir(binary(t))+":"+os.Getenv("PATH"))...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out.String(), errb.String(), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), 0
}

var repairLine = regexp.MustCompile(`(?m)^  (tidemark backfill .*)$`)

// deleteEventsFile deletes one committed events file of the lake at root and
// returns the ids of its events.
func deleteEventsFile(t *testing.T, root string) map[string]bool {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(root, "events", "*", "*", "*.parquet"))
	if len(files) == 0 {
		t.Fatal("no events file to delete")
	}
	data, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	rows, err := format.ReadEvents(data)
	if err != nil {
		t.Fatal(err)
	}
	lost := map[string]bool{}
	for _, r := range rows {
		lost[r.EventID] = true
	}
	if err := os.Remove(files[0]); err != nil {
		t.Fatal(err)
	}
	return lost
}

// TestAuditRepairCommandRepairs: the repair command that `tidemark audit`
// prints targets what the audit targeted (the running server for --url, the
// same config file offline) without showing the admin key, and pasted as
// printed, from another directory, it repairs the gap; a backfill or audit
// that finds no data dir, no log, or no record of the org fails instead of
// reporting nothing to do.
func TestAuditRepairCommandRepairs(t *testing.T) {
	dir := t.TempDir()
	elsewhere := t.TempDir() // a directory without tidemark-data, where the command is pasted
	port := testenv.FreePort(t)
	s := stores(t, dir)["local"](t)
	lakeDir := strings.TrimPrefix(s.url, "file://")
	cfg := incidentConfig(t, dir, port, s.url, time.Second, "")
	p := startProc(t, cfg, port)
	start := time.Now()
	load := startLoad(t, p.addr, testKey, "repair-", 2, 20, 50*time.Millisecond)
	load.waitAcked(t, 600)
	acked := load.Stop()
	probe.Until(t, 60*time.Second, "delivery", func() (bool, string) {
		c := readLake(t, lakeDir).eventCounts()
		return len(c) == len(acked), fmt.Sprintf("%d of %d", len(c), len(acked))
	})
	// Past the SLA, an absent event is missing, not pending.
	p.waitAuditedAfter(t, time.Now().Add(5*time.Second))
	from := start.Add(-time.Minute).UTC().Format(time.RFC3339)

	// Online: the audit given the admin key as a flag.
	lost := deleteEventsFile(t, lakeDir)
	out, errOut, code := cli(t, nil, "audit", "--url", p.addr, "--admin-key", incidentAdminKey, "--from", from)
	if code != 1 {
		t.Fatalf("audit exit %d, want 1:\n%s\n%s", code, out, errOut)
	}
	if strings.Contains(out+errOut, incidentAdminKey) {
		t.Fatalf("the audit output shows the admin key:\n%s", out)
	}
	m := repairLine.FindStringSubmatch(out)
	if m == nil || !strings.Contains(m[1], "--url "+p.addr) || !strings.Contains(out, "$TIDEMARK_ADMIN_KEY") {
		t.Fatalf("no repair command targeting %s:\n%s", p.addr, out)
	}
	out, errOut, code = shell(t, elsewhere, []string{"TIDEMARK_ADMIN_KEY=" + incidentAdminKey}, m[1])
	if code != 0 || !strings.Contains(out, fmt.Sprintf("with %d missing events", len(lost))) {
		t.Fatalf("pasted %q: exit %d:\n%s\n%s", m[1], code, out, errOut)
	}
	if out, _, code := cli(t, nil, "audit", "--url", p.addr, "--admin-key", incidentAdminKey, "--from", from); code != 0 {
		t.Fatalf("audit after the pasted repair: exit %d:\n%s", code, out)
	}
	p.stop()

	// Offline: the audit given a relative --config, in the config's directory.
	lost = deleteEventsFile(t, lakeDir)
	out, errOut, code = shell(t, dir, nil, "tidemark audit --config "+filepath.Base(cfg)+" --from "+from)
	if code != 1 {
		t.Fatalf("offline audit exit %d, want 1:\n%s\n%s", code, out, errOut)
	}
	m = repairLine.FindStringSubmatch(out)
	if m == nil || !strings.Contains(m[1], "--config "+cfg) {
		t.Fatalf("no repair command naming %s:\n%s", cfg, out)
	}
	out, errOut, code = shell(t, elsewhere, nil, m[1])
	if code != 0 || !strings.Contains(out, fmt.Sprintf("with %d missing events", len(lost))) {
		t.Fatalf("pasted %q: exit %d:\n%s\n%s", m[1], code, out, errOut)
	}
	if out, _, code := shell(t, elsewhere, nil, "tidemark audit --config "+cfg+" --from "+from); code != 0 {
		t.Fatalf("offline audit after the pasted repair: exit %d:\n%s", code, out)
	}
	checkOnce(t, committedEvents(t, s), acked)

	// Nothing to read: an error, never "nothing missing".
	other := filepath.Join(dir, "other.yaml")
	raw, _ := os.ReadFile(cfg)
	os.WriteFile(other, bytes.Replace(raw, []byte("- id: acme"), []byte("- id: globex"), 1), 0o600)
	if err := os.Mkdir(filepath.Join(elsewhere, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ dir, line, want string }{
		{elsewhere, "tidemark backfill --from " + from, "data_dir ./tidemark-data"},
		{elsewhere, "tidemark audit --from " + from, "data_dir ./tidemark-data"},
		{filepath.Join(elsewhere, "empty"), "mkdir tidemark-data && tidemark backfill --from " + from, "holds no tidemark log"},
		{elsewhere, "tidemark backfill --config " + other + " --from " + from, "has no record of org globex destination lake"},
		{elsewhere, "tidemark audit --config " + other + " --from " + from, "has no record of org globex destination lake"},
	} {
		out, errOut, code := shell(t, tc.dir, nil, tc.line)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q, stdout %q; want exit 2 and %q", tc.line, code, errOut, out, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(elsewhere, "empty", "tidemark-data", "store")); err == nil {
		t.Error("backfill created a store in an empty data dir")
	}
}
