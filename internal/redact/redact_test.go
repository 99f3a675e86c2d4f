package redact

import "testing"

// TestURLWithoutSafeParameters: a webhook's URL (no parameter known to be
// harmless) loses user info, query and fragment. The cases with safe
// parameters are blob's TestRedact (its list of storage parameters).
func TestURLWithoutSafeParameters(t *testing.T) {
	if got := URL("https://u:p@h.test/x?token=abc#f", nil); got != "https://h.test/x" {
		t.Errorf("URL = %q", got)
	}
	if got := URL("https://h.test/x?", nil); got != "https://h.test/x" {
		t.Errorf("URL = %q", got)
	}
}
