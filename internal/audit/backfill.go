package audit

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/event"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/sessionize"
)

// DefaultBackfillBatch is the most events one backfill batch holds.
const DefaultBackfillBatch = 10_000

// BackfillOptions configure Backfill.
type BackfillOptions struct {
	DryRun bool
	// Sessions is the configuration the pipeline sessionizes with: backfilled
	// events get the session and page the pipeline gave them.
	Sessions  sessionize.Config
	BatchSize int                   // events per batch; default DefaultBackfillBatch
	Progress  func(done, total int) // after each written batch; may be nil
}

// Planned is one backfill batch.
type Planned struct {
	ID        string      `json:"batch_id"`
	Partition int         `json:"log_partition"`
	Events    int         `json:"events"`
	Hours     []time.Time `json:"hours"`
}

// BackfillResult is what Backfill did for one destination.
type BackfillResult struct {
	Org         string    `json:"org"`
	Destination string    `json:"destination"`
	Batches     []Planned `json:"batches"`
	Events      int       `json:"events"`  // in Batches
	Written     bool      `json:"written"` // false for a dry run
	// Held counts missing events the pipeline has not passed yet (the
	// destination is down, or the pipeline is behind): it will deliver them
	// itself, and backfilling them would duplicate them.
	Held int64 `json:"held"`
	// Pending counts absent events not yet due under the freshness SLA.
	Pending int64 `json:"pending"`
}

// Backfill audits [from, to) and delivers the events found missing, as extra
// committed batches marked as backfill. Missing events the pipeline will
// still deliver (ahead of its commit point in the destination) and pending
// ones are left alone, so a backfill never duplicates what the pipeline
// delivers, and running it again finds nothing to do. It returns the audit it
// acted on.
func (a *Auditor) Backfill(ctx context.Context, from, to time.Time, targets []Target, o BackfillOptions) ([]BackfillResult, *Report, error) {
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBackfillBatch
	}
	// One backfill at a time, and no other audit between its audit and its
	// writes: a second backfill must see what the first wrote.
	a.mu.Lock()
	defer a.mu.Unlock()
	rep, err := a.run(ctx, from, to, targets, -1)
	if err != nil {
		return nil, nil, err
	}
	var results []BackfillResult
	type job struct {
		t     Target
		batch *destination.Batch
	}
	var jobs []job
	for i, t := range targets {
		res := rep.Results[i]
		if res.NotOwned != "" {
			// Writing there would put this org's events in another's place.
			return nil, nil, fmt.Errorf("backfill %s/%s: %s", t.Org, t.Name, res.NotOwned)
		}
		br := BackfillResult{Org: t.Org, Destination: t.Name, Written: !o.DryRun, Pending: res.Total.Pending}
		byPart := map[int][]Event{}
		for _, e := range res.Missing {
			byPart[e.Partition] = append(byPart[e.Partition], e)
		}
		for _, p := range slices.Sorted(maps.Keys(byPart)) {
			if t.Frontier == nil {
				return nil, nil, fmt.Errorf("backfill %s/%s: no pipeline frontier", t.Org, t.Name)
			}
			frontier, err := t.Frontier(p)
			if err != nil {
				return nil, nil, fmt.Errorf("backfill %s/%s: %w", t.Org, t.Name, err)
			}
			want := map[uint64]Event{}
			for _, e := range byPart[p] {
				if e.Offset < frontier {
					want[e.Offset] = e
				} else {
					br.Held++
				}
			}
			if len(want) == 0 {
				continue
			}
			batches, err := a.build(t, p, want, o)
			if err != nil {
				return nil, nil, fmt.Errorf("backfill %s/%s: %w", t.Org, t.Name, err)
			}
			for _, b := range batches {
				br.Batches = append(br.Batches, plan(b))
				br.Events += len(b.Events)
				jobs = append(jobs, job{t, b})
			}
		}
		results = append(results, br)
	}
	if o.DryRun {
		return results, rep, nil
	}
	total, done := 0, 0
	for _, j := range jobs {
		total += len(j.batch.Events)
	}
	if o.Progress != nil {
		o.Progress(0, total)
	}
	for _, j := range jobs {
		if err := j.t.Dest.Write(ctx, j.batch); err != nil {
			return nil, nil, fmt.Errorf("backfill %s/%s: %w", j.t.Org, j.t.Name, err)
		}
		done += len(j.batch.Events)
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}
	return results, rep, nil
}

func plan(b *destination.Batch) Planned {
	hours := map[time.Time]bool{}
	for i := range b.Events {
		hours[time.UnixMicro(b.Events[i].ReceivedAt).UTC().Truncate(time.Hour)] = true
	}
	return Planned{ID: b.ID, Partition: b.Partition, Events: len(b.Events),
		Hours: slices.SortedFunc(maps.Keys(hours), func(a, b time.Time) int { return a.Compare(b) })}
}

// build makes the backfill batches of partition p's missing events: their
// rows as the pipeline makes them, in log order, o.BatchSize at a time.
func (a *Auditor) build(t Target, p int, want map[uint64]Event, o BackfillOptions) ([]*destination.Batch, error) {
	found, err := assign(a.o.Log, o.Sessions, p, want)
	if err != nil {
		return nil, err
	}
	offs := slices.Sorted(maps.Keys(want))
	var rows []format.EventRow
	for _, off := range offs {
		var rec event.Record
		err := a.o.Log.Scan(p, off, off, func(_ uint64, val []byte) (err error) {
			rec, err = event.Decode(val)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("log partition %d offset %d: %w", p, off, err)
		}
		out := found[off]
		rows = append(rows, format.NewEventRow(p, &out, &rec.Event))
	}
	var batches []*destination.Batch
	for chunk := range slices.Chunk(rows, o.BatchSize) {
		ids := make([]string, len(chunk))
		for i := range chunk {
			ids[i] = chunk[i].EventID
		}
		lo, hi := chunk[0].LogOffset, chunk[len(chunk)-1].LogOffset
		batches = append(batches, &destination.Batch{
			ID:  destination.BackfillBatchID(p, lo, hi, destination.EventIDsDigest(ids)),
			Org: t.Org, Partition: p, Backfill: true, Events: chunk,
		})
	}
	return batches, nil
}
