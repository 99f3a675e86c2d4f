package eventlog

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/cockroachdb/pebble/v2"
)

// A Gap is a range of offsets of one partition that the log lost: records
// that other stores (the sessionizer's cursor, a webhook's cursor, a
// destination's manifests) had already seen when the log's tail went
// missing (a disk that acknowledged an fsync it had not done, a restored
// backup of the log store alone). New records are appended after the gap,
// never at its offsets, so that no reader that is already past them skips a
// new record (see SkipTo).
type Gap struct {
	From, To uint64 // inclusive
	// SeqFloor is the smallest output sequence number the sessionizer may
	// give an output produced after the gap: past every batch that a
	// destination or transport had already committed, so that no new
	// output reuses the sequence number (and batch id) of a committed one.
	SeqFloor uint64
}

// gapsMeta is the metadata key of partition p's gaps: a JSON list.
func gapsMeta(p int) string { return "gaps/" + strconv.Itoa(p) }

func (l *Log) loadGaps() error {
	l.gaps = make([][]Gap, l.parts)
	for p := range l.parts {
		v, ok, err := l.Meta(gapsMeta(p))
		if err != nil {
			return fmt.Errorf("read log metadata: %w", err)
		}
		if !ok {
			continue
		}
		if err := json.Unmarshal(v, &l.gaps[p]); err != nil {
			return fmt.Errorf("read log metadata %s: %w", gapsMeta(p), err)
		}
	}
	return nil
}

// Gaps returns partition p's gaps, oldest first. The slice must not be changed.
func (l *Log) Gaps(p int) []Gap {
	l.gapMu.RLock()
	defer l.gapMu.RUnlock()
	return l.gaps[p]
}

// InGap reports whether off of partition p is in one of its gaps.
func (l *Log) InGap(p int, off uint64) bool {
	for _, g := range l.Gaps(p) {
		if off >= g.From && off <= g.To {
			return true
		}
	}
	return false
}

// SkipTo records that partition p lost the offsets after its last record
// up to to, and makes the next record of p get offset to+1 (the gap is
// durable before it returns). seqFloor is the gap's SeqFloor. It is a no-op
// when to is not past the partition's next offset. Call it only before any
// Append, AppendTicks or AppendRecords (at start, before serving).
func (l *Log) SkipTo(p int, to, seqFloor uint64) (Gap, error) {
	l.gapMu.Lock()
	defer l.gapMu.Unlock()
	if to < l.next[p] {
		return Gap{}, nil
	}
	g := Gap{From: l.next[p], To: to, SeqFloor: seqFloor}
	gaps := append(slices.Clone(l.gaps[p]), g)
	v, err := json.Marshal(gaps)
	if err != nil {
		return Gap{}, err
	}
	if err := l.db.Set(metaKey(gapsMeta(p)), v, pebble.Sync); err != nil {
		return Gap{}, fmt.Errorf("record log gap: %w", err)
	}
	l.gaps[p] = gaps
	l.next[p] = to + 1
	return g, nil
}
