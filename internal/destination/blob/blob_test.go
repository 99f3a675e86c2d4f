package blob

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/destination/destinationtest"
	"github.com/tidemark/tidemark/internal/format"
)

func openDir(t testing.TB, dir string, codec format.Codec) *Blob {
	t.Helper()
	d, err := Open(t.Context(), "file://"+filepath.ToSlash(dir), codec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func TestConformance(t *testing.T) {
	for _, c := range []struct{ enc, comp string }{{"parquet", "zstd"}, {"ndjson", ""}} {
		codec, err := format.ParseCodec(c.enc, c.comp)
		if err != nil {
			t.Fatal(err)
		}
		t.Run(codec.String(), func(t *testing.T) {
			destinationtest.Run(t, func(t *testing.T) destination.Destination {
				d, err := Open(t.Context(), "file://"+filepath.ToSlash(t.TempDir())+"/lake", codec)
				if err != nil {
					t.Fatal(err)
				}
				return crashing{d}
			})
		})
	}
}

// tree returns every file under dir, by slash path, with its content.
func tree(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		b, err := os.ReadFile(p)
		files[filepath.ToSlash(rel)] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestWriteLayout(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, format.Default)
	b := destinationtest.Batch(3, 120, 187, 10) // events 13:59..14:01, page and session at 13:59
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	id := "p03-000000000120-000000000187"
	files := tree(t, dir)
	// base time 2024-05-01 13:59 + 120 h = 2024-05-06 13:59.
	wantKeys := []string{
		"_manifests/" + id + ".json",
		"events/dt=2024-05-06/hr=13/" + id + ".parquet",
		"events/dt=2024-05-06/hr=14/" + id + ".parquet",
		"pages/dt=2024-05-06/hr=13/" + id + ".parquet",
		"sessions/dt=2024-05-06/hr=13/" + id + ".parquet",
	}
	if got := slices.Sorted(maps.Keys(files)); !slices.Equal(got, wantKeys) {
		t.Fatalf("files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantKeys, "\n"))
	}

	m, err := DecodeManifest(files[wantKeys[0]])
	if err != nil {
		t.Fatal(err)
	}
	if m.BatchID != id || m.Org != b.Org || m.Partition != 3 || m.FirstSeq != 120 || m.LastSeq != 187 || m.Backfill {
		t.Errorf("manifest header %+v", m)
	}
	if m.EventCount != 10 || m.MinLogOffset != 120000 || m.MaxLogOffset != 120009 {
		t.Errorf("manifest events: count %d offsets %d..%d", m.EventCount, m.MinLogOffset, m.MaxLogOffset)
	}
	var allIDs []string
	for _, e := range b.Events {
		allIDs = append(allIDs, e.EventID)
	}
	slices.Sort(allIDs)
	sum := sha256.Sum256([]byte(strings.Join(allIDs, "\n")))
	if m.EventIDsSHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("event_ids_sha256 = %s", m.EventIDsSHA256)
	}
	var rows int64
	for i, f := range m.Files {
		if f.Path != wantKeys[i+1] {
			t.Errorf("file %d path %s, want %s", i, f.Path, wantKeys[i+1])
		}
		data := files[f.Path]
		sum := sha256.Sum256(data)
		if f.Bytes != int64(len(data)) || f.SHA256 != hex.EncodeToString(sum[:]) {
			t.Errorf("%s: manifest says %d bytes %s", f.Path, f.Bytes, f.SHA256)
		}
		if f.Table == format.Events {
			got, err := format.ReadEvents(data)
			if err != nil || int64(len(got)) != f.Rows {
				t.Errorf("%s: %d rows, %v; manifest %d", f.Path, len(got), err, f.Rows)
			}
			rows += f.Rows
		}
	}
	if rows != 10 {
		t.Errorf("events files hold %d rows", rows)
	}

	// Read back through the manifest.
	ms, err := d.Manifests(t.Context(), 3)
	if err != nil || len(ms) != 1 {
		t.Fatalf("Manifests = %d, %v", len(ms), err)
	}
	ids, err := d.ReadEventIDs(t.Context(), ms[0])
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Sorted(slices.Values(ids)); !slices.Equal(got, allIDs) {
		t.Errorf("ReadEventIDs = %v", got)
	}
}

// TestWriteBackfill: a backfill batch (events only, named after its log
// offsets and event ids) gets the normal layout under its own name, a
// manifest marked backfill, and is found by HourFiles, BatchOf and Manifest;
// malformed backfill batches are refused.
func TestWriteBackfill(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, format.Default)
	src := destinationtest.Batch(3, 120, 187, 10)
	ids := make([]string, len(src.Events))
	for i := range src.Events {
		ids[i] = src.Events[i].EventID
	}
	id := destination.BackfillBatchID(3, src.Events[0].LogOffset, src.Events[9].LogOffset, destination.EventIDsDigest(ids))
	b := &destination.Batch{ID: id, Org: src.Org, Partition: 3, Backfill: true, Events: src.Events}
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(id, "bf-p03-000000120000-000000120009-") {
		t.Fatalf("backfill id %s", id)
	}
	if p, bf, ok := ParseBatchName(id); !ok || !bf || p != 3 {
		t.Fatalf("ParseBatchName(%s) = %d %v %v", id, p, bf, ok)
	}
	m, ok, err := d.Manifest(t.Context(), id)
	if err != nil || !ok || !m.Backfill || m.FirstSeq != 0 || m.LastSeq != 0 || m.EventCount != 10 {
		t.Fatalf("manifest %+v %v %v", m, ok, err)
	}
	objs, err := d.HourFiles(t.Context(), format.Events, time.Date(2024, 5, 6, 13, 0, 0, 0, time.UTC))
	if err != nil || len(objs) != 1 || objs[0].Path != "events/dt=2024-05-06/hr=13/"+id+".parquet" {
		t.Fatalf("HourFiles: %+v %v", objs, err)
	}
	if got, ok := BatchOf(objs[0].Path); !ok || got != id {
		t.Fatalf("BatchOf(%s) = %s %v", objs[0].Path, got, ok)
	}
	if _, ok, err := d.Manifest(t.Context(), "p03-000000000001-000000000002"); ok || err != nil {
		t.Fatalf("Manifest of an uncommitted batch: %v %v", ok, err)
	}
	// The pipeline's progress never sees backfill batches.
	if _, found, err := d.Committed(t.Context(), 3); found || err != nil {
		t.Fatalf("Committed sees a backfill batch: %v %v", found, err)
	}
	for name, bad := range map[string]*destination.Batch{
		"wrong id":  {ID: id[:len(id)-1] + "0", Org: src.Org, Partition: 3, Backfill: true, Events: src.Events},
		"no events": {ID: id, Org: src.Org, Partition: 3, Backfill: true},
		"with seqs": {ID: id, Org: src.Org, Partition: 3, Backfill: true, Events: src.Events, FirstSeq: 1, LastSeq: 2},
	} {
		if err := d.Write(t.Context(), bad); err == nil || !IsPermanent(err) {
			t.Errorf("%s: Write = %v, want a permanent error", name, err)
		}
	}
}

func TestIdempotentRewrite(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, format.Default)
	if err := d.Write(t.Context(), destinationtest.Batch(1, 1, 5, 50)); err != nil {
		t.Fatal(err)
	}
	before := tree(t, dir)
	if err := d.Write(t.Context(), destinationtest.Batch(1, 1, 5, 50)); err != nil {
		t.Fatal(err)
	}
	after := tree(t, dir)
	if !maps.EqualFunc(before, after, bytes.Equal) {
		t.Fatalf("rewrite changed the tree:\n%v\n%v", slices.Sorted(maps.Keys(before)), slices.Sorted(maps.Keys(after)))
	}
	manifests := 0
	for k := range after {
		if strings.HasPrefix(k, "_manifests/") {
			manifests++
		}
	}
	if manifests != 1 {
		t.Errorf("%d manifests", manifests)
	}

	// A replay elsewhere (another node, another disk) writes the same bytes.
	dir2 := t.TempDir()
	if err := openDir(t, dir2, format.Default).Write(t.Context(), destinationtest.Batch(1, 1, 5, 50)); err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(before, tree(t, dir2), bytes.Equal) {
		t.Fatal("the same batch written to another directory differs")
	}
}

