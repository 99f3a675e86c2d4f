package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes the loader panic, that a config it
// accepts is valid, and that every problem it reports names the file.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	for _, file := range append(files, "../../tidemark.example.yaml") {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	lookup := func(name string) (string, bool) { return "x-" + name, !strings.HasPrefix(name, "U") }
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := parse("f.yml", data, lookup)
		if err != nil {
			if cfg != nil {
				t.Fatal("config and error")
			}
			for line := range strings.Lines(err.Error()) {
				if !strings.HasPrefix(line, "f.yml") {
					t.Fatalf("problem without the file name: %q", line)
				}
			}
			return
		}
		// Valid in the same environment (password_env and the Kafka SASL
		// variables are looked up in it).
		if err := joinErrs(cfg.validate(lookup)); err != nil {
			t.Fatalf("accepted an invalid config: %v", err)
		}
	})
}
