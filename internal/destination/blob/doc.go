// Package blob is the object storage destination: it writes each batch as
// Hive-style partitioned data files plus a manifest, through gocloud.dev/blob.
// For now it opens file:// URLs (a local directory, fileblob); S3, GCS and
// Azure are one entry each in the scheme table of url.go.
//
// # Layout (product contract)
//
// Keys are relative to the URL's prefix:
//
//	<table>/dt=YYYY-MM-DD/hr=HH/<batch id><ext>   data, one file per table and UTC hour
//	_manifests/<batch id>.json                    the commit record of a batch
//
// Tables are events, pages and sessions; events are placed by received_at,
// pages and sessions by started_at. The extension is .parquet or .ndjson.gz
// (package format). A table without rows in a batch has no file. Batch ids
// look like p03-000000000120-000000000187 (destination.BatchID), so keys of
// one partition sort by sequence.
//
// # Commit protocol
//
// Write uploads the data files, then the manifest: a batch is committed once
// its manifest exists, and readers (audit, warehouse loaders that honour
// manifests) ignore data files without one. Everything is a function of the
// batch, so rewriting a batch after a crash or timeout puts the same bytes
// under the same keys. Committed parses the partition's manifest names
// (without reading them); Cleanup deletes uncommitted data files left by a
// crash. On file:// every file is fsynced before it is renamed into place,
// and the directories of the data files are fsynced before the manifest is
// written, so even a power loss cannot commit a batch whose files are lost.
//
// # Manifest
//
// JSON, indented, keys in this order, ending in a newline; the same batch
// always yields the same bytes (no wall-clock time anywhere):
//
//	{
//	  "version": 1,
//	  "batch_id": "p03-000000000120-000000000187",
//	  "org": "acme",
//	  "partition": 3,
//	  "first_seq": 120,
//	  "last_seq": 187,
//	  "backfill": false,
//	  "files": [
//	    {"path": "events/dt=2024-05-01/hr=13/p03-000000000120-000000000187.parquet",
//	     "table": "events", "rows": 812, "bytes": 40213, "sha256": "<hex>"},
//	    ...
//	  ],
//	  "event_count": 812,
//	  "min_log_offset": 90211,
//	  "max_log_offset": 91544,
//	  "event_ids_sha256": "<hex of sha256 of the sorted event ids joined with \n>"
//	}
//
// Files are sorted by path. DecodeManifest checks all of it.
//
// # fileblob details
//
// fileblob writes "<key>.<hex nanos>.tmp" and renames it on Close. Open sets
// NoTempDir so the temp file is next to its key: os.TempDir is often another
// file system (the rename would fail) and a kill -9 would strand temp files
// where Cleanup cannot see them. Such leftovers match no reader's *.parquet or
// *.ndjson.gz glob, and Cleanup deletes them. Open also turns off fileblob's
// ".attrs" sidecar files, which Spark and others would take for data.
package blob
