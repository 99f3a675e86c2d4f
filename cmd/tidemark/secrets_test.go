package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
		for _, s := range secrets {
			// Any 8-character piece of a secret counts.
			for i := 0; i+8 <= len(s); i++ {
				if strings.Contains(out+errOut, s[i:i+8]) {
					t.Fatalf("%v shows secret %q:\n%s%s", args, s, out, errOut)
				}
			}
		}
		for _, want := range []string{"bad.yaml:1: admin_keys: expected a list", "bad.yaml:3: log.partitions", "bad.yaml:6: orgs[0].write_keys: expected a list",
			"orgs[0].destinations[0].format", "orgs[0].webhooks[0].secret"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("%v: stderr does not name %q:\n%s", args, want, errOut)
			}
		}
	}
}
