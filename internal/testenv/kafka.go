package testenv

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// EnvKafkaBrokers names the seed brokers of a Kafka-protocol cluster,
// comma-separated host:port. ./scripts/test.sh starts kfakeserver (franz-go's
// in-memory kfake, three brokers on 127.0.0.1) and exports it; set it
// yourself to run the tests against a real cluster (Apache Kafka, Redpanda,
// MSK), and the script starts none. The cluster is shared by all tests of a
// run: use topic and group names of the test's own (BucketName).
const EnvKafkaBrokers = "TIDEMARK_TEST_KAFKA_BROKERS"

// KafkaBrokers returns the seed brokers of EnvKafkaBrokers, failing the test
// when it is unset or names no broker.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	v := os.Getenv(EnvKafkaBrokers)
	if strings.TrimSpace(v) == "" {
		missing(t, EnvKafkaBrokers+" is not set")
	}
	var brokers []string
	for b := range strings.SplitSeq(v, ",") {
		b = strings.TrimSpace(b)
		if b == "" {
			continue
		}
		if !strings.Contains(b, ":") {
			missing(t, fmt.Sprintf("%s=%q: %q is not host:port", EnvKafkaBrokers, v, b))
		}
		brokers = append(brokers, b)
	}
	if len(brokers) == 0 {
		missing(t, fmt.Sprintf("%s=%q names no broker", EnvKafkaBrokers, v))
	}
	return brokers
}
