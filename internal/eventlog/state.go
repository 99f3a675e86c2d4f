package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// State is the state store (store/state): the small state the other stages
// keep beside the log, each under its own key prefix (doc.go). Its methods
// are the only way to it: the stages read and write their state through
// them (the sessionizer through SessionHeader, UpdateSessions and the
// output methods, a transport through Progress and SetProgress) and never
// see a key or the store. Safe for concurrent use; UpdateSessions of one
// partition must not run concurrently with itself.
type State struct {
	db    *pebble.DB
	parts []partState
}

// partState is what State keeps between UpdateSessions calls of one
// partition; only that partition's sessionizer uses it.
type partState struct {
	cache  *deviceCache // committed device states
	sweep  []byte       // where the dedupe sweep goes on (nil: from the start)
	legacy bool         // old-key dedupe entries may remain (see sessionStore.Seen)
	known  bool         // legacy has been read from the store
	// filter holds every dedupe key of the store (nil until the first
	// chunk); next is the one the sweep's current pass builds.
	filter, next *dedupeFilter
}

func newState(db *pebble.DB, parts int) *State {
	s := &State{db: db, parts: make([]partState, parts)}
	for p := range s.parts {
		s.parts[p].cache = newDeviceCache()
	}
	return s
}

// State returns the state store.
func (l *Log) State() *State { return l.st }

// Progress is the local progress record of destination org/name in
// partition p: the sequence number of the last output item it committed
// (0 when none).
func (s *State) Progress(org, name string, p int) (uint64, error) {
	v, c, err := s.db.Get(progressKey(org, name, p))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return binary.BigEndian.Uint64(v), nil
}

// SetProgress stores the local progress record of destination org/name in
// partition p. It is not synced: after a crash the destination's own
// manifests tell how far it got.
func (s *State) SetProgress(org, name string, p int, seq uint64) error {
	return s.db.Set(progressKey(org, name, p), binary.BigEndian.AppendUint64(nil, seq), pebble.NoSync)
}

// Stats are figures of the state store for benchmarks and diagnostics.
type Stats struct {
	CacheEntries, CacheHits, CacheMisses int64
	CacheBytes                           int64 // block cache in use
	MemTables, ZombieMemTables           int64
	MemTableBytes, ZombieMemTableBytes   uint64
	L0Tables                             int64
	ReadAmp                              int
	DiskBytes                            uint64
}

// Stats returns the state store's current figures.
func (s *State) Stats() Stats {
	m := s.db.Metrics()
	return Stats{CacheEntries: m.BlockCache.Count, CacheHits: m.BlockCache.Hits, CacheMisses: m.BlockCache.Misses,
		CacheBytes: m.BlockCache.Size, MemTables: m.MemTable.Count, ZombieMemTables: m.MemTable.ZombieCount,
		MemTableBytes: m.MemTable.Size, ZombieMemTableBytes: m.MemTable.ZombieSize,
		L0Tables: m.Levels[0].TablesCount, ReadAmp: m.ReadAmp(), DiskBytes: m.DiskSpaceUsage()}
}

// OpenDevices counts partition p's device states: the devices with an open
// page or session.
func (s *State) OpenDevices(p int) (int, error) {
	lo := stateKey(p, kindDevice)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return 0, err
	}
	n := 0
	for ok := it.First(); ok; ok = it.Next() {
		n++
	}
	return n, errors.Join(it.Error(), it.Close())
}

// SessionHeader is a partition's sessionizer checkpoint: committed with the
// state and outputs of each chunk of records.
type SessionHeader struct {
	Cursor    uint64 // last processed log offset
	Watermark int64
	NextSeq   uint64 // next output sequence number
}

func (h SessionHeader) marshal() []byte {
	b := binary.BigEndian.AppendUint64(nil, h.Cursor)
	b = binary.BigEndian.AppendUint64(b, uint64(h.Watermark))
	return binary.BigEndian.AppendUint64(b, h.NextSeq)
}

// SessionHeader reads partition p's committed sessionizer header; a
// partition never processed starts at NextSeq 1.
func (s *State) SessionHeader(p int) (SessionHeader, error) {
	v, c, err := s.db.Get(stateKey(p, kindHeader))
	if errors.Is(err, pebble.ErrNotFound) {
		return SessionHeader{NextSeq: 1}, nil
	}
	if err != nil {
		return SessionHeader{}, err
	}
	defer c.Close()
	if len(v) != 24 {
		return SessionHeader{}, fmt.Errorf("sessionizer header of partition %d: %d bytes", p, len(v))
	}
	return SessionHeader{Cursor: binary.BigEndian.Uint64(v), Watermark: int64(binary.BigEndian.Uint64(v[8:])), NextSeq: binary.BigEndian.Uint64(v[16:])}, nil
}

// filterBytes bounds one partition's dedupe filter (dedupeFilterMaxBytes
// over all partitions).
func (s *State) filterBytes() int { return dedupeFilterMaxBytes / len(s.parts) }

// StoreMetrics is Pebble's own report of both stores (levels, compactions,
// write amplification, caches, filters), for diagnostics (serve --pprof).
func (l *Log) StoreMetrics() string {
	return "store/log:\n" + l.db.Metrics().String() + "\nstore/state:\n" + l.state.Metrics().String()
}