func TestEmptyTablesWriteNoFile(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, format.Default)
	b := destinationtest.Batch(2, 7, 7, 0) // no events: only a page and a session
	b.Pages = nil
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(tree(t, dir)))
	want := []string{"_manifests/p02-000000000007-000000000007.json", "sessions/dt=2024-05-01/hr=20/p02-000000000007-000000000007.parquet"}
	if !slices.Equal(keys, want) {
		t.Fatalf("files %v, want %v", keys, want)
	}
	ms, err := d.Manifests(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if m := ms[0]; m.EventCount != 0 || m.EventIDsSHA256 != emptySHA256 {
		t.Errorf("manifest %+v", m)
	}
}

func TestNDJSONLayout(t *testing.T) {
	dir := t.TempDir()
	codec, _ := format.ParseCodec("ndjson", "")
	d := openDir(t, dir, codec)
	b := destinationtest.Batch(0, 1, 1, 1)
	if err := d.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	data := tree(t, dir)["events/dt=2024-05-01/hr=14/p00-000000000001-000000000001.ndjson.gz"]
	got, err := format.ReadEvents(data)
	if err != nil || len(got) != 1 || got[0].EventID != b.Events[0].EventID {
		t.Fatalf("ndjson events %v, %v", got, err)
	}
}

func touch(t *testing.T, dir, key string) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(key))
	if err := os.MkdirAll(filepath.Dir(p), 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("x"), 0o666); err != nil {
		t.Fatal(err)
	}
}

