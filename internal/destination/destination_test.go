package destination

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// EventIDsDigest is the SHA-256 of the sorted ids joined with "\n", however
// many there are (the manifests' event_ids_sha256 depends on it).
func TestEventIDsDigest(t *testing.T) {
	for _, n := range []int{0, 1, 2, 100, 5000} {
		ids := make([]string, n)
		for i := range ids {
			ids[i] = fmt.Sprintf("id-%d-%s", (i*7919)%n, strings.Repeat("x", i%50))
		}
		sorted := slices.Sorted(slices.Values(ids))
		sum := sha256.Sum256([]byte(strings.Join(sorted, "\n")))
		if got, want := EventIDsDigest(ids), hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%d ids: %s, want %s", n, got, want)
		}
	}
	if got := EventIDsDigest(nil); got != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Errorf("no ids: %s, want the SHA-256 of the empty string", got)
	}
}
