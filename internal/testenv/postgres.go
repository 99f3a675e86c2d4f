package testenv

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PostgresDB creates a database of its own for t on the script's
// PostgreSQL server (PostgresURL), named after the test and a random
// suffix, and drops it when t ends (after the test's own cleanups, which
// close their connections). It returns the superuser URL of the new
// database and its name.
func PostgresDB(t testing.TB) (dbURL, name string) {
	t.Helper()
	base := PostgresURL(t)
	name = strings.ReplaceAll(BucketName(t), "-", "_")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("testenv: connect to %s: %v", EnvPostgresURL, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("testenv: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		// WITH (FORCE): a server the test killed may have left sessions.
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("testenv: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("testenv: %s: %v", EnvPostgresURL, err)
	}
	u.Path = "/" + name
	return u.String(), name
}

// PostgresConn connects to rawURL for the length of t.
func PostgresConn(t testing.TB, rawURL string) *pgx.Conn {
	t.Helper()
	conn := pgConnect(t, rawURL)
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// PostgresExec runs SQL statements on rawURL, failing t on the first error.
func PostgresExec(t testing.TB, rawURL string, stmts ...string) {
	t.Helper()
	conn := pgConnect(t, rawURL)
	defer conn.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			t.Fatalf("testenv: %s: %v", firstLine(s), err)
		}
	}
}

func pgConnect(t testing.TB, rawURL string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, rawURL)
	if err != nil {
		t.Fatalf("testenv: connect to PostgreSQL: %v", err)
	}
	return conn
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return fmt.Sprintf("%s ...", s[:i])
	}
	return s
}
