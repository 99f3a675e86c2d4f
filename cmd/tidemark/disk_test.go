package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/testenv"
	"github.com/tidemark/tidemark/internal/testenv/probe"
)

// TestDiskFullStaysUp: the data dir on a small file system that ingest
// fills, with log.min_free_bytes at its smallest (1B): ingest answers 503
// with Retry-After before the store runs out of room, the process stays up
// (no panic), ingest resumes by itself when space returns, and every
// acknowledged event is delivered exactly once.
func TestDiskFullStaysUp(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=192m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount a 192 MiB tmpfs for the data dir (the test runs as root, as CI does): %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", mnt).Run() })
	dir := t.TempDir() // config and lake: not on the small disk
	port := testenv.FreePort(t)
	cfg := testConfig(t, dir, port, "")
	raw, _ := os.ReadFile(cfg)
	raw = bytes.Replace(raw, []byte("min_free_bytes: 1MiB"), []byte("min_free_bytes: 1B"), 1)
	raw = bytes.Replace(raw, []byte("data_dir: "+filepath.Join(dir, "data")), []byte("data_dir: "+filepath.Join(mnt, "data")), 1)
	if err := os.WriteFile(cfg, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, cfg, port)

	// Leave 96 MiB free: ingest may use what is above the store's reserve.
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(mnt, "filler")
	if err := os.WriteFile(filler, make([]byte, int64(st.Bavail)*st.Bsize-96<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	acked := map[string]bool{}
	pad := strings.Repeat("p", 2000)
	n := 0
	// send posts one batch of 100 events and returns its status and Retry-After.
	send := func() (int, string) {
		var batch []map[string]any
		var ids []string
		for i := range 100 {
			id := fmt.Sprintf("disk-%06d", n*100+i)
			ids = append(ids, id)
			batch = append(batch, map[string]any{"type": "track", "event": "Fill", "messageId": id,
				"anonymousId": fmt.Sprintf("dev-%d", i%10), "properties": map[string]any{"pad": pad}})
		}
		n++
		body, _ := json.Marshal(map[string]any{"batch": batch})
		req, _ := http.NewRequest("POST", p.addr+"/v1/batch", bytes.NewReader(body))
		req.SetBasicAuth(testKey, "")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v (the process died?)\n%s", n, err, tail(p.out.String(), 4000))
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			for _, id := range ids {
				acked[id] = true
			}
		}
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	code, retry := 200, ""
	for i := 0; code == 200 && i < 2000; i++ {
		code, retry = send()
	}
	if code != 503 || retry == "" {
		t.Fatalf("after %d events acknowledged: status %d, Retry-After %q; want 503 with Retry-After", len(acked), code, retry)
	}
	t.Logf("503 after %d acknowledged events (%d MiB of payload)", len(acked), len(acked)*len(pad)>>20)
	for range 5 {
		if code, _ := send(); code != 503 {
			t.Fatalf("disk still low: status %d", code)
		}
	}
	if v, _ := p.metric("tidemark_log_disk_low"); v != 1 {
		t.Fatalf("tidemark_log_disk_low = %v", v)
	}
	if resp, err := http.Get(p.addr + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz while the disk is low: %v %v", err, resp)
	}

	// Space returns: ingest resumes by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	probe.Until(t, 30*time.Second, "ingest to resume", func() (bool, string) {
		code, _ := send()
		return code == 200, fmt.Sprint("status ", code)
	})
	for range 10 {
		if code, _ := send(); code != 200 {
			t.Fatalf("after space returned: status %d", code)
		}
	}
	probe.Until(t, 120*time.Second, "every acknowledged event in the lake", func() (bool, string) {
		c := readLake(t, filepath.Join(dir, "lake")).eventCounts()
		got := 0
		for id := range acked {
			if c[id] > 0 {
				got++
			}
		}
		return got == len(acked), fmt.Sprintf("%d of %d", got, len(acked))
	})
	p.stop()
	counts := readLake(t, filepath.Join(dir, "lake")).eventCounts()
	for id := range acked {
		if counts[id] != 1 {
			t.Fatalf("event %s delivered %d times", id, counts[id])
		}
	}
	if len(counts) != len(acked) {
		t.Fatalf("%d events in the lake, %d acknowledged", len(counts), len(acked))
	}
	if out := p.out.String(); strings.Contains(out, "panic") || strings.Contains(out, "goroutine ") {
		t.Fatalf("the process panicked:\n%s", tail(out, 4000))
	}
}
