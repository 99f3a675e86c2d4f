// Package erase finds a person's events for `tidemark erase` (docs/erasure.md).
//
// Built so far: the identity set (the ids typed, closed over the identify
// and alias links of the retained log) and a dry run that counts, per
// destination and UTC hour of ingestion, the person's events in the log and
// the rows a destination's committed files hold of them. Nothing here
// writes: the rewrite, the log tombstones, the erasure record and
// suppression are designed in docs/erasure.md and not built.
package erase
