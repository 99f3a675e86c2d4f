package postgres

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/format"
)

// The audit's read-back (audit.Destination), from the tables themselves.
//
// The audit is file-shaped: it lists an hour's events files with their
// sizes, counts the rows of those a committed batch's manifest lists with
// the same size, and reads the event ids of files whose counts differ from
// the log's. Here a "file" is the rows of events that one batch loaded in
// one UTC hour of received_at:
//
//	path  events/<hour, RFC 3339>/<batch id>
//	size  the number of those rows now (Bytes = Rows = size in the manifest)
//
// EventFiles counts them per batch in the events table (index on
// received_at). Manifest is the batch's commit record in _tidemark_batches
// (org, partition, sequence numbers, backfill flag, and the counts and
// digest of what it loaded), ok=false when none records it; its Files are
// counted in the events table too (primary key: the partition's offset
// range the record holds), one per hour the batch still has rows in. So rows deleted by hand lower both the
// listed size and the manifest's row count: the audit counts what the table
// holds and, reading the ids, finds exactly the deleted events missing.
// Rows whose batch no record names (inserted by hand) count as nothing, like
// a lake file without a manifest.
//
// Cost: each audit run counts the rows of every hour it audits (the
// background auditor: audit.lookback every audit.interval), a scan of the
// received_at index and the rows it points to; where that is too much for a
// large table, a longer interval or a shorter lookback bounds it.

// inBatch selects the rows of batch $1 through the primary key: a batch's
// rows are in its partition ($2) between the least and greatest log
// offsets its record holds ($3, $4); rows of another batch in that range
// (a row kept by the conflict path) have another _tidemark_batch.
const inBatch = "log_partition = $2 AND log_offset BETWEEN $3 AND $4 AND " + colBatch + " = $1"

// filePath names the rows of batch in the hour that starts at hour.
func filePath(hour time.Time, batch string) string {
	return format.Events + "/" + hour.UTC().Format(time.RFC3339) + "/" + batch
}

// parseFilePath is the inverse of filePath.
func parseFilePath(path string) (hour time.Time, batch string, err error) {
	rest, ok := strings.CutPrefix(path, format.Events+"/")
	h, batch, ok2 := strings.Cut(rest, "/")
	if ok && ok2 && batch != "" {
		if hour, err = time.Parse(time.RFC3339, h); err == nil {
			return hour.UTC(), batch, nil
		}
	}
	return time.Time{}, "", fmt.Errorf("%q is not a file of the events table (events/<hour>/<batch id>)", path)
}

// EventFiles lists, per batch, the rows of events received in the UTC hour
// that starts at hour (audit.Destination).
func (d *Postgres) EventFiles(ctx context.Context, hour time.Time) ([]destination.StoredFile, error) {
	hour = hour.UTC().Truncate(time.Hour)
	rows, err := d.pool.Query(ctx, "SELECT "+colBatch+", count(*) FROM "+d.ident("events")+
		" WHERE received_at >= $1 AND received_at < $2 GROUP BY 1 ORDER BY 1", hour, hour.Add(time.Hour))
	if err != nil {
		return nil, d.readErr("list the events of "+hour.Format(time.RFC3339), err)
	}
	var files []destination.StoredFile
	var batch string
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&batch, &n}, func() error {
		files = append(files, destination.StoredFile{Batch: batch, Path: filePath(hour, batch), Size: n})
		return nil
	})
	if err != nil {
		return nil, d.readErr("list the events of "+hour.Format(time.RFC3339), err)
	}
	return files, nil
}

// Manifest returns the commit record of batch id with its files counted in
// the events table; ok is false when _tidemark_batches does not record it
// (audit.Destination).
func (d *Postgres) Manifest(ctx context.Context, id string) (destination.Manifest, bool, error) {
	m := destination.Manifest{Version: destination.ManifestVersion, BatchID: id}
	var first, last int64
	err := d.pool.QueryRow(ctx, "SELECT org_id, log_partition, first_seq, last_seq, backfill, event_count, "+
		"min_log_offset, max_log_offset, event_ids_sha256 FROM "+d.ident("_tidemark_batches")+" WHERE batch_id = $1", id).
		Scan(&m.Org, &m.Partition, &first, &last, &m.Backfill, &m.EventCount, &m.MinLogOffset, &m.MaxLogOffset, &m.EventIDsSHA256)
	if errors.Is(err, pgx.ErrNoRows) {
		return destination.Manifest{}, false, nil
	}
	if err != nil {
		return destination.Manifest{}, false, d.readErr("read the record of batch "+id, err)
	}
	m.FirstSeq, m.LastSeq = uint64(first), uint64(last)
	// The batch's rows are in its partition's offset range (the primary
	// key); date_trunc in UTC, whatever the session's TimeZone.
	rows, err := d.pool.Query(ctx, "SELECT date_trunc('hour', received_at, 'UTC'), count(*) FROM "+d.ident("events")+
		" WHERE "+inBatch+" GROUP BY 1 ORDER BY 1", id, m.Partition, m.MinLogOffset, m.MaxLogOffset)
	if err != nil {
		return destination.Manifest{}, false, d.readErr("count the events of batch "+id, err)
	}
	var hour time.Time
	var n int64
	_, err = pgx.ForEachRow(rows, []any{&hour, &n}, func() error {
		m.Files = append(m.Files, destination.File{Path: filePath(hour, id), Table: format.Events, Rows: n, Bytes: n})
		return nil
	})
	if err != nil {
		return destination.Manifest{}, false, d.readErr("count the events of batch "+id, err)
	}
	return m, true, nil
}

