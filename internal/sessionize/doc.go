// Package sessionize derives pages and sessions from the log. It is pure: its
// only clock is the log (the partition watermark, the largest record time seen)
// and its only memory is a Store, so the same records in the same order give the
// same outputs, the same IDs and the same closure order on every replay.
//
// Rules (log time; times are record times clamped to the watermark, so they
// never go backwards within a partition):
//   - A session is a device's activity with no gap of SessionIdle or more. The
//     first event after such a gap starts a new session.
//   - A page or screen call starts a page for its device and closes the
//     device's previous page (end reason next_page). Other events belong to the
//     device's current page, or to none.
//   - A page closes after PageIdle without activity (idle) or when its session
//     closes (session_end).
//   - An entity closes when the watermark reaches its expiry (last activity +
//     timeout). The closure is emitted when the watermark passes the expiry
//     rounded up to a 250 ms bucket, or at the device's next event, whichever
//     comes first. The expiry index is lazy: a device is filed once, and
//     re-filed under its later expiry only when its bucket comes due, so an
//     active device costs one index rewrite per timeout, not one per event.
//     Closures due at the same watermark are emitted in (bucket, org, device)
//     order.
//   - An event whose (org, device, messageId) was seen within DedupeWindow of
//     log time is a duplicate: it produces no output. The same messageId from
//     another device is another event. The log partitions by org and device,
//     so a client retry (same device) lands in the partition of the original,
//     and each partition's sessionizer holds the whole index for its devices.
//
// Outputs, in order, per partition: one Event per accepted (non-duplicate)
// event, carrying its session and page; one Page and one Session row per
// closure; and a Watermark output whenever a tick advances the watermark, so
// that downstream batching (cut by log-time age) advances in quiet partitions.
package sessionize
