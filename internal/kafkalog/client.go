package kafkalog

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/tidemark/tidemark/internal/config"
)

// ClientOpts returns the franz-go options that connect to the cluster of k:
// seed brokers, client id, TLS (its PEM files read now) and SASL, with the
// user name and password read through lookup (os.LookupEnv in production)
// from the variables k.SASL names. No error carries a credential: they name
// the configuration key and the variable.
func ClientOpts(k *config.Kafka, lookup func(string) (string, bool)) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(k.Brokers...), kgo.ClientID(k.ClientID)}
	if k.TLS.Enabled {
		tc, err := tlsConfig(&k.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if k.SASL.Mechanism != "" {
		m, err := mechanism(&k.SASL, lookup)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func tlsConfig(t *config.KafkaTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("log.kafka.tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("log.kafka.tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			// The error names the files, never the key's contents.
			return nil, fmt.Errorf("log.kafka.tls.cert_file, key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func mechanism(s *config.KafkaSASL, lookup func(string) (string, bool)) (sasl.Mechanism, error) {
	user, _ := lookup(s.UsernameEnv)
	pass, _ := lookup(s.PasswordEnv)
	switch {
	case user == "":
		return nil, fmt.Errorf("log.kafka.sasl.username_env: environment variable %s is not set or empty", s.UsernameEnv)
	case pass == "":
		return nil, fmt.Errorf("log.kafka.sasl.password_env: environment variable %s is not set or empty", s.PasswordEnv)
	}
	switch s.Mechanism {
	case "PLAIN":
		return plain.Auth{User: user, Pass: pass}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: user, Pass: pass}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: user, Pass: pass}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("log.kafka.sasl.mechanism: unsupported %q", s.Mechanism)
}

// Dial returns a client of the cluster of k and checks that it answers
// (a metadata request, so that wrong brokers, TLS or credentials fail at
// start with an error that says so, not at the first event).
func Dial(ctx context.Context, k *config.Kafka, lookup func(string) (string, bool), extra ...kgo.Opt) (*kgo.Client, error) {
	opts, err := ClientOpts(k, lookup)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("log.kafka: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("log.kafka: no broker of %v answered: %w%s", k.Brokers, err, dialHint(err))
	}
	return cl, nil
}

// dialHint says what a failed first contact most likely means.
func dialHint(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return " (within 30s; are the brokers reachable, and is log.kafka.tls right for their listener?)"
	case errors.As(err, &ne):
		return " (are log.kafka.brokers right and reachable?)"
	}
	return " (check log.kafka.tls and log.kafka.sasl)"
}
