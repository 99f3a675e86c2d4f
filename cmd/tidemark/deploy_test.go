package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// metricName matches the metric names a query names: tidemark's own and
// the Go client's process and runtime collectors'.
var metricName = regexp.MustCompile(`\b(?:tidemark|process|go)_[a-zA-Z0-9_]+`)

// deployQuery is one PromQL query of deploy/: where it is, and its text.
type deployQuery struct {
	where, expr string
	dashboard   bool // a query of the dashboard (the alert rules' are checked by scripts/test.sh)
	labelValues bool // a Grafana label_values(SELECTOR, LABEL) variable query
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// grafanaPanel is what the test reads of a dashboard panel.
type grafanaPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	GridPos    struct{ X, Y, W, H int }
	Targets    []struct {
		Expr       string         `json:"expr"`
		Datasource map[string]any `json:"datasource"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // of a collapsed row
}

// dashboardQueries reads deploy/grafana/tidemark.json: its panels' queries
// and its variables' label_values queries. It fails t on what would make
// Grafana show a panel empty or refuse the file: a panel id twice, a
// panel outside the 24 columns, a query without the dashboard's
// datasource variable.
func dashboardQueries(t *testing.T, path string) []deployQuery {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string         `json:"uid"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if d.UID == "" {
		t.Errorf("%s: no uid", path)
	}
	var qs []deployQuery
	ids := map[int]bool{}
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("%s: panel id %d twice", path, p.ID)
			}
			ids[p.ID] = true
			if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
				t.Errorf("%s: panel %q at %+v: outside the 24 columns", path, p.Title, g)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 || p.Datasource["uid"] != "${datasource}" {
				t.Errorf("%s: panel %q: %d queries, datasource %v", path, p.Title, len(p.Targets), p.Datasource)
			}
			for i, tg := range p.Targets {
				if tg.Datasource["uid"] != "${datasource}" {
					t.Errorf("%s: panel %q query %d: datasource %v", path, p.Title, i, tg.Datasource)
				}
				qs = append(qs, deployQuery{where: fmt.Sprintf("%s: panel %q query %d", path, p.Title, i), expr: tg.Expr, dashboard: true})
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		qs = append(qs, deployQuery{where: fmt.Sprintf("%s: variable %s", path, v.Name), expr: s, dashboard: true, labelValues: true})
	}
	return qs
}

// alertQueries reads the rules' expressions of deploy/prometheus/alerts.yml.
func alertQueries(t *testing.T, path string) []deployQuery {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var qs []deployQuery
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			qs = append(qs, deployQuery{where: fmt.Sprintf("%s: alert %s", path, r.Alert), expr: r.Expr})
		}
	}
	return qs
}

// grafanaVars are the dashboard's variables and Grafana's range macros,
// with a value that makes a query plain PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__range", "1h", "$__interval", "1m",
	"$job", ".*", "$instance", ".*", "$org", ".*", "$destination", ".*")

// labelValuesQuery matches a Grafana label_values(SELECTOR, LABEL) query.
var labelValuesQuery = regexp.MustCompile(`^label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$`)

// TestDeployMetricsExist: every metric the Grafana dashboard
// (deploy/grafana/tidemark.json) and the alert rules
// (deploy/prometheus/alerts.yml) query is on the /metrics of a real server
// whose config makes every family appear (two orgs, a failing webhook,
// the auditor), so that a renamed metric cannot leave a panel empty or an
// alert silent; and promtool parses every dashboard query (the rules are
// checked by scripts/test.sh).
func TestDeployMetricsExist(t *testing.T) {
	root := filepath.Join("..", "..")
	queries := append(dashboardQueries(t, filepath.Join(root, "deploy", "grafana", "tidemark.json")),
		alertQueries(t, filepath.Join(root, "deploy", "prometheus", "alerts.yml"))...)
	if len(queries) < 20 {
		t.Fatalf("only %d queries read from deploy/", len(queries))
	}

	dir := t.TempDir()
	port := testenv.FreePort(t)
	p := startProc(t, chartsConfig(t, dir, port), port)
	sendTracks(t, p.addr, testKey, "acme", 100)
	sendTracks(t, p.addr, globexWriteKey, "globex", 100)
	// The auditor's gauges and the dead-letter counter get their values
	// once it has run and the receiver has failed long enough.
	probe.Until(t, 2*time.Minute, "an audit run and a dead letter", func() (bool, string) {
		run, _ := p.metric("tidemark_audit_last_run_timestamp_seconds")
		dead, _ := p.metric(`tidemark_webhook_dead_letter_events_total{org="acme",webhook="crm"}`)
		return run > 0 && dead > 0, fmt.Sprintf("last audit run %v, dead letters %v", run, dead)
	})
	resp, err := http.Get(p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	text, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	exported := map[string]bool{}
	for line := range strings.Lines(string(text)) {
		if name := metricName.FindString(line); name != "" && strings.HasPrefix(line, name) {
			exported[name] = true
		}
	}

	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, q := range queries {
		names := metricName.FindAllString(q.expr, -1)
		if len(names) == 0 {
			t.Errorf("%s: no metric in %q", q.where, q.expr)
		}
		for _, n := range names {
			if !exported[n] {
				t.Errorf("%s: %s is not on /metrics of a server with every family", q.where, n)
			}
		}
		if !q.dashboard {
			continue
		}
		expr := grafanaVars.Replace(q.expr)
		if q.labelValues {
			m := labelValuesQuery.FindStringSubmatch(expr)
			if m == nil {
				t.Errorf("%s: %q is not label_values(SELECTOR, LABEL)", q.where, q.expr)
				continue
			}
			expr = m[1]
		}
		fmt.Fprintf(&rules, "      - record: q%d\n        expr: %q\n", i, expr)
	}
	promtool := promtoolPath(t)
	rf := filepath.Join(dir, "dashboard-queries.yml")
	if err := os.WriteFile(rf, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rf).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules of the dashboard's queries: %v\n%s", err, out)
	}
	t.Logf("%d queries, %d metric names", len(queries), len(exported))
}

// promtoolPath finds promtool (scripts/test.sh installs it into Go's bin
// directory), failing t when it is not installed.
func promtoolPath(t *testing.T) string {
	var dirs []string
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if lines[0] != "" {
			dirs = append(dirs, lines[0])
		}
		if len(lines) > 1 {
			dirs = append(dirs, filepath.Join(lines[1], "bin"))
		}
	}
	for _, d := range dirs {
		if p := filepath.Join(d, "promtool"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	t.Fatalf("promtool is not installed (scripts/test.sh installs it into %v)", dirs)
	return ""
}
