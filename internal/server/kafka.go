package server

import (
	"context"
	"log/slog"
	"os"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/tidemark/tidemark/internal/config"
	"github.com/tidemark/tidemark/internal/kafkalog"
)

// prepareKafka connects to the cluster of log.kafka and makes sure the
// log's topic exists with log.partitions partitions (kafkalog.EnsureTopic),
// so that a node that cannot use the cluster stops at start, saying what is
// missing.
func prepareKafka(ctx context.Context, cfg *config.Config, logger *slog.Logger) error {
	k := &cfg.Log.Kafka
	cl, err := kafkalog.Dial(ctx, k, os.LookupEnv)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := kafkalog.EnsureTopic(ctx, kadm.NewClient(cl), k.Topic, cfg.Log.Partitions, k.ReplicationFactor); err != nil {
		return err
	}
	logger.Info("kafka topic ready", "topic", k.Topic, "partitions", cfg.Log.Partitions)
	return nil
}
