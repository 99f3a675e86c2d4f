package format

import (
	"sync"

	"github.com/klauspost/compress/zstd"
	pformat "github.com/parquet-go/parquet-go/format"
)

// zstdCodec is parquet's ZSTD codec with a bounded encoder window. Parquet
// compresses one page (about 1 MiB at most here) at a time, so a window larger
// than a page buys nothing; parquet-go's default encoder keeps an 8 MiB
// history per pooled encoder, which showed up as tens of MiB of resident
// memory under load. Fixed options keep the output deterministic.
type zstdCodec struct {
	enc sync.Pool // *zstd.Encoder
	dec sync.Pool // *zstd.Decoder
}

var zstdPages = &zstdCodec{}

func (c *zstdCodec) String() string                             { return "ZSTD" }
func (c *zstdCodec) CompressionCodec() pformat.CompressionCodec { return pformat.Zstd }

func (c *zstdCodec) Encode(dst, src []byte) ([]byte, error) {
	e, _ := c.enc.Get().(*zstd.Encoder)
	if e == nil {
		var err error
		e, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedDefault),
			zstd.WithEncoderConcurrency(1),
			zstd.WithWindowSize(1<<20),
			zstd.WithLowerEncoderMem(true),
			zstd.WithZeroFrames(true),
			zstd.WithEncoderCRC(false))
		if err != nil {
			return nil, err
		}
	}
	defer c.enc.Put(e)
	return e.EncodeAll(src, dst[:0]), nil
}

func (c *zstdCodec) Decode(dst, src []byte) ([]byte, error) {
	d, _ := c.dec.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true))
		if err != nil {
			return nil, err
		}
	}
	defer c.dec.Put(d)
	return d.DecodeAll(src, dst[:0])
}
