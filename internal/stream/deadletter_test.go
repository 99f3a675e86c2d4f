package stream

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidemark/tidemark/internal/retry"
)

func validDeadLetter() DeadLetter {
	body, _ := json.Marshal(Request{Org: "acme", Webhook: "crm", IdempotencyKey: "acme.crm.p1.5-6",
		Events: []Item{{EventID: "m1", OrgID: "acme", DeviceID: "d", Type: "track", LogPartition: 1, LogOffset: 5}}})
	return DeadLetter{Org: "acme", Webhook: "crm", Partition: 1, FirstOffset: 5, LastOffset: 6, Events: 1,
		FailedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Attempts: 3, Error: "HTTP 500", Body: body}
}

func TestDeadLetterRoundTrip(t *testing.T) {
	root := t.TempDir()
	d := validDeadLetter()
	path, err := WriteDeadLetter(root, &d)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "p001-00000000000000000005-00000000000000000006.json" {
		t.Errorf("file name %s", path)
	}
	poison := DeadLetter{Org: "acme", Webhook: "crm", Partition: 0, FirstOffset: 9, LastOffset: 9, Poison: true, EventID: "m9", Error: "panic: x"}
	if _, err := WriteDeadLetter(root, &poison); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "acme", "crm", "p002-garbage.json"), []byte("{"), 0o600)
	os.WriteFile(filepath.Join(root, "acme", "crm", ".tmp-123"), []byte("{"), 0o600)
	got, err := ListDeadLetters(root, "acme", "")
	if err == nil {
		t.Error("no error for the garbage file")
	}
	if len(got) != 2 || !got[0].Poison || got[1].EventID != "" || got[1].Events != 1 {
		t.Fatalf("listed %+v", got)
	}
	if other, _ := ListDeadLetters(root, "", "other"); len(other) != 0 {
		t.Errorf("webhook filter: %d", len(other))
	}
	if none, err := ListDeadLetters(filepath.Join(root, "missing"), "", ""); err != nil || len(none) != 0 {
		t.Errorf("missing dir: %v %v", none, err)
	}
}

func TestDecodeDeadLetterRejects(t *testing.T) {
	for name, mut := range map[string]func(d *DeadLetter){
		"bad org":          func(d *DeadLetter) { d.Org = "../x" },
		"offsets":          func(d *DeadLetter) { d.FirstOffset = 7 },
		"zero offset":      func(d *DeadLetter) { d.FirstOffset = 0 },
		"count mismatch":   func(d *DeadLetter) { d.Events = 2 },
		"body org":         func(d *DeadLetter) { d.Org = "other" },
		"poison with body": func(d *DeadLetter) { d.Poison = true },
		"no body":          func(d *DeadLetter) { d.Body = nil },
	} {
		d := validDeadLetter()
		mut(&d)
		b, _ := json.Marshal(d)
		if _, err := DecodeDeadLetter(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	b, _ := json.Marshal(validDeadLetter())
	if _, err := DecodeDeadLetter(append(b, []byte(`{}`)...)); err == nil {
		t.Error("trailing data accepted")
	}
	if _, err := DecodeDeadLetter(b); err != nil {
		t.Errorf("valid: %v", err)
	}
}

func FuzzDecodeDeadLetter(f *testing.F) {
	d := validDeadLetter()
	b, _ := json.Marshal(d)
	f.Add(b)
	p, _ := json.Marshal(DeadLetter{Org: "a", Webhook: "b", FirstOffset: 1, LastOffset: 1, Poison: true})
	f.Add(p)
	f.Add([]byte(`{"org":"a","webhook":"b","first_offset":1,"last_offset":2,"events":1,"body":{"org":"a","webhook":"b","events":[{}]}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"body":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := DecodeDeadLetter(data)
		if err != nil {
			return
		}
		// What decodes is consistent, and encodes and decodes to the same.
		if d.FirstOffset == 0 || d.FirstOffset > d.LastOffset {
			t.Fatalf("offsets %d-%d accepted", d.FirstOffset, d.LastOffset)
		}
		if !d.Poison {
			r, err := d.Request()
			if err != nil || len(r.Events) != d.Events || d.Events == 0 {
				t.Fatalf("body inconsistent: %v %d", err, d.Events)
			}
		}
		again, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := DecodeDeadLetter(again); err != nil {
			t.Fatalf("re-encoded dead letter does not decode: %v", err)
		}
	})
}

func TestSignAndRetryAfter(t *testing.T) {
	// A fixed vector, also used in docs/streaming.md's verification snippets.
	got := Sign([]byte("whsec-test-0000000001"), time.Unix(1767225600, 0), []byte(`{"events":[]}`))
	const want = "t=1767225600,v1="
	if len(got) != len(want)+64 || got[:len(want)] != want {
		t.Errorf("Sign = %q", got)
	}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{"": 0, "3": 3 * time.Second, "-1": 0, "x": 0,
		"Thu, 01 Jan 2026 00:00:10 GMT": 10 * time.Second} {
		// The stream's SendError.After: 0 when absent or invalid.
		if got, _ := retry.ParseRetryAfter(v, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}
