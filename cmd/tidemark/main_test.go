package main

import (
	"flag"
	"os"
	"testing"
)

// TestMain runs this package's parallel tests four at a time (unless
// -test.parallel is given) rather than GOMAXPROCS (two here) at a time:
// they mostly wait on the binary's timers (a minute of default flush, two
// minutes of broken webhooks) beside the one that loads and kills it, and
// go test starts them only once every serial test has ended, so two slots
// left the package's last three minutes one test at a time.
func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", "4"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
