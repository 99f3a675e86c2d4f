// Package postgres is the PostgreSQL destination: it loads each batch into
// the tables events, pages and sessions of one schema, with the lake's
// columns (typed columns for the fixed fields, jsonb for properties,
// traits and context), in one transaction that also records the batch in
// _tidemark_batches. That COMMIT is the commit point: a crash before it
// leaves nothing, and a batch already recorded is skipped, so a replayed
// batch is loaded exactly once.
//
// # URL and password
//
//	postgres://USER@HOST:PORT/DB?sslmode=verify-full&schema=tidemark_acme
//
// schema= (default tidemark) is a plain identifier; it is removed before
// the URL reaches pgx, which gets every other parameter unchanged. A
// password never goes in the URL (Open refuses it): pgx finds it as libpq
// does (PGPASSWORD, PGPASSFILE or ~/.pgpass, PGSERVICEFILE), or the
// destination's password_env names the environment variable that holds it.
// Errors name postgres://HOST:PORT/DB and the schema, never a password.
//
// # Schema
//
// Probe (at start, retried until it works) connects, claims the schema for
// its owner in _tidemark_meta (key owner, the JSON of destination.Owner; a
// schema of another destination is refused), and creates or upgrades the
// schema with numbered migrations (_tidemark_meta key schema_version).
// Migrations only add tables, columns and indexes: a user's own columns and
// views are never touched. A role without CREATE starts when the tables are
// already there; a missing privilege is an error naming the statement and
// the GRANT that fixes it.
//
//	events    PRIMARY KEY (log_partition, log_offset): the accepted record's
//	          place in the log (a messageId may legitimately recur);
//	          indexes on session_id, received_at, _tidemark_batch
//	pages     PRIMARY KEY (page_id); indexes on session_id, _tidemark_batch
//	sessions  PRIMARY KEY (session_id); indexes on started_at, _tidemark_batch
//
// Every table ends with _tidemark_batch (the batch that loaded the row) and
// _tidemark_escaped (jsonb, NULL unless a value was altered to be storable).
// _tidemark_batches holds one row per committed batch: its org, partition,
// sequence numbers, backfill flag, row counts, log offset range and event
// id digest (destination.Manifest's fields).
//
// # Loading
//
// Rows are sent with COPY ... FROM STDIN (FORMAT binary), encoded straight
// from the batch's slices (copy.go): no per-row allocation.
//
// # Audit
//
// The audit's read-back (readback.go) counts and reads the rows of events
// themselves, per batch and hour, never _tidemark_batches alone: rows
// deleted by hand are found missing and backfill loads exactly them again.
package postgres
