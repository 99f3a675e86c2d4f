package eventlog

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tidemark/tidemark/internal/event"
)

// BenchmarkReaderGet reads a partition's records in offset order, as a
// transport builds a batch, through the concrete *Reader and through the
// RecordReader interface that transport.Log and audit.Log hand out: the
// price of the seam on the hot path. ns/op is per record.
func BenchmarkReaderGet(b *testing.B) {
	const n = 100_000
	l, err := Open(b.TempDir(), Options{Partitions: 1, Registerer: prometheus.NewRegistry(), Logger: slog.Default()})
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	recs := make([]event.Record, 0, 4096)
	for i := range n {
		recs = append(recs, event.Record{Kind: event.KindEvent, Time: int64(i + 1), Event: event.Event{Org: "acme", Device: "device",
			ID: "message-id-0000000000000000", Type: "track", Name: "Clicked", ReceivedAt: int64(i + 1), Properties: []byte(`{"plan":"pro","n":1}`)}})
		if len(recs) == cap(recs) || i == n-1 {
			if err := l.AppendRecords(b.Context(), 0, recs); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	b.Run("concrete", func(b *testing.B) {
		r, err := l.NewReader(0)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		var off uint64
		for b.Loop() {
			off = off%n + 1
			if _, err := r.Get(off); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("interface", func(b *testing.B) {
		r, err := l.OpenReader(0)
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		var off uint64
		for b.Loop() {
			off = off%n + 1
			if _, err := r.Get(off); err != nil {
				b.Fatal(err)
			}
		}
	})
}
