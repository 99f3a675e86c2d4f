// Package series keeps the last hour of the pipeline's metrics in memory, so
// that the status page can draw its charts without a Prometheus server.
//
// A Sampler gathers the process's Prometheus registry (the values /metrics
// serves) every Step and keeps Points samples per series: rates computed
// from the counters' increase over the step, gauges as read. Each series is
// a ring of float32 (NaN: no sample), so its memory is fixed: Points*4 bytes
// plus its labels and bookkeeping, about 1.8 KB. With 1,000
// org/destination pairs (one destination per org: 3,000 series) that is
// 5.3 MB (TestMemoryBound measures it); a sample of them, the registry's
// gather included, takes 14-18 ms of CPU every Step (BenchmarkSample).
//
// The series, and the metrics they are sampled from:
//
//	accepted_events_per_second{org}                rate of tidemark_ingest_events_total{outcome="accepted"}
//	delivered_events_per_second{org,destination}   rate of tidemark_delivered_events_total{table="events"}
//	oldest_undelivered_seconds{org,destination}    tidemark_oldest_undelivered_event_age_seconds{table="events"}
//	ingest_latency_p99_seconds                     99th percentile of tidemark_ingest_request_duration_seconds
//	                                               over the step, every endpoint (NaN when no request ended in it)
//	webhook_lag_seconds{org,webhook}               tidemark_webhook_lag_seconds
//	webhook_failures_per_second{org,webhook}       rate of tidemark_webhook_failed_requests_total
//	webhook_dead_letters{org,webhook}              tidemark_webhook_dead_letter_events_total (since start)
//
// A series that has had no sample for Points steps is dropped.
package series
