// Package format encodes the three output tables (events, pages, sessions) as
// files and decodes them back. It is pure: it writes to an io.Writer and reads
// from a byte slice, and never looks at the clock, so that replaying the log
// reproduces every file byte for byte (see DESIGN.md, "everything downstream is
// a function of the log"). Destinations decide where the files go; the audit
// reads them back with Read to compare event ids with the log.
//
// The row types in rows.go define both encodings: column names, order, and
// which columns are optional, timestamps or JSON come from their struct tags.
//
// # Parquet (.parquet)
//
// One file holds one row group with the schema of the row type: strings are
// BYTE_ARRAY (STRING), times are INT64 TIMESTAMP(MICROS, isAdjustedToUTC),
// JSON columns are BYTE_ARRAY (JSON) holding the raw JSON text, pointer fields
// are optional columns. Pages are version 1 data pages, compressed with zstd
// (default), snappy, gzip or none. The footer's created_by is the constant
// "tidemark version 1" and there is no other key/value metadata, so nothing in
// the file depends on when, where or with which library version it was written.
//
// # NDJSON (.ndjson.gz)
//
// One gzip member (level 6, no file name, mtime 0) holding one JSON object per
// row, each on its own line terminated by "\n", with the keys of the json tags
// in column order. Values:
//
//	strings      JSON strings; <, > and & are not escaped, invalid UTF-8
//	             becomes U+FFFD
//	integers     JSON numbers
//	timestamps   RFC 3339 strings in UTC with exactly six fractional digits,
//	             "2024-05-01T13:04:05.123456Z" (readers like DuckDB, BigQuery
//	             and Athena recognise them as timestamps; epoch integers they
//	             would not). Years outside 0-9999 cannot be written.
//	JSON columns the JSON value itself (not a string holding it), compacted;
//	             text that is not valid JSON cannot be written
//	nil          null
//
// Decoding NDJSON restores the rows exactly, except that JSON columns come back
// compacted and the JSON text "null" reads back as a nil column.
package format
