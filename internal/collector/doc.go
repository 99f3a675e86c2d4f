// Package collector is tidemark's ingest edge: an http.Handler that speaks the
// Segment HTTP tracking API, validates events, stamps received_at and appends
// them durably to the log before answering 2xx.
//
// # Endpoints
//
// All take POST with a JSON body (any Content-Type: sendBeacon sends
// text/plain), optionally with Content-Encoding: gzip.
//
//	/v1/batch, /v1/import, /v1/b     {"batch":[event, ...], "context":{...}?, "sentAt":"..."?, "writeKey":"..."?}
//	/v1/track, /v1/t                 one event; its type is the path's
//	/v1/page, /v1/p                  (a "type" in the body is ignored)
//	/v1/screen, /v1/s
//	/v1/identify, /v1/i
//	/v1/group, /v1/g
//	/v1/alias, /v1/a
//
// The one-letter paths are those analytics.js posts to. OPTIONS answers a CORS
// preflight (204) on every one of them, allowing the request headers of
// CORSAllowHeaders (those the tracking SDKs send, X-Retry-Count of
// analytics.js's retries among them); every response allows any origin, as
// write keys are public in browsers anyway, and exposes Retry-After. Other
// methods get 405, other paths 404.
//
// # Write key
//
// The write key selects the org. It is read from, in this order: the HTTP
// Basic user (password empty; a key sent as the password with an empty user is
// accepted too), "Authorization: Bearer KEY", or "writeKey" at the top level of
// the body (a batch's or a single call's). A missing or unknown key gets 401.
// A key in the headers is checked before any byte of the body is read;
// without one, the body is read only up to Limits.MaxKeylessBody (64 KiB by
// default; 413 above) within the keyless requests' own budget, and parsed
// first, so a malformed body gets 400 rather than 401. Keys are never logged
// (at most their first 4 characters, at debug level).
//
// # Limits in flight
//
// Every request is counted, from its first byte to its answer, against its
// org's share and the server's (Limits): requests at once, and bytes held,
// charged as the body is inflated (the buffer) and decoded (once more the
// body, for the events' copies, and EventCost per event, every 64 events), so
// that a gzip bomb stops when it reaches its share. Keyless requests count
// against a share of their own until the end.
//
// # Events
//
// An event is a JSON object. tidemark reads these members and ignores the
// others (integrations, _metadata, ...); null is the same as absent:
//
//	type          track, page, screen, identify, group or alias (batch elements only)
//	anonymousId   string or number: the device; else
//	userId        string or number: the device. One of the two is required.
//	messageId     string or number: the event id, generated (UUIDv4) when absent or empty
//	event         string, required for track: the event name
//	name          string: the page or screen name
//	groupId       string or number, required for group
//	previousId    string or number, required for alias
//	timestamp          ISO-8601 string: when it happened, by the client's clock
//	originalTimestamp  ISO-8601 string: the same, where RudderStack's SDKs send it
//	sentAt             ISO-8601 string: when it was sent, by the client's clock
//	                   (falls back to the batch's sentAt)
//	properties    object
//	traits        object
//	context       object; the batch's context members that the event's context
//	              lacks are added to it (top-level members only, no deep merge)
//
// ISO-8601 means YYYY-MM-DD, optionally followed by 'T' (or a space) and
// hh:mm[:ss[.fraction]], then 'Z', ±hh:mm, ±hhmm, ±hh or nothing (UTC),
// from 1677-09-21T00:12:45Z to 2262-04-11T23:47:15.999999999Z (an int64 of
// nanoseconds); a time outside is rejected, naming the range. Unix time 0 is
// a time like any other (event.ClientTime tells "not sent" apart).
//
// The stored event (event.Event) also gets: Org from the write key;
// ReceivedAt, one clock reading per request; EventTime = received_at -
// (sentAt - client time), Segment's correction of the client's clock skew,
// where the client time is timestamp, else originalTimestamp; without sentAt
// the client time; without either time received_at; URL, Path,
// Referrer, Title from properties.{url,path,referrer,title} for page calls,
// each falling back to context.page.*, and from context.page.* for other
// calls; UserAgent from context.userAgent. Name is event for track and name
// for page and screen.
//
// An error message or rejection repeats at most 64 bytes of a client's value
// (then "…(N bytes)" with its length): a 40 KB messageId is not echoed whole.
//
// An event is rejected, naming the problem, when a member has the wrong JSON
// type, a required member is missing, a time does not parse, any string in it
// (member names included) is not valid UTF-8, or its JSON is larger than
// Options.MaxEventBytes (32 KiB by default).
//
// # Responses
//
// Every response body is JSON (Content-Type: application/json).
//
// 200, every event accepted (they are in the log, fsynced):
//
//	{"success":true,"accepted":50}
//
// 400, some events rejected: the others ARE in the log and counted in
// "accepted"; a client should not resend them (their messageIds would be
// deduplicated anyway). Indexes are positions in the batch (0 for a single
// call); messageId is the client's, when it sent one.
//
//	{"success":false,"accepted":48,"error":"2 of 50 events rejected","rejected":[
//	  {"index":3,"messageId":"m-3","error":"batch[3]: missing anonymousId or userId"},
//	  {"index":7,"error":"batch[7]: invalid UTF-8 in \"properties\""}]}
//
// For a single call "error" is the event's problem, without the batch[i] prefix.
//
// Whole-request failures, nothing accepted:
//
//	{"success":false,"error":"invalid JSON at byte 17: invalid character '}' looking for beginning of value"}
//
//	400  body not JSON, not an object, empty; no batch, empty batch, batch-level
//	     context not an object, batch-level sentAt unparseable
//	401  missing or unknown write key
//	405  method other than POST (and OPTIONS)
//	408  the body did not arrive within the server's read timeout
//	413  body larger than Options.MaxBodyBytes (4 MiB by default), on the wire or
//	     after gunzip (for a keyless request, Limits.MaxKeylessBody), or a
//	     request that alone needs more than its org's share of Limits
//	415  Content-Encoding other than gzip
//	429  the org's share of Limits is in use (or the keyless requests'); retry
//	     after the Retry-After header's seconds
//	500  the log failed; retry
//	503  the log is overloaded (disk low, queue full), or the server's
//	     Limits are in use; retry after the Retry-After header's seconds
//
// # Metrics
//
//	tidemark_ingest_events_total{org,outcome}         outcome: accepted, rejected, failed
//	tidemark_ingest_requests_total{endpoint,code}
//	tidemark_ingest_request_duration_seconds{endpoint}
//	tidemark_ingest_bytes_total{org}                  body bytes after gunzip
//	tidemark_ingest_inflight_requests                 requests counted against Limits now
//	tidemark_ingest_inflight_bytes                    bytes they are counted as holding
//
// Events and bytes are counted only once the org is known; requests without a
// valid key count only in the requests metric.
//
// # Decoding
//
// The body is scanned once by a validating JSON scanner (scan.go) that accepts
// exactly what encoding/json accepts; properties, traits and context are kept
// as raw JSON while the few nested members tidemark extracts are picked up in
// the same pass. Each accepted event costs two allocations (one for its
// strings, one for its raw JSON); buffers are pooled.
package collector
