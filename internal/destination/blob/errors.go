package blob

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"syscall"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	"gocloud.dev/gcerrors"
	"google.golang.org/api/googleapi"
)

// Class is the kind of problem behind a destination error, for operators
// (the status page, a metric label) and for the transport's retry policy.
type Class int

const (
	// ClassUnknown is anything not recognised below (server errors,
	// corrupt content, a missing object). Retried.
	ClassUnknown Class = iota
	// ClassBucketMissing: the bucket or container does not exist (S3
	// NoSuchBucket, GCS 404 on the bucket, Azure ContainerNotFound).
	ClassBucketMissing
	// ClassAccessDenied: the credentials are missing, wrong, expired, or
	// lack a permission (HTTP 401/403, S3 InvalidAccessKeyId and
	// SignatureDoesNotMatch, Azure AuthenticationFailed and
	// Authorization*, a local directory that is not writable).
	ClassAccessDenied
	// ClassWrongRegion: the bucket lives in another region than the URL's
	// region= (S3 PermanentRedirect, AuthorizationHeaderMalformed).
	ClassWrongRegion
	// ClassInvalid: the URL or a request is invalid (unknown scheme or
	// parameter, bad bucket name, an API version the server rejects, a
	// malformed batch).
	ClassInvalid
	// ClassNetwork: the service could not be reached (connection refused
	// or reset, DNS failure).
	ClassNetwork
	// ClassThrottled: the service asks to slow down (HTTP 429/503, S3
	// SlowDown, Azure ServerBusy).
	ClassThrottled
	// ClassTimeout: a deadline passed.
	ClassTimeout
	// ClassCanceled: the caller canceled the operation.
	ClassCanceled
	// ClassClaimed: the destination's place belongs to another destination
	// (see Claim): its marker is at the prefix, above it or below it.
	ClassClaimed
)

var classNames = [...]string{
	ClassUnknown:       "unknown error",
	ClassBucketMissing: "bucket missing",
	ClassAccessDenied:  "access denied",
	ClassWrongRegion:   "wrong region",
	ClassInvalid:       "invalid configuration",
	ClassNetwork:       "network error",
	ClassThrottled:     "throttled",
	ClassTimeout:       "timeout",
	ClassCanceled:      "canceled",
	ClassClaimed:       "claimed by another destination",
}

// String returns a short lower-case name: "bucket missing", "access
// denied", ... (fit for a status page or a metric label).
func (c Class) String() string {
	if c >= 0 && int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown error"
}

// Permanent reports whether errors of this class persist until someone
// changes the configuration, credentials or bucket: retrying soon will not
// help, so they should be surfaced as an error state (and still retried,
// with backoff, since someone may fix them).
func (c Class) Permanent() bool {
	switch c {
	case ClassBucketMissing, ClassAccessDenied, ClassWrongRegion, ClassInvalid, ClassClaimed:
		return true
	}
	return false
}

// IsPermanent reports whether err, returned by Open, Write, Committed,
// Cleanup or Probe, is a permanent destination error: a missing bucket,
// denied access, a wrong region or an invalid configuration. Transient
// errors (network, throttling, timeouts, server errors) are not.
func IsPermanent(err error) bool { return err != nil && Classify(err).Permanent() }

// classError marks an error of ours with its class.
type classError struct {
	class Class
	err   error
}

func (e *classError) Error() string { return e.err.Error() }
func (e *classError) Unwrap() error { return e.err }

// invalid marks err as ClassInvalid.
func invalid(err error) error { return &classError{ClassInvalid, err} }

// Classify returns the class of err (ClassUnknown for nil). It looks at the
// cloud SDKs' own error codes first, then at network and context errors,
// then at gocloud's portable code.
func Classify(err error) Class {
	if err == nil {
		return ClassUnknown
	}
	var pe *ProbeError
	if errors.As(err, &pe) {
		return pe.Class
	}
	var ce *classError
	if errors.As(err, &ce) {
		return ce.class
	}
	if c, ok := classifyProvider(err); ok {
		return c
	}
	if isNetwork(err) {
		return ClassNetwork
	}
	switch {
	case errors.Is(err, context.Canceled):
		return ClassCanceled
	case errors.Is(err, context.DeadlineExceeded):
		return ClassTimeout
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS):
		return ClassAccessDenied
	}
	switch gcerrors.Code(err) {
	case gcerrors.PermissionDenied:
		return ClassAccessDenied
	case gcerrors.InvalidArgument:
		return ClassInvalid
	case gcerrors.ResourceExhausted:
		return ClassThrottled
	case gcerrors.DeadlineExceeded:
		return ClassTimeout
	case gcerrors.Canceled:
		return ClassCanceled
	}
	// gcerrors.NotFound alone does not say whether the bucket or an object
	// is missing: the providers' codes above tell buckets apart.
	return ClassUnknown
}

