// Package fault holds tidemark's fault switches, for tests only: they make
// the incident, isolation and damage tests possible through the real binary.
// All of them are set through one environment variable, Env, parsed once at
// start by Parse: a comma-separated list of NAME=VALUE. An unknown name, a
// bad value or a name given twice is an error naming it, and `tidemark
// serve` does not start. Every switch that is on is logged at start.
//
//	drop-pages=N               the transports silently leave out every page
//	                           whose id hashes to 0 mod N, with its events
//	                           (the seed incident: pages whose "inactive"
//	                           notification never fired)
//	panic-destination=ORG/DEST writes to destination DEST of org ORG panic
//	hang-destination=ORG/DEST  writes to destination DEST of org ORG hang
//	hang-audit=ORG/DEST        the audit's read of the hour 1970-01-01T00Z
//	                           of destination DEST of org ORG hangs until the
//	                           audit is cancelled (an audit that runs for as
//	                           long as a test needs; other hours read as usual)
//	stream-panic-on-event=NAME the streaming pipeline's event handler panics
//	                           on events named NAME (poison events)
//	memtable-bytes=N           the stores' memtables are N bytes, N >= 65536
//	                           (not a fault: it makes a test's few thousand
//	                           events reach sstables and blob files, so the
//	                           damage tests can damage them)
//
// The destination faults are decorators around destination.Destination
// (Set.Destination); the others are options of the stage they concern.
package fault

import (
	"context"
	"fmt"
	"hash/fnv"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tidemark/tidemark/internal/audit"
	"github.com/tidemark/tidemark/internal/destination"
)

// Env is the one environment variable of the fault switches.
const Env = "TIDEMARK_TEST_FAULTS"

// Set is the parsed fault switches; the zero Set switches nothing on.
type Set struct {
	DropPages          uint32 // drop-pages
	PanicDestination   string // panic-destination, "ORG/DEST"
	HangDestination    string // hang-destination, "ORG/DEST"
	HangAudit          string // hang-audit, "ORG/DEST"
	StreamPanicOnEvent string // stream-panic-on-event
	MemTableBytes      int64  // memtable-bytes

	// On lists the switches that are on, NAME=VALUE, for the start-up log.
	On []string
}

// FromEnv parses Env (see Parse).
func FromEnv() (Set, error) {
	s, err := Parse(os.Getenv(Env))
	if err != nil {
		return s, fmt.Errorf("%s: %w", Env, err)
	}
	return s, nil
}

// Parse parses a comma-separated list of NAME=VALUE switches (see the
// package doc); the empty string switches nothing on.
func Parse(v string) (Set, error) {
	var s Set
	seen := map[string]bool{}
	for _, kv := range strings.Split(v, ",") {
		kv = strings.TrimSpace(kv)
		if kv == "" {
			continue
		}
		name, val, ok := strings.Cut(kv, "=")
		if !ok || val == "" {
			return Set{}, fmt.Errorf("fault %q: want NAME=VALUE", kv)
		}
		if seen[name] {
			return Set{}, fmt.Errorf("fault %s given twice", name)
		}
		seen[name] = true
		var err error
		switch name {
		case "drop-pages":
			var n uint64
			if n, err = strconv.ParseUint(val, 10, 32); err != nil || n < 1 {
				err = fmt.Errorf("want a number >= 1, got %q", val)
			}
			s.DropPages = uint32(n)
		case "panic-destination":
			s.PanicDestination, err = orgDest(val)
		case "hang-destination":
			s.HangDestination, err = orgDest(val)
		case "hang-audit":
			s.HangAudit, err = orgDest(val)
		case "stream-panic-on-event":
			s.StreamPanicOnEvent = val
		case "memtable-bytes":
			if s.MemTableBytes, err = strconv.ParseInt(val, 10, 64); err != nil || s.MemTableBytes < 64<<10 {
				err = fmt.Errorf("want a number >= 65536, got %q", val)
			}
		default:
			return Set{}, fmt.Errorf("unknown fault %q (known: drop-pages, panic-destination, hang-destination, hang-audit, stream-panic-on-event, memtable-bytes)", name)
		}
		if err != nil {
			return Set{}, fmt.Errorf("fault %s: %w", name, err)
		}
		s.On = append(s.On, name+"="+val)
	}
	return s, nil
}

func orgDest(v string) (string, error) {
	if o, d, ok := strings.Cut(v, "/"); !ok || o == "" || d == "" {
		return "", fmt.Errorf("want ORG/DESTINATION, got %q", v)
	}
	return v, nil
}

// Destination returns d with the destination faults of s that concern
// destination name of org applied, or d itself when none does.
func (s Set) Destination(org, name string, d destination.Destination) destination.Destination {
	switch org + "/" + name {
	case s.PanicDestination:
		d = &faulty{Destination: d, write: func(ctx context.Context, b *destination.Batch) error {
			panic("fault panic-destination: write of batch " + b.ID)
		}}
	case s.HangDestination:
		d = &faulty{Destination: d, write: func(ctx context.Context, b *destination.Batch) error {
			<-ctx.Done()
			return ctx.Err()
		}}
	}
	if n := s.DropPages; n > 0 {
		d = DropPages(d, func(id string) bool {
			h := fnv.New32a()
			h.Write([]byte(id))
			return h.Sum32()%n == 0
		})
	}
	return d
}

// ReadBack returns d, destination name of org as the audit reads it, with
// the audit faults of s that concern it applied.
func (s Set) ReadBack(org, name string, d audit.Destination) audit.Destination {
	if org+"/"+name == s.HangAudit {
		return hangEpochHour{d}
	}
	return d
}

// hangEpochHour is a destination whose events files of the hour that
// starts at the Unix epoch cannot be listed: the listing waits for the
// audit to be cancelled.
type hangEpochHour struct{ audit.Destination }

func (h hangEpochHour) EventFiles(ctx context.Context, hour time.Time) ([]destination.StoredFile, error) {
	if hour.Equal(time.Unix(0, 0)) {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return h.Destination.EventFiles(ctx, hour)
}

// DropPages returns d with a fault: every batch is written without the
// page rows whose id drop reports, and without their events, as the seed
// incident's pipeline lost pages whose "inactive" notification never fired.
// The caller's batch is not modified.
func DropPages(d destination.Destination, drop func(pageID string) bool) destination.Destination {
	inner := d
	return &faulty{Destination: d, write: func(ctx context.Context, b *destination.Batch) error {
		c := *b
		c.Events, c.Pages = nil, nil
		for _, r := range b.Events {
			if r.PageID == nil || !drop(*r.PageID) {
				c.Events = append(c.Events, r)
			}
		}
		for _, r := range b.Pages {
			if !drop(r.PageID) {
				c.Pages = append(c.Pages, r)
			}
		}
		return inner.Write(ctx, &c)
	}}
}

// faulty is a destination whose writes go through write; probes, progress
// and cleanup work, so a transport starts and then fails while writing.
type faulty struct {
	destination.Destination
	write func(ctx context.Context, b *destination.Batch) error
}

func (f *faulty) Write(ctx context.Context, b *destination.Batch) error { return f.write(ctx, b) }

// Probe probes the destination underneath, when it can be probed.
func (f *faulty) Probe(ctx context.Context) error {
	if p, ok := f.Destination.(interface{ Probe(context.Context) error }); ok {
		return p.Probe(ctx)
	}
	return nil
}
