package postgres

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tidemark/tidemark/internal/destination"
	"github.com/tidemark/tidemark/internal/redact"
)

// DefaultSchema is the schema of a URL without schema=.
const DefaultSchema = "tidemark"

// schemaName is what schema= accepts: a plain, unquoted identifier, so that
// it means the same in every statement and in a user's own SQL.
var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Postgres is the destination that loads batches into PostgreSQL tables:
// see the package documentation. Its methods may be called concurrently.
type Postgres struct {
	pool   *pgxpool.Pool
	schema string // the schema's name, a plain identifier (schemaName)
	name   string // postgres://HOST:PORT/DB, for messages
	db     string // the database's name
	user   string // the role tidemark connects as, for GRANT advice
	owner  *destination.Owner
	m      *metrics
	heldMu sync.Mutex
	held   map[string]int // batches held by a rejected row: their table (see hold)
}

var _ destination.Destination = (*Postgres)(nil)

// parsed is a destination URL taken apart.
type parsed struct {
	conn   string // the URL without schema=, for pgx
	schema string
	host   string // lower case
	port   string
	db     string
	user   string
}

// parseURL checks rawURL and takes it apart. Its errors never quote the URL
// unredacted.
func parseURL(rawURL string) (parsed, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return parsed{}, fmt.Errorf("destination URL %s: malformed URL", Redact(rawURL))
	}
	fail := func(format string, args ...any) (parsed, error) {
		return parsed{}, fmt.Errorf("destination URL %s: "+format, append([]any{Redact(rawURL)}, args...)...)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return fail("not a postgres:// URL")
	}
	if u.Opaque != "" || u.Fragment != "" {
		return fail("want postgres://USER@HOST:PORT/DB?sslmode=...&schema=NAME")
	}
	q := u.Query()
	if _, ok := u.User.Password(); ok || q.Has("password") {
		return fail("a password does not belong in the URL: set PGPASSWORD, use a password file (PGPASSFILE, ~/.pgpass) " +
			"or a service file (PGSERVICEFILE), or name an environment variable that holds it with the destination's password_env")
	}
	p := parsed{schema: DefaultSchema, host: strings.ToLower(u.Hostname()), port: u.Port(), db: strings.TrimPrefix(u.Path, "/")}
	if u.User != nil {
		p.user = u.User.Username()
	}
	if q.Has("schema") {
		p.schema = q.Get("schema")
		if len(q["schema"]) > 1 || !schemaName.MatchString(p.schema) {
			return fail("schema %q is not a plain identifier: want a lower-case letter or _, then lower-case letters, digits or _ (at most 63)", p.schema)
		}
		q.Del("schema")
	}
	if p.host == "" {
		p.host = strings.ToLower(q.Get("host"))
	}
	if p.host == "" {
		p.host = "localhost"
	}
	if p.port == "" {
		p.port = q.Get("port")
	}
	if p.port == "" {
		p.port = "5432"
	}
	if p.db == "" {
		p.db = q.Get("dbname")
	}
	if p.user == "" {
		p.user = q.Get("user")
	}
	u.RawQuery = q.Encode()
	p.conn = u.String()
	return p, nil
}

// ParseLocation returns where rawURL loads (destination.Location): Service
// postgres://HOST:PORT/DB, Bucket the schema. Two destinations on one schema
// of one database overlap.
func ParseLocation(rawURL string) (destination.Location, error) {
	p, err := parseURL(rawURL)
	if err != nil {
		return destination.Location{}, err
	}
	return destination.Location{Service: p.name(), Bucket: p.schema}, nil
}

func (p parsed) name() string { return "postgres://" + net.JoinHostPort(p.host, p.port) + "/" + p.db }

// safeParams are the URL parameters Redact keeps: none of them holds a
// secret.
var safeParams = []string{"sslmode", "schema", "host", "port", "dbname", "user", "connect_timeout", "application_name",
	"target_session_attrs", "sslrootcert", "sslcert", "search_path", "service"}

// Redact returns rawURL fit for messages: no user info, and only the values
// of the parameters known to be harmless.
func Redact(rawURL string) string { return redact.URL(rawURL, safeParams) }

// Open returns the destination rawURL names. It builds the connection pool
// but does not connect: Probe does. o.PasswordEnv, when not empty, names
// the environment variable that holds the password (else pgx's libpq
// handling finds it: PGPASSWORD, PGPASSFILE, PGSERVICEFILE); the
// destination's own metrics are registered on o.Registerer.
func Open(ctx context.Context, rawURL string, o destination.Options) (*Postgres, error) {
	p, err := parseURL(rawURL)
	if err != nil {
		return nil, invalid(err)
	}
	cfg, err := pgxpool.ParseConfig(p.conn)
	if err != nil {
		// pgconn's message quotes the connection string: leave it out.
		msg := quoted.ReplaceAllString(err.Error(), "")
		return nil, invalid(fmt.Errorf("destination %s: invalid connection settings: %s", p.name(), msg))
	}
	if o.PasswordEnv != "" {
		pw := os.Getenv(o.PasswordEnv)
		if pw == "" {
			return nil, invalid(fmt.Errorf("destination %s: password_env: environment variable %s is not set or empty", p.name(), o.PasswordEnv))
		}
		cfg.ConnConfig.Password = pw
	}
	if p.user == "" {
		p.user = cfg.ConnConfig.User
	}
	if p.db == "" {
		p.db = cfg.ConnConfig.Database
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, invalid(fmt.Errorf("destination %s: %s", p.name(), quoted.ReplaceAllString(err.Error(), "")))
	}
	return &Postgres{pool: pool, schema: p.schema, name: p.name(), db: p.db, user: p.user, m: m}, nil
}

// quoted is how pgconn's ParseConfigError quotes a connection string.
var quoted = regexp.MustCompile("cannot parse `[^`]*`: ")

// String names the destination: postgres://HOST:PORT/DB schema S.
func (d *Postgres) String() string { return d.name + " schema " + d.schema }

// Close closes the connections.
func (d *Postgres) Close() error {
	d.pool.Close()
	return nil
}

// dbSchema returns the pool and the schema: the read-back (readback.go) runs its
// queries through them. The schema is a plain identifier (safe in SQL
// text); ident quotes a table of it.
func (d *Postgres) dbSchema() (*pgxpool.Pool, string) { return d.pool, d.schema }

// ident returns the quoted, schema-qualified name of table.
func (d *Postgres) ident(table string) string { return pgx.Identifier{d.schema, table}.Sanitize() }
