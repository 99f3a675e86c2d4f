// Package destination holds the one interface every destination implements,
// the batch it receives and the manifest that commits it, and the optional
// capabilities (Claimer, Classifier) found by type assertion.
// Implementations live in subpackages (blob for file://, s3://, gs://,
// azblob://); package registry opens them by URL scheme.
package destination
