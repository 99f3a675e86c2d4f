package eventlog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tidemark/tidemark/internal/sessionize"
)

// Emitted counts a chunk's output items by sessionize.Kind.
type Emitted [5]int

// UpdateSessions runs one chunk of partition p's sessionizer and commits
// it atomically. fn processes log records with st, a sessionize.Store over
// the partition's committed state (its reads see its writes; Emit appends
// to the partition's outputs, numbered from h.NextSeq on), advances h's
// cursor and watermark, and returns how many dedupe entries the sweep may
// visit. Then dedupe entries first seen before h.Watermark-window are
// forgotten, and the state fn changed, its outputs and h commit in one
// batch (not synced: the sessionizer's state is derived from the log and
// replayed from it after a crash). On an error nothing is committed; h
// may have changed and is to be discarded.
//
// The state of the partition's devices is cached between calls (values as
// committed: only this partition's sessionizer writes them), so calls for
// one partition must not overlap.
func (s *State) UpdateSessions(p int, h *SessionHeader, window time.Duration, fn func(st sessionize.Store) (sweep int, err error)) (Emitted, error) {
	ps := &s.parts[p]
	if !ps.known {
		legacy, err := hasLegacyDedupe(s.db, p)
		if err != nil {
			return Emitted{}, err
		}
		ps.legacy, ps.known = legacy, true
	}
	if ps.filter == nil {
		f, err := buildDedupeFilter(s.db, p, s.filterBytes())
		if err != nil {
			return Emitted{}, err
		}
		ps.filter = f
	}
	b := s.db.NewIndexedBatch()
	defer b.Close()
	st := newSessionStore(s.db, b, p, h, ps.cache, ps.legacy)
	st.filter, st.next = ps.filter, ps.next
	defer st.close()
	done := false
	defer func() {
		if !done {
			// fn may have changed cached states in place (also when it
			// panicked).
			ps.cache.clear()
		}
	}()
	sweep, err := fn(st)
	if err != nil {
		return Emitted{}, err
	}
	if ps.sweep == nil {
		// A pass of the sweep starts: it builds the next filter.
		st.next = newDedupeFilter(dedupeFilterGrowth*ps.filter.n, s.filterBytes())
	}
	next, err := st.sweepDedupe(ps.sweep, h.Watermark-int64(window), sweep)
	if err != nil {
		return Emitted{}, err
	}
	st.flush()
	if err := b.Commit(pebble.NoSync); err != nil {
		return Emitted{}, fmt.Errorf("commit sessionizer chunk: %w", err)
	}
	done = true
	st.committed()
	ps.sweep = next
	ps.next = st.next
	if next == nil {
		// The pass is complete: its filter holds every key the store does.
		ps.filter, ps.next = st.next, nil
	}
	if ps.legacy && next == nil {
		// A whole pass is done: old-key entries are gone once a window has
		// passed since the upgrade (nothing writes them any more). On an
		// error, keep looking them up: that is never wrong, only slower.
		if found, err := hasLegacyDedupe(s.db, p); err == nil {
			ps.legacy = found
		}
	}
	return st.emitted, nil
}

// sessionStore implements sessionize.Store over one indexed Pebble batch. Device
// states are cached for the chunk and written once at flush.
//
// Dedupe lookups, nearly all misses, are first asked of the partition's
// in-memory filter (dedupeFilter), which rules out nearly all of them; the
// rest go to one iterator over the committed state opened once per chunk, plus a map of the entries remembered in the
// chunk: only this partition's sessionizer writes its dedupe keys, so the two
// answer exactly what the batch would. The iterator keeps its tables'
// iterators open from lookup to lookup and rules a table out by its bloom
// filter, where a Get per lookup sets up and tears down an iterator for every
// table it consults (most of the sessionizer's CPU when L0 is deep).
type sessionStore struct {
	b       *pebble.Batch
	db      *pebble.DB
	it      *pebble.Iterator // over db, opened at the first lookup
	p       int
	hdr     *SessionHeader
	cache   *deviceCache                  // committed device states, may be nil
	devices map[string]*sessionize.Device // nil value: deleted
	seen    map[string]int64              // dedupe entries remembered in this chunk
	legacy  bool                          // the partition may hold old-key dedupe entries
	filter  *dedupeFilter                 // every committed dedupe key (see dedupeFilter)
	next    *dedupeFilter                 // the sweep pass's filter being built, or nil
	buf     []byte
	out     []byte // the chunk's output segment
	outN    int
	key     []byte
	hbuf    []byte // scratch for dedupe keys
	emitted Emitted
}

