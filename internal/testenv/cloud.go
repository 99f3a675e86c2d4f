package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/bloberror"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"google.golang.org/api/iterator"
	"google.golang.org/api/option"
)

// Environment variables exported by ./scripts/test.sh for the object
// storage emulators.
const (
	// EnvS3Endpoint is the base URL of an S3 server (versitygw) on
	// 127.0.0.1, e.g. http://127.0.0.1:PORT; region us-east-1, path-style.
	EnvS3Endpoint = "TIDEMARK_TEST_S3_ENDPOINT"
	// EnvS3AccessKey and EnvS3SecretKey are its root credentials (random
	// per run of the script).
	EnvS3AccessKey = "TIDEMARK_TEST_S3_ACCESS_KEY"
	EnvS3SecretKey = "TIDEMARK_TEST_S3_SECRET_KEY"
	// EnvGCSHost is the host:port of a GCS emulator (fake-gcs-server,
	// plain HTTP): the value for STORAGE_EMULATOR_HOST.
	EnvGCSHost = "TIDEMARK_TEST_GCS_HOST"
	// EnvAzureEndpoint is the blob service URL of the Azurite account
	// devstoreaccount1, e.g. http://127.0.0.1:PORT/devstoreaccount1.
	EnvAzureEndpoint = "TIDEMARK_TEST_AZURE_ENDPOINT"

	// EnvVersitygwBin, EnvFakeGCSBin and EnvAzuriteBin are the absolute
	// paths of the server binaries (azurite-blob is a Node.js script), for
	// tests that run a server of their own (to stop and restart it).
	EnvVersitygwBin = "TIDEMARK_TEST_VERSITYGW_BIN"
	EnvFakeGCSBin   = "TIDEMARK_TEST_FAKE_GCS_BIN"
	EnvAzuriteBin   = "TIDEMARK_TEST_AZURITE_BIN"
)

// Azurite's well-known development account (public, documented by
// Microsoft; not a secret).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// S3Region is the region of the test S3 server.
const S3Region = "us-east-1"

// DefaultPrefix is the key prefix of the URLs that S3, GCS and Azure return.
const DefaultPrefix = "lake"

// setupTimeout bounds creating a bucket or listing one.
const setupTimeout = 30 * time.Second

// S3 creates a fresh, empty bucket on the test S3 server and returns the
// gocloud URL of prefix DefaultPrefix in it,
//
//	s3://BUCKET/lake?endpoint=http://127.0.0.1:PORT&region=us-east-1&use_path_style=true
//
// and the bucket's name. It sets the credentials in the process environment
// for the rest of the test (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY; see
// S3Env), so the test and its ancestors must not be parallel (t.Setenv).
func S3(t testing.TB) (url, bucket string) {
	t.Helper()
	setEnv(t, S3Env(t))
	bucket = BucketName(t)
	CreateS3Bucket(t, bucket)
	return S3URL(t, bucket, DefaultPrefix), bucket
}

// CreateS3Bucket creates the bucket on the test S3 server.
func CreateS3Bucket(t testing.TB, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	if _, err := s3Client(t).CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("testenv: S3 CreateBucket %s: %v", bucket, err)
	}
}

// S3URL returns the gocloud URL of prefix in bucket on the test S3 server
// (which need not exist); prefix "" is the bucket's root.
func S3URL(t testing.TB, bucket, prefix string) string {
	t.Helper()
	q := url.Values{"endpoint": {s3Endpoint(t)}, "region": {S3Region}, "use_path_style": {"true"}}
	return cloudURL("s3", bucket, prefix, q)
}