// classifyProvider classifies the error codes of S3, GCS and Azure.
func classifyProvider(err error) (Class, bool) {
	// S3 (and S3-compatible stores).
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "NoSuchBucket":
			return ClassBucketMissing, true
		case "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
			"AllAccessDisabled", "AccountProblem", "ExpiredToken", "InvalidToken",
			"TokenRefreshRequired", "NotSignedUp", "InvalidSecurity", "MissingSecurityHeader",
			"UnauthorizedAccess", "InvalidClientTokenId":
			return ClassAccessDenied, true
		case "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
			"InvalidRegion", "Redirect", "TemporaryRedirect":
			return ClassWrongRegion, true
		case "InvalidBucketName", "InvalidArgument", "InvalidRequest", "InvalidURI",
			"KeyTooLongError", "MethodNotAllowed", "NotImplemented", "XAmzContentSHA256Mismatch",
			"InvalidDigest", "BadDigest":
			return ClassInvalid, true
		case "SlowDown", "ServiceUnavailable", "Throttling", "ThrottlingException",
			"RequestLimitExceeded", "TooManyRequests", "RequestThrottled", "RequestThrottledException":
			return ClassThrottled, true
		case "RequestTimeout", "RequestTimeTooSkewed":
			return ClassTimeout, true
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		if c, ok := classifyStatus(re.HTTPStatusCode()); ok {
			return c, true
		}
	}
	if msg := err.Error(); strings.Contains(msg, "failed to retrieve credentials") ||
		strings.Contains(msg, "failed to refresh cached credentials") || strings.Contains(msg, "get identity:") {
		return ClassAccessDenied, true // no usable AWS credentials
	}

	// Google Cloud Storage.
	if errors.Is(err, storage.ErrBucketNotExist) {
		return ClassBucketMissing, true
	}
	if !errors.Is(err, storage.ErrObjectNotExist) {
		var ge *googleapi.Error
		if errors.As(err, &ge) {
			if ge.Code == http.StatusNotFound {
				// Object calls report a missing object as ErrObjectNotExist;
				// a bare 404 is the bucket (list, upload).
				return ClassBucketMissing, true
			}
			if c, ok := classifyStatus(ge.Code); ok {
				return c, true
			}
		}
	}

	// Azure Blob Storage.
	var are *azcore.ResponseError
	if errors.As(err, &are) {
		code := are.ErrorCode
		switch {
		case code == "ContainerNotFound", code == "ContainerBeingDeleted", code == "ContainerDisabled":
			return ClassBucketMissing, true
		case code == "AuthenticationFailed", strings.HasPrefix(code, "Authorization"),
			code == "InsufficientAccountPermissions", code == "AccountIsDisabled",
			code == "NoAuthenticationInformation", code == "InvalidAuthenticationInfo":
			return ClassAccessDenied, true
		case code == "InvalidResourceName", code == "InvalidQueryParameterValue", code == "InvalidUri",
			code == "InvalidHeaderValue", code == "InvalidInput", code == "UnsupportedHeader",
			code == "InvalidMd5", code == "Md5Mismatch":
			return ClassInvalid, true
		case code == "ServerBusy":
			return ClassThrottled, true
		case code == "OperationTimedOut":
			return ClassTimeout, true
		}
		if c, ok := classifyStatus(are.StatusCode); ok {
			return c, true
		}
	}
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) {
		return ClassAccessDenied, true
	}
	if strings.Contains(err.Error(), "DefaultAzureCredential") {
		return ClassAccessDenied, true // no usable Azure credential
	}
	return ClassUnknown, false
}

func classifyStatus(code int) (Class, bool) {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return ClassAccessDenied, true
	case http.StatusMovedPermanently:
		return ClassWrongRegion, true
	case http.StatusTooManyRequests, http.StatusServiceUnavailable:
		return ClassThrottled, true
	}
	return ClassUnknown, false
}

// isNetwork reports a failure to reach the service. (context deadlines also
// implement net.Error, so only the concrete network types count.)
func isNetwork(err error) bool {
	var oe *net.OpError
	var de *net.DNSError
	return errors.As(err, &oe) || errors.As(err, &de) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH) ||
		errors.Is(err, syscall.EPIPE)
}

// Permanent is IsPermanent (destination.Classifier).
func (d *Blob) Permanent(err error) bool { return IsPermanent(err) }
