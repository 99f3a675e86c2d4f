package config

import (
	"fmt"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// KafkaMechanisms are the SASL mechanisms log.kafka.sasl.mechanism accepts.
var KafkaMechanisms = []string{"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}

var kafkaRoles = []string{RoleIngest, RolePipeline}

// topicPattern is Kafka's own rule for topic names (legal characters; at
// most 249 of them; not "." or "..").
var topicPattern = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)

// validateKafka checks log.kafka; lookup reads the environment (the SASL
// variables must be set: a node must not start and fail at its first
// connection). Messages name variables, never their values.
func (c *Config) validateKafka(p *problems, lookup func(string) (string, bool)) {
	k := &c.Log.Kafka
	if !k.Enabled() {
		if reflect.DeepEqual(*k, defaultKafka()) {
			return // the embedded log
		}
		p.add("log.kafka.brokers", "must name at least one broker (host:port) when log.kafka is set; leave log.kafka out for the embedded log")
	}
	for i, b := range k.Brokers {
		bp := fmt.Sprintf("log.kafka.brokers[%d]", i)
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" || strings.ContainsAny(host, " /") {
			p.add(bp, "want host:port, e.g. \"kafka-1.internal:9092\", got %q", b)
		} else if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			p.add(bp, "port must be a number from 1 to 65535, got %q", port)
		} else if j := slices.Index(k.Brokers, b); j < i {
			p.add(bp, "duplicate broker %q (also log.kafka.brokers[%d])", b, j)
		}
	}
	if !topicPattern.MatchString(k.Topic) || k.Topic == "." || k.Topic == ".." {
		p.add("log.kafka.topic", "must be 1 to 249 letters, digits, \".\", \"_\" or \"-\" (Kafka's rule for topic names), got %q", k.Topic)
	}
	if k.ClientID == "" || strings.ContainsFunc(k.ClientID, func(r rune) bool { return r < 0x20 || r > 0x7e }) {
		p.add("log.kafka.client_id", "must be 1 or more printable ASCII characters, got %q", k.ClientID)
	}
	if k.ReplicationFactor < 0 {
		p.add("log.kafka.replication_factor", "must be 0 (the brokers' default) or more, got %d", k.ReplicationFactor)
	}
	if len(k.Roles) == 0 {
		p.add("log.kafka.roles", "must name at least one of %s (leave it out for both)", strings.Join(kafkaRoles, ", "))
	}
	for i, r := range k.Roles {
		rp := fmt.Sprintf("log.kafka.roles[%d]", i)
		if !slices.Contains(kafkaRoles, r) {
			p.add(rp, "must be one of %s, got %q", strings.Join(kafkaRoles, ", "), r)
		} else if j := slices.Index(k.Roles, r); j < i {
			p.add(rp, "duplicate role %q", r)
		}
	}

	t := k.TLS
	if !t.Enabled {
		for _, f := range []struct{ key, v string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
			if f.v != "" {
				p.add("log.kafka.tls."+f.key, "is set but log.kafka.tls.enabled is false: set enabled: true, or remove it")
			}
		}
	} else {
		if (t.CertFile == "") != (t.KeyFile == "") {
			p.add("log.kafka.tls.cert_file", "cert_file and key_file go together (a client certificate and its key): set both or neither")
		}
		// The files are read when the node connects (kafkalog.Options), and
		// an unreadable one is reported there with its key.
	}

	s := k.SASL
	if s.Mechanism == "" {
		if s.UsernameEnv != "" || s.PasswordEnv != "" {
			p.add("log.kafka.sasl.mechanism", "must be one of %s when username_env or password_env is set", strings.Join(KafkaMechanisms, ", "))
		}
		return
	}
	if !slices.Contains(KafkaMechanisms, s.Mechanism) {
		p.add("log.kafka.sasl.mechanism", "must be one of %s, got %q", strings.Join(KafkaMechanisms, ", "), s.Mechanism)
	}
	for _, f := range []struct{ key, v string }{{"username_env", s.UsernameEnv}, {"password_env", s.PasswordEnv}} {
		fp := "log.kafka.sasl." + f.key
		switch v, _ := lookup(f.v); {
		case f.v == "":
			p.add(fp, "must name the environment variable that holds the SASL %s (credentials never go in the file)", strings.TrimSuffix(f.key, "_env"))
		case !envName.MatchString(f.v):
			p.add(fp, "must name an environment variable (letters, digits and _, not starting with a digit), got %q", f.v)
		case v == "":
			p.add(fp, "environment variable %s is not set or empty", f.v)
		}
	}
}
