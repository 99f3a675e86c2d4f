package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"unsafe"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
)

// createdBy is written instead of parquet-go's default, which embeds the
// library version: output must not change just because a dependency did.
const createdBy = "tidemark version 1"

// rowChunk is how many rows are handed to the parquet writer at once.
const rowChunk = 512

func parquetCodec(c Compression) compress.Codec {
	switch c {
	case Snappy:
		return &parquet.Snappy
	case Gzip:
		return &parquet.Gzip // fixed level, zero mtime header
	case None:
		return &parquet.Uncompressed
	default:
		return zstdPages // SpeedDefault, 1 MiB window, no checksum
	}
}

// writeParquet builds parquet rows from the column plan rather than letting
// parquet-go reflect over T: its reflection writer stores NULL for optional
// JSON columns held in a *string (as of v0.32, cf. parquet-go issues #303,
// #436), and one explicit path is easier to keep deterministic.
func writeParquet[T Row](w io.Writer, c Compression, rows []T) error {
	var zero T
	schema := parquet.SchemaOf(zero)
	cols := columnsOf(reflect.TypeFor[T]())
	pw := parquet.NewWriter(w, schema,
		parquet.Compression(parquetCodec(c)),
		&parquet.WriterConfig{CreatedBy: createdBy},
		// Version 1 data pages are what parquet-mr and Arrow write by
		// default and what every warehouse reader handles.
		parquet.DataPageVersion(1),
	)
	values := make([]parquet.Value, rowChunk*len(cols))
	batch := make([]parquet.Row, 0, rowChunk)
	for start := 0; start < len(rows); start += rowChunk {
		batch = batch[:0]
		for i := start; i < min(start+rowChunk, len(rows)); i++ {
			row := values[len(batch)*len(cols) : (len(batch)+1)*len(cols)]
			parquetRow(row, reflect.ValueOf(&rows[i]).Elem(), cols)
			batch = append(batch, row)
		}
		if _, err := pw.WriteRows(batch); err != nil {
			return fmt.Errorf("write parquet %s: %w", Table[T](), err)
		}
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("write parquet %s: %w", Table[T](), err)
	}
	return nil
}

// parquetRow fills dst with the column values of v. Strings are referenced,
// not copied; the writer copies them into its column buffers.
func parquetRow(dst []parquet.Value, v reflect.Value, cols []column) {
	for i, c := range cols {
		f := v.Field(c.index)
		def := 0
		if c.optional {
			if f.IsNil() {
				dst[i] = parquet.NullValue().Level(0, 0, i)
				continue
			}
			f, def = f.Elem(), 1
		}
		var pv parquet.Value
		switch {
		case c.kind == kindString || c.kind == kindJSON:
			s := f.String()
			pv = parquet.ByteArrayValue(unsafe.Slice(unsafe.StringData(s), len(s)))
		case f.Kind() == reflect.Int32:
			pv = parquet.Int32Value(int32(f.Int()))
		default:
			pv = parquet.Int64Value(f.Int())
		}
		dst[i] = pv.Level(0, def, i)
	}
}

func readParquet[T Row](data []byte) (rows []T, err error) {
	// parquet-go can panic on malformed input; the audit reads files written
	// by others and must report them, not crash.
	defer func() {
		if r := recover(); r != nil {
			rows, err = nil, fmt.Errorf("read parquet %s: malformed file: %v", Table[T](), r)
		}
	}()
	rows, err = readParquetRows[T](data)
	if err != nil {
		return nil, fmt.Errorf("read parquet %s: %w", Table[T](), err)
	}
	return rows, nil
}

func readParquetRows[T Row](data []byte) ([]T, error) {
	// parquet-go allocates the footer length read from the file before
	// checking it against the file size: a few corrupt bytes would cost
	// gigabytes. Layout: "PAR1" ... footer, uint32 LE footer length, "PAR1".
	if len(data) < 12 {
		return nil, errors.New("file too short")
	}
	if n := binary.LittleEndian.Uint32(data[len(data)-8:]); int64(n) > int64(len(data)-12) {
		return nil, fmt.Errorf("footer length %d exceeds the file", n)
	}
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, err
	}
	cols := columnsOf(reflect.TypeFor[T]())
	// Map the file's columns to ours by name, so that a file with extra
	// columns (a newer writer) or without an optional one (an older writer)
	// still reads.
	fileCols := f.Schema().Columns()
	plan := make([]int, len(fileCols)) // file column -> index in cols, or -1
	for i := range plan {
		plan[i] = -1
	}
	for j, c := range cols {
		leaf, ok := f.Schema().Lookup(c.name)
		if !ok {
			if c.optional {
				continue
			}
			return nil, fmt.Errorf("column %s: missing", c.name)
		}
		if err := checkLeaf(leaf, c, reflect.TypeFor[T]().Field(c.index).Type); err != nil {
			return nil, fmt.Errorf("column %s: %w", c.name, err)
		}
		plan[leaf.ColumnIndex] = j
	}

	out := make([]T, 0, max(0, min(f.NumRows(), 1<<16))) // NumRows is untrusted
	buf := make([]parquet.Row, 256)
	for _, rg := range f.RowGroups() {
		rr := rg.Rows()
		for {
			n, err := rr.ReadRows(buf)
			for _, prow := range buf[:n] {
				var row T
				if err := fillRow(reflect.ValueOf(&row).Elem(), cols, plan, prow); err != nil {
					rr.Close()
					return nil, fmt.Errorf("row %d: %w", len(out), err)
				}
				out = append(out, row)
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				rr.Close()
				return nil, err
			}
		}
		if err := rr.Close(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func checkLeaf(leaf parquet.LeafColumn, c column, goType reflect.Type) error {
	if leaf.MaxRepetitionLevel != 0 || leaf.Path == nil || len(leaf.Path) != 1 {
		return errors.New("not a top-level scalar column")
	}
	if leaf.MaxDefinitionLevel > 0 && !c.optional {
		return errors.New("optional in the file, required in the table")
	}
	want := parquet.Int64
	switch {
	case c.kind == kindString || c.kind == kindJSON:
		want = parquet.ByteArray
	case goType.Kind() == reflect.Int32 || (goType.Kind() == reflect.Pointer && goType.Elem().Kind() == reflect.Int32):
		want = parquet.Int32
	}
	if got := leaf.Node.Type().Kind(); got != want {
		return fmt.Errorf("physical type %s, want %s", got, want)
	}
	return nil
}

func fillRow(v reflect.Value, cols []column, plan []int, prow parquet.Row) error {
	for _, pv := range prow {
		ci := pv.Column()
		if ci < 0 || ci >= len(plan) || plan[ci] < 0 {
			continue
		}
		c := cols[plan[ci]]
		f := v.Field(c.index)
		if pv.IsNull() {
			if !c.optional {
				return fmt.Errorf("column %s: %w", c.name, errNull)
			}
			continue
		}
		if c.optional {
			f.Set(reflect.New(f.Type().Elem()))
			f = f.Elem()
		}
		switch pv.Kind() {
		case parquet.ByteArray:
			f.SetString(string(pv.ByteArray()))
		case parquet.Int32:
			f.SetInt(int64(pv.Int32()))
		default:
			f.SetInt(pv.Int64())
		}
	}
	return nil
}
