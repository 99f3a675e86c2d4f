package blob

import (
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/tidemark/tidemark/internal/destination"
)

// Location is where a destination URL writes (destination.Location).
type Location = destination.Location

// ParseLocation returns where rawURL writes. A file:// URL's relative path
// is made absolute against the working directory, as Open does; an invalid
// URL is an error that never quotes credentials.
func ParseLocation(rawURL string) (Location, error) {
	u, _, err := parseURL(rawURL)
	if err != nil {
		return Location{}, err
	}
	if u.Scheme == "file" {
		dir, err := fileDir(u)
		if err != nil {
			return Location{}, err
		}
		real, err := resolveExisting(dir)
		if err != nil {
			return Location{}, err
		}
		return Location{Service: "file", Path: splitPath(filepath.ToSlash(real))}, nil
	}
	params := map[string][]string{"s3": s3Params, "azblob": azureParams}[u.Scheme]
	bucket, prefix, err := cloudURL(u, params)
	if err != nil {
		return Location{}, err
	}
	q := u.Query()
	service := u.Scheme
	switch u.Scheme {
	case "s3":
		service += "|" + normalEndpoint(q.Get("endpoint"))
	case "azblob":
		service += "|" + orEnv(q.Get("storage_account"), "AZURE_STORAGE_ACCOUNT") +
			"|" + strings.ToLower(orEnv(q.Get("domain"), "AZURE_STORAGE_DOMAIN"))
	}
	return Location{Service: service, Bucket: bucket, Path: splitPath(prefix)}, nil
}

func splitPath(p string) []string {
	var segs []string
	for s := range strings.SplitSeq(p, "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	return segs
}

func orEnv(v, env string) string {
	if v == "" {
		v = os.Getenv(env)
	}
	return v
}

// normalEndpoint returns an S3 endpoint URL with its scheme and host in
// lower case and no trailing slash ("" stays "": AWS).
func normalEndpoint(e string) string {
	u, err := url.Parse(e)
	if err != nil || u.Host == "" {
		return strings.TrimRight(e, "/")
	}
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + strings.TrimRight(u.Path, "/")
}

// fileDir returns the absolute, cleaned directory of a file:// URL.
func fileDir(u *url.URL) (string, error) {
	if u.Opaque != "" {
		return "", errors.New("want file:///absolute/path or file://./relative/path")
	}
	if u.User != nil {
		return "", errors.New("file URLs take no user info")
	}
	if len(u.Query()) > 0 {
		return "", errors.New("file URLs take no query parameters")
	}
	var dir string
	switch u.Host {
	case "", "localhost":
		dir = u.Path
	case ".", "..": // file://./lake: relative to the working directory
		dir = u.Host + u.Path
	default:
		return "", fmt.Errorf("file URL host %q is not supported: want file:///absolute/path or file://./relative/path", u.Host)
	}
	if dir == "" || dir == "/" {
		return "", errors.New("file URL has no directory")
	}
	return filepath.Abs(filepath.FromSlash(dir))
}

// resolveExisting returns dir (absolute and clean) with the symbolic links
// of its longest existing ancestor resolved; the part that does not exist
// yet is appended as it is.
func resolveExisting(dir string) (string, error) {
	rest := ""
	for p := dir; ; {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(real, rest), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			// The error quotes the path: keep machine paths out of messages.
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			return "", fmt.Errorf("resolve the directory's symbolic links: %w", err)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return dir, nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
		p = parent
	}
}
