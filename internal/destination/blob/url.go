package blob

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/tidemark/tidemark/internal/redact"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/blob/s3blob"
	"gocloud.dev/gcp"
)

// opener opens the bucket a destination URL names. prefix is the key prefix
// inside the bucket ("" or "a/b"); dir is the local root directory for
// file-backed buckets, which Write fsyncs, and "" otherwise.
type opener func(ctx context.Context, u *url.URL) (b *blob.Bucket, prefix, dir string, err error)

// openers wires URL schemes explicitly rather than through gocloud's URL
// mux: each entry says how its credentials are found. (Importing the
// drivers also registers them on gocloud's default mux; nothing here uses
// it.)
var openers = map[string]opener{
	"file":   openFile,
	"s3":     openS3,
	"gs":     openGCS,
	"azblob": openAzure,
}

// s3Params are the query parameters of s3:// URLs: those of gocloud's
// s3blob.URLOpener and aws.V2ConfigFromURLParams. None holds a secret.
var s3Params = []string{
	"region", "endpoint", "use_path_style", "s3ForcePathStyle", "disable_https",
	"profile", "role", "anonymous", "dualstack", "fips", "accelerate",
	"hostname_immutable", "rate_limiter_capacity", "ssetype", "kmskeyid",
	"request_checksum_calculation", "response_checksum_validation", "awssdk",
}

// azureParams are the query parameters of azblob:// URLs (gocloud's
// azureblob.URLOpener). None holds a secret.
var azureParams = []string{"domain", "protocol", "cdn", "localemu", "storage_account"}

// cloudURL checks the parts common to s3://, gs:// and azblob:// URLs and
// returns the bucket (the host) and the key prefix (the path, "" or "a/b").
// Only the query parameters in params are accepted: anything else may be a
// credential, which belongs in the environment.
func cloudURL(u *url.URL, params []string) (bucket, prefix string, err error) {
	what := map[string]string{"s3": "bucket", "gs": "bucket", "azblob": "container"}[u.Scheme]
	switch {
	case u.Opaque != "":
		return "", "", fmt.Errorf("want %s://%s/prefix", u.Scheme, strings.ToUpper(what))
	case u.User != nil:
		return "", "", fmt.Errorf("%s URLs take no user info: credentials come from the environment", u.Scheme)
	case u.Host == "":
		return "", "", fmt.Errorf("no %s name: want %s://%s/prefix", what, u.Scheme, strings.ToUpper(what))
	case u.Port() != "" || strings.ContainsAny(u.Host, ":[]"):
		return "", "", fmt.Errorf("%s name %q is not valid", what, u.Host)
	}
	q := u.Query()
	for k, vs := range q {
		if !slices.Contains(params, k) {
			if len(params) == 0 {
				return "", "", fmt.Errorf("%s URLs take no query parameters (got %q); credentials come from the environment", u.Scheme, k)
			}
			return "", "", fmt.Errorf("unknown query parameter %q (known: %s); credentials come from the environment", k, strings.Join(params, ", "))
		}
		if len(vs) > 1 {
			return "", "", fmt.Errorf("query parameter %q given %d times", k, len(vs))
		}
		if (k == "endpoint" || k == "domain") && strings.Contains(vs[0], "@") {
			return "", "", fmt.Errorf("query parameter %q takes no user info: credentials come from the environment", k)
		}
	}
	prefix = strings.Trim(u.Path, "/")
	if prefix != "" {
		for seg := range strings.SplitSeq(prefix, "/") {
			if seg == "" || seg == "." || seg == ".." {
				return "", "", fmt.Errorf("prefix %q has an empty, \".\" or \"..\" segment", prefix)
			}
		}
	}
	return u.Host, prefix, nil
}

// driverURL is the URL handed to a gocloud URL opener: scheme, bucket and
// the checked query, without the prefix (handled by Open).
func driverURL(u *url.URL) *url.URL {
	return &url.URL{Scheme: u.Scheme, Host: u.Host, RawQuery: u.RawQuery}
}

