package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestCloudIsolation runs org a with a healthy GCS destination and an S3
// destination whose bucket does not exist (a permanent error), and org b
// with its own S3 destination. The healthy destinations get every event of
// their org within normal latency (measured and logged), the broken one
// reports down, and no org's events appear in the other's destination. Once
// the bucket is created, the broken destination catches up with every event
// of a exactly once, without a restart.
func TestCloudIsolation(t *testing.T) {
	const keyA, keyB = "org-a-test-write-key-0001", "org-b-test-write-key-0001"
	goodA, _ := testenv.GCS(t)
	lakeB, _ := testenv.S3(t)
	missing := testenv.BucketName(t)
	brokenA := testenv.S3URL(t, missing, testenv.DefaultPrefix)

	dir := t.TempDir()
	port := testenv.FreePort(t)
	cfg := orgsConfig(t, dir, port, fmt.Sprintf(`orgs:
  - id: a
    write_keys: [%q]
    destinations:
      - name: good
        url: %q
        flush: {max_events: 300, max_age: 1s}
      - name: broken
        url: %q
        flush: {max_events: 300, max_age: 1s}
  - id: b
    write_keys: [%q]
    destinations:
      - name: lake
        url: %q
        flush: {max_events: 300, max_age: 1s}
`, keyA, goodA, brokenA, keyB, lakeB))
	env := append(testenv.S3Env(t), testenv.GCSEnv(t)...)
	p := startProcEnv(t, cfg, port, env)

	loadA := startLoad(t, p.addr, keyA, "a-", 2, 20, 50*time.Millisecond)
	loadB := startLoad(t, p.addr, keyB, "b-", 2, 20, 50*time.Millisecond)
	probe.Until(t, 30*time.Second, "the broken destination down, the healthy ones delivering", func() (bool, string) {
		g, br, b := p.dest("a", "good"), p.dest("a", "broken"), p.dest("b", "lake")
		return br.ok && br.Up == 0 && br.Age > 0 && g.Up == 1 && g.Delivered > 0 && b.Up == 1 && b.Delivered > 0,
			fmt.Sprintf("a/good %s; a/broken %s; b/lake %s", g, br, b)
	})
	// Keep sending for a few seconds while the broken destination fails.
	probe.Until(t, 30*time.Second, "load for a few seconds", func() (bool, string) {
		n := len(loadA.Acked())
		return n >= 2000, fmt.Sprintf("%d events of a acknowledged", n)
	})
	wantA, wantB := loadA.Stop(), loadB.Stop()
	lastAck := time.Now()

	// Time to delivery on the healthy destinations, from the last
	// acknowledgement until the metric counts every event.
	latency := func(org, name string, n int) time.Duration {
		probe.Until(t, 60*time.Second, org+"/"+name+" delivering every event", func() (bool, string) {
			d := p.dest(org, name)
			return d.Delivered == float64(n) && d.Age == 0, d.String()
		})
		return time.Since(lastAck)
	}
	latA := latency("a", "good", len(wantA))
	latB := latency("b", "lake", len(wantB))
	t.Logf("time to delivery after the last acknowledgement, while a/broken fails: a/good (GCS) %v, b/lake (S3) %v",
		latA.Round(time.Millisecond), latB.Round(time.Millisecond))

	br := p.dest("a", "broken")
	if br.Up != 0 || br.Age <= 0 || br.Delivered != 0 {
		t.Errorf("a/broken: %s, want up=0, age>0, nothing delivered", br)
	}
	la := waitDelivered(t, 30*time.Second, "a/good read back", goodA, wantA, p.settled("a", "good"))
	checkExactlyOnce(t, "a/good", la, wantA)
	lb := waitDelivered(t, 30*time.Second, "b/lake read back", lakeB, wantB, p.settled("b", "lake"))
	checkExactlyOnce(t, "b/lake", lb, wantB)
	if len(la.EventOrgs) != 1 || la.EventOrgs["a"] != len(wantA) || len(la.ManifestOrgs) != 1 || la.ManifestOrgs["a"] == 0 {
		t.Errorf("a/good holds events of orgs %v, manifests of orgs %v; want only a", la.EventOrgs, la.ManifestOrgs)
	}
	if len(lb.EventOrgs) != 1 || lb.EventOrgs["b"] != len(wantB) || len(lb.ManifestOrgs) != 1 || lb.ManifestOrgs["b"] == 0 {
		t.Errorf("b/lake holds events of orgs %v, manifests of orgs %v; want only b", lb.EventOrgs, lb.ManifestOrgs)
	}

	// Fix the broken destination: it resumes, without a restart, and catches
	// up exactly once (a permanent error is retried at the slowest backoff,
	// up to a minute).
	testenv.CreateS3Bucket(t, missing)
	created := time.Now()
	lbr := waitDelivered(t, 3*time.Minute, "a/broken catching up after its bucket is created", brokenA, wantA, p.settled("a", "broken"))
	t.Logf("a/broken caught up %v after its bucket was created", time.Since(created).Round(time.Millisecond))
	checkExactlyOnce(t, "a/broken", lbr, wantA)
	if len(lbr.EventOrgs) != 1 || lbr.EventOrgs["a"] != len(wantA) {
		t.Errorf("a/broken holds events of orgs %v; want only a", lbr.EventOrgs)
	}
	if d := p.dest("a", "broken"); d.Delivered != float64(len(wantA)) || d.Up != 1 || d.Age != 0 {
		t.Errorf("a/broken after catching up: %s, want up=1 age=0 delivered=%d", d, len(wantA))
	}
	t.Logf("a: %d events, b: %d events; a/broken failed attempts: %v", len(wantA), len(wantB), p.dest("a", "broken").Failures)
	p.stop()
}
