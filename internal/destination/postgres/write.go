package postgres

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/format"
)

// summary is what _tidemark_batches records of a batch besides its ids.
type summary struct {
	minOffset, maxOffset int64
	digest               string
}

func summarize(b *destination.Batch) (summary, error) {
	var s summary
	ids := make([]string, len(b.Events))
	for i := range b.Events {
		e := &b.Events[i]
		ids[i] = e.EventID
		if e.LogOffset < 0 {
			return s, fmt.Errorf("event %s: negative log offset %d", e.EventID, e.LogOffset)
		}
		// The read-back finds a batch's rows in its partition's offset range.
		if int(e.LogPartition) != b.Partition {
			return s, fmt.Errorf("event %s: log partition %d in a batch of partition %d", e.EventID, e.LogPartition, b.Partition)
		}
		if i == 0 || e.LogOffset < s.minOffset {
			s.minOffset = e.LogOffset
		}
		if i == 0 || e.LogOffset > s.maxOffset {
			s.maxOffset = e.LogOffset
		}
	}
	s.digest = destination.EventIDsDigest(ids)
	return s, nil
}

// Write loads the batch in one transaction: unless _tidemark_batches
// already records it, COPY its events, pages and sessions and record it;
// the COMMIT is the commit point. A batch already recorded (by an earlier
// attempt, or by another writer at the same moment) is success.
//
// When PostgreSQL refuses a value the up-front checks let through (a data
// exception naming its row and column), the value is escaped and the
// batch loaded again; a row it still refuses holds the batch: the error
// names the table, the row's id and PostgreSQL's reason, and
// tidemark_destination_rejected_rows says so. When a row's key is already
// in its table (a unique violation), the batch is loaded again through
// temporary tables, skipping the rows already there.
func (d *Postgres) Write(ctx context.Context, b *destination.Batch) error {
	if err := b.Check(); err != nil {
		return invalid(err)
	}
	sum, err := summarize(b)
	if err != nil {
		return invalid(fmt.Errorf("write batch %s: %w", b.ID, err))
	}
	var l load
	for attempt := 1; ; attempt++ {
		err = d.write(ctx, b, sum, &l)
		if err == nil {
			break
		}
		if isUnique(err, "_tidemark_batches_pkey") {
			return nil // another writer committed it first
		}
		var pe *pgconn.PgError
		if errors.As(err, &pe) && pe.Code == "23505" && !l.conflict {
			l.conflict = true
			continue
		}
		if r, ok := rejection(err); ok {
			if attempt < maxAttempts && l.learn(b, r) {
				continue
			}
			d.hold(b.ID, r.table)
			return fmt.Errorf("write batch %s to %s: the batch is held: PostgreSQL rejects row %d of %s (%s), column %s: %w",
				b.ID, d, r.row+1, tableNames[r.table], rowID(b, r), r.column, err)
		}
		return fmt.Errorf("write batch %s to %s: %w", b.ID, d, err)
	}
	d.hold(b.ID, -1)
	for t, n := range l.escaped {
		if n > 0 {
			d.m.escaped.WithLabelValues(d.labels(tableNames[t])...).Add(float64(n))
		}
	}
	for t, n := range l.skipped {
		if n > 0 {
			d.m.skipped.WithLabelValues(d.labels(tableNames[t])...).Add(float64(n))
		}
	}
	return nil
}

// hold records that batch id is held by a row of table t that PostgreSQL
// rejects (t < 0: not held, it was loaded), and sets
// tidemark_destination_rejected_rows to the number of batches so held.
func (d *Postgres) hold(id string, t int) {
	d.heldMu.Lock()
	defer d.heldMu.Unlock()
	old, was := d.held[id]
	switch {
	case t < 0 && !was:
		return // the clean path
	case t < 0:
		delete(d.held, id)
	default:
		if d.held == nil {
			d.held = map[string]int{}
		}
		d.held[id] = t
	}
	if !was {
		old = -1
	}
	for _, tt := range []int{old, t} {
		if tt < 0 {
			continue
		}
		n := 0
		for _, h := range d.held {
			if h == tt {
				n++
			}
		}
		d.m.rejected.WithLabelValues(d.labels(tableNames[tt])...).Set(float64(n))
	}
}

// maxAttempts bounds the loads of one batch by one Write.
const maxAttempts = 20

// The tables, by index.
const (
	tEvents = iota
	tPages
	tSessions
)

var tableNames = [3]string{format.Events, format.Pages, format.Sessions}

