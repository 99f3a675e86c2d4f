package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/gzip"
)

// gzipLevel is fixed: the bytes of a file must not depend on configuration
// that could change between a crash and its replay.
const gzipLevel = 6

// timeLayout is RFC 3339 in UTC with exactly microsecond precision, the
// precision of the Parquet columns; fixed width keeps lines comparable.
const timeLayout = "2006-01-02T15:04:05.000000Z07:00"

type kind uint8

const (
	kindString kind = iota
	kindInt
	kindTime // int64 microseconds, written as an RFC 3339 string
	kindJSON // raw JSON text, embedded as a JSON value
)

// column is one field of a row struct, described by its json and parquet tags
// so that rows.go stays the single source of truth for both encodings.
type column struct {
	index    int
	name     string
	kind     kind
	optional bool
}

var columnsCache sync.Map // reflect.Type -> []column

func columnsOf(t reflect.Type) []column {
	if c, ok := columnsCache.Load(t); ok {
		return c.([]column)
	}
	var cols []column
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		opts := strings.Split(f.Tag.Get("parquet"), ",")[1:]
		c := column{index: i, name: name}
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			c.optional = true
			ft = ft.Elem()
		}
		switch {
		case hasOption(opts, "json"):
			c.kind = kindJSON
		case hasOption(opts, "timestamp"):
			c.kind = kindTime
		case ft.Kind() == reflect.String:
			c.kind = kindString
		default:
			c.kind = kindInt
		}
		cols = append(cols, c)
	}
	columnsCache.Store(t, cols)
	return cols
}

func hasOption(opts []string, name string) bool {
	for _, o := range opts {
		if o == name || strings.HasPrefix(o, name+"(") {
			return true
		}
	}
	return false
}

func writeNDJSON[T Row](w io.Writer, rows []T) error {
	zw, err := gzip.NewWriterLevel(w, gzipLevel) // zero Header: no name, mtime 0
	if err != nil {
		return err
	}
	cols := columnsOf(reflect.TypeFor[T]())
	var line []byte
	for i := range rows {
		line, err = appendRow(line[:0], reflect.ValueOf(&rows[i]).Elem(), cols)
		if err != nil {
			return fmt.Errorf("write ndjson %s row %d: %w", Table[T](), i, err)
		}
		if _, err := zw.Write(line); err != nil {
			return fmt.Errorf("write ndjson %s: %w", Table[T](), err)
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("write ndjson %s: %w", Table[T](), err)
	}
	return nil
}

func appendRow(dst []byte, v reflect.Value, cols []column) ([]byte, error) {
	dst = append(dst, '{')
	for i, c := range cols {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, c.name)
		dst = append(dst, ':')
		f := v.Field(c.index)
		if c.optional {
			if f.IsNil() {
				dst = append(dst, "null"...)
				continue
			}
			f = f.Elem()
		}
		switch c.kind {
		case kindString:
			dst = appendString(dst, f.String())
		case kindInt:
			dst = strconv.AppendInt(dst, f.Int(), 10)
		case kindTime:
			t := time.UnixMicro(f.Int()).UTC()
			if y := t.Year(); y < 0 || y > 9999 {
				return nil, fmt.Errorf("column %s: timestamp %d µs is outside years 0-9999", c.name, f.Int())
			}
			dst = append(dst, '"')
			dst = t.AppendFormat(dst, timeLayout)
			dst = append(dst, '"')
		case kindJSON:
			// Compacted so that a pretty-printed value cannot break the
			// one-object-per-line framing.
			var b bytes.Buffer
			if err := json.Compact(&b, []byte(f.String())); err != nil {
				return nil, fmt.Errorf("column %s: not valid JSON: %w", c.name, err)
			}
			dst = append(dst, b.Bytes()...)
		}
	}
	return append(dst, '}', '\n'), nil
}

// appendString appends s as a JSON string. Unlike encoding/json it does not
// escape <, > and &, which keeps URLs readable; like it, it replaces invalid
// UTF-8 with U+FFFD and escapes U+2028 and U+2029.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func readNDJSON[T Row](data []byte) ([]T, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("read ndjson %s: %w", Table[T](), err)
	}
	cols := columnsOf(reflect.TypeFor[T]())
	dec := json.NewDecoder(zr)
	dec.UseNumber()
	var rows []T
	for line := 1; ; line++ {
		var obj map[string]json.RawMessage
		if err := dec.Decode(&obj); err == io.EOF {
			break
		} else if err != nil {
			return nil, fmt.Errorf("read ndjson %s line %d: %w", Table[T](), line, err)
		}
		var row T
		if err := decodeRow(reflect.ValueOf(&row).Elem(), cols, obj); err != nil {
			return nil, fmt.Errorf("read ndjson %s line %d: %w", Table[T](), line, err)
		}
		rows = append(rows, row)
	}
	if err := zr.Close(); err != nil {
		return nil, fmt.Errorf("read ndjson %s: %w", Table[T](), err)
	}
	return rows, nil
}

var errNull = errors.New("null in a required column")

func decodeRow(v reflect.Value, cols []column, obj map[string]json.RawMessage) error {
	if len(obj) > len(cols) {
		return unknownColumn(cols, obj)
	}
	for _, c := range cols {
		raw, ok := obj[c.name]
		if !ok {
			if err := unknownColumn(cols, obj); err != nil {
				return err
			}
			return fmt.Errorf("column %s: missing", c.name)
		}
		f := v.Field(c.index)
		if string(raw) == "null" {
			if !c.optional {
				return fmt.Errorf("column %s: %w", c.name, errNull)
			}
			continue
		}
		if c.optional {
			f.Set(reflect.New(f.Type().Elem()))
			f = f.Elem()
		}
		switch c.kind {
		case kindString:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("column %s: %w", c.name, err)
			}
			f.SetString(s)
		case kindInt:
			n, err := strconv.ParseInt(string(raw), 10, f.Type().Bits())
			if err != nil {
				return fmt.Errorf("column %s: %w", c.name, err)
			}
			f.SetInt(n)
		case kindTime:
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return fmt.Errorf("column %s: %w", c.name, err)
			}
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return fmt.Errorf("column %s: %w", c.name, err)
			}
			f.SetInt(t.UnixMicro())
		case kindJSON:
			f.SetString(string(raw))
		}
	}
	return nil
}

func unknownColumn(cols []column, obj map[string]json.RawMessage) error {
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !slices.ContainsFunc(cols, func(c column) bool { return c.name == k }) {
			return fmt.Errorf("unknown column %q", k)
		}
	}
	return nil
}