// S3Env returns the environment a process needs to open S3URLs of the test
// server, as KEY=VALUE: the server's keys as AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, no session token or profile, and no EC2 metadata
// lookups.
func S3Env(t testing.TB) []string {
	t.Helper()
	s3Endpoint(t)
	return []string{
		"AWS_ACCESS_KEY_ID=" + os.Getenv(EnvS3AccessKey),
		"AWS_SECRET_ACCESS_KEY=" + os.Getenv(EnvS3SecretKey),
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

func s3Endpoint(t testing.TB) string {
	t.Helper()
	ep := os.Getenv(EnvS3Endpoint)
	if ep == "" {
		missing(t, EnvS3Endpoint+" is not set (the S3 server, versitygw)")
	}
	if os.Getenv(EnvS3AccessKey) == "" || os.Getenv(EnvS3SecretKey) == "" {
		missing(t, EnvS3AccessKey+" or "+EnvS3SecretKey+" is not set")
	}
	return ep
}

// S3Client returns an S3 client of the test server with its root
// credentials, for checks that bypass the code under test.
func S3Client(t testing.TB) *s3.Client {
	t.Helper()
	return s3Client(t)
}

func s3Client(t testing.TB) *s3.Client {
	ep := s3Endpoint(t)
	return s3.New(s3.Options{
		Region:       S3Region,
		BaseEndpoint: aws.String(ep),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(os.Getenv(EnvS3AccessKey), os.Getenv(EnvS3SecretKey), ""),
	})
}

// GCS creates a fresh, empty bucket on the GCS emulator and returns the
// gocloud URL of prefix DefaultPrefix in it, gs://BUCKET/lake, and the
// bucket's name. It sets STORAGE_EMULATOR_HOST for the rest of the test
// (see GCSEnv), so the test and its ancestors must not be parallel.
func GCS(t testing.TB) (url, bucket string) {
	t.Helper()
	setEnv(t, GCSEnv(t))
	bucket = BucketName(t)
	CreateGCSBucket(t, bucket)
	return GCSURL(t, bucket, DefaultPrefix), bucket
}

// CreateGCSBucket creates the bucket on the GCS emulator.
func CreateGCSBucket(t testing.TB, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	if err := GCSClient(t).Bucket(bucket).Create(ctx, "tidemark-test", nil); err != nil {
		t.Fatalf("testenv: GCS create bucket %s: %v", bucket, err)
	}
}

// GCSURL returns the gocloud URL of prefix in bucket (which need not exist);
// prefix "" is the bucket's root. Open it with GCSEnv in the environment.
func GCSURL(t testing.TB, bucket, prefix string) string {
	t.Helper()
	gcsHost(t)
	return cloudURL("gs", bucket, prefix, nil)
}

// GCSEnv returns the environment a process needs to open GCSURLs:
// STORAGE_EMULATOR_HOST (which makes the client skip authentication).
func GCSEnv(t testing.TB) []string {
	t.Helper()
	return []string{"STORAGE_EMULATOR_HOST=" + gcsHost(t)}
}

func gcsHost(t testing.TB) string {
	t.Helper()
	h := os.Getenv(EnvGCSHost)
	if h == "" {
		missing(t, EnvGCSHost+" is not set (the GCS emulator, fake-gcs-server)")
	}
	return h
}

// GCSClient returns a storage client of the emulator, closed when the test
// ends.
func GCSClient(t testing.TB) *storage.Client {
	t.Helper()
	c, err := storage.NewClient(t.Context(), option.WithoutAuthentication(),
		option.WithEndpoint("http://"+gcsHost(t)+"/storage/v1/"))
	if err != nil {
		t.Fatalf("testenv: GCS client: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Azure creates a fresh, empty container on Azurite and returns the gocloud
// URL of prefix DefaultPrefix in it,
//
//	azblob://CONTAINER/lake?domain=127.0.0.1:PORT&localemu=true&protocol=http
//
// and the container's name. It sets AZURE_STORAGE_ACCOUNT and
// AZURE_STORAGE_KEY (Azurite's well-known account) for the rest of the test
// (see AzureEnv), so the test and its ancestors must not be parallel.
func Azure(t testing.TB) (url, container string) {
	t.Helper()
	setEnv(t, AzureEnv(t))
	container = BucketName(t)
	CreateAzureContainer(t, container)
	return AzureURL(t, container, DefaultPrefix), container
}

// CreateAzureContainer creates the container on Azurite.
func CreateAzureContainer(t testing.TB, container string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	if _, err := AzureClient(t).CreateContainer(ctx, container, nil); err != nil {
		t.Fatalf("testenv: Azure CreateContainer %s: %v", container, err)
	}
}

// AzureURL returns the gocloud URL of prefix in container on Azurite (which
// need not exist); prefix "" is the container's root. Open it with AzureEnv
// in the environment.
func AzureURL(t testing.TB, container, prefix string) string {
	t.Helper()
	u := azureEndpoint(t)
	q := url.Values{"domain": {u.Host}, "protocol": {u.Scheme}, "localemu": {"true"}}
	return cloudURL("azblob", container, prefix, q)
}

// AzureEnv returns the environment a process needs to open AzureURLs:
// Azurite's account and key as AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY,
// and no SAS token or connection string.
func AzureEnv(t testing.TB) []string {
	t.Helper()
	azureEndpoint(t)
	return []string{
		"AZURE_STORAGE_ACCOUNT=" + AzuriteAccount,
		"AZURE_STORAGE_KEY=" + AzuriteKey,
		"AZURE_STORAGE_SAS_TOKEN=",
		"AZURE_STORAGE_CONNECTION_STRING=",
		"AZURE_STORAGEBLOB_CONNECTIONSTRING=",
	}
}

func azureEndpoint(t testing.TB) *url.URL {
	t.Helper()
	ep := os.Getenv(EnvAzureEndpoint)
	if ep == "" {
		missing(t, EnvAzureEndpoint+" is not set (the Azure Blob emulator, Azurite)")
	}
	u, err := url.Parse(ep)
	if err != nil || u.Host == "" || strings.Trim(u.Path, "/") != AzuriteAccount {
		missing(t, fmt.Sprintf("%s=%q is not http://HOST:PORT/%s", EnvAzureEndpoint, ep, AzuriteAccount))
	}
	return u
}

// AzureClient returns a client of Azurite's account.
func AzureClient(t testing.TB) *azblob.Client {
	t.Helper()
	cred, err := azblob.NewSharedKeyCredential(AzuriteAccount, AzuriteKey)
	if err != nil {
		t.Fatalf("testenv: Azure credential: %v", err)
	}
	c, err := azblob.NewClientWithSharedKeyCredential(azureEndpoint(t).String(), cred, nil)
	if err != nil {
		t.Fatalf("testenv: Azure client: %v", err)
	}
	return c
}

// Objects returns every object under the prefix of a URL returned by S3,
// GCS, Azure or their *URL functions, keyed by the name relative to the
// prefix ("events/dt=.../x.parquet"), read with the cloud's own SDK rather
// than through gocloud. An object deleted between the listing and its read
// (such as the probe object tidemark writes and deletes at start) is left out.
func Objects(t testing.TB, rawURL string) map[string][]byte {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatalf("testenv: Objects: %v", err)
	}
	prefix := strings.Trim(u.Path, "/")
	if prefix != "" {
		prefix += "/"
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*setupTimeout)
	defer cancel()
	out := map[string][]byte{}
	add := func(key string, r io.ReadCloser) {
		t.Helper()
		defer r.Close()
		data, err := io.ReadAll(r)
		if err != nil {
			t.Fatalf("testenv: Objects: reading %s: %v", key, err)
		}
		out[strings.TrimPrefix(key, prefix)] = data
	}
	switch u.Scheme {
	case "s3":
		c := s3Client(t)
		p := s3.NewListObjectsV2Paginator(c, &s3.ListObjectsV2Input{Bucket: aws.String(u.Host), Prefix: aws.String(prefix)})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("testenv: Objects: S3 list %s: %v", u.Host, err)
			}
			for _, o := range page.Contents {
				obj, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(u.Host), Key: o.Key})
				var gone *s3types.NoSuchKey
				if errors.As(err, &gone) {
					continue // deleted since the listing
				}
				if err != nil {
					t.Fatalf("testenv: Objects: S3 get %s: %v", *o.Key, err)
				}
				add(*o.Key, obj.Body)
			}
		}
	case "gs":
		b := GCSClient(t).Bucket(u.Host)
		it := b.Objects(ctx, &storage.Query{Prefix: prefix})
		for {
			attrs, err := it.Next()
			if errors.Is(err, iterator.Done) {
				break
			}
			if err != nil {
				t.Fatalf("testenv: Objects: GCS list %s: %v", u.Host, err)
			}
			r, err := b.Object(attrs.Name).NewReader(ctx)
			if errors.Is(err, storage.ErrObjectNotExist) {
				continue // deleted since the listing
			}
			if err != nil {
				t.Fatalf("testenv: Objects: GCS read %s: %v", attrs.Name, err)
			}
			add(attrs.Name, r)
		}
	case "azblob":
		c := AzureClient(t)
		p := c.NewListBlobsFlatPager(u.Host, &azblob.ListBlobsFlatOptions{Prefix: &prefix})
		for p.More() {
			page, err := p.NextPage(ctx)
			if err != nil {
				t.Fatalf("testenv: Objects: Azure list %s: %v", u.Host, err)
			}
			for _, item := range page.Segment.BlobItems {
				resp, err := c.DownloadStream(ctx, u.Host, *item.Name, nil)
				if bloberror.HasCode(err, bloberror.BlobNotFound) {
					continue // deleted since the listing
				}
				if err != nil {
					t.Fatalf("testenv: Objects: Azure download %s: %v", *item.Name, err)
				}
				add(*item.Name, resp.Body)
			}
		}
	default:
		t.Fatalf("testenv: Objects: unsupported URL scheme %q", u.Scheme)
	}
	return out
}

