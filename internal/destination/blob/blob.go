package blob

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/format"
	"github.com/tidemark/tidemark/internal/retry"
)

// Blob is a Destination that writes files and manifests to an object store
// bucket: a local directory, S3 (or an S3-compatible store), Google Cloud
// Storage or Azure Blob Storage. Its methods may be called concurrently for
// different partitions; Write and Cleanup of one partition must not overlap.
//
// Errors never contain credentials (see Redact and RedactText); Classify
// and IsPermanent tell what kind of problem an error is.
type Blob struct {
	bucket     *blob.Bucket
	codec      format.Codec
	dir        string       // local root to fsync, for file:// buckets
	url        string       // redacted
	scheme     string       // file, s3, gs or azblob
	bucketName string       // bucket or container; the directory for file://
	root       *blob.Bucket // the bucket without the prefix, its own client (bucket itself when there is no prefix)
	prefix     string       // the key prefix ("" or "a/b")
	owner      *Owner       // see SetOwner; nil: no claim checked
}

var _ destination.Destination = (*Blob)(nil)

// Open opens the destination at rawURL, writing files in codec (the zero
// Codec means format.Default). It checks the URL and builds the client but
// does not contact the service: Probe does.
//
// Supported URLs (see the package documentation for credentials):
//
//	file:///absolute/dir, file://./relative/dir   a local directory, created if missing
//	s3://BUCKET/PREFIX?region=R&endpoint=URL&use_path_style=true
//	gs://BUCKET/PREFIX
//	azblob://CONTAINER/PREFIX?domain=D&protocol=http&localemu=true
//
// Every key is written under PREFIX/ when the URL has a path. Errors never
// contain credentials; an invalid URL is a ClassInvalid error.
func Open(ctx context.Context, rawURL string, codec format.Codec) (*Blob, error) {
	u, open, err := parseURL(rawURL)
	if err != nil {
		return nil, invalid(err)
	}
	bucket, prefix, dir, err := open(ctx, u)
	if err != nil {
		err = fmt.Errorf("open destination %s: %w", Redact(rawURL), err)
		if Classify(err) == ClassUnknown {
			err = invalid(err)
		}
		return nil, redactErr(err)
	}
	root := bucket
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		// PrefixedBucket takes the bucket over (and closes it with its
		// own): Claim reads above the prefix through a second client.
		if root, _, _, err = open(ctx, u); err != nil {
			bucket.Close()
			return nil, redactErr(fmt.Errorf("open destination %s: %w", Redact(rawURL), err))
		}
		bucket = blob.PrefixedBucket(bucket, prefix+"/")
	}
	if codec.Encoding() == "" {
		codec = format.Default
	}
	name := u.Host
	if dir != "" {
		name = dir
	}
	return &Blob{bucket: bucket, codec: codec, dir: dir, url: Redact(rawURL), scheme: u.Scheme, bucketName: name,
		root: root, prefix: prefix}, nil
}

// String returns the destination's redacted URL.
func (d *Blob) String() string { return d.url }

// Close releases the bucket.
func (d *Blob) Close() error {
	err := d.bucket.Close()
	if d.root != d.bucket {
		if rerr := d.root.Close(); err == nil {
			err = rerr
		}
	}
	return err
}

// Write stores the batch: one data file per table and UTC hour that has rows
// (events by received_at, pages and sessions by started_at), then the
// manifest, which commits it. Writing the same batch again writes the same
// keys with the same bytes. On a file:// destination every file is fsynced,
// and the data files' directories before the manifest is written, so a
// power loss cannot leave a manifest whose files are missing.
func (d *Blob) Write(ctx context.Context, b *destination.Batch) (err error) {
	defer func() { err = redactErr(err) }()
	m, keys, err := d.writeData(ctx, b)
	if err != nil {
		return err
	}
	data, err := m.Encode()
	if err != nil {
		return fmt.Errorf("write batch %s: %w", b.ID, err)
	}
	// Never commit a manifest that readers would reject.
	if _, err := DecodeManifest(data); err != nil {
		return fmt.Errorf("write batch %s: %w", b.ID, err)
	}
	if err := d.syncDirs(keys...); err != nil {
		return fmt.Errorf("write batch %s: %w", b.ID, err)
	}
	key := manifestKey(b.ID)
	if err := d.put(ctx, key, data, "application/json"); err != nil {
		return fmt.Errorf("write batch %s: commit: %w", b.ID, err)
	}
	if err := d.syncDirs(key); err != nil {
		return fmt.Errorf("write batch %s: commit: %w", b.ID, err)
	}
	return nil
}

