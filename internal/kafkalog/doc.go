// Package kafkalog puts tidemark's log in a Kafka topic (log.kafka): one
// topic of log.partitions partitions, written by an idempotent producer with
// acks=all and read partition by partition (docs/kafka.md).
//
// This file set holds what every role needs: the client's options from the
// configuration (brokers, client id, TLS, SASL credentials read from the
// environment and never printed) and EnsureTopic, which creates the topic
// when the principal may and otherwise names exactly what is missing.
package kafkalog
