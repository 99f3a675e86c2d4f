// Package transport delivers one destination's share of the sessionizer output.
//
// Per log partition, a transport reads the output stream in sequence order,
// keeps the items of its org, and cuts them into batches by the destination's
// flush rules, evaluated only on the stream itself: a batch closes when it
// holds max_events rows or max_bytes of log bytes, or before the first item
// whose log time is max_age past the batch's first item. Because the stream is
// a function of the log, so are the batches: replay gives the same batch IDs
// and the same rows, and the destination's idempotent Write makes delivery
// exactly once.
//
// Progress per partition is the largest sequence number handled (delivered, or
// not this org's). It is the newer of the local record (key 'T' org 0 name 0
// partition in the store) and the destination's newest manifest, so a crash
// between the manifest and the local record loses nothing and repeats nothing.
package transport
