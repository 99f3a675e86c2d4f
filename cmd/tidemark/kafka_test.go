package main

import (
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
func kafkaConfig(t *testing.T, dir, topic string, partitions int, extra string) string {
	t.Helper()
	cfg := filepath.Join(dir, "tidemark.yaml")
	data := fmt.Sprintf(`listen: 127.0.0.1:%d
data_dir: %s
log:
  partitions: %d
  kafka:
    brokers: [%s]
    topic: %s
%s`, testenv.FreePort(t), filepath.Join(dir, "data"), partitions, strings.Join(testenv.KafkaBrokers(t), ", "), topic, extra)
	if err := os.WriteFile(cfg, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// TestKafkaTopicAtStart: serve with log.kafka creates the log's topic with
// log.partitions partitions on the cluster, and a node whose topic has
// another partition count stops at start saying both counts (exit 1).
func TestKafkaTopicAtStart(t *testing.T) {
	topic, other := testenv.BucketName(t), testenv.BucketName(t)
	adm := kafkaAdmin(t, topic, other)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// The Kafka log itself is not built yet: serve prepares the topic and
	// stops, saying so.
	out, err := exec.CommandContext(ctx, binary(t), "serve", "--config", kafkaConfig(t, t.TempDir(), topic, 6, "")).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "kafka topic ready") ||
		!strings.Contains(string(out), "log.kafka: reading and writing the log in Kafka is not built yet") {
		t.Fatalf("serve with log.kafka: %v\n%s", err, out)
	}
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil || tds[topic].Err != nil || len(tds[topic].Partitions) != 6 {
		t.Fatalf("topic %s after serve: %+v, %v; want 6 partitions", topic, tds[topic], err)
	}

	if _, err := adm.CreateTopic(ctx, 3, 1, nil, other); err != nil {
		t.Fatal(err)
	}
	out, err = exec.CommandContext(ctx, binary(t), "serve", "--config", kafkaConfig(t, t.TempDir(), other, 6, "")).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v\n%s", err, out)
	}
	if want := "log.kafka.topic " + other + ": the topic has 3 partitions and log.partitions is 6"; !strings.Contains(string(out), want) {
		t.Errorf("output does not say %q:\n%s", want, out)
	}
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
