// Package ui is the status page `tidemark serve` serves at GET /: one HTML
// page, its stylesheet and its script, embedded in the binary (no CDN, no
// build step, no framework; the charts are inline SVG). The page holds no
// data and no credential: it asks for a key (an admin key, or an org's read
// key), keeps it in the tab's sessionStorage and sends it only as
// "Authorization: Bearer KEY" to the APIs it reads:
//
//	GET  /api/v1/status    destinations, freshness, reasons (every few seconds)
//	GET  /api/v1/audit     the completeness grid (per hour and destination)
//	GET  /api/v1/series    the charts of the last hour
//	GET  /v1/live          the live tail (Server-Sent Events, read with fetch)
//	POST /api/v1/backfill  "backfill this hour" (admin keys only)
//
// Authorization is the server's: the page shows what the key may read.
// docs/status-page.md describes the page; cmd/tidemark/statuspage_test.go
// tests it in a real Chromium against the real binary.
package ui