// ReadFileEvents reads the rows of one file (a batch's rows of one hour),
// in log order (audit.Destination). It fills what the audit compares and
// locates: event_id and device_id (the originals where _tidemark_escaped
// holds them), org_id, session_id, page_id, received_at, log_partition and
// log_offset; the other fields are zero. Unlike a lake file, the rows may
// have changed since f was read: the audit compares ids, not counts.
func (d *Postgres) ReadFileEvents(ctx context.Context, f destination.File) ([]format.EventRow, error) {
	if f.Table != format.Events {
		return nil, fmt.Errorf("read %s from %s: not an events file", f.Path, d)
	}
	hour, batch, err := parseFilePath(f.Path)
	if err != nil {
		return nil, fmt.Errorf("read from %s: %w", d, err)
	}
	// Through the primary key when the batch's record says where its rows
	// are; without a record, the hour's rows (BRIN index) of that batch.
	where, args := colBatch+" = $1", []any{batch}
	var partition, lo, hi int64
	err = d.pool.QueryRow(ctx, "SELECT log_partition, min_log_offset, max_log_offset FROM "+d.ident("_tidemark_batches")+
		" WHERE batch_id = $1", batch).Scan(&partition, &lo, &hi)
	switch {
	case err == nil:
		where, args = inBatch, append(args, partition, lo, hi)
	case !errors.Is(err, pgx.ErrNoRows):
		return nil, d.readErr("read the record of batch "+batch, err)
	}
	n := len(args)
	rows, err := d.pool.Query(ctx, "SELECT event_id, device_id, org_id, session_id, page_id, received_at, log_partition, log_offset, "+
		colEscaped+"->>'event_id', "+colEscaped+"->>'device_id' FROM "+d.ident("events")+
		fmt.Sprintf(" WHERE %s AND received_at >= $%d AND received_at < $%d ORDER BY log_partition, log_offset", where, n+1, n+2),
		append(args, hour, hour.Add(time.Hour))...)
	if err != nil {
		return nil, d.readErr("read "+f.Path, err)
	}
	out := make([]format.EventRow, 0, max(f.Rows, 0))
	var r format.EventRow
	var at time.Time
	var origID, origDevice *string
	_, err = pgx.ForEachRow(rows, []any{&r.EventID, &r.DeviceID, &r.OrgID, &r.SessionID, &r.PageID, &at, &r.LogPartition, &r.LogOffset,
		&origID, &origDevice}, func() error {
		var err error
		if r.EventID, err = original(r.EventID, origID); err != nil {
			return fmt.Errorf("event at log partition %d offset %d: event_id: %w", r.LogPartition, r.LogOffset, err)
		}
		if r.DeviceID, err = original(r.DeviceID, origDevice); err != nil {
			return fmt.Errorf("event at log partition %d offset %d: device_id: %w", r.LogPartition, r.LogOffset, err)
		}
		r.ReceivedAt = at.UnixMicro()
		out = append(out, r)
		r.PageID = nil // a new pointer for the next row
		return nil
	})
	if err != nil {
		return nil, d.readErr("read "+f.Path, err)
	}
	return out, nil
}

// original returns the value a row was given: stored, unless the
// _tidemark_escaped entry of its column (base64 of the original bytes)
// is there.
func original(stored string, escaped *string) (string, error) {
	if escaped == nil {
		return stored, nil
	}
	b, err := base64.StdEncoding.DecodeString(*escaped)
	if err != nil {
		return "", fmt.Errorf("_tidemark_escaped: %w", err)
	}
	return string(b), nil
}

// readErr wraps an error of the read-back: what it did, and where.
func (d *Postgres) readErr(what string, err error) error {
	return fmt.Errorf("%s from %s: %w", what, d, err)
}
