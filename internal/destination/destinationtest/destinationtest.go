// Package destinationtest is the conformance suite every Destination passes,
// against a local directory in unit tests and against real S3, GCS and Azure
// servers in integration tests. It uses only the destination.Destination
// interface, plus optional capabilities found by type assertion:
// EventIDReader to check exactly-once by reading events back, and
// UncommittedWriter to simulate a crash between data files and commit (test
// code of the backend provides it: no destination exports it).
//
// Subtests: EmptyPartition, WriteCommits, Idempotent, CommittedPerPartition,
// CommittedOutOfOrder, CleanupKeepsCommitted, BadBatch, CrashBeforeCommit,
// CanceledContext, ConcurrentPartitions (Write, Committed and Cleanup of
// different partitions at once), ManyBatches (more manifests in one
// partition than one listing page holds: 1000 on S3, GCS and Azure) and
// LargeBatch (an events file over LargeBatchBytes, beyond the multipart or
// resumable upload thresholds of every cloud SDK).
package destinationtest

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/format"
)

// EventIDReader reads back the ids of every committed event of a partition
// from the destination itself, one entry per stored copy.
type EventIDReader interface {
	EventIDs(ctx context.Context, partition int) ([]string, error)
}

// UncommittedWriter writes a batch's data files without committing it, as a
// crash just before the commit point would leave them.
type UncommittedWriter interface {
	WriteUncommitted(ctx context.Context, b *destination.Batch) error
}