// load is what the attempts at loading one batch learned.
type load struct {
	fix      [3]map[cell]bool // values PostgreSQL refused, per table
	checked  [3]bool          // every JSON value of the table went through jsonLimitsOK
	conflict bool             // load through temporary tables, skipping rows already there
	// Of the last attempt, per table:
	escaped [3]int   // values escaped
	skipped [3]int64 // rows skipped (conflict)
}

func (d *Postgres) write(ctx context.Context, b *destination.Batch, sum summary, l *load) error {
	l.escaped, l.skipped = [3]int{}, [3]int64{}
	conn, err := d.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var one int
	err = tx.QueryRow(ctx, "SELECT 1 FROM "+d.ident("_tidemark_batches")+" WHERE batch_id = $1", b.ID).Scan(&one)
	if err == nil {
		return nil // already loaded
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return d.stmtErr("SELECT FROM _tidemark_batches", err)
	}
	if err := loadTable(ctx, d, tx, l, tEvents, b.ID, eventColumns, b.Events); err != nil {
		return err
	}
	if err := loadTable(ctx, d, tx, l, tPages, b.ID, pageColumns, b.Pages); err != nil {
		return err
	}
	if err := loadTable(ctx, d, tx, l, tSessions, b.ID, sessionColumns, b.Sessions); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "INSERT INTO "+d.ident("_tidemark_batches")+` (batch_id, org_id, log_partition, first_seq, last_seq, backfill,
	event_count, page_count, session_count, min_log_offset, max_log_offset, event_ids_sha256)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
		b.ID, b.Org, b.Partition, int64(b.FirstSeq), int64(b.LastSeq), b.Backfill,
		len(b.Events), len(b.Pages), len(b.Sessions), sum.minOffset, sum.maxOffset, sum.digest)
	if err != nil {
		return d.stmtErr("INSERT INTO _tidemark_batches", err)
	}
	return tx.Commit(ctx)
}

// loadTable loads rows into table t with one COPY, or, in conflict mode,
// COPYs them into a temporary table and inserts those whose key is not
// there yet.
func loadTable[T any](ctx context.Context, d *Postgres, tx pgx.Tx, l *load, t int, batch string, cols []column[T], rows []T) error {
	if len(rows) == 0 {
		return nil
	}
	name := tableNames[t]
	target := d.ident(name)
	if l.conflict {
		target = pgx.Identifier{"_tidemark_load_" + name}.Sanitize()
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE "+target+" (LIKE "+d.ident(name)+") ON COMMIT DROP"); err != nil {
			return d.stmtErr("CREATE TEMP TABLE "+target, err)
		}
	}
	src := newCopySource(batch, cols, rows, l.fix[t])
	if _, err := tx.Conn().PgConn().CopyFrom(ctx, src, copySQL(target, cols)); err != nil {
		return d.stmtErr("COPY "+name, err)
	}
	l.escaped[t] = src.w.escapes
	if !l.conflict {
		return nil
	}
	list := strings.Join(names(cols), ", ")
	tag, err := tx.Exec(ctx, "INSERT INTO "+d.ident(name)+" ("+list+") SELECT "+list+" FROM "+target+" ON CONFLICT DO NOTHING")
	if err != nil {
		return d.stmtErr("INSERT INTO "+name, err)
	}
	l.skipped[t] = int64(len(rows)) - tag.RowsAffected()
	return nil
}

// rejected is a value PostgreSQL refused: the table, row (0-based) and
// column its error names.
type rejected struct {
	table, row int
	column     string
}

// copyWhere is the context of an error in COPY FROM: the table, the row
// (line N counts rows from 1 in binary COPY) and the column.
var copyWhere = regexp.MustCompile(`^COPY (\w+), line (\d+), column (\w+)`)

// rejection returns the value a data exception (SQLSTATE class 22) or a
// limit (class 54: JSON nested beyond the parser's stack) of a COPY names.
func rejection(err error) (rejected, bool) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || !rowError(pe.Code) {
		return rejected{}, false
	}
	m := copyWhere.FindStringSubmatch(pe.Where)
	if m == nil {
		return rejected{}, false
	}
	t := slices.Index(tableNames[:], strings.TrimPrefix(m[1], "_tidemark_load_"))
	line, err := strconv.Atoi(m[2])
	if t < 0 || err != nil || line < 1 {
		return rejected{}, false
	}
	return rejected{table: t, row: line - 1, column: m[3]}, true
}

// rowError reports whether code is the SQLSTATE of a value PostgreSQL
// refuses: a data exception or a program limit.
func rowError(code string) bool {
	return strings.HasPrefix(code, "22") || strings.HasPrefix(code, "54")
}

// learn records what r says about b and reports whether the next attempt
// differs: the first time a value is refused, every JSON value of the
// table is checked against PostgreSQL's limits (jsonLimitsOK) at once;
// after that, each value refused is escaped in turn.
func (l *load) learn(b *destination.Batch, r rejected) bool {
	get, ok := eventJSON[r.column]
	if r.table != tEvents || r.row >= len(b.Events) || !ok {
		return false // only the JSON columns of events have a storable stand-in (NULL)
	}
	if l.fix[tEvents] == nil {
		l.fix[tEvents] = map[cell]bool{}
	}
	fix := l.fix[tEvents]
	changed := false
	mark := func(row int, column string) {
		c := cell{row, slices.Index(names(eventColumns), column)}
		if !fix[c] {
			fix[c], changed = true, true
		}
	}
	if !l.checked[tEvents] {
		l.checked[tEvents] = true
		for i := range b.Events {
			for column, get := range eventJSON {
				if v := get(&b.Events[i]); v != nil && !jsonLimitsOK(*v) {
					mark(i, column)
				}
			}
		}
	}
	if get(&b.Events[r.row]) != nil {
		mark(r.row, r.column)
	}
	return changed
}

// eventJSON are the JSON columns of events.
var eventJSON = map[string]func(*format.EventRow) *string{
	"properties": func(r *format.EventRow) *string { return r.Properties },
	"traits":     func(r *format.EventRow) *string { return r.Traits },
	"context":    func(r *format.EventRow) *string { return r.Context },
}

// rowID names the row r names: its id column and value.
func rowID(b *destination.Batch, r rejected) string {
	switch {
	case r.table == tEvents && r.row < len(b.Events):
		return fmt.Sprintf("event_id %q", b.Events[r.row].EventID)
	case r.table == tPages && r.row < len(b.Pages):
		return fmt.Sprintf("page_id %q", b.Pages[r.row].PageID)
	case r.table == tSessions && r.row < len(b.Sessions):
		return fmt.Sprintf("session_id %q", b.Sessions[r.row].SessionID)
	}
	return "unknown id"
}

// isUnique reports whether err is a unique violation of constraint.
func isUnique(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == constraint
}

// undefined reports whether err is PostgreSQL's "no such table" or "no
// such schema".
func undefined(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "42P01" || pe.Code == "3F000")
}

// Committed returns the last_seq of the newest pipeline (not backfill)
// batch of the partition recorded in _tidemark_batches (none before Probe
// created it).
func (d *Postgres) Committed(ctx context.Context, partition int) (uint64, bool, error) {
	var last *int64
	err := d.pool.QueryRow(ctx, "SELECT max(last_seq) FROM "+d.ident("_tidemark_batches")+
		" WHERE log_partition = $1 AND NOT backfill", partition).Scan(&last)
	if undefined(err) {
		return 0, false, nil // not created yet (Probe creates it): nothing committed
	}
	if err != nil {
		return 0, false, fmt.Errorf("destination %s: committed batches of partition %d: %w", d, partition, d.stmtErr("SELECT FROM _tidemark_batches", err))
	}
	if last == nil {
		return 0, false, nil
	}
	return uint64(*last), true, nil
}

// Cleanup does nothing: a batch is loaded in one transaction, so a crash
// leaves nothing to clean up.
func (d *Postgres) Cleanup(ctx context.Context, partition int, after uint64) error { return nil }

// LastLogOffset returns the largest log offset of an event in the
// partition's committed batches (0 when none has events), for the start-up
// check.
func (d *Postgres) LastLogOffset(ctx context.Context, partition int) (uint64, error) {
	var last *int64
	err := d.pool.QueryRow(ctx, "SELECT max(max_log_offset) FROM "+d.ident("_tidemark_batches")+
		" WHERE log_partition = $1 AND event_count > 0", partition).Scan(&last)
	if undefined(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("destination %s: last log offset of partition %d: %w", d, partition, d.stmtErr("SELECT FROM _tidemark_batches", err))
	}
	if last == nil {
		return 0, nil
	}
	return uint64(*last), nil
}

// EventIDs returns the event id of every row of the partition in the events
// table (destinationtest.EventIDReader): read from the table itself, one
// entry per row.
func (d *Postgres) EventIDs(ctx context.Context, partition int) ([]string, error) {
	rows, err := d.pool.Query(ctx, "SELECT event_id FROM "+d.ident(format.Events)+" WHERE log_partition = $1", partition)
	if err != nil {
		return nil, fmt.Errorf("destination %s: event ids of partition %d: %w", d, partition, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("destination %s: event ids of partition %d: %w", d, partition, err)
	}
	return ids, nil
}
