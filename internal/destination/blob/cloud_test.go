package blob

// Tests against the real object storage servers that ./scripts/test.sh
// starts (versitygw for S3, fake-gcs-server for GCS, Azurite for Azure Blob),
// plus the local directory. Each test makes its own bucket.

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/destinationtest"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/testenv"
)

// backend is one kind of object store.
type backend struct {
	name string
	// bucket makes a fresh, empty bucket and sets the environment that
	// opening its URLs needs (so tests using it are not parallel).
	bucket func(t testing.TB) string
	// url is the destination URL of prefix ("" = root) in bucket.
	url func(t testing.TB, bucket, prefix string) string
	// create creates a bucket of the given name (for missing-bucket tests).
	create func(t testing.TB, bucket string)
	// objects lists everything under the URL's prefix, by key relative to
	// it, without going through this package or gocloud.
	objects func(t testing.TB, url string) map[string][]byte
}

var (
	s3Backend = backend{
		name:    "S3",
		bucket:  func(t testing.TB) string { _, b := testenv.S3(t); return b },
		url:     testenv.S3URL,
		create:  testenv.CreateS3Bucket,
		objects: testenv.Objects,
	}
	gcsBackend = backend{
		name:    "GCS",
		bucket:  func(t testing.TB) string { _, b := testenv.GCS(t); return b },
		url:     testenv.GCSURL,
		create:  testenv.CreateGCSBucket,
		objects: testenv.Objects,
	}
	azureBackend = backend{
		name:    "Azure",
		bucket:  func(t testing.TB) string { _, b := testenv.Azure(t); return b },
		url:     testenv.AzureURL,
		create:  testenv.CreateAzureContainer,
		objects: testenv.Objects,
	}
	// fileBackend's buckets are directories: file:///tmp/.../BUCKET/PREFIX.
	fileBackend = backend{
		name: "File",
		bucket: func(t testing.TB) string {
			return filepath.ToSlash(filepath.Join(t.TempDir(), "bucket"))
		},
		url: func(t testing.TB, bucket, prefix string) string {
			return "file://" + path.Join(bucket, prefix)
		},
		create: func(t testing.TB, bucket string) {
			if err := os.MkdirAll(filepath.FromSlash(bucket), 0o755); err != nil {
				t.Fatal(err)
			}
		},
		objects: func(t testing.TB, url string) map[string][]byte {
			dir := filepath.FromSlash(strings.TrimPrefix(url, "file://"))
			if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
				return map[string][]byte{}
			}
			return tree(t, dir)
		},
	}
	allBackends = []backend{fileBackend, s3Backend, gcsBackend, azureBackend}
)

