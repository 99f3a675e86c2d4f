package server

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"strings"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/transport"
)

// Fault switches, for tests only: they make the incident tests possible
// through the real binary. Each is off unless its environment variable is
// set, and serve logs a warning naming it when it is on.
//
//	TIDEMARK_FAULT_DROP_PAGES=N          the transports silently leave out every
//	                                     page whose id hashes to 0 mod N, with its
//	                                     events (the seed incident: pages whose
//	                                     "inactive" notification never fired)
//	TIDEMARK_FAULT_PANIC_DESTINATION=O/D writes to destination D of org O panic
//	TIDEMARK_FAULT_HANG_DESTINATION=O/D  writes to destination D of org O hang
//	TIDEMARK_TEST_MEMTABLE_BYTES=N       the stores' memtables are N bytes (not a
//	                                     fault: it makes a test's few thousand
//	                                     events reach sstables and blob files, so
//	                                     the damage tests can damage them)
type faults struct {
	memtable   int64
	dropPages  uint32
	panicDest  string
	hangDest   string
	switchedOn []string
}

func faultsFromEnv() (faults, error) {
	var f faults
	if v := os.Getenv("TIDEMARK_FAULT_DROP_PAGES"); v != "" {
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n < 1 {
			return f, fmt.Errorf("TIDEMARK_FAULT_DROP_PAGES: want a number >= 1, got %q", v)
		}
		f.dropPages = uint32(n)
		f.switchedOn = append(f.switchedOn, "TIDEMARK_FAULT_DROP_PAGES="+v)
	}
	if v := os.Getenv("TIDEMARK_TEST_MEMTABLE_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 64<<10 {
			return f, fmt.Errorf("TIDEMARK_TEST_MEMTABLE_BYTES: want a number >= 65536, got %q", v)
		}
		f.memtable = n
		f.switchedOn = append(f.switchedOn, "TIDEMARK_TEST_MEMTABLE_BYTES="+v)
	}
	f.panicDest = os.Getenv("TIDEMARK_FAULT_PANIC_DESTINATION")
	f.hangDest = os.Getenv("TIDEMARK_FAULT_HANG_DESTINATION")
	for name, v := range map[string]string{"TIDEMARK_FAULT_PANIC_DESTINATION": f.panicDest, "TIDEMARK_FAULT_HANG_DESTINATION": f.hangDest} {
		if v == "" {
			continue
		}
		if o, d, ok := strings.Cut(v, "/"); !ok || o == "" || d == "" {
			return f, fmt.Errorf("%s: want ORG/DESTINATION, got %q", name, v)
		}
		f.switchedOn = append(f.switchedOn, name+"="+v)
	}
	return f, nil
}

// DropPage reports whether the page-drop fault drops page id.
func (f faults) dropPage() func(string) bool {
	if f.dropPages == 0 {
		return nil
	}
	return func(id string) bool {
		h := fnv.New32a()
		h.Write([]byte(id))
		return h.Sum32()%f.dropPages == 0
	}
}

// wrap applies the destination faults to destination name of org.
func (f faults) wrap(org, name string, d destination.Destination) destination.Destination {
	switch org + "/" + name {
	case f.panicDest:
		return faultyDest{d, "panic"}
	case f.hangDest:
		return faultyDest{d, "hang"}
	}
	return d
}

// faultyDest is a destination whose writes panic or hang; probes, progress
// and cleanup work, so the transport starts and then fails while writing.
type faultyDest struct {
	destination.Destination
	mode string
}

func (d faultyDest) Probe(ctx context.Context) error {
	if p, ok := d.Destination.(transport.Prober); ok {
		return p.Probe(ctx)
	}
	return nil
}

func (d faultyDest) Write(ctx context.Context, b *destination.Batch) error {
	if d.mode == "panic" {
		panic("fault TIDEMARK_FAULT_PANIC_DESTINATION: write of batch " + b.ID)
	}
	<-ctx.Done()
	return ctx.Err()
}