func newSessionStore(db *pebble.DB, b *pebble.Batch, p int, hdr *SessionHeader, cache *deviceCache, legacy bool) *sessionStore {
	return &sessionStore{b: b, db: db, p: p, hdr: hdr, cache: cache, legacy: legacy, devices: make(map[string]*sessionize.Device), seen: make(map[string]int64)}
}

// lookup reads a committed key; the value is valid until the next lookup.
func (s *sessionStore) lookup(key []byte) ([]byte, bool, error) {
	if s.it == nil {
		lo := stateKey(s.p, 0)
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo[:3])})
		if err != nil {
			return nil, false, err
		}
		s.it = it
	}
	// The state store's comparer makes the whole key the prefix, so this
	// is a point lookup that consults the tables' bloom filters.
	if !s.it.SeekPrefixGE(key) {
		return nil, false, s.it.Error()
	}
	if !bytes.Equal(s.it.Key(), key) {
		return nil, false, nil
	}
	v, err := s.it.ValueAndErr()
	return v, err == nil, err
}

// close releases the lookup iterator.
func (s *sessionStore) close() error {
	if s.it == nil {
		return nil
	}
	err := s.it.Close()
	s.it = nil
	return err
}

func (s *sessionStore) Device(key string) (*sessionize.Device, error) {
	if d, ok := s.devices[key]; ok {
		return d, nil
	}
	if d, ok := s.cache.get(key); ok {
		s.devices[key] = d
		return d, nil
	}
	// A Get, not the lookup iterator: a device's state is rewritten often,
	// so older versions sit in several levels, and an iterator's seek would
	// read a block of each where a Get stops at the newest.
	v, c, err := s.b.Get(stateKey(s.p, kindDevice, []byte(key)))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer c.Close()
	d, err := sessionize.UnmarshalDevice(v)
	if err != nil {
		return nil, fmt.Errorf("device state: %w", err)
	}
	s.devices[key] = d
	return d, nil
}

func (s *sessionStore) PutDevice(key string, d *sessionize.Device) { s.devices[key] = d }
func (s *sessionStore) DeleteDevice(key string)                    { s.devices[key] = nil }

func (s *sessionStore) Index(bucket int64, key string) {
	s.b.Set(stateKey(s.p, kindIndex, u64(uint64(bucket)), []byte(key)), nil, nil)
}

func (s *sessionStore) Unindex(bucket int64, key string) {
	s.b.Delete(stateKey(s.p, kindIndex, u64(uint64(bucket)), []byte(key)), nil)
}

func (s *sessionStore) Due(from, wm int64, limit int) ([]sessionize.IndexEntry, error) {
	lo := stateKey(s.p, kindIndex, u64(uint64(max(from, 0))))
	it, err := s.b.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: stateKey(s.p, kindIndex, u64(uint64(wm)+1))})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []sessionize.IndexEntry
	for it.First(); it.Valid() && len(out) < limit; it.Next() {
		k := it.Key()[4:]
		out = append(out, sessionize.IndexEntry{Bucket: int64(binary.BigEndian.Uint64(k)), Key: string(k[8:])})
	}
	return out, it.Error()
}

func (s *sessionStore) FirstDue(from int64) (int64, bool, error) {
	lo := stateKey(s.p, kindIndex)
	it, err := s.b.NewIter(&pebble.IterOptions{LowerBound: stateKey(s.p, kindIndex, u64(uint64(max(from, 0)))), UpperBound: prefixEnd(lo)})
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	if !it.First() {
		return 0, false, it.Error()
	}
	return int64(binary.BigEndian.Uint64(it.Key()[4:])), true, nil
}

