// Package eventlog is the partitioned, durable log on the embedded store (Pebble)
// and the owner of that store's key space.
//
// Every accepted event is appended to one partition, chosen by a hash of org and
// device. Offsets are dense per partition and start at 1. Appends are
// group-committed: one writer goroutine gathers every waiting request into one
// Pebble batch and commits it with fsync, so a returned Append is durable and
// many concurrent requests share one fsync. Readers (Scan, Reader) never go
// past LastOffset, the last offset whose commit returned: Pebble shows a
// batch before its fsync has, and nothing downstream may act on a record a
// crash could still lose. The writer also keeps the identities of the last
// committed records in memory (Tail) for the live follower, which then
// needs no store reads while nobody tails.
//
// Log format 2 (metadata key 'Mlogformat' = "2"): a group commit stores the
// records of each partition as one segment, under key 'L' + partition (2
// bytes, big endian) + offset of its first record (8 bytes, big endian). A
// segment's value is a format byte (1) followed by its records, each as a
// uvarint length and an event.Record encoding (unchanged per record); record i
// has offset first+i. Segments are at most about 64 KiB (a larger group is
// split). Segments instead of a key per record: the store handles a few large
// values per commit rather than thousands of small keys, which is most of its
// CPU in writes, compactions and scans. Retention deletes whole segments and
// rewrites the one holding its cut to start at the cut, so offsets below it
// are gone exactly. Format 1 (a key per record) was never released; a store
// holding it is refused at open.
//
// Both stores keep values of 1 KiB and more (segments here, the
// sessionizer's output segments in the state) in Pebble blob files, so that
// compactions move keys and value handles instead of rewriting the values
// (see storeFormat).
//
// A ticker appends tick records (wall time) to every partition so quiet
// partitions' watermarks advance (DESIGN.md).
//
// The log lives in its own Pebble instance (store/log). A second one
// (store/state, returned by DB) holds the other stages' small state, each under
// its own key prefix, so that a stage's output and its progress commit in one
// atomic batch; keeping it apart keeps the log's volume from evicting its
// blocks from the shared cache or piling L0 files in front of its lookups:
//
//	'L' log records            (this package, store/log)
//	'M' metadata               (this package, store/log: partition count, dev write key)
//	'S' sessionizer state      (package pipeline)
//	'O' sessionizer output     (package pipeline)
//	'T' transport progress     (package transport)
package eventlog
