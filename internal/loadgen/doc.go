// Package loadgen is tidemark's load generator (`tidemark loadgen`): it sends
// realistic Segment track and page events to a collector's POST /v1/batch as
// fast as allowed and reports what the collector acknowledged.
//
// # What it sends
//
// Each request is one batch, {"batch":[...],"sentAt":"..."}, authenticated
// with the write key as HTTP Basic user, optionally gzip-compressed. Events
// come from Devices simulated browsers (distinct anonymousIds, some with a
// userId): a device's first call is a page call, then about PageRatio of its
// calls are page calls (it moves to another page) and the rest are track
// calls (Product Viewed, Order Completed, ...) with properties and a context
// naming the device's current page. Events are padded to about EventBytes of
// JSON.
//
// # Identities, retries and verification
//
// Event n of a run has messageId "<run id>-<n>" (n from 0), so ids are
// deterministic and a retried batch carries the same ids: a collector that
// deduplicates by messageId keeps each event once. Batch k holds events
// k*BatchSize up to the next batch's first.
//
// A 429, 502, 503 or 504 response or a request without a response (connection
// error, timeout) is retried with the same body after the response's
// Retry-After (seconds or an HTTP date) or, without one, an exponential
// backoff with jitter; other statuses fail the batch. Only a 200 acknowledges
// a batch. With AckedFile set, the ids of acknowledged events are written to
// it, one per line (in acknowledgement order, not sorted), so an end-to-end
// test can check that every acknowledged event is in the destination exactly
// once. An event that was not acknowledged (Result.Failed, or never sent
// because the run stopped) may still have been accepted: its id may appear in
// the destination, at most once.
//
// # Latency
//
// Result.Latency is the time from sending a request to reading its 200
// response, per acknowledged request (the successful attempt), from a
// log-linear histogram with a relative error below 0.4%. For event-sent to
// committed latency, every event carries properties.lg_sent_ns: the Unix time
// in nanoseconds at which its batch was built and first sent (retries keep
// it), which a reader of the destination can subtract from the commit time.
//
// # Stopping
//
// Run stops starting batches when Duration has passed or Events events have
// been claimed, whichever comes first; batches already started finish,
// including their retries. Cancelling ctx stops at once: requests in flight
// are abandoned and counted as failed.
package loadgen
