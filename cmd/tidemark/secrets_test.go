package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// showsSecret returns the first secret of which out holds an 8-character
// piece, or "".
func showsSecret(out string, secrets []string) string {
	for _, s := range secrets {
		for i := 0; i+8 <= len(s); i++ {
			if strings.Contains(out, s[i:i+8]) {
				return s
			}
		}
	}
	return ""
}

// TestConfigErrorsHideSecrets: keys and secrets given in the wrong shape
// (the issue's `write_keys: ${VAR}`, a string instead of a list) or
// expanded from the environment into any field never reach the output of
// the real binary's commands that load a config; the error still names the
// file, the key and the problem.
func TestConfigErrorsHideSecrets(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	err := os.WriteFile(cfg, []byte(`admin_keys: ${TM_ADMIN_KEYS}
log:
  partitions: ${TM_PASSWORD}
orgs:
  - id: acme
    write_keys: ${TM_WRITE_KEYS}
    destinations: [{name: lake, url: "file:///tmp/lake", format: "${TM_PASSWORD}"}]
    webhooks:
      - name: crm
        url: https://hooks.example.com/x
        secret: ["${TM_PASSWORD}"]
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	secrets := []string{"first-secret-write-key-01", "second-secret-write-key-02", "admin-secret-key-0000001", "hunter2-Secret-Passw0rd"}
	env := []string{"TM_WRITE_KEYS=" + secrets[0] + "," + secrets[1], "TM_ADMIN_KEYS=" + secrets[2], "TM_PASSWORD=" + secrets[3]}
	for _, args := range [][]string{
		{"serve", "--config", cfg},
		{"audit", "--config", cfg},
		{"backfill", "--config", cfg, "--from", "1h"},
		{"webhooks", "dead-letters", "--config", cfg},
	} {
		out, errOut, code := cli(t, env, args...)
		if code == 0 {
			t.Errorf("%v: exit 0 with a bad config", args)
		}
		if s := showsSecret(out+errOut, secrets); s != "" {
			t.Fatalf("%v shows secret %q:\n%s%s", args, s, out, errOut)
		}
		for _, want := range []string{"bad.yaml:1: admin_keys: expected a list", "bad.yaml:3: log.partitions", "bad.yaml:6: orgs[0].write_keys: expected a list",
			"orgs[0].destinations[0].format", "orgs[0].webhooks[0].secret"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: stderr does not name %q:\n%s", args, want, errOut)
			}
		}
	}
}

// TestRunningServerHidesSecrets: with write, admin and webhook keys from the
// environment, the real server's log (a failing webhook, unknown keys,
// shutdown), /metrics and the status API never show any of them.
func TestRunningServerHidesSecrets(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	secrets := []string{"running-secret-write-key-1", "running-secret-admin-key-1", "running-secret-hook-key-01"}
	cfg := orgsConfig(t, dir, port, fmt.Sprintf(`admin_keys: ["${TM_ADMIN_KEY}"]
orgs:
  - id: acme
    write_keys: ["${TM_WRITE_KEY}"]
    destinations:
      - name: lake
        url: file://%s
        flush: {max_age: 500ms}
    webhooks:
      - name: down
        url: http://127.0.0.1:1/hook
        secret: "${TM_HOOK_SECRET}"
        retry_for: 2s
`, filepath.Join(dir, "lake")))
	p := startProcEnv(t, cfg, port, []string{"TM_WRITE_KEY=" + secrets[0], "TM_ADMIN_KEY=" + secrets[1], "TM_HOOK_SECRET=" + secrets[2]})
	var seen bytes.Buffer
	do := func(method, path, user, bearer, body string) int {
		req, _ := http.NewRequest(method, p.addr+path, strings.NewReader(body))
		if user != "" {
			req.SetBasicAuth(user, "")
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Fprintf(&seen, "%s %s: %d %s %v\n", method, path, resp.StatusCode, b, resp.Header)
		return resp.StatusCode
	}
	if code := do("POST", "/v1/track", secrets[0], "", `{"anonymousId":"a","event":"x","messageId":"m1"}`); code != 200 {
		t.Fatalf("valid key: %d", code)
	}
	// Near misses: a key one character off, in the header and in the body.
	do("POST", "/v1/track", secrets[0]+"x", "", `{"anonymousId":"a","event":"x"}`)
	do("POST", "/v1/track", "", "", `{"anonymousId":"a","event":"x","writeKey":"`+secrets[1]+`"}`)
	do("GET", "/api/v1/status", "", secrets[0], "")
	probe.Until(t, 30*time.Second, "the webhook's dead letter", func() (bool, string) {
		v, _ := p.metric(`tidemark_webhook_dead_letter_events_total{org="acme",webhook="down"}`)
		return v > 0, fmt.Sprint(v)
	})
	if code := do("GET", "/api/v1/status", "", secrets[1], ""); code != 200 {
		t.Fatalf("status API with the admin key: %d", code)
	}
	do("GET", "/metrics", "", "", "")
	p.stop()
	if s := showsSecret(seen.String()+p.out.String(), secrets); s != "" {
		t.Fatalf("secret %q shown:\n%s\n%s", s, seen.String(), p.out.String())
	}
}
