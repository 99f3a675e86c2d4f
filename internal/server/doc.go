// Package server wires the stages of `tidemark serve`: the log, the ticker, the
// sessionizers, one transport per destination, retention, and the HTTP server
// (collector, /metrics, /healthz, /readyz). Each stage is a Run(ctx) error in
// one errgroup; shutdown is bounded.
package server
