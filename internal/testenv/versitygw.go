package testenv

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// Versitygw is a private S3 server (versitygw, posix backend) that a test
// starts, stops and restarts itself, on its own port and data directory, to
// simulate an outage of object storage. It uses the root credentials of the
// shared test server (EnvS3AccessKey, EnvS3SecretKey), so S3Env is the
// environment a process needs to use it.
type Versitygw struct {
	t    testing.TB
	bin  string
	Port int
	Dir  string // the posix backend's root; kept across restarts

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// StartVersitygw starts a private versitygw (EnvVersitygwBin) on a free port
// with a fresh data directory, and stops it when the test ends. It sets the
// S3 credentials in the process environment for the rest of the test (see
// S3Env), so the test must not be parallel.
func StartVersitygw(t testing.TB) *Versitygw {
	t.Helper()
	bin := os.Getenv(EnvVersitygwBin)
	if bin == "" {
		missing(t, EnvVersitygwBin+" is not set (the versitygw binary)")
	}
	setEnv(t, S3Env(t))
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		t.Fatalf("testenv: versitygw: %v", err)
	}
	v := &Versitygw{t: t, bin: bin, Port: FreePort(t), Dir: filepath.Join(dir, "data")}
	lf, err := os.Create(filepath.Join(dir, "versitygw.log"))
	if err != nil {
		t.Fatalf("testenv: versitygw: %v", err)
	}
	v.log = lf
	t.Cleanup(func() {
		v.Stop()
		lf.Close()
	})
	v.Start()
	return v
}

// Endpoint is the server's base URL.
func (v *Versitygw) Endpoint() string { return "http://127.0.0.1:" + strconv.Itoa(v.Port) }

// Start starts the server (again, on the same port and data directory) and
// waits until it accepts connections.
func (v *Versitygw) Start() {
	v.t.Helper()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd != nil {
		v.t.Fatalf("testenv: versitygw already running")
	}
	cmd := exec.Command(v.bin, "--port", "127.0.0.1:"+strconv.Itoa(v.Port), "--region", S3Region, "--quiet", "posix", v.Dir)
	cmd.Env = append(os.Environ(),
		"ROOT_ACCESS_KEY_ID="+os.Getenv(EnvS3AccessKey),
		"ROOT_SECRET_ACCESS_KEY="+os.Getenv(EnvS3SecretKey))
	cmd.Stdout = v.log
	cmd.Stderr = v.log
	if err := cmd.Start(); err != nil {
		v.t.Fatalf("testenv: start versitygw: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", v.Port), time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			logs, _ := os.ReadFile(v.log.Name())
			v.t.Fatalf("testenv: versitygw exited at start: %s", logs)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			<-done
			v.t.Fatalf("testenv: versitygw not listening on %d after 30s", v.Port)
		}
	}
	v.cmd, v.done = cmd, done
}

// Stop kills the server (an abrupt outage) and waits until it is gone. It
// does nothing if the server is not running.
func (v *Versitygw) Stop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cmd == nil {
		return
	}
	v.cmd.Process.Kill()
	<-v.done
	v.cmd, v.done = nil, nil
}

// URL returns the gocloud URL of prefix in bucket on this server.
func (v *Versitygw) URL(bucket, prefix string) string {
	q := url.Values{"endpoint": {v.Endpoint()}, "region": {S3Region}, "use_path_style": {"true"}}
	return cloudURL("s3", bucket, prefix, q)
}

// Client returns an S3 client of this server with the root credentials.
func (v *Versitygw) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:       S3Region,
		BaseEndpoint: aws.String(v.Endpoint()),
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(os.Getenv(EnvS3AccessKey), os.Getenv(EnvS3SecretKey), ""),
	})
}

// CreateBucket creates a bucket on this server.
func (v *Versitygw) CreateBucket(t testing.TB, bucket string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	if _, err := v.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Fatalf("testenv: versitygw CreateBucket %s: %v", bucket, err)
	}
}
