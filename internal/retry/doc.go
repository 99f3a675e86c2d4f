// Package retry is tidemark's one retry loop: Do calls an operation until it
// succeeds, with capped exponential backoff (optionally jittered) between
// attempts, and honours a server's Retry-After. ParseRetryAfter is the one
// parser of the HTTP Retry-After header.
//
// The loops that use it (the transport's destination writes, the stream's
// webhook deliveries, `tidemark webhooks replay`, the load generator and the
// server's stage supervisor) differ only in their Policy and in what they log
// and count after a failure (Policy.Failed).
//
// # Retry-After
//
// ParseRetryAfter accepts delay seconds or an HTTP date; it does not cap the
// delay (it only saturates instead of overflowing). An error carries the
// server's hint through a RetryAfter() time.Duration method (see After); a
// hint of zero or less is no hint, so a server cannot make a loop retry
// without delay. Whether the hint replaces the backoff delay or only
// lengthens it, and whether it is capped (Policy.MaxHint), is the policy's:
// a loop's wait is never capped by anything else than its policy and its own
// Failed (the stream, for one, never waits past a batch's retry window).
package retry
