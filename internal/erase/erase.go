package erase

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/event"
)

// Identity is a person as the log knows them: the ids the operator gave
// (user ids and anonymous ids) and the ids linked to them by identify or
// alias events of the retained log. User ids and anonymous ids are one
// namespace, as an alias's previous id is either.
type Identity struct {
	IDs   map[string]bool
	Seeds []string
}

// Linked returns the ids the operator did not give, sorted.
func (id *Identity) Linked() []string {
	var out []string
	for x := range id.IDs {
		if !slices.Contains(id.Seeds, x) {
			out = append(out, x)
		}
	}
	slices.Sort(out)
	return out
}

// owns reports whether e is the person's: its user id, anonymous id,
// device or (alias) previous id is in the set.
func (id *Identity) owns(e *event.Event) bool {
	return id.IDs[e.UserID] || id.IDs[e.AnonymousID] || id.IDs[e.Device] || id.IDs[e.PreviousID]
}

// link returns the two ids that e links, if it links any: identify links
// its user id with its anonymous id, alias its user id with its previous id.
func link(e *event.Event) (a, b string, ok bool) {
	if e.UserID == "" {
		return "", "", false
	}
	switch e.Type {
	case "identify":
		return e.UserID, e.AnonymousID, e.AnonymousID != ""
	case "alias":
		return e.UserID, e.PreviousID, e.PreviousID != ""
	}
	return "", "", false
}

// scan calls fn for every decodable event of org in the retained log.
func scan(lg audit.Log, org string, fn func(p int, off uint64, e *event.Event)) error {
	for p := range lg.Partitions() {
		first, err := lg.FirstOffset(p)
		if err != nil {
			return fmt.Errorf("partition %d: %w", p, err)
		}
		if first == 0 {
			continue
		}
		err = lg.Scan(p, first, 0, func(off uint64, val []byte) error {
			h, err := event.Peek(val)
			if err != nil || h.Kind != event.KindEvent || h.Org != org {
				return nil // unreadable records are the audit's to report
			}
			r, err := event.DecodeMeta(val)
			if err != nil {
				return nil
			}
			fn(p, off, &r.Event)
			return nil
		})
		if err != nil {
			return fmt.Errorf("scan partition %d: %w", p, err)
		}
	}
	return nil
}

// Find returns the identity of the person given by seeds (user ids and
// anonymous ids) in org: the connected component of the seeds in the graph
// of identify and alias links of the retained log.
func Find(lg audit.Log, org string, seeds []string) (*Identity, error) {
	adj := map[string][]string{}
	err := scan(lg, org, func(_ int, _ uint64, e *event.Event) {
		if a, b, ok := link(e); ok {
			adj[a] = append(adj[a], b)
			adj[b] = append(adj[b], a)
		}
	})
	if err != nil {
		return nil, err
	}
	id := &Identity{IDs: map[string]bool{}, Seeds: seeds}
	queue := slices.Clone(seeds)
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		if !id.IDs[x] {
			id.IDs[x] = true
			queue = append(queue, adj[x]...)
		}
	}
	return id, nil
}

// Hour is one row of a dry run: the person's events in one destination and
// UTC hour of ingestion.
type Hour struct {
	Hour  time.Time `json:"hour"`
	InLog int64     `json:"in_log"` // distinct (device, messageId) of the person accepted in this hour
	// InDestination is the number of rows of the destination's committed
	// events files that are one of those events: what an erase would remove.
	InDestination int64 `json:"in_destination"`
}

// Result is a dry run's count for one destination.
type Result struct {
	Org         string `json:"org"`
	Destination string `json:"destination"`
	Hours       []Hour `json:"hours"`
	// Error is set when the destination could not be read (its counts are
	// then 0): an erase must not start while it is.
	Error string `json:"error,omitempty"`
}

type ident struct{ device, id string }

// DryRun counts the events of id in the log and in each target's committed
// events files, per UTC hour of ingestion. It writes nothing.
func DryRun(ctx context.Context, lg audit.Log, org string, id *Identity, targets []audit.Target) ([]Result, int64, error) {
	byHour := map[time.Time]map[ident]bool{}
	var total int64
	err := scan(lg, org, func(_ int, _ uint64, e *event.Event) {
		if !id.owns(e) {
			return
		}
		h := time.Unix(0, e.ReceivedAt).UTC().Truncate(time.Hour)
		if byHour[h] == nil {
			byHour[h] = map[ident]bool{}
		}
		k := ident{e.Device, e.ID}
		if !byHour[h][k] {
			byHour[h][k] = true
			total++
		}
	})
	if err != nil {
		return nil, 0, err
	}
	hours := make([]time.Time, 0, len(byHour))
	for h := range byHour {
		hours = append(hours, h)
	}
	slices.SortFunc(hours, time.Time.Compare)
	var out []Result
	for _, t := range targets {
		if t.Org != org {
			continue
		}
		res := Result{Org: t.Org, Destination: t.Name}
		if err := t.Dest.Owned(ctx); err != nil {
			// Nothing in another data dir's place is this one's to count.
			res.Error = fmt.Sprintf("not this data dir's destination: %v", err)
			out = append(out, res)
			continue
		}
		for _, h := range hours {
			n, err := held(ctx, t.Dest, org, h, byHour[h])
			if err != nil {
				res.Error = err.Error()
				break
			}
			res.Hours = append(res.Hours, Hour{Hour: h, InLog: int64(len(byHour[h])), InDestination: n})
		}
		if res.Error != "" {
			res.Hours = nil
		}
		out = append(out, res)
	}
	return out, total, nil
}

// held counts the rows of d's committed events files of org in hour h that
// are one of want: read back from the destination itself, as the audit
// does (a file counts when a manifest of org lists it with its size).
func held(ctx context.Context, d audit.Destination, org string, h time.Time, want map[ident]bool) (int64, error) {
	objs, err := d.EventFiles(ctx, h)
	if err != nil {
		return 0, err
	}
	manifests := map[string]*destination.Manifest{}
	var n int64
	for _, o := range objs {
		m, ok := manifests[o.Batch]
		if !ok {
			man, committed, err := d.Manifest(ctx, o.Batch)
			if err != nil {
				return 0, err
			}
			if committed {
				m = &man
			}
			manifests[o.Batch] = m
		}
		if m == nil || m.Org != org {
			continue
		}
		i := slices.IndexFunc(m.Files, func(f destination.File) bool { return f.Path == o.Path })
		if i < 0 || m.Files[i].Bytes != o.Size {
			continue
		}
		rows, err := d.ReadFileEvents(ctx, m.Files[i])
		if err != nil {
			return 0, err
		}
		for j := range rows {
			if want[ident{rows[j].DeviceID, rows[j].EventID}] {
				n++
			}
		}
	}
	return n, nil
}
