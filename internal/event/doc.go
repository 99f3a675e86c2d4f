// Package event defines the versioned log record format shared by the collector,
// the batch pipeline and the streaming pipeline. It is the only contract between
// them: pure data and its binary encoding, no I/O.
//
// A record is either an accepted event or a tick. Ticks carry wall time and are
// appended to every partition every tick interval so that quiet partitions'
// watermarks advance (see DESIGN.md, "everything downstream is a function of the
// log"). The encoding is documented on Append; a record never changes once
// written, and a new field means a new Version.
package event
