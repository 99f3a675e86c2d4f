package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestDedupeSameMessageIDAcrossDevices: ten devices each send an event with
// the same messageId (order-1, a common client habit), and three of them
// retry it for real (the identical event again, alone, in a batch, gzipped,
// next to a new event). The real binary delivers exactly ten order-1 rows,
// one per device, and the new event once; the retries are the only events it
// skips; an independent Parquet reader (hyparquet) sees no duplicate; and the
// audit, online and offline, default and --deep, is clean with 11 accepted.
func TestDedupeSameMessageIDAcrossDevices(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	root := filepath.Join(dir, "lake")
	cfg := incidentConfig(t, dir, port, "file://"+root, time.Second, "")
	p := startProc(t, cfg, port)
	start := time.Now()

	const devices = 10
	parts := map[int]int{} // log partition -> devices (orgsConfig: 4 partitions)
	body := func(dev int, id string) string {
		return fmt.Sprintf(`{"type":"track","event":"Order Completed","anonymousId":"buyer-%d","messageId":%q,"properties":{"total":%d}}`, dev, id, 10+dev)
	}
	send := func(path, b string, gz bool) {
		t.Helper()
		if code, resp := post(t, p.addr+path, []byte(b), gz); code != 200 {
			t.Fatalf("POST %s: %d %s", path, code, resp)
		}
	}
	for d := range devices {
		parts[eventlog.PartitionOf("acme", fmt.Sprintf("buyer-%d", d), 4)]++
		send("/v1/track", body(d, "order-1"), false)
	}
	if len(parts) == devices {
		t.Fatal("every device in its own partition: the test would not show a cross-device dedupe")
	}
	// Real retries: identical events from the same device.
	send("/v1/track", body(0, "order-1"), false)
	send("/v1/track", body(0, "order-1"), true)
	send("/v1/batch", `{"batch":[`+body(3, "order-1")+`,`+body(3, "order-2")+`]}`, true)
	send("/v1/batch", `{"batch":[`+body(7, "order-1")+`]}`, false)
	send("/v1/batch", `{"batch":[`+body(7, "order-1")+`]}`, true)
	const retries, accepted = 5, devices + 1

	// The sessionizer skips exactly the retries (and, skipped, they never
	// become rows); then every other event is in the lake.
	var dupes float64
	probe.Until(t, 60*time.Second, "the retries skipped and the events delivered", func() (bool, string) {
		dupes, _ = p.metric("tidemark_sessionizer_duplicate_events_total")
		n := len(readLake(t, root).Events)
		return dupes > retries || (dupes == retries && n >= accepted), fmt.Sprintf("duplicates skipped %v, rows %d", dupes, n)
	})
	if dupes != retries {
		t.Errorf("the sessionizer skipped %v events as duplicates; only the %d retries are", dupes, retries)
	}

	// The independent reader: one row per (device, messageId), nothing else.
	committed := readLake(t, root).Files
	seen := map[string]int{}
	for _, r := range testenv.ReadParquetDirFiles(t, root) {
		if table, _, _ := strings.Cut(filepath.ToSlash(r.File), "/"); table != "events" || !committed[r.File] {
			continue
		}
		seen[fmt.Sprintf("%v/%v", r.Row["device_id"], r.Row["event_id"])]++
	}
	want := map[string]bool{"buyer-3/order-2": true}
	for d := range devices {
		want[fmt.Sprintf("buyer-%d/order-1", d)] = true
	}
	for k := range want {
		if seen[k] != 1 {
			t.Errorf("independent reader: %s committed %d times, want 1", k, seen[k])
		}
	}
	for k, n := range seen {
		if !want[k] {
			t.Errorf("independent reader: %s committed %d times, never sent", k, n)
		}
	}

	env := []string{"TIDEMARK_ADMIN_KEY=" + incidentAdminKey}
	from := start.Add(-time.Minute).UTC().Format(time.RFC3339)
	checkAudit := func(how string, args ...string) {
		t.Helper()
		rep, code := auditJSON(t, env, append(args, "--from", from)...)
		tot := rep.Results[0].Total
		if code != 0 || tot.Accepted != accepted || tot.Delivered != accepted || tot.Missing != 0 || tot.Duplicated != 0 || tot.Pending != 0 {
			t.Errorf("%s audit: exit %d, total %+v; want exit 0, %d accepted and delivered", how, code, tot, accepted)
		}
	}
	checkAudit("online", "--url", p.addr)
	checkAudit("online --deep", "--url", p.addr, "--deep")
	p.stop()
	checkAudit("offline --deep", "--config", cfg, "--deep")
}
