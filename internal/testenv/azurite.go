package testenv

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
)

// Azurite is a private Azure Blob emulator (Azurite's blob service) that a
// test starts, stops and restarts itself, on its own port and data
// directory, to simulate an outage of object storage. Its account is the
// well-known devstoreaccount1 (AzuriteAccount, AzuriteKey), so Env is the
// environment a process needs to use it.
//
// Stop ends it with SIGTERM, not SIGKILL: Azurite keeps its metadata (which
// blobs and containers exist) in memory and saves it to Dir only every few
// seconds and on a clean shutdown, so a killed Azurite would forget blobs it
// had acknowledged. Clients see the same outage either way: connections are
// refused until Start.
type Azurite struct {
	Port int
	Dir  string // --location: blob data and metadata; kept across restarts

	srv *stoppable
}

// StartAzurite starts a private azurite-blob (EnvAzuriteBin) on a free port
// with a fresh data directory, and stops it when the test ends. It sets the
// account in the process environment for the rest of the test (see Env), so
// the test must not be parallel.
func StartAzurite(t testing.TB) *Azurite {
	t.Helper()
	bin := os.Getenv(EnvAzuriteBin)
	if bin == "" {
		missing(t, EnvAzuriteBin+" is not set (the azurite-blob script)")
	}
	dir := t.TempDir()
	a := &Azurite{Port: FreePort(t), Dir: filepath.Join(dir, "data")}
	if err := os.MkdirAll(a.Dir, 0o755); err != nil {
		t.Fatalf("testenv: azurite: %v", err)
	}
	setEnv(t, a.Env())
	// --skipApiVersionCheck: the Go SDK speaks a newer API version than
	// Azurite knows. --disableTelemetry: Azurite otherwise phones home.
	a.srv = newStoppable(t, "azurite", filepath.Join(dir, "azurite.log"), a.Port, syscall.SIGTERM, func() *exec.Cmd {
		return exec.Command(bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(a.Port),
			"--location", a.Dir, "--skipApiVersionCheck", "--disableTelemetry", "--silent")
	})
	a.Start()
	return a
}

// Endpoint is the blob service URL of the account,
// http://127.0.0.1:PORT/devstoreaccount1.
func (a *Azurite) Endpoint() string {
	return "http://127.0.0.1:" + strconv.Itoa(a.Port) + "/" + AzuriteAccount
}

// Env returns the environment a process needs to open this server's URLs:
// the account and key as AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, and no
// SAS token or connection string.
func (a *Azurite) Env() []string {
	return []string{
		"AZURE_STORAGE_ACCOUNT=" + AzuriteAccount,
		"AZURE_STORAGE_KEY=" + AzuriteKey,
		"AZURE_STORAGE_SAS_TOKEN=",
		"AZURE_STORAGE_CONNECTION_STRING=",
		"AZURE_STORAGEBLOB_CONNECTIONSTRING=",
	}
}

// Start starts the server (again, on the same port and data directory) and
// waits until it accepts connections.
func (a *Azurite) Start() { a.srv.t.Helper(); a.srv.start() }

// Stop shuts the server down (SIGTERM, see Azurite) and waits until it is
// gone. It does nothing if the server is not running.
func (a *Azurite) Stop() { a.srv.stop() }

// URL returns the gocloud URL of prefix in container on this server; open
// it with Env in the environment.
func (a *Azurite) URL(container, prefix string) string {
	q := url.Values{"domain": {"127.0.0.1:" + strconv.Itoa(a.Port)}, "protocol": {"http"}, "localemu": {"true"}}
	return cloudURL("azblob", container, prefix, q)
}

// Client returns a client of this server's account.
func (a *Azurite) Client(t testing.TB) *azblob.Client {
	t.Helper()
	cred, err := azblob.NewSharedKeyCredential(AzuriteAccount, AzuriteKey)
	if err != nil {
		t.Fatalf("testenv: azurite credential: %v", err)
	}
	c, err := azblob.NewClientWithSharedKeyCredential(a.Endpoint(), cred, nil)
	if err != nil {
		t.Fatalf("testenv: azurite client: %v", err)
	}
	return c
}

// CreateContainer creates a container on this server.
func (a *Azurite) CreateContainer(t testing.TB, container string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), setupTimeout)
	defer cancel()
	if _, err := a.Client(t).CreateContainer(ctx, container, nil); err != nil {
		t.Fatalf("testenv: azurite CreateContainer %s: %v", container, err)
	}
}
