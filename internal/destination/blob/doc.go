// Package blob is the object storage destination: it writes each batch as
// Hive-style partitioned data files plus a manifest, through gocloud.dev/blob,
// to a local directory, S3 (or an S3-compatible store), Google Cloud Storage
// or Azure Blob Storage. Every backend gets the same keys and the same bytes.
//
// # URLs and credentials
//
// The URL's path is a key prefix: s3://bucket/some/prefix puts everything
// under some/prefix/. Credentials never go in the URL (user info and unknown
// query parameters are rejected); each cloud's standard chain finds them:
//
//	file:///abs/dir, file://./rel/dir    the directory is created if missing
//	s3://BUCKET/PREFIX?region=eu-west-1  AWS SDK default chain: AWS_ACCESS_KEY_ID +
//	                                     AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN),
//	                                     AWS_PROFILE / shared config files, web
//	                                     identity (EKS), ECS and EC2 roles
//	    S3-compatible (MinIO, R2, versitygw): &endpoint=https://host:port&use_path_style=true
//	    (R2: region=auto; stores without the new default CRC checksums:
//	    &request_checksum_calculation=when_required). Other parameters: profile,
//	    role, ssetype, kmskeyid, disable_https, dualstack, fips, accelerate,
//	    anonymous, hostname_immutable, rate_limiter_capacity.
//	gs://BUCKET/PREFIX                   Application Default Credentials
//	                                     (GOOGLE_APPLICATION_CREDENTIALS, gcloud
//	                                     auth application-default login, GCP
//	                                     metadata server); STORAGE_EMULATOR_HOST
//	                                     selects an emulator, unauthenticated
//	azblob://CONTAINER/PREFIX            AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY,
//	                                     or AZURE_STORAGE_SAS_TOKEN, or
//	                                     AZURE_STORAGE_CONNECTION_STRING, else
//	                                     azidentity's DefaultAzureCredential
//	                                     (AZURE_CLIENT_ID/..., managed identity,
//	                                     az login). Endpoint: ?domain=, protocol=,
//	                                     localemu=, cdn=, storage_account= (or
//	                                     AZURE_STORAGE_DOMAIN etc.); with a SAS
//	                                     token the URL cannot change the endpoint.
//
// Open only builds the client; Probe contacts the service: it lists under
// the prefix and writes and deletes ProbeKey, and returns a *ProbeError
// naming the destination (redacted URL), the bucket and the class of the
// problem. Classify sorts any error of this package into a Class (bucket
// missing, access denied, wrong region, invalid configuration, network,
// throttled, timeout, ...) from the SDKs' own error codes; IsPermanent is
// true for the classes that need a human (missing bucket, denied access,
// wrong region, invalid configuration). Errors are passed through
// RedactText: URLs in them are redacted (see Redact) and credential-looking
// values and the cloud SDKs' secret environment variables are masked.
//
// Uploads hand each file to the SDK whole: S3 uses a multipart upload of
// 8 MiB parts above 16 MiB (the SDK's transfer manager), Azure stages 8 MiB
// blocks, GCS makes a resumable upload in 16 MiB chunks; a failed upload never leaves a partial
// object at the key. A file's integrity is checked by the SDKs (S3 CRC32
// checksums, GCS MD5) and by readers against the manifest's SHA-256.
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
// Cleanup deletes only files of the exact layout above (nothing deeper:
// another destination's place may be nested inside this one's).
//
// # Claims
//
// A place belongs to one destination. With an owner set (SetOwner), Probe
// claims the place (Claim): MarkerKey at the prefix names the org, the
// destination and a random id that the deployment keeps in its data
// directory. A marker of another owner at the prefix, at a prefix above it
// (for file://, in a parent directory of its real path) or below it makes
// Probe fail with ErrClaimed (ClassClaimed, permanent) before anything is
// cleaned up or written. A place without a marker is claimed by writing
// one, only if absent, and reading it back. Owned checks the same without
// writing or listing, for the audit.
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
