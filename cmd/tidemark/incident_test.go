package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/destination/blob"
	"github.com/tidemark/tidemark/internal/fault"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// The incident, replayed: the tests of docs/operations.md "Audit and backfill". Each
// runs against the local destination and against S3 (versitygw).

const incidentAdminKey = "incident-admin-key-000001"

// store is one destination backend of the incident tests.
type store struct {
	url string
	env []string
	// delete removes one object, key relative to the destination's prefix,
	// with the store's own tools.
	delete func(t *testing.T, key string)
	// objects returns every object, key relative to the prefix.
	objects func(t *testing.T) map[string][]byte
}

func stores(t *testing.T, dir string) map[string]func(t *testing.T) store {
	return map[string]func(t *testing.T) store{
		"local": func(t *testing.T) store {
			root := filepath.Join(dir, "lake-"+strings.ReplaceAll(t.Name(), "/", "-"))
			return store{url: "file://" + root,
				delete: func(t *testing.T, key string) {
					if err := os.Remove(filepath.Join(root, key)); err != nil {
						t.Fatal(err)
					}
				},
				objects: func(t *testing.T) map[string][]byte {
					out := map[string][]byte{}
					err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
						if err != nil || d.IsDir() {
							return err
						}
						rel, _ := filepath.Rel(root, path)
						data, err := os.ReadFile(path)
						if errors.Is(err, fs.ErrNotExist) {
							return nil // a temporary file, renamed while we walked
						}
						out[filepath.ToSlash(rel)] = data
						return err
					})
					if err != nil {
						t.Fatal(err)
					}
					return out
				}}
		},
		"s3": func(t *testing.T) store {
			url, bucket := testenv.S3(t)
			return store{url: url, env: testenv.S3Env(t),
				delete: func(t *testing.T, key string) {
					_, err := testenv.S3Client(t).DeleteObject(t.Context(), &s3.DeleteObjectInput{
						Bucket: aws.String(bucket), Key: aws.String(testenv.DefaultPrefix + "/" + key)})
					if err != nil {
						t.Fatal(err)
					}
				},
				objects: func(t *testing.T) map[string][]byte { return testenv.Objects(t, url) }}
		},
	}
}

// incidentConfig: org acme with destination lake at url (events SLA 500ms
// max_age + grace; pages and sessions add 2s and 3s idle), audited every
// second.
func incidentConfig(t *testing.T, dir string, port int, url string, grace time.Duration, more string) string {
	return orgsConfig(t, dir, port, fmt.Sprintf(`audit: {interval: 1s, lookback: 2h}
admin_keys: [%q]
orgs:
  - id: acme
    write_keys: [%q]
    destinations:
      - name: lake
        url: %q
        flush: {max_events: 200, max_age: 500ms}
        freshness_grace: %s
%s`, incidentAdminKey, testKey, url, grace, more))
}

// cli runs the tidemark binary and returns its stdout, stderr and exit code.
func cli(t *testing.T, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// auditJSON runs `tidemark audit --json` with args and decodes the report.
func auditJSON(t *testing.T, env []string, args ...string) (*audit.Report, int) {
	t.Helper()
	out, errOut, code := cli(t, env, append([]string{"audit", "--json"}, args...)...)
	if code == 2 {
		t.Fatalf("tidemark audit failed: %s", errOut)
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("audit --json output: %v\n%s", err, out)
	}
	return &rep, code
}

// committedEvents reads the destination as a reader of the lake does, with
// the independent Parquet reader (hyparquet), and returns how often each
// event id is committed.
func committedEvents(t *testing.T, s store) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for _, row := range committedRows(t, s, format.Events) {
		counts[row.Row["event_id"].(string)]++
	}
	return counts
}

