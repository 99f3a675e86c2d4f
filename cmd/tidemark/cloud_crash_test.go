package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestCloudCrashExactlyOnce is TestCrashExactlyOnce against each object
// store: the real process delivers to a bucket on the test server with small
// batches (uploads all the time) and is SIGKILLed again and again, each time
// after a random number of events has been delivered since its start, so
// kills land during uploads (between data files and manifest too). The
// client retries every batch until acknowledged. At the end the destination,
// read back through its manifests, holds every acknowledged event exactly
// once, and after a clean restart no data object under the prefix is
// outside a manifest.
func TestCloudCrashExactlyOnce(t *testing.T) {
	for _, c := range []struct {
		name  string
		kills int
		open  func(testing.TB) (string, string)
		env   func(testing.TB) []string
	}{
		{"s3", 15, testenv.S3, testenv.S3Env},
		{"gcs", 8, testenv.GCS, testenv.GCSEnv},
		{"azure", 8, testenv.Azure, testenv.AzureEnv},
	} {
		t.Run(c.name, func(t *testing.T) {
			url, _ := c.open(t)
			dir := t.TempDir()
			port := testenv.FreePort(t)
			cfg := orgsConfig(t, dir, port, fmt.Sprintf(`orgs:
  - id: acme
    write_keys: [%q]
    destinations:
      - name: cloud
        url: %q
        flush: {max_events: 50, max_age: 500ms}
`, testKey, url))
			p := startProcEnv(t, cfg, port, c.env(t))
			load := startLoad(t, p.addr, testKey, "crash-", 4, 20, 25*time.Millisecond)

			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
			for k := range c.kills {
				// Kill once this start has delivered a random number of
				// events (or after 20s regardless).
				threshold := float64(1 + rng.IntN(400))
				probe.Poll(20*time.Second, func() bool { return p.dest("acme", "cloud").Delivered >= threshold })
				p.kill()
				t.Logf("kill %d (after %v events delivered since start): %d events acknowledged so far", k+1, threshold, len(load.Acked()))
				p.start()
			}
			want := load.Stop()
			if len(want) < 1000 {
				t.Fatalf("only %d events acknowledged; the test did not exercise much", len(want))
			}
			if n := load.non200.Load(); n > 0 {
				t.Logf("%d non-200 answers (last: %s)", n, load.last)
			}

			l := waitDelivered(t, 2*time.Minute, "every acknowledged event in "+c.name, url, want, p.settled("acme", "cloud"))
			checkExactlyOnce(t, c.name, l, want)
			if l.EventOrgs["acme"] != len(l.Counts) || len(l.EventOrgs) != 1 {
				t.Errorf("event orgs %v, want only acme", l.EventOrgs)
			}

			// A clean restart cleans up what the kills left: no data object
			// is outside a manifest.
			p.stop()
			p.start()
			var left []string
			probe.Until(t, 60*time.Second, "no uncommitted data objects after a clean restart", func() (bool, string) {
				if ok, state := p.settled("acme", "cloud")(); !ok {
					return false, state
				}
				left = orphans(t, url)
				return len(left) == 0, fmt.Sprintf("%d uncommitted data objects: %v", len(left), left[:min(len(left), 5)])
			})
			l2, err := readCloud(t.Context(), url)
			if err != nil {
				t.Fatal(err)
			}
			checkExactlyOnce(t, c.name+" after restart", l2, want)
			t.Logf("%s: %d kills, %d events, %d batches", c.name, c.kills, len(want), l2.Manifests)
			p.stop()
			// Credentials never reach the logs, whatever happened above.
			out := p.out.String()
			for _, kv := range c.env(t) {
				k, v, _ := strings.Cut(kv, "=")
				if secretEnv[k] && len(v) >= 8 && strings.Contains(out, v) {
					t.Errorf("tidemark's output contains the value of %s", k)
				}
			}
		})
	}
}

// secretEnv names the cloud credentials that must never be printed.
var secretEnv = map[string]bool{"AWS_SECRET_ACCESS_KEY": true, "AWS_ACCESS_KEY_ID": true,
	"AZURE_STORAGE_KEY": true, "AZURE_STORAGE_CONNECTION_STRING": true, "AZURE_STORAGE_SAS_TOKEN": true}
