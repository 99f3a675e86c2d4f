package blob

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
)

// opener opens the bucket a destination URL names. prefix is the key prefix
// inside the bucket ("" or "a/b"); dir is the local root directory for
// file-backed buckets, which Write fsyncs, and "" otherwise.
type opener func(ctx context.Context, u *url.URL) (b *blob.Bucket, prefix, dir string, err error)

// openers wires URL schemes explicitly rather than through gocloud's URL
// mux and the blank imports that register it. Adding s3, gs or azblob means
// adding an entry here.
var openers = map[string]opener{
	"file": openFile,
}

func openFile(_ context.Context, u *url.URL) (*blob.Bucket, string, string, error) {
	if u.Opaque != "" {
		return nil, "", "", errors.New("want file:///absolute/path or file://./relative/path")
	}
	if u.User != nil {
		return nil, "", "", errors.New("file URLs take no user info")
	}
	if len(u.Query()) > 0 {
		return nil, "", "", errors.New("file URLs take no query parameters")
	}
	var dir string
	switch u.Host {
	case "", "localhost":
		dir = u.Path
	case ".", "..": // file://./lake: relative to the working directory
		dir = u.Host + u.Path
	default:
		return nil, "", "", fmt.Errorf("file URL host %q is not supported: want file:///absolute/path or file://./relative/path", u.Host)
	}
	if dir == "" || dir == "/" {
		return nil, "", "", errors.New("file URL has no directory")
	}
	dir, err := filepath.Abs(filepath.FromSlash(dir))
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
}

// Redact returns rawURL fit for logs and errors: without user info, fragment
// and the values of query parameters that may hold secrets (anything not
// known to be harmless, such as access keys, SAS tokens and signatures).
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		// The parser's own error quotes the input; show only the scheme.
		if scheme, _, ok := strings.Cut(rawURL, "://"); ok && !strings.ContainsAny(scheme, "/@:?#") {
			return scheme + "://<unparsable>"
		}
		return "<unparsable URL>"
	}
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	if u.Opaque != "" {
		// "scheme:opaque" may carry anything; keep only the scheme.
		return u.Scheme + ":<opaque>"
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k, vs := range q {
			if !slices.Contains(safeQuery, k) {
				for i := range vs {
					vs[i] = "REDACTED"
				}
			}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}

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
