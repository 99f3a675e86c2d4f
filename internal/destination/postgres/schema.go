package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tidemark/tidemark/internal/destination"
)

// migration is one numbered step of the schema. Migrations add tables,
// columns (ALTER TABLE ... ADD COLUMN IF NOT EXISTS) and indexes, and may
// drop an index that an earlier migration created (tidemark's own); they
// never drop or rewrite anything else, so that a user's own columns, views,
// indexes and grants survive every upgrade. A released migration is never
// edited: a change is a new one.
type migration struct {
	version int
	stmts   func(s string) []string // s: the quoted schema
}

// migrations are applied in order, each once; _tidemark_meta's
// schema_version is the last one applied.
var migrations = []migration{
	{1, func(s string) []string {
		return []string{
			"CREATE TABLE IF NOT EXISTS " + s + ".events (" + columnDefs(eventColumns) + ",\n\tPRIMARY KEY (log_partition, log_offset)\n)",
			"CREATE INDEX IF NOT EXISTS events_session_id ON " + s + ".events (session_id)",
			"CREATE INDEX IF NOT EXISTS events_received_at ON " + s + ".events (received_at)",
			"CREATE INDEX IF NOT EXISTS events_tidemark_batch ON " + s + ".events (" + colBatch + ")",
			"CREATE TABLE IF NOT EXISTS " + s + ".pages (" + columnDefs(pageColumns) + ",\n\tPRIMARY KEY (page_id)\n)",
			"CREATE INDEX IF NOT EXISTS pages_session_id ON " + s + ".pages (session_id)",
			"CREATE INDEX IF NOT EXISTS pages_tidemark_batch ON " + s + ".pages (" + colBatch + ")",
			"CREATE TABLE IF NOT EXISTS " + s + ".sessions (" + columnDefs(sessionColumns) + ",\n\tPRIMARY KEY (session_id)\n)",
			"CREATE INDEX IF NOT EXISTS sessions_started_at ON " + s + ".sessions (started_at)",
			"CREATE INDEX IF NOT EXISTS sessions_tidemark_batch ON " + s + ".sessions (" + colBatch + ")",
			`CREATE TABLE IF NOT EXISTS ` + s + `._tidemark_batches (
	batch_id text PRIMARY KEY,
	org_id text NOT NULL,
	log_partition integer NOT NULL,
	first_seq bigint NOT NULL,
	last_seq bigint NOT NULL,
	backfill boolean NOT NULL,
	event_count bigint NOT NULL,
	page_count bigint NOT NULL,
	session_count bigint NOT NULL,
	min_log_offset bigint NOT NULL,
	max_log_offset bigint NOT NULL,
	event_ids_sha256 text NOT NULL,
	committed_at timestamptz NOT NULL DEFAULT now()
)`,
			"CREATE INDEX IF NOT EXISTS _tidemark_batches_partition ON " + s + "._tidemark_batches (log_partition, last_seq)",
		}
	}},
	// Version 2: cheaper loading (PostgreSQL's CPU per event row 11-14 ->
	// 10-12 us, BENCHMARKS.md). The rows of a batch are found through the
	// primary key (its partition and offset range in _tidemark_batches), so
	// the _tidemark_batch indexes go; an hour of events through a BRIN
	// index, a few pages per GiB that inserts barely touch, as rows arrive
	// roughly in received_at order (a backfill of old hours widens only the
	// ranges it lands in).
	{2, func(s string) []string {
		return []string{
			"DROP INDEX IF EXISTS " + s + ".events_tidemark_batch",
			"DROP INDEX IF EXISTS " + s + ".pages_tidemark_batch",
			"DROP INDEX IF EXISTS " + s + ".sessions_tidemark_batch",
			"DROP INDEX IF EXISTS " + s + ".events_received_at",
			"CREATE INDEX IF NOT EXISTS events_received_at_brin ON " + s + ".events USING brin (received_at) WITH (autosummarize = on)",
		}
	}},
}

// SchemaVersion is the schema version this tidemark creates and upgrades to.
func SchemaVersion() int { return migrations[len(migrations)-1].version }

// Keys of _tidemark_meta.
const (
	metaVersion = "schema_version"
	metaOwner   = "owner"
)

// Probe connects, claims the schema for the owner (SetOwner) and creates or
// upgrades the schema and its tables (transport.Prober). A role that may not
// create them is told which statement failed and what to grant; a role
// without CREATE starts when everything already exists.
func (d *Postgres) Probe(ctx context.Context) error {
	if err := d.probe(ctx); err != nil {
		return fmt.Errorf("destination %s: %w", d, err)
	}
	return nil
}

// ProbeBound bounds one probe (transport.ProbeBounder) by upgradeTimeout:
// an upgrade that builds an index on a large table takes minutes. The
// probe's other steps are bounded by stepTimeout, so an unreachable or
// silent server is still reported within it.
func (d *Postgres) ProbeBound() time.Duration { return upgradeTimeout }

const (
	// stepTimeout bounds connecting, and the checks and claim of a probe
	// (each group of them).
	stepTimeout = 30 * time.Second
	// upgradeTimeout bounds a whole probe: waiting for another tidemark's
	// upgrade of the schema, then this one's.
	upgradeTimeout = 2 * time.Hour
)