// committedRows reads the committed rows of the tables (format.Events, ...)
// with the independent Parquet reader: the data files that a manifest
// (pipeline or backfill) names are copied to a directory and read there.
// Each row's File starts with its table ("events/dt=...").
func committedRows(t *testing.T, s store, tables ...string) []testenv.ParquetRow {
	t.Helper()
	objs := s.objects(t)
	dir := t.TempDir()
	for key, data := range objs {
		if !strings.HasPrefix(key, "_manifests/") || !strings.HasSuffix(key, ".json") {
			continue
		}
		m, err := blob.DecodeManifest(data)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		for _, f := range m.Files {
			if !slices.Contains(tables, f.Table) {
				continue
			}
			body, ok := objs[f.Path]
			if !ok {
				continue // lost: the test deleted it
			}
			p := filepath.Join(dir, filepath.FromSlash(f.Path))
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, body, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return testenv.ReadParquetDirFiles(t, dir)
}

// deleteEventsFiles deletes every third events file of s and returns the
// files, the events they held and how many of those per hour (received_at).
func deleteEventsFiles(t *testing.T, s store) (files []string, lost map[string]bool, lostByHour map[time.Time]int64) {
	t.Helper()
	lost, lostByHour = map[string]bool{}, map[time.Time]int64{}
	i := 0
	for key, data := range s.objects(t) {
		if !strings.HasPrefix(key, "events/") {
			continue
		}
		if i++; i%3 != 0 {
			continue
		}
		rows, err := format.ReadEvents(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			lost[r.EventID] = true
			lostByHour[time.UnixMicro(r.ReceivedAt).UTC().Truncate(time.Hour)]++
		}
		s.delete(t, key)
		files = append(files, key)
	}
	if len(lost) == 0 {
		t.Fatal("no events file to delete")
	}
	return files, lost, lostByHour
}

// waitAcked waits until the loader has n acknowledged events.
func (l *loader) waitAcked(t *testing.T, n int) {
	t.Helper()
	probe.Until(t, 60*time.Second, fmt.Sprintf("%d acknowledged events", n), func() (bool, string) {
		got := len(l.Acked())
		return got >= n, fmt.Sprintf("%d acknowledged", got)
	})
}

// waitCommitted waits until every id of acked is committed in s.
func waitCommitted(t *testing.T, s store, acked map[string]bool, what string) {
	t.Helper()
	probe.Until(t, 60*time.Second, what, func() (bool, string) {
		c := committedEvents(t, s)
		n := 0
		for id := range acked {
			if c[id] > 0 {
				n++
			}
		}
		return n == len(acked), fmt.Sprintf("%d of %d delivered", n, len(acked))
	})
}

// checkOnce fails unless every id of want is committed exactly once and
// nothing else is.
func checkOnce(t *testing.T, counts map[string]int, want map[string]bool) {
	t.Helper()
	bad := 0
	for id := range want {
		if counts[id] != 1 {
			if bad++; bad <= 10 {
				t.Errorf("acknowledged event %s committed %d times, want 1", id, counts[id])
			}
		}
	}
	for id := range counts {
		if !want[id] {
			if bad++; bad <= 10 {
				t.Errorf("event %s committed but never acknowledged", id)
			}
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d events not exactly once", bad, len(want))
	}
}

// waitAuditedAfter waits for an audit run that started after t and found
// no pending events.
func (p *proc) waitAuditedAfter(tb *testing.T, t time.Time) {
	tb.Helper()
	probe.Until(tb, 60*time.Second, "an audit run without pending events", func() (bool, string) {
		pend := p.auditMetric("tidemark_audit_pending_events")
		last, _ := p.metric("tidemark_audit_last_run_timestamp_seconds")
		return pend == 0 && last > float64(t.Unix()+1), fmt.Sprintf("pending=%v last run=%v", pend, last)
	})
}

// eventsMetric is a per-table metric of acme/lake's events table.
func (p *proc) eventsMetric(name string) float64 {
	v, _ := p.metric(name + `{destination="lake",org="acme",table="events"}`)
	return v
}

func (p *proc) auditMetric(name string) float64 {
	v, _ := p.metric(name + `{destination="lake",org="acme"}`)
	return v
}

// TestIncidentLostNotifications replays the seed incident: a fault makes the
// transport silently skip the events of some pages (their "inactive"
// notification never fires). Within the freshness SLA plus an audit interval
// the missing-events and stale-destination alert conditions hold; `tidemark
// audit` names exactly the skipped events; `tidemark backfill` restores
// them; the audit is clean and an independent reader sees every
// acknowledged event exactly once.
func TestIncidentLostNotifications(t *testing.T) {
	dir := t.TempDir()
	for name, mk := range stores(t, dir) {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			port := testenv.FreePort(t)
			cfg := incidentConfig(t, t.TempDir(), port, s.url, time.Second, "")
			p := startProcEnv(t, cfg, port, append(s.env, fault.Env+"=drop-pages=4"))
			start := time.Now()
			load := startLoad(t, p.addr, testKey, "lost-", 2, 20, 50*time.Millisecond)
			load.waitAcked(t, 3000)
			acked := load.Stop()
			stopped := time.Now()

			// The alert conditions: missing events found, and the oldest
			// undelivered age above the SLA. Generous bound: SLA (1.5s) +
			// audit interval (1s) + noise.
			probe.Until(t, 90*time.Second, "the missing-events and stale-destination conditions", func() (bool, string) {
				missing := p.auditMetric("tidemark_audit_missing_events")
				age := p.eventsMetric("tidemark_oldest_undelivered_event_age_seconds")
				sla := p.eventsMetric("tidemark_destination_freshness_sla_seconds")
				return missing > 0 && sla > 0 && age > sla, fmt.Sprintf("missing=%v age=%v sla=%v", missing, age, sla)
			})
			t.Logf("alert conditions true %.1fs after the load stopped (events SLA 1.5s, audit interval 1s)", time.Since(stopped).Seconds())
			// Everything accepted is now either delivered or missing.
			p.waitAuditedAfter(t, stopped.Add(5*time.Second))

			before := committedEvents(t, s)
			skipped := map[string]bool{}
			for id := range acked {
				if before[id] == 0 {
					skipped[id] = true
				}
			}
			if len(skipped) == 0 || len(skipped) == len(acked) {
				t.Fatalf("the fault skipped %d of %d events", len(skipped), len(acked))
			}
			env := append(s.env, "TIDEMARK_ADMIN_KEY="+incidentAdminKey)
			from := start.Add(-time.Minute).UTC().Format(time.RFC3339)
			rep, code := auditJSON(t, env, "--url", p.addr, "--from", from)
			if code != 1 {
				t.Fatalf("audit exit %d with missing events, want 1", code)
			}
			res := rep.Results[0]
			if res.Total.Missing != int64(len(skipped)) || res.Total.Duplicated != 0 || res.Total.Accepted != int64(len(acked)) {
				t.Fatalf("audit total %+v; the fault skipped %d of %d", res.Total, len(skipped), len(acked))
			}
			for _, m := range res.Missing {
				if !skipped[m.EventID] {
					t.Fatalf("audit names %s, which the destination holds", m.EventID)
				}
			}

			out, errOut, code := cli(t, env, "backfill", "--url", p.addr, "--from", from)
			if code != 0 || !strings.Contains(out, fmt.Sprintf("with %d missing events", len(skipped))) {
				t.Fatalf("backfill exit %d:\n%s\n%s", code, out, errOut)
			}
			if _, code := auditJSON(t, env, "--url", p.addr, "--from", from); code != 0 {
				t.Fatalf("audit after backfill exit %d, want 0", code)
			}
			out, _, _ = cli(t, env, "backfill", "--url", p.addr, "--from", from)
			if !strings.Contains(out, "wrote 0 backfill batches") {
				t.Fatalf("second backfill:\n%s", out)
			}
			probe.Until(t, 30*time.Second, "the alert conditions to clear", func() (bool, string) {
				missing := p.auditMetric("tidemark_audit_missing_events")
				age := p.eventsMetric("tidemark_oldest_undelivered_event_age_seconds")
				return missing == 0 && age == 0, fmt.Sprintf("missing=%v age=%v", missing, age)
			})
			p.stop()
			checkOnce(t, committedEvents(t, s), acked)
			// Offline, on the stopped server's data dir: clean too.
			if out, errOut, code := cli(t, s.env, "audit", "--config", cfg, "--from", from); code != 0 {
				t.Fatalf("offline audit exit %d:\n%s\n%s", code, out, errOut)
			}
		})
	}
}

// TestIncidentLostObjects deletes committed data files in the destination
// (a lifecycle rule, a bad cleanup): the audit names the hours and counts,
// backfill repairs exactly those events, and a second backfill does nothing.
func TestIncidentLostObjects(t *testing.T) {
	dir := t.TempDir()
	for name, mk := range stores(t, dir) {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			port := testenv.FreePort(t)
			// A longer grace (events SLA 10.5s): events of the load that runs
			// during the backfill must stay pending, not missing, even on a
			// slow machine.
			cfg := incidentConfig(t, t.TempDir(), port, s.url, 10*time.Second, "")
			p := startProcEnv(t, cfg, port, s.env)
			start := time.Now()
			load := startLoad(t, p.addr, testKey, "objs-", 2, 20, 50*time.Millisecond)
			load.waitAcked(t, 2000)
			acked := load.Stop()
			stopped := time.Now()
			waitCommitted(t, s, acked, "delivery")

			// Past the SLA, an absent event is missing, not pending.
			p.waitAuditedAfter(t, stopped.Add(14*time.Second))

			lostFiles, lost, lostByHour := deleteEventsFiles(t, s)
			t.Logf("deleted %d files holding %d events", len(lostFiles), len(lost))

			env := append(s.env, "TIDEMARK_ADMIN_KEY="+incidentAdminKey)
			from := start.Add(-time.Minute).UTC().Format(time.RFC3339)
			rep, code := auditJSON(t, env, "--url", p.addr, "--from", from)
			if code != 1 {
				t.Fatalf("audit exit %d after deleting files, want 1", code)
			}
			res := rep.Results[0]
			if res.Total.Missing != int64(len(lost)) || res.Total.Duplicated != 0 {
				t.Fatalf("audit total %+v, %d events deleted", res.Total, len(lost))
			}
			for _, h := range res.Hours {
				if h.Missing != lostByHour[h.Hour] {
					t.Fatalf("hour %s: audit says %d missing, %d deleted", h.Hour, h.Missing, lostByHour[h.Hour])
				}
			}
			// The human table names the hours too.
			table, _, _ := cli(t, env, "audit", "--url", p.addr, "--from", from)
			if !strings.Contains(table, fmt.Sprintf("%d missing", len(lost))) {
				t.Fatalf("audit table:\n%s", table)
			}
			// Dry run: plans exactly the lost events, writes nothing.
			out, _, code := cli(t, env, "backfill", "--url", p.addr, "--from", from, "--dry-run")
			if code != 0 || !strings.Contains(out, "would write") || !strings.Contains(out, fmt.Sprintf("with %d missing events", len(lost))) {
				t.Fatalf("dry run:\n%s", out)
			}
			if _, code := auditJSON(t, env, "--url", p.addr, "--from", from); code != 1 {
				t.Fatal("the dry run changed the destination")
			}
			// Backfill while serve keeps accepting and delivering.
			more := startLoad(t, p.addr, testKey, "during-", 1, 10, 100*time.Millisecond)
			out, errOut, code := cli(t, env, "backfill", "--url", p.addr, "--from", from)
			if code != 0 || !strings.Contains(out, fmt.Sprintf("with %d missing events", len(lost))) {
				t.Fatalf("backfill exit %d:\n%s\n%s", code, out, errOut)
			}
			if !strings.Contains(errOut, "backfill: ") {
				t.Fatalf("no progress lines on stderr:\n%s", errOut)
			}
			out, _, _ = cli(t, env, "backfill", "--url", p.addr, "--from", from)
			if !strings.Contains(out, "wrote 0 backfill batches") {
				t.Fatalf("second backfill:\n%s", out)
			}
			for id := range more.Stop() {
				acked[id] = true
			}
			waitCommitted(t, s, acked, "delivery of the load sent during the backfill")
			p.stop()
			if rep, code := auditJSON(t, s.env, "--config", cfg, "--from", from); code != 0 {
				t.Fatalf("offline audit after backfill: exit %d, %+v", code, rep.Results[0].Total)
			}
			checkOnce(t, committedEvents(t, s), acked)
		})
	}
}