// openS3 opens s3://BUCKET/PREFIX?region=..&endpoint=..&use_path_style=..
// with the AWS SDK's default credential chain: AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), AWS_PROFILE and the shared
// config/credentials files, web identity (EKS), ECS and EC2 instance roles.
func openS3(ctx context.Context, u *url.URL) (*blob.Bucket, string, string, error) {
	_, prefix, err := cloudURL(u, s3Params)
	if err != nil {
		return nil, "", "", err
	}
	b, err := new(s3blob.URLOpener).OpenBucketURL(ctx, driverURL(u))
	if err != nil {
		return nil, "", "", err
	}
	return b, prefix, "", nil
}

// openGCS opens gs://BUCKET/PREFIX with Google Application Default
// Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's application-default
// login, or the metadata server on GCP). With STORAGE_EMULATOR_HOST set it
// talks to that emulator, unauthenticated.
func openGCS(ctx context.Context, u *url.URL) (*blob.Bucket, string, string, error) {
	bucket, prefix, err := cloudURL(u, nil)
	if err != nil {
		return nil, "", "", err
	}
	var client *gcp.HTTPClient
	if os.Getenv("STORAGE_EMULATOR_HOST") != "" {
		client = gcp.NewAnonymousHTTPClient(gcp.DefaultTransport()) // unused: gcsblob talks to the emulator
	} else {
		creds, err := gcp.DefaultCredentials(ctx)
		if err != nil {
			return nil, "", "", &classError{ClassAccessDenied, fmt.Errorf("no Google Cloud credentials (set GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, or run on GCP with a service account): %w", err)}
		}
		client, err = gcp.NewHTTPClient(gcp.DefaultTransport(), gcp.CredentialsTokenSource(creds))
		if err != nil {
			return nil, "", "", err
		}
	}
	b, err := gcsblob.OpenBucket(ctx, client, bucket, nil)
	if err != nil {
		return nil, "", "", err
	}
	return b, prefix, "", nil
}

// openAzure opens azblob://CONTAINER/PREFIX with the credentials gocloud's
// azureblob reads from the environment: AZURE_STORAGE_ACCOUNT with
// AZURE_STORAGE_KEY (shared key), AZURE_STORAGE_SAS_TOKEN,
// AZURE_STORAGE_CONNECTION_STRING, or else azidentity's
// DefaultAzureCredential (AZURE_CLIENT_ID/AZURE_TENANT_ID/..., workload and
// managed identity, the Azure CLI). AZURE_STORAGE_DOMAIN, _PROTOCOL,
// _IS_CDN and _IS_LOCAL_EMULATOR, or the URL's domain, protocol, cdn,
// localemu and storage_account parameters, choose the service endpoint.
func openAzure(ctx context.Context, u *url.URL) (*blob.Bucket, string, string, error) {
	_, prefix, err := cloudURL(u, azureParams)
	if err != nil {
		return nil, "", "", err
	}
	opts := azureblob.NewDefaultServiceURLOptions()
	q := u.Query()
	if opts.AccountName == "" && q.Get("storage_account") == "" {
		return nil, "", "", errors.New("no Azure storage account: set AZURE_STORAGE_ACCOUNT (or AZURE_STORAGE_CONNECTION_STRING), or add storage_account= to the URL")
	}
	if opts.SASToken != "" {
		// The SAS token is part of the service URL: the URL must not send it
		// to another endpoint.
		for _, k := range azureParams {
			if q.Has(k) {
				return nil, "", "", fmt.Errorf("with AZURE_STORAGE_SAS_TOKEN set, the URL cannot change the service endpoint (%q); use the AZURE_STORAGE_* variables", k)
			}
		}
	}
	o := &azureblob.URLOpener{MakeClient: azureblob.NewDefaultClient, ServiceURLOptions: *opts}
	b, err := o.OpenBucketURL(ctx, driverURL(u))
	if err != nil {
		return nil, "", "", err
	}
	return b, prefix, "", nil
}

func openFile(_ context.Context, u *url.URL) (*blob.Bucket, string, string, error) {
	dir, err := fileDir(u)
	if err != nil {
		return nil, "", "", err
	}
	b, err := fileblob.OpenBucket(dir, &fileblob.Options{
		CreateDir: true,
		// Temp files next to their final path: os.TempDir is often another
		// file system (rename would fail with EXDEV), and Cleanup can only
		// find a crash's leftovers inside the bucket.
		NoTempDir: true,
		// No ".attrs" sidecar files: query engines reading a table's
		// directory would take them for data files.
		Metadata: fileblob.MetadataDontWrite,
	})
	if err != nil {
		return nil, "", "", err
	}
	return b, "", dir, nil
}

