package destination

import (
	"context"
	"fmt"

	"github.com/tidemark/tidemark/internal/format"
)

// Batch is one deterministic unit of delivery: the output items of one log
// partition with sequence numbers FirstSeq..LastSeq that belong to one org.
// Replaying the log produces the same batches with the same IDs and rows.
type Batch struct {
	ID        string // BatchID(Partition, FirstSeq, LastSeq)
	Org       string
	Partition int
	FirstSeq  uint64
	LastSeq   uint64
	Events    []format.EventRow
	Pages     []format.PageRow
	Sessions  []format.SessionRow
	Backfill  bool // written by `tidemark backfill`, not by the pipeline
}

// BatchID names a batch: p03-000000000120-000000000187. Zero padding makes IDs
// of one partition sort by sequence.
func BatchID(partition int, first, last uint64) string {
	return fmt.Sprintf("p%02d-%012d-%012d", partition, first, last)
}

// Destination stores committed batches.
//
// Write stores the batch's data files and then its manifest, which is the commit
// point. It must be idempotent per b.ID: writing the same batch again after a
// timeout or crash leaves exactly one committed copy. An error means the batch
// may or may not be committed; the caller retries the identical batch.
//
// Committed returns the LastSeq of the newest committed batch of a partition,
// read from the destination itself (its manifests), and ok=false when the
// partition has none.
//
// Cleanup deletes data files of the partition whose batch has no manifest and
// whose FirstSeq is greater than after (uncommitted leftovers of a crash). It is
// called at start, before any Write of that partition.
type Destination interface {
	Write(ctx context.Context, b *Batch) error
	Committed(ctx context.Context, partition int) (lastSeq uint64, ok bool, err error)
	Cleanup(ctx context.Context, partition int, after uint64) error
	Close() error
}