func openURL(t testing.TB, rawURL string, codec format.Codec) *Blob {
	t.Helper()
	d, err := Open(t.Context(), rawURL, codec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// probeCtx bounds a Probe that is expected to fail by network errors (the
// SDKs retry; the GCS client until the context ends).
func probeCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// The conformance suite, once per cloud (file:// runs it in TestConformance).
// Each test has one fresh bucket; each destination the suite opens is a
// fresh prefix in it, probed first.

func TestConformanceS3(t *testing.T)    { testConformance(t, s3Backend) }
func TestConformanceGCS(t *testing.T)   { testConformance(t, gcsBackend) }
func TestConformanceAzure(t *testing.T) { testConformance(t, azureBackend) }

func testConformance(t *testing.T, be backend) {
	bucket := be.bucket(t)
	var n atomic.Int32
	destinationtest.Run(t, func(t *testing.T) destination.Destination {
		prefix := fmt.Sprintf("conformance/%02d-%s", n.Add(1), path.Base(t.Name()))
		d, err := Open(t.Context(), be.url(t, bucket, prefix), format.Default)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Probe(t.Context()); err != nil {
			t.Fatal(err)
		}
		return crashing{d}
	})
}

// The formats, read back per backend: the bytes must be those of the local
// lake (same keys, same bytes: one reader setup for every cloud), decode to
// the rows written, and read the same with independent readers (hyparquet
// for Parquet; compress/gzip and encoding/json for NDJSON).

func TestReadBackFile(t *testing.T)  { testReadBack(t, fileBackend) }
func TestReadBackS3(t *testing.T)    { testReadBack(t, s3Backend) }
func TestReadBackGCS(t *testing.T)   { testReadBack(t, gcsBackend) }
func TestReadBackAzure(t *testing.T) { testReadBack(t, azureBackend) }

var readBackCodecs = []struct{ enc, comp string }{
	{"parquet", "zstd"}, {"parquet", "snappy"}, {"parquet", "gzip"}, {"ndjson", ""},
}

func testReadBack(t *testing.T, be backend) {
	bucket := be.bucket(t)
	for _, c := range readBackCodecs {
		codec, err := format.ParseCodec(c.enc, c.comp)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(codec.String(), func(t *testing.T) {
			u := be.url(t, bucket, "readback/"+strings.ReplaceAll(codec.String(), "+", "-"))
			d := openURL(t, u, codec)
			b := readBackBatch()
			if err := d.Write(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			got := be.objects(t, u)

			// Same keys and bytes as the local lake.
			lake := t.TempDir()
			if err := openDir(t, lake, codec).Write(t.Context(), readBackBatch()); err != nil {
				t.Fatal(err)
			}
			want := tree(t, lake)
			if !maps.EqualFunc(got, want, bytes.Equal) {
				t.Fatalf("%s holds\n%s\nthe local lake holds\n%s", u, keyList(got), keyList(want))
			}

			// Decoded by the format package, rows come back as written.
			var events []format.EventRow
			var pages []format.PageRow
			var sessions []format.SessionRow
			for _, k := range slices.Sorted(maps.Keys(got)) {
				var err error
				switch {
				case strings.HasPrefix(k, "events/"):
					events, err = appendRead(events, got[k])
				case strings.HasPrefix(k, "pages/"):
					pages, err = appendRead(pages, got[k])
				case strings.HasPrefix(k, "sessions/"):
					sessions, err = appendRead(sessions, got[k])
				}
				if err != nil {
					t.Fatalf("%s: %v", k, err)
				}
			}
			if !reflect.DeepEqual(events, b.Events) || !reflect.DeepEqual(pages, b.Pages) || !reflect.DeepEqual(sessions, b.Sessions) {
				t.Fatalf("rows read back differ:\nevents %+v\nwant %+v\npages %+v\nwant %+v\nsessions %+v\nwant %+v",
					events, b.Events, pages, b.Pages, sessions, b.Sessions)
			}

			// Independent readers.
			if codec.Encoding() == format.Parquet {
				checkHyparquet(t, got, b)
			} else {
				checkNDJSON(t, got, b)
			}
		})
	}
}

// readBackBatch has events over two hours with optional fields set and
// unset, JSON columns, a page and a session.
func readBackBatch() *destination.Batch {
	b := destinationtest.Batch(3, 120, 187, 12)
	user, url, ua := "user-7", "https://example.com/a?b=c&d=<e>", "Mozilla/5.0 (X11) \"quoted\" ü"
	traits := `{"plan":"pro","n":[1,2.5,null],"nested":{"k":"v"}}`
	for i := range b.Events {
		e := &b.Events[i]
		if i%2 == 0 {
			e.UserID, e.URL, e.UserAgent, e.Traits = &user, &url, &ua, &traits
			e.PageID = nil
		}
		if i%3 == 0 {
			e.Properties = nil
		}
	}
	b.Pages[0].UserID, b.Pages[0].URL = &user, &url
	b.Sessions[0].EntryURL = &url
	return b
}

func appendRead[T format.Row](rows []T, data []byte) ([]T, error) {
	got, err := format.Read[T](data)
	return append(rows, got...), err
}

func keyList(m map[string][]byte) string {
	var sb strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&sb, "  %s (%d bytes)\n", k, len(m[k]))
	}
	return sb.String()
}

func rfc3339Micro(us int64) string {
	return time.UnixMicro(us).UTC().Format("2006-01-02T15:04:05.000000Z")
}

// checkHyparquet reads the Parquet files with hyparquet (JavaScript) and
// compares ids, times and a JSON column with the batch.
func checkHyparquet(t *testing.T, objects map[string][]byte, b *destination.Batch) {
	t.Helper()
	dir := t.TempDir()
	for k, data := range objects {
		p := filepath.Join(dir, filepath.FromSlash(k))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	type row struct{ id, at, extra string }
	var got []row
	for _, r := range testenv.ReadParquetDirFiles(t, dir) {
		table, _, _ := strings.Cut(r.File, "/")
		var id, at any
		extra := ""
		switch table {
		case format.Events:
			id, at = r.Row["event_id"], r.Row["received_at"]
			extra = "<nil>"
			if p := r.Row["properties"]; p != nil { // hyparquet parses JSON columns
				j, err := json.Marshal(p)
				if err != nil {
					t.Fatal(err)
				}
				extra = string(j)
			}
			extra += fmt.Sprintf(" original_timestamp=%v", r.Row["original_timestamp"])
		case format.Pages:
			id, at = r.Row["page_id"], r.Row["started_at"]
			extra = fmt.Sprint(r.Row["url"])
		case format.Sessions:
			id, at = r.Row["session_id"], r.Row["ended_at"]
			extra = fmt.Sprint(r.Row["entry_url"])
		}
		got = append(got, row{table + ":" + fmt.Sprint(id), fmt.Sprint(at), extra})
	}
	var want []row
	str := func(s *string) string {
		if s == nil {
			return "<nil>"
		}
		return *s
	}
	for _, e := range b.Events {
		orig := "<nil>"
		if e.OriginalTimestamp != nil {
			orig = rfc3339Micro(*e.OriginalTimestamp)
		}
		want = append(want, row{"events:" + e.EventID, rfc3339Micro(e.ReceivedAt), str(e.Properties) + " original_timestamp=" + orig})
	}
	for _, p := range b.Pages {
		want = append(want, row{"pages:" + p.PageID, rfc3339Micro(p.StartedAt), str(p.URL)})
	}
	for _, s := range b.Sessions {
		want = append(want, row{"sessions:" + s.SessionID, rfc3339Micro(s.EndedAt), str(s.EntryURL)})
	}
	if !slices.Equal(got, want) {
		t.Fatalf("hyparquet read\n%v\nwant\n%v", got, want)
	}
}

// checkNDJSON reads the .ndjson.gz files with compress/gzip and
// encoding/json and compares every event's ids, times and JSON columns.
func checkNDJSON(t *testing.T, objects map[string][]byte, b *destination.Batch) {
	t.Helper()
	var events []map[string]any
	for _, k := range slices.Sorted(maps.Keys(objects)) {
		if !strings.HasPrefix(k, "events/") {
			continue
		}
		if !strings.HasSuffix(k, ".ndjson.gz") {
			t.Fatalf("%s: not .ndjson.gz", k)
		}
		zr, err := gzip.NewReader(bytes.NewReader(objects[k]))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		dec := json.NewDecoder(zr)
		for {
			var m map[string]any
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", k, err)
			}
			events = append(events, m)
		}
	}
	if len(events) != len(b.Events) {
		t.Fatalf("%d events in the NDJSON files, want %d", len(events), len(b.Events))
	}
	asJSON := func(s *string) any {
		if s == nil {
			return nil
		}
		var v any
		if err := json.Unmarshal([]byte(*s), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	for i, e := range b.Events {
		m := events[i]
		want := map[string]any{
			"event_id":    e.EventID,
			"received_at": rfc3339Micro(e.ReceivedAt),
			"event_time":  rfc3339Micro(e.EventTime),
			"properties":  asJSON(e.Properties),
			"traits":      asJSON(e.Traits),
			"log_offset":  float64(e.LogOffset),
		}
		want["original_timestamp"] = nil
		if e.OriginalTimestamp != nil {
			want["original_timestamp"] = rfc3339Micro(*e.OriginalTimestamp)
		}
		if e.UserAgent != nil {
			want["user_agent"] = *e.UserAgent
		} else {
			want["user_agent"] = nil
		}
		for k, w := range want {
			if !reflect.DeepEqual(m[k], w) {
				t.Errorf("event %d %s = %#v, want %#v", i, k, m[k], w)
			}
		}
	}
}

// Probe, and the classes of the errors of a missing bucket, wrong
// credentials and an unreachable server; then delivery resumes once the
// bucket exists.

func TestProbeFile(t *testing.T)  { testProbe(t, fileBackend) }
func TestProbeS3(t *testing.T)    { testProbe(t, s3Backend) }
func TestProbeGCS(t *testing.T)   { testProbe(t, gcsBackend) }
func TestProbeAzure(t *testing.T) { testProbe(t, azureBackend) }

func testProbe(t *testing.T, be backend) {
	bucket := be.bucket(t)
	t.Run("Good", func(t *testing.T) {
		d := openURL(t, be.url(t, bucket, "good/lake"), format.Default)
		if err := d.Probe(t.Context()); err != nil {
			t.Fatalf("Probe: %v", err)
		}
		if err := d.Write(t.Context(), destinationtest.Batch(0, 1, 1, 2)); err != nil {
			t.Fatal(err)
		}
		if err := d.Probe(t.Context()); err != nil { // a non-empty prefix
			t.Fatalf("Probe: %v", err)
		}
		for k := range be.objects(t, be.url(t, bucket, "")) {
			if path.Base(k) == ProbeKey || !strings.HasPrefix(k, "good/lake/") {
				t.Errorf("after Probe the bucket holds %s", k)
			}
		}
	})
	if be.name == "File" {
		return // a missing directory is created; as root, permissions are not enforced
	}

	t.Run("MissingBucketThenCreated", func(t *testing.T) {
		missing := testenv.BucketName(t)
		d := openURL(t, be.url(t, missing, "lake"), format.Default)
		err := d.Probe(t.Context())
		var pe *ProbeError
		if !errors.As(err, &pe) || pe.Class != ClassBucketMissing || Classify(err) != ClassBucketMissing || !IsPermanent(err) {
			t.Fatalf("Probe of a missing bucket: %v (%T, class %v), want a permanent ProbeError of class %v", err, err, Classify(err), ClassBucketMissing)
		}
		for _, s := range []string{"destination " + Redact(be.url(t, missing, "lake")) + ": ", fmt.Sprintf("bucket %q does not exist", missing)} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Probe error does not say %q: %v", s, err)
			}
		}
		b := destinationtest.Batch(1, 1, 3, 4)
		err = d.Write(t.Context(), b)
		if Classify(err) != ClassBucketMissing || !IsPermanent(err) {
			t.Fatalf("Write to a missing bucket: %v (class %v), want permanent %v", err, Classify(err), ClassBucketMissing)
		}
		if _, _, err := d.Committed(t.Context(), 1); Classify(err) != ClassBucketMissing {
			t.Fatalf("Committed on a missing bucket: %v (class %v)", err, Classify(err))
		}

		// Someone creates the bucket: the same destination works.
		be.create(t, missing)
		if err := d.Probe(t.Context()); err != nil {
			t.Fatalf("Probe after creating the bucket: %v", err)
		}
		if err := d.Write(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		if last, ok, err := d.Committed(t.Context(), 1); last != 3 || !ok || err != nil {
			t.Fatalf("Committed = %d, %v, %v", last, ok, err)
		}
	})

	t.Run("WrongCredentials", func(t *testing.T) {
		var secret string
		switch be.name {
		case "S3":
			secret = "wrong-secret-0123456789abcdef"
			t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
		case "Azure":
			secret = "d3Jvbmcta2V5LTAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVm" // base64, not Azurite's key
			t.Setenv("AZURE_STORAGE_KEY", secret)
		case "GCS":
			t.Log("fake-gcs-server does not authenticate: nothing to deny")
			return
		}
		d := openURL(t, be.url(t, bucket, "denied"), format.Default)
		err := d.Probe(t.Context())
		if Classify(err) != ClassAccessDenied || !IsPermanent(err) || !strings.Contains(err.Error(), "access denied") {
			t.Fatalf("Probe with a wrong key: %v (class %v), want permanent %v", err, Classify(err), ClassAccessDenied)
		}
		werr := d.Write(t.Context(), destinationtest.Batch(2, 1, 1, 1))
		if Classify(werr) != ClassAccessDenied || !IsPermanent(werr) {
			t.Fatalf("Write with a wrong key: %v (class %v)", werr, Classify(werr))
		}
		for _, e := range []error{err, werr} {
			if strings.Contains(e.Error(), secret) {
				t.Errorf("error contains the secret: %v", e)
			}
		}
	})

	t.Run("WrongRegion", func(t *testing.T) {
		if be.name != "S3" {
			return // a region is an S3 notion
		}
		// versitygw answers like AWS: AuthorizationHeaderMalformed, "the region
		// "eu-west-1" is wrong; expecting "us-east-1"".
		u := strings.Replace(be.url(t, bucket, "lake"), "region="+testenv.S3Region, "region=eu-west-1", 1)
		d := openURL(t, u, format.Default)
		err := d.Probe(t.Context())
		if Classify(err) != ClassWrongRegion || !IsPermanent(err) || !strings.Contains(err.Error(), "wrong region") {
			t.Fatalf("Probe with a wrong region: %v (class %v), want permanent %v", err, Classify(err), ClassWrongRegion)
		}
	})

	t.Run("Unreachable", func(t *testing.T) {
		port := testenv.FreePort(t) // nothing listens there
		var u string
		switch be.name {
		case "S3":
			u = fmt.Sprintf("s3://%s/lake?endpoint=http://127.0.0.1:%d&region=us-east-1&use_path_style=true", bucket, port)
		case "GCS":
			t.Setenv("STORAGE_EMULATOR_HOST", fmt.Sprintf("127.0.0.1:%d", port))
			u = be.url(t, bucket, "lake")
		case "Azure":
			u = fmt.Sprintf("azblob://%s/lake?domain=127.0.0.1:%d&protocol=http&localemu=true", bucket, port)
		}
		d := openURL(t, u, format.Default)
		timeout := 20 * time.Second
		if be.name == "GCS" {
			timeout = 3 * time.Second // its client retries until the context ends
		}
		start := time.Now()
		err := d.Probe(probeCtx(t, timeout))
		t.Logf("Probe of an unreachable server failed after %v: %v", time.Since(start).Round(time.Millisecond), err)
		// The GCS client retries the refused connection until the context
		// ends, so on a loaded machine the last error may be the deadline:
		// a timeout, transient too.
		class := Classify(err)
		network := class == ClassNetwork && strings.Contains(err.Error(), "network error")
		if IsPermanent(err) || !(network || (be.name == "GCS" && class == ClassTimeout)) {
			t.Fatalf("Probe of an unreachable server: %v (class %v), want transient %v", err, class, ClassNetwork)
		}
	})
}

// Prefixes isolate destinations sharing a bucket (two orgs, say).

func TestPrefixesFile(t *testing.T)  { testPrefixes(t, fileBackend) }
func TestPrefixesS3(t *testing.T)    { testPrefixes(t, s3Backend) }
func TestPrefixesGCS(t *testing.T)   { testPrefixes(t, gcsBackend) }
func TestPrefixesAzure(t *testing.T) { testPrefixes(t, azureBackend) }

func testPrefixes(t *testing.T, be backend) {
	bucket := be.bucket(t)
	a := openURL(t, be.url(t, bucket, "orgs/a"), format.Default)
	a2 := openURL(t, be.url(t, bucket, "orgs/a2"), format.Default) // a prefix of a's keys, as a string
	root := openURL(t, be.url(t, bucket, ""), format.Default)
	ba, ba2 := destinationtest.Batch(4, 1, 10, 3), destinationtest.Batch(4, 1, 20, 5)
	ba2.Org = "org_other"
	if err := a.Write(t.Context(), ba); err != nil {
		t.Fatal(err)
	}
	if err := a2.Write(t.Context(), ba2); err != nil {
		t.Fatal(err)
	}
	if err := (crashing{a}).WriteUncommitted(t.Context(), destinationtest.Batch(4, 11, 12, 2)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		d    *Blob
		last uint64
		ok   bool
		ids  []string
	}{{a, 10, true, eventIDs(ba)}, {a2, 20, true, eventIDs(ba2)}, {root, 0, false, nil}} {
		if last, ok, err := c.d.Committed(t.Context(), 4); last != c.last || ok != c.ok || err != nil {
			t.Errorf("%s: Committed = %d, %v, %v; want %d, %v", c.d, last, ok, err, c.last, c.ok)
		}
		ids, err := c.d.EventIDs(t.Context(), 4)
		if err != nil || !slices.Equal(slices.Sorted(slices.Values(ids)), slices.Sorted(slices.Values(c.ids))) {
			t.Errorf("%s: EventIDs = %v, %v; want %v", c.d, ids, err, c.ids)
		}
	}
	// Cleanup of one prefix leaves the others' uncommitted files alone.
	if err := a2.Cleanup(t.Context(), 4, 0); err != nil {
		t.Fatal(err)
	}
	if err := root.Cleanup(t.Context(), 4, 0); err != nil {
		t.Fatal(err)
	}
	uncommitted := 0
	for k := range be.objects(t, be.url(t, bucket, "")) {
		if !strings.HasPrefix(k, "orgs/a/") && !strings.HasPrefix(k, "orgs/a2/") {
			t.Errorf("key %s outside the prefixes", k)
		}
		if strings.HasPrefix(k, "orgs/a/") && strings.Contains(k, "p04-000000000011-000000000012") {
			uncommitted++
		}
	}
	if uncommitted == 0 {
		t.Error("another prefix's Cleanup removed orgs/a's uncommitted files")
	}
	if err := a.Cleanup(t.Context(), 4, 10); err != nil {
		t.Fatal(err)
	}
	for k := range be.objects(t, be.url(t, bucket, "orgs/a")) {
		if strings.Contains(k, "p04-000000000011-000000000012") {
			t.Errorf("Cleanup left %s", k)
		}
	}
}

func eventIDs(b *destination.Batch) []string {
	ids := make([]string, len(b.Events))
	for i := range b.Events {
		ids[i] = b.Events[i].EventID
	}
	return ids
}

// A file over the multipart thresholds: S3 must store it as a multipart
// upload (its ETag says how many parts), Azure as several blocks.

func TestLargeFileS3(t *testing.T)    { testLargeFile(t, s3Backend) }
func TestLargeFileGCS(t *testing.T)   { testLargeFile(t, gcsBackend) }
func TestLargeFileAzure(t *testing.T) { testLargeFile(t, azureBackend) }

func testLargeFile(t *testing.T, be backend) {
	bucket := be.bucket(t)
	u := be.url(t, bucket, "large")
	d := openURL(t, u, format.Default)
	b := destinationtest.LargeBatch(0, 1, 1, destinationtest.LargeBatchBytes)
	start := time.Now()
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	ms, err := d.Manifests(t.Context(), 0)
	if err != nil || len(ms) != 1 {
		t.Fatalf("Manifests = %v, %v", ms, err)
	}
	var f File
	for _, x := range ms[0].Files {
		if x.Table == format.Events {
			f = x
		}
	}
	if f.Bytes < destinationtest.LargeBatchBytes {
		t.Fatalf("events file %s has %d bytes, want >= %d", f.Path, f.Bytes, destinationtest.LargeBatchBytes)
	}
	t.Logf("wrote %s (%.1f MiB, %d events) in %v", f.Path, float64(f.Bytes)/(1<<20), len(b.Events), elapsed.Round(time.Millisecond))
	rows, err := d.ReadEvents(t.Context(), ms[0]) // checks size and SHA-256
	if err != nil || len(rows) != len(b.Events) {
		t.Fatalf("ReadEvents: %d rows, %v", len(rows), err)
	}
	ctx := t.Context()
	switch be.name {
	case "S3":
		head, err := testenv.S3Client(t).HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String("large/" + f.Path)})
		if err != nil {
			t.Fatal(err)
		}
		etag := aws.ToString(head.ETag)
		if !strings.Contains(etag, "-") {
			t.Errorf("ETag %s: not a multipart upload", etag)
		}
		t.Logf("S3 ETag %s (parts after the dash)", etag)
	case "Azure":
		bc := testenv.AzureClient(t).ServiceClient().NewContainerClient(bucket).NewBlockBlobClient("large/" + f.Path)
		bl, err := bc.GetBlockList(ctx, blockblob.BlockListTypeCommitted, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(bl.CommittedBlocks) < 2 {
			t.Errorf("%d committed blocks, want several", len(bl.CommittedBlocks))
		}
		t.Logf("Azure: %d committed blocks", len(bl.CommittedBlocks))
	}
}

// Open checks cloud URLs without contacting anything, and its errors keep
// secrets out.

func TestOpenCloudURLs(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "t0ps3cret-aws")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1")
	t.Setenv("AZURE_STORAGE_ACCOUNT", "acct")
	t.Setenv("AZURE_STORAGE_KEY", "dDBwczNjcmV0LWF6dXJlLWtleS0wMTIzNDU2Nzg5")
	t.Setenv("AZURE_STORAGE_SAS_TOKEN", "")
	t.Setenv("AZURE_STORAGE_CONNECTION_STRING", "")
	for _, u := range []string{
		"s3://bucket",
		"s3://bucket/some/prefix?region=eu-west-1",
		"s3://bucket/p?endpoint=https://account.r2.cloudflarestorage.com&region=auto&use_path_style=true&request_checksum_calculation=when_required",
		"gs://bucket/some/prefix",
		"azblob://container/prefix",
		"azblob://container/prefix?domain=127.0.0.1:10000&protocol=http&localemu=true",
	} {
		d, err := Open(t.Context(), u, format.Default)
		if err != nil {
			t.Errorf("Open(%q): %v", u, err)
			continue
		}
		if d.String() != Redact(u) {
			t.Errorf("String() = %q", d.String())
		}
		d.Close()
	}
	for _, tc := range []struct{ url, want string }{
		{"s3://AKIAXXX:s3cr3t@bucket/prefix", "no user info"},
		{"s3://bucket/prefix?sig=t0ps3cret", `unknown query parameter "sig"`},
		{"s3://bucket/prefix?X-Amz-Security-Token=t0ps3cret", `unknown query parameter "X-Amz-Security-Token"`},
		{"s3://bucket/p?region=a&region=b", `"region" given 2 times`},
		{"s3://bucket/p?endpoint=https://AKIA:t0ps3cret@minio:9000", `"endpoint" takes no user info`},
		{"s3://bucket/p?use_path_style=maybe", "use_path_style"},
		{"s3:///prefix", "no bucket name"},
		{"s3://bucket:9000/prefix", "is not valid"},
		{"s3://bucket/a//b", "empty"},
		{"s3://bucket/a/../b", `".."`},
		{"s3:bucket", "want s3://BUCKET/prefix"},
		{"gs://bucket/p?access_id=t0ps3cret", "gs URLs take no query parameters"},
		{"gs://me:s3cr3t@bucket/p", "no user info"},
		{"azblob://container/p?sv=2020&sig=t0ps3cret", `unknown query parameter`},
		{"azblob:///p", "no container name"},
	} {
		_, err := Open(t.Context(), tc.url, format.Default)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) err = %v, want %q", tc.url, err, tc.want)
			continue
		}
		if Classify(err) != ClassInvalid || !IsPermanent(err) {
			t.Errorf("Open(%q): class %v, want %v", tc.url, Classify(err), ClassInvalid)
		}
		for _, s := range []string{"s3cr3t", "t0ps3cret"} {
			if strings.Contains(err.Error(), s) {
				t.Errorf("Open(%q) error leaks a secret: %v", tc.url, err)
			}
		}
	}

	// Azure: no account at all; a SAS token must not be sent elsewhere.
	t.Setenv("AZURE_STORAGE_ACCOUNT", "")
	if _, err := Open(t.Context(), "azblob://container/p", format.Default); err == nil || !strings.Contains(err.Error(), "AZURE_STORAGE_ACCOUNT") {
		t.Errorf("azblob without an account: %v", err)
	}
	t.Setenv("AZURE_STORAGE_ACCOUNT", "acct")
	t.Setenv("AZURE_STORAGE_SAS_TOKEN", "sv=2020-08-04&sig=t0ps3cretsas")
	_, err := Open(t.Context(), "azblob://container/p?domain=evil.example.com", format.Default)
	if err == nil || !strings.Contains(err.Error(), "cannot change the service endpoint") || strings.Contains(err.Error(), "t0ps3cretsas") {
		t.Errorf("azblob with a SAS token and another domain: %v", err)
	}
	if _, err := Open(t.Context(), "azblob://container/p", format.Default); err != nil {
		t.Errorf("azblob with a SAS token: %v", err)
	}
}