// cloudURL builds SCHEME://BUCKET/PREFIX?QUERY.
func cloudURL(scheme, bucket, prefix string, q url.Values) string {
	u := url.URL{Scheme: scheme, Host: bucket, RawQuery: q.Encode()}
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		u.Path = "/" + prefix
	}
	return u.String()
}

// setEnv sets KEY=VALUE pairs with t.Setenv.
func setEnv(t testing.TB, env []string) {
	t.Helper()
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

var bucketSeq atomic.Int64

var notBucketChar = regexp.MustCompile(`[^a-z0-9]+`)

// BucketName returns a new bucket name valid on S3, GCS and Azure (3-63
// lower-case letters, digits and dashes), unique per call and readable:
// "tm-<test name>-<random>".
func BucketName(t testing.TB) string {
	t.Helper()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	suffix := fmt.Sprintf("%s%d", hex.EncodeToString(rnd[:]), bucketSeq.Add(1))
	name := strings.Trim(notBucketChar.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if room := 63 - len("tm--") - len(suffix); len(name) > room {
		name = strings.TrimRight(name[len(name)-room:], "-")
		name = strings.TrimLeft(name, "-")
	}
	parts := slices.DeleteFunc([]string{"tm", name, suffix}, func(s string) bool { return s == "" })
	return strings.Join(parts, "-")
}
