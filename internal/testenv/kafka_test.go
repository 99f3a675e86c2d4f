package testenv

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestKafkaCluster proves the Kafka-protocol cluster the script provides
// (kfakeserver, or a real cluster named by TIDEMARK_TEST_KAFKA_BROKERS) does
// what the Kafka log needs, with standard features only: a topic of 8
// partitions replicated 3 times, an idempotent producer with acks=all, and a
// consumer group that receives every record once, in offset order per
// partition, and commits its offsets.
func TestKafkaCluster(t *testing.T) {
	const (
		partitions = 8
		replicas   = 3
		keys       = 40
		perKey     = 25
	)
	brokers := KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	topic, group := BucketName(t), BucketName(t)

	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ClientID("tidemark-testenv"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(adm.Close) // after the deletes below (cleanups run last first)
	admin := kadm.NewClient(adm)
	if _, err := admin.CreateTopic(ctx, partitions, replicas, nil, topic); err != nil {
		t.Fatalf("create topic %s (%d partitions, replication %d): %v", topic, partitions, replicas, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := admin.DeleteTopic(ctx, topic); err != nil {
			t.Errorf("delete topic %s: %v", topic, err)
		}
		if _, err := admin.DeleteGroup(ctx, group); err != nil {
			t.Errorf("delete group %s: %v", group, err)
		}
	})
	md, err := admin.Metadata(ctx, topic)
	if err != nil {
		t.Fatalf("metadata: %v", err)
	}
	if len(md.Brokers) < replicas {
		t.Fatalf("cluster has %d brokers, want >= %d", len(md.Brokers), replicas)
	}
	td := md.Topics[topic]
	if td.Err != nil || len(td.Partitions) != partitions {
		t.Fatalf("topic %s: %d partitions (err %v), want %d", topic, len(td.Partitions), td.Err, partitions)
	}
	for _, p := range td.Partitions {
		if len(p.Replicas) != replicas || p.Err != nil {
			t.Fatalf("partition %d: replicas %v (err %v), want %d", p.Partition, p.Replicas, p.Err, replicas)
		}
	}

	// Produce: idempotent (franz-go's default, checked through the
	// producer id) with acks=all; records of one key go to one partition.
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	var recs []*kgo.Record
	for i := range perKey {
		for k := range keys {
			recs = append(recs, &kgo.Record{Key: []byte("k" + strconv.Itoa(k)), Value: fmt.Appendf(nil, "k%d/%d", k, i)})
		}
	}
	if err := prod.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
	if id, _, err := prod.ProducerID(ctx); err != nil || id < 0 {
		t.Fatalf("producer id %d (err %v): the producer is not idempotent", id, err)
	}
	// want[p] is partition p's values in offset order, as acknowledged.
	want := make(map[int32][]string)
	slices.SortFunc(recs, func(a, b *kgo.Record) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	keyPart := make(map[string]int32)
	for _, r := range recs {
		if p, ok := keyPart[string(r.Key)]; ok && p != r.Partition {
			t.Fatalf("key %s went to partitions %d and %d", r.Key, p, r.Partition)
		}
		keyPart[string(r.Key)] = r.Partition
		if n := int64(len(want[r.Partition])); r.Offset != n {
			t.Fatalf("partition %d: record %q acknowledged at offset %d, want %d", r.Partition, r.Value, r.Offset, n)
		}
		want[r.Partition] = append(want[r.Partition], string(r.Value))
	}
	if len(want) < 2 {
		t.Fatalf("records went to %d partitions, want them spread", len(want))
	}

	// Consume with a consumer group; commit, then read the commits back.
	cons, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(group), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(),
		kgo.Balancers(kgo.CooperativeStickyBalancer()), kgo.FetchMaxWait(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	got := make(map[int32][]string)
	for n := 0; n < len(recs); {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before %v", n, len(recs), ctx.Err())
		}
		for _, fe := range fs.Errors() {
			t.Fatalf("fetch %s/%d: %v", fe.Topic, fe.Partition, fe.Err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if i := int64(len(got[r.Partition])); r.Offset != i {
				t.Errorf("partition %d: got offset %d, want %d (a gap or a duplicate)", r.Partition, r.Offset, i)
			}
			got[r.Partition] = append(got[r.Partition], string(r.Value))
			n++
		})
	}
	for p := range int32(partitions) {
		if !slices.Equal(got[p], want[p]) {
			t.Errorf("partition %d: consumed %d records %q, want %d %q", p, len(got[p]), got[p], len(want[p]), want[p])
		}
	}
	if err := cons.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}
	offs, err := admin.FetchOffsets(ctx, group)
	if err != nil {
		t.Fatalf("fetch offsets of group %s: %v", group, err)
	}
	for p := range int32(partitions) {
		o, _ := offs.Lookup(topic, p)
		if n := int64(len(want[p])); n > 0 && o.At != n {
			t.Errorf("group %s partition %d: committed %d, want %d (err %v)", group, p, o.At, n, o.Err)
		}
	}
}
