package pipeline

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tidemark/tidemark/internal/sessionize"
)

func stateKey(p int, kind byte, parts ...[]byte) []byte {
	n := 4
	for _, x := range parts {
		n += len(x)
	}
	k := make([]byte, 4, n)
	k[0] = 'S'
	binary.BigEndian.PutUint16(k[1:], uint16(p))
	k[3] = kind
	for _, x := range parts {
		k = append(k, x...)
	}
	return k
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// OutputKey is the store key of partition p's output segment whose first
// item has sequence number seq (see ScanOutputs).
func OutputKey(p int, seq uint64) []byte {
	k := make([]byte, 11)
	k[0] = 'O'
	binary.BigEndian.PutUint16(k[1:], uint16(p))
	binary.BigEndian.PutUint64(k[3:], seq)
	return k
}

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	e := append([]byte(nil), p...)
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] < 0xff {
			e[i]++
			return e[:i+1]
		}
	}
	return nil
}

type header struct {
	Cursor    uint64 // last processed log offset
	Watermark int64
	NextSeq   uint64 // next output sequence number
}

func (h header) marshal() []byte {
	b := binary.BigEndian.AppendUint64(nil, h.Cursor)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Watermark))
	return binary.BigEndian.AppendUint64(b, h.NextSeq)
}

func readHeader(r pebble.Reader, p int) (header, error) {
	v, c, err := r.Get(stateKey(p, 'h'))
	if errors.Is(err, pebble.ErrNotFound) {
		return header{NextSeq: 1}, nil
	}
	if err != nil {
		return header{}, err
	}
	defer c.Close()
	if len(v) != 24 {
		return header{}, fmt.Errorf("sessionizer header of partition %d: %d bytes", p, len(v))
	}
	return header{Cursor: binary.BigEndian.Uint64(v), Watermark: int64(binary.BigEndian.Uint64(v[8:])), NextSeq: binary.BigEndian.Uint64(v[16:])}, nil
}

// store implements sessionize.Store over one indexed Pebble batch. Device
// states are cached for the chunk and written once at flush.
//
// Dedupe lookups, nearly all misses, go to one iterator over the committed
// state opened once per chunk, plus a map of the entries remembered in the
// chunk: only this partition's sessionizer writes its dedupe keys, so the two
// answer exactly what the batch would. The iterator keeps its tables'
// iterators open from lookup to lookup and rules a table out by its bloom
// filter, where a Get per lookup sets up and tears down an iterator for every
// table it consults (most of the sessionizer's CPU when L0 is deep).
type store struct {
	b       *pebble.Batch
	db      *pebble.DB
	it      *pebble.Iterator // over db, opened at the first lookup
	p       int
	hdr     *header
	cache   *deviceCache                  // committed device states, may be nil
	devices map[string]*sessionize.Device // nil value: deleted
	seen    map[string]int64              // dedupe entries remembered in this chunk
	legacy  bool                          // the partition may hold old-key dedupe entries
	buf     []byte
	out     []byte // the chunk's output segment
	outN    int
	key     []byte
	hbuf    []byte // scratch for dedupe keys
	emitted [5]int // outputs by sessionize.Kind
}

func newStore(db *pebble.DB, b *pebble.Batch, p int, hdr *header, cache *deviceCache, legacy bool) *store {
	return &store{b: b, db: db, p: p, hdr: hdr, cache: cache, legacy: legacy, devices: make(map[string]*sessionize.Device), seen: make(map[string]int64)}
}

