package kafkalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TopicError says why the log's topic cannot be used, and what is missing.
type TopicError struct {
	Topic string
	// Missing is what the operator must provide, in words ("ACL CREATE on
	// topic tidemark-events or on the cluster", "a topic of 8 partitions").
	Missing string
	Err     error // the broker's error, if any
}

func (e *TopicError) Error() string {
	s := fmt.Sprintf("log.kafka.topic %s: %s", e.Topic, e.Missing)
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	return s
}

func (e *TopicError) Unwrap() error { return e.Err }

// EnsureTopic makes sure the log's topic exists with partitions partitions:
// it creates it (replication factor rf, or the brokers' default when rf is
// 0) when it is absent and the principal may, and otherwise returns a
// *TopicError naming what is missing. It never changes an existing topic: a
// topic with another partition count is an error, because a device's
// partition is a function of the count.
//
// It does not rely on the brokers' auto.create.topics.enable, which would
// create the topic with their default partition count on the first produce.
func EnsureTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int, rf int) error {
	td, err := describe(ctx, adm, topic)
	if err != nil {
		return err
	}
	if td == nil {
		r := int16(rf)
		if rf == 0 {
			r = -1
		}
		_, err := adm.CreateTopic(ctx, int32(partitions), r, nil, topic)
		switch {
		case err == nil:
			return nil // with the partitions asked for
		case errors.Is(err, kerr.TopicAlreadyExists): // another node won the race
		case errors.Is(err, kerr.TopicAuthorizationFailed), errors.Is(err, kerr.ClusterAuthorizationFailed):
			return &TopicError{Topic: topic, Err: err, Missing: fmt.Sprintf(
				"the topic does not exist and this principal may not create it: it needs ACL CREATE on topic %s (or on the cluster), "+
					"or an operator creates the topic with %d partitions (tidemark does not rely on auto.create.topics.enable, "+
					"which would use the brokers' default partition count)", topic, partitions)}
		case errors.Is(err, kerr.InvalidReplicationFactor):
			return &TopicError{Topic: topic, Err: err, Missing: fmt.Sprintf(
				"the topic does not exist and cannot be created with replication factor %d: set log.kafka.replication_factor to at most the number of brokers", rf)}
		default:
			return &TopicError{Topic: topic, Err: err, Missing: fmt.Sprintf("the topic does not exist and creating it with %d partitions failed", partitions)}
		}
		// Created by another node: wait until the metadata shows it.
		for td == nil {
			select {
			case <-ctx.Done():
				return &TopicError{Topic: topic, Err: ctx.Err(), Missing: "another client created the topic but the brokers do not show it"}
			case <-time.After(100 * time.Millisecond):
			}
			if td, err = describe(ctx, adm, topic); err != nil {
				return err
			}
		}
	}
	if n := len(td.Partitions); n != partitions {
		return &TopicError{Topic: topic, Missing: fmt.Sprintf(
			"the topic has %d partitions and log.partitions is %d: a device's partition is a function of the count, "+
				"so they must be equal (set log.partitions: %d, or use a new topic; tidemark never adds partitions)", n, partitions, n)}
	}
	return nil
}

// describe returns the topic's metadata, nil when it does not exist.
func describe(ctx context.Context, adm *kadm.Client, topic string) (*kadm.TopicDetail, error) {
	tds, err := adm.ListTopics(ctx, topic)
	td, ok := tds[topic]
	if err != nil {
		td.Err, ok = err, true
	}
	switch {
	case !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition):
		return nil, nil
	case errors.Is(td.Err, kerr.TopicAuthorizationFailed):
		return nil, &TopicError{Topic: topic, Err: td.Err, Missing: fmt.Sprintf(
			"this principal may not describe the topic: it needs ACL DESCRIBE on topic %s (and WRITE to ingest, READ to run the pipeline)", topic)}
	case td.Err != nil:
		return nil, &TopicError{Topic: topic, Err: td.Err, Missing: "the brokers cannot describe the topic"}
	}
	return &td, nil
}
