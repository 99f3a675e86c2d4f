// Command kfakeserver runs franz-go's kfake, an in-memory Kafka-protocol
// cluster, as a process of its own for the tests: ./scripts/test.sh builds it
// and starts it with three brokers on free 127.0.0.1 ports, so that tests
// (and tidemark nodes they start and SIGKILL) talk to brokers that outlive
// them. It is test infrastructure, never part of the tidemark binary.
//
//	kfakeserver -ports 9092,9093,9094
//
// It prints "ready 127.0.0.1:9092,..." on stdout once every broker listens,
// and runs until SIGTERM or SIGINT. The data lives in memory only.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/twmb/franz-go/pkg/kfake"
)

func main() {
	ports := flag.String("ports", "", "comma-separated 127.0.0.1 ports, one broker each (required)")
	flag.Parse()
	if err := run(*ports); err != nil {
		fmt.Fprintln(os.Stderr, "kfakeserver:", err)
		os.Exit(1)
	}
}

func run(portList string) error {
	var ports []int
	for p := range strings.SplitSeq(portList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 || n > 65535 {
			return fmt.Errorf("-ports %q: %q is not a port", portList, p)
		}
		ports = append(ports, n)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	c, err := kfake.NewCluster(kfake.Ports(ports...), kfake.ClusterID("tidemark-test"))
	if err != nil {
		return fmt.Errorf("start cluster: %w", err)
	}
	defer c.Close()
	fmt.Println("ready", strings.Join(c.ListenAddrs(), ","))
	<-sig
	return nil
}