func TestRedactText(t *testing.T) {
	t.Setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI-K7MDENG-bPxRfiCY")
	for _, tc := range []struct{ in, want string }{
		{`Get "https://acct.blob.core.windows.net/c?comp=list&sig=t0ps3cret&sv=2020": dial tcp: i/o timeout`,
			`Get "https://acct.blob.core.windows.net/c?comp=list&sig=REDACTED&sv=REDACTED": dial tcp: i/o timeout`},
		{`PUT https://u:pw@host/k?X-Amz-Signature=abc&X-Amz-Credential=AKIA%2F2024 failed.`,
			`PUT https://host/k?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED failed.`},
		{`conn string DefaultEndpointsProtocol=https;AccountName=a;AccountKey=t0ps3cret==;EndpointSuffix=x`,
			`conn string DefaultEndpointsProtocol=https;AccountName=a;AccountKey=REDACTED;EndpointSuffix=x`},
		{`token sig=t0ps3cret&se=1`, `token sig=REDACTED&se=1`},
		{`key wJalrXUtnFEMI-K7MDENG-bPxRfiCY in a message`, `key [redacted] in a message`},
		{`GET "http://127.0.0.1:1/b?list-type=2&max-keys=1&prefix=lake%2F": refused`,
			`GET "http://127.0.0.1:1/b?list-type=2&max-keys=1&prefix=lake%2F": refused`},
		{"no url here", "no url here"},
	} {
		if got := RedactText(tc.in); got != tc.want {
			t.Errorf("RedactText(%q)\n = %q\nwant %q", tc.in, got, tc.want)
		}
	}
	inner := fmt.Errorf("upload: %w", context.DeadlineExceeded)
	err := redactErr(fmt.Errorf("Get \"https://h/x?sig=t0ps3cret\": %w", inner))
	if strings.Contains(err.Error(), "t0ps3cret") || !errors.Is(err, context.DeadlineExceeded) || Classify(err) != ClassTimeout {
		t.Errorf("redactErr = %v (class %v)", err, Classify(err))
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Class
	}{
		{nil, ClassUnknown},
		{errors.New("boom"), ClassUnknown},
		{fmt.Errorf("x: %w", context.Canceled), ClassCanceled},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), ClassTimeout},
		{fmt.Errorf("x: %w", os.ErrPermission), ClassAccessDenied},
		{invalid(errors.New("bad")), ClassInvalid},
		{&ProbeError{Class: ClassWrongRegion, Err: errors.New("x")}, ClassWrongRegion},
	} {
		if got := Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %v, want %v", tc.err, got, tc.want)
		}
		if got, want := IsPermanent(tc.err), tc.want.Permanent(); got != want {
			t.Errorf("IsPermanent(%v) = %v", tc.err, got)
		}
	}
	for c := ClassUnknown; c <= ClassCanceled; c++ {
		if c.String() == "" || (c != ClassUnknown && c.String() == ClassUnknown.String()) {
			t.Errorf("Class %d has no name", c)
		}
	}
	// A bad batch is a permanent error: retrying it cannot help.
	d := openDir(t, t.TempDir(), format.Default)
	b := destinationtest.Batch(1, 1, 2, 1)
	b.ID = destination.BatchID(1, 1, 3)
	if err := d.Write(t.Context(), b); !IsPermanent(err) {
		t.Errorf("Write of a bad batch: %v, not permanent", err)
	}
}
