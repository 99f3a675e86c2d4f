// Package destination holds the one interface every destination implements and
// the batch it receives. Implementations live in subpackages (blob for file://,
// s3://, gs://, azblob://) and are wired explicitly by URL scheme in Open.
package destination
