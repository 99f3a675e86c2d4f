package destination

import "slices"

// Location is the place a destination URL writes to, normalised so that two
// URLs naming one place are equal and a place inside another has the other's
// Path as its prefix. Two destinations whose locations overlap (Overlaps)
// would take each other's batches for their own: configuration refuses them.
type Location struct {
	// Service is the scheme plus what selects the storage service: the S3
	// endpoint, the Azure storage account and domain ("" parts: the default).
	Service string
	// Bucket is the bucket or container ("" for file://).
	Bucket string
	// Path is the key prefix split at "/", or for file:// the absolute
	// directory split at the separator, with the symbolic links of its
	// existing part resolved.
	Path []string
}

// Contains reports whether m is l or inside it.
func (l Location) Contains(m Location) bool {
	return l.Service == m.Service && l.Bucket == m.Bucket &&
		len(m.Path) >= len(l.Path) && slices.Equal(l.Path, m.Path[:len(l.Path)])
}

// Overlaps reports whether l and m are one place or one is inside the other.
func (l Location) Overlaps(m Location) bool { return l.Contains(m) || m.Contains(l) }
