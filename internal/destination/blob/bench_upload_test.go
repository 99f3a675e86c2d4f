package blob

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/destinationtest"
	"github.com/tidemark/tidemark/internal/format"
)

// BenchmarkUpload writes committed batches of 10,000 events (~300 bytes of
// properties each, varied so they do not compress away) to every backend:
// encoding, data file upload and manifest, as the transport does. MB/s is of
// the encoded files; events/s counts the batch's events.
//
//	./scripts/test.sh -run '^$' -bench Upload -benchtime 20x ./internal/destination/blob
func BenchmarkUpload(b *testing.B) {
	const events = 10000
	rng := rand.New(rand.NewPCG(1, 2))
	words := []string{"checkout", "cart", "search", "product", "banner", "signup", "promo", "footer"}
	mkBatch := func(i int) *destination.Batch {
		first := uint64(i)*events + 1
		bt := destinationtest.Batch(0, first, first+events-1, events)
		for j := range bt.Events {
			p := fmt.Sprintf(`{"sku":"SKU-%06d","label":%q,"price":%d.%02d,"qty":%d,"category":%q,"campaign":"cmp-%04d","path":"/shop/%s/%d","referrer":"https://ref.test/%s?q=%d","experiment":"exp-%03d","variant":%q}`,
				rng.IntN(1e6), words[rng.IntN(len(words))], rng.IntN(500), rng.IntN(100), 1+rng.IntN(5), words[rng.IntN(len(words))],
				rng.IntN(1e4), words[rng.IntN(len(words))], rng.IntN(1e5), words[rng.IntN(len(words))], rng.IntN(1e6), rng.IntN(1000), words[rng.IntN(2)])
			bt.Events[j].Properties = &p
		}
		// All events in one hour: one events file per batch.
		for j := range bt.Events {
			bt.Events[j].ReceivedAt = bt.Events[0].ReceivedAt
		}
		return bt
	}
	var sample bytes.Buffer
	if err := format.Write(&sample, format.Default, mkBatch(0).Events); err != nil {
		b.Fatal(err)
	}
	for _, be := range allBackends {
		b.Run(be.name, func(b *testing.B) {
			bucket := be.bucket(b)
			d := openURL(b, be.url(b, bucket, "bench"), format.Default)
			batches := make([]*destination.Batch, b.N)
			for i := range batches {
				batches[i] = mkBatch(i)
			}
			b.SetBytes(int64(sample.Len()))
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				if err := d.Write(b.Context(), batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*events)/time.Since(start).Seconds(), "events/s")
		})
	}
}
