package kafkalog

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/testenv"
)

func openLog(t *testing.T, dir string, parts int) *eventlog.Log {
	t.Helper()
	lg, err := eventlog.Open(filepath.Join(dir, "data"), eventlog.Options{Partitions: parts, Registerer: prometheus.NewRegistry(), Logger: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	return lg
}

// copyUntil runs c until lg's partitions hold want records each (or fails).
func copyUntil(t *testing.T, c *Copier, want []uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	for {
		ok := true
		for p, n := range want {
			ok = ok && c.Log.LastOffset(p) == n
		}
		if ok {
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("copier: %v", err)
			}
			return
		}
		select {
		case err := <-done:
			t.Fatalf("copier stopped before the copy was complete: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestProduceAndCopy: events and ticks produced to the topic land in the
// partition of their org and device (the embedded log's function); the copy
// holds every record byte for byte at Kafka offset + 1; a copier started
// again resumes where the copy ends; and a copy ahead of the topic (a topic
// recreated under it) stops with ErrHole instead of renumbering.
func TestProduceAndCopy(t *testing.T) {
	const parts = 3
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	k := testKafka(testenv.KafkaBrokers(t)...)
	cl, err := Dial(ctx, k, noEnv, ProducerOpts()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	adm := kadm.NewClient(cl)
	topic := testenv.BucketName(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		adm.DeleteTopics(ctx, topic)
	})
	if err := EnsureTopic(ctx, adm, topic, parts, 0); err != nil {
		t.Fatal(err)
	}
	pr := NewProducer(cl, topic, parts)
	var evs []event.Event
	for i := range 30 {
		evs = append(evs, event.Event{Org: "acme", Device: "device-" + string(rune('a'+i%7)), ID: "id-" + string(rune('A'+i)),
			Type: "track", Name: "Clicked", ReceivedAt: int64(1_700_000_000_000_000_000 + i)})
	}
	if err := pr.Append(ctx, evs); err != nil {
		t.Fatal(err)
	}
	if err := pr.AppendTicks(ctx, time.Unix(1_700_000_100, 0), Partitions(parts)); err != nil {
		t.Fatal(err)
	}
	want := make([]uint64, parts)
	for _, e := range evs {
		want[eventlog.PartitionOf(e.Org, e.Device, parts)]++
	}
	for p := range want {
		want[p]++ // the tick
	}

	opts, _ := ClientOpts(k, noEnv)
	dir := t.TempDir()
	lg := openLog(t, dir, parts)
	c := &Copier{Opts: opts, Topic: topic, Parts: Partitions(parts), Log: lg, Logger: slog.Default()}
	if c.Lag() != 0 {
		t.Errorf("lag before any fetch: %d", c.Lag())
	}
	copyUntil(t, c, want)
	if c.Lag() != 0 {
		t.Errorf("lag after the copy: %d", c.Lag())
	}

	// Byte for byte, at Kafka offset + 1, in the partition of the device.
	rd, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {
		0: kgo.NewOffset().AtStart(), 1: kgo.NewOffset().AtStart(), 2: kgo.NewOffset().AtStart()}}))...)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var n uint64
	for n < want[0]+want[1]+want[2] {
		fs := rd.PollFetches(ctx)
		if err := fs.Err0(); err != nil {
			t.Fatal(err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			n++
			p := int(r.Partition)
			err := lg.Scan(p, uint64(r.Offset)+1, uint64(r.Offset)+1, func(off uint64, val []byte) error {
				if !bytes.Equal(val, r.Value) {
					t.Errorf("partition %d offset %d: local copy differs from Kafka's record", p, off)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			rec, err := event.Decode(r.Value)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Kind == event.KindEvent && eventlog.PartitionOf(rec.Event.Org, rec.Event.Device, parts) != p {
				t.Errorf("event %s of %s in partition %d", rec.Event.ID, rec.Event.Device, p)
			}
		})
	}

	// Restarted, the copier resumes at the copy's end: one more tick each.
	if err := pr.AppendTicks(ctx, time.Unix(1_700_000_200, 0), Partitions(parts)); err != nil {
		t.Fatal(err)
	}
	for p := range want {
		want[p]++
	}
	copyUntil(t, &Copier{Opts: opts, Topic: topic, Parts: Partitions(parts), Log: lg, Logger: slog.Default()}, want)
	// Lag is what the last fetch saw beyond the copy.
	c.hw.Store(1, int64(lg.LastOffset(1))+5)
	if c.Lag() != 5 {
		t.Errorf("lag with a high watermark 5 past the copy: %d", c.Lag())
	}
	lg.Close()

	// A copy ahead of the topic: the topic holds fewer records than the
	// local log (as after the topic was recreated).
	lg2 := openLog(t, t.TempDir(), parts)
	defer lg2.Close()
	ticks := make([]event.Record, want[0]+5)
	for i := range ticks {
		ticks[i] = event.Record{Kind: event.KindTick, Time: int64(i + 1)}
	}
	if err := lg2.AppendRecords(ctx, 0, ticks); err != nil {
		t.Fatal(err)
	}
	err = (&Copier{Opts: opts, Topic: topic, Parts: []int{0}, Log: lg2, Logger: slog.Default()}).Run(ctx)
	if !errors.Is(err, ErrHole) {
		t.Errorf("copy ahead of the topic: %v, want ErrHole", err)
	}
}

// TestProduceFailureIsRetryable: when Kafka does not acknowledge, Append
// fails with an error the collector answers 503 + Retry-After with.
func TestProduceFailureIsRetryable(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "events"))
	if err != nil {
		t.Fatal(err)
	}
	cl, err := Dial(t.Context(), testKafka(c.ListenAddrs()...), noEnv, append(ProducerOpts(), kgo.RecordDeliveryTimeout(2*time.Second))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	c.Close() // the brokers are gone
	err = NewProducer(cl, "events", 2).Append(t.Context(), []event.Event{{Org: "acme", Device: "d", ID: "x", Type: "track", Name: "E", ReceivedAt: 1}})
	var ra interface{ RetryAfter() time.Duration }
	var pe *ProduceError
	if !errors.As(err, &pe) || !errors.As(err, &ra) || ra.RetryAfter() <= 0 {
		t.Errorf("append with the brokers gone: %v", err)
	}
}
