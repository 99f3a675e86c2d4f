package postgres

import (
	"encoding/binary"
	"io"
	"math"
	"strings"
)

// copyWriter encodes rows in PostgreSQL's binary COPY format (COPY ... FROM
// STDIN (FORMAT binary)): a header, then per row the field count and each
// field as a 4-byte length (-1: NULL) and its binary value, then a trailer.
// Values are appended to buf straight from the batch's rows: no value is
// boxed or copied on the way, so a clean row costs no allocation.
type copyWriter struct {
	buf   []byte
	batch string // the _tidemark_batch of every row

	// Escaping (escape.go): the row and column being written, the
	// originals of the row's altered values, and the values the fallback
	// found PostgreSQL refusing (nil on the clean path).
	row, col int
	cols     []string // the table's column names, for _tidemark_escaped
	esc      []escaped
	fix      map[cell]bool
	escapes  int // values escaped so far
}

// cell is one value of a table: its row (0-based, in batch order) and
// column (index in the table's column list).
type cell struct{ row, col int }

// escaped is a value that was altered to be storable: its column and its
// original bytes.
type escaped struct {
	col  int
	orig string
}

// pgEpochMicros is 2000-01-01 UTC, PostgreSQL's timestamp epoch, in
// microseconds since the Unix epoch.
const pgEpochMicros = 946684800 * 1000000

const copyHeader = "PGCOPY\n\xff\r\n\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00" // signature, flags, no extension

func (w *copyWriter) length(n int) { w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(n)) }
func (w *copyWriter) null()        { w.buf = append(w.buf, 0xff, 0xff, 0xff, 0xff) }

func (w *copyWriter) text(s string) {
	if !textOK(s) {
		w.esc = append(w.esc, escaped{w.col, s})
		s = storableText(s)
	}
	w.raw(s)
}

func (w *copyWriter) raw(s string) {
	w.length(len(s))
	w.buf = append(w.buf, s...)
}

func (w *copyWriter) textPtr(s *string) {
	if s == nil {
		w.null()
		return
	}
	w.text(*s)
}

// json writes a jsonb value: a version byte (1) and the JSON text.
func (w *copyWriter) json(s *string) {
	if s == nil {
		w.null()
		return
	}
	v := *s
	if w.fix != nil && w.fix[cell{w.row, w.col}] {
		// PostgreSQL refused the value even so (a number or nesting beyond
		// its limits): store NULL and the original.
		w.esc = append(w.esc, escaped{w.col, v})
		w.null()
		return
	}
	if !jsonOK(v) {
		w.esc = append(w.esc, escaped{w.col, v})
		v = storableJSON(v)
	}
	w.jsonb(v)
}

func (w *copyWriter) jsonb(v string) {
	w.length(len(v) + 1)
	w.buf = append(w.buf, 1)
	w.buf = append(w.buf, v...)
}

func (w *copyWriter) time(us int64) {
	v := us - pgEpochMicros
	if us < math.MinInt64+pgEpochMicros {
		v = math.MinInt64 + 1 // out of range (MinInt64 itself is -infinity): PostgreSQL refuses it
	}
	w.length(8)
	w.buf = binary.BigEndian.AppendUint64(w.buf, uint64(v))
}

func (w *copyWriter) timePtr(us *int64) {
	if us == nil {
		w.null()
		return
	}
	w.time(*us)
}

func (w *copyWriter) int64(v int64) {
	w.length(8)
	w.buf = binary.BigEndian.AppendUint64(w.buf, uint64(v))
}

func (w *copyWriter) int32(v int32) {
	w.length(4)
	w.buf = binary.BigEndian.AppendUint32(w.buf, uint32(v))
}

// row writes row i of cols, then tidemark's columns.
func row[T any](w *copyWriter, cols []column[T], r *T, i int) {
	w.buf = binary.BigEndian.AppendUint16(w.buf, uint16(len(cols)+2))
	w.row = i
	for j := range cols {
		w.col = j
		cols[j].put(w, r)
	}
	w.raw(w.batch)
	if len(w.esc) == 0 {
		w.null() // _tidemark_escaped
		return
	}
	w.jsonb(escapedJSON(w.cols, w.esc))
	w.escapes += len(w.esc)
	w.esc = w.esc[:0]
}

// copySource is the COPY data of rows, as an io.Reader for pgconn's
// CopyFrom: it encodes rows on demand, a buffer's worth at a time.
type copySource[T any] struct {
	w    copyWriter
	cols []column[T]
	rows []T
	next int // the next row to encode
	off  int // what of w.buf was read
	done bool
}

func newCopySource[T any](batch string, cols []column[T], rows []T, fix map[cell]bool) *copySource[T] {
	s := &copySource[T]{w: copyWriter{batch: batch, buf: make([]byte, 0, 64<<10), cols: names(cols), fix: fix}, cols: cols, rows: rows}
	s.w.buf = append(s.w.buf, copyHeader...)
	return s
}

func (s *copySource[T]) Read(p []byte) (int, error) {
	for s.off == len(s.w.buf) {
		if s.done {
			return 0, io.EOF
		}
		s.w.buf, s.off = s.w.buf[:0], 0
		for s.next < len(s.rows) && len(s.w.buf) < len(p) {
			row(&s.w, s.cols, &s.rows[s.next], s.next)
			s.next++
		}
		if s.next == len(s.rows) {
			s.w.buf = append(s.w.buf, 0xff, 0xff) // trailer
			s.done = true
		}
	}
	n := copy(p, s.w.buf[s.off:])
	s.off += n
	return n, nil
}

// copySQL is the COPY statement that loads cols into table.
func copySQL[T any](table string, cols []column[T]) string {
	return "COPY " + table + " (" + strings.Join(names(cols), ", ") + ") FROM STDIN (FORMAT binary)"
}
