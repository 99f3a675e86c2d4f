package destination

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/format"
)

// Batch is one deterministic unit of delivery: the output items of one log
// partition with sequence numbers FirstSeq..LastSeq that belong to one org.
// Replaying the log produces the same batches with the same IDs and rows.
type Batch struct {
	ID        string // BatchID(Partition, FirstSeq, LastSeq); backfill: BackfillBatchID
	Org       string
	Partition int
	FirstSeq  uint64
	LastSeq   uint64
	Events    []format.EventRow
	Pages     []format.PageRow
	Sessions  []format.SessionRow
	Backfill  bool // written by `tidemark backfill`, not by the pipeline; FirstSeq = LastSeq = 0
}

// BatchID names a batch: p03-000000000120-000000000187. Zero padding makes IDs
// of one partition sort by sequence.
func BatchID(partition int, first, last uint64) string {
	return fmt.Sprintf("p%02d-%012d-%012d", partition, first, last)
}

// BackfillBatchID names a batch written by `tidemark backfill`:
// bf-p03-000000000120-000000000187-0123456789abcdef, from the partition, the
// smallest and largest log offset of its events and the first 16 hex digits
// of their EventIDsDigest. Backfill batches have no pipeline sequence numbers;
// the digest keeps two backfills of different events over the same offset
// range apart, and makes a rerun of the same backfill rewrite the same keys.
func BackfillBatchID(partition int, minOffset, maxOffset int64, idsDigest string) string {
	return fmt.Sprintf("bf-p%02d-%012d-%012d-%.16s", partition, minOffset, maxOffset, idsDigest)
}

// EventIDsDigest returns the hex SHA-256 of ids sorted bytewise and joined
// with "\n" (of the empty string when there are none). ids is not modified.
func EventIDsDigest(ids []string) string {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	h := sha256.New()
	// Through a buffer: writing each id to h would allocate per id.
	buf := make([]byte, 0, 8<<10)
	for i, id := range sorted {
		if i > 0 {
			buf = append(buf, '\n')
		}
		buf = append(buf, id...)
		if len(buf) >= 4<<10 {
			h.Write(buf)
			buf = buf[:0]
		}
	}
	h.Write(buf)
	return hex.EncodeToString(h.Sum(nil))
}

// Check returns an error when the batch is not well formed: a negative
// partition, an ID that does not match its partition and sequence numbers
// (for a backfill batch: its events, see BackfillBatchID), or no org.
// Destinations check it before writing anything.
func (b *Batch) Check() error {
	switch {
	case b.Partition < 0:
		return fmt.Errorf("write batch %s: negative partition %d", b.ID, b.Partition)
	case b.Backfill:
		return b.checkBackfill()
	case b.FirstSeq > b.LastSeq:
		return fmt.Errorf("write batch %s: first seq %d > last seq %d", b.ID, b.FirstSeq, b.LastSeq)
	case b.ID != BatchID(b.Partition, b.FirstSeq, b.LastSeq):
		return fmt.Errorf("write batch %s: id does not match partition %d, seqs %d-%d", b.ID, b.Partition, b.FirstSeq, b.LastSeq)
	case b.Org == "":
		return fmt.Errorf("write batch %s: no org", b.ID)
	}
	return nil
}

func (b *Batch) checkBackfill() error {
	if len(b.Events) == 0 || b.FirstSeq != 0 || b.LastSeq != 0 || b.Org == "" {
		return fmt.Errorf("write backfill batch %s: needs events and an org, and no sequence numbers", b.ID)
	}
	ids := make([]string, len(b.Events))
	lo, hi := b.Events[0].LogOffset, b.Events[0].LogOffset
	for i := range b.Events {
		ids[i] = b.Events[i].EventID
		lo, hi = min(lo, b.Events[i].LogOffset), max(hi, b.Events[i].LogOffset)
	}
	if want := BackfillBatchID(b.Partition, lo, hi, EventIDsDigest(ids)); b.ID != want {
		return fmt.Errorf("write backfill batch %s: id does not match its events (want %s)", b.ID, want)
	}
	return nil
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

// Options configure a destination opened by URL (see package registry).
type Options struct {
	// Codec is the file format and compression of the data files, for the
	// destinations that write files; the zero Codec is format.Default.
	Codec format.Codec
	// PasswordEnv names the environment variable that holds the password,
	// for the destinations that take one (postgres://); "" means their
	// own defaults (PGPASSWORD, a password file).
	PasswordEnv string
	// Registerer takes the metrics a destination keeps of its own (nil:
	// none registered).
	Registerer prometheus.Registerer
}

// Optional capabilities, found by type assertion on an opened Destination.

// Claimer is a destination that can claim its place for one Owner and
// refuse a place claimed by another (errors wrapping ErrClaimed). SetOwner
// is called once, before the destination is used.
type Claimer interface {
	SetOwner(o Owner)
	// Owned checks, without writing, that the place is not another
	// owner's; it returns an error wrapping ErrClaimed when it is.
	Owned(ctx context.Context) error
}

// Classifier is a destination that tells errors retrying soon will not
// fix (a missing bucket, denied credentials) from transient ones.
type Classifier interface {
	Permanent(err error) bool
}
