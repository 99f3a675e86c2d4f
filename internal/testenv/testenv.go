// Package testenv gives tests access to the real components that
// ./scripts/test.sh installs and starts: the Node.js harness in testenv/node
// (the real Segment SDK as a client, an independent Parquet reader) and test
// servers on 127.0.0.1: PostgreSQL, object storage emulators for S3
// (versitygw), GCS (fake-gcs-server) and Azure Blob (Azurite), and a
// Kafka-protocol cluster (kfakeserver; KafkaBrokers).
//
// For object storage, S3, GCS and Azure each create a fresh bucket per call
// with the cloud's own SDK (gocloud never creates buckets) and return its
// gocloud URL, setting the credentials the URL needs in the process
// environment (t.Setenv: such tests cannot be parallel). S3Env, GCSEnv and
// AzureEnv give the same environment for a child process; S3URL, GCSURL and
// AzureURL name other prefixes or buckets that need not exist; Objects reads
// back everything under a URL's prefix with the native SDK.
//
// The script exports one environment variable per component. A test that
// needs a component calls its accessor, which fails the test (never skips it)
// when the component is missing, naming the command to run. Run tests with
//
//	./scripts/test.sh [go test flags] [packages]
//
// rather than a bare `go test` when they use this package.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/retry"
)

// Environment variables exported by ./scripts/test.sh.
const (
	// EnvNodeDir is the absolute path of testenv/node, with node_modules installed.
	EnvNodeDir = "TIDEMARK_TEST_NODE_DIR"
	// EnvPostgresURL is a superuser URL of a throwaway PostgreSQL server on
	// 127.0.0.1 (trust auth, fsync off), e.g.
	// postgres://postgres@127.0.0.1:PORT/postgres?sslmode=disable.
	EnvPostgresURL = "TIDEMARK_TEST_POSTGRES_URL"
)

// NodeTimeout bounds every RunNode call (on top of the test's own deadline).
const NodeTimeout = 5 * time.Minute

// missing fails t because a component the script provides is not there.
func missing(t testing.TB, what string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("testenv: %s. In CI the tests must run through ./scripts/test.sh (bash .ci/run calls it), which installs and exports it", what)
	}
	t.Fatalf("testenv: %s. Run the tests with ./scripts/test.sh (e.g. ./scripts/test.sh -run 'TestX' ./internal/pkg/...): it installs what is missing and exports the TIDEMARK_TEST_* variables", what)
}

// NodeDir returns the absolute path of testenv/node (from
// TIDEMARK_TEST_NODE_DIR) after checking that node is on PATH and the
// harness's packages are installed. It fails the test otherwise.
func NodeDir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv(EnvNodeDir)
	if dir == "" {
		missing(t, EnvNodeDir+" is not set")
	}
	if !filepath.IsAbs(dir) {
		missing(t, fmt.Sprintf("%s=%q is not an absolute path", EnvNodeDir, dir))
	}
	for _, p := range []string{"@segment/analytics-node", "@segment/analytics-next", "@rudderstack/rudder-sdk-node",
		"playwright-core", "hyparquet", "hyparquet-compressors"} {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", p, "package.json")); err != nil {
			missing(t, fmt.Sprintf("%s/node_modules lacks %s (%v)", dir, p, err))
		}
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing(t, "node is not on PATH")
	}
	return dir
}

// RunNode runs `node SCRIPT ARGS...` in NodeDir (a relative SCRIPT is taken
// relative to it) and returns its stdout. The process is killed when the test
// ends or after NodeTimeout. A non-zero exit fails the test with stderr;
// stderr of a successful run is logged.
func RunNode(t testing.TB, script string, args ...string) []byte {
	t.Helper()
	stdout, stderr, err := RunNodeErr(t, script, args...)
	if err != nil {
		t.Fatalf("testenv: node %s %s: %v\nstderr:\n%s", script, strings.Join(args, " "), err, stderr)
	}
	if len(stderr) > 0 {
		t.Logf("node %s stderr:\n%s", script, stderr)
	}
	return stdout
}