func (s *sessionStore) Seen(org, device, id string) (int64, bool, error) {
	s.key, s.hbuf = appendDedupeKey(s.key[:0], s.hbuf, s.p, org, device, id)
	if at, ok := s.seen[string(s.key[4:])]; ok {
		return at, true, nil
	}
	if s.filter.mayContain(s.key[4:]) {
		at, ok, err := s.lookupTime(s.key)
		if err != nil || ok {
			return at, ok, err
		}
	}
	if !s.legacy {
		return 0, false, nil
	}
	// An entry of the old key: the messageId was seen in this org and
	// partition, on some device, before the upgrade. Taken as a duplicate
	// within its window, as the old version would have: a client retry that
	// straddles the upgrade is not delivered twice (the audit finds another
	// device's event dropped this way as missing, and backfill repairs it).
	s.key = appendLegacyDedupeKey(s.key[:0], s.p, org, id)
	return s.lookupTime(s.key)
}

// lookupTime reads a committed dedupe entry.
func (s *sessionStore) lookupTime(key []byte) (int64, bool, error) {
	v, ok, err := s.lookup(key)
	if err != nil || !ok {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("dedupe entry: %d bytes", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

func (s *sessionStore) Remember(org, device, id string, at int64) {
	var k []byte
	k, s.hbuf = appendDedupeKey(make([]byte, 0, dedupeKeyLen), s.hbuf, s.p, org, device, id)
	s.seen[string(k[4:])] = at
	s.filter.add(k[4:])
	if s.next != nil {
		s.next.add(k[4:])
	}
	s.b.Set(k, u64(uint64(at)), nil)
}

// hasLegacyDedupe reports whether partition p holds dedupe entries of the
// old key (see kindDedupeLegacy).
func hasLegacyDedupe(r pebble.Reader, p int) (bool, error) {
	lo := stateKey(p, kindDedupeLegacy)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return false, err
	}
	found := it.First()
	return found, errors.Join(it.Error(), it.Close())
}

func (s *sessionStore) Emit(o *sessionize.Output) error {
	o.Device = deviceForOutput(o)
	if s.outN == 0 {
		s.out = append(s.out[:0], outSegVersion)
	}
	s.buf = sessionize.MarshalOutput(s.buf[:0], o)
	s.out = binary.AppendUvarint(s.out, uint64(len(s.buf)))
	s.out = append(s.out, s.buf...)
	s.outN++
	s.hdr.NextSeq++
	s.emitted[o.Kind]++
	return nil
}

// deviceForOutput keeps event outputs small: the device is in the log record.
func deviceForOutput(o *sessionize.Output) string {
	if o.Kind == sessionize.KindEvent {
		return ""
	}
	return o.Device
}

// flush writes the chunk's outputs, device states and the header into the batch.
func (s *sessionStore) flush() {
	if s.outN > 0 {
		s.b.Set(outputKey(s.p, s.hdr.NextSeq-uint64(s.outN)), s.out, nil)
	}
	for k, d := range s.devices {
		key := stateKey(s.p, kindDevice, []byte(k))
		if d == nil {
			s.b.Delete(key, nil)
			continue
		}
		s.buf = sessionize.MarshalDevice(s.buf[:0], d)
		s.b.Set(key, s.buf, nil)
	}
	s.b.Set(stateKey(s.p, kindHeader), s.hdr.marshal(), nil)
}

// committed tells the device cache what the batch, now committed, holds.
func (s *sessionStore) committed() {
	for k, d := range s.devices {
		s.cache.put(k, d)
	}
	clear(s.devices)
}

// sweepDedupe visits up to limit dedupe entries (of both kinds) after the
// key from and deletes those first seen before cutoff. It returns where to
// continue (nil: start over). Forgetting an entry older than the window
// changes nothing a later Seen decides, so when and how fast the sweep runs
// does not affect determinism. The entries it keeps go into s.next, the
// filter its pass builds.
func (s *sessionStore) sweepDedupe(from []byte, cutoff int64, limit int) ([]byte, error) {
	if from == nil {
		from = stateKey(s.p, kindDedupeLegacy)
	}
	it, err := s.b.NewIter(&pebble.IterOptions{LowerBound: from, UpperBound: prefixEnd(stateKey(s.p, kindDedupe))})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	n := 0
	for it.First(); it.Valid(); it.Next() {
		if n == limit {
			return append([]byte(nil), it.Key()...), nil
		}
		n++
		k := it.Key()
		if v := it.Value(); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) < cutoff {
			s.b.Delete(append([]byte(nil), k...), nil)
		} else if s.next != nil && len(k) == dedupeKeyLen && k[3] == kindDedupe {
			s.next.add(k[4:])
		}
	}
	return nil, it.Error()
}
