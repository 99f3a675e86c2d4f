package transport

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tidemark/tidemark/internal/destination"
)

// Shared lets the transports of one org whose flush rules are equal build
// each batch once: they cut the same batches (a batch is a function of the
// log and the rules), so the rows one of them read from the output stream
// and the log and decoded are handed to the others instead of being read
// and decoded again. It holds at most a few batches that another
// transport has yet to take; a transport that falls further behind, or
// whose batch was dropped, builds it itself. A transport never waits for
// another one's destination: at most for a build already under way, which
// reads only the local store.
//
// Destinations must not modify the batches they are given (Destination.Write
// does not): every transport of the group writes the same one.
type Shared struct {
	max     int
	mu      sync.Mutex
	members map[group]int
	entries map[sharedKey]*sharedEntry
	order   []sharedKey // oldest first; may name entries already taken

	built, taken atomic.Int64
}

// group is the transports that cut identical batches.
type group struct {
	org   string
	flush Flush
}

type sharedKey struct {
	g           group
	p           int
	first, last uint64
}

type sharedEntry struct {
	done chan struct{} // closed when b, lost and err are set
	b    *destination.Batch
	lost []lostEvent
	err  error
	left int // transports yet to take it
}

// lostEvent is an event of a batch that the log no longer holds intact.
type lostEvent struct {
	offset uint64
	err    error
}

// DefaultSharedBatches is how many batches a Shared holds for the
// transports that have yet to take them: as many as one transport writes
// at once by default, so that sharing holds no more rows in memory than a
// second transport building its own batches would.
const DefaultSharedBatches = 2

// NewShared returns a Shared holding at most max batches not yet taken by
// every transport of their group (max <= 0: DefaultSharedBatches).
func NewShared(max int) *Shared {
	if max <= 0 {
		max = DefaultSharedBatches
	}
	return &Shared{max: max, members: map[group]int{}, entries: map[sharedKey]*sharedEntry{}}
}

// Counts returns how many batches were built for the group and how many of
// them were taken by another transport instead of being built again.
func (s *Shared) Counts() (built, taken int64) { return s.built.Load(), s.taken.Load() }

func (s *Shared) join(g group) {
	s.mu.Lock()
	s.members[g]++
	s.mu.Unlock()
}

// batch returns the batch of key, taken from another transport of the
// group when one built it, else built by build and left for the others.
func (s *Shared) batch(k sharedKey, build func() (*destination.Batch, []lostEvent, error)) (*destination.Batch, []lostEvent, error) {
	s.mu.Lock()
	if e, ok := s.entries[k]; ok {
		if e.left--; e.left <= 0 {
			delete(s.entries, k)
		}
		s.mu.Unlock()
		<-e.done
		if e.err == nil {
			s.taken.Add(1)
			return e.b, e.lost, nil
		}
		return build() // the other transport's build failed: try for ourselves
	}
	others := s.members[k.g] - 1
	if others <= 0 {
		s.mu.Unlock()
		return build()
	}
	e := &sharedEntry{done: make(chan struct{}), left: others}
	s.entries[k] = e
	s.order = append(s.order, k)
	s.trim()
	s.mu.Unlock()

	defer func() {
		if r := recover(); r != nil {
			e.err = fmt.Errorf("build panicked: %v", r)
			s.drop(k, e)
			close(e.done)
			panic(r)
		}
	}()
	e.b, e.lost, e.err = build()
	if e.err != nil {
		s.drop(k, e)
	} else {
		s.built.Add(1)
	}
	close(e.done)
	return e.b, e.lost, e.err
}

// trim drops the oldest batches beyond max, and forgets the order of taken
// ones. s.mu is held.
func (s *Shared) trim() {
	for len(s.entries) > s.max && len(s.order) > 0 {
		delete(s.entries, s.order[0])
		s.order = s.order[1:]
	}
	if len(s.order) > 4*s.max+16 {
		live := s.order[:0]
		for _, k := range s.order {
			if _, ok := s.entries[k]; ok {
				live = append(live, k)
			}
		}
		s.order = live
	}
}

// drop removes e, if key k still holds it.
func (s *Shared) drop(k sharedKey, e *sharedEntry) {
	s.mu.Lock()
	if s.entries[k] == e {
		delete(s.entries, k)
	}
	s.mu.Unlock()
}
