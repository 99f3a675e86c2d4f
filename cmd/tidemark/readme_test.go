package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/stream"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// docBlock returns the first fenced code block in language lang that contains
// marker, of the documentation file doc (a path from the repository root:
// "README.md", "docs/streaming.md").
func docBlock(t *testing.T, doc, lang, marker string) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(doc)))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile("(?s)```"+lang+"\n(.*?)```").FindAllStringSubmatch(string(raw), -1) {
		if strings.Contains(m[1], marker) {
			return m[1]
		}
	}
	t.Fatalf("%s has no %s block containing %q", doc, lang, marker)
	return ""
}

// readmeBlock is docBlock of README.md.
func readmeBlock(t *testing.T, lang, marker string) string {
	t.Helper()
	return docBlock(t, "README.md", lang, marker)
}

// TestReadmeQuickstart runs the README's quickstart as a user would: serve
// starts with the README's second-scale config, unchanged (only the listen
// address added), in an empty working directory; the curl example's body is
// posted as written with the example's key; and the README's DuckDB queries
// run unchanged (DuckDB from npm) in that directory.
func TestReadmeQuickstart(t *testing.T) {
	dir := t.TempDir()
	port := testenv.FreePort(t)
	cfg := filepath.Join(dir, "tidemark.yaml")
	yml := readmeBlock(t, "yaml", "session_idle:")
	os.WriteFile(cfg, []byte(fmt.Sprintf("listen: 127.0.0.1:%d\n%s", port, yml)), 0o600)
	p := startProcIn(t, dir, cfg, port)

	curl := readmeBlock(t, "sh", "curl -u")
	body := regexp.MustCompile(`(?s)-d '(.*?)'`).FindStringSubmatch(curl)
	if body == nil {
		t.Fatalf("no -d '...' body in the README's curl example:\n%s", curl)
	}
	key := regexp.MustCompile(`(?m)^KEY=(\S+)`).FindStringSubmatch(curl)
	if key == nil {
		t.Fatalf("no KEY=... in the README's curl example:\n%s", curl)
	}
	if !strings.Contains(yml, `"`+key[1]+`"`) {
		t.Fatalf("the README's curl key %q is not a write key of its config:\n%s", key[1], yml)
	}
	if code, resp := postAs(t, p.addr+"/v1/batch", key[1], []byte(body[1]), false); code != 200 || !strings.Contains(resp, `"accepted":3`) {
		t.Fatalf("README curl body: %d %s", code, resp)
	}
	probe.Until(t, 60*time.Second, "the README's events, page and session in the lake", func() (bool, string) {
		l := readLake(t, filepath.Join(dir, "tidemark-data", "lake"))
		return len(l.Events) == 3 && len(l.Sessions) == 1 && len(l.Pages) == 1, fmt.Sprintf("events=%d pages=%d sessions=%d", len(l.Events), len(l.Pages), len(l.Sessions))
	})
	p.stop()

	out := testenv.RunNode(t, "duckdb.mjs", "--cwd", dir, "--sql="+readmeBlock(t, "sql", "read_parquet"))
	var results []struct {
		SQL  string           `json:"sql"`
		Rows []map[string]any `json:"rows"`
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r struct {
			SQL  string           `json:"sql"`
			Rows []map[string]any `json:"rows"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("duckdb output %q: %v", line, err)
		}
		results = append(results, r)
	}
	if len(results) != 2 {
		t.Fatalf("README has %d SQL statements, the test expects 2", len(results))
	}
	byType := map[string]string{}
	for _, r := range results[0].Rows {
		byType[fmt.Sprint(r["type"])] = fmt.Sprint(r["count_star()"])
	}
	if len(byType) != 3 || byType["page"] != "1" || byType["track"] != "1" || byType["identify"] != "1" {
		t.Errorf("README query 1 rows: %v", results[0].Rows)
	}
	if s := results[1].Rows; len(s) != 1 || s[0]["entry_url"] != "https://shop.test/" || fmt.Sprint(s[0]["event_count"]) != "3" || fmt.Sprint(s[0]["page_count"]) != "1" {
		t.Errorf("README query 2 rows: %v", results[1].Rows)
	}
}

// TestReadmeSignatureSnippets checks the webhook signature
// verification snippets of docs/streaming.md: the Go one is the function the webhook tests verify
// every request with, and the Node one, run by node, accepts a signature made
// by tidemark and rejects a tampered body, a wrong secret and a stale time.
func TestReadmeSignatureSnippets(t *testing.T) {
	goSnippet := docBlock(t, "docs/streaming.md", "go", "func verifySignature(")
	src, err := os.ReadFile("stream_e2e_test.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), goSnippet) {
		t.Errorf("docs/streaming.md's Go snippet differs from verifySignature in stream_e2e_test.go:\n%s", goSnippet)
	}
	now := time.Now()
	body := []byte(`{"org":"acme","webhook":"crm","events":[]}`)
	header := stream.Sign([]byte(hookSecret), now, body)
	if !verifySignature(hookSecret, header, body, now) {
		t.Error("Go snippet rejects a valid signature")
	}

	js := docBlock(t, "docs/streaming.md", "js", "createHmac")
	script := filepath.Join(t.TempDir(), "verify.mjs")
	os.WriteFile(script, []byte(js+`
const [secret, header, body, nowMs] = process.argv.slice(2)
console.log(JSON.stringify([
  verifySignature(secret, header, Buffer.from(body), Number(nowMs)),
  verifySignature(secret, header, Buffer.from(body + ' '), Number(nowMs)),
  verifySignature(secret + 'x', header, Buffer.from(body), Number(nowMs)),
  verifySignature(secret, header, Buffer.from(body), Number(nowMs) + 600000),
]))
`), 0o600)
	out := testenv.RunNode(t, script, hookSecret, header, string(body), fmt.Sprint(now.UnixMilli()))
	if got := strings.TrimSpace(string(out)); got != "[true,false,false,false]" {
		t.Errorf("Node snippet: valid, tampered, wrong secret, stale = %s, want [true,false,false,false]", got)
	}
}

// TestExampleConfigStarts: tidemark.example.yaml starts as it is (only its
// listen address changed, to a free port), in an empty working directory
// and without any environment variable of its own, and delivers an event
// sent with its write key to its first destination.
func TestExampleConfigStarts(t *testing.T) {
	t.Parallel() // mostly waits for the default flush.max_age, a minute of log time
	raw, err := os.ReadFile("../../tidemark.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	port := testenv.FreePort(t)
	listen := regexp.MustCompile(`(?m)^listen: .*$`)
	if len(listen.FindAll(raw, -1)) != 1 {
		t.Fatal("tidemark.example.yaml has no single top-level listen line")
	}
	cfg := filepath.Join(dir, "tidemark.yaml")
	os.WriteFile(cfg, listen.ReplaceAll(raw, []byte(fmt.Sprintf("listen: 127.0.0.1:%d", port))), 0o600)
	loaded, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	org := loaded.Orgs[0]
	lake := org.Destinations[0].URL
	if !strings.HasPrefix(lake, "file://./") {
		t.Fatalf("the example's first destination is not a relative file lake: %s", lake)
	}
	p := startProcIn(t, dir, cfg, port)
	body := []byte(`{"batch":[{"type":"track","anonymousId":"device-1","event":"Example","messageId":"example-1"}]}`)
	if code, resp := postAs(t, p.addr+"/v1/batch", org.WriteKeys[0].Reveal(), body, false); code != 200 {
		t.Fatalf("post with the example's write key: %d %s", code, resp)
	}
	root := filepath.Join(dir, strings.TrimPrefix(lake, "file://./"))
	probe.Until(t, 3*time.Minute, "the event in the example's lake", func() (bool, string) {
		l := readLake(t, root)
		return len(l.Events) == 1 && l.Events[0].EventID == "example-1" && l.Events[0].OrgID == org.ID, fmt.Sprintf("%d events", len(l.Events))
	})
	p.stop()
}

// TestDocLinks: every relative link of README.md, BENCHMARKS.md and docs/*.md
// names a file of the repository and, with a #fragment, one of its headings
// (GitHub's anchors), so that moving text between pages cannot leave a link
// behind.
func TestDocLinks(t *testing.T) {
	root := filepath.Join("..", "..")
	docs, _ := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	docs = append(docs, filepath.Join(root, "README.md"), filepath.Join(root, "BENCHMARKS.md"))
	fence := regexp.MustCompile("(?ms)^```.*?^```")
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	anchors := map[string]map[string]bool{}
	anchorsOf := func(file string) map[string]bool {
		if a, ok := anchors[file]; ok {
			return a
		}
		a := map[string]bool{}
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(fence.ReplaceAllString(string(raw), ""), "\n") {
			if h, ok := strings.CutPrefix(strings.TrimLeft(line, "#"), " "); ok && strings.HasPrefix(line, "#") {
				a[githubAnchor(h)] = true
			}
		}
		anchors[file] = a
		return a
	}
	for _, doc := range docs {
		raw, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, doc)
		for _, m := range link.FindAllStringSubmatch(fence.ReplaceAllString(string(raw), ""), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, frag, _ := strings.Cut(target, "#")
			file := doc
			if path != "" {
				file = filepath.Join(filepath.Dir(doc), filepath.FromSlash(path))
				if _, err := os.Stat(file); err != nil {
					t.Errorf("%s: link %s: no such file", rel, target)
					continue
				}
			}
			if frag != "" && !anchorsOf(file)[frag] {
				t.Errorf("%s: link %s: no heading with that anchor", rel, target)
			}
		}
	}
}

// githubAnchor is the anchor GitHub gives a Markdown heading: lower case,
// punctuation dropped, spaces turned into hyphens.
func githubAnchor(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(strings.TrimSpace(heading)) {
		switch {
		case r == ' ':
			b.WriteByte('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
