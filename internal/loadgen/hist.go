package loadgen

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// histogram records durations in log-linear buckets, HDR style: values below
// 256ns are exact, and above that each power of two is split into 128
// buckets, so a reported value (the bucket's midpoint) is within 1/256 of the
// recorded one. Recording is lock-free; memory is fixed (58 KiB).
type histogram struct {
	counts [(64 - subBits + 1) << subBits]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

const (
	subBits = 7
	sub     = 1 << subBits
)

func bucketOf(v uint64) int {
	if v < 2*sub {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return (shift+1)<<subBits + int(v>>shift) - sub
}

// bucketValue returns the midpoint of bucket i.
func bucketValue(i int) uint64 {
	if i < 2*sub {
		return uint64(i)
	}
	shift := i>>subBits - 1
	low := uint64(sub+i&(sub-1)) << shift
	return low + (uint64(1)<<shift)/2
}

func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(uint64(v))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// quantile returns the nearest-rank q-quantile (0 < q <= 1), 0 when empty.
// Call it when recording has stopped.
func (h *histogram) quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(min(int64(bucketValue(i)), h.max.Load()))
		}
	}
	return time.Duration(h.max.Load())
}

// Latency summarizes request latencies.
type Latency struct {
	Count         int64 // requests measured
	P50, P90, P99 time.Duration
	Max           time.Duration // exact
}

func (h *histogram) latency() Latency {
	return Latency{
		Count: int64(h.n.Load()),
		P50:   h.quantile(0.50),
		P90:   h.quantile(0.90),
		P99:   h.quantile(0.99),
		Max:   time.Duration(h.max.Load()),
	}
}