func (d *Postgres) probe(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	conn, err := d.pool.Acquire(qctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.Release()
	tx, err := conn.Begin(qctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	s := pgx.Identifier{d.schema}.Sanitize()
	// One probe of a schema at a time: two tidemarks starting at once
	// must not both create it (CREATE ... IF NOT EXISTS races). The lock
	// waits for another one's upgrade: not a quick step.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext($1))", "tidemark schema "+d.schema); err != nil {
		return err
	}
	qctx, cancel = context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	var hasSchema, hasMeta bool
	err = tx.QueryRow(qctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1),
		to_regclass($2) IS NOT NULL`, d.schema, s+"._tidemark_meta").Scan(&hasSchema, &hasMeta)
	if err != nil {
		return err
	}
	if !hasSchema {
		if err := d.exec(qctx, tx, "CREATE SCHEMA IF NOT EXISTS "+s); err != nil {
			return err
		}
	}
	if !hasMeta {
		if err := d.exec(qctx, tx, "CREATE TABLE IF NOT EXISTS "+s+"._tidemark_meta (\n\tkey text PRIMARY KEY,\n\tvalue text NOT NULL\n)"); err != nil {
			return err
		}
	}
	if d.owner != nil {
		if err := d.claim(qctx, tx); err != nil {
			return err
		}
	}
	version, err := d.version(qctx, tx)
	if err != nil {
		return err
	}
	if version > SchemaVersion() {
		return invalid(fmt.Errorf("schema version %d is newer than this tidemark knows (%d): a newer tidemark upgraded it; run that version", version, SchemaVersion()))
	}
	for _, m := range migrations {
		if m.version <= version {
			continue
		}
		for _, stmt := range m.stmts(s) {
			if err := d.exec(ctx, tx, stmt); err != nil {
				return fmt.Errorf("upgrade the schema to version %d: %w", m.version, err)
			}
		}
		if err := d.exec(ctx, tx, "INSERT INTO "+s+"._tidemark_meta (key, value) VALUES ('"+metaVersion+"', $1) "+
			"ON CONFLICT (key) DO UPDATE SET value = excluded.value", strconv.Itoa(m.version)); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

// exec runs one statement of the probe; a missing privilege is an error
// that names the statement and the GRANT that fixes it.
func (d *Postgres) exec(ctx context.Context, tx pgx.Tx, stmt string, args ...any) error {
	if _, err := tx.Exec(ctx, stmt, args...); err != nil {
		return d.stmtErr(stmt, err)
	}
	return nil
}

// version reads schema_version (0: none yet).
func (d *Postgres) version(ctx context.Context, tx pgx.Tx) (int, error) {
	var v string
	err := tx.QueryRow(ctx, "SELECT value FROM "+d.ident("_tidemark_meta")+" WHERE key = $1", metaVersion).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, d.stmtErr("SELECT value FROM _tidemark_meta", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, invalid(fmt.Errorf("_tidemark_meta: schema_version %q is not a version", v))
	}
	return n, nil
}

// SetOwner makes Probe claim the schema for o, and Owned check it
// (destination.Claimer). Without it, neither checks.
func (d *Postgres) SetOwner(o destination.Owner) { d.owner = &o }

// claim records d's owner in _tidemark_meta unless one is there, and fails
// with destination.ErrClaimed when the one there is another's.
func (d *Postgres) claim(ctx context.Context, tx pgx.Tx) error {
	data, err := json.Marshal(d.owner)
	if err != nil {
		return err
	}
	if err := d.exec(ctx, tx, "INSERT INTO "+d.ident("_tidemark_meta")+" (key, value) VALUES ('"+metaOwner+"', $1) ON CONFLICT (key) DO NOTHING", string(data)); err != nil {
		return err
	}
	o, _, err := d.readOwner(ctx, tx)
	if err != nil {
		return err
	}
	return d.mine(o)
}

// Owned checks, without writing, that the schema is not another owner's
// (destination.Claimer): the owner in _tidemark_meta, if any, is the one
// given to SetOwner (an empty ID there matches any). Without an owner set
// it checks nothing.
func (d *Postgres) Owned(ctx context.Context) error {
	if d.owner == nil {
		return nil
	}
	var exists bool
	if err := d.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", d.ident("_tidemark_meta")).Scan(&exists); err != nil {
		return fmt.Errorf("destination %s: %w", d, err)
	}
	if !exists {
		return nil
	}
	o, found, err := d.readOwner(ctx, d.pool)
	if err == nil && found {
		err = d.mine(o)
	}
	if err != nil {
		return fmt.Errorf("destination %s: %w", d, err)
	}
	return nil
}

type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (d *Postgres) readOwner(ctx context.Context, q querier) (o destination.Owner, found bool, err error) {
	var v string
	err = q.QueryRow(ctx, "SELECT value FROM "+d.ident("_tidemark_meta")+" WHERE key = $1", metaOwner).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, false, nil
	}
	if err != nil {
		return o, false, fmt.Errorf("read the owner: %w", d.stmtErr("SELECT value FROM _tidemark_meta", err))
	}
	if json.Unmarshal([]byte(v), &o) != nil || o.Org == "" || o.Destination == "" {
		return o, true, claimed("_tidemark_meta's owner is not a tidemark destination's; this schema may belong to another")
	}
	return o, true, nil
}

// mine returns nil if o is d's owner, else an ErrClaimed error.
func (d *Postgres) mine(o destination.Owner) error {
	me := *d.owner
	switch {
	case o.Org == me.Org && o.Destination == me.Destination && (o.ID == me.ID || me.ID == ""):
		return nil
	case o.Org == me.Org && o.Destination == me.Destination:
		return claimed("the schema is claimed by %s of another tidemark (another data directory: _tidemark_meta has owner id %s, "+
			"this data directory %s); two deployments loading one schema would take each other's batches for their own: "+
			"give this destination a schema of its own (or restore the data directory that loaded it)", o, o.ID, me.ID)
	}
	return claimed("the schema is claimed by %s (_tidemark_meta); give each destination a schema of its own", o)
}

func claimed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{destination.ErrClaimed}, args...)...)
}
