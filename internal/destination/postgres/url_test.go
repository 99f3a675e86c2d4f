package postgres

import (
	"strings"
	"testing"

	"github.com/tidemark/tidemark/internal/destination"
)

func TestParseLocation(t *testing.T) {
	for in, want := range map[string]destination.Location{
		"postgres://u@DB.example.com/analytics":                        {Service: "postgres://db.example.com:5432/analytics", Bucket: "tidemark"},
		"postgresql://u@db.example.com:5433/analytics?schema=acme_1":   {Service: "postgres://db.example.com:5433/analytics", Bucket: "acme_1"},
		"postgres:///analytics?host=db.example.com&port=6000&schema=x": {Service: "postgres://db.example.com:6000/analytics", Bucket: "x"},
	} {
		got, err := ParseLocation(in)
		if err != nil || got.Service != want.Service || got.Bucket != want.Bucket {
			t.Errorf("ParseLocation(%s) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for in, want := range map[string]string{
		"postgres://u:hunter2@db/x":                           "a password does not belong in the URL",
		"postgres://u@db/x?password=hunter2":                  "a password does not belong in the URL",
		"postgres://u@db/x?schema=Acme":                       "not a plain identifier",
		"postgres://u@db/x?schema=1acme":                      "not a plain identifier",
		"postgres://u@db/x?schema=a&schema=b":                 "not a plain identifier",
		"postgres://u@db/x?schema=" + strings.Repeat("a", 64): "not a plain identifier",
	} {
		_, err := ParseLocation(in)
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("ParseLocation(%s): %v; want an error saying %q, without the password", in, err, want)
		}
	}
}

func TestRedact(t *testing.T) {
	got := Redact("postgres://u:hunter2@db:5432/x?sslmode=require&schema=a&password=hunter2&options=-c%20x")
	if strings.Contains(got, "hunter2") || !strings.Contains(got, "sslmode=require") || !strings.Contains(got, "schema=a") {
		t.Errorf("Redact = %s", got)
	}
}

// password_env names the variable that holds the password; Open fails,
// naming the variable and never a value, when it is unset or empty.
func TestPasswordEnv(t *testing.T) {
	t.Setenv("TIDEMARK_TEST_PG_PASSWORD", "s3cret-value")
	d, err := Open(t.Context(), "postgres://u@127.0.0.1:1/x?schema=a", destination.Options{PasswordEnv: "TIDEMARK_TEST_PG_PASSWORD"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if got := d.pool.Config().ConnConfig.Password; got != "s3cret-value" {
		t.Errorf("password %q, want the variable's", got)
	}
	if strings.Contains(d.String(), "s3cret") {
		t.Errorf("String() = %s", d)
	}
	t.Setenv("TIDEMARK_TEST_PG_PASSWORD", "")
	_, err = Open(t.Context(), "postgres://u@127.0.0.1:1/x", destination.Options{PasswordEnv: "TIDEMARK_TEST_PG_PASSWORD"})
	if err == nil || !strings.Contains(err.Error(), "TIDEMARK_TEST_PG_PASSWORD") || !permanent(err) {
		t.Errorf("Open with an empty password_env: %v; want a permanent error naming the variable", err)
	}
	// Unreachable: the error names the place and is not permanent.
	d, err = Open(t.Context(), "postgres://u@127.0.0.1:1/x?connect_timeout=5&schema=a", destination.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	err = d.Probe(t.Context())
	if err == nil || d.Permanent(err) || !strings.Contains(err.Error(), "postgres://127.0.0.1:1/x schema a") {
		t.Errorf("Probe of a closed port: %v; want a transient error naming postgres://127.0.0.1:1/x schema a", err)
	}
}
