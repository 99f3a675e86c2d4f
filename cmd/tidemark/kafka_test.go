package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// kafkaAdmin returns an admin client of the test cluster, closed when the
// test ends, and deletes topics (named by the test) at the end.
func kafkaAdmin(t *testing.T, topics ...string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(testenv.KafkaBrokers(t)...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		adm.DeleteTopics(ctx, topics...)
	})
	return adm
}

// kafkaConfig writes a serve config with log.kafka on the test cluster.
func kafkaConfig(t *testing.T, dir, topic string, partitions, port int, extra string) string {
	t.Helper()
	cfg := filepath.Join(dir, "tidemark.yaml")
	data := fmt.Sprintf(`listen: 127.0.0.1:%d
data_dir: %s
log:
  partitions: %d
  kafka:
    brokers: [%s]
    topic: %s
%s`, port, filepath.Join(dir, "data"), partitions, strings.Join(testenv.KafkaBrokers(t), ", "), topic, extra)
	if err := os.WriteFile(cfg, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestKafkaTopicAtStart: a node whose topic has another partition count
// than log.partitions stops at start saying both counts (exit 1), and leaves
// the topic as it is (TestKafkaServe shows the topic created); a node given
// one role only stops too, until roles apart are built.
func TestKafkaTopicAtStart(t *testing.T) {
	topic := testenv.BucketName(t)
	adm := kafkaAdmin(t, topic)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 3, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	out, err := exec.CommandContext(ctx, binary(t), "serve", "--config", kafkaConfig(t, t.TempDir(), topic, 6, testenv.FreePort(t), "")).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if want := "log.kafka.topic " + topic + ": the topic has 3 partitions and log.partitions is 6"; !strings.Contains(string(out), want) {
		t.Errorf("output does not say %q:\n%s", want, out)
	}
	if tds, _ := adm.ListTopics(ctx, topic); len(tds[topic].Partitions) != 3 {
		t.Errorf("serve changed the topic: %d partitions", len(tds[topic].Partitions))
	}

	// Roles apart need several nodes (not built): refused, not half-run.
	out, err = exec.CommandContext(ctx, binary(t), "serve", "--config",
		kafkaConfig(t, t.TempDir(), topic, 3, testenv.FreePort(t), "    roles: [ingest]\n")).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "log.kafka.roles: running ingest and pipeline apart") {
		t.Errorf("serve with roles [ingest]: %v\n%s", err, out)
	}
}

// kafkaServeConfig writes the config of one tidemark node on topic: org
// acme delivering to dir/lake, second-scale sessions and flushes.
func kafkaServeConfig(t *testing.T, dir, topic string, port int) string {
	t.Helper()
	return kafkaConfig(t, dir, topic, 4, port, fmt.Sprintf(`  tick_interval: 100ms
sessions:
  page_idle: 2s
  session_idle: 3s
orgs:
  - id: acme
    write_keys: [%q]
    destinations:
      - name: lake
        url: file://%s
        flush: {max_events: 300, max_age: 1s}
`, testKey, filepath.Join(dir, "lake")))
}

// TestKafkaServe: one node with log.kafka (issue 18 step 3). Events posted
// through the HTTP API are acknowledged by Kafka, copied back, sessionized
// and delivered: every acknowledged event is in the lake exactly once (a
// client's retry of a batch included), with its sessions. A second node
// with a fresh data directory and a fresh lake replays the same topic and
// writes the same committed files, byte for byte: what the pipeline derives
// is a function of the topic.
func TestKafkaServe(t *testing.T) {
	const devices, perDevice = 12, 40
	topic := testenv.BucketName(t)
	adm := kafkaAdmin(t, topic)
	dir1, dir2 := t.TempDir(), t.TempDir()
	port1 := testenv.FreePort(t)
	p1 := startProc(t, kafkaServeConfig(t, dir1, topic, port1), port1)
	tds, err := adm.ListTopics(t.Context(), topic)
	if err != nil || tds[topic].Err != nil || len(tds[topic].Partitions) != 4 {
		t.Fatalf("topic %s after start: %+v, %v; want 4 partitions", topic, tds[topic], err)
	}

	want := map[string]bool{}
	var batch []string
	postBatch := func() {
		t.Helper()
		body := []byte(`{"batch":[` + strings.Join(batch, ",") + `]}`)
		if code, resp := post(t, p1.addr+"/v1/batch", body, false); code != 200 {
			t.Fatalf("post: %d %s", code, resp)
		}
	}
	for i := range perDevice {
		batch = batch[:0]
		for d := range devices {
			id := fmt.Sprintf("kafka-%02d-%03d", d, i)
			typ := `"type":"track","event":"Clicked"`
			if i%10 == 0 {
				typ = `"type":"page","name":"Home"`
			}
			batch = append(batch, fmt.Sprintf(`{%s,"anonymousId":"device-%02d","messageId":%q}`, typ, d, id))
			want[id] = true
		}
		postBatch()
		if i == perDevice/2 {
			postBatch() // the client retries a batch: deduplicated by the partition's owner
		}
	}

	lake1 := filepath.Join(dir1, "lake")
	drained := func(root string) func() (bool, string) {
		return func() (bool, string) {
			l := readLake(t, root)
			return len(l.Events) == len(want) && len(l.Sessions) == devices,
				fmt.Sprintf("%d of %d events, %d of %d sessions", len(l.Events), len(want), len(l.Sessions), devices)
		}
	}
	probe.Until(t, 3*time.Minute, "every event and session in the first lake", drained(lake1))
	l1 := readLake(t, lake1)
	for id, n := range l1.eventCounts() {
		if !want[id] || n != 1 {
			t.Errorf("event %s is in the lake %d times (acknowledged: %v)", id, n, want[id])
		}
	}
	if lag, ok := p1.metric("tidemark_kafka_copy_lag_records"); !ok || lag > 1000 {
		t.Errorf("tidemark_kafka_copy_lag_records = %v (exported: %v) after the drain", lag, ok)
	}
	p1.stop()

	// A fresh node replays the topic (its ticks now follow the first node's).
	port2 := testenv.FreePort(t)
	p2 := startProc(t, kafkaServeConfig(t, dir2, topic, port2), port2)
	lake2 := filepath.Join(dir2, "lake")
	probe.Until(t, 3*time.Minute, "every event and session in the second lake", drained(lake2))
	p2.stop()
	l2 := readLake(t, lake2)
	if len(l2.Files) < len(l1.Files) || l1.Manifests == 0 {
		t.Fatalf("second lake: %d files, %d manifests; first: %d files, %d manifests", len(l2.Files), l2.Manifests, len(l1.Files), l1.Manifests)
	}
	ms, _ := filepath.Glob(filepath.Join(lake1, "_manifests", "*.json"))
	files := []string{}
	for _, m := range ms {
		rel, _ := filepath.Rel(lake1, m)
		files = append(files, rel)
	}
	for f := range l1.Files {
		files = append(files, f)
	}
	for _, f := range files {
		a, err := os.ReadFile(filepath.Join(lake1, f))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(lake2, f))
		if err != nil {
			t.Errorf("the replay did not write %s: %v", f, err)
			continue
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs between the first run and the replay", f)
		}
	}
	t.Logf("%d events, %d committed files and %d manifests byte-identical after the replay", len(want), len(l1.Files), l1.Manifests)
}