// RunNodeErr is RunNode for tests that expect a script to fail: it returns
// stdout, stderr and the error (an *exec.ExitError for a non-zero exit)
// instead of failing the test. Only a missing harness fails the test.
func RunNodeErr(t testing.TB, script string, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	dir := NodeDir(t)
	if !filepath.IsAbs(script) {
		script = filepath.Join(dir, script)
	}
	ctx, cancel := context.WithTimeout(t.Context(), NodeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	var outBuf, errBuf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outBuf, &errBuf
	err = cmd.Run()
	if err != nil && ctx.Err() != nil {
		err = fmt.Errorf("%w (context: %v)", err, ctx.Err())
	}
	return outBuf.Bytes(), errBuf.Bytes(), err
}

// ParquetRow is one row read by testenv/node/readparquet.mjs.
type ParquetRow struct {
	File string         // path relative to the directory read, "/"-separated
	Row  map[string]any // column name -> value, see ReadParquetDir
}

// ReadParquetDir reads every *.parquet file under dir (recursively, skipping
// _manifests and names starting with "." or "_") with the independent
// JavaScript reader (hyparquet) and returns all rows, files in sorted path
// order and rows in file order. Values:
//   - integers (INT32, INT64, UINT64) are int64 (uint64 above MaxInt64), exact;
//   - other numbers are float64. A float column's integral value such as 3.0
//     arrives as int64(3): compare numbers with AsFloat64 when unsure;
//   - timestamps are ISO-8601 UTC strings at the column's precision
//     ("2026-01-02T03:04:05.123456Z" for MICROS): use time.Parse(time.RFC3339Nano, s);
//   - DATE is "YYYY-MM-DD"; strings and UTF-8 byte arrays are strings; other
//     binary is base64; lists are []any; maps and structs map[string]any; null is nil.
func ReadParquetDir(t testing.TB, dir string) []map[string]any {
	t.Helper()
	rows := ReadParquetDirFiles(t, dir)
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		out[i] = r.Row
	}
	return out
}

// ReadParquetDirFiles is ReadParquetDir with the file of each row.
func ReadParquetDirFiles(t testing.TB, dir string) []ParquetRow {
	t.Helper()
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	out := RunNode(t, "readparquet.mjs", abs)
	rows, err := decodeParquetLines(out)
	if err != nil {
		t.Fatalf("testenv: decoding readparquet.mjs output for %s: %v", dir, err)
	}
	return rows
}

func decodeParquetLines(data []byte) ([]ParquetRow, error) {
	var rows []ParquetRow
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	for {
		var line struct {
			File string         `json:"file"`
			Row  map[string]any `json:"row"`
		}
		if err := dec.Decode(&line); err == io.EOF {
			return rows, nil
		} else if err != nil {
			return nil, err
		}
		rows = append(rows, ParquetRow{File: line.File, Row: convertNumbers(line.Row).(map[string]any)})
	}
}

// convertNumbers replaces json.Number by int64, uint64 or float64.
func convertNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		s := string(x)
		if !strings.ContainsAny(s, ".eE") {
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i
			}
			if u, err := strconv.ParseUint(s, 10, 64); err == nil {
				return u
			}
		}
		f, _ := x.Float64()
		return f
	case map[string]any:
		for k, e := range x {
			x[k] = convertNumbers(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = convertNumbers(e)
		}
		return x
	default:
		return v
	}
}

// AsFloat64 converts a number decoded by ReadParquetDir (int64, uint64 or
// float64) to float64; ok is false for other types.
func AsFloat64(v any) (f float64, ok bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// SendOptions configures SendSegment (testenv/node/send.mjs).
type SendOptions struct {
	Host            string // collector base URL, e.g. "http://127.0.0.1:8080"
	WriteKey        string
	Devices         int
	EventsPerDevice int
	Prefix          string // messageId/anonymousId prefix; "" = send.mjs default "m"
	FlushAt         int    // events per HTTP batch; 0 = send.mjs default (20)
	MaxRetries      int    // SDK retries per batch; 0 = send.mjs default (3)
}

// SendResult is what send.mjs reports after every call was delivered (2xx).
type SendResult struct {
	Sent     []string       `json:"sent"` // messageIds "PREFIX-DEVICE-I", in call order
	Count    int            `json:"count"`
	Types    map[string]int `json:"types"`    // "page", "identify", "track"
	Requests int            `json:"requests"` // HTTP requests made, retries included
}

// args renders o as send.mjs arguments.
func (o SendOptions) args() []string {
	a := []string{
		"--host", o.Host, "--write-key", o.WriteKey,
		"--devices", strconv.Itoa(o.Devices), "--events-per-device", strconv.Itoa(o.EventsPerDevice),
	}
	if o.Prefix != "" {
		a = append(a, "--prefix", o.Prefix)
	}
	if o.FlushAt > 0 {
		a = append(a, "--flush-at", strconv.Itoa(o.FlushAt))
	}
	if o.MaxRetries > 0 {
		a = append(a, "--max-retries", strconv.Itoa(o.MaxRetries))
	}
	return a
}

// SendSegment sends Devices*EventsPerDevice calls with the real Segment Node
// SDK (see testenv/node/send.mjs for the exact mix: per device a page, an
// identify, then tracks with a page every 4th call). It fails the test unless
// the SDK reports every call delivered.
func SendSegment(t testing.TB, o SendOptions) SendResult {
	t.Helper()
	out := RunNode(t, "send.mjs", o.args()...)
	var r SendResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("testenv: decoding send.mjs output %q: %v", out, err)
	}
	return r
}