// safeQuery lists query parameters whose values are never secrets; Redact
// keeps their values and masks every other one.
var safeQuery = []string{
	"region", "endpoint", "prefix", "format", "compression", "profile",
	"use_path_style", "s3ForcePathStyle", "disable_https", "disableSSL",
	"awssdk", "dualstack", "fips", "accelerate", "anonymous", "domain", "protocol",
	"localemu", "cdn", "no_tmp_dir", "create_dir", "metadata",
	"role", "hostname_immutable", "rate_limiter_capacity", "ssetype", "kmskeyid",
	"request_checksum_calculation", "response_checksum_validation", "storage_account",
	// Harmless parameters of the storage APIs, seen in request URLs that
	// errors quote.
	"list-type", "delimiter", "max-keys", "x-id", "comp", "restype", "uploadType",
	"alt", "partNumber", "uploadId", "uploads", "name", "projection", "versions",
	"maxResults", "startOffset", "endOffset", "matchGlob", "includeFoldersAsPrefixes",
	"includeTrailingDelimiter", "prettyPrint", "softDeleted", "maxresults", "include",
}

// Redact returns rawURL fit for logs and errors: without user info, fragment
// and the values of query parameters that may hold secrets (anything not
// known to be harmless, such as access keys, SAS tokens and signatures).
func Redact(rawURL string) string { return redact.URL(rawURL, safeQuery) }

func parseURL(rawURL string) (*url.URL, opener, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// err quotes rawURL, which may hold credentials.
		return nil, nil, fmt.Errorf("destination URL %s: malformed URL", Redact(rawURL))
	}
	open, ok := openers[u.Scheme]
	if !ok {
		schemes := make([]string, 0, len(openers))
		for s := range openers {
			schemes = append(schemes, s+"://")
		}
		slices.Sort(schemes)
		return nil, nil, fmt.Errorf("destination URL %s: unsupported scheme %q (supported: %s)",
			Redact(rawURL), u.Scheme, strings.Join(schemes, ", "))
	}
	return u, open, nil
}

// urlInText matches URLs inside error messages (Go's *url.Error quotes the
// request URL, query included).
var urlInText = regexp.MustCompile(`[a-zA-Z][a-zA-Z0-9+.-]*://[^\s"'<>]+`)

// secretInText matches key=value pairs that are credentials wherever they
// appear: SAS signatures, presigned S3 parameters, connection strings.
var secretInText = regexp.MustCompile(`(?i)\b(sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|accountkey|sharedaccesssignature|password|secret|client_secret)=([^&;\s"']+)`)

// secretEnv are environment variables whose values are credentials; they are
// masked in error messages should a library quote them.
var secretEnv = []string{
	"AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AZURE_STORAGE_KEY", "AZURE_STORAGE_SAS_TOKEN",
	"AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGEBLOB_CONNECTIONSTRING", "AZURE_CLIENT_SECRET",
}

// RedactText returns s with every URL in it redacted (see Redact), every
// credential-looking key=value pair masked, and the values of the secret
// environment variables of the cloud SDKs replaced by [redacted].
func RedactText(s string) string {
	s = urlInText.ReplaceAllStringFunc(s, func(u string) string {
		// Trailing punctuation is more likely prose than URL.
		trimmed := strings.TrimRight(u, ".,;:)")
		return Redact(trimmed) + u[len(trimmed):]
	})
	s = secretInText.ReplaceAllString(s, "${1}=REDACTED")
	for _, k := range secretEnv {
		if v := os.Getenv(k); len(v) >= 8 {
			s = strings.ReplaceAll(s, v, "[redacted]")
		}
	}
	return s
}

// redactedError is an error whose message went through RedactText; it
// unwraps to the original, so errors.Is/As and Classify still see it.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr returns err with its message redacted (nil stays nil).
func redactErr(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*redactedError); ok {
		return err
	}
	msg := err.Error()
	red := RedactText(msg)
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}
