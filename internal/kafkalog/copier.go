package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tidemark/tidemark/internal/eventlog"
)

// Copier keeps the local copy of the partitions this node owns: it fetches
// each partition in offset order and appends its records, byte for byte, to
// the embedded log at offset = Kafka offset + 1, so that the pipeline, the
// transports, the audit and the live tail, unchanged, derive from the local
// log exactly what they would derive from the topic (docs/kafka.md). The
// copy's position is its last offset: no consumer group, no committed
// offsets.
type Copier struct {
	// Opts connect to the cluster (ClientOpts).
	Opts   []kgo.Opt
	Topic  string
	Parts  []int
	Log    *eventlog.Log
	Logger *slog.Logger

	hw sync.Map // partition -> int64: its high watermark at the last fetch
}

// Lag is how many records the topic held, at the last fetch of each
// partition, that the local copy does not hold yet (0 before any fetch).
func (c *Copier) Lag() int64 {
	var n int64
	c.hw.Range(func(k, v any) bool {
		n += max(v.(int64)-int64(c.Log.LastOffset(k.(int))), 0)
		return true
	})
	return n
}

// ErrHole is a record whose Kafka offset is not the next one of the local
// copy: the topic was recreated, compacted, written transactionally, or its
// retention removed records this node never copied. The partition stops
// rather than renumber what the pipeline derives from.
var ErrHole = errors.New("kafka offsets do not continue the local copy")

// Run copies until ctx ends (nil) or the copy cannot continue (an error; the
// caller may run it again, and it resumes at the local log's last offset).
func (c *Copier) Run(ctx context.Context) error {
	start := map[int32]kgo.Offset{}
	for _, p := range c.Parts {
		// The next record's Kafka offset is the local copy's last offset.
		start[int32(p)] = kgo.NewOffset().At(int64(c.Log.LastOffset(p)))
	}
	cl, err := kgo.NewClient(append(c.Opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{c.Topic: start}),
		// Without a group an out-of-range start would silently jump: jump
		// to the start, where the hole check refuses it loudly.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return fmt.Errorf("kafka copy: %w", err)
	}
	defer cl.Close()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ferr error
		fs.EachError(func(topic string, p int32, err error) {
			ferr = errors.Join(ferr, fmt.Errorf("fetch %s partition %d: %w", topic, p, err))
		})
		if ferr != nil {
			return fmt.Errorf("kafka copy: %w", ferr)
		}
		var aerr error
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			c.hw.Store(int(ftp.Partition), ftp.HighWatermark)
			if aerr != nil || len(ftp.Records) == 0 {
				return
			}
			aerr = c.append(ctx, int(ftp.Partition), ftp.Records)
		})
		if aerr != nil {
			return aerr
		}
	}
}

func (c *Copier) append(ctx context.Context, p int, recs []*kgo.Record) error {
	next := int64(c.Log.LastOffset(p))
	vals := make([][]byte, len(recs))
	for i, r := range recs {
		if r.Offset != next+int64(i) {
			return fmt.Errorf("kafka copy: partition %d: record at Kafka offset %d, want %d: %w", p, r.Offset, next+int64(i), ErrHole)
		}
		vals[i] = r.Value
	}
	if err := c.Log.AppendEncoded(ctx, p, vals); err != nil {
		return fmt.Errorf("kafka copy: partition %d at Kafka offset %d: %w", p, next, err)
	}
	return nil
}
