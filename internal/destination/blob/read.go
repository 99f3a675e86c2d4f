package blob

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/tidemark/tidemark/internal/format"
)

// ErrCorrupt is wrapped by read errors caused by the destination's content:
// a manifest that does not decode or does not match its key, or a data file
// whose size, digest, row count or event ids differ from its manifest.
var ErrCorrupt = errors.New("corrupt batch")

// Manifests reads the partition's committed manifests, oldest batch first.
// It is for the audit, which must rely on the destination alone.
func (d *Blob) Manifests(ctx context.Context, partition int) ([]Manifest, error) {
	var ms []Manifest
	err := d.list(ctx, manifestDir+partitionPrefix(partition), func(key string) error {
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

func (d *Blob) readManifest(ctx context.Context, key, id string) (Manifest, error) {
	r, err := d.bucket.NewReader(ctx, key, nil)
	if err != nil {
		return Manifest{}, err
	}
	defer r.Close()
	data, err := io.ReadAll(io.LimitReader(r, maxManifestSize+1))
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
func (d *Blob) ReadEvents(ctx context.Context, m Manifest) ([]format.EventRow, error) {
	var rows []format.EventRow
	for _, f := range m.Files {
		if f.Table != format.Events {
			continue
		}
		data, err := d.bucket.ReadAll(ctx, f.Path)
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