// lookup reads a committed key; the value is valid until the next lookup.
func (s *store) lookup(key []byte) ([]byte, bool, error) {
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
func (s *store) close() error {
	if s.it == nil {
		return nil
	}
	err := s.it.Close()
	s.it = nil
	return err
}

func (s *store) Device(key string) (*sessionize.Device, error) {
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
	v, c, err := s.b.Get(stateKey(s.p, 'd', []byte(key)))
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

func (s *store) PutDevice(key string, d *sessionize.Device) { s.devices[key] = d }
func (s *store) DeleteDevice(key string)                    { s.devices[key] = nil }

func (s *store) Index(bucket int64, key string) {
	s.b.Set(stateKey(s.p, 'x', u64(uint64(bucket)), []byte(key)), nil, nil)
}

func (s *store) Unindex(bucket int64, key string) {
	s.b.Delete(stateKey(s.p, 'x', u64(uint64(bucket)), []byte(key)), nil)
}

func (s *store) Due(from, wm int64, limit int) ([]sessionize.IndexEntry, error) {
	lo := stateKey(s.p, 'x', u64(uint64(max(from, 0))))
	it, err := s.b.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: stateKey(s.p, 'x', u64(uint64(wm)+1))})
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

func (s *store) FirstDue(from int64) (int64, bool, error) {
	lo := stateKey(s.p, 'x')
	it, err := s.b.NewIter(&pebble.IterOptions{LowerBound: stateKey(s.p, 'x', u64(uint64(max(from, 0)))), UpperBound: prefixEnd(lo)})
	if err != nil {
		return 0, false, err
	}
	defer it.Close()
	if !it.First() {
		return 0, false, it.Error()
	}
	return int64(binary.BigEndian.Uint64(it.Key()[4:])), true, nil
}

// Kinds of dedupe entry. kindDedupe keys name an event by org, device and
// messageId; kindDedupeLegacy keys, written by earlier versions that
// deduplicated by org and messageId alone, are still read (see Seen) until
// the sweep has removed the last of them, one dedupe window after the
// upgrade.
const (
	kindDedupeLegacy = 'm'
	kindDedupe       = 'n'
)

// dedupeKeyLen is the length of a kindDedupe key.
const dedupeKeyLen = 4 + 16

// appendDedupeKey appends the dedupe key of (org, device, id) to k, using
// buf as scratch space, and returns both. The key is the state key prefix
// and the first 16 bytes of the SHA-256 of uvarint(len(org)) org
// uvarint(len(device)) device id: unambiguous whatever bytes the three hold,
// and 20 bytes however long they are (an exact key of a UUID device and an
// analytics.js messageId is about 90, and the index holds one per event of
// the window). Two events collide with probability 2^-128; a collision
// would drop the later one, and the audit, which compares device and
// messageId exactly, would report it missing.
func appendDedupeKey(k, buf []byte, p int, org, device, id string) ([]byte, []byte) {
	buf = binary.AppendUvarint(buf[:0], uint64(len(org)))
	buf = append(buf, org...)
	buf = binary.AppendUvarint(buf, uint64(len(device)))
	buf = append(append(buf, device...), id...)
	sum := sha256.Sum256(buf)
	k = append(k, 'S', byte(p>>8), byte(p), kindDedupe)
	return append(k, sum[:16]...), buf
}

func (s *store) Seen(org, device, id string) (int64, bool, error) {
	s.key, s.hbuf = appendDedupeKey(s.key[:0], s.hbuf, s.p, org, device, id)
	if at, ok := s.seen[string(s.key[4:])]; ok {
		return at, true, nil
	}
	at, ok, err := s.lookupTime(s.key)
	if err != nil || ok || !s.legacy {
		return at, ok, err
	}
	// An entry of the old key: the messageId was seen in this org and
	// partition, on some device, before the upgrade. Taken as a duplicate
	// within its window, as the old version would have: a client retry that
	// straddles the upgrade is not delivered twice (the audit finds another
	// device's event dropped this way as missing, and backfill repairs it).
	s.key = append(append(append(s.key[:0], 'S', byte(s.p>>8), byte(s.p), kindDedupeLegacy), org...), 0)
	s.key = append(s.key, id...)
	return s.lookupTime(s.key)
}

// lookupTime reads a committed dedupe entry.
func (s *store) lookupTime(key []byte) (int64, bool, error) {
	v, ok, err := s.lookup(key)
	if err != nil || !ok {
		return 0, false, err
	}
	if len(v) != 8 {
		return 0, false, fmt.Errorf("dedupe entry: %d bytes", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

func (s *store) Remember(org, device, id string, at int64) {
	var k []byte
	k, s.hbuf = appendDedupeKey(make([]byte, 0, dedupeKeyLen), s.hbuf, s.p, org, device, id)
	s.seen[string(k[4:])] = at
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

func (s *store) Emit(o *sessionize.Output) error {
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
func (s *store) flush() {
	if s.outN > 0 {
		s.b.Set(OutputKey(s.p, s.hdr.NextSeq-uint64(s.outN)), s.out, nil)
	}
	for k, d := range s.devices {
		key := stateKey(s.p, 'd', []byte(k))
		if d == nil {
			s.b.Delete(key, nil)
			continue
		}
		s.buf = sessionize.MarshalDevice(s.buf[:0], d)
		s.b.Set(key, s.buf, nil)
	}
	s.b.Set(stateKey(s.p, 'h'), s.hdr.marshal(), nil)
}

// committed tells the device cache what the batch, now committed, holds.
func (s *store) committed() {
	for k, d := range s.devices {
		s.cache.put(k, d)
	}
	clear(s.devices)
}

// sweepDedupe visits up to limit dedupe entries (of both kinds) after the
// key from and deletes those first seen before cutoff. It returns where to
// continue (nil: start over). Forgetting an entry older than the window
// changes nothing a later Seen decides, so when and how fast the sweep runs
// does not affect determinism.
func (s *store) sweepDedupe(from []byte, cutoff int64, limit int) ([]byte, error) {
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
		if v := it.Value(); len(v) == 8 && int64(binary.BigEndian.Uint64(v)) < cutoff {
			s.b.Delete(append([]byte(nil), it.Key()...), nil)
		}
	}
	return nil, it.Error()
}
