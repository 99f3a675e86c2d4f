package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestBadConfigsHideSecrets: no error of any bad config shows a key,
// password or other credential, whether written in the file, in the wrong
// shape (a string where a list belongs) or expanded from ${VAR} into any
// field.
func TestBadConfigsHideSecrets(t *testing.T) {
	secrets := []string{"literal-secret-key-0000001", "literal-hook-secret-00001", "AKIAEXAMPLE"}
	for _, name := range []string{"TIDEMARK_TEST_WRITE_KEYS", "TIDEMARK_TEST_ADMIN_KEYS", "TIDEMARK_TEST_SECRET"} {
		secrets = append(secrets, strings.FieldsFunc(testEnv[name], func(r rune) bool { return r == ',' || r == ' ' })...)
	}
	files, err := filepath.Glob("testdata/*.bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		_, err := parseFile(t, file)
		if err == nil {
			t.Fatalf("%s: no error", file)
		}
		for _, s := range secrets {
			if strings.Contains(err.Error(), s) {
				t.Errorf("%s: the error shows the secret %q:\n%v", file, s, err)
			}
		}
	}
}
