// Package stream is the streaming pipeline: the live tail (Server-Sent Events
// through a Hub), webhooks (signed JSON batches, at least once, in order per
// device) and live metrics.
//
// Isolation from the batch pipeline is by construction. The only contract
// with the rest of tidemark is the versioned log record (package event): the
// stream reads the log with its own cursors, in real time (it wakes on every
// group commit, eventlog.Log.Notify), and writes nothing that the sessionizer
// or the transports read. Its own state lives apart:
//
//   - data_dir/store/stream: a Pebble store of webhook cursors, one key per
//     webhook and log partition, "c" + org + "\x00" + webhook + "\x00" +
//     partition (2 bytes, big endian) -> last handled offset (8 bytes, big
//     endian). A cursor moves only after the receiver answered 2xx for every
//     event up to it, or after the events were written to dead letters. It is
//     written without fsync, and the store is synced every 200 ms: a crash
//     loses at most that much cursor progress, and those events are sent
//     again (at least once). A new cursor is fsynced when created.
//   - data_dir/stream/dead-letters/<org>/<webhook>/p<PPP>-<first>-<last>.json:
//     batches a webhook did not accept within its retry window (or refused
//     with a permanent 4xx), and records of poison events that could not be
//     processed. One JSON object per file (see DeadLetter), written to a
//     temporary name, fsynced and renamed, so a reader (`tidemark webhooks
//     dead-letters`, `replay`) never sees half a file, also while the server
//     runs.
//
// The live tail keeps no durable cursor: a subscriber sees events committed
// after it subscribed. A slow subscriber never blocks the stream: each has a
// bounded buffer, and events that do not fit are dropped for that subscriber
// and reported to it (an SSE "dropped" event) and in metrics.
//
// Every event is handled under recover: an event that makes the handler panic
// (a "poison" event) is logged, counted in tidemark_stream_poison_events_total,
// recorded as a dead letter by the webhooks whose filter it matches, and
// skipped; processing continues. A panic anywhere else ends Run with an error,
// and the server's supervisor restarts the stage from its durable cursors.
//
// Test-only fault injection: TIDEMARK_TEST_FAULTS=stream-panic-on-event=NAME
// (package fault, parsed once at start and passed in Options.Faults) makes
// the stream's event handler panic on every event whose name (track event /
// page name) is NAME. It exists for the isolation tests; never set it in
// production.
package stream
