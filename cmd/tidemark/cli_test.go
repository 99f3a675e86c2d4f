package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/fault"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestDevKeyWithoutOrgs: with no orgs configured, serve prints a dev write key
// for org "default", keeps it across restarts, and delivers to data_dir/lake.
func TestDevKeyWithoutOrgs(t *testing.T) {
	t.Parallel() // mostly waits a minute of log time for the default flush
	dir := t.TempDir()
	port := testenv.FreePort(t)
	cfg := filepath.Join(dir, "min.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: 127.0.0.1:%d\ndata_dir: %s\nlog: {tick_interval: 100ms}\n", port, filepath.Join(dir, "data"))), 0o600)
	p := startProc(t, cfg, port)
	re := regexp.MustCompile(`dev write key (\S+)`)
	m := re.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("no dev write key printed:\n%s", p.out.String())
	}
	key := m[1]
	p.stop()
	p.start()
	if all := re.FindAllStringSubmatch(p.out.String(), -1); len(all) != 2 || all[1][1] != key {
		t.Fatalf("dev key changed across restart: %v", all)
	}
	req, _ := http.NewRequest("POST", p.addr+"/v1/track", strings.NewReader(`{"anonymousId":"a","event":"Hi","messageId":"dev-1"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("track with the dev key: %v %v", err, resp)
	}
	resp.Body.Close()
	// Default flush max_age is a minute of log time: wait for the file.
	probe.Until(t, 3*time.Minute, "the event in data_dir/lake", func() (bool, string) {
		l := readLake(t, filepath.Join(dir, "data", "lake"))
		return len(l.Events) == 1 && l.Events[0].EventID == "dev-1" && l.Events[0].OrgID == "default", fmt.Sprintf("%d events", len(l.Events))
	})

	// The status API, with the admin key serve printed.
	am := regexp.MustCompile(`Authorization: Bearer (\S+)' http://\S+/api/v1/status`).FindStringSubmatch(p.out.String())
	if am == nil {
		t.Fatalf("no status API line printed:\n%s", p.out.String())
	}
	get := func(auth string) (int, string) { return getAuth(t, p.addr+"/api/v1/status", auth) }
	if code, _ := get("Bearer " + key); code != 401 {
		t.Errorf("status API with a write key: %d, want 401", code)
	}
	code, body := get("Bearer " + am[1])
	var st struct {
		Destinations []struct {
			Org, Name, State    string
			OldestAge           float64                `json:"oldest_undelivered_age_seconds"`
			LastCommitAt        *time.Time             `json:"last_commit_at"`
			DeliveredSinceStart struct{ Events int64 } `json:"delivered_since_start"`
		}
	}
	if err := json.Unmarshal([]byte(body), &st); code != 200 || err != nil {
		t.Fatalf("status API: %d %v\n%s", code, err, body)
	}
	if len(st.Destinations) != 1 || st.Destinations[0].State != "up" || st.Destinations[0].Name != "lake" ||
		st.Destinations[0].DeliveredSinceStart.Events != 1 || st.Destinations[0].LastCommitAt == nil {
		t.Errorf("status: %s", body)
	}
	if strings.Contains(body, key) || strings.Contains(body, am[1]) {
		t.Errorf("status API shows a key: %s", body)
	}
	// The status page, at the address serve printed (it reads the API above).
	pm := regexp.MustCompile(`status page: (http://\S+/) `).FindStringSubmatch(p.out.String())
	if pm == nil || pm[1] != p.addr+"/" {
		t.Fatalf("no status page line for %s/ printed:\n%s", p.addr, p.out.String())
	}
	if code, page := getAuth(t, pm[1], ""); code != 200 || !strings.Contains(page, "<title>tidemark status</title>") {
		t.Errorf("GET %s: %d %.200q", pm[1], code, page)
	}
	p.stop()
}

// TestBadInputEndToEnd: bad events are named, their valid neighbours are
// delivered, unknown keys get 401 and oversized bodies 413.
func TestBadInputEndToEnd(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	p := startProc(t, testConfig(t, dir, port, ""), port)
	body := `{"batch":[
		{"type":"track","event":"ok","anonymousId":"d1","messageId":"good-1"},
		{"type":"track","event":"no device","messageId":"bad-1"},
		{"type":"nonsense","anonymousId":"d1","messageId":"bad-2"},
		{"type":"page","anonymousId":"d1","messageId":"good-2","properties":{"url":"https://x.test/"}},
		{"type":"track","event":"ok","anonymousId":"d2","messageId":"bad-3","timestamp":"yesterday"}]}`
	code, resp := post(t, p.addr+"/v1/batch", []byte(body), false)
	if code != 400 {
		t.Fatalf("partial batch: %d %s", code, resp)
	}
	var r struct {
		Accepted int `json:"accepted"`
		Rejected []struct {
			Index int    `json:"index"`
			Error string `json:"error"`
		} `json:"rejected"`
	}
	if err := json.Unmarshal([]byte(resp), &r); err != nil {
		t.Fatal(err)
	}
	if r.Accepted != 2 || len(r.Rejected) != 3 || r.Rejected[0].Index != 1 || r.Rejected[1].Index != 2 || r.Rejected[2].Index != 4 {
		t.Fatalf("response %s", resp)
	}
	for _, want := range []string{"anonymousId", "type", "timestamp"} {
		if !strings.Contains(resp, want) {
			t.Errorf("response does not name %q: %s", want, resp)
		}
	}
	req, _ := http.NewRequest("POST", p.addr+"/v1/track", strings.NewReader(`{"anonymousId":"a","event":"x"}`))
	req.SetBasicAuth("not-a-key-of-anyone", "")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("unknown key: %v %v", err, resp)
	}
	big := `{"batch":[{"type":"track","event":"x","anonymousId":"a","properties":{"pad":"` + strings.Repeat("x", 5<<20) + `"}}]}`
	if code, resp := post(t, p.addr+"/v1/batch", []byte(big), false); code != 413 {
		t.Fatalf("5 MiB body: %d %s", code, resp)
	}
	probe.Until(t, 60*time.Second, "the two valid events in the lake", func() (bool, string) {
		c := readLake(t, filepath.Join(dir, "lake")).eventCounts()
		return len(c) == 2 && c["good-1"] == 1 && c["good-2"] == 1, fmt.Sprint(c)
	})
	p.stop()
}

