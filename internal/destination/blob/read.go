package blob

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/format"
)

// ErrCorrupt is wrapped by read errors caused by the destination's content:
// a manifest that does not decode or does not match its key, or a data file
// whose size, digest, row count or event ids differ from its manifest.
var ErrCorrupt = errors.New("corrupt batch")

// Manifests reads the partition's committed manifests, oldest batch first.
// It is for the audit, which must rely on the destination alone.
func (d *Blob) Manifests(ctx context.Context, partition int) (_ []Manifest, err error) {
	defer func() { err = redactErr(err) }()
	var ms []Manifest
	err = d.list(ctx, manifestDir+partitionPrefix(partition), func(key string) error {
		id, ok := strings.CutSuffix(strings.TrimPrefix(key, manifestDir), ".json")
		if !ok {
			return nil
		}
		if p, _, _, ok := parseBatchID(id); !ok || p != partition {
			return nil
		}
		m, err := d.readManifest(ctx, key, id)
		if err != nil {
			return err
		}
		ms = append(ms, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("manifests of partition %d: %w", partition, err)
	}
	return ms, nil
}

// readerOptions quiets the AWS SDK's warning, printed on every read of an
// object uploaded in parts, that it cannot validate the object's composite
// checksum: Manifests and ReadEvents check SHA-256 digests themselves.
var readerOptions = &blob.ReaderOptions{BeforeRead: func(as func(any) bool) error {
	var opts *[]func(*s3.Options)
	if as(&opts) {
		*opts = append(*opts, func(o *s3.Options) { o.DisableLogOutputChecksumValidationSkipped = true })
	}
	return nil
}}

// readAll reads the object at key, at most limit bytes (-1: no limit).
func (d *Blob) readAll(ctx context.Context, key string, limit int64) ([]byte, error) {
	r, err := d.bucket.NewReader(ctx, key, readerOptions)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	if limit < 0 {
		return io.ReadAll(r)
	}
	return io.ReadAll(io.LimitReader(r, limit))
}

func (d *Blob) readManifest(ctx context.Context, key, id string) (Manifest, error) {
	data, err := d.readAll(ctx, key, maxManifestSize+1)
	if err != nil {
		return Manifest{}, err
	}
	if len(data) > maxManifestSize {
		return Manifest{}, fmt.Errorf("%s: %w: larger than %d bytes", key, ErrCorrupt, maxManifestSize)
	}
	m, err := DecodeManifest(data)
	if err != nil {
		return Manifest{}, fmt.Errorf("%s: %w: %w", key, ErrCorrupt, err)
	}
	if m.BatchID != id {
		return Manifest{}, fmt.Errorf("%s: %w: holds batch %s", key, ErrCorrupt, m.BatchID)
	}
	return m, nil
}

// ReadEvents reads back the events of a committed batch from its files,
// checking each file's size, SHA-256 and row count and the batch's event
// count, offsets and event id digest against the manifest.
func (d *Blob) ReadEvents(ctx context.Context, m Manifest) (_ []format.EventRow, err error) {
	defer func() { err = redactErr(err) }()
	var rows []format.EventRow
	for _, f := range m.Files {
		if f.Table != format.Events {
			continue
		}
		data, err := d.readAll(ctx, f.Path, -1)
		if err != nil {
			return nil, fmt.Errorf("read batch %s: %w", m.BatchID, err)
		}
		sum := sha256.Sum256(data)
		if int64(len(data)) != f.Bytes || hex.EncodeToString(sum[:]) != f.SHA256 {
			return nil, fmt.Errorf("read batch %s: %s: %w: content differs from the manifest", m.BatchID, f.Path, ErrCorrupt)
		}
		got, err := format.ReadEvents(data)
		if err != nil {
			return nil, fmt.Errorf("read batch %s: %s: %w: %w", m.BatchID, f.Path, ErrCorrupt, err)
		}
		if int64(len(got)) != f.Rows {
			return nil, fmt.Errorf("read batch %s: %s: %w: %d rows, manifest says %d", m.BatchID, f.Path, ErrCorrupt, len(got), f.Rows)
		}
		rows = append(rows, got...)
	}
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].EventID
		if o := rows[i].LogOffset; o < m.MinLogOffset || o > m.MaxLogOffset {
			return nil, fmt.Errorf("read batch %s: %w: log offset %d outside %d..%d", m.BatchID, ErrCorrupt, o, m.MinLogOffset, m.MaxLogOffset)
		}
	}
	if int64(len(rows)) != m.EventCount || eventIDsDigest(ids) != m.EventIDsSHA256 {
		return nil, fmt.Errorf("read batch %s: %w: event ids differ from the manifest's digest", m.BatchID, ErrCorrupt)
	}
	return rows, nil
}

// ReadEventIDs returns the event ids of a committed batch, read and verified
// as by ReadEvents, in file order.
func (d *Blob) ReadEventIDs(ctx context.Context, m Manifest) ([]string, error) {
	rows, err := d.ReadEvents(ctx, m)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(rows))
	for i := range rows {
		ids[i] = rows[i].EventID
	}
	return ids, nil
}

