package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2"
)

// Cursors is the streaming pipeline's store (store/stream): each webhook's
// cursor per log partition, the offset of the last record it delivered. A
// Pebble instance of its own, opened by the streaming pipeline alone, so
// that it shares nothing with the batch pipeline but the log (invariant 5).
// Keys: 'c' org 0 name 0 p (2 bytes big endian); values 8 bytes big endian.
type Cursors struct {
	db *pebble.DB
}

// CursorsDir is the streaming pipeline's store under dataDir.
func CursorsDir(dataDir string) string { return filepath.Join(dataDir, "store", "stream") }

// OpenCursors opens or creates the cursor store under dataDir.
func OpenCursors(dataDir string, logger *slog.Logger) (*Cursors, error) {
	db, err := pebble.Open(CursorsDir(dataDir), &pebble.Options{Logger: quietLogger{logger.With("store", "stream")}})
	if err != nil {
		return nil, fmt.Errorf("open stream store: %w", err)
	}
	return &Cursors{db: db}, nil
}

// Close closes the store.
func (c *Cursors) Close() error { return c.db.Close() }

// Load reads the cursors of webhook org/name, one per partition of start,
// and calls set for each it knows. A cursor not stored yet is start's, and
// is stored durably before Load returns.
func (c *Cursors) Load(org, name string, start []uint64, set func(p int, off uint64)) error {
	b := c.db.NewBatch()
	defer b.Close()
	for p := range start {
		v, closer, err := c.db.Get(cursorKey(org, name, p))
		switch {
		case errors.Is(err, pebble.ErrNotFound):
			set(p, start[p])
			b.Set(cursorKey(org, name, p), binary.BigEndian.AppendUint64(nil, start[p]), nil)
		case err != nil:
			return fmt.Errorf("read webhook cursor: %w", err)
		default:
			if len(v) == 8 {
				set(p, binary.BigEndian.Uint64(v))
			}
			closer.Close()
		}
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store webhook cursors: %w", err)
	}
	return nil
}

// Set stores webhook org/name's cursor of partition p, not synced: Sync
// makes every earlier Set durable.
func (c *Cursors) Set(org, name string, p int, off uint64) error {
	if err := c.db.Set(cursorKey(org, name, p), binary.BigEndian.AppendUint64(nil, off), pebble.NoSync); err != nil {
		return fmt.Errorf("store webhook cursor: %w", err)
	}
	return nil
}

// Sync makes the cursors set so far durable.
func (c *Cursors) Sync() error {
	if err := c.db.LogData(nil, pebble.Sync); err != nil {
		return fmt.Errorf("sync webhook cursors: %w", err)
	}
	return nil
}

// MaxCursors returns, per log partition, the largest webhook cursor in the
// cursor store under dataDir (every webhook's, also of webhooks no longer
// configured). No store: all zero.
func MaxCursors(dataDir string, partitions int, logger *slog.Logger) (_ []uint64, err error) {
	out := make([]uint64, partitions)
	if _, err := os.Stat(CursorsDir(dataDir)); errors.Is(err, os.ErrNotExist) {
		return out, nil
	}
	c, err := OpenCursors(dataDir, logger)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, c.Close()) }()
	it, err := c.db.NewIter(&pebble.IterOptions{LowerBound: []byte("c"), UpperBound: []byte("d")})
	if err != nil {
		return nil, fmt.Errorf("read webhook cursors: %w", err)
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("read webhook cursors: %w", err)
		}
		if len(k) < 3 || len(v) != 8 {
			continue
		}
		if p := int(binary.BigEndian.Uint16(k[len(k)-2:])); p < partitions {
			out[p] = max(out[p], binary.BigEndian.Uint64(v))
		}
	}
	if err := it.Error(); err != nil {
		return nil, fmt.Errorf("read webhook cursors: %w", err)
	}
	return out, nil
}
