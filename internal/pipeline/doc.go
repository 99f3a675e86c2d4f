// Package pipeline runs the batch pipeline's sessionizer: one per log
// partition reads records in offset order, feeds them to a
// sessionize.Sessionizer whose state lives in the state store, and appends the
// outputs to the partition's output stream. Each chunk of records, the state
// it changed, the outputs it produced and the new cursor commit in one atomic
// batch (eventlog.State.UpdateSessions), so a crash resumes exactly where the
// last chunk ended and reproduces the same outputs. At most half the CPUs
// sessionize at once (partitions take turns chunk by chunk), leaving the rest
// to ingest.
//
// The sessionizers read the log through the Log interface and keep their
// state and outputs through the State interface, both given to
// NewSessionizers (*eventlog.Log and *eventlog.State on the embedded
// store, which owns every key); the
// transports read the outputs through Sessionizers.ScanOutputs.
package pipeline