// EventIDs returns the ids of every committed event of the partition, batch
// by batch. It implements destinationtest.EventIDReader.
func (d *Blob) EventIDs(ctx context.Context, partition int) ([]string, error) {
	ms, err := d.Manifests(ctx, partition)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, m := range ms {
		got, err := d.ReadEventIDs(ctx, m)
		if err != nil {
			return nil, err
		}
		ids = append(ids, got...)
	}
	return ids, nil
}

// Object is a listed object: its key relative to the destination's prefix
// and its size.
type Object struct {
	Path string
	Size int64
}

// HourFiles lists the data files of table whose path is in the UTC hour that
// starts at hour, committed or not (see Manifest), in path order. Temp files
// of interrupted writes are left out.
func (d *Blob) HourFiles(ctx context.Context, table string, hour time.Time) (_ []Object, err error) {
	defer func() { err = redactErr(err) }()
	var objs []Object
	prefix := dataPath(table, hour.UTC(), "", "")
	err = d.listObjects(ctx, prefix, func(obj *blob.ListObject) error {
		if extOf(obj.Key) != "" {
			objs = append(objs, Object{Path: obj.Key, Size: obj.Size})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", prefix, err)
	}
	return objs, nil
}

// BatchOf returns the batch id a data file path names, and false for a path
// that is not a data file of any batch.
func BatchOf(path string) (id string, ok bool) {
	_, _, name, ok := splitDataPath(path)
	if !ok {
		return "", false
	}
	ext := extOf(name)
	id = strings.TrimSuffix(name, ext)
	if _, _, ok := ParseBatchName(id); ext == "" || !ok {
		return "", false
	}
	return id, true
}

// Manifest reads the manifest of batch id. ok is false when there is none:
// the batch is not committed.
func (d *Blob) Manifest(ctx context.Context, id string) (_ Manifest, ok bool, err error) {
	defer func() { err = redactErr(err) }()
	m, err := d.readManifest(ctx, manifestKey(id), id)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return Manifest{}, false, nil
	}
	if err != nil {
		return Manifest{}, false, err
	}
	return m, true, nil
}

// ReadFileEvents reads one events file of a committed batch, checking its
// size, SHA-256 and row count against f, its entry in the manifest. Unlike
// ReadEvents it needs none of the batch's other files.
func (d *Blob) ReadFileEvents(ctx context.Context, f File) (_ []format.EventRow, err error) {
	defer func() { err = redactErr(err) }()
	if f.Table != format.Events {
		return nil, fmt.Errorf("read %s: not an events file", f.Path)
	}
	data, err := d.readAll(ctx, f.Path, -1)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Path, err)
	}
	sum := sha256.Sum256(data)
	if int64(len(data)) != f.Bytes || hex.EncodeToString(sum[:]) != f.SHA256 {
		return nil, fmt.Errorf("read %s: %w: content differs from the manifest", f.Path, ErrCorrupt)
	}
	rows, err := format.ReadEvents(data)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w: %w", f.Path, ErrCorrupt, err)
	}
	if int64(len(rows)) != f.Rows {
		return nil, fmt.Errorf("read %s: %w: %d rows, manifest says %d", f.Path, ErrCorrupt, len(rows), f.Rows)
	}
	return rows, nil
}

// LastLogOffset returns the largest log offset of an event in the
// partition's committed batches: the max_log_offset of the newest manifest
// that has events (of the 16 newest, which it reads; 0 when none has). The
// start-up check uses it to find a log that lost records a destination
// already holds.
func (d *Blob) LastLogOffset(ctx context.Context, partition int) (_ uint64, err error) {
	defer func() { err = redactErr(err) }()
	type named struct {
		key, id string
		last    uint64
	}
	var ids []named
	err = d.list(ctx, manifestDir+partitionPrefix(partition), func(key string) error {
		id, ok := strings.CutSuffix(strings.TrimPrefix(key, manifestDir), ".json")
		if !ok {
			return nil
		}
		if p, _, last, ok := parseBatchID(id); ok && p == partition {
			ids = append(ids, named{key, id, last})
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("manifests of partition %d: %w", partition, err)
	}
	slices.SortFunc(ids, func(a, b named) int { return cmp.Compare(b.last, a.last) })
	for _, n := range ids[:min(len(ids), 16)] {
		m, err := d.readManifest(ctx, n.key, n.id)
		if err != nil {
			return 0, err
		}
		if m.MaxLogOffset > 0 {
			return uint64(m.MaxLogOffset), nil
		}
	}
	return 0, nil
}

// EventFiles lists the events files in the UTC hour that starts at hour,
// committed or not, in path order, each with the batch its name gives.
// Files whose name is no batch's are left out. It is the audit's listing
// (audit.Destination).
func (d *Blob) EventFiles(ctx context.Context, hour time.Time) ([]destination.StoredFile, error) {
	objs, err := d.HourFiles(ctx, format.Events, hour)
	if err != nil {
		return nil, err
	}
	files := make([]destination.StoredFile, 0, len(objs))
	for _, o := range objs {
		if id, ok := BatchOf(o.Path); ok {
			files = append(files, destination.StoredFile{Batch: id, Path: o.Path, Size: o.Size})
		}
	}
	return files, nil
}