func TestCleanup(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, format.Default)
	committed := destinationtest.Batch(4, 1, 10, 5)
	if err := d.Write(t.Context(), committed); err != nil {
		t.Fatal(err)
	}
	want := tree(t, dir) // survives

	// Uncommitted batch after progress: goes.
	if err := (crashing{d}).WriteUncommitted(t.Context(), destinationtest.Batch(4, 11, 20, 5)); err != nil {
		t.Fatal(err)
	}
	// Leftovers of a kill -9 inside fileblob writes: go.
	touch(t, dir, "events/dt=2024-05-01/hr=15/p04-000000000011-000000000020.parquet.18d2f0a1b2c3d4e5.tmp")
	touch(t, dir, "_manifests/p04-000000000011-000000000020.json.18d2f0a1b2c3d4e5.tmp")
	touch(t, dir, "events/dt=2024-05-01/hr=14/p04-000000000001-000000000010.ndjson.gz.1a.tmp") // of a committed batch
	// Kept: uncommitted but at or before progress, other partitions, foreign files.
	for _, k := range []string{
		"events/dt=2024-05-01/hr=13/p04-000000000000-000000000000.parquet",
		"events/dt=2024-05-01/hr=13/p40-000000000011-000000000020.parquet",
		"events/dt=2024-05-01/hr=13/p05-000000000011-000000000020.parquet",
		"events/dt=2024-05-01/hr=13/p05-000000000011-000000000020.parquet.1f.tmp",
		"events/dt=2024-05-01/hr=13/p04-notes.parquet",
		"events/dt=2024-05-01/hr=13/p04-000000000011-000000000020.csv",
		"events/_SUCCESS",
		"other/p04-000000000011-000000000020.parquet",
		"_manifests/p04-000000000011-000000000020.json.backup",
	} {
		touch(t, dir, k)
		want[k] = []byte("x")
	}
	if err := d.Cleanup(t.Context(), 4, 10); err != nil {
		t.Fatal(err)
	}
	got := tree(t, dir)
	if !maps.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("after Cleanup:\n%s\nwant:\n%s", strings.Join(slices.Sorted(maps.Keys(got)), "\n"),
			strings.Join(slices.Sorted(maps.Keys(want)), "\n"))
	}
	if last, ok, err := d.Committed(t.Context(), 4); last != 10 || !ok || err != nil {
		t.Fatalf("Committed = %d, %v, %v", last, ok, err)
	}

	// The uncommitted file at seq <= after goes with after = 0... unless it
	// is not after it: seq 0 is never > 0.
	if err := d.Cleanup(t.Context(), 4, 0); err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(tree(t, dir), want, bytes.Equal) {
		t.Fatal("Cleanup(after=0) removed more")
	}
}

