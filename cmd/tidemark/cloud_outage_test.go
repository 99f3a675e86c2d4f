package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
)

// TestCloudOutage stops the S3 server (a private versitygw) for about 10s
// while a client keeps sending: ingest keeps answering 200, the destination
// reports down and the age of its oldest undelivered event rises; after the
// server is back (same port and data) every acknowledged event is delivered
// exactly once, the age returns to 0 and the destination to up.
func TestCloudOutage(t *testing.T) {
	const outage = 10 * time.Second
	v := testenv.StartVersitygw(t)
	bucket := testenv.BucketName(t)
	v.CreateBucket(t, bucket)
	url := v.URL(bucket, testenv.DefaultPrefix)

	dir := t.TempDir()
	port := testenv.FreePort(t)
	cfg := orgsConfig(t, dir, port, fmt.Sprintf(`orgs:
  - id: acme
    write_keys: [%q]
    destinations:
      - name: s3
        url: %q
        flush: {max_events: 200, max_age: 500ms}
`, testKey, url))
	p := startProcEnv(t, cfg, port, testenv.S3Env(t))
	load := startLoad(t, p.addr, testKey, "outage-", 2, 20, 50*time.Millisecond)

	waitFor(t, 30*time.Second, "delivery before the outage", func() (bool, string) {
		d := p.dest("acme", "s3")
		return d.Up == 1 && d.Delivered > 0, d.String()
	})
	before := p.dest("acme", "s3")
	v.Stop()
	stopped := time.Now()
	ackedAtStop := len(load.Acked())
	t.Logf("S3 server stopped: %s, %d events acknowledged", before, ackedAtStop)

	var sawDown bool
	var maxAge float64
	waitFor(t, outage+20*time.Second, "the destination down, its age above 0, for the whole outage", func() (bool, string) {
		d := p.dest("acme", "s3")
		if d.Up == 0 {
			sawDown = true
		}
		maxAge = max(maxAge, d.Age)
		return sawDown && maxAge > 1 && time.Since(stopped) >= outage, fmt.Sprintf("%s; seen down=%v max age=%.1fs", d, sawDown, maxAge)
	})
	during := p.dest("acme", "s3")
	ackedDuring := len(load.Acked()) - ackedAtStop
	if ackedDuring == 0 {
		t.Errorf("no event acknowledged during the outage")
	}
	v.Start()
	restarted := time.Now()
	t.Logf("S3 server restarted after %v: %s, %d events acknowledged during the outage", restarted.Sub(stopped).Round(time.Millisecond), during, ackedDuring)

	waitFor(t, 90*time.Second, "the destination up and delivering again", func() (bool, string) {
		d := p.dest("acme", "s3")
		return d.Up == 1 && d.Delivered > during.Delivered, d.String()
	})
	t.Logf("delivery resumed %v after the server came back", time.Since(restarted).Round(time.Millisecond))
	want := load.Stop()
	if n := load.non200.Load(); n > 0 {
		t.Errorf("ingest answered non-200 %d times (last: %s); it must keep accepting during a destination outage", n, load.last)
	}
	l := waitDelivered(t, 90*time.Second, "every acknowledged event delivered after the outage", url, want, p.settled("acme", "s3"))
	checkExactlyOnce(t, "s3", l, want)
	waitFor(t, 30*time.Second, "age 0, up 1 and the delivered count equal to the events", func() (bool, string) {
		d := p.dest("acme", "s3")
		return d.Up == 1 && d.Age == 0 && d.Delivered == float64(len(want)), d.String()
	})
	t.Logf("%d events, %d batches; max age during the outage %.1fs; %v failed attempts", len(want), l.Manifests, maxAge, p.dest("acme", "s3").Failures)
	p.stop()
}
