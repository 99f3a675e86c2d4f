// Package kafkalog puts tidemark's log in a Kafka topic (log.kafka): one
// topic of log.partitions partitions, written by an idempotent producer with
// acks=all and read partition by partition (docs/kafka.md).
//
// What every role needs: the client's options from the configuration
// (brokers, client id, TLS, SASL credentials read from the environment and
// never printed) and EnsureTopic, which creates the topic when the
// principal may and otherwise names exactly what is missing. Ingest: the
// Producer (the collector's log; it also produces the owner's ticks). The
// pipeline: the Copier, which copies the owned partitions into the embedded
// log at offset = Kafka offset + 1, so that the unchanged pipeline derives
// from the local log what it would derive from the topic.
//
// A Kafka record's value is the embedded log's record (event.Record
// encoding); its key is org NUL device; its partition is
// eventlog.PartitionOf (a manual partitioner).
package kafkalog