// TestDiskLowBackpressure: below log.min_free_bytes ingest answers 503 with
// Retry-After and accepts nothing.
func TestDiskLowBackpressure(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	cfg := testConfig(t, dir, port, "")
	raw, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, bytes.Replace(raw, []byte("min_free_bytes: 1MiB"), []byte("min_free_bytes: 1000000TiB"), 1), 0o600)
	p := startProc(t, cfg, port)
	req, _ := http.NewRequest("POST", p.addr+"/v1/track", strings.NewReader(`{"anonymousId":"a","event":"x"}`))
	req.SetBasicAuth(testKey, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("disk low: status %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if v, _ := p.metric(`tidemark_log_appended_events_total`); v != 0 {
		t.Fatalf("%v events appended while the disk is low", v)
	}
	if v, _ := p.metric(`tidemark_log_disk_low`); v != 1 {
		t.Fatalf("tidemark_log_disk_low = %v", v)
	}
	p.stop()
}

// TestBadFaultStopsServe: the one fault variable is parsed strictly at
// start: an unknown fault or a bad value stops serve with exit status 1,
// naming the variable and the fault, before it listens.
func TestBadFaultStopsServe(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "ok.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: 127.0.0.1:%d\ndata_dir: %s\n", testenv.FreePort(t), filepath.Join(dir, "data"))), 0o600)
	for v, want := range map[string]string{
		"drop-pages=4,stream-panic-on-evnt=X": `unknown fault "stream-panic-on-evnt"`,
		"drop-pages=0":                        "fault drop-pages: want a number >= 1",
		"hang-destination=acme":               "fault hang-destination: want ORG/DESTINATION",
	} {
		out, errOut, code := cli(t, []string{fault.Env + "=" + v}, "serve", "--config", cfg)
		if code != 1 || !strings.Contains(errOut, fault.Env) || !strings.Contains(errOut, want) || strings.Contains(out, "listening") {
			t.Errorf("%s=%s: exit %d, stdout %q, stderr %q; want exit 1 naming %q", fault.Env, v, code, out, errOut, want)
		}
	}
}

// TestBadConfigNamesFileAndKey: a config error stops serve with exit status 1
// and names the file, line and key.
func TestBadConfigNamesFileAndKey(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte("listen: 127.0.0.1:1\nsessions:\n  session_idle: soon\n"), 0o600)
	out, err := exec.Command(binary(t), "serve", "--config", cfg).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	for _, want := range []string{"bad.yaml:3", "sessions.session_idle"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Errorf("error does not contain %q:\n%s", want, out)
		}
	}
}