// RudderOptions configures SendRudder (testenv/node/rudder.mjs).
type RudderOptions struct {
	Host        string // collector base URL
	WriteKey    string
	Events      int
	Prefix      string        // messageId/anonymousId prefix; "" = rudder.mjs default "r"
	ClockOffset time.Duration // how wrong the client's clock is (positive: ahead)
}

// RudderResult is what rudder.mjs reports after every call was delivered.
type RudderResult struct {
	Sent    []string `json:"sent"` // messageIds "PREFIX-I", in call order
	Count   int      `json:"count"`
	StartMs int64    `json:"startMs"` // real Unix ms before the first call
	EndMs   int64    `json:"endMs"`   // real Unix ms after the last delivery
}

// SendRudder sends Events calls with the real RudderStack Node SDK
// (@rudderstack/rudder-sdk-node): a page, then tracks. The SDK sends
// originalTimestamp and sentAt (by a clock ClockOffset wrong), not
// timestamp. It fails the test unless every call was delivered.
func SendRudder(t testing.TB, o RudderOptions) RudderResult {
	t.Helper()
	args := []string{"--host", o.Host, "--write-key", o.WriteKey, "--events", strconv.Itoa(o.Events),
		"--clock-offset-ms", strconv.FormatInt(o.ClockOffset.Milliseconds(), 10)}
	if o.Prefix != "" {
		args = append(args, "--prefix", o.Prefix)
	}
	out := RunNode(t, "rudder.mjs", args...)
	var r RudderResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("testenv: decoding rudder.mjs output %q: %v", out, err)
	}
	return r
}

// EnvChromium is the path of the Chromium binary (Debian's chromium), exported
// by ./scripts/test.sh after installing it.
const EnvChromium = "TIDEMARK_TEST_CHROMIUM"

// Chromium returns the path of the Chromium binary for browser tests (driven
// by testenv/node with playwright-core, which never downloads a browser). It
// fails the test when it is missing.
func Chromium(t testing.TB) string {
	t.Helper()
	p := os.Getenv(EnvChromium)
	if p == "" {
		missing(t, EnvChromium+" is not set (Debian's chromium package is not installed?)")
	}
	if _, err := exec.LookPath(p); err != nil {
		missing(t, fmt.Sprintf("%s=%q is not an executable: %v", EnvChromium, p, err))
	}
	return p
}

// PostgresURL returns TIDEMARK_TEST_POSTGRES_URL, failing the test when unset.
// The server is shared by all tests of a run: create a database or schema
// with a unique name per test.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvPostgresURL)
	if u == "" {
		missing(t, EnvPostgresURL+" is not set")
	}
	return u
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago (the
// kernel picked it for a listener that is closed again). Another process can
// take it before the caller binds it; prefer passing a net.Listener or
// ":0" where the code under test allows it.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: FreePort: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("testenv: FreePort: %v", err)
	}
	return port
}

// WaitHTTP polls GET url, with backoff from 10 ms up to 250 ms between tries,
// until it answers 2xx. It fails the test with the last status or error once
// timeout has passed or the test's context is done.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	if err := waitHTTP(t.Context(), url, timeout); err != nil {
		t.Fatalf("testenv: WaitHTTP: %v", err)
	}
}

func waitHTTP(ctx context.Context, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	var last error
	tries := 0
	err := retry.Do(ctx, waitPolicy, func(int) error {
		tries++
		last = probe(ctx, client, url)
		return last
	})
	if err == nil {
		return nil
	}
	if last == nil || tries == 0 {
		last = err
	}
	return fmt.Errorf("%s not ready after %v (%d tries): %w", url, timeout, tries, last)
}

// waitPolicy: WaitHTTP's tries, from 10ms apart up to 250ms.
var waitPolicy = retry.Policy{Initial: 10 * time.Millisecond, Max: 250 * time.Millisecond}

func probe(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return errors.New("HTTP " + resp.Status)
	}
	return nil
}