func TestCommittedIgnoresStrayNames(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, format.Default)
	if err := d.Write(t.Context(), destinationtest.Batch(3, 5, 8, 1)); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{
		"_manifests/p03-000000000009-000000000099.json.5.tmp",
		"_manifests/p03-000000000009-000000000099.jsonx",
		"_manifests/p03-9-99.json",
		"_manifests/p03-000000000099-000000000009.json", // first > last
		"_manifests/p03-000000000009-000000000099/x.json",
		"_manifests/p030-000000000009-000000000099.json",
		"_manifests/p3-000000000009-000000000099.json",
	} {
		touch(t, dir, k)
	}
	if last, ok, err := d.Committed(t.Context(), 3); last != 8 || !ok || err != nil {
		t.Fatalf("Committed = %d, %v, %v", last, ok, err)
	}
	ms, err := d.Manifests(t.Context(), 3)
	if err != nil || len(ms) != 1 {
		t.Fatalf("Manifests = %v, %v", ms, err)
	}
}

func TestReadDetectsCorruption(t *testing.T) {
	for name, corrupt := range map[string]func(dir string, m Manifest){
		"data file changed": func(dir string, m Manifest) {
			os.WriteFile(filepath.Join(dir, m.Files[0].Path), []byte("PAR1 not really PAR1"), 0o666)
		},
		"data file missing": func(dir string, m Manifest) {
			os.Remove(filepath.Join(dir, m.Files[0].Path))
		},
		"manifest for another batch": func(dir string, m Manifest) {
			data, _ := os.ReadFile(filepath.Join(dir, "_manifests", m.BatchID+".json"))
			os.WriteFile(filepath.Join(dir, "_manifests", "p01-000000000001-000000000002.json"), data, 0o666)
		},
		"manifest garbage": func(dir string, m Manifest) {
			os.WriteFile(filepath.Join(dir, "_manifests", m.BatchID+".json"), []byte("{"), 0o666)
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			d := openDir(t, dir, format.Default)
			if err := d.Write(t.Context(), destinationtest.Batch(1, 3, 4, 3)); err != nil {
				t.Fatal(err)
			}
			ms, err := d.Manifests(t.Context(), 1)
			if err != nil {
				t.Fatal(err)
			}
			corrupt(dir, ms[0])
			_, err = d.EventIDs(t.Context(), 1)
			if err == nil {
				t.Fatal("no error")
			}
			if name != "data file missing" && !errors.Is(err, ErrCorrupt) {
				t.Errorf("err = %v, want ErrCorrupt", err)
			}
		})
	}
}