// writeData uploads the batch's data files and returns its manifest and the
// keys written.
func (d *Blob) writeData(ctx context.Context, b *destination.Batch) (*Manifest, []string, error) {
	if err := checkBatch(b); err != nil {
		return nil, nil, err
	}
	m := &Manifest{
		Version:   ManifestVersion,
		BatchID:   b.ID,
		Org:       b.Org,
		Partition: b.Partition,
		FirstSeq:  b.FirstSeq,
		LastSeq:   b.LastSeq,
		Backfill:  b.Backfill,
		Files:     []File{},
	}
	ids := make([]string, len(b.Events))
	for i := range b.Events {
		e := &b.Events[i]
		ids[i] = e.EventID
		if e.LogOffset < 0 {
			return nil, nil, invalid(fmt.Errorf("write batch %s: event %s: negative log offset %d", b.ID, e.EventID, e.LogOffset))
		}
		if i == 0 || e.LogOffset < m.MinLogOffset {
			m.MinLogOffset = e.LogOffset
		}
		if i == 0 || e.LogOffset > m.MaxLogOffset {
			m.MaxLogOffset = e.LogOffset
		}
	}
	m.EventCount = int64(len(ids))
	m.EventIDsSHA256 = eventIDsDigest(ids)

	w := &batchWriter{d: d, id: b.ID}
	writeTable(ctx, w, b.Events, func(r *format.EventRow) int64 { return r.ReceivedAt })
	writeTable(ctx, w, b.Pages, func(r *format.PageRow) int64 { return r.StartedAt })
	writeTable(ctx, w, b.Sessions, func(r *format.SessionRow) int64 { return r.StartedAt })
	if w.err != nil {
		return nil, nil, fmt.Errorf("write batch %s: %w", b.ID, w.err)
	}
	m.Files = w.files
	slices.SortFunc(m.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return m, w.keys, nil
}

func checkBatch(b *destination.Batch) error {
	if err := b.Check(); err != nil {
		return invalid(err)
	}
	return nil
}

// batchWriter uploads the data files of one batch and remembers them for the
// manifest. The first error stops it.
type batchWriter struct {
	d     *Blob
	id    string
	files []File
	keys  []string
	err   error
}

// writeTable writes rows as one file per UTC hour of at(row), in row order.
func writeTable[T format.Row](ctx context.Context, w *batchWriter, rows []T, at func(*T) int64) {
	if w.err != nil || len(rows) == 0 {
		return
	}
	table := format.Table[T]()
	for _, g := range byHour(rows, at) {
		hour := time.UnixMicro(g.hour * hourMicros).UTC()
		if y := hour.Year(); y < 0 || y > 9999 {
			w.err = invalid(fmt.Errorf("%s: row time %v outside years 0-9999", table, hour))
			return
		}
		var buf bytes.Buffer
		if err := format.Write(&buf, w.d.codec, g.rows); err != nil {
			w.err = err
			return
		}
		p := dataPath(table, hour, w.id, w.d.codec.Ext())
		if err := w.d.put(ctx, p, buf.Bytes(), w.d.codec.ContentType()); err != nil {
			w.err = fmt.Errorf("upload %s: %w", p, err)
			return
		}
		sum := sha256.Sum256(buf.Bytes())
		w.files = append(w.files, File{Path: p, Table: table, Rows: int64(len(g.rows)), Bytes: int64(buf.Len()), SHA256: hex.EncodeToString(sum[:])})
		w.keys = append(w.keys, p)
	}
}

const hourMicros = int64(time.Hour / time.Microsecond)

type hourRows[T any] struct {
	hour int64 // hours since the Unix epoch
	rows []T
}

// byHour splits rows by hour, keeping their order; hours ascend.
func byHour[T any](rows []T, at func(*T) int64) []hourRows[T] {
	hourOf := func(r *T) int64 {
		us := at(r)
		h := us / hourMicros
		if us%hourMicros < 0 {
			h-- // floor for times before 1970
		}
		return h
	}
	first := hourOf(&rows[0])
	single := true
	for i := range rows {
		if hourOf(&rows[i]) != first {
			single = false
			break
		}
	}
	if single { // the common case: no copy
		return []hourRows[T]{{first, rows}}
	}
	var groups []hourRows[T]
	idx := map[int64]int{}
	for i := range rows {
		h := hourOf(&rows[i])
		j, ok := idx[h]
		if !ok {
			j = len(groups)
			idx[h] = j
			groups = append(groups, hourRows[T]{hour: h})
		}
		groups[j].rows = append(groups[j].rows, rows[i])
	}
	slices.SortFunc(groups, func(a, b hourRows[T]) int { return cmpInt(a.hour, b.hour) })
	return groups
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// put writes one object, replacing any previous one. On a file:// bucket the
// temp file is fsynced before fileblob renames it into place.
//
// Cloud buckets get the whole body in one Upload call: the SDKs then know
// its size (S3 makes one PutObject, or above 16 MiB a multipart upload of
// 8 MiB parts; Azure stages 8 MiB blocks; GCS makes a resumable upload of
// 16 MiB chunks), and it avoids azureblob's streaming writer, which in
// gocloud v0.47 panics (nil pipe) when an upload fails. Only GCS is given
// the MD5, which it verifies; S3 verifies the SDK's CRC32 checksums
// instead, and Azure does not verify a whole-blob MD5 of a staged upload.
func (d *Blob) put(ctx context.Context, key string, data []byte, contentType string) error {
	if d.dir == "" {
		opts := &blob.WriterOptions{ContentType: contentType}
		if d.scheme == "gs" {
			sum := md5.Sum(data)
			opts.ContentMD5 = sum[:]
		}
		return d.bucket.Upload(ctx, key, bytes.NewReader(data), opts)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sum := md5.Sum(data)
	opts := &blob.WriterOptions{ContentType: contentType, ContentMD5: sum[:]}
	var f *os.File
	opts.BeforeWrite = func(as func(any) bool) error {
		as(&f)
		return nil
	}
	w, err := d.bucket.NewWriter(ctx, key, opts)
	if err != nil {
		return err
	}
	_, err = w.Write(data)
	if err == nil && f != nil {
		err = f.Sync()
	}
	if err != nil {
		cancel() // abort: Close must not publish a partial object
		_ = w.Close()
		return err
	}
	return w.Close()
}

// syncDirs fsyncs, on a file:// bucket, the directories holding keys and
// their parents up to the root, so that renames and new directories are
// durable. Elsewhere it does nothing.
func (d *Blob) syncDirs(keys ...string) error {
	if d.dir == "" {
		return nil
	}
	done := map[string]bool{}
	for _, k := range keys {
		for dir := path.Dir(k); ; dir = path.Dir(dir) {
			if !done[dir] {
				done[dir] = true
				if err := syncDir(filepath.Join(d.dir, filepath.FromSlash(dir))); err != nil {
					return err
				}
			}
			if dir == "." {
				break
			}
		}
	}
	return nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Committed returns the LastSeq of the partition's newest manifest. It lists
// the partition's manifest keys and parses their names; it reads none.
func (d *Blob) Committed(ctx context.Context, partition int) (uint64, bool, error) {
	last, found, err := d.committed(ctx, partition)
	return last, found, redactErr(err)
}

func (d *Blob) committed(ctx context.Context, partition int) (uint64, bool, error) {
	var last uint64
	found := false
	err := d.list(ctx, manifestDir+partitionPrefix(partition), func(key string) error {
		id, ok := strings.CutSuffix(strings.TrimPrefix(key, manifestDir), ".json")
		if !ok {
			return nil
		}
		p, _, l, ok := parseBatchID(id)
		if ok && p == partition && (!found || l > last) {
			last, found = l, true
		}
		return nil
	})
	if err != nil {
		return 0, false, fmt.Errorf("committed partition %d: %w", partition, err)
	}
	return last, found, nil
}

// Cleanup deletes what a crash can leave behind for the partition: data files
// whose batch has no manifest and a first seq greater than after, and the
// temp files of interrupted writes (fileblob's "<key>.<hex>.tmp"). It deletes
// only files of the exact layout, <table>/dt=YYYY-MM-DD/hr=HH/<batch id><ext>
// (nothing deeper, which would be another destination's). It lists
// every table, so its cost grows with the size of the destination; it runs
// once per partition at start.
func (d *Blob) Cleanup(ctx context.Context, partition int, after uint64) (err error) {
	defer func() { err = redactErr(err) }()
	pp := partitionPrefix(partition)
	committed := map[string]bool{}
	var doomed []string
	err = d.list(ctx, manifestDir+pp, func(key string) error {
		name := strings.TrimPrefix(key, manifestDir)
		if strings.Contains(name, "/") {
			return nil // deeper: not this destination's manifest
		}
		if id, ok := strings.CutSuffix(name, ".json"); ok {
			if p, _, _, ok := parseBatchID(id); ok && p == partition {
				committed[id] = true
			}
			return nil
		}
		if isTemp(name, ".json") {
			doomed = append(doomed, key)
		}
		return nil
	})
	for _, table := range tables {
		if err != nil {
			break
		}
		err = d.list(ctx, table+"/", func(key string) error {
			// Only this destination's exact layout: a file deeper down
			// (another destination's place inside this one) or elsewhere
			// is not ours to delete.
			_, _, name, ok := splitDataPath(key)
			if !ok || !strings.HasPrefix(name, pp) {
				return nil
			}
			if isTemp(name, format.Exts()...) {
				doomed = append(doomed, key)
				return nil
			}
			ext := extOf(name)
			id := strings.TrimSuffix(name, ext)
			p, first, _, ok := parseBatchID(id)
			if ext != "" && ok && p == partition && first > after && !committed[id] {
				doomed = append(doomed, key)
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("cleanup partition %d: %w", partition, err)
	}
	for _, key := range doomed {
		if err := d.bucket.Delete(ctx, key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return fmt.Errorf("cleanup partition %d: %w", partition, err)
		}
	}
	return nil
}

// isTemp reports whether name is a fileblob temp file of an object named
// <batch id><ext>: "<batch id><ext>.<hex>.tmp".
func isTemp(name string, exts ...string) bool {
	rest, ok := strings.CutSuffix(name, ".tmp")
	if !ok {
		return false
	}
	i := strings.LastIndexByte(rest, '.')
	if i < 0 || i == len(rest)-1 || strings.Trim(rest[i+1:], "0123456789abcdef") != "" {
		return false
	}
	base := rest[:i]
	for _, ext := range exts {
		if id, ok := strings.CutSuffix(base, ext); ok {
			_, _, _, ok := parseBatchID(id)
			return ok
		}
	}
	return false
}

// list calls fn with every key under prefix, in lexical order.
func (d *Blob) list(ctx context.Context, prefix string, fn func(key string) error) error {
	return d.listObjects(ctx, prefix, func(obj *blob.ListObject) error { return fn(obj.Key) })
}

// listObjects calls fn with every object under prefix, in lexical order.
func (d *Blob) listObjects(ctx context.Context, prefix string, fn func(obj *blob.ListObject) error) error {
	opts := &blob.ListOptions{Prefix: prefix}
	token := blob.FirstPageToken
	for {
		objs, next, err := d.listPage(ctx, token, listPageSize, opts)
		if err != nil {
			return err
		}
		for _, obj := range objs {
			if obj.IsDir {
				continue
			}
			if err := fn(obj); err != nil {
				return err
			}
		}
		if len(next) == 0 {
			return nil
		}
		token = next
	}
}

// listPageSize is the page size of listings (the most S3, GCS and Azure
// return at once).
const listPageSize = 1000

// listPage returns one page of a listing. On a file:// bucket it retries a
// page that fails with NotFound: fileblob walks the directory and stats
// every file it finds, and a temp file that a concurrent Write (of another
// partition) renames in between makes the walk fail. A page restarts after
// the last key of the previous one, so a retry repeats no key.
func (d *Blob) listPage(ctx context.Context, token []byte, size int, opts *blob.ListOptions) ([]*blob.ListObject, []byte, error) {
	var objs []*blob.ListObject
	var next []byte
	err := retry.Do(ctx, listRetry, func(int) (err error) {
		objs, next, err = d.bucket.ListPage(ctx, token, size, opts)
		if err != nil && (d.dir == "" || gcerrors.Code(err) != gcerrors.NotFound) {
			return retry.Stop(err)
		}
		return err
	})
	return objs, next, err
}

// listRetry retries a listing page at once, up to 20 attempts.
var listRetry = retry.Policy{Attempts: 20}