// TestIncidentFailureElsewhere: destinations next to a healthy one panic on
// every write or hang: the healthy destination keeps delivering every
// event exactly once, the panics are recovered and counted, and the status
// API reports both broken destinations.
func TestIncidentFailureElsewhere(t *testing.T) {
	dir := t.TempDir()
	for name, mk := range stores(t, dir) {
		t.Run(name, func(t *testing.T) {
			s := mk(t)
			port := testenv.FreePort(t)
			tmp := t.TempDir()
			cfg := incidentConfig(t, tmp, port, s.url, time.Second, fmt.Sprintf(`      - name: broken
        url: file://%s
        flush: {max_age: 500ms}
        freshness_grace: 1s
      - name: stuck
        url: file://%s
        flush: {max_age: 500ms}
        freshness_grace: 1s
`, filepath.Join(tmp, "broken"), filepath.Join(tmp, "stuck")))
			p := startProcEnv(t, cfg, port, append(s.env,
				fault.Env+"=panic-destination=acme/broken,hang-destination=acme/stuck"))
			load := startLoad(t, p.addr, testKey, "elsewhere-", 2, 20, 50*time.Millisecond)
			load.waitAcked(t, 2000)
			acked := load.Stop()
			stopped := time.Now()
			waitCommitted(t, s, acked, "delivery to the healthy destination")
			t.Logf("healthy destination complete %.1fs after the load stopped", time.Since(stopped).Seconds())
			probe.Until(t, 60*time.Second, "the broken destinations reported", func() (bool, string) {
				restarts, _ := p.metric(`tidemark_stage_restarts_total{stage="transport"}`)
				st := status(t, p.addr)
				var broken, stuck destinationState
				for _, d := range st.Destinations {
					switch d.Name {
					case "broken":
						broken = d
					case "stuck":
						stuck = d
					}
				}
				ok := restarts > 0 && broken.State == "failing" && strings.Contains(broken.LastError, "panic") &&
					stuck.OldestUndeliveredAgeSeconds > stuck.FreshnessSLASeconds
				return ok, fmt.Sprintf("restarts=%v broken=%+v stuck=%+v", restarts, broken, stuck)
			})
			p.stop()
			checkOnce(t, committedEvents(t, s), acked)
		})
	}
}

