package eventlog

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A segment is the store value that holds consecutive records of one
// partition, written by one group commit (see doc.go for the layout). Records
// keep their own offsets: record i of the segment under key (p, first) has
// offset first+i.

// segVersion is the segment format written by this build.
const segVersion = 1

// maxSegmentBytes caps one segment's encoded size: a large group commit is
// split into several segments, so that a reader never holds (or decodes past)
// more than this to get at one record, and a segment stays a small part of
// the log store's block cache. At 64 KiB the per-key costs are already
// spread over a hundred or more records.
const maxSegmentBytes = 64 << 10

// ErrCorruptSegment is wrapped by every segment decoding error.
var ErrCorruptSegment = errors.New("corrupt log segment")

// segWriter builds one segment.
type segWriter struct {
	b     []byte
	n     int
	first uint64
}

func (w *segWriter) reset(first uint64) {
	w.b = append(w.b[:0], segVersion)
	w.n = 0
	w.first = first
}

func (w *segWriter) add(rec []byte) {
	w.b = binary.AppendUvarint(w.b, uint64(len(rec)))
	w.b = append(w.b, rec...)
	w.n++
}

// segment is a decoded segment: the records' positions in the value, which
// it aliases.
type segment struct {
	first uint64
	val   []byte
	ends  []int // end of record i in val; record i starts at the end of its length prefix
	start []int // start of record i in val
}

// parse indexes val, the segment stored under first. It reuses s's slices.
func (s *segment) parse(first uint64, val []byte) error {
	s.first, s.val = first, val
	s.start, s.ends = s.start[:0], s.ends[:0]
	if len(val) == 0 || val[0] != segVersion {
		if len(val) == 0 {
			return fmt.Errorf("%w: empty", ErrCorruptSegment)
		}
		return fmt.Errorf("%w: unknown version %d", ErrCorruptSegment, val[0])
	}
	pos := 1
	for pos < len(val) {
		l, n := binary.Uvarint(val[pos:])
		if n <= 0 || l == 0 || l > uint64(len(val)-pos-n) {
			return fmt.Errorf("%w: bad record length at byte %d", ErrCorruptSegment, pos)
		}
		pos += n
		s.start = append(s.start, pos)
		pos += int(l)
		s.ends = append(s.ends, pos)
	}
	if len(s.start) == 0 {
		return fmt.Errorf("%w: no records", ErrCorruptSegment)
	}
	if first+uint64(len(s.start))-1 < first {
		return fmt.Errorf("%w: offsets overflow", ErrCorruptSegment)
	}
	return nil
}

// last is the offset of the segment's last record.
func (s *segment) last() uint64 { return s.first + uint64(len(s.start)) - 1 }

// contains reports whether off is in the segment.
func (s *segment) contains(off uint64) bool { return off >= s.first && off <= s.last() }

// record returns the record at off, which must be in the segment.
func (s *segment) record(off uint64) []byte {
	i := off - s.first
	return s.val[s.start[i]:s.ends[i]:s.ends[i]]
}

// segmentLast is the offset of the last record of val, the segment stored
// under first.
func segmentLast(first uint64, val []byte) (uint64, error) {
	var s segment
	if err := s.parse(first, val); err != nil {
		return 0, err
	}
	return s.last(), nil
}
