package blob

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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
)

// Blob is a Destination that writes files and manifests to an object store
// bucket (for now a local directory). Its methods may be called concurrently
// for different partitions; Write and Cleanup of one partition must not
// overlap.
type Blob struct {
	bucket *blob.Bucket
	codec  format.Codec
	dir    string // local root to fsync, for file:// buckets
	url    string // redacted
}

var _ destination.Destination = (*Blob)(nil)

// Open opens the destination at rawURL, writing files in codec (the zero
// Codec means format.Default).
//
// Supported URLs: file:///absolute/dir and file://./relative/dir (resolved
// against the working directory); the directory is created if missing.
// Errors never contain the URL's credentials; see Redact.
func Open(ctx context.Context, rawURL string, codec format.Codec) (*Blob, error) {
	u, open, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	bucket, prefix, dir, err := open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("open destination %s: %w", Redact(rawURL), err)
	}
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		bucket = blob.PrefixedBucket(bucket, prefix+"/")
	}
	if codec.Encoding() == "" {
		codec = format.Default
	}
	return &Blob{bucket: bucket, codec: codec, dir: dir, url: Redact(rawURL)}, nil
}

// String returns the destination's redacted URL.
func (d *Blob) String() string { return d.url }

// Close releases the bucket.
func (d *Blob) Close() error { return d.bucket.Close() }

// Write stores the batch: one data file per table and UTC hour that has rows
// (events by received_at, pages and sessions by started_at), then the
// manifest, which commits it. Writing the same batch again writes the same
// keys with the same bytes. On a file:// destination every file is fsynced,
// and the data files' directories before the manifest is written, so a
// power loss cannot leave a manifest whose files are missing.
func (d *Blob) Write(ctx context.Context, b *destination.Batch) error {
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

// WriteUncommitted writes the batch's data files but not its manifest, as a
// crash before the commit point leaves them. It is for crash tests
// (destinationtest.UncommittedWriter).
func (d *Blob) WriteUncommitted(ctx context.Context, b *destination.Batch) error {
	_, _, err := d.writeData(ctx, b)
	return err
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
			return nil, nil, fmt.Errorf("write batch %s: event %s: negative log offset %d", b.ID, e.EventID, e.LogOffset)
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
	switch {
	case b.Partition < 0:
		return fmt.Errorf("write batch %s: negative partition %d", b.ID, b.Partition)
	case b.FirstSeq > b.LastSeq:
		return fmt.Errorf("write batch %s: first seq %d > last seq %d", b.ID, b.FirstSeq, b.LastSeq)
	case b.ID != destination.BatchID(b.Partition, b.FirstSeq, b.LastSeq):
		return fmt.Errorf("write batch %s: id does not match partition %d, seqs %d-%d", b.ID, b.Partition, b.FirstSeq, b.LastSeq)
	case b.Org == "":
		return fmt.Errorf("write batch %s: no org", b.ID)
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
			w.err = fmt.Errorf("%s: row time %v outside years 0-9999", table, hour)
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
func (d *Blob) put(ctx context.Context, key string, data []byte, contentType string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sum := md5.Sum(data)
	opts := &blob.WriterOptions{ContentType: contentType, ContentMD5: sum[:]}
	var f *os.File
	if d.dir != "" {
		opts.BeforeWrite = func(as func(any) bool) error {
			as(&f)
			return nil
		}
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
// temp files of interrupted writes (fileblob's "<key>.<hex>.tmp"). It lists
// every table, so its cost grows with the size of the destination; it runs
// once per partition at start.
func (d *Blob) Cleanup(ctx context.Context, partition int, after uint64) error {
	pp := partitionPrefix(partition)
	committed := map[string]bool{}
	var doomed []string
	err := d.list(ctx, manifestDir+pp, func(key string) error {
		name := strings.TrimPrefix(key, manifestDir)
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
			name := path.Base(key)
			if !strings.HasPrefix(name, pp) {
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
	it := d.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if obj.IsDir {
			continue
		}
		if err := fn(obj.Key); err != nil {
			return err
		}
	}
}
