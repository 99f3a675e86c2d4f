package blob

import (
	"context"
	"errors"
	"fmt"
	"io"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// ProbeKey is the object Probe writes and deletes, relative to the
// destination's prefix. Committed, Cleanup and readers of the layout ignore
// it (it is no table and no manifest).
const ProbeKey = "_tidemark_probe"

// probeContent is what Probe writes: constant, so concurrent probes of one
// prefix write the same object.
var probeContent = []byte("tidemark write probe; safe to delete\n")

// ProbeError is the error of Probe. Its message names the destination (by
// its redacted URL), the class of the problem and the step that failed.
type ProbeError struct {
	URL    string // the destination, redacted
	Bucket string // the bucket or container (the directory for file://)
	Step   string // "list", "write", "delete" or "claim"
	Class  Class
	Err    error // redacted
}

func (e *ProbeError) Error() string {
	var what string
	switch e.Class {
	case ClassBucketMissing:
		what = fmt.Sprintf("bucket %q does not exist", e.Bucket)
	case ClassAccessDenied:
		what = "access denied: check the credentials and that they may list, write and delete under the prefix"
	case ClassWrongRegion:
		what = fmt.Sprintf("wrong region: bucket %q is in another region than the URL's region=", e.Bucket)
	case ClassInvalid:
		what = "invalid configuration"
	case ClassNetwork:
		what = "network error: cannot reach the storage service"
	case ClassThrottled:
		what = "throttled by the storage service"
	case ClassTimeout:
		what = "timed out"
	case ClassCanceled:
		what = "canceled"
	case ClassClaimed:
		what = "refusing to write or clean up a place that belongs to another destination"
	default:
		what = "failed"
	}
	return fmt.Sprintf("destination %s: %s (probe %s: %v)", e.URL, what, e.Step, e.Err)
}

func (e *ProbeError) Unwrap() error { return e.Err }

// Probe checks that the destination is usable: it lists one key under the
// prefix, then writes and deletes ProbeKey, then, with an owner set
// (SetOwner), claims the place (Claim). It returns nil or a *ProbeError
// whose Class says what is wrong (Classify and IsPermanent work on it too).
// It does not retry beyond what the cloud SDK does; bound ctx to bound it
// (an unreachable GCS endpoint is retried until ctx is done).
func (d *Blob) Probe(ctx context.Context) error {
	fail := func(step string, err error) error {
		class := Classify(err)
		if class == ClassUnknown && step != "delete" && gcerrors.Code(err) == gcerrors.NotFound {
			// Listing or writing cannot miss an object: it is the bucket.
			class = ClassBucketMissing
		}
		return &ProbeError{URL: d.url, Bucket: d.bucketName, Step: step, Class: class, Err: redactErr(err)}
	}
	if _, _, err := d.listPage(ctx, blob.FirstPageToken, 1, &blob.ListOptions{}); err != nil && !errors.Is(err, io.EOF) {
		return fail("list", err)
	}
	if err := d.put(ctx, ProbeKey, probeContent, "text/plain; charset=utf-8"); err != nil {
		return fail("write", err)
	}
	if err := d.bucket.Delete(ctx, ProbeKey); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
		return fail("delete", err)
	}
	if d.owner != nil {
		if err := d.Claim(ctx); err != nil {
			return fail("claim", err)
		}
	}
	return nil
}
