package format

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Encoding is the file encoding of an output file.
type Encoding string

const (
	Parquet Encoding = "parquet" // Apache Parquet, one row group
	NDJSON  Encoding = "ndjson"  // newline-delimited JSON, gzip-compressed
)

// Compression is the page compression of a Parquet file.
type Compression string

const (
	Zstd   Compression = "zstd" // the default
	Snappy Compression = "snappy"
	Gzip   Compression = "gzip"
	None   Compression = "none"
)

// Table names, as used in object keys and manifests.
const (
	Events   = "events"
	Pages    = "pages"
	Sessions = "sessions"
)

// Row is one of the three table row types.
type Row interface {
	EventRow | PageRow | SessionRow
}

// Table returns the table name of row type T.
func Table[T Row]() string {
	var zero T
	switch any(zero).(type) {
	case EventRow:
		return Events
	case PageRow:
		return Pages
	default:
		return Sessions
	}
}

// Codec is a validated output format: an encoding and, for Parquet, a page
// compression. Use ParseCodec to build one; the zero Codec is invalid.
type Codec struct {
	enc  Encoding
	comp Compression
}

// Default is Parquet with zstd pages.
var Default = Codec{enc: Parquet, comp: Zstd}

// ParseCodec validates a configured format and compression ("" selects the
// default of each: parquet, zstd). NDJSON files are always gzip-compressed as
// a whole, so for ndjson the compression must be "" or "gzip".
func ParseCodec(encoding, compression string) (Codec, error) {
	switch Encoding(encoding) {
	case "", Parquet:
		switch c := Compression(compression); c {
		case "":
			return Default, nil
		case Zstd, Snappy, Gzip, None:
			return Codec{enc: Parquet, comp: c}, nil
		default:
			return Codec{}, fmt.Errorf("unknown parquet compression %q (want zstd, snappy, gzip or none)", compression)
		}
	case NDJSON:
		switch Compression(compression) {
		case "", Gzip:
			return Codec{enc: NDJSON, comp: Gzip}, nil
		default:
			return Codec{}, fmt.Errorf("compression %q is not available for ndjson, which is always gzip-compressed", compression)
		}
	default:
		return Codec{}, fmt.Errorf("unknown format %q (want parquet or ndjson)", encoding)
	}
}

// Encoding returns c's encoding.
func (c Codec) Encoding() Encoding { return c.enc }

// Compression returns c's compression: the Parquet page compression, or gzip
// for NDJSON.
func (c Codec) Compression() Compression { return c.comp }

// String returns "parquet+zstd", "ndjson+gzip", ...
func (c Codec) String() string {
	if c.enc == "" {
		return "invalid"
	}
	return string(c.enc) + "+" + string(c.comp)
}

// Ext returns the file name extension: ".parquet" or ".ndjson.gz".
func (c Codec) Ext() string {
	if c.enc == NDJSON {
		return ".ndjson.gz"
	}
	return ".parquet"
}

// ContentType returns the media type of c's files. NDJSON files are served as
// application/gzip rather than with a gzip Content-Encoding, so that HTTP
// clients download the .gz file as stored instead of decompressing it.
func (c Codec) ContentType() string {
	if c.enc == NDJSON {
		return "application/gzip"
	}
	return "application/vnd.apache.parquet"
}

// Exts returns the extensions of every encoding, for recognising data files.
func Exts() []string { return []string{".parquet", ".ndjson.gz"} }

var errInvalidCodec = errors.New("format: zero Codec; use ParseCodec")

// Write encodes rows as one complete file in format c. The output is a pure
// function of c and rows: the same rows give the same bytes on every call
// (for one build of tidemark; a library upgrade may change the bytes, never
// the rows they decode to).
func Write[T Row](w io.Writer, c Codec, rows []T) error {
	switch c.enc {
	case Parquet:
		return writeParquet(w, c.comp, rows)
	case NDJSON:
		return writeNDJSON(w, rows)
	default:
		return errInvalidCodec
	}
}

// Read decodes a whole file written by Write in any format; the encoding is
// detected from the content, so files of a destination whose format changed
// over time read the same way.
func Read[T Row](data []byte) ([]T, error) {
	enc, err := Detect(data)
	if err != nil {
		return nil, err
	}
	if enc == Parquet {
		return readParquet[T](data)
	}
	return readNDJSON[T](data)
}

// ReadEvents reads an events file; see Read.
func ReadEvents(data []byte) ([]EventRow, error) { return Read[EventRow](data) }

// ReadPages reads a pages file; see Read.
func ReadPages(data []byte) ([]PageRow, error) { return Read[PageRow](data) }

// ReadSessions reads a sessions file; see Read.
func ReadSessions(data []byte) ([]SessionRow, error) { return Read[SessionRow](data) }

// Detect returns the encoding of a file from its magic bytes.
func Detect(data []byte) (Encoding, error) {
	switch {
	case len(data) >= 8 && bytes.HasPrefix(data, parquetMagic) && bytes.HasSuffix(data, parquetMagic):
		return Parquet, nil
	case len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b:
		return NDJSON, nil
	default:
		return "", errors.New("format: not a parquet or gzip file")
	}
}

var parquetMagic = []byte("PAR1")
