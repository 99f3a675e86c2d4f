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
// (store/state, State) holds the other stages' small state, each under its
// own key prefix, so that a stage's output and its progress commit in one
// atomic batch; keeping it apart keeps the log's volume from evicting its
// blocks from the shared cache or piling L0 files in front of its lookups.
//
// This package is the state store as well as the log, and owns the key
// space of all three stores (the log, the state, and the streaming
// pipeline's webhook cursors, Cursors): every key is built in keys.go, and
// no Pebble type leaves the package. The stages reach their state through methods that name what
// they keep, never a key (the log itself through pipeline.Log,
// transport.Log and audit.Log): the sessionizer through State.SessionHeader,
// State.UpdateSessions (a sessionize.Store over one atomic batch) and the
// output methods, a transport through State.Progress and SetProgress,
// retention through Retention. Those are the seams (package pipeline's Log
// and State, package transport's Outputs and ProgressStore interfaces)
// where another log, such as Kafka, and another state store can go under
// the same pipeline. One package rather than a log package and a state
// package: both stores are opened, sized and shut down together from one
// data directory, share one fatal-error policy and one format upgrade
// (storeFormat), and retention needs both (it trims the outputs, then the
// log behind them).
//
// Keys (p is the partition, 2 bytes big endian; numbers are 8 bytes big
// endian):
//
//	store/log:
//	'L' p offset               log segment (above)
//	'M' name                   metadata: "partitions", "logformat", "gaps/<p>"
//	                           (Gap), and values of other packages (Meta)
//	store/state:
//	'S' p 'h'                  sessionizer header (SessionHeader): cursor (last
//	                           processed offset), watermark, next output seq
//	'S' p 'd' org 0 device     open device state (sessionize.MarshalDevice)
//	'S' p 'x' bucket org 0 dev expiry index
//	'S' p 'n' h                dedupe: log time first seen (swept when older than
//	                           the window); h = SHA-256(uvarint len org, org,
//	                           uvarint len device, device, messageId)[:16]
//	                           (see appendDedupeKey)
//	'S' p 'm' org 0 messageId  dedupe entry of earlier versions (org and messageId
//	                           only): still read, never written, swept like the others
//	'O' p seq                  sessionizer output segment: the items of one chunk,
//	                           the first with sequence number seq (starts at 1);
//	                           see outputs.go
//	'T' org 0 name 0 p         a destination's local progress: the sequence number
//	                           of the last output item it committed (8 bytes)
//	store/stream (Cursors, opened by the streaming pipeline alone):
//	'c' org 0 name 0 p         a webhook's cursor: the last offset it delivered
package eventlog
