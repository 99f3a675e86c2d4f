package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestStartPostgres: a private server answers, refuses connections while
// stopped, and comes back on the same port with what was committed.
func TestStartPostgres(t *testing.T) {
	p := StartPostgres(t)
	PostgresExec(t, p.URL("postgres"), "CREATE TABLE kept (n int)", "INSERT INTO kept VALUES (42)")
	p.Stop()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if conn, err := pgx.Connect(ctx, p.URL("postgres")); err == nil {
		conn.Close(ctx)
		t.Fatal("connected to a stopped server")
	}
	p.Start()
	var n int
	if err := PostgresConn(t, p.URL("postgres")).QueryRow(t.Context(), "SELECT n FROM kept").Scan(&n); err != nil || n != 42 {
		t.Fatalf("after a restart: n=%d, %v", n, err)
	}
}
