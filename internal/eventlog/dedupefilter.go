package eventlog

import (
	"encoding/binary"
	"errors"
	"math/bits"

	"github.com/cockroachdb/pebble/v2"
)

// dedupeFilter is an in-memory Bloom filter of a partition's dedupe keys
// (kindDedupe) in front of the store, which stays the truth: nearly every
// event is new, and a lookup the filter rules out costs a few nanoseconds
// where the store's costs microseconds and, once the window's keys outgrow
// the block cache, a read from disk (most of the sessionizer's CPU at 5M
// events; BENCHMARKS.md). A "maybe" is looked up in the store, so the
// sessionizer decides exactly as without the filter, and replays too.
//
// It never answers "no" for a key the store holds: it is built from every
// dedupe key in the store at the partition's first chunk after start
// (State.UpdateSessions), every key the sessionizer remembers is added, and
// only the sessionizer of the partition writes them. Keys the sweep
// deletes stay in it (a "maybe" more) until each full pass of the sweep
// hands over a filter rebuilt from the keys it visited and kept plus those
// remembered meanwhile (see sweepDedupe), sized for three times the keys
// the pass started with.
//
// Blocked (one 512-bit block per key, 7 bits in it): one 64-byte block
// read per lookup. The key's last 16 bytes are already a SHA-256 prefix, so they
// are the filter's hash.
type dedupeFilter struct {
	blocks []dedupeBlock
	n      int // keys added (with repeats: an estimate)
}

type dedupeBlock [8]uint64

// Sizing: dedupeFilterBits per key, for dedupeFilterGrowth times the keys
// known when the filter is made (the window's keys grow until the sweep's
// next pass hands over a new one); each partition's filter at most
// dedupeFilterMaxBytes/partitions (two filters exist during a pass), so
// memory stays bounded whatever the window holds (invariant 7): past that,
// more lookups fall through to the store, and none is decided differently.
const (
	dedupeFilterBits     = 10
	dedupeFilterGrowth   = 3
	dedupeFilterMinKeys  = 1 << 14
	dedupeFilterMaxBytes = 12 << 20
)

// newDedupeFilter returns an empty filter for the given number of keys, of
// at most maxBytes.
func newDedupeFilter(keys, maxBytes int) *dedupeFilter {
	n := max(keys, dedupeFilterMinKeys) * dedupeFilterBits / 512
	n = max(1, min(n+1, maxBytes/64))
	return &dedupeFilter{blocks: make([]dedupeBlock, n)}
}

// block splits h (the 16 hash bytes of a dedupe key) into the block
// index and the bits within it.
func (f *dedupeFilter) block(h []byte) (*dedupeBlock, uint64) {
	hi, _ := bits.Mul64(binary.LittleEndian.Uint64(h), uint64(len(f.blocks)))
	return &f.blocks[hi], binary.LittleEndian.Uint64(h[8:])
}

func (f *dedupeFilter) add(h []byte) {
	b, x := f.block(h)
	for range 7 {
		b[x&511>>6] |= 1 << (x & 63)
		x >>= 9
	}
	f.n++
}

func (f *dedupeFilter) mayContain(h []byte) bool {
	b, x := f.block(h)
	for range 7 {
		if b[x&511>>6]&(1<<(x&63)) == 0 {
			return false
		}
		x >>= 9
	}
	return true
}

// buildDedupeFilter reads partition p's dedupe keys from the store into a
// new filter: twice, counting them first, so that it is sized without
// holding them.
func buildDedupeFilter(db *pebble.DB, p, maxBytes int) (*dedupeFilter, error) {
	var f *dedupeFilter
	n := 0
	for pass := range 2 {
		if pass == 1 {
			f = newDedupeFilter(dedupeFilterGrowth*n, maxBytes)
		}
		lo := stateKey(p, kindDedupe)
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
		if err != nil {
			return nil, err
		}
		for ok := it.First(); ok; ok = it.Next() {
			if k := it.Key(); len(k) == dedupeKeyLen {
				if f == nil {
					n++
				} else {
					f.add(k[4:])
				}
			}
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return nil, err
		}
	}
	return f, nil
}