// TestKafkaDocConfig: the configuration shown in docs/kafka.md loads as it
// is (its credentials from the environment) and means what the page says.
func TestKafkaDocConfig(t *testing.T) {
	raw, err := os.ReadFile("../../docs/kafka.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```yaml\n(.*?)```").FindSubmatch(raw)
	if m == nil {
		t.Fatal("docs/kafka.md shows no yaml config")
	}
	cfg := filepath.Join(t.TempDir(), "tidemark.yaml")
	os.WriteFile(cfg, m[1], 0o600)
	t.Setenv("TIDEMARK_KAFKA_USERNAME", "doc-user")
	t.Setenv("TIDEMARK_KAFKA_PASSWORD", "doc-password-0000001")
	c, err := config.Load(cfg)
	if err != nil {
		t.Fatal(err)
	}
	k := c.Log.Kafka
	if !k.Enabled() || len(k.Brokers) != 3 || c.Log.Partitions != 8 || k.Topic != "tidemark-events" || k.ClientID != "tidemark" ||
		k.ReplicationFactor != 3 || !k.HasRole(config.RoleIngest) || !k.HasRole(config.RolePipeline) || !k.TLS.Enabled ||
		k.SASL.Mechanism != "SCRAM-SHA-512" || k.SASL.PasswordEnv != "TIDEMARK_KAFKA_PASSWORD" {
		t.Errorf("docs/kafka.md's config: %+v", k)
	}
	os.Unsetenv("TIDEMARK_KAFKA_PASSWORD")
	if _, err := config.Load(cfg); err == nil || !strings.Contains(err.Error(), "log.kafka.sasl.password_env: environment variable TIDEMARK_KAFKA_PASSWORD is not set or empty") {
		t.Errorf("without the password variable: %v", err)
	}
}