// Run runs the suite. open returns a new, empty destination each call; the
// suite closes it.
func Run(t *testing.T, open func(t *testing.T) destination.Destination) {
	newDest := func(t *testing.T) destination.Destination {
		t.Helper()
		d := open(t)
		t.Cleanup(func() {
			if err := d.Close(); err != nil {
				t.Errorf("Close: %v", err)
			}
		})
		return d
	}

	t.Run("EmptyPartition", func(t *testing.T) {
		d := newDest(t)
		wantCommitted(t, d, 0, 0, false)
		if err := d.Cleanup(t.Context(), 0, 0); err != nil {
			t.Fatalf("Cleanup of an empty partition: %v", err)
		}
		wantIDs(t, d, 0, nil)
	})

	t.Run("WriteCommits", func(t *testing.T) {
		d := newDest(t)
		b := Batch(3, 1, 10, 25)
		write(t, d, b)
		wantCommitted(t, d, 3, 10, true)
		wantIDs(t, d, 3, ids(b))
	})

	t.Run("Idempotent", func(t *testing.T) {
		d := newDest(t)
		b := Batch(1, 5, 9, 40)
		for range 3 {
			write(t, d, Batch(1, 5, 9, 40)) // a replay builds an equal batch
		}
		write(t, d, b)
		wantCommitted(t, d, 1, 9, true)
		wantIDs(t, d, 1, ids(b))
	})

	t.Run("CommittedPerPartition", func(t *testing.T) {
		d := newDest(t)
		// Partitions whose ids share prefixes: p01-, p10-, p11-, p100-.
		seqs := map[int][][2]uint64{1: {{1, 4}, {5, 6}}, 10: {{1, 2}}, 11: {{1, 1}, {2, 900}, {901, 1000}}, 100: {{7, 7}}}
		var want []string
		for _, p := range []int{1, 10, 11, 100} {
			for _, s := range seqs[p] {
				b := Batch(p, s[0], s[1], 3)
				write(t, d, b)
				if p == 11 {
					want = append(want, ids(b)...)
				}
			}
		}
		wantCommitted(t, d, 1, 6, true)
		wantCommitted(t, d, 10, 2, true)
		wantCommitted(t, d, 11, 1000, true)
		wantCommitted(t, d, 100, 7, true)
		wantCommitted(t, d, 0, 0, false)
		wantCommitted(t, d, 2, 0, false)
		wantIDs(t, d, 11, want)
	})

	t.Run("CommittedOutOfOrder", func(t *testing.T) {
		// A backfill may commit an older batch after a newer one.
		d := newDest(t)
		write(t, d, Batch(2, 50, 60, 2))
		write(t, d, Batch(2, 10, 20, 2))
		wantCommitted(t, d, 2, 60, true)
	})

	t.Run("CleanupKeepsCommitted", func(t *testing.T) {
		d := newDest(t)
		b1, b2 := Batch(4, 1, 10, 5), Batch(4, 11, 20, 5)
		write(t, d, b1)
		write(t, d, b2)
		for _, after := range []uint64{0, 10, 20, 1 << 40} {
			if err := d.Cleanup(t.Context(), 4, after); err != nil {
				t.Fatalf("Cleanup(after=%d): %v", after, err)
			}
		}
		wantCommitted(t, d, 4, 20, true)
		wantIDs(t, d, 4, append(ids(b1), ids(b2)...))
	})

	t.Run("BadBatch", func(t *testing.T) {
		d := newDest(t)
		b := Batch(5, 1, 2, 1)
		b.ID = destination.BatchID(5, 1, 3)
		if err := d.Write(t.Context(), b); err == nil {
			t.Error("Write of a batch whose ID does not match its seqs: no error")
		}
		wantCommitted(t, d, 5, 0, false)
	})

	t.Run("CrashBeforeCommit", func(t *testing.T) {
		d := newDest(t)
		uw, ok := d.(UncommittedWriter)
		if !ok {
			t.Log("destination has no UncommittedWriter; crash cases not covered")
			return
		}
		b1, b2 := Batch(6, 1, 10, 5), Batch(6, 11, 20, 5)
		write(t, d, b1)
		if err := uw.WriteUncommitted(t.Context(), b2); err != nil {
			t.Fatal(err)
		}
		// Uncommitted files are invisible.
		wantCommitted(t, d, 6, 10, true)
		wantIDs(t, d, 6, ids(b1))
		// Start: clean up after progress, replay the batch.
		if err := d.Cleanup(t.Context(), 6, 10); err != nil {
			t.Fatal(err)
		}
		wantIDs(t, d, 6, ids(b1))
		write(t, d, b2)
		wantCommitted(t, d, 6, 20, true)
		wantIDs(t, d, 6, append(ids(b1), ids(b2)...))

		// A crash while rewriting a committed batch leaves it committed.
		if err := uw.WriteUncommitted(t.Context(), b2); err != nil {
			t.Fatal(err)
		}
		if err := d.Cleanup(t.Context(), 6, 10); err != nil {
			t.Fatal(err)
		}
		wantIDs(t, d, 6, append(ids(b1), ids(b2)...))
	})

	t.Run("ConcurrentPartitions", func(t *testing.T) {
		// The transport writes partitions in parallel: their batches, progress
		// and cleanup must not interfere.
		d := newDest(t)
		const partitions, batches = 6, 3
		var wg sync.WaitGroup
		errs := make(chan error, partitions*(batches+1))
		for p := range partitions {
			wg.Go(func() {
				if err := d.Cleanup(t.Context(), 20+p, 0); err != nil {
					errs <- fmt.Errorf("Cleanup(%d): %w", 20+p, err)
				}
				for i := range batches {
					b := Batch(20+p, uint64(10*i+1), uint64(10*i+10), 4)
					if err := d.Write(t.Context(), b); err != nil {
						errs <- fmt.Errorf("Write %s: %w", b.ID, err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if t.Failed() {
			return
		}
		for p := range partitions {
			var want []string
			for i := range batches {
				want = append(want, ids(Batch(20+p, uint64(10*i+1), uint64(10*i+10), 4))...)
			}
			wantCommitted(t, d, 20+p, 10*batches, true)
			wantIDs(t, d, 20+p, want)
		}
	})

	t.Run("ManyBatches", func(t *testing.T) {
		// Listings come in pages (1000 keys on S3, GCS and Azure): progress
		// must see the last page, and cleanup must know the manifests of
		// every page or it deletes committed files. Batches of one event
		// and no page or session keep this cheap.
		d := newDest(t)
		var want []string
		for i := range uint64(ManyBatches) {
			b := Batch(9, i+1, i+1, 1)
			b.Pages, b.Sessions = nil, nil
			write(t, d, b)
			want = append(want, ids(b)...)
		}
		wantCommitted(t, d, 9, ManyBatches, true)
		if err := d.Cleanup(t.Context(), 9, 0); err != nil {
			t.Fatal(err)
		}
		wantCommitted(t, d, 9, ManyBatches, true)
		wantIDs(t, d, 9, want)
	})

	t.Run("LargeBatch", func(t *testing.T) {
		// One events file of more than LargeBatchBytes: S3 (multipart above
		// 16 MiB), GCS (16 MiB resumable chunks) and Azure (8 MiB blocks) upload it in
		// parts; it must come back whole, and be rewritten whole.
		d := newDest(t)
		b := LargeBatch(8, 1, 1, LargeBatchBytes)
		write(t, d, b)
		wantCommitted(t, d, 8, 1, true)
		wantIDs(t, d, 8, ids(b))
		write(t, d, LargeBatch(8, 1, 1, LargeBatchBytes))
		wantIDs(t, d, 8, ids(b))
	})

	t.Run("CanceledContext", func(t *testing.T) {
		d := newDest(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := d.Write(ctx, Batch(7, 1, 1, 3)); err == nil {
			t.Log("Write with a canceled context succeeded") // allowed, but then it must be committed
			wantCommitted(t, d, 7, 1, true)
			return
		}
		// An error means "maybe committed": the retry must converge.
		b := Batch(7, 1, 1, 3)
		write(t, d, b)
		wantCommitted(t, d, 7, 1, true)
		wantIDs(t, d, 7, ids(b))
	})
}

// Batch builds a deterministic batch of the given partition and sequence
// range with n events (spread over two UTC hours when n > 1), one page and
// one session; equal arguments give equal batches.
func Batch(partition int, first, last uint64, n int) *destination.Batch {
	base := time.Date(2024, 5, 1, 13, 59, 0, 0, time.UTC).Add(time.Duration(first) * time.Hour)
	org := "org_test"
	session := fmt.Sprintf("s-%d-%d", partition, first)
	page := fmt.Sprintf("pg-%d-%d", partition, first)
	b := &destination.Batch{
		ID:        destination.BatchID(partition, first, last),
		Org:       org,
		Partition: partition,
		FirstSeq:  first,
		LastSeq:   last,
	}
	for i := range n {
		at := base.Add(time.Duration(i) * time.Minute / time.Duration(max(n-1, 1)) * 2)
		props := fmt.Sprintf(`{"i":%d}`, i)
		var orig *int64 // the client's time: none, the epoch (not none), or a second before
		switch i % 3 {
		case 1:
			orig = new(int64)
		case 2:
			v := at.Add(-time.Second).UnixMicro()
			orig = &v
		}
		b.Events = append(b.Events, format.EventRow{
			EventID:           fmt.Sprintf("ev-p%d-s%d-%d", partition, first, i),
			OrgID:             org,
			DeviceID:          "dev-1",
			SessionID:         session,
			PageID:            &page,
			Type:              "track",
			EventTime:         at.UnixMicro(),
			ReceivedAt:        at.UnixMicro(),
			Properties:        &props,
			LogPartition:      int32(partition),
			LogOffset:         int64(first)*1000 + int64(i),
			OriginalTimestamp: orig,
		})
	}
	start, end := base.UnixMicro(), base.Add(2*time.Minute).UnixMicro()
	b.Pages = []format.PageRow{{PageID: page, SessionID: session, OrgID: org, DeviceID: "dev-1", Type: "page",
		StartedAt: start, EndedAt: end, DurationMS: (end - start) / 1000, EventCount: int64(n), EndReason: "idle"}}
	b.Sessions = []format.SessionRow{{SessionID: session, OrgID: org, DeviceID: "dev-1",
		StartedAt: start, EndedAt: end, DurationMS: (end - start) / 1000, PageCount: 1, EventCount: int64(n)}}
	return b
}

// ManyBatches is the number of batches of the ManyBatches subtest: more
// than one listing page (1000 keys).
const ManyBatches = 1003

// LargeBatchBytes is the minimum size of the events file of the LargeBatch
// subtest: 21 MiB, over every cloud SDK's multipart threshold and part,
// block or chunk size.
const LargeBatchBytes = 21 << 20

// largeEventEntropy is the number of random bytes in each event of a
// LargeBatch: no codec compresses an event below it.
const largeEventEntropy = 4096

// LargeBatch is Batch(partition, first, last, n) with enough events, all in
// one UTC hour, whose properties hold incompressible (pseudo-random,
// base64) data that its events file is at least minBytes long whatever the
// format and compression. Equal arguments give equal batches.
func LargeBatch(partition int, first, last uint64, minBytes int) *destination.Batch {
	n := minBytes/largeEventEntropy + 1
	b := Batch(partition, first, last, n)
	rng := rand.New(rand.NewChaCha8([32]byte{byte(partition), byte(first), byte(first >> 8), byte(last), byte(last >> 8)}))
	raw := make([]byte, largeEventEntropy)
	at := b.Events[0].ReceivedAt
	for i := range b.Events {
		for j := 0; j < len(raw); j += 8 {
			v := rng.Uint64()
			for k := range 8 {
				raw[j+k] = byte(v >> (8 * k))
			}
		}
		props := fmt.Sprintf(`{"i":%d,"blob":%q}`, i, base64.StdEncoding.EncodeToString(raw))
		e := &b.Events[i]
		e.Properties = &props
		e.EventTime, e.ReceivedAt = at+int64(i), at+int64(i) // one hour: one file
	}
	return b
}

func ids(b *destination.Batch) []string {
	out := make([]string, len(b.Events))
	for i := range b.Events {
		out[i] = b.Events[i].EventID
	}
	return out
}

func write(t *testing.T, d destination.Destination, b *destination.Batch) {
	t.Helper()
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatalf("Write %s: %v", b.ID, err)
	}
}

func wantCommitted(t *testing.T, d destination.Destination, partition int, want uint64, wantOK bool) {
	t.Helper()
	got, ok, err := d.Committed(t.Context(), partition)
	if err != nil {
		t.Fatalf("Committed(%d): %v", partition, err)
	}
	if got != want || ok != wantOK {
		t.Fatalf("Committed(%d) = %d, %v; want %d, %v", partition, got, ok, want, wantOK)
	}
}

// wantIDs checks, when the destination can read back, that the partition
// holds exactly the given events, each once.
func wantIDs(t *testing.T, d destination.Destination, partition int, want []string) {
	t.Helper()
	r, ok := d.(EventIDReader)
	if !ok {
		return
	}
	got, err := r.EventIDs(t.Context(), partition)
	if err != nil {
		t.Fatalf("EventIDs(%d): %v", partition, err)
	}
	got, want = slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Fatalf("partition %d holds %d events %v, want %d %v", partition, len(got), head(got), len(want), head(want))
	}
}

func head(s []string) []string { return s[:min(len(s), 5)] }