func TestOpenURL(t *testing.T) {
	t.Run("absolute, created", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "a", "b")
		d := openDir(t, dir, format.Codec{})
		if err := d.Write(t.Context(), destinationtest.Batch(0, 1, 1, 1)); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(dir, "_manifests", "p00-000000000001-000000000001.json")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("relative", func(t *testing.T) {
		wd := t.TempDir()
		t.Chdir(wd)
		for _, u := range []string{"file://./lake", "file://../" + filepath.Base(wd) + "/lake2"} {
			d, err := Open(t.Context(), u, format.Default)
			if err != nil {
				t.Fatal(err)
			}
			if err := d.Write(t.Context(), destinationtest.Batch(0, 1, 1, 1)); err != nil {
				t.Fatal(err)
			}
			d.Close()
		}
		for _, sub := range []string{"lake", "lake2"} {
			if _, err := os.Stat(filepath.Join(wd, sub, "_manifests")); err != nil {
				t.Errorf("%s: %v", sub, err)
			}
		}
	})
	for _, tc := range []struct{ url, want string }{
		{"s3://AKIAXXX:s3cr3t@bucket/prefix?sig=t0ps3cret&region=eu", "no user info"},
		{"ftp://AKIAXXX:s3cr3t@host/prefix?sig=t0ps3cret", `unsupported scheme "ftp"`},
		{"file://server/share", `host "server"`},
		{"file:relative", "file:///absolute/path"},
		{"file://", "no directory"},
		{"file:///tmp/x?sig=t0ps3cret", "no query parameters"},
		{"file://me:s3cr3t@./x", "no user info"},
		{"http://[::1:80/%zz?sig=t0ps3cret", "malformed URL"},
		{"lake", `unsupported scheme ""`},
	} {
		_, err := Open(t.Context(), tc.url, format.Default)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q) err = %v, want %q", tc.url, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "s3cr3t") || strings.Contains(err.Error(), "t0ps3cret") {
			t.Errorf("Open(%q) error leaks a secret: %v", tc.url, err)
		}
	}
	// A file where the directory should be.
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, nil, 0o666)
	if _, err := Open(t.Context(), "file://"+f, format.Default); err == nil {
		t.Error("Open of a regular file: no error")
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"file:///var/lake", "file:///var/lake"},
		{"file://./lake", "file://./lake"},
		{"s3://AKIA:secret@bucket/p?region=eu-west-1&X-Amz-Signature=abc&token=t", "s3://bucket/p?X-Amz-Signature=REDACTED&region=eu-west-1&token=REDACTED"},
		{"azblob://container?sv=2020&sig=abc%2Fdef&se=x", "azblob://container?se=REDACTED&sig=REDACTED&sv=REDACTED"},
		{"gs://bucket/prefix#frag", "gs://bucket/prefix"},
		{"https://user@host/x", "https://host/x"},
		{"s3://k:s@[bad/x?sig=1", "s3://<unparsable>"},
		{"k:s@%zz", "k:<opaque>"},
		{"%zz:secret", "<unparsable URL>"},
		{"mailto:secret@example.com", "mailto:<opaque>"},
		{"s3://b/p?endpoint=https://k:secret@minio:9000&region=x", "s3://b/p?endpoint=https%3A%2F%2Fminio%3A9000&region=x"},
		{"s3://b/p?profile=a@secret", "s3://b/p?profile=REDACTED"},
	} {
		got := Redact(tc.in)
		if got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, s := range []string{"secret", "abc", "sig=1", "k:s"} {
			if strings.Contains(got, s) {
				t.Errorf("Redact(%q) = %q keeps %q", tc.in, got, s)
			}
		}
	}
}

func TestParseBatchID(t *testing.T) {
	for _, tc := range []struct {
		id          string
		p           int
		first, last uint64
		ok          bool
	}{
		{"p03-000000000120-000000000187", 3, 120, 187, true},
		{"p100-000000000001-000000000001", 100, 1, 1, true},
		{"p00-000000000000-000000000000", 0, 0, 0, true},
		{"p3-000000000120-000000000187", 0, 0, 0, false},
		{"p03-120-187", 0, 0, 0, false},
		{"p03-000000000187-000000000120", 0, 0, 0, false},
		{"p-1-000000000001-000000000001", 0, 0, 0, false},
		{"q03-000000000120-000000000187", 0, 0, 0, false},
		{"p03-000000000120-000000000187x", 0, 0, 0, false},
		{"p03-+00000000120-000000000187", 0, 0, 0, false},
		{"", 0, 0, 0, false},
	} {
		p, f, l, ok := parseBatchID(tc.id)
		if p != tc.p || f != tc.first || l != tc.last || ok != tc.ok {
			t.Errorf("parseBatchID(%q) = %d %d %d %v", tc.id, p, f, l, ok)
		}
	}
}

