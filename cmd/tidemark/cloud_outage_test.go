package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// outageServer is a private object storage server that a test stops and
// restarts (same port and data).
type outageServer interface {
	Stop()
	Start()
}

// TestCloudOutage stops the object storage server of a destination (a
// private versitygw, fake-gcs-server or Azurite) for about 10s while a
// client keeps sending: ingest keeps answering 200, the destination reports
// down and the age of its oldest undelivered event rises; after the server
// is back (same port and data) every acknowledged event is delivered exactly
// once, the age returns to 0 and the destination to up.
func TestCloudOutage(t *testing.T) {
	for _, c := range []struct {
		name, what string
		// start starts the private server with a fresh bucket and returns
		// it, the destination's URL and the process's environment.
		start func(t *testing.T) (srv outageServer, url string, env []string)
	}{
		{"s3", "S3", func(t *testing.T) (outageServer, string, []string) {
			v := testenv.StartVersitygw(t)
			bucket := testenv.BucketName(t)
			v.CreateBucket(t, bucket)
			return v, v.URL(bucket, testenv.DefaultPrefix), testenv.S3Env(t)
		}},
		{"gcs", "GCS", func(t *testing.T) (outageServer, string, []string) {
			g := testenv.StartFakeGCS(t)
			bucket := testenv.BucketName(t)
			g.CreateBucket(t, bucket)
			return g, g.URL(bucket, testenv.DefaultPrefix), g.Env()
		}},
		{"azure", "Azure", func(t *testing.T) (outageServer, string, []string) {
			a := testenv.StartAzurite(t)
			container := testenv.BucketName(t)
			a.CreateContainer(t, container)
			return a, a.URL(container, testenv.DefaultPrefix), a.Env()
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv, url, env := c.start(t)
			testCloudOutage(t, c.name, c.what, srv, url, env)
		})
	}
}

// testCloudOutage is TestCloudOutage on one server: destination dest of
// org acme at url, srv stopped and restarted, env the process's
// environment; what names the server in the log.
func testCloudOutage(t *testing.T, dest, what string, v outageServer, url string, env []string) {
	const outage = 10 * time.Second

	dir := t.TempDir()
	port := testenv.FreePort(t)
	cfg := orgsConfig(t, dir, port, fmt.Sprintf(`orgs:
  - id: acme
    write_keys: [%q]
    destinations:
      - name: %s
        url: %q
        flush: {max_events: 200, max_age: 500ms}
`, testKey, dest, url))
	p := startProcEnv(t, cfg, port, env)
	load := startLoad(t, p.addr, testKey, "outage-", 2, 20, 50*time.Millisecond)

	probe.Until(t, 30*time.Second, "delivery before the outage", func() (bool, string) {
		d := p.dest("acme", dest)
		return d.Up == 1 && d.Delivered > 0, d.String()
	})
	before := p.dest("acme", dest)
	v.Stop()
	stopped := time.Now()
	ackedAtStop := len(load.Acked())
	t.Logf("%s server stopped: %s, %d events acknowledged", what, before, ackedAtStop)

	var sawDown bool
	var maxAge float64
	probe.Until(t, outage+20*time.Second, "the destination down, its age above 0, for the whole outage", func() (bool, string) {
		d := p.dest("acme", dest)
		if d.Up == 0 {
			sawDown = true
		}
		maxAge = max(maxAge, d.Age)
		return sawDown && maxAge > 1 && time.Since(stopped) >= outage, fmt.Sprintf("%s; seen down=%v max age=%.1fs", d, sawDown, maxAge)
	})
	during := p.dest("acme", dest)
	ackedDuring := len(load.Acked()) - ackedAtStop
	if ackedDuring == 0 {
		t.Errorf("no event acknowledged during the outage")
	}
	v.Start()
	restarted := time.Now()
	t.Logf("%s server restarted after %v: %s, %d events acknowledged during the outage", what, restarted.Sub(stopped).Round(time.Millisecond), during, ackedDuring)

	probe.Until(t, 90*time.Second, "the destination up and delivering again", func() (bool, string) {
		d := p.dest("acme", dest)
		return d.Up == 1 && d.Delivered > during.Delivered, d.String()
	})
	t.Logf("delivery resumed %v after the server came back", time.Since(restarted).Round(time.Millisecond))
	want := load.Stop()
	if n := load.non200.Load(); n > 0 {
		t.Errorf("ingest answered non-200 %d times (last: %s); it must keep accepting during a destination outage", n, load.last)
	}
	l := waitDelivered(t, 90*time.Second, "every acknowledged event delivered after the outage", url, want, p.settled("acme", dest))
	checkExactlyOnce(t, dest, l, want)
	probe.Until(t, 30*time.Second, "age 0, up 1 and the delivered count equal to the events", func() (bool, string) {
		d := p.dest("acme", dest)
		return d.Up == 1 && d.Age == 0 && d.Delivered == float64(len(want)), d.String()
	})
	t.Logf("%d events, %d batches; max age during the outage %.1fs; %v failed attempts", len(want), l.Manifests, maxAge, p.dest("acme", dest).Failures)
	p.stop()
}
