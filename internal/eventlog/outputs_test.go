package eventlog

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/sessionize"
)

// TestOutputSegments: outputs of several chunks read back by any range, and
// deleting through a sequence number inside a segment keeps that segment.
func TestOutputSegments(t *testing.T) {
	l, _ := open(t, t.TempDir(), Options{Partitions: 2})
	defer l.Close()
	hdr := SessionHeader{NextSeq: 1}
	for chunk, n := range []int{3, 1, 4, 2} { // segments 1-3, 4, 5-8, 9-10
		_, err := l.State().UpdateSessions(1, &hdr, time.Hour, func(st sessionize.Store) (int, error) {
			for i := range n {
				o := &sessionize.Output{Kind: sessionize.KindEvent, LogTime: int64(chunk), Org: "o", Offset: hdr.NextSeq * 10, SessionID: fmt.Sprint(i)}
				if err := st.Emit(o); err != nil {
					return 0, err
				}
			}
			return 0, nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	scan := func(from, to uint64) (seqs []uint64) {
		t.Helper()
		err := l.State().ScanOutputs(1, from, to, func(seq uint64, o *sessionize.Output) error {
			if o.Offset != seq*10 {
				return fmt.Errorf("seq %d holds offset %d", seq, o.Offset)
			}
			seqs = append(seqs, seq)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return seqs
	}
	for _, c := range []struct {
		from, to uint64
		want     string
	}{{0, 100, "[1 2 3 4 5 6 7 8 9 10]"}, {2, 2, "[2]"}, {3, 6, "[3 4 5 6]"}, {4, 4, "[4]"}, {10, 11, "[10]"}, {11, 20, "[]"}, {5, 4, "[]"}} {
		if got := fmt.Sprint(scan(c.from, c.to)); got != c.want {
			t.Errorf("ScanOutputs(%d, %d) = %s, want %s", c.from, c.to, got, c.want)
		}
	}
	if off, err := l.State().FirstEventOffset(1, 6, 9); err != nil || off != 60 {
		t.Errorf("FirstEventOffset(6, 9) = %d, %v", off, err)
	}
	for _, c := range []struct {
		handled uint64
		first   string // first remaining segment's items
	}{{0, "[1 2 3 4 5 6 7 8 9 10]"}, {2, "[1 2 3 4 5 6 7 8 9 10]"}, {3, "[4 5 6 7 8 9 10]"}, {6, "[5 6 7 8 9 10]"}, {8, "[9 10]"}, {10, "[]"}} {
		if err := l.State().DeleteOutputsThrough(1, c.handled); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(scan(0, 100)); got != c.first {
			t.Errorf("after DeleteOutputsThrough(%d): %s, want %s", c.handled, got, c.first)
		}
	}
}

func FuzzOutputSegment(f *testing.F) {
	item := sessionize.MarshalOutput(nil, &sessionize.Output{Kind: sessionize.KindWatermark, LogTime: 3})
	f.Add(append([]byte{outSegVersion, byte(len(item))}, item...))
	f.Add([]byte{outSegVersion})
	f.Add([]byte{outSegVersion, 0})
	f.Add([]byte{outSegVersion, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		var n, total int
		err := splitOutputs(5, b, func(seq uint64, item []byte) error {
			if seq != 5+uint64(n) || len(item) == 0 {
				t.Fatalf("item %d: seq %d, %d bytes", n, seq, len(item))
			}
			n++
			total += len(item)
			return nil
		})
		if err != nil {
			if !errors.Is(err, sessionize.ErrCorrupt) {
				t.Fatalf("error not ErrCorrupt: %v", err)
			}
			return
		}
		if n == 0 || total >= len(b) {
			t.Fatalf("valid segment of %d bytes with %d items of %d bytes", len(b), n, total)
		}
	})
}
