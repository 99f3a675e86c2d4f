// Package server serves `tidemark serve`: it gets the pipeline from
// assemble.Build, adds the collector, and runs the stages (the log's ticker,
// the sessionizers, one transport per destination, the background auditor,
// the stream, retention) each as a supervised Run(ctx) error in one
// errgroup, next to the HTTP server (collector, live tail, admin and status
// API, the status page of internal/ui, /metrics, /healthz, /readyz).
// Shutdown is bounded.
package server
