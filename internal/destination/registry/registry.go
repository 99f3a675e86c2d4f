// Package registry opens destinations by URL scheme. It is the one place
// that knows which schemes exist and which package implements each: the
// map below, written out, not filled by init side effects. Everything else
// holds a destination.Destination and finds optional capabilities
// (destination.Claimer, destination.Classifier, the audit's read-back) by
// type assertion.
//
// It is a package of its own, not destination.Open, because every
// implementation imports package destination for the Batch it writes.
package registry

import (
	"context"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/blob"
	"github.com/tidemark/tidemark/internal/destination/postgres"
)

// scheme is how one URL scheme is opened and located.
type scheme struct {
	open func(ctx context.Context, rawURL string, o destination.Options) (destination.Destination, error)
	// locate returns where a URL of the scheme writes, for the
	// configuration's overlap check.
	locate func(rawURL string) (destination.Location, error)
}

var blobScheme = scheme{
	open: func(ctx context.Context, rawURL string, o destination.Options) (destination.Destination, error) {
		d, err := blob.Open(ctx, rawURL, o.Codec)
		if err != nil {
			return nil, err
		}
		return d, nil
	},
	locate: blob.ParseLocation,
}

var postgresScheme = scheme{
	open: func(ctx context.Context, rawURL string, o destination.Options) (destination.Destination, error) {
		d, err := postgres.Open(ctx, rawURL, o)
		if err != nil {
			return nil, err
		}
		return d, nil
	},
	locate: postgres.ParseLocation,
}

// schemes are the destination URL schemes, in the order messages list them.
var schemes = []string{"file", "s3", "gs", "azblob", "postgres", "postgresql"}

var byScheme = map[string]scheme{
	"file":       blobScheme,
	"s3":         blobScheme,
	"gs":         blobScheme,
	"azblob":     blobScheme,
	"postgres":   postgresScheme,
	"postgresql": postgresScheme,
}

// Schemes returns the supported URL schemes ("file", "s3", ...).
func Schemes() []string { return append([]string(nil), schemes...) }

// Open opens the destination rawURL names. It only builds the client: a
// destination that can check its service does so when the transport
// probes it. Errors never contain credentials.
func Open(ctx context.Context, rawURL string, o destination.Options) (destination.Destination, error) {
	s, err := lookup(rawURL)
	if err != nil {
		return nil, err
	}
	return s.open(ctx, rawURL, o)
}

// Locate returns where rawURL writes, normalised (destination.Location).
func Locate(rawURL string) (destination.Location, error) {
	s, err := lookup(rawURL)
	if err != nil {
		return destination.Location{}, err
	}
	return s.locate(rawURL)
}

// Redact returns rawURL without credentials, for messages.
func Redact(rawURL string) string {
	if scheme, _, _ := strings.Cut(rawURL, "://"); scheme == "postgres" || scheme == "postgresql" {
		return postgres.Redact(rawURL)
	}
	return blob.Redact(rawURL)
}

func lookup(rawURL string) (scheme, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// err quotes rawURL, which may hold credentials.
		return scheme{}, fmt.Errorf("destination URL %s: malformed URL", Redact(rawURL))
	}
	s, ok := byScheme[u.Scheme]
	if !ok {
		names := make([]string, len(schemes))
		for i, n := range schemes {
			names[i] = n + "://"
		}
		slices.Sort(names)
		return scheme{}, fmt.Errorf("destination URL %s: unsupported scheme %q (supported: %s)",
			Redact(rawURL), u.Scheme, strings.Join(names, ", "))
	}
	return s, nil
}
