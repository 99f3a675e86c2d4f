package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/format"
)

// The audit's read-back (audit.Destination): stubs until it is written
// (helper pgaudit replaces this file).

var errNotYet = errors.New("postgres destination: audit read-back not implemented yet")

// EventFiles is not implemented yet.
func (d *Postgres) EventFiles(ctx context.Context, hour time.Time) ([]destination.StoredFile, error) {
	return nil, errNotYet
}

// Manifest is not implemented yet.
func (d *Postgres) Manifest(ctx context.Context, id string) (destination.Manifest, bool, error) {
	return destination.Manifest{}, false, errNotYet
}

// ReadFileEvents is not implemented yet.
func (d *Postgres) ReadFileEvents(ctx context.Context, f destination.File) ([]format.EventRow, error) {
	return nil, errNotYet
}
