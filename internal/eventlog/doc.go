// Package eventlog is the partitioned, durable log on the embedded store (Pebble)
// and the owner of that store's key space.
//
// Every accepted event is appended to one partition, chosen by a hash of org and
// device, under key 'L' + partition (2 bytes, big endian) + offset (8 bytes, big
// endian); the value is an event.Record encoding. Offsets are dense per partition
// and start at 1. Appends are group-committed: one writer goroutine gathers every
// waiting request into one Pebble batch and commits it with fsync, so a returned
// Append is durable and many concurrent requests share one fsync.
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