type destinationState struct {
	Name                        string  `json:"name"`
	State                       string  `json:"state"`
	LastError                   string  `json:"last_error"`
	OldestUndeliveredAgeSeconds float64 `json:"oldest_undelivered_age_seconds"`
	FreshnessSLASeconds         float64 `json:"freshness_sla_seconds"`
}

func status(t *testing.T, addr string) struct {
	Destinations []destinationState `json:"destinations"`
} {
	t.Helper()
	var st struct {
		Destinations []destinationState `json:"destinations"`
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	probe.JSON(ctx, addr+"/api/v1/status", incidentAdminKey, &st) // while polling: a failed read is an empty status
	return st
}

// TestAuditCLIErrors: mistakes get exit status 2 and a message that names
// the problem.
func TestAuditCLIErrors(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	cfg := incidentConfig(t, dir, port, "file://"+filepath.Join(dir, "lake"), time.Second, "")
	p := startProc(t, cfg, port)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit", "--config", cfg}, "in use, probably by a running tidemark: use --url"},
		{[]string{"backfill", "--config", cfg, "--from", "1h"}, "in use, probably by a running tidemark: use --url"},
		{[]string{"backfill", "--config", cfg}, "--from is required"},
		{[]string{"audit", "--url", p.addr}, "--url needs an admin key"},
		{[]string{"audit", "--url", p.addr, "--admin-key", "not-the-admin-key-0001"}, "401 Unauthorized: missing or unknown admin key"},
		{[]string{"audit", "--url", p.addr, "--admin-key", incidentAdminKey, "--org", "nope"}, `no destination matches org "nope"`},
		{[]string{"audit", "--config", cfg, "--from", "yesterday"}, `--from: "yesterday" is not a time`},
		{[]string{"audit", "--config", cfg, "--from", "1h", "--to", "2h"}, "must be before --to"},
	} {
		_, errOut, code := cli(t, nil, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, errOut, tc.want)
		}
	}
	p.stop()
}
