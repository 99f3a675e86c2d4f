package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tidemark/tidemark/internal/testenv"
)

// TestLoadgenMeasureOnly: `loadgen -send=false` sends nothing and waits for
// the events another client sent (scripts/bench-peer.sh's wrk) in the lake:
// it succeeds when all of them are there exactly once and fails, naming the
// count, when fewer are.
func TestLoadgenMeasureOnly(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	port := testenv.FreePort(t)
	p := startProc(t, testConfig(t, dir, port, ""), port)
	lake := filepath.Join(dir, "lake")
	loadgen := func(args ...string) (string, error) {
		out, err := exec.CommandContext(t.Context(), binary(t), append([]string{"loadgen"}, args...)...).CombinedOutput()
		return string(out), err
	}

	if out, err := loadgen("-url", p.addr, "-write-key", testKey, "-events", "500", "-run-id", "other", "-connections", "4"); err != nil {
		t.Fatalf("send: %v\n%s", err, out)
	}
	out, err := loadgen("-send=false", "-lake", lake, "-run-id", "other", "-events", "500", "-lake-timeout", "2m")
	if err != nil || !strings.Contains(out, "lake       500 of 500 events committed") || !strings.Contains(out, " 0 duplicates") {
		t.Fatalf("measure: %v\n%s", err, out)
	}
	if strings.Contains(out, "acked") {
		t.Errorf("-send=false sent load:\n%s", out)
	}
	out, err = loadgen("-send=false", "-lake", lake, "-run-id", "other", "-events", "501", "-lake-timeout", "1s")
	if err == nil || !strings.Contains(out, "only 500 of 501") {
		t.Errorf("one event missing: %v\n%s", err, out)
	}
	out, err = loadgen("-send=false", "-lake", lake, "-events", "500")
	if err == nil || !strings.Contains(out, "-send=false needs -lake, -run-id and -events") {
		t.Errorf("no run id: %v\n%s", err, out)
	}
}
