// Package pipeline runs the batch pipeline's sessionizer over the embedded
// store: one Runner per log partition reads records in offset order, feeds them
// to a sessionize.Sessionizer whose state lives in Pebble, and appends the
// outputs to the partition's output stream. Each chunk of records, the state it
// changed, the outputs it produced and the new cursor commit in one atomic
// Pebble batch, so a crash resumes exactly where the last chunk ended and
// reproduces the same outputs. A bounded cache of recently used device states
// (committed values only, see deviceCache) spares most Pebble reads of active
// devices without changing any decision. At most half the CPUs sessionize at
// once (partitions take turns chunk by chunk), leaving the rest to ingest.
//
// Keys (p is the partition, 2 bytes big endian; numbers are 8 bytes big endian):
//
//	'S' p 'h'                  header: cursor (last processed offset), watermark, next output seq
//	'S' p 'd' org 0 device     open device state (sessionize.MarshalDevice)
//	'S' p 'x' bucket org 0 dev expiry index
//	'S' p 'n' h                dedupe: log time first seen (swept when older than the window);
//	                           h = SHA-256(uvarint len org, org, uvarint len device, device,
//	                           messageId)[:16] (see appendDedupeKey)
//	'S' p 'm' org 0 messageId  dedupe entry of earlier versions (org and messageId only):
//	                           still read, never written, swept like the others
//	'O' p seq                  output segment: the items of one chunk, the first with
//	                           sequence number seq (starts at 1); see ScanOutputs
package pipeline
