package testenv

import (
	"bytes"
	"context"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

var validBucket = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$`)

func TestBucketName(t *testing.T) {
	seen := map[string]bool{}
	check := func(t *testing.T) {
		for range 3 {
			n := BucketName(t)
			if !validBucket.MatchString(n) || strings.Contains(n, "--") || seen[n] {
				t.Errorf("BucketName = %q: invalid or repeated", n)
			}
			seen[n] = true
		}
	}
	check(t)
	t.Run("A_Very/Long_Subtest_Name_"+strings.Repeat("x", 80)+"_END", check)
	t.Run("---", check)
}

// checkObjects checks Objects on a fresh bucket whose URL has the prefix
// "lake"; put writes an object (by its full key) with the native SDK.
func checkObjects(t *testing.T, rawURL string, put func(key string, data []byte)) {
	t.Helper()
	if got := Objects(t, rawURL); len(got) != 0 {
		t.Fatalf("new bucket holds %v", got)
	}
	put("lake/a/b.txt", []byte("hello"))
	put("other/c.txt", []byte("not under the prefix"))
	got := Objects(t, rawURL)
	if len(got) != 1 || !bytes.Equal(got["a/b.txt"], []byte("hello")) {
		t.Fatalf("Objects = %v, want a/b.txt", got)
	}
	u, _ := url.Parse(rawURL)
	u.Path = ""
	if got := Objects(t, u.String()); len(got) != 2 {
		t.Fatalf("Objects of the root = %v, want 2 keys", got)
	}
}

func TestS3(t *testing.T) {
	u, bucket := S3(t)
	want := "s3://" + bucket + "/lake?endpoint=" + url.QueryEscape(os.Getenv(EnvS3Endpoint)) + "&region=us-east-1&use_path_style=true"
	if u != want {
		t.Errorf("S3 URL = %s, want %s", u, want)
	}
	if os.Getenv("AWS_ACCESS_KEY_ID") != os.Getenv(EnvS3AccessKey) || os.Getenv("AWS_SECRET_ACCESS_KEY") != os.Getenv(EnvS3SecretKey) {
		t.Error("S3 did not set the AWS credentials")
	}
	c := S3Client(t)
	if _, err := c.HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("HeadBucket: %v", err)
	}
	checkObjects(t, u, func(key string, data []byte) {
		if _, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(data)}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestGCS(t *testing.T) {
	u, bucket := GCS(t)
	if u != "gs://"+bucket+"/lake" {
		t.Errorf("GCS URL = %s", u)
	}
	if os.Getenv("STORAGE_EMULATOR_HOST") != os.Getenv(EnvGCSHost) {
		t.Error("GCS did not set STORAGE_EMULATOR_HOST")
	}
	b := GCSClient(t).Bucket(bucket)
	if _, err := b.Attrs(t.Context()); err != nil {
		t.Fatalf("bucket attrs: %v", err)
	}
	checkObjects(t, u, func(key string, data []byte) {
		w := b.Object(key).NewWriter(t.Context())
		if _, err := w.Write(data); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestAzure(t *testing.T) {
	u, container := Azure(t)
	ep, _ := url.Parse(os.Getenv(EnvAzureEndpoint))
	want := "azblob://" + container + "/lake?domain=" + url.QueryEscape(ep.Host) + "&localemu=true&protocol=http"
	if u != want {
		t.Errorf("Azure URL = %s, want %s", u, want)
	}
	if os.Getenv("AZURE_STORAGE_ACCOUNT") != AzuriteAccount || os.Getenv("AZURE_STORAGE_KEY") != AzuriteKey {
		t.Error("Azure did not set the account")
	}
	c := AzureClient(t)
	if _, err := c.ServiceClient().NewContainerClient(container).GetProperties(t.Context(), nil); err != nil {
		t.Fatalf("container properties: %v", err)
	}
	checkObjects(t, u, func(key string, data []byte) {
		if _, err := c.UploadBuffer(context.Background(), container, key, data, nil); err != nil {
			t.Fatal(err)
		}
	})
}

func TestMissingCloudServerFailsWithHint(t *testing.T) {
	t.Setenv("CI", "")
	for _, tc := range []struct {
		env string
		fn  func(testing.TB)
	}{
		{EnvS3Endpoint, func(tb testing.TB) { S3(tb) }},
		{EnvGCSHost, func(tb testing.TB) { GCS(tb) }},
		{EnvAzureEndpoint, func(tb testing.TB) { Azure(tb) }},
	} {
		t.Setenv(tc.env, "")
		msg := fatalMessage(t, tc.fn)
		if !strings.Contains(msg, tc.env+" is not set") || !strings.Contains(msg, "./scripts/test.sh") {
			t.Errorf("message = %q", msg)
		}
	}
}
