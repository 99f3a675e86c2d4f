package blob

import (
	"context"

	"github.com/tidemark/tidemark/internal/destination"
)

// crashing is a blob destination for crash tests: WriteUncommitted writes a
// batch's data files but not its manifest, as a crash just before the
// commit point leaves them (destinationtest.UncommittedWriter).
type crashing struct{ *Blob }

func (d crashing) WriteUncommitted(ctx context.Context, b *destination.Batch) error {
	_, _, err := d.writeData(ctx, b)
	return redactErr(err)
}
