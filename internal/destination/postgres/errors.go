package postgres

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tidemark/tidemark/internal/destination"
)

// invalidError marks an error that retrying soon will not fix: a bad URL
// or setting, a malformed batch, a schema newer than this tidemark.
type invalidError struct{ err error }

func (e *invalidError) Error() string { return e.err.Error() }
func (e *invalidError) Unwrap() error { return e.err }

func invalid(err error) error { return &invalidError{err} }

// Permanent reports whether err is one that retrying soon will not fix
// (destination.Classifier): a missing privilege (SQLSTATE 42501), database
// (3D000) or schema (3F000), failed authentication (class 28), a row
// PostgreSQL rejects (class 22, or 54: a value beyond a limit), a place claimed by another destination, an
// invalid configuration. The transport still retries them, slowly, since
// someone may fix them. Connection failures, shutdowns (57P01) and the
// like are transient.
func (d *Postgres) Permanent(err error) bool { return permanent(err) }

func permanent(err error) bool {
	if err == nil {
		return false
	}
	var ie *invalidError
	if errors.As(err, &ie) || errors.Is(err, destination.ErrClaimed) {
		return true
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return false
	}
	switch {
	case pe.Code == "42501", pe.Code == "3D000", pe.Code == "3F000",
		strings.HasPrefix(pe.Code, "28"), rowError(pe.Code):
		return true
	}
	return false
}

// stmtErr wraps the error of stmt. A missing privilege (42501) becomes an
// error naming the statement (its first line) and what to grant.
func (d *Postgres) stmtErr(stmt string, err error) error {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "42501" {
		return fmt.Errorf("%s: %w", firstLine(stmt), err)
	}
	return fmt.Errorf("%s: permission denied (%w): %s", firstLine(stmt), err, d.grantFor(stmt, pe.Message))
}

// grantFor says what gives the role the privilege stmt lacked.
func (d *Postgres) grantFor(stmt, msg string) string {
	s, u := d.schema, d.user
	if u == "" {
		u = "ROLE"
	}
	switch {
	case strings.HasPrefix(stmt, "CREATE SCHEMA"):
		return fmt.Sprintf("GRANT CREATE ON DATABASE %s TO %s, or create the schema for it: CREATE SCHEMA %s AUTHORIZATION %s", d.db, u, s, u)
	case strings.Contains(msg, "must be owner"):
		return fmt.Sprintf("tidemark upgrades its tables as their owner: ALTER TABLE ... OWNER TO %s for the tables of schema %s, "+
			"or start this tidemark once as their owner", u, s)
	case strings.Contains(msg, "for schema"):
		if strings.HasPrefix(stmt, "CREATE") {
			return fmt.Sprintf("GRANT USAGE, CREATE ON SCHEMA %s TO %s (or create the tables as the schema's owner first)", s, u)
		}
		return fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", s, u)
	}
	return fmt.Sprintf("GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA %s TO %s", s, u)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