func TestParseBatchName(t *testing.T) {
	for _, tc := range []struct {
		id       string
		p        int
		backfill bool
		ok       bool
	}{
		{"p03-000000000120-000000000187", 3, false, true},
		{"bf-p03-000000000120-000000000187-0123456789abcdef", 3, true, true},
		{"bf-p100-000000000001-000000000001-0123456789abcdef", 100, true, true},
		{"bf-p03-000000000187-000000000120-0123456789abcdef", 0, false, false}, // min > max
		{"bf-p03-000000000120-000000000187-0123456789ABCDEF", 0, false, false}, // upper-case digest
		{"bf-p03-000000000120-000000000187-0123456789abcde", 0, false, false},  // short digest
		{"bf-p3-000000000120-000000000187-0123456789abcdef", 0, false, false},
		{"bf-p03-120-187-0123456789abcdef", 0, false, false},
		{"bf-000000000120-000000000187", 0, false, false},
		{"bf-", 0, false, false},
	} {
		p, bf, ok := ParseBatchName(tc.id)
		if p != tc.p || bf != tc.backfill || ok != tc.ok {
			t.Errorf("ParseBatchName(%q) = %d %v %v", tc.id, p, bf, ok)
		}
	}
}

func TestByHour(t *testing.T) {
	const h = hourMicros
	rows := []int64{5, -1, 2*h + 1, 7, -h, 2 * h, 3}
	groups := byHour(rows, func(r *int64) int64 { return *r })
	var got [][]int64
	var hours []int64
	for _, g := range groups {
		hours = append(hours, g.hour)
		got = append(got, g.rows)
	}
	if !slices.Equal(hours, []int64{-1, 0, 2}) ||
		!slices.Equal(got[0], []int64{-1, -h}) || !slices.Equal(got[1], []int64{5, 7, 3}) || !slices.Equal(got[2], []int64{2*h + 1, 2 * h}) {
		t.Fatalf("byHour = %v %v", hours, got)
	}
}

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	d := openDir(t, dir, format.Default)
	b := destinationtest.Batch(1, 1, 1, 2)
	b.Events[1].LogOffset = -1
	if err := d.Write(t.Context(), b); err == nil || !strings.Contains(err.Error(), "negative log offset") {
		t.Errorf("negative offset: err = %v", err)
	}
	if files := tree(t, dir); len(files) != 0 {
		t.Errorf("rejected batch left %v", slices.Sorted(maps.Keys(files)))
	}
	b = destinationtest.Batch(1, 1, 1, 2)
	b.Sessions[0].StartedAt = 1 << 62 // year ~148000
	if err := d.Write(t.Context(), b); err == nil || !strings.Contains(err.Error(), "outside years") {
		t.Errorf("far future: err = %v", err)
	}
	if _, ok, _ := d.Committed(t.Context(), 1); ok {
		t.Error("rejected batch committed")
	}
}

// TestCleanupDuringWrites: Cleanup, Committed and Manifests of one partition
// run while other partitions write (the transport runs partitions
// concurrently). fileblob's listing stats each file it walks, and a temp
// file renamed away in between must not fail the listing.
func TestCleanupDuringWrites(t *testing.T) {
	d := openDir(t, t.TempDir(), format.Default)
	if err := d.Write(t.Context(), destinationtest.Batch(2, 1, 1, 3)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Go(func() {
			for i := uint64(1); ctx.Err() == nil; i++ {
				if err := d.Write(ctx, destinationtest.Batch(10+p, i, i, 2)); err != nil && ctx.Err() == nil {
					t.Errorf("Write: %v", err)
					return
				}
			}
		})
	}
	for range 300 {
		if err := d.Cleanup(t.Context(), 2, 1); err != nil {
			t.Fatalf("Cleanup during writes: %v", err)
		}
		if last, ok, err := d.Committed(t.Context(), 2); last != 1 || !ok || err != nil {
			t.Fatalf("Committed during writes = %d, %v, %v", last, ok, err)
		}
	}
	cancel()
	wg.Wait()
}
