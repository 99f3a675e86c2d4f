package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tidemark/tidemark/internal/sessionize"
)

// An output segment is the store value holding the output items one chunk
// produced, under outputKey(p, seq of its first item): a format byte
// (outSegVersion) and then each item as a uvarint length and its
// sessionize.MarshalOutput encoding; item i has sequence number first+i. One
// value per chunk instead of one key per item spares the state store most of
// its per-key work (writes, flushes, compactions, the transports' scans).
const outSegVersion = 1

// errStopScan ends ScanOutputs early without an error.
var errStopScan = errors.New("stop scan")

// splitOutputs calls fn for each item of the segment val stored under first.
func splitOutputs(first uint64, val []byte, fn func(seq uint64, item []byte) error) error {
	if len(val) < 2 || val[0] != outSegVersion {
		return fmt.Errorf("%w: output segment %d: bad header", sessionize.ErrCorrupt, first)
	}
	seq := first
	for pos := 1; pos < len(val); seq++ {
		l, n := binary.Uvarint(val[pos:])
		if n <= 0 || l == 0 || l > uint64(len(val)-pos-n) {
			return fmt.Errorf("%w: output segment %d: bad item length at byte %d", sessionize.ErrCorrupt, first, pos)
		}
		pos += n
		if err := fn(seq, val[pos:pos+int(l):pos+int(l)]); err != nil {
			return err
		}
		pos += int(l)
	}
	return nil
}

// ScanOutputs calls fn for the output items of partition p with sequence
// numbers from..to, in order. o is valid only during the call; fn returning
// an error stops the scan with it.
func (s *State) ScanOutputs(p int, from, to uint64, fn func(seq uint64, o *sessionize.Output) error) error {
	if from > to {
		return nil
	}
	lo, hi := outputBounds(p)
	if to < 1<<63 {
		hi = outputKey(p, to+1)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	// The segment holding from starts at or before it.
	ok := it.SeekLT(outputKey(p, from+1))
	if !ok {
		if err := it.Error(); err != nil {
			return err
		}
		ok = it.First()
	}
	for ; ok; ok = it.Next() {
		err := splitOutputs(binary.BigEndian.Uint64(it.Key()[3:]), it.Value(), func(seq uint64, item []byte) error {
			if seq < from {
				return nil
			}
			if seq > to {
				return errStopScan
			}
			o, err := sessionize.UnmarshalOutput(item)
			if err != nil {
				return fmt.Errorf("output %d: %w", seq, err)
			}
			return fn(seq, &o)
		})
		if err == errStopScan {
			return nil
		}
		if err != nil {
			return err
		}
	}
	return it.Error()
}

// DeleteOutputsThrough removes partition p's output segments whose items all
// have sequence numbers up to handled; a segment that also holds later items
// stays whole (readers skip its handled items).
func (s *State) DeleteOutputsThrough(p int, handled uint64) error {
	if handled == 0 {
		return nil
	}
	end := handled + 1
	lo, hi := outputBounds(p)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	if it.SeekLT(outputKey(p, handled+1)) {
		first := binary.BigEndian.Uint64(it.Key()[3:])
		var last uint64
		if err := splitOutputs(first, it.Value(), func(seq uint64, _ []byte) error { last = seq; return nil }); err != nil {
			it.Close()
			return err
		}
		if last > handled {
			end = first
		}
	}
	if err := errors.Join(it.Error(), it.Close()); err != nil {
		return err
	}
	return s.db.DeleteRange(lo, outputKey(p, end), pebble.NoSync)
}

// CheckOutputs reads every output segment not yet deleted (those some
// destination has not delivered: a backlog, not the history) and reports
// the first that cannot be read back or parsed. A damaged state store is
// then refused at start, where the rest of the server would otherwise meet
// it later in a background stage (a Pebble panic reading a damaged blob
// file is not recoverable everywhere).
func (s *State) CheckOutputs() (err error) {
	var at []byte
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: output segment %x: reading it failed: %v", sessionize.ErrCorrupt, at, r)
		}
	}()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: outputKey(0, 0)[:1], UpperBound: prefixEnd(outputKey(0, 0)[:1])})
	if err != nil {
		return err
	}
	defer it.Close()
	for ok := it.First(); ok; ok = it.Next() {
		at = it.Key()
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("output segment %x: %w", at, err)
		}
		if len(at) != 11 {
			return fmt.Errorf("%w: output key %x", sessionize.ErrCorrupt, at)
		}
		if err := splitOutputs(binary.BigEndian.Uint64(at[3:]), v, func(uint64, []byte) error { return nil }); err != nil {
			return err
		}
	}
	return it.Error()
}

// FirstEventOffset returns the log offset of the first event output of
// partition p with a sequence number in from..to, or 0 when there is none.
func (s *State) FirstEventOffset(p int, from, to uint64) (uint64, error) {
	var off uint64
	err := s.ScanOutputs(p, from, to, func(_ uint64, o *sessionize.Output) error {
		if o.Kind == sessionize.KindEvent {
			off = o.Offset
			return errStopScan
		}
		return nil
	})
	if err == errStopScan {
		err = nil
	}
	return off, err
}
