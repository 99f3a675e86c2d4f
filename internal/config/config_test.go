package config

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite testdata/*.bad.yml.err from the current output")

// testEnv is the environment the testdata files are loaded with, fixed so that
// the golden files do not depend on the machine's environment.
var testEnv = map[string]string{
	"TIDEMARK_TEST_KEY":            "env-key-000000000001",
	"TIDEMARK_TEST_PARTITIONS":     "16",
	"TIDEMARK_TEST_NOT_A_NUMBER":   "abc",
	"TIDEMARK_TEST_EMPTY":          "",
	"TIDEMARK_ACME_WRITE_KEY":      "example-key-00000000001",
	"TIDEMARK_ADMIN_KEY":           "example-admin-key-000001",
	"TIDEMARK_ACME_READ_KEY":       "example-read-key-0000001",
	"TIDEMARK_ACME_WRITE_KEY_ALT":  "unused",
	"TIDEMARK_ACME_WRITE_KEY_NEXT": "example-key-00000000002",
	"TIDEMARK_METRICS_TOKEN":       "example-metrics-token-01",
	"TIDEMARK_ACME_WEBHOOK_SECRET": "example-webhook-secret-01",
	"TIDEMARK_ACME_PG_PASSWORD":    "example-pg-password-0001",
	// secrets.bad.yml and env_values.bad.yml: no error may show these.
	"TIDEMARK_TEST_WRITE_KEYS": "first-secret-key-0000001,second-secret-key-00002",
	"TIDEMARK_TEST_ADMIN_KEYS": "admin-secret-key-0000001 admin-secret-key-0000002",
	"TIDEMARK_TEST_SECRET":     "pa55w0rd-Secret-Value-01",
	// The example's and kafka.yml's SASL credentials.
	"TIDEMARK_KAFKA_USERNAME": "example-kafka-user",
	"TIDEMARK_KAFKA_PASSWORD": "example-kafka-password-01",
}

func lookupTestEnv(name string) (string, bool) {
	v, ok := testEnv[name]
	return v, ok
}

func parseFile(t testing.TB, path string) (*Config, error) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return parse(path, data, lookupTestEnv)
}

func TestBadConfigs(t *testing.T) {
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 12 {
		t.Fatalf("only %d bad configs", len(files))
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".bad.yml"), func(t *testing.T) {
			cfg, err := parseFile(t, file)
			if err == nil {
				t.Fatalf("no error; config %+v", cfg)
			}
			if cfg != nil {
				t.Errorf("config returned together with an error")
			}
			got := err.Error() + "\n"
			golden := file + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run go test -update to create it)", rerr)
			}
			if got != string(want) {
				t.Errorf("error text differs from %s (go test -update rewrites it):\n--- got\n%s--- want\n%s", golden, got, want)
			}
			// Every line is one problem naming the file and a line.
			for line := range strings.Lines(got) {
				if !strings.HasPrefix(line, file+":") {
					t.Errorf("error line does not name the file: %q", line)
				}
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %T does not wrap *FieldError", err)
			}
		})
	}
}

func TestBadConfigsDoNotRevealWriteKeys(t *testing.T) {
	_, err := parseFile(t, "testdata/write_keys.bad.yml")
	if err == nil {
		t.Fatal("no error")
	}
	for _, key := range []string{"shortkey", "shared-key-00000000001", "key with spaces", "password-0000000001"} {
		if strings.Contains(err.Error(), key) {
			t.Errorf("error reveals write key %q:\n%v", key, err)
		}
	}
	_, err = parseFile(t, "testdata/webhooks.bad.yml")
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "short") {
		t.Errorf("error reveals a webhook credential:\n%v", err)
	}
	_, err = parseFile(t, "testdata/destinations.bad.yml")
	if err == nil || strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "AKIAEXAMPLE") {
		t.Errorf("error reveals URL credentials:\n%v", err)
	}
	_, err = parseFile(t, "testdata/overlap_same.bad.yml")
	if err == nil || strings.Contains(err.Error(), "SuperSecretSig0123") {
		t.Errorf("error reveals URL credentials:\n%v", err)
	}
	_, err = parseFile(t, "testdata/postgres.bad.yml")
	if err == nil || strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), testEnv["TIDEMARK_TEST_SECRET"]) {
		t.Errorf("error reveals a PostgreSQL password:\n%v", err)
	}
}

func TestGood(t *testing.T) {
	cfg, err := parseFile(t, "testdata/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Listen:  ":9090",
		DataDir: "/var/lib/tidemark",
		Log: Log{
			Partitions:   16,
			Retention:    Duration(72 * time.Hour),
			TickInterval: Duration(250 * time.Millisecond),
			MinFreeBytes: 2 * GB,
			DedupeWindow: Duration(12 * time.Hour),
			CacheBytes:   128 * MiB,
			Kafka:        defaultKafka(),
		},
		Ingest: Ingest{MaxBodyBytes: 8 * MiB, MaxEventBytes: 64 * KiB, MaxPending: 5000, PriorityLag: Duration(30 * time.Second),
			MaxRequests: 64, MaxRequestsPerOrg: 256, MaxInflightBytes: 128 * MiB, MaxInflightBytesPerOrg: 16 * MiB,
			MaxKeylessBodyBytes: 16 * KiB, MaxKeylessInflightBytes: 8 * MiB},
		Sessions: Sessions{PageIdle: Duration(10 * time.Minute), SessionIdle: Duration(90 * time.Minute)},
		Audit:    Audit{Interval: Duration(2 * time.Minute), Lookback: Duration(3 * time.Hour)},
		Stream:   Stream{Enabled: false, Live: Default().Stream.Live},
		HTTP: HTTP{ReadHeaderTimeout: Duration(10 * time.Second), ReadTimeout: Duration(30 * time.Second),
			IdleTimeout: Duration(2 * time.Minute), MaxConnections: 100},
		Metrics: Metrics{Listen: "127.0.0.1:9091", Token: "env-key-000000000001"},
		Orgs: []Org{
			{
				ID:        "acme",
				WriteKeys: []Secret{"env-key-000000000001", "literal-${NOT_EXPANDED}-key", "$dollar-but-no-brace"},
				Destinations: []Destination{
					{Name: "lake", URL: "file:///var/lib/tidemark/lake/acme", Format: "parquet", Compression: "zstd",
						Flush: Flush{MaxEvents: 100, MaxBytes: MiB, MaxAge: Duration(10 * time.Second)}, FreshnessGrace: Duration(90 * time.Second)},
					{Name: "json", URL: "file://./export/acme", Format: "ndjson", Compression: "gzip",
						Flush: Flush{MaxEvents: 100, MaxBytes: MiB, MaxAge: Duration(1500 * time.Millisecond)}, FreshnessGrace: Duration(2 * time.Minute)}, // freshness_grace: the default
				},
			},
			{
				ID:        "globex_2",
				WriteKeys: []Secret{"globex-key-0000000001"},
				ReadKeys:  []Secret{"globex-read-key-000001"},
				Destinations: []Destination{
					withCompression(NewDestination("s3", "s3://bucket/prefix?region=eu-west-1"), "snappy"),
					withCompression(NewDestination("gs", "gs://bucket"), "none"),
					withCompression(NewDestination("az", "azblob://container/x"), "gzip"),
				},
				Webhooks: []Webhook{
					{Name: "crm", URL: "https://hooks.example.com/tidemark", Secret: "env-key-000000000001",
						Filter:    Filter{Types: []string{"track", "page"}, Events: []string{"Signed Up"}},
						BatchSize: 10, Timeout: Duration(2 * time.Second), RetryFor: Duration(time.Hour)},
					NewWebhook("all", "http://127.0.0.1:9999/hook", "all-events-secret-0001"),
				},
			},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got\n%#v\nwant\n%#v", revealed(cfg), revealed(want))
	}
}

func withCompression(d Destination, c string) Destination {
	d.Compression = c
	return d
}

// revealed renders c with its write keys, for failure messages of tests only.
func revealed(c *Config) string {
	var keys [][]string
	for _, o := range c.Orgs {
		var k []string
		for _, s := range o.WriteKeys {
			k = append(k, s.Reveal())
		}
		keys = append(keys, k)
	}
	return fmt.Sprintf("%+v keys=%q", c, keys)
}

func TestEmptyFileIsDefault(t *testing.T) {
	for _, data := range []string{"", "# comment only\n", "---\n", "{}\n", "~\n"} {
		cfg, err := parse("x.yml", []byte(data), lookupTestEnv)
		if err != nil {
			t.Fatalf("%q: %v", data, err)
		}
		if !reflect.DeepEqual(cfg, Default()) {
			t.Errorf("%q: got %+v, want the defaults", data, cfg)
		}
	}
	cfg, err := parseFile(t, "testdata/empty.yml")
	if err != nil || !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("empty.yml: %+v, %v", cfg, err)
	}
}

func TestDefaultIsValid(t *testing.T) {
	c := Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:8080" || c.DataDir != "./tidemark-data" || c.Log.Partitions != 8 ||
		c.Log.Retention.D() != 168*time.Hour || c.Log.TickInterval.D() != time.Second ||
		c.Log.MinFreeBytes != 512<<20 || c.Log.DedupeWindow.D() != 24*time.Hour || c.Log.CacheBytes != 64<<20 ||
		c.Ingest.MaxBodyBytes != 4<<20 || c.Ingest.MaxEventBytes != 32<<10 || c.Ingest.MaxPending != 100000 ||
		c.Sessions.PageIdle.D() != 30*time.Minute || c.Sessions.SessionIdle.D() != 30*time.Minute {
		t.Errorf("defaults changed: %+v", c)
	}
	d := NewDestination("x", "file:///x")
	if d.Format != "parquet" || d.Compression != "zstd" || d.Flush.MaxEvents != 10000 ||
		d.Flush.MaxBytes != 64<<20 || d.Flush.MaxAge.D() != time.Minute {
		t.Errorf("destination defaults changed: %+v", d)
	}
}

func TestDefaultsApplyPerDestination(t *testing.T) {
	cfg, err := parse("x.yml", []byte(`
orgs:
  - id: a
    write_keys: [aaaaaaaaaaaaaaaaaaaa]
    destinations:
      - {name: one, url: "file:///one", flush: {max_events: 5}}
      - {name: two, url: "file:///two", format: ndjson}
`), lookupTestEnv)
	if err != nil {
		t.Fatal(err)
	}
	one := NewDestination("one", "file:///one")
	one.Flush.MaxEvents = 5
	two := NewDestination("two", "file:///two")
	two.Format, two.Compression = "ndjson", "gzip"
	if got := cfg.Orgs[0].Destinations; !reflect.DeepEqual(got, []Destination{one, two}) {
		t.Errorf("got %+v", got)
	}
}

// exampleCommented matches a line of tidemark.example.yaml that is an
// optional setting commented out ("# key: value", "# - item", "# - ${VAR}"),
// not prose: the "# " goes and the rest stays at its indentation.
var exampleCommented = regexp.MustCompile(`(?m)^(\s*)# (\s*(?:- )?(?:[a-z_]+:(?: .*)?|\$\{[A-Z_]+\}))$`)

// TestExampleFile: tidemark.example.yaml loads as it is, without any
// environment variable (it starts as it is: TestExampleConfigStarts in
// cmd/tidemark), and documents the defaults; with its optional settings
// uncommented it still loads, taking its secrets from the environment.
func TestExampleFile(t *testing.T) {
	data, err := os.ReadFile("../../tidemark.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	noEnv := func(name string) (string, bool) { return "", false }
	cfg, err := parse("tidemark.example.yaml", data, noEnv)
	if err != nil {
		t.Fatalf("the example does not load as it is, without environment variables: %v", err)
	}
	// The example documents the defaults: apart from its orgs it is Default().
	orgs := cfg.Orgs
	cfg.Orgs = nil
	if !reflect.DeepEqual(cfg, Default()) {
		t.Errorf("example's values differ from Default():\n%+v\n%+v", cfg, Default())
	}
	checkExampleOrgs(t, orgs, 2)

	full := exampleCommented.ReplaceAll(data, []byte("$1$2"))
	cfg, err = parse("tidemark.example.yaml (optional settings uncommented)", full, lookupTestEnv)
	if err != nil {
		t.Fatalf("the example with its optional settings uncommented: %v (a prose comment line that starts with \"word:\" is taken for a setting: reflow it)\n%s", err, full)
	}
	if len(cfg.AdminKeys) != 1 || cfg.AdminKeys[0].Reveal() != testEnv["TIDEMARK_ADMIN_KEY"] {
		t.Errorf("admin key not expanded from the environment: %v", cfg.AdminKeys)
	}
	if cfg.Metrics.Listen == "" || cfg.Metrics.Token.Reveal() != testEnv["TIDEMARK_METRICS_TOKEN"] {
		t.Errorf("metrics listen and token not uncommented: %+v", cfg.Metrics)
	}
	orgs = cfg.Orgs
	checkExampleOrgs(t, orgs, 7) // and the four object-storage examples and the PostgreSQL one
	if got := orgs[0].WriteKeys[0].Reveal(); got != testEnv["TIDEMARK_ACME_WRITE_KEY"] {
		t.Errorf("write key not expanded from the environment: %q", got)
	}
	if got := orgs[0].ReadKeys; len(got) != 1 || got[0].Reveal() != testEnv["TIDEMARK_ACME_READ_KEY"] {
		t.Errorf("read key not expanded from the environment: %v", got)
	}
	if got := orgs[0].Webhooks; len(got) != 1 || got[0].Secret.Reveal() != testEnv["TIDEMARK_ACME_WEBHOOK_SECRET"] || len(got[0].Filter.Events) != 2 {
		t.Errorf("webhook not uncommented whole: %+v", got)
	}
}

// checkExampleOrgs checks the example's one org: n destinations, the first a
// default parquet file lake, the second ndjson.
func checkExampleOrgs(t *testing.T, orgs []Org, n int) {
	t.Helper()
	if len(orgs) != 1 || len(orgs[0].Destinations) != n {
		t.Fatalf("want one org with %d destinations, got %+v", n, orgs)
	}
	if d := orgs[0].Destinations[0]; d.Format != "parquet" || !strings.HasPrefix(d.URL, "file://") ||
		!reflect.DeepEqual(d.Flush, NewDestination("", "").Flush) {
		t.Errorf("first destination is not a default parquet file lake: %+v", d)
	}
	if d := orgs[0].Destinations[1]; d.Format != "ndjson" {
		t.Errorf("second destination is not ndjson: %+v", d)
	}
}

func TestExampleDocumentsEveryKey(t *testing.T) {
	data, err := os.ReadFile("../../tidemark.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var paths func(reflect.Type, string)
	paths = func(typ reflect.Type, prefix string) {
		names, fields := yamlFields(typ)
		for _, name := range names {
			f := typ.Field(fields[name])
			if !strings.Contains(string(data), name+":") {
				t.Errorf("tidemark.example.yaml does not mention %s%s", prefix, name)
			}
			ft := f.Type
			if ft.Kind() == reflect.Slice {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				paths(ft, prefix+name+".")
			}
		}
	}
	paths(reflect.TypeFor[Config](), "")
	for _, scheme := range []string{"s3://", "gs://", "azblob://"} {
		if !strings.Contains(string(data), scheme) {
			t.Errorf("tidemark.example.yaml has no %s example", scheme)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tidemark.yaml")
	if err := os.WriteFile(path, []byte("orgs:\n  - id: a\n    write_keys: [\"${TM_TEST_LOAD_KEY}\"]\n    destinations: [{name: l, url: \"file:///l\"}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TM_TEST_LOAD_KEY", "from-the-environment-1")
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Orgs[0].WriteKeys[0].Reveal(); got != "from-the-environment-1" {
		t.Errorf("key %q", got)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestWithDefaultOrg(t *testing.T) {
	for _, tc := range []struct{ dataDir, url string }{
		{"./tidemark-data", "file://./tidemark-data/lake"},
		{"tidemark-data", "file://./tidemark-data/lake"},
		{"/var/lib/tidemark", "file:///var/lib/tidemark/lake"},
		{".", "file://./lake"},
	} {
		c := Default()
		c.DataDir = tc.dataDir
		key := NewWriteKey()
		c.WithDefaultOrg(key)
		if err := c.Validate(); err != nil {
			t.Fatalf("%s: %v", tc.dataDir, err)
		}
		want := []Org{{ID: "default", WriteKeys: []Secret{Secret(key)},
			Destinations: []Destination{NewDestination("lake", tc.url)}}}
		if !reflect.DeepEqual(c.Orgs, want) {
			t.Errorf("%s: got %+v, want %+v", tc.dataDir, c.Orgs, want)
		}
		c.WithDefaultOrg("another-key-0000000000")
		if len(c.Orgs) != 1 || c.Orgs[0].WriteKeys[0].Reveal() != key {
			t.Errorf("WithDefaultOrg replaced configured orgs")
		}
	}
	if NewWriteKey() == NewWriteKey() || len(NewWriteKey()) < MinWriteKeyLen {
		t.Error("NewWriteKey is not a fresh key of the minimum length")
	}
}

func TestSecretNeverPrinted(t *testing.T) {
	const key = "very-secret-write-key-42"
	c := Default()
	c.WithDefaultOrg(key)
	s := c.Orgs[0].WriteKeys[0]

	var outs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10s", "%T"} {
		outs = append(outs, fmt.Sprintf(verb, c), fmt.Sprintf(verb, *c), fmt.Sprintf(verb, s), fmt.Sprintf(verb, c.Orgs))
	}
	outs = append(outs, fmt.Sprint(s), fmt.Sprintln(c.Orgs), s.String(), s.GoString())
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "cfg", c, "key", s)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "cfg", c, "key", s)
	outs = append(outs, string(j), string(y), logs.String())
	for _, out := range outs {
		if strings.Contains(out, key) || strings.Contains(out, fmt.Sprintf("%x", key)) || strings.Contains(out, fmt.Sprintf("%X", key)) {
			t.Errorf("write key printed: %s", out)
		}
	}
	if !strings.Contains(string(j), `"[redacted]"`) || !strings.Contains(string(y), "[redacted]") ||
		!strings.Contains(fmt.Sprintf("%+v", c), "[redacted]") || fmt.Sprintf("%#v", s) != `config.Secret("[redacted]")` {
		t.Errorf("secret not shown as [redacted]:\n%s\n%s", j, y)
	}
	if s.Reveal() != key {
		t.Errorf("Reveal = %q", s.Reveal())
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	c := Default()
	c.Log.TickInterval = Duration(1500 * time.Millisecond)
	c.Ingest.MaxBodyBytes = 4 * MB
	c.Ingest.MaxEventBytes = 1001
	c.Log.MinFreeBytes = 2 * TB

	// Without orgs (so without write keys), the YAML dump loads back strictly.
	y, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	back, err := parse("dump.yml", y, lookupTestEnv)
	if err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("YAML round trip:\n%s\n%+v", y, back)
	}

	// With orgs, everything but the write keys survives YAML and JSON.
	c.WithDefaultOrg("a-write-key-000000000")
	c.Orgs[0].Destinations[0].Flush.MaxAge = Duration(90 * time.Second)
	y, err = yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Orgs[0].WriteKeys = []Secret{redacted}
	var fromYAML, fromJSON Config
	if err := yaml.Unmarshal(y, &fromYAML); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&fromYAML, c) {
		t.Errorf("YAML round trip:\n%s\n%+v", y, fromYAML)
	}
	if err := json.Unmarshal(j, &fromJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&fromJSON, c) {
		t.Errorf("JSON round trip:\n%s\n%+v", j, fromJSON)
	}
}

func TestDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{in: "30m", want: 30 * time.Minute},
		{in: "1.5s", want: 1500 * time.Millisecond},
		{in: `"168h"`, want: 168 * time.Hour},
		{in: "1h30m", want: 90 * time.Minute},
		{in: "0s", want: 0},
		{in: "30", err: `a duration needs a unit, e.g. "30s" or "5m"; got bare number 30`},
		{in: "0", err: `a duration needs a unit, e.g. "30s" or "5m"; got bare number 0`},
		{in: "2.5", err: `got bare number 2.5`},
		{in: `"30"`, err: `got bare number 30`},
		{in: "7d", err: `invalid duration "7d": want a number and a unit (ns, us, ms, s, m, h)`},
		{in: "true", err: `expected a duration such as "30s", got boolean true`},
		{in: "[1s]", err: `expected a duration such as "30s", got a list`},
	} {
		var d Duration
		err := yaml.Unmarshal([]byte(tc.in), &d)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || d.D() != tc.want {
			t.Errorf("%s: got %v, %v; want %v", tc.in, d.D(), err, tc.want)
		}
	}
	for d, want := range map[time.Duration]string{
		168 * time.Hour: "168h", time.Minute: "1m", 90 * time.Minute: "1h30m",
		1500 * time.Millisecond: "1.5s", 10 * time.Millisecond: "10ms", 0: "0s",
		time.Hour + time.Second: "1h0m1s", -time.Minute: "-1m",
	} {
		if got := Duration(d).String(); got != want {
			t.Errorf("%v: String = %q, want %q", d, got, want)
		}
		back, err := parseDuration(Duration(d).String())
		if err != nil || back.D() != d {
			t.Errorf("%v: round trip %v, %v", d, back, err)
		}
	}
}

func TestByteSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ByteSize
		err  string
	}{
		{in: "4096", want: 4096},
		{in: `"4096"`, want: 4096},
		{in: "0", want: 0},
		{in: "4MiB", want: 4 << 20},
		{in: "4 MiB", want: 4 << 20},
		{in: "4mib", want: 4 << 20},
		{in: "32KiB", want: 32 << 10},
		{in: "2GiB", want: 2 << 30},
		{in: "1TiB", want: 1 << 40},
		{in: "5B", want: 5},
		{in: "1KB", want: 1000},
		{in: "1kB", want: 1000},
		{in: "3MB", want: 3_000_000},
		{in: "2GB", want: 2_000_000_000},
		{in: "1TB", want: 1_000_000_000_000},
		{in: "1.5GiB", err: `invalid size "1.5GiB": want a whole number`},
		{in: "1.5", err: `invalid size 1.5: want a whole number`},
		{in: "-1", err: `invalid size -1: must not be negative`},
		{in: `"-1KiB"`, err: `invalid size "-1KiB": must not be negative`},
		{in: "4 MiBs", err: `invalid size "4 MiBs": unknown unit "MiBs"; use B, KB, MB, GB, TB (powers of 1000) or KiB, MiB, GiB, TiB (powers of 1024)`},
		{in: "MiB", err: `invalid size "MiB": want a number of bytes or a number and a unit`},
		{in: "99999999999999999999", err: `too large`},
		{in: "9000000TiB", err: `invalid size "9000000TiB": too large`},
		{in: "{a: 1}", err: `expected a size such as 4096 or "64MiB", got a mapping`},
	} {
		var b ByteSize
		err := yaml.Unmarshal([]byte(tc.in), &b)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || b != tc.want {
			t.Errorf("%s: got %d, %v; want %d", tc.in, b, err, tc.want)
		}
	}
	for b, want := range map[ByteSize]string{
		0: "0B", 1: "1B", 1000: "1KB", 1024: "1KiB", 64 << 20: "64MiB", 4 * MB: "4MB",
		1001: "1001B", 3 * GiB: "3GiB", 1536 * MiB: "1536MiB", 2 * TB: "2TB",
	} {
		if got := b.String(); got != want {
			t.Errorf("%d: String = %q, want %q", b, got, want)
		}
		back, err := ParseByteSize(b.String())
		if err != nil || back != b {
			t.Errorf("%d: round trip %d, %v", b, back, err)
		}
	}
}

func TestExpandEnv(t *testing.T) {
	env := map[string]string{"A": "x", "EMPTY": "", "NESTED": "${A}"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for in, want := range map[string]string{
		"plain":         "plain",
		"${A}":          "x",
		"a${A}b${A}c":   "axbxc",
		"${EMPTY}":      "",
		"$${A}":         "${A}",
		"$A $ $$":       "$A $ $$",
		"${NESTED}":     "${A}", // expanded once, never again
		"cost: $5 ${A}": "cost: $5 x",
	} {
		got, err := expandEnv(in, lookup)
		if err != nil || got != want {
			t.Errorf("%q: got %q, %v; want %q", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"${UNSET}": "environment variable UNSET is not set",
		"${A":      `unterminated "${"`,
		"${}":      `invalid environment variable name ""`,
		"${A-B}":   `invalid environment variable name "A-B"`,
	} {
		if _, err := expandEnv(in, lookup); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want %q", in, err, want)
		}
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.Log.Partitions = 0
	c.Orgs = []Org{{ID: "a", WriteKeys: []Secret{"aaaaaaaaaaaaaaaaaaaa"},
		Destinations: []Destination{NewDestination("d", "file:///d")}}}
	c.Orgs[0].Destinations[0].Flush.MaxAge = 0
	err := c.Validate()
	want := "log.partitions: must be between 1 and 256, got 0\n" +
		"orgs[0].destinations[0].flush.max_age: must be greater than 0, got 0s"
	if err == nil || err.Error() != want {
		t.Errorf("got\n%v\nwant\n%s", err, want)
	}
}

func TestFieldError(t *testing.T) {
	for _, tc := range []struct {
		e    FieldError
		want string
	}{
		{FieldError{File: "f.yml", Line: 3, Path: "a.b", Msg: "bad"}, "f.yml:3: a.b: bad"},
		{FieldError{File: "f.yml", Path: "a.b", Msg: "bad"}, "f.yml: a.b: bad"},
		{FieldError{Line: 3, Path: "a", Msg: "bad"}, "line 3: a: bad"},
		{FieldError{Path: "a", Msg: "bad"}, "a: bad"},
		{FieldError{File: "f.yml", Line: 1, Msg: "bad"}, "f.yml:1: bad"},
	} {
		if got := tc.e.Error(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

// TestFreshnessSLAPerTable: events are due after flush.max_age + grace,
// pages and sessions after their idle timeout too. The defaults make the
// events SLA 3m (max_age 1m + grace 2m), which the stalled alert's promise
// (firing within 5m of the first overdue event) is built on.
func TestFreshnessSLAPerTable(t *testing.T) {
	c := Default()
	d := NewDestination("lake", "file:///lake")
	want := [3]time.Duration{3 * time.Minute, 33 * time.Minute, 33 * time.Minute}
	if got := c.FreshnessSLAs(&d); got != want {
		t.Errorf("defaults: %v, want %v", got, want)
	}
	c.Sessions.PageIdle = Duration(10 * time.Minute)
	d.Flush.MaxAge, d.FreshnessGrace = Duration(30*time.Second), Duration(2*time.Minute)
	want = [3]time.Duration{150 * time.Second, 750 * time.Second, 1950 * time.Second}
	if got := c.FreshnessSLAs(&d); got != want {
		t.Errorf("%v, want %v", got, want)
	}
}

func TestPriorityLagAtMostHalfTheShortestSLA(t *testing.T) {
	c := Default()
	if got := c.PriorityLag(); got != 30*time.Second { // half the default 3m events SLA is 90s: not capped
		t.Errorf("defaults: %v, want 30s", got)
	}
	c.Orgs = []Org{{ID: "a", Destinations: []Destination{
		{Name: "slow", Flush: Flush{MaxAge: Duration(time.Minute)}, FreshnessGrace: Duration(5 * time.Minute)},
	}}}
	c.Sessions.SessionIdle = Duration(2 * time.Second)
	c.Orgs[0].Destinations = append(c.Orgs[0].Destinations,
		Destination{Name: "fast", Flush: Flush{MaxAge: Duration(time.Second)}, FreshnessGrace: Duration(time.Second)})
	if got := c.PriorityLag(); got != time.Second { // events: (1s + 1s) / 2; idle timeouts do not count
		t.Errorf("short SLA: %v, want 1s", got)
	}
	c.Ingest.PriorityLag = 0
	if got := c.PriorityLag(); got != 0 {
		t.Errorf("off: %v, want 0", got)
	}
}

// TestGoodKafka: log.kafka decodes whole; what the file leaves out is the
// default (the embedded log's settings stay as they are).
func TestGoodKafka(t *testing.T) {
	cfg, err := parseFile(t, "testdata/kafka.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := Kafka{Brokers: []string{"kafka-1.internal:9092", "[::1]:9093"}, Topic: "acme.tidemark-events_v1",
		ClientID: "tidemark-eu-1", ReplicationFactor: 3, Roles: []string{RolePipeline},
		TLS:  KafkaTLS{Enabled: true},
		SASL: KafkaSASL{Mechanism: "SCRAM-SHA-512", UsernameEnv: "TIDEMARK_KAFKA_USERNAME", PasswordEnv: "TIDEMARK_KAFKA_PASSWORD"}}
	if !reflect.DeepEqual(cfg.Log.Kafka, want) {
		t.Errorf("got %+v\nwant %+v", cfg.Log.Kafka, want)
	}
	if !cfg.Log.Kafka.Enabled() || cfg.Log.Kafka.HasRole(RoleIngest) || !cfg.Log.Kafka.HasRole(RolePipeline) {
		t.Errorf("Enabled/HasRole wrong for %+v", cfg.Log.Kafka)
	}
	if cfg.Log.Partitions != 12 {
		t.Errorf("log.partitions = %d", cfg.Log.Partitions)
	}
	def := Default().Log.Kafka
	if def.Enabled() || !def.HasRole(RoleIngest) || !def.HasRole(RolePipeline) || def.Topic != "tidemark-events" || def.ClientID != "tidemark" {
		t.Errorf("default log.kafka: %+v", def)
	}
	// A node with the SASL variables unset does not start.
	_, err = parse("kafka.yml", []byte(`log: {kafka: {brokers: ["k:9092"], sasl: {mechanism: PLAIN, username_env: U_UNSET, password_env: P_UNSET}}}`),
		func(string) (string, bool) { return "", false })
	if err == nil || !strings.Contains(err.Error(), "log.kafka.sasl.username_env: environment variable U_UNSET is not set or empty") ||
		!strings.Contains(err.Error(), "log.kafka.sasl.password_env: environment variable P_UNSET is not set or empty") {
		t.Errorf("unset SASL variables: %v", err)
	}
}
