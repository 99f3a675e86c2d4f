package kafkalog

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/testenv"
)

// testKafka is log.kafka for brokers, as config.Load would give it.
func testKafka(brokers ...string) *config.Kafka {
	k := config.Default().Log.Kafka
	k.Brokers = brokers
	return &k
}

func noEnv(string) (string, bool) { return "", false }

// TestEnsureTopic, on the script's cluster (or a real one): an absent topic
// is created with the configured partitions and replication factor, a second
// call (another node starting) accepts it, and a topic with another
// partition count is refused with both counts named, never changed.
func TestEnsureTopic(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cl, err := Dial(ctx, testKafka(testenv.KafkaBrokers(t)...), noEnv)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close) // after the deletes below (cleanups run last first)
	adm := kadm.NewClient(cl)
	topic, other := testenv.BucketName(t), testenv.BucketName(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := adm.DeleteTopics(ctx, topic, other); err != nil {
			t.Errorf("delete topics: %v", err)
		}
	})

	for range 2 {
		if err := EnsureTopic(ctx, adm, topic, 8, 3); err != nil {
			t.Fatalf("EnsureTopic: %v", err)
		}
	}
	tds, err := adm.ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	td := tds[topic]
	if td.Err != nil || len(td.Partitions) != 8 {
		t.Fatalf("topic %s: %d partitions, err %v; want 8", topic, len(td.Partitions), td.Err)
	}
	for _, p := range td.Partitions {
		if len(p.Replicas) != 3 {
			t.Errorf("partition %d has %d replicas, want 3", p.Partition, len(p.Replicas))
		}
	}

	if _, err := adm.CreateTopic(ctx, 3, 1, nil, other); err != nil {
		t.Fatal(err)
	}
	err = EnsureTopic(ctx, adm, other, 8, 0)
	var te *TopicError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "the topic has 3 partitions and log.partitions is 8") {
		t.Fatalf("topic of 3 partitions for log.partitions 8: %v", err)
	}
	if tds, _ := adm.ListTopics(ctx, other); len(tds[other].Partitions) != 3 {
		t.Errorf("EnsureTopic changed the topic: %d partitions", len(tds[other].Partitions))
	}
}

// TestEnsureTopicACLs: on a cluster with SASL and ACLs (a kfake of this
// test's own: the script's cluster has neither), the principal is taken
// from the environment variables log.kafka.sasl names, and a principal that
// may not create or describe the topic is told which ACL it lacks.
func TestEnsureTopicACLs(t *testing.T) {
	allowTopics := func(ops ...kmsg.ACLOperation) []kfake.ACL {
		var acls []kfake.ACL
		for _, op := range ops {
			acls = append(acls, kfake.ACL{Resource: kmsg.ACLResourceTypeTopic, Name: "*",
				Pattern: kmsg.ACLResourcePatternTypeLiteral, Operation: op, Allow: true})
		}
		return acls
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-512", "admin", "admin-password-0001"),
		kfake.User("SCRAM-SHA-512", "creator", "creator-password-01", allowTopics(kmsg.ACLOperationDescribe, kmsg.ACLOperationCreate)...),
		kfake.User("SCRAM-SHA-512", "writer", "writer-password-001", allowTopics(kmsg.ACLOperationDescribe, kmsg.ACLOperationWrite)...),
		kfake.User("SCRAM-SHA-512", "stranger", "stranger-password-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	dial := func(user, pass string) (*kgo.Client, error) {
		k := testKafka(c.ListenAddrs()...)
		k.SASL = config.KafkaSASL{Mechanism: "SCRAM-SHA-512", UsernameEnv: "KAFKA_USER", PasswordEnv: "KAFKA_PASS"}
		env := map[string]string{"KAFKA_USER": user, "KAFKA_PASS": pass}
		return Dial(ctx, k, func(n string) (string, bool) { v, ok := env[n]; return v, ok })
	}
	ensure := func(user, pass, topic string) error {
		cl, err := dial(user, pass)
		if err != nil {
			t.Fatalf("dial as %s: %v", user, err)
		}
		defer cl.Close()
		return EnsureTopic(ctx, kadm.NewClient(cl), topic, 4, 0)
	}

	if err := ensure("writer", "writer-password-001", "events"); err == nil ||
		!strings.Contains(err.Error(), "log.kafka.topic events: the topic does not exist and this principal may not create it: it needs ACL CREATE on topic events (or on the cluster)") ||
		!strings.Contains(err.Error(), "creates the topic with 4 partitions") {
		t.Errorf("writer without CREATE: %v", err)
	}
	if err := ensure("stranger", "stranger-password-1", "events"); err == nil ||
		!strings.Contains(err.Error(), "this principal may not describe the topic: it needs ACL DESCRIBE on topic events") {
		t.Errorf("stranger without ACLs: %v", err)
	}
	if err := ensure("creator", "creator-password-01", "events"); err != nil {
		t.Errorf("creator: %v", err)
	}
	if err := ensure("writer", "writer-password-001", "events"); err != nil {
		t.Errorf("writer, once the topic exists: %v", err)
	}

	// A wrong password fails at start, and no error shows a credential.
	cl, err := dial("writer", "not-the-password-01")
	if err == nil {
		cl.Close()
		t.Fatal("dial with a wrong password succeeded")
	}
	for _, s := range []string{"not-the-password-01", "writer-password-001"} {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error shows a credential: %v", err)
		}
	}
	k := testKafka(c.ListenAddrs()...)
	k.SASL = config.KafkaSASL{Mechanism: "PLAIN", UsernameEnv: "KAFKA_USER", PasswordEnv: "KAFKA_PASS"}
	if _, err := ClientOpts(k, noEnv); err == nil || err.Error() != "log.kafka.sasl.username_env: environment variable KAFKA_USER is not set or empty" {
		t.Errorf("unset SASL variables: %v", err)
	}
}
