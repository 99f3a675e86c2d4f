package kafkalog

import (
	"context"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/eventlog"
)

// ProducerOpts are the client options of a producer of the log: tidemark
// chooses each record's partition (the embedded log's function, never the
// library's hash of the key), every record is acknowledged by all in-sync
// replicas, and the producer is idempotent (franz-go's default, kept), so
// its own retries never duplicate a record.
func ProducerOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordDeliveryTimeout(30 * time.Second),
	}
}

// Producer writes the log's records to the topic: it is the collector's log
// in Kafka mode (collector.Appender) and produces the partition owner's
// ticks. Its client must be built with ProducerOpts.
type Producer struct {
	cl    *kgo.Client
	topic string
	parts int
}

// NewProducer returns a producer of topic, which has parts partitions.
func NewProducer(cl *kgo.Client, topic string, parts int) *Producer {
	return &Producer{cl: cl, topic: topic, parts: parts}
}

// ProduceError is a failed produce: the events may or may not be in the
// topic, and the client is told to retry (503 with Retry-After); its retry
// is dropped downstream as a duplicate if the first try got through.
type ProduceError struct{ Err error }

func (e *ProduceError) Error() string             { return "produce to kafka: " + e.Err.Error() }
func (e *ProduceError) Unwrap() error             { return e.Err }
func (e *ProduceError) RetryAfter() time.Duration { return time.Second }

// Append produces evs, each as the log record the embedded log would store
// (event.Record, kind event) into the partition of its org and device, and
// returns once Kafka acknowledged every one of them (acks=all): only then may
// the client get its 2xx.
func (p *Producer) Append(ctx context.Context, evs []event.Event) error {
	recs := make([]*kgo.Record, len(evs))
	for i := range evs {
		e := &evs[i]
		rec := event.Record{Kind: event.KindEvent, Time: e.ReceivedAt, Event: *e}
		key := make([]byte, 0, len(e.Org)+1+len(e.Device))
		key = append(append(append(key, e.Org...), 0), e.Device...)
		recs[i] = &kgo.Record{Topic: p.topic, Partition: int32(eventlog.PartitionOf(e.Org, e.Device, p.parts)),
			Key: key, Value: event.Append(nil, &rec)}
	}
	return p.produce(ctx, recs)
}

// AppendTicks produces one tick record with time t into each of parts.
func (p *Producer) AppendTicks(ctx context.Context, t time.Time, parts []int) error {
	recs := make([]*kgo.Record, len(parts))
	for i, part := range parts {
		recs[i] = &kgo.Record{Topic: p.topic, Partition: int32(part),
			Value: event.Append(nil, &event.Record{Kind: event.KindTick, Time: t.UnixNano()})}
	}
	return p.produce(ctx, recs)
}

func (p *Producer) produce(ctx context.Context, recs []*kgo.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if err := p.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return &ProduceError{err}
	}
	return nil
}

// RunTicker produces a tick (wall time now()) into each of parts every
// interval until ctx ends: run by the node that owns the partitions, so
// that the ticks are part of what Kafka holds and every replay sees them.
func (p *Producer) RunTicker(ctx context.Context, parts []int, interval time.Duration, now func() time.Time, logger *slog.Logger) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := p.AppendTicks(ctx, now(), parts); err != nil && ctx.Err() == nil {
				logger.Error("produce ticks failed", "err", err)
			}
		}
	}
}

// Partitions returns 0 ... n-1.
func Partitions(n int) []int {
	ps := make([]int, n)
	for i := range ps {
		ps[i] = i
	}
	return ps
}
