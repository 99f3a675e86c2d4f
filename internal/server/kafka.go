package server

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/eventlog"
	"github.com/tidemark/tidemark/internal/kafkalog"
)

// kafkaLog is the log in Kafka (log.kafka) as one node uses it: a producer
// for ingest and the ticks, and the options the copier connects with.
type kafkaLog struct {
	cl       *kgo.Client // the producer's
	producer *kafkalog.Producer
	opts     []kgo.Opt
	topic    string
	parts    []int
}

// openKafka connects to the cluster of log.kafka and makes sure the log's
// topic exists with log.partitions partitions (kafkalog.EnsureTopic), so
// that a node that cannot use the cluster stops at start, saying what is
// missing.
func openKafka(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*kafkaLog, error) {
	k := &cfg.Log.Kafka
	if !k.HasRole(config.RoleIngest) || !k.HasRole(config.RolePipeline) {
		return nil, errors.New("log.kafka.roles: running ingest and pipeline apart comes with several nodes (docs/kafka.md, not built yet); leave roles out for both")
	}
	opts, err := kafkalog.ClientOpts(k, os.LookupEnv)
	if err != nil {
		return nil, err
	}
	cl, err := kafkalog.Dial(ctx, k, os.LookupEnv, kafkalog.ProducerOpts()...)
	if err != nil {
		return nil, err
	}
	if err := kafkalog.EnsureTopic(ctx, kadm.NewClient(cl), k.Topic, cfg.Log.Partitions, k.ReplicationFactor); err != nil {
		cl.Close()
		return nil, err
	}
	logger.Info("kafka topic ready", "topic", k.Topic, "partitions", cfg.Log.Partitions)
	return &kafkaLog{cl: cl, producer: kafkalog.NewProducer(cl, k.Topic, cfg.Log.Partitions), opts: opts, topic: k.Topic,
		parts: kafkalog.Partitions(cfg.Log.Partitions)}, nil
}

// copier returns the copier of every partition into lg (one node owns them
// all), its lag exported as tidemark_kafka_copy_lag_records.
func (k *kafkaLog) copier(lg *eventlog.Log, reg prometheus.Registerer, logger *slog.Logger) *kafkalog.Copier {
	c := &kafkalog.Copier{Opts: k.opts, Topic: k.topic, Parts: k.parts, Log: lg, Logger: logger}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tidemark_kafka_copy_lag_records",
		Help: "Records the Kafka topic held at the last fetch that the local copy does not hold yet, all partitions."},
		func() float64 { return float64(c.Lag()) }))
	return c
}

func (k *kafkaLog) Close() { k.cl.Close() }
