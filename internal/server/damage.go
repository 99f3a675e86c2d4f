package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/pipeline"
	"github.com/tidemark/tidemark/internal/transport"
)

// destinationCheckTimeout bounds how long the start-up check waits for one
// destination's committed progress; an unreachable destination is left out
// of the check (and said so), it does not stop the start.
const destinationCheckTimeout = 30 * time.Second

// checked is a destination the start-up check compares with the log.
type checked struct {
	org, name string
	tr        *transport.Transport
	dest      checkedDest
}

// checkedDest is what the start-up check reads of a destination.
type checkedDest interface {
	Owned(ctx context.Context) error // an error wrapping destination.ErrClaimed: another's place
	Committed(ctx context.Context, partition int) (lastSeq uint64, ok bool, err error)
	// LastLogOffset is the largest log offset of an event in the
	// partition's newest committed batches (0 when none has one).
	LastLogOffset(ctx context.Context, partition int) (uint64, error)
}

// checkStores compares, per partition, what the stores and destinations
// have seen with what the log holds, before anything is accepted. Readers
// never go past the log's last offset, so a cursor, a webhook cursor or a
// committed batch past it means the log lost its tail (a disk that
// acknowledged an fsync it had not done, a backup of the log store restored
// alone or older than the rest). New records would then get offsets those
// readers have already passed, and be acknowledged and never delivered;
// their outputs would reuse sequence numbers, hence batch ids, of batches
// already committed, and be skipped as delivered.
//
// What it does about it (docs/operations.md "Damage"): the lost offsets become a gap
// (eventlog.SkipTo), new records are appended after everything any store or
// destination has seen, and the sessionizer numbers the outputs after the
// gap past every committed batch. The events that were in the lost tail and
// not yet delivered are lost, and said so loudly. The one disagreement it
// cannot rebuild is refused: a destination ahead of a sessionizer state
// that must be rebuilt from a log that retention has already trimmed.
func checkStores(ctx context.Context, lg *eventlog.Log, sz *pipeline.Sessionizers, webhookCursors []uint64, dests []checked, logger *slog.Logger) error {
	parts := lg.Partitions()
	if err := lg.State().CheckOutputs(); err != nil {
		return fmt.Errorf("start-up check: the state store (data_dir/store/state) is damaged: %w. "+
			"It holds only what is derived from the log: stop, move data_dir/store/state aside and start again to rebuild it from the log", err)
	}
	// What each destination has committed, per partition (nil: unreachable).
	remote := make([][]uint64, len(dests))
	for i, d := range dests {
		cctx, cancel := context.WithTimeout(ctx, destinationCheckTimeout)
		// A place claimed by another destination (destination.Claimer) holds
		// another's batches, not this data directory's: its transport
		// refuses to run, and the log is not judged by it.
		if err := d.dest.Owned(cctx); errors.Is(err, destination.ErrClaimed) {
			cancel()
			logger.Warn("start-up check: the destination's place belongs to another destination; the log is checked against the local stores only",
				"org", d.org, "destination", d.name, "err", err)
			continue
		}
		seqs := make([]uint64, parts)
		var err error
		for p := range parts {
			if seqs[p], _, err = d.dest.Committed(cctx, p); err != nil {
				break
			}
		}
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			logger.Warn("start-up check: destination not reachable; the log is checked against the local stores only",
				"org", d.org, "destination", d.name, "err", err)
			continue
		}
		remote[i] = seqs
	}
	for p := range parts {
		last := lg.LastOffset(p)
		first, err := lg.FirstOffset(p)
		if err != nil {
			return fmt.Errorf("start-up check: read log partition %d: %w", p, err)
		}
		cursor, nextSeq := sz.Cursor(p), sz.NextSeq(p)
		seen, by := cursor, "the sessionizer's cursor"
		if w := webhookCursors[p]; w > seen {
			seen, by = w, "a webhook's cursor"
		}
		floor := nextSeq
		for i, d := range dests {
			local, err := d.tr.Progress(p)
			if err != nil {
				return fmt.Errorf("start-up check: read progress of %s/%s: %w", d.org, d.name, err)
			}
			floor = max(floor, local+1)
			if remote[i] == nil {
				continue
			}
			committed := remote[i][p]
			floor = max(floor, committed+1)
			if committed < nextSeq {
				continue // the sessionizer's state is ahead of (or at) the destination: nothing more to learn
			}
			// The destination holds batches the sessionizer has not
			// produced (yet): normal after a crash, when replaying the
			// log from the cursor reproduces them, unless the log no
			// longer holds what they were made from.
			cctx, cancel := context.WithTimeout(ctx, destinationCheckTimeout)
			off, err := d.dest.LastLogOffset(cctx, p)
			cancel()
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				logger.Warn("start-up check: cannot read the destination's newest manifests; the log is checked against the local stores only",
					"org", d.org, "destination", d.name, "partition", p, "err", err)
				continue
			}
			if off > seen {
				seen, by = off, fmt.Sprintf("destination %s/%s (committed batches up to log offset %d)", d.org, d.name, off)
			}
			if first > cursor+1 && off <= last {
				return fmt.Errorf("start-up check: partition %d: destination %s/%s has committed output %d but the sessionizer's state "+
					"only reached output %d (log offset %d), and the log no longer holds offsets %d-%d (retention), so the outputs in between "+
					"cannot be rebuilt: the state store (data_dir/store/state) was lost or restored from an older backup than the log. "+
					"Restore data_dir/store/state from the same backup as data_dir/store/log, or start with an empty data_dir and an empty destination",
					p, d.org, d.name, committed, nextSeq-1, cursor, cursor+1, first-1)
			}
		}
		if seen <= last {
			continue
		}
		g, err := lg.SkipTo(p, seen, floor)
		if err != nil {
			return fmt.Errorf("start-up check: %w", err)
		}
		if g.To == 0 {
			continue // recorded by an earlier start
		}
		logger.Error("DAMAGED DATA DIRECTORY: the log lost its tail; new events are appended after the lost offsets. "+
			"Events in the lost range that were not yet delivered are lost (see docs/operations.md, Damage)",
			"partition", p, "log_last_offset", last, "ahead", by, "lost_from", g.From, "lost_to", g.To, "next_output_seq", g.SeqFloor)
	}
	return nil
}

// storeError explains an error opening or checking the data directory's
// stores: which store, and what to do. It never includes a stack.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	return fmt.Errorf("%w\nThe data directory (data_dir) is damaged or was written by another build. Nothing was served. "+
		"What to do: restore data_dir from a backup taken while tidemark was stopped (all of store/ from the same backup), "+
		"or move the damaged store aside; tidemark then starts without it and says what it rebuilt and what was lost (docs/operations.md, Damage)", err)
}
