package transport

import (
	"errors"
	"testing"

	"github.com/tidemark/tidemark/internal/destination"
)

// TestSharedBounds: a batch is built once for a group and taken by the
// other member; a lone member caches nothing; at most max batches wait to be
// taken (a member that comes too late builds its own); a failed build is
// not handed on.
func TestSharedBounds(t *testing.T) {
	s := NewShared(2)
	g, lone := group{org: "a"}, group{org: "b"}
	s.join(g)
	s.join(g)
	s.join(lone)
	builds := 0
	get := func(g group, last uint64, fail bool) (*destination.Batch, error) {
		b, _, err := s.batch(sharedKey{g, 0, 1, last}, func() (*destination.Batch, []lostEvent, error) {
			builds++
			if fail {
				return nil, nil, errors.New("build failed (test)")
			}
			return &destination.Batch{LastSeq: last}, nil, nil
		})
		return b, err
	}
	must := func(g group, last uint64, wantBuilds int) *destination.Batch {
		t.Helper()
		b, err := get(g, last, false)
		if err != nil {
			t.Fatal(err)
		}
		if b.LastSeq != last || builds != wantBuilds {
			t.Fatalf("batch %d: got LastSeq %d after %d builds, want %d builds", last, b.LastSeq, builds, wantBuilds)
		}
		return b
	}
	first := must(g, 1, 1)
	if again := must(g, 1, 1); again != first {
		t.Fatal("the other member did not take the batch built for it")
	}
	must(g, 1, 2) // taken by every other member: gone, built again
	held := len(s.entries)
	must(lone, 1, 3)
	if len(s.entries) != held {
		t.Fatalf("%d batches held after a lone member's, want %d", len(s.entries), held)
	}
	must(g, 2, 4)
	must(g, 3, 5)
	must(g, 4, 6) // drops batch 2: max is 2
	if len(s.entries) != 2 {
		t.Fatalf("%d batches held, want at most 2", len(s.entries))
	}
	must(g, 2, 7) // too late: built again
	must(g, 4, 7) // taken
	if _, err := get(g, 5, true); err == nil {
		t.Fatal("failed build returned no error")
	}
	must(g, 5, 9) // the failure was not handed on
	if built, taken := s.Counts(); built != 7 || taken != 2 {
		t.Fatalf("counts: built %d, taken %d; want 7, 2", built, taken)
	}
}
